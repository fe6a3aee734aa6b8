"""PatchSelectionInfoNCE (docs/methods.md section 3.7), BilinearInfoNCE, ListwiseKL, ListwiseWasserstein1D
(3.10), BinaryNCE (4)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import wasserstein_distance
from torch import Tensor

from contrastkit.losses.objectives import (
    BilinearInfoNCE,
    BinaryNCE,
    ListwiseKL,
    ListwiseWasserstein1D,
    PatchSelectionInfoNCE,
)

F64 = torch.float64


def _randn(*shape: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=F64, requires_grad=True)


def _check_value_and_grad(out: Tensor, ref: Tensor, inputs: list[Tensor]) -> None:
    torch.testing.assert_close(out, ref, rtol=1e-9, atol=1e-11)
    w = torch.linspace(0.5, 1.5, out.numel(), dtype=F64).reshape(out.shape)
    g_out = torch.autograd.grad((out * w).sum(), inputs)
    g_ref = torch.autograd.grad((ref * w).sum(), inputs)
    for a, r in zip(g_out, g_ref, strict=True):
        torch.testing.assert_close(a, r, rtol=1e-9, atol=1e-11)


# --------------------------------------------------------------------------------------------------
# PatchSelectionInfoNCE
# --------------------------------------------------------------------------------------------------


def patch_ref(
    q: Tensor,
    c: Tensor,
    mask: Tensor | None,
    tau: float,
    normalize: bool = False,
    cross_image: bool = False,
) -> Tensor:
    """Dense (B, M) reference: l_bm = -log softmax_p(v_bm . h_bp / tau)[m] over the valid p of the
    same image (every valid (b', p) when cross_image); 0 at masked positions."""
    b, m, _ = q.shape
    if normalize:
        q, c = q / q.norm(dim=-1, keepdim=True), c / c.norm(dim=-1, keepdim=True)
    mask = torch.ones(b, m, dtype=torch.bool) if mask is None else mask
    out = torch.zeros(b, m, dtype=F64)
    for i in range(b):
        for j in range(m):
            if not mask[i, j]:
                continue
            if cross_image:
                logits = (c.reshape(b * m, -1) @ q[i, j]) / tau
                keep = mask.reshape(-1)
                target = i * m + j
            else:
                logits = (c[i] @ q[i, j]) / tau
                keep = mask[i]
                target = j
            logits = logits.masked_fill(~keep, float("-inf"))
            out[i, j] = -torch.log_softmax(logits, dim=0)[target]
    return out


PATCH_CASES = [
    (b, m, d, tau, norm, cross, masked)
    for (b, m, d) in [(1, 1, 3), (2, 4, 5), (3, 6, 4)]
    for tau in (None, 0.1)
    for norm in (False, True)
    for cross in (False, True)
    for masked in (False, True)
]


@pytest.mark.parametrize(("b", "m", "d", "tau", "norm", "cross", "masked"), PATCH_CASES)
def test_patch_selection_vs_reference(
    b: int, m: int, d: int, tau: float | None, norm: bool, cross: bool, masked: bool
) -> None:
    q, c = _randn(b, m, d, seed=1), _randn(b, m, d, seed=2)
    mask = None
    if masked:
        mask = torch.rand(b, m, generator=torch.Generator().manual_seed(3)) > 0.3
        mask[:, 0] = True
    loss = PatchSelectionInfoNCE(
        temperature=tau, normalize=norm, cross_image=cross, reduction="none", chunk_size=2
    )
    out = loss(q, c, mask)
    ref = patch_ref(q, c, mask, 1.0 if tau is None else tau, norm, cross)
    _check_value_and_grad(out, ref, [q, c])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_patch_selection_reductions_mean_over_valid(reduction: str) -> None:
    q, c = _randn(3, 4, 3, seed=4), _randn(3, 4, 3, seed=5)
    mask = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 1, 0]], dtype=torch.bool)
    ref = patch_ref(q, c, mask, 1.0)
    expected = ref.sum() / mask.sum() if reduction == "mean" else ref.sum()
    out = PatchSelectionInfoNCE(reduction=reduction)(q, c, mask)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-11)


