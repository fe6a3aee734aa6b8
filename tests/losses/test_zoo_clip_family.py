"""CLIPRocketLoss (augmented-view CLIP terms) and MILNCE, docs/methods.md section 2.4."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.losses.clip import MILNCE, CLIPLoss, CLIPRocketLoss

F64 = torch.float64


def _unit(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def _randn(*shape: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64, requires_grad=True)


def _ce(logits: Tensor, eps: float) -> Tensor:
    target = torch.arange(logits.shape[0])
    return F.cross_entropy(logits, target, label_smoothing=eps, reduction="none")


def rocket_ref(
    img: Tensor,
    txt: Tensor,
    views: Tensor | None,
    texts: Tensor | None,
    sigma: Tensor | float,
    sigma_l: Tensor | float,
    eps: float = 0.0,
    eps_l: float = 0.1,
    combine: str = "avg",
) -> Tensor:
    """Per pair L = w (L_img + L_txt), L_img = (CE(s I T^T) + sum_a CE_eps(s_l V_a T_a^T))/(1 + A),
    w = 1/2 (avg) or 1 (sum); float64, dense."""
    i, t = _unit(img.to(F64)), _unit(txt.to(F64))
    l_img, l_txt = _ce(sigma * i @ t.T, eps), _ce(sigma * t @ i.T, eps)
    a = 0
    if views is not None:
        assert texts is not None
        v, tx = _unit(views.to(F64)), _unit(texts.to(F64))
        a = v.shape[1]
        for k in range(a):
            l_img = l_img + _ce(sigma_l * v[:, k] @ tx[:, k].T, eps_l)
            l_txt = l_txt + _ce(sigma_l * tx[:, k] @ v[:, k].T, eps_l)
    w = 0.5 if combine == "avg" else 1.0
    return w * (l_img + l_txt) / (1 + a)


ROCKET_CASES = [
    (n, d, a, t, tl, eps, eps_l, combine, text_kind)
    for (n, d, a) in [(1, 3, 1), (4, 5, 2), (7, 4, 3)]
    for (t, tl) in [(0.07, 0.07), (0.5, 0.1)]
    for (eps, eps_l, combine) in [(0.0, 0.1, "avg"), (0.2, 0.0, "sum")]
    for text_kind in ("none", "one", "per_view")
]


@pytest.mark.parametrize(
    ("n", "d", "a", "t", "tl", "eps", "eps_l", "combine", "text_kind"), ROCKET_CASES
)
def test_rocket_value_and_grad_vs_reference(
    n: int,
    d: int,
    a: int,
    t: float,
    tl: float,
    eps: float,
    eps_l: float,
    combine: str,
    text_kind: str,
) -> None:
    img, txt, views = _randn(n, d, seed=1), _randn(n, d, seed=2), _randn(n, a, d, seed=3)
    text_aug: Tensor | None = None
    texts = txt.unsqueeze(1).expand(-1, a, -1)
    if text_kind == "one":
        text_aug = _randn(n, d, seed=4)
        texts = text_aug.unsqueeze(1).expand(-1, a, -1)
    elif text_kind == "per_view":
        text_aug = _randn(n, a, d, seed=5)
        texts = text_aug
    loss = CLIPRocketLoss(
        init_temperature=t,
        local_init_temperature=tl,
        label_smoothing=eps,
        local_label_smoothing=eps_l,
        combine=combine,
        reduction="none",
        chunk_size=2,
    ).double()
    out = loss(img, txt, views, text_aug)
    sigma, sigma_l = loss.logit_scale.exp(), loss.local_logit_scale.exp()
    ref = rocket_ref(img, txt, views, texts, sigma, sigma_l, eps, eps_l, combine)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)
    inputs = [img, txt, views, loss.logit_scale, loss.local_logit_scale]
    if text_aug is not None:
        inputs.append(text_aug)
    w = torch.linspace(0.5, 1.5, n, dtype=F64)
    g_out = torch.autograd.grad((out * w).sum(), inputs)
    g_ref = torch.autograd.grad((ref * w).sum(), inputs)
    for x, r in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(x, r, rtol=1e-9, atol=1e-11)


def test_rocket_without_augmented_views_is_clip() -> None:
    img, txt = _randn(6, 4, seed=6), _randn(6, 4, seed=7)
    rocket = CLIPRocketLoss().double()
    torch.testing.assert_close(rocket(img, txt), CLIPLoss().double()(img, txt))
    smoothed = CLIPRocketLoss(label_smoothing=0.1).double()
    torch.testing.assert_close(smoothed(img, txt), CLIPLoss(label_smoothing=0.1).double()(img, txt))


def test_rocket_weighting_of_global_and_local_terms() -> None:
    """L_img = (L_global + n_aug L_local) / (1 + n_aug): identical views repeated A times give
    (L_g + A L_l) / (1 + A), where L_l is the one-view local loss."""
    img, txt, view = _randn(5, 4, seed=8), _randn(5, 4, seed=9), _randn(5, 1, 4, seed=10)
    loss = CLIPRocketLoss().double()
    global_only = loss(img, txt)
    one = loss(img, txt, view)  # (L_g + L_l) / 2
    local = 2 * one - global_only
    three = loss(img, txt, view.expand(-1, 3, -1))
    torch.testing.assert_close(three, (global_only + 3 * local) / 4)
    summed = CLIPRocketLoss(combine="sum").double()(img, txt, view)
    torch.testing.assert_close(summed, 2 * one)


def test_rocket_local_smoothing_only_on_augmented_terms() -> None:
    img, txt, views = _randn(5, 4, seed=11), _randn(5, 4, seed=12), _randn(5, 2, 4, seed=13)
    a = CLIPRocketLoss(local_label_smoothing=0.1).double()
    b = CLIPRocketLoss(local_label_smoothing=0.0).double()
    torch.testing.assert_close(a(img, txt), b(img, txt))  # no local terms: no difference
    assert not torch.allclose(a(img, txt, views), b(img, txt, views))


def test_rocket_separate_clamped_scales() -> None:
    loss = CLIPRocketLoss(init_temperature=0.07, local_init_temperature=0.5)
    sigma, sigma_l = loss.scales()
    assert sigma.item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert sigma_l.item() == pytest.approx(2.0, rel=1e-5)
    with torch.no_grad():
        loss.logit_scale.fill_(10.0)
        loss.local_logit_scale.fill_(-3.0)
    sigma, sigma_l = loss.scales()
    assert sigma.item() == pytest.approx(100.0, rel=1e-5)
    assert sigma_l.item() == pytest.approx(1.0)
    assert loss.logit_scale.item() == pytest.approx(math.log(100.0), rel=1e-6)
    fixed = CLIPRocketLoss(learnable=False)
    assert not list(fixed.parameters())
    assert {"logit_scale", "local_logit_scale"} <= set(fixed.state_dict())


def test_rocket_gradcheck() -> None:
    img, txt, views = _randn(3, 2, seed=14), _randn(3, 2, seed=15), _randn(3, 2, 2, seed=16)
    loss = CLIPRocketLoss(init_temperature=0.5, local_init_temperature=0.3, chunk_size=1).double()
    assert torch.autograd.gradcheck(lambda a, b, c: loss(a, b, c), (img, txt, views))


def test_rocket_errors() -> None:
    img, txt = torch.randn(4, 3), torch.randn(4, 3)
    with pytest.raises(ValueError, match="local_label_smoothing must be < 1"):
        CLIPRocketLoss(local_label_smoothing=1.0)
    with pytest.raises(ValueError, match="local_init_temperature"):
        CLIPRocketLoss(local_init_temperature=0.0)
    with pytest.raises(ValueError, match="combine must be one of"):
        CLIPRocketLoss(combine="max")
    with pytest.raises(ValueError, match="max_logit_scale must be >= 1"):
        CLIPRocketLoss(max_logit_scale=0.5)
    loss = CLIPRocketLoss()
    with pytest.raises(ValueError, match=r"image_aug must have shape \(4, A, 3\)"):
        loss(img, txt, torch.randn(4, 3))
    with pytest.raises(ValueError, match="one caption per augmented view"):
        loss(img, txt, torch.randn(4, 2, 3), torch.randn(4, 3, 3))
    with pytest.raises(ValueError, match=r"text_aug must have shape \(4, 3\)"):
        loss(img, txt, torch.randn(4, 2, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match="without image_aug"):
        loss(img, txt, None, torch.randn(4, 3))
    with pytest.raises(ValueError, match="same number of pairs"):
        loss(img, txt[:3])
    with pytest.raises(ValueError, match="finite"):
        loss(img, txt, torch.full((4, 1, 3), float("nan")))


# --------------------------------------------------------------------------------------------------
# MIL-NCE
# --------------------------------------------------------------------------------------------------


def milnce_ref(
    video: Tensor,
    text: Tensor,
    mask: Tensor | None,
    tau: float,
    symmetric: bool = True,
    normalize: bool = True,
) -> Tensor:
    """Dense float64 docs/methods.md section 2.4: l_i = -log(sum_P e^{s/t} / (sum_P e^{s/t} + sum_N e^{s/t})),
    N = (v_i, other videos' texts) [+ (other videos, v_i's texts) when symmetric]."""
    b, p, _ = text.shape
    v, t = video.to(F64), text.to(F64)
    if normalize:
        v, t = _unit(v), _unit(t)
    mask = torch.ones(b, p, dtype=torch.bool) if mask is None else mask
    sims = torch.einsum("id,jpd->ijp", v, t) / tau  # video i against text p of video j
    out = []
    for i in range(b):
        pos = sims[i, i][mask[i]]
        negs = [sims[i, j][mask[j]] for j in range(b) if j != i]
        if symmetric:
            negs += [sims[j, i][mask[i]] for j in range(b) if j != i]
        everything = torch.cat([pos, *negs])
        out.append(torch.logsumexp(everything, 0) - torch.logsumexp(pos, 0))
    return torch.stack(out)


MIL_CASES = [
    (b, p, d, tau, sym, norm, masked)
    for (b, p, d) in [(1, 1, 3), (2, 3, 4), (6, 4, 5)]
    for tau in (0.07, 0.5)
    for sym in (False, True)
    for norm in (False, True)
    for masked in (False, True)
]


@pytest.mark.parametrize(("b", "p", "d", "tau", "sym", "norm", "masked"), MIL_CASES)
def test_milnce_value_and_grad_vs_reference(
    b: int, p: int, d: int, tau: float, sym: bool, norm: bool, masked: bool
) -> None:
    video, text = _randn(b, d, seed=1), _randn(b, p, d, seed=2)
    if not norm:  # raw dot products at tau 0.07 are huge: keep the reference comparison meaningful
        video, text = (
            (0.3 * video).detach().requires_grad_(True),
            (0.3 * text).detach().requires_grad_(True),
        )
    mask = None
    if masked:
        mask = torch.rand(b, p, generator=torch.Generator().manual_seed(3)) > 0.4
        mask[:, 0] = True
    loss = MILNCE(temperature=tau, symmetric=sym, normalize=norm, reduction="none", chunk_size=2)
    out = loss(video, text, mask)
    ref = milnce_ref(video, text, mask, tau, sym, norm)
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-10)
    w = torch.linspace(0.5, 1.5, b, dtype=F64)
    g_out = torch.autograd.grad((out * w).sum(), [video, text])
    g_ref = torch.autograd.grad((ref * w).sum(), [video, text])
    for x, r in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(x, r, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("tau", [0.07, 0.2, 1.0])
def test_milnce_hand_case(tau: float) -> None:
    """Orthonormal videos, each text equal to its video, one candidate: the positive is e^{1/t},
    each of the B - 1 negatives per direction e^0."""
    b = 4
    v = torch.eye(b, dtype=F64)
    text = v.unsqueeze(1)
    e = math.exp(1 / tau)
    one_way = MILNCE(temperature=tau, symmetric=False)(v, text).item()
    assert one_way == pytest.approx(-math.log(e / (e + b - 1)), rel=1e-12)
    both = MILNCE(temperature=tau)(v, text).item()
    assert both == pytest.approx(-math.log(e / (e + 2 * (b - 1))), rel=1e-12)
    # a second candidate equal to the first doubles the numerator (and adds it to the denominator)
    doubled = MILNCE(temperature=tau, symmetric=False)(v, torch.cat([text, text], 1)).item()
    assert doubled == pytest.approx(-math.log(2 * e / (2 * e + 2 * (b - 1))), rel=1e-12)


def test_milnce_single_candidate_one_way_is_clip_direction() -> None:
    video, text = _randn(5, 4, seed=4), _randn(5, 4, seed=5)
    out = MILNCE(temperature=0.1, symmetric=False, reduction="none")(video, text.unsqueeze(1))
    expected = _ce(_unit(video) @ _unit(text).T / 0.1, 0.0)
    torch.testing.assert_close(out, expected)


def test_milnce_masked_candidates_are_ignored() -> None:
    video, text = _randn(3, 4, seed=6), _randn(3, 3, 4, seed=7)
    mask = torch.tensor([[True, False, True], [True, True, False], [True, False, False]])
    out = MILNCE(reduction="none")(video, text, mask)
    garbage = text.detach().clone()
    garbage[~mask] = 100.0
    torch.testing.assert_close(MILNCE(reduction="none")(video, garbage, mask), out)


def test_milnce_single_video_and_reductions() -> None:
    video, text = _randn(1, 3, seed=8), _randn(1, 2, 3, seed=9)
    out = MILNCE()(video, text)
    assert out.item() == pytest.approx(0.0, abs=1e-12)  # no negatives at all
    out.backward()
    v, t = _randn(4, 3, seed=10), _randn(4, 2, 3, seed=11)
    per = MILNCE(reduction="none")(v, t)
    torch.testing.assert_close(MILNCE()(v, t), per.mean())
    torch.testing.assert_close(MILNCE(reduction="sum")(v, t), per.sum())


def test_milnce_gradcheck() -> None:
    video, text = _randn(3, 2, seed=12), _randn(3, 2, 2, seed=13)
    mask = torch.tensor([[True, True], [True, False], [False, True]])
    loss = MILNCE(temperature=0.5, chunk_size=1)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, mask), (video, text))


def test_milnce_errors() -> None:
    v, t = torch.randn(3, 4), torch.randn(3, 2, 4)
    with pytest.raises(ValueError, match="temperature"):
        MILNCE(temperature=0.0)
    with pytest.raises(ValueError, match=r"text must have shape \(3, P, 4\)"):
        MILNCE()(v, t[:, 0])
    with pytest.raises(ValueError, match=r"text must have shape"):
        MILNCE()(v, t[:2])
    with pytest.raises(TypeError, match="mask must be a bool tensor"):
        MILNCE()(v, t, torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 2\)"):
        MILNCE()(v, t, torch.ones(3, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="at least one valid candidate"):
        MILNCE()(v, t, torch.tensor([[True, False], [False, False], [True, True]]))
    with pytest.raises(ValueError, match="finite"):
        MILNCE()(v * float("inf"), t)
