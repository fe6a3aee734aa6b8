"""SogCLR / iSogCLR (docs/methods.md section 2.7): dense float64 references of the per-batch algorithm, the DCL
gradient identity, state handling (bounds, untouched indices, checkpoints), modes and errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses import DCL
from contrastkit.losses.global_ import ISogCLR, ISogCLRBimodal, SogCLR, SogCLRBimodal

F64 = torch.float64


def views_(n: int, d: int = 6, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    centre = torch.randn(n, 1, d, generator=g, dtype=F64)
    return (centre + 0.7 * torch.randn(n, 2, d, generator=g, dtype=F64)).requires_grad_(True)


def pair_(n: int, d: int = 6, seed: int = 0) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=g, dtype=F64)
    txt = img + 0.8 * torch.randn(n, d, generator=g, dtype=F64)
    return img.requires_grad_(True), txt.requires_grad_(True)


# --------------------------------------------------------------------------------------------------
# Dense references, written from docs/methods.md section 2.7 (steps 1-5) with full (B, 2B) logit matrices
# --------------------------------------------------------------------------------------------------


class DenseUnimodal:
    """The unimodal algorithm of docs/methods.md section 2.7, dense, float64, state in plain tensors."""

    def __init__(
        self,
        n_data: int,
        tau: float,
        gamma: float,
        rho: float,
        eta: float,
        beta: float,
        tau_min: float,
        tau_max: float,
        eps: float,
        learn: bool,
        clip: float | None = None,
    ):
        self.u = torch.zeros(n_data, dtype=F64)
        self.tau = torch.full((n_data,), tau, dtype=F64)
        self.m = torch.zeros(n_data, dtype=F64)
        self.gamma, self.rho, self.eta, self.beta = gamma, rho, eta, beta
        self.tau_min, self.tau_max, self.eps, self.learn, self.clip = (
            tau_min,
            tau_max,
            eps,
            learn,
            clip,
        )

    def step(self, views: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        a = F.normalize(views[:, 0], dim=1)
        b = F.normalize(views[:, 1], dim=1)
        n = a.shape[0]
        eye = torch.eye(n, dtype=torch.bool)
        # step 1: logits [s(a_i, b_k)]_k ++ [s(a_i, a_k)]_k ; negatives: all but b_i and a_i
        neg_mask = ~torch.cat([eye, eye], dim=1)
        logits_a = torch.cat([a @ b.T, a @ a.T], dim=1)
        logits_b = torch.cat([b @ a.T, b @ b.T], dim=1)
        tau = self.tau[index][:, None]
        n_neg = 2 * (n - 1)
        u_old = self.u[index][:, None]
        first = u_old == 0
        gam = torch.where(first, torch.ones_like(u_old), torch.full_like(u_old, self.gamma))
        losses, grads, us = [], [], []
        for logits in (logits_a, logits_b):
            e = torch.exp(logits / tau) * neg_mask  # step 2
            g = e.sum(dim=1, keepdim=True) / n_neg
            u = ((1 - gam) * u_old + gam * g).clamp(min=self.eps)
            p = (e / u).detach()  # step 3
            pos = logits[:, :n].diagonal()  # s(a_i, b_i)
            surrogate = -pos + (p * logits * neg_mask).sum(dim=1) / n_neg  # step 4
            losses.append(surrogate)
            grads.append(
                torch.log(u[:, 0])
                + self.rho
                - (p * (logits / tau).detach() * neg_mask).sum(1) / n_neg
            )
            us.append(u[:, 0].detach())
        loss = (losses[0] + losses[1]).mean()
        objective = (
            torch.cat(
                [tau[:, 0] * (torch.log(us[v]) + (self.rho if self.learn else 0.0)) for v in (0, 1)]
            )
            - torch.cat([(a * b).sum(1), (a * b).sum(1)]).detach()
        )
        self.u[index] = 0.5 * (us[0] + us[1])
        if self.learn:  # step 5
            grad = 0.5 * (grads[0] + grads[1]).detach()
            if self.clip is not None:
                grad = grad.clamp(-self.clip, self.clip)
            self.m[index] = (1 - self.beta) * self.m[index] + self.beta * grad
            self.tau[index] = (self.tau[index] - self.eta * self.m[index]).clamp(
                self.tau_min, self.tau_max
            )
        return loss, objective.mean()


class DenseBimodal:
    """docs/methods.md section 2.7, bimodal (LibAUC GCLoss_v2): running max b, unnormalised sum over
    negatives."""

    def __init__(
        self,
        n_data: int,
        tau: float,
        gamma: float,
        rho: float,
        eta: float,
        beta: float,
        tau_min: float,
        tau_max: float,
        eps: float,
        learn: bool,
    ):
        self.state = {
            side: {
                "u": torch.zeros(n_data, dtype=F64),
                "b": torch.zeros(n_data, dtype=F64),
                "tau": torch.full((n_data,), tau, dtype=F64),
                "m": torch.zeros(n_data, dtype=F64),
            }
            for side in ("image", "text")
        }
        self.gamma, self.rho, self.eta, self.beta = gamma, rho, eta, beta
        self.tau_min, self.tau_max, self.eps, self.learn = tau_min, tau_max, eps, learn

    def step(self, image: Tensor, text: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        x, t = F.normalize(image, dim=1), F.normalize(text, dim=1)
        n = x.shape[0]
        neg = ~torch.eye(n, dtype=torch.bool)
        sim = x @ t.T
        h_per_side = {
            "image": sim - sim.diagonal()[:, None],
            "text": sim.T - sim.diagonal()[:, None],
        }
        total, objectives = 0.0, []
        for side, h in h_per_side.items():
            st = self.state[side]
            tau = st["tau"][index][:, None]
            h_tau = (h / tau).detach()
            b_old = st["b"][index][:, None]
            b_new = torch.maximum(b_old, h_tau.max(dim=1, keepdim=True).values)
            e = torch.exp(h_tau - b_new) * neg
            g = e.sum(1, keepdim=True) / (n - 1)
            u_old = st["u"][index][:, None]
            gam = torch.where(
                u_old == 0, torch.ones_like(u_old), torch.full_like(u_old, self.gamma)
            )
            u = ((1 - gam) * u_old * torch.exp(b_old - b_new) + gam * g).clamp(min=self.eps)
            p = (e / u).detach()
            total = total + 0.5 * (p * h * neg).sum(1).mean()
            rho = self.rho if self.learn else 0.0
            objectives.append(tau[:, 0] * (torch.log(u[:, 0]) + b_new[:, 0] + rho))
            st["u"][index] = u[:, 0]
            st["b"][index] = b_new[:, 0]
            if self.learn:
                grad = (
                    torch.log(u)
                    + self.rho
                    + b_new
                    - (p * h_tau * neg).sum(1, keepdim=True) / (n - 1)
                )
                st["m"][index] = (1 - self.beta) * st["m"][index] + self.beta * grad[:, 0]
                st["tau"][index] = (st["tau"][index] - self.eta * st["m"][index]).clamp(
                    self.tau_min, self.tau_max
                )
        return total, 0.5 * (objectives[0].mean() + objectives[1].mean())  # type: ignore[return-value]


BATCHES = [
    torch.tensor([0, 3, 5, 7, 9, 11]),
    torch.tensor([3, 5, 8, 1, 2, 0]),
    torch.tensor([9, 1, 4, 0, 6, 3]),
]


@pytest.mark.parametrize("learn", [False, True])
@pytest.mark.parametrize("tau", [0.1, 0.5])
@pytest.mark.parametrize("schedule_gamma", [0.9, 0.3])
def test_unimodal_matches_dense_reference_over_steps(
    learn: bool, tau: float, schedule_gamma: float
) -> None:
    kw = dict(rho=0.3, eta=0.05, beta=0.7, tau_min=0.05, tau_max=0.7, eps=1e-8)
    ref = DenseUnimodal(12, tau, schedule_gamma, learn=learn, **kw)
    if learn:
        loss = ISogCLR(num_samples=12, temperature=tau, gamma=schedule_gamma, **kw).double()
    else:
        loss = SogCLR(num_samples=12, temperature=tau, gamma=schedule_gamma, eps=1e-8).double()
        ref.rho = 0.0
    if learn:
        loss.tau.fill_(tau)  # the float32 buffer would hold 0.1f; make it exact for the comparison
        ref.tau.fill_(tau)
    for step, idx in enumerate(BATCHES):
        x = views_(len(idx), seed=step)
        value = loss(x, idx)
        (grad,) = torch.autograd.grad(value, x)
        x_ref = x.detach().clone().requires_grad_(True)
        value_ref, objective_ref = ref.step(x_ref, idx)
        (grad_ref,) = torch.autograd.grad(value_ref, x_ref)
        torch.testing.assert_close(value, value_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(grad, grad_ref, rtol=1e-9, atol=1e-11)
        torch.testing.assert_close(loss.objective(), objective_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loss.u, ref.u, rtol=1e-10, atol=1e-12)
        if learn:
            assert isinstance(loss, ISogCLR)
            torch.testing.assert_close(loss.tau, ref.tau, rtol=1e-10, atol=1e-12)
            torch.testing.assert_close(loss.tau_momentum, ref.m, rtol=1e-10, atol=1e-12)
    if learn:
        assert not torch.allclose(loss.tau[BATCHES[0]], torch.full((6,), tau, dtype=F64))


def test_unimodal_chunked_equals_unchunked() -> None:
    x = views_(13, seed=4)
    idx = torch.arange(13)
    out = []
    for chunk in (None, 3):
        loss = ISogCLR(num_samples=13, chunk_size=chunk, eta=0.1).double()
        xx = x.detach().clone().requires_grad_(True)
        loss(xx, idx).backward()
        loss(xx, idx)  # second visit: gamma < 1 path and updated tau
        out.append((xx.grad, loss.u.clone(), loss.tau.clone()))
    for a, b in zip(out[0], out[1], strict=True):
        assert a is not None and b is not None
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cls", [SogCLR, ISogCLR])
@pytest.mark.parametrize("tau", [0.125, 0.5])
def test_gradient_is_two_tau_times_dcl(cls: type[SogCLR], tau: float) -> None:
    """gamma = 1 (first visit), fixed tau: grad of the surrogate = 2 tau grad of symmetric DCL."""
    x = views_(16, d=8, seed=3)
    kwargs = {"tau_min": 0.05, "tau_max": 0.7} if cls is ISogCLR else {}
    loss = cls(num_samples=40, temperature=tau, **kwargs).double()
    (g,) = torch.autograd.grad(loss(x, torch.arange(20, 36)), x)
    (g_dcl,) = torch.autograd.grad(DCL(temperature=tau)(x), x)
    torch.testing.assert_close(g, 2 * tau * g_dcl, rtol=1e-10, atol=1e-12)
    # a mismatch of the factor would be visible: the gradient is not tiny
    assert g.abs().max() > 1e-2


def _central_difference(f: object, x: Tensor, h: float = 1e-6) -> Tensor:
    """d f / d x by central differences, one coordinate at a time (float64)."""
    assert callable(f)
    grad = torch.zeros_like(x)
    flat = grad.view(-1)
    base = x.detach().clone()
    for k in range(base.numel()):
        plus, minus = base.clone(), base.clone()
        plus.view(-1)[k] += h
        minus.view(-1)[k] -= h
        flat[k] = (float(f(plus)) - float(f(minus))) / (2 * h)
    return grad


def test_gradient_matches_finite_differences_of_reported_objective() -> None:
    """The gradcheck of a surrogate loss.

    Its value is not the function it differentiates (the weights are detached by design), so
    autograd's gradient is checked against finite differences of the objective the loss reports.
    In eval mode u_i is the batch estimate g_i (gamma = 1), where the surrogate gradient is exactly
    the gradient of the batch objective: x 2 for the unimodal loss (its objective is a mean over 2N
    anchors), x (N - 1) for the bimodal one (its sum over negatives is not normalised).
    """
    idx = torch.tensor([2, 0, 3])
    loss = ISogCLR(num_samples=4, temperature=0.3, eta=0.5).double()
    loss(views_(3, d=3, seed=9), idx)  # individual temperatures differ from here on
    loss.eval()
    x = views_(3, d=3, seed=1)
    (g,) = torch.autograd.grad(loss(x, idx), x)

    def objective(v: Tensor) -> Tensor:
        loss(v, idx)
        return loss.objective()

    torch.testing.assert_close(g, 2 * _central_difference(objective, x), rtol=1e-6, atol=1e-8)
    # temperatures >= 0.1 keep every u_i above its eps clamp (which would cut the gradient's link)
    bi = ISogCLRBimodal(num_samples=4, temperature=0.2, tau_min=0.1, tau_max=0.5, eta=0.5).double()
    idx4 = torch.tensor([2, 0, 3, 1])
    bi(*pair_(4, d=3, seed=8), idx4)
    bi.eval()
    img, txt = pair_(4, d=3, seed=2)
    g_img, g_txt = torch.autograd.grad(bi(img, txt, idx4), (img, txt))

    def objective_img(v: Tensor) -> Tensor:
        bi(v, txt.detach(), idx4)
        return bi.objective()

    def objective_txt(v: Tensor) -> Tensor:
        bi(img.detach(), v, idx4)
        return bi.objective()

    fd_img = _central_difference(objective_img, img)
    torch.testing.assert_close(g_img, 3 * fd_img, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(
        g_txt, 3 * _central_difference(objective_txt, txt), rtol=1e-6, atol=1e-8
    )
    assert fd_img.abs().max() > 1e-2


# --------------------------------------------------------------------------------------------------
# Bimodal
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("learn", [False, True])
def test_bimodal_matches_dense_reference_over_steps(learn: bool) -> None:
    kw = dict(rho=6.0, eta=0.01, beta=0.9, tau_min=0.005, tau_max=0.05, eps=1e-20)
    ref = DenseBimodal(12, 0.01, 0.8, learn=learn, **kw)
    if learn:
        loss: SogCLRBimodal = ISogCLRBimodal(
            num_samples=12, temperature=0.01, gamma=0.8, **kw
        ).double()
        loss.tau_image.fill_(0.01)
        loss.tau_text.fill_(0.01)
    else:
        loss = SogCLRBimodal(num_samples=12, temperature=0.01, gamma=0.8, eps=1e-20).double()
    for step, idx in enumerate(BATCHES):
        img, txt = pair_(len(idx), seed=10 + step)
        value = loss(img, txt, idx)
        grads = torch.autograd.grad(value, (img, txt))
        img_r, txt_r = (t.detach().clone().requires_grad_(True) for t in (img, txt))
        value_ref, objective_ref = ref.step(img_r, txt_r, idx)
        grads_ref = torch.autograd.grad(value_ref, (img_r, txt_r))
        torch.testing.assert_close(value, value_ref, rtol=1e-9, atol=1e-10)
        for a, b in zip(grads, grads_ref, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
        torch.testing.assert_close(loss.objective(), objective_ref, rtol=1e-10, atol=1e-12)
        for side in ("image", "text"):
            torch.testing.assert_close(
                getattr(loss, f"u_{side}"), ref.state[side]["u"], rtol=1e-9, atol=0
            )
            torch.testing.assert_close(
                getattr(loss, f"b_{side}"), ref.state[side]["b"], rtol=1e-12, atol=0
            )
            if learn:
                torch.testing.assert_close(
                    getattr(loss, f"tau_{side}"), ref.state[side]["tau"], rtol=1e-10, atol=1e-12
                )
    # the running max really stabilises: at tau = 0.01 the unshifted partition sums overflow float32
    assert float(loss.b_image.max()) > 50


def test_bimodal_small_tau_float32_stays_finite() -> None:
    img, txt = pair_(32, d=16, seed=5)
    loss = ISogCLRBimodal(num_samples=64, temperature=0.005)
    idx = torch.arange(32)
    for _ in range(3):
        value = loss(img.float(), txt.float(), idx)
        value.backward()
        assert torch.isfinite(value)
    assert torch.isfinite(loss.u_image).all() and torch.isfinite(loss.objective())


# --------------------------------------------------------------------------------------------------
# State, schedule, modes
# --------------------------------------------------------------------------------------------------


def test_tau_stays_in_bounds_and_untouched_indices_never_change() -> None:
    loss = ISogCLR(num_samples=50, temperature=0.3, eta=5.0, tau_min=0.1, tau_max=0.4, rho=2.0)
    g = torch.Generator().manual_seed(0)
    seen: set[int] = set()
    for step in range(6):
        idx = torch.randperm(30, generator=g)[:10]  # indices 30..49 are never in a batch
        seen.update(idx.tolist())
        loss(views_(10, seed=step).float(), idx)
        assert float(loss.tau.min()) >= 0.1 - 1e-7 and float(loss.tau.max()) <= 0.4 + 1e-7
    assert loss.tau.max() == pytest.approx(0.4) or loss.tau.min() == pytest.approx(
        0.1
    )  # bounds bind
    unseen = torch.tensor(sorted(set(range(50)) - seen))
    assert (loss.u[unseen] == 0).all()
    assert (loss.tau[unseen] == 0.3 * torch.ones(1)).all()
    assert (loss.tau_momentum[unseen] == 0).all()
    assert (loss.u[torch.tensor(sorted(seen))] > 0).all()


def test_u_outside_batch_unchanged_bitwise() -> None:
    loss = SogCLR(num_samples=10)
    loss(views_(5, seed=1).float(), torch.tensor([0, 1, 2, 3, 4]))
    before = loss.u.clone()
    loss(views_(3, seed=2).float(), torch.tensor([2, 7, 9]))
    keep = torch.tensor([0, 1, 3, 4, 5, 6, 8])
    assert torch.equal(loss.u[keep], before[keep])
    assert not torch.equal(loss.u[torch.tensor([2, 7, 9])], before[torch.tensor([2, 7, 9])])


def test_grad_tau_clip_flag() -> None:
    x = views_(8, seed=7).float()
    idx = torch.arange(8)
    taus = {}
    for clip in (None, 0.01):
        loss = ISogCLR(
            num_samples=8, temperature=0.3, rho=5.0, eta=1.0, beta=1.0, grad_tau_clip=clip
        )
        loss(x, idx)
        taus[clip] = loss.tau.clone()
    # rho = 5 makes grad_tau > 0.01 for every sample: the clipped step is exactly eta * 0.01
    torch.testing.assert_close(taus[0.01], torch.full((8,), 0.3 - 0.01))
    assert (taus[None] < 0.3 - 0.02).all()


def test_gamma_schedule_constant_and_cosine() -> None:
    const = SogCLR(num_samples=4, gamma=0.6)
    assert const.current_gamma == 0.6
    cos = SogCLR(num_samples=4, gamma=0.2, gamma_schedule="cosine", gamma_decay_epochs=4)
    assert cos.current_gamma == 1.0  # epoch 0
    cos.set_epoch(2)
    assert cos.current_gamma == pytest.approx(0.2 + 0.8 * 0.5)
    cos.adjust_gamma(4)
    assert cos.current_gamma == pytest.approx(0.2)
    cos.set_epoch(9)
    assert cos.current_gamma == pytest.approx(0.2)
    with pytest.raises(ValueError, match="epoch"):
        cos.set_epoch(-1)


def test_gamma_one_on_first_visit_then_moving_average() -> None:
    loss = SogCLR(num_samples=6, gamma=0.25).double()
    idx = torch.tensor([0, 1, 2])
    x1, x2 = views_(3, seed=1), views_(3, seed=2)
    loss(x1, idx)
    u1 = loss.u[idx].clone()
    # first visit: u is the batch estimate itself (mean of the two views' g_i)
    ref = DenseUnimodal(6, 0.1, 1.0, 0.0, 0.0, 0.0, 0.05, 0.7, 1e-8, learn=False)
    ref.step(x1.detach(), idx)
    torch.testing.assert_close(u1, ref.u[idx])
    loss(x2, idx)
    ref_g = DenseUnimodal(6, 0.1, 1.0, 0.0, 0.0, 0.0, 0.05, 0.7, 1e-8, learn=False)
    ref_g.step(x2.detach(), idx)  # u of batch 2 alone
    torch.testing.assert_close(loss.u[idx], 0.75 * u1 + 0.25 * ref_g.u[idx])


def test_cosine_schedule_drives_update() -> None:
    idx = torch.arange(4)
    x1, x2 = views_(4, seed=1), views_(4, seed=2)
    out = {}
    for epoch in (0, 3):
        loss = SogCLR(
            num_samples=4, gamma=0.1, gamma_schedule="cosine", gamma_decay_epochs=3
        ).double()
        loss(x1, idx)
        u1 = loss.u.clone()
        loss.set_epoch(epoch)
        loss(x2, idx)
        out[epoch] = (u1, loss.u.clone())
    fresh = SogCLR(num_samples=4).double()
    fresh(x2, idx)
    torch.testing.assert_close(out[0][1], fresh.u)  # gamma = 1 at epoch 0
    torch.testing.assert_close(out[3][1], 0.9 * out[3][0] + 0.1 * fresh.u)


def test_eval_mode_does_not_touch_state() -> None:
    loss = ISogCLR(num_samples=10, eta=0.5)
    loss(views_(5, seed=1).float(), torch.arange(5))
    state = {k: v.clone() for k, v in loss.state_dict().items()}
    loss.eval()
    x = views_(5, seed=2).float()
    value_no_index = loss(x)  # index optional in eval mode: initial temperature
    value_index = loss(x, torch.arange(5))  # stored temperatures
    for k, v in loss.state_dict().items():
        assert torch.equal(v, state[k]), k
    assert torch.isfinite(value_no_index) and torch.isfinite(value_index)
    assert not torch.allclose(value_no_index, value_index)
    # eval uses u = the batch estimate: a fresh loss at a first visit, same temperature, agrees
    fresh = SogCLR(num_samples=10, temperature=0.1)
    torch.testing.assert_close(value_no_index, fresh(x, torch.arange(5)))


def test_state_dict_and_safetensors_round_trip(tmp_path: Path) -> None:
    from safetensors.torch import load_file, save_file

    loss = ISogCLR(num_samples=20, eta=0.2, gamma_schedule="cosine")
    loss(views_(6, seed=1).float(), torch.arange(6))
    loss.set_epoch(3)
    sd = loss.state_dict()
    assert {"u", "tau", "tau_momentum", "schedule_epoch"} <= set(sd)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp_path / "state.safetensors"))
    restored = ISogCLR(num_samples=20, eta=0.2, gamma_schedule="cosine")
    restored.load_state_dict(load_file(str(tmp_path / "state.safetensors")))
    assert restored.current_gamma == loss.current_gamma
    x = views_(6, seed=2).float()
    idx = torch.arange(3, 9)
    torch.testing.assert_close(restored(x, idx), loss(x, idx))
    torch.testing.assert_close(restored.tau, loss.tau)
    torch.testing.assert_close(restored.u, loss.u)
    # a plain torch checkpoint too, and bimodal buffers
    bi = ISogCLRBimodal(num_samples=8)
    bi(*pair_(4), torch.arange(4))
    other = ISogCLRBimodal(num_samples=8)
    torch.save(bi.state_dict(), tmp_path / "bi.pt")
    other.load_state_dict(torch.load(tmp_path / "bi.pt"))
    for k, v in bi.state_dict().items():
        assert torch.equal(other.state_dict()[k], v)
    assert {"u_image", "u_text", "b_image", "b_text", "tau_image", "tau_momentum_text"} <= set(
        bi.state_dict()
    )


def test_objective_reports_true_objective_not_surrogate() -> None:
    x = views_(8, seed=3)
    loss = SogCLR(num_samples=8, temperature=0.5).double()
    value = loss(x, torch.arange(8))
    # first visit: u = g, so the objective is tau * mean of the DCL per-anchor terms
    dcl = DCL(temperature=0.5)(x) * 0.5 - 0.5 * math.log(2 * 7)
    torch.testing.assert_close(loss.objective(), dcl)
    assert abs(float(value.detach()) - float(loss.objective())) > 1e-3
    with pytest.raises(RuntimeError, match="first forward"):
        SogCLR(num_samples=3).objective()


def test_reductions() -> None:
    x = views_(5, seed=2)
    idx = torch.arange(5)
    terms = SogCLR(num_samples=5, reduction="none").double()(x, idx)
    assert terms.shape == (5,)
    torch.testing.assert_close(SogCLR(num_samples=5).double()(x, idx), terms.mean())
    torch.testing.assert_close(SogCLR(num_samples=5, reduction="sum").double()(x, idx), terms.sum())
    bi_terms = SogCLRBimodal(num_samples=5, reduction="none").double()(*pair_(5), idx)
    assert bi_terms.shape == (5,)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def test_index_errors() -> None:
    loss = ISogCLR(num_samples=10)
    x = views_(4).float()
    with pytest.raises(ValueError, match="needs the dataset index"):
        loss(x)
    with pytest.raises(ValueError, match=r"shape \(4,\)"):
        loss(x, torch.arange(3))
    with pytest.raises(ValueError, match=r"\[0, num_samples=10\).*max 10"):
        loss(x, torch.tensor([1, 2, 3, 10]))
    with pytest.raises(ValueError, match="min -1"):
        loss(x, torch.tensor([-1, 2, 3, 4]))
    with pytest.raises(TypeError, match="integer"):
        loss(x, torch.tensor([0.0, 1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="duplicate"):
        loss(x, torch.tensor([0, 1, 1, 2]))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        loss(x, [0, 1, 2, 3])
    bi = ISogCLRBimodal(num_samples=4)
    with pytest.raises(ValueError, match="needs the dataset index"):
        bi(*pair_(3))
    with pytest.raises(ValueError, match="max 4"):
        bi(*pair_(3), torch.tensor([0, 1, 4]))
    loss.eval()
    with pytest.raises(ValueError, match="max 10"):
        loss(x, torch.tensor([1, 2, 3, 10]))  # checked in eval mode too when given


def test_input_and_constructor_errors() -> None:
    loss = SogCLR(num_samples=10)
    with pytest.raises(ValueError, match="exactly two views"):
        loss(torch.randn(4, 3, 5), torch.arange(4))
    with pytest.raises(ValueError, match="N >= 2"):
        loss(torch.randn(1, 2, 5), torch.arange(1))
    with pytest.raises(ValueError, match=r"\(N, V, D\)"):
        loss(torch.randn(4, 5), torch.arange(4))
    with pytest.raises(ValueError, match="finite"):
        loss(torch.full((4, 2, 5), float("nan")), torch.arange(4))
    bi = SogCLRBimodal(num_samples=10)
    with pytest.raises(ValueError, match="same number of pairs"):
        bi(torch.randn(4, 5), torch.randn(3, 5), torch.arange(4))
    with pytest.raises(ValueError, match="embedding dim 5"):
        bi(torch.randn(4, 5), torch.randn(4, 6), torch.arange(4))
    with pytest.raises(ValueError, match="num_samples"):
        SogCLR(num_samples=0)
    with pytest.raises(TypeError):
        SogCLR(10)  # type: ignore[misc]
    with pytest.raises(ValueError, match="temperature"):
        SogCLR(num_samples=3, temperature=0.0)
    with pytest.raises(ValueError, match="gamma"):
        SogCLR(num_samples=3, gamma=0.0)
    with pytest.raises(ValueError, match="gamma"):
        SogCLR(num_samples=3, gamma=1.5)
    with pytest.raises(ValueError, match="gamma_schedule"):
        SogCLR(num_samples=3, gamma_schedule="linear")
    with pytest.raises(ValueError, match="tau_min"):
        ISogCLR(num_samples=3, tau_min=0.5, tau_max=0.2)
    with pytest.raises(ValueError, match="initial temperature"):
        ISogCLR(num_samples=3, temperature=0.9)
    with pytest.raises(ValueError, match="grad_tau_clip"):
        ISogCLR(num_samples=3, grad_tau_clip=-1.0)
    with pytest.raises(ValueError, match="reduction"):
        ISogCLRBimodal(num_samples=3, reduction="avg")
    with pytest.raises(ValueError, match="beta"):
        ISogCLR(num_samples=3, beta=2.0)


def test_registry_entries_of_the_zoo() -> None:
    from contrastkit.losses import CACR, AlignUniform, GroCo, get_loss, loss_info

    for name, cls in (("sogclr", SogCLR), ("isogclr", ISogCLR)):
        info = loss_info(name)
        assert info.needs_index and info.input_kind == "views" and not info.needs_labels
        assert type(get_loss(name, num_samples=5)) is cls
    for name, cls in (("sogclr_bimodal", SogCLRBimodal), ("isogclr_bimodal", ISogCLRBimodal)):
        info = loss_info(name)
        assert info.needs_index and info.input_kind == "pair"
        assert type(get_loss(name, num_samples=5)) is cls
    for name, cls in (("cacr", CACR), ("groco", GroCo), ("align_uniform", AlignUniform)):
        assert not loss_info(name).needs_index
        assert type(get_loss(name)) is cls
    assert not loss_info("dcl").needs_index  # the default of the new field