def test_patch_selection_hand_case_and_distractors_are_same_image() -> None:
    """Orthonormal patches, query = own patch: l = -log(e / (e + M - 1)) with M patches per image;
    a second, identical image does not change it (Selfie) but does in the CPC form."""
    m = 3
    h = torch.eye(m, dtype=F64).unsqueeze(0)
    expected = -math.log(math.e / (math.e + m - 1))
    assert PatchSelectionInfoNCE()(h, h).item() == pytest.approx(expected, rel=1e-12)
    two = torch.cat([h, h])
    assert PatchSelectionInfoNCE()(two, two).item() == pytest.approx(expected, rel=1e-12)
    cpc = PatchSelectionInfoNCE(cross_image=True)(two, two).item()
    # CPC: the same patch of the other image is a distractor with logit 1: e / (2e + 2(M - 1))
    assert cpc == pytest.approx(-math.log(math.e / (2 * math.e + 2 * (m - 1))), rel=1e-12)


def test_patch_selection_gradcheck() -> None:
    q, c = _randn(2, 3, 2, seed=6), _randn(2, 3, 2, seed=7)
    mask = torch.tensor([[True, True, False], [True, True, True]])
    loss = PatchSelectionInfoNCE(temperature=0.5, normalize=True, chunk_size=2)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b, mask), (q, c))


def test_patch_selection_errors() -> None:
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="3 dimensions"):
        PatchSelectionInfoNCE()(q[0], q[0])
    with pytest.raises(ValueError, match="candidates must have the shape of query"):
        PatchSelectionInfoNCE()(q, q[:, :2])
    with pytest.raises(TypeError, match="candidate_mask must be a bool tensor"):
        PatchSelectionInfoNCE()(q, q, torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"candidate_mask must have shape \(2, 3\)"):
        PatchSelectionInfoNCE()(q, q, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="temperature"):
        PatchSelectionInfoNCE(temperature=0.0)
    with pytest.raises(ValueError, match="finite"):
        PatchSelectionInfoNCE()(q * float("nan"), q)


# --------------------------------------------------------------------------------------------------
# BilinearInfoNCE
# --------------------------------------------------------------------------------------------------


def bilinear_ref(pred: Tensor, target: Tensor, w: Tensor) -> Tensor:
    """TACO: logits = pred W target^T, row max subtracted, CE with diagonal labels (per row)."""
    logits = pred @ w @ target.T
    logits = logits - logits.max(dim=1, keepdim=True).values
    return F.cross_entropy(logits, torch.arange(pred.shape[0]), reduction="none")


@pytest.mark.parametrize(("b", "d", "dt"), [(1, 3, 3), (4, 5, 5), (9, 3, 6)])
def test_bilinear_vs_reference(b: int, d: int, dt: int) -> None:
    loss = BilinearInfoNCE(dim=d, target_dim=dt, reduction="none", chunk_size=2).double()
    pred, target = _randn(b, d, seed=1), _randn(b, dt, seed=2)
    out = loss(pred, target)
    ref = bilinear_ref(pred, target, loss.W)
    _check_value_and_grad(out, ref, [pred, target, loss.W])


def test_bilinear_init_uniform_and_logits_helper() -> None:
    torch.manual_seed(0)
    loss = BilinearInfoNCE(dim=30, target_dim=20)
    assert loss.W.shape == (30, 20)
    assert loss.W.min() >= 0 and loss.W.max() < 1 and loss.W.std() > 0.2
    pred, target = torch.randn(4, 30), torch.randn(4, 20)
    torch.testing.assert_close(loss.logits(pred, target), pred @ loss.W @ target.T)


def test_bilinear_hand_case_and_no_normalisation() -> None:
    loss = BilinearInfoNCE(dim=3).double()
    with torch.no_grad():
        loss.W.copy_(torch.eye(3, dtype=F64))
    x = torch.eye(3, dtype=F64)
    assert loss(x, x).item() == pytest.approx(-math.log(math.e / (math.e + 2)), rel=1e-12)
    # raw dot products: scaling the inputs changes the loss (no normalisation, no temperature)
    s = 2.0
    e = math.exp(s * s)
    assert loss(s * x, s * x).item() == pytest.approx(-math.log(e / (e + 2)), rel=1e-12)


def test_bilinear_gradcheck() -> None:
    loss = BilinearInfoNCE(dim=2, target_dim=3, chunk_size=1).double()
    pred, target = _randn(3, 2, seed=3), _randn(3, 3, seed=4)
    assert torch.autograd.gradcheck(lambda a, b: loss(a, b), (pred, target))


def test_bilinear_errors() -> None:
    with pytest.raises(ValueError, match="dim must be an int >= 1"):
        BilinearInfoNCE(dim=0)
    with pytest.raises(TypeError, match="dim must be an int"):
        BilinearInfoNCE(dim=2.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="target_dim"):
        BilinearInfoNCE(dim=2, target_dim=-1)
    loss = BilinearInfoNCE(dim=3)
    with pytest.raises(ValueError, match="embedding dim 3"):
        loss(torch.randn(4, 2), torch.randn(4, 3))
    with pytest.raises(ValueError, match="same number of rows"):
        loss(torch.randn(4, 3), torch.randn(5, 3))


# --------------------------------------------------------------------------------------------------
# BinaryNCE
# --------------------------------------------------------------------------------------------------


def binary_nce_ref(
    pos: Tensor, neg: Tensor, mask: Tensor | None = None, mean: bool = False
) -> Tensor:
    """-log sigma(f+) - sum_k log(1 - sigma(f-_k)), written literally."""
    terms = -torch.log(1 - torch.sigmoid(neg))
    if mask is not None:
        terms = terms * mask
    k = terms.shape[1] if mask is None else mask.sum(1).clamp(min=1)
    neg_part = terms.sum(1) / k if mean else terms.sum(1)
    return -torch.log(torch.sigmoid(pos)) + neg_part


@pytest.mark.parametrize("negative_reduction", ["sum", "mean"])
@pytest.mark.parametrize("masked", [False, True])
def test_binary_nce_vs_reference(negative_reduction: str, masked: bool) -> None:
    pos, neg = _randn(6, seed=1), _randn(6, 5, seed=2)
    mask = (torch.rand(6, 5, generator=torch.Generator().manual_seed(0)) > 0.4) if masked else None
    out = BinaryNCE(negative_reduction=negative_reduction, reduction="none")(pos, neg, mask)
    ref = binary_nce_ref(pos, neg, mask, negative_reduction == "mean")
    _check_value_and_grad(out, ref, [pos, neg])


def test_binary_nce_hand_case_stability_and_reductions() -> None:
    zero = BinaryNCE(reduction="none")(torch.zeros(2, dtype=F64), torch.zeros(2, 3, dtype=F64))
    torch.testing.assert_close(zero, torch.full((2,), 4 * math.log(2), dtype=F64))
    big = BinaryNCE(reduction="none")(
        torch.tensor([-200.0, 200.0]), torch.tensor([[200.0], [-200.0]])
    )
    assert torch.isfinite(big).all()
    assert big[0].item() == pytest.approx(400.0) and big[1].item() == pytest.approx(0.0, abs=1e-6)
    pos, neg = _randn(4, seed=3), _randn(4, 2, seed=4)
    ref = binary_nce_ref(pos, neg)
    torch.testing.assert_close(BinaryNCE()(pos, neg), ref.mean())
    torch.testing.assert_close(BinaryNCE(reduction="sum")(pos, neg), ref.sum())


def test_binary_nce_gradcheck_and_optimum() -> None:
    pos, neg = _randn(3, seed=5), _randn(3, 4, seed=6)
    assert torch.autograd.gradcheck(lambda a, b: BinaryNCE()(a, b), (pos, neg))
    # d/df+ = -(1 - sigma(f+)), d/df- = sigma(f-): pushes positives up and negatives down
    p = torch.zeros(1, dtype=F64, requires_grad=True)
    n = torch.zeros(1, 1, dtype=F64, requires_grad=True)
    BinaryNCE()(p, n).backward()
    assert p.grad is not None and n.grad is not None
    assert p.grad.item() == pytest.approx(-0.5) and n.grad.item() == pytest.approx(0.5)


def test_binary_nce_errors() -> None:
    with pytest.raises(ValueError, match="negative_reduction must be one of"):
        BinaryNCE(negative_reduction="max")
    with pytest.raises(ValueError, match="1 dimensions"):
        BinaryNCE()(torch.zeros(3, 1), torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"shape \(3, K\)"):
        BinaryNCE()(torch.zeros(3), torch.zeros(2, 2))
    with pytest.raises(TypeError, match="floating-point"):
        BinaryNCE()(torch.zeros(3, dtype=torch.long), torch.zeros(3, 2))
    with pytest.raises(TypeError, match="negative_mask must be a bool"):
        BinaryNCE()(torch.zeros(3), torch.zeros(3, 2), torch.ones(3, 2))


# --------------------------------------------------------------------------------------------------
# List-wise losses
# --------------------------------------------------------------------------------------------------


def target_ref(rel: Tensor, mask: Tensor, kind: str, t: float) -> Tensor:
    rel = rel.to(F64)
    if kind == "softmax":
        return torch.softmax((rel / t).masked_fill(~mask, float("-inf")), dim=1)
    gain = rel if kind == "linear" else 2.0**rel - 1
    gain = gain * mask
    return gain / gain.sum(1, keepdim=True)


def pred_ref(scores: Tensor, mask: Tensor, t: float) -> Tensor:
    return torch.softmax((scores / t).masked_fill(~mask, float("-inf")), dim=1)


def kl_ref(scores: Tensor, rel: Tensor, mask: Tensor, t: float, kind: str, tt: float) -> Tensor:
    p, q = target_ref(rel, mask, kind, tt), pred_ref(scores, mask, t)
    out = []
    for i in range(p.shape[0]):
        keep = p[i] > 0
        out.append((p[i][keep] * torch.log(p[i][keep] / q[i][keep])).sum())
    return torch.stack(out)


def w1_ref(scores: Tensor, rel: Tensor, mask: Tensor, t: float, kind: str, tt: float) -> Tensor:
    """Sum over k of |CDF_p - CDF_q| over the valid documents sorted by decreasing relevance."""
    p, q = target_ref(rel, mask, kind, tt), pred_ref(scores, mask, t)
    out = []
    for i in range(p.shape[0]):
        idx = [int(j) for j in torch.nonzero(mask[i]).flatten()]
        idx.sort(key=lambda j: -float(rel[i, j]))  # Python's sort is stable
        ps, qs = p[i][idx], q[i][idx]
        out.append((torch.cumsum(ps, 0) - torch.cumsum(qs, 0))[:-1].abs().sum())
    return torch.stack(out)


def _lists(b: int, n: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(b, n, generator=g, dtype=F64, requires_grad=True)
    rel = torch.randint(0, 4, (b, n), generator=g).to(F64)
    rel[:, 0] = 3.0  # every list has a relevant document
    mask = torch.rand(b, n, generator=g) > 0.25
    mask[:, 0] = True
    return scores, rel, mask


LIST_CASES = [
    (cls, ref, kind, t, tt, masked)
    for cls, ref in ((ListwiseKL, kl_ref), (ListwiseWasserstein1D, w1_ref))
    for kind in ("softmax", "linear", "exp2")
    for t, tt in ((1.0, 1.0), (0.2, 0.5))
    for masked in (False, True)
]


@pytest.mark.parametrize(("cls", "ref", "kind", "t", "tt", "masked"), LIST_CASES)
def test_listwise_vs_reference(
    cls: type, ref: object, kind: str, t: float, tt: float, masked: bool
) -> None:
    scores, rel, mask = _lists(5, 6, seed=len(kind) * 10 + int(t * 10) + int(masked))
    if not masked:
        mask = torch.ones_like(mask)
    loss = cls(temperature=t, target=kind, target_temperature=tt, reduction="none")
    out = loss(scores, rel, mask if masked else None)
    expected = ref(scores, rel, mask, t, kind, tt)  # type: ignore[operator]
    _check_value_and_grad(out, expected, [scores])


def test_w1_matches_scipy_on_ranks() -> None:
    scores, rel, mask = _lists(4, 7, seed=11)
    loss = ListwiseWasserstein1D(target="linear", reduction="none")
    out = loss(scores, rel, mask)
    p, q = target_ref(rel, mask, "linear", 1.0), pred_ref(scores.detach(), mask, 1.0)
    for i in range(4):
        idx = [int(j) for j in torch.nonzero(mask[i]).flatten()]
        idx.sort(key=lambda j: -float(rel[i, j]))
        ranks = list(range(len(idx)))
        expected = wasserstein_distance(ranks, ranks, p[i][idx].numpy(), q[i][idx].numpy())
        assert out[i].item() == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_listwise_hand_cases() -> None:
    rel = torch.tensor([[2.0, 0.0, 0.0]], dtype=F64)
    uniform = torch.zeros(1, 3, dtype=F64)
    kl = ListwiseKL(target="linear")(uniform, rel)
    assert kl.item() == pytest.approx(math.log(3), rel=1e-12)
    # all predicted mass on the least relevant document: W1 = 2 (two positions away); middle: 1
    far = torch.tensor([[-100.0, -100.0, 100.0]], dtype=F64)
    near = torch.tensor([[-100.0, 100.0, -100.0]], dtype=F64)
    w1 = ListwiseWasserstein1D(target="linear")
    assert w1(far, rel).item() == pytest.approx(2.0, abs=1e-12)
    assert w1(near, rel).item() == pytest.approx(1.0, abs=1e-12)
    # KL cannot tell the two apart; W1 can
    assert ListwiseKL(target="linear")(far, rel).item() == pytest.approx(
        ListwiseKL(target="linear")(near, rel).item()
    )
    # perfect prediction: 0 for both
    good = torch.tensor([[100.0, -100.0, -100.0]], dtype=F64)
    assert ListwiseKL(target="linear")(good, rel).item() == pytest.approx(0.0, abs=1e-12)
    assert w1(good, rel).item() == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("cls", [ListwiseKL, ListwiseWasserstein1D])
def test_listwise_mask_equals_dropping_documents(cls: type) -> None:
    scores, rel, _ = _lists(3, 5, seed=12)
    mask = torch.tensor([True, True, False, True, False]).expand(3, 5)
    keep = [0, 1, 3]
    loss = cls(target="exp2", reduction="none")
    torch.testing.assert_close(loss(scores, rel, mask), loss(scores[:, keep], rel[:, keep]))


@pytest.mark.parametrize("cls", [ListwiseKL, ListwiseWasserstein1D])
def test_listwise_gradcheck(cls: type) -> None:
    scores, rel, mask = _lists(2, 4, seed=13)
    loss = cls(temperature=0.5, target="softmax")
    assert torch.autograd.gradcheck(lambda s: loss(s, rel, mask), (scores,))


def test_listwise_reductions() -> None:
    scores, rel, mask = _lists(4, 5, seed=14)
    per = ListwiseKL(reduction="none")(scores, rel, mask)
    torch.testing.assert_close(ListwiseKL()(scores, rel, mask), per.mean())
    torch.testing.assert_close(ListwiseKL(reduction="sum")(scores, rel, mask), per.sum())


def test_listwise_errors() -> None:
    scores = torch.randn(2, 3)
    rel = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    with pytest.raises(ValueError, match="target must be one of"):
        ListwiseKL(target="dcg")
    with pytest.raises(ValueError, match="target_temperature"):
        ListwiseKL(target_temperature=0.0)
    with pytest.raises(ValueError, match="relevance must have the shape of scores"):
        ListwiseKL()(scores, rel[:, :2])
    with pytest.raises(ValueError, match="relevance levels must be >= 0"):
        ListwiseKL()(scores, -rel)
    with pytest.raises(ValueError, match="at least one document with relevance > 0"):
        ListwiseWasserstein1D(target="linear")(scores, torch.zeros(2, 3))
    with pytest.raises(ValueError, match="at least one valid document"):
        ListwiseKL()(scores, rel, torch.tensor([[True, True, True], [False, False, False]]))
    with pytest.raises(TypeError, match="graded levels"):
        ListwiseKL()(scores, rel > 0)


# --------------------------------------------------------------------------------------------------
# registry entries of the loss zoo (mixing, supremix, graph, clip family, objectives)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cls", "kind", "kwargs"),
    [
        ("moco", "MoCoLoss", "queue", {}),
        ("queue_infonce", "MoCoLoss", "queue", {}),
        ("supremix", "SupReMix", "regression", {}),
        ("scgc", "NeighbourhoodContrast", "graph", {}),
        ("cliprocket", "CLIPRocketLoss", "pair", {}),
        ("milnce", "MILNCE", "bag", {}),
        ("patch_nce", "PatchSelectionInfoNCE", "patches", {}),
        ("bilinear_nce", "BilinearInfoNCE", "pair", {"dim": 4}),
        ("binary_nce", "BinaryNCE", "scores", {}),
        ("listwise_kl", "ListwiseKL", "list", {}),
        ("listwise_w1", "ListwiseWasserstein1D", "list", {}),
    ],
)
def test_zoo_registry_entries(name: str, cls: str, kind: str, kwargs: dict[str, int]) -> None:
    import contrastkit.losses as losses

    info = losses.loss_info(name)
    assert info.input_kind == kind
    assert type(losses.get_loss(name, **kwargs)) is getattr(losses, cls)
    assert name in losses.loss_names() or name == "queue_infonce"
    if name == "supremix":
        assert info.needs_labels and info.min_views == 1


def _zoo_calls() -> dict[str, object]:
    import contrastkit.losses as L

    g = torch.Generator().manual_seed(0)

    def r(*s: int) -> Tensor:
        return torch.randn(*s, generator=g)

    q, k, neg, extra = r(4, 8), r(4, 8), r(10, 8), r(4, 3, 8)
    labels = torch.tensor([1.0, 2.0, 2.0, 3.0, 4.0, 5.0])
    adj = L.normalized_adjacency(L.knn_graph(r(6, 4), 2))
    rel = torch.rand(2, 4, generator=g)
    views, nodes = r(6, 2, 8), r(6, 4)
    return {
        "moco": lambda c: L.MoCoLoss()(c(q), c(k), c(neg), c(extra)),
        "supremix": lambda c: L.SupReMix(n_mix_neg=2, n_mix_pos=2)(
            c(views), labels, torch.Generator().manual_seed(0)
        ),
        "scgc": lambda c: L.NeighbourhoodContrast()(c(nodes), adj),
        "cliprocket": lambda c: L.CLIPRocketLoss()(c(q), c(k), c(extra)),
        "milnce": lambda c: L.MILNCE()(c(q), c(extra)),
        "patch_nce": lambda c: L.PatchSelectionInfoNCE()(c(extra), c(extra.flip(1))),
        "binary_nce": lambda c: L.BinaryNCE()(c(q[:, 0]), c(k)),
        "listwise_kl": lambda c: L.ListwiseKL()(c(q[:2, :4]), rel),
        "listwise_w1": lambda c: L.ListwiseWasserstein1D()(c(q[:2, :4]), rel),
    }


@pytest.mark.parametrize("name", list(_zoo_calls()))
def test_zoo_bfloat16_inputs_use_float32_math(name: str) -> None:
    """bf16 inputs give a float32 loss equal to the float32 loss of the same (rounded) inputs."""
    call = _zoo_calls()[name]
    low = call(lambda x: x.to(torch.bfloat16))  # type: ignore[operator]
    ref = call(lambda x: x.to(torch.bfloat16).float())  # type: ignore[operator]
    assert low.dtype == torch.float32
    torch.testing.assert_close(low, ref, rtol=1e-5, atol=1e-5)
