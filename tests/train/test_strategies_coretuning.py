"""Core-tuning (docs/methods.md 3.5): hard-pair mining and mixing, the loss, its flags, the loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.losses import FocalSupCon
from contrastkit.train.core import NonFiniteLossError
from contrastkit.train.strategies.coretuning import (
    CoreTuningLoss,
    core_tune,
    hard_pair_indices,
    hard_pair_mixing,
    soft_label_ids,
)

# Rows 0-2 are class 0 with all pairwise cosines > 0; row 3 is class 1, opposite to row 0.
F4 = torch.tensor([[1.0, 0.0], [0.8, 0.6], [0.6, 0.8], [-1.0, 0.0]], dtype=torch.float64)
Y4 = torch.tensor([0, 0, 0, 1])


def test_intended_hard_pairs_by_hand() -> None:
    neg, pos = hard_pair_indices(F4, Y4)
    # cosines: s01 .8, s02 .6, s12 .96, s03 -1, s13 -.8, s23 -.6
    # row 0: positives 1 (.8), 2 (.6) -> 2; row 1: 0 (.8), 2 (.96) -> 0; row 2: 0 (.6), 1 -> 0
    assert pos.tolist() == [2, 0, 0, 3]  # row 3 has no positive: itself
    assert neg.tolist() == [3, 3, 3, 2]  # row 3: the most similar of rows 0-2 is row 2 (-.6)


def test_reference_index_rules_reproduce_the_bug() -> None:
    neg, pos = hard_pair_indices(F4, Y4, reference_argmin=True)
    # argmin of sim * positive_mask: a masked zero wins for every row (all positive sims > 0):
    # rows 1, 2 pick themselves (their own zero comes first), rows 0, 3 pick index 0 -> self
    assert pos.tolist() == [0, 1, 2, 3]
    # argmax of sim * negative_mask: all true negatives are < 0, so a masked zero (index 0) wins,
    # i.e. rows 1, 2 get a *positive* as "hardest negative"; row 3 gets itself
    assert neg.tolist() == [0, 0, 0, 3]


def test_reference_fallback_replaces_index_zero_with_self() -> None:
    # sample 0 really is row 2's least similar positive, but index 0 means "self" to the reference
    f = torch.tensor([[1.0, 0.0], [0.9, 0.1], [-0.1, 1.0], [0.0, -1.0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 1])
    _, pos_ref = hard_pair_indices(f, y, reference_argmin=True)
    _, pos = hard_pair_indices(f, y)
    # row 2: cosine to 0 is -0.0995, to 1 is ~0.0 (positive but small): true hardest is 0
    assert pos[2].item() == 0
    assert pos_ref[2].item() == 2  # the misfiring fallback


def test_mixing_formulas_and_floor() -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.randn(6, 3, dtype=torch.float64, generator=g)
    y = torch.tensor([0, 0, 1, 1, 2, 2])
    m = hard_pair_mixing(f, y, 3, generator=torch.Generator().manual_seed(1))
    assert m.features.shape == (12, 3) and m.targets.shape == (12, 3)
    assert bool((m.lam_negative >= 0.8).all())
    lam = m.lam_negative[:, None]
    assert torch.allclose(m.features[:6], (1 - lam) * f + lam * f[m.permutation])
    lp = m.lam_positive[:, None]
    assert torch.allclose(m.features[6:], lp * f[m.hard_positive] + (1 - lp) * f[m.hard_negative])
    onehot = F.one_hot(y, 3).double()
    assert torch.allclose(
        m.targets[6:], lp * onehot[m.hard_positive] + (1 - lp) * onehot[m.hard_negative]
    )
    assert torch.allclose(m.targets.sum(1), torch.ones(12, dtype=torch.float64))
    again = hard_pair_mixing(f, y, 3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(again.features, m.features)
    no_floor = hard_pair_mixing(
        f, y, 3, min_negative_lambda=0.0, generator=torch.Generator().manual_seed(1)
    )
    assert bool((no_floor.lam_negative < 0.8).any())


def test_soft_label_ids() -> None:
    t = torch.tensor(
        [[1.0, 0, 0], [0, 1, 0], [1, 0, 0], [0.3, 0.7, 0], [0.3, 0.7, 0], [0.7, 0.3, 0]]
    )
    ids = soft_label_ids(t).tolist()
    assert ids[0] == ids[2] and ids[3] == ids[4]
    assert len({ids[0], ids[1], ids[3], ids[5]}) == 4


def _dense_core_loss(
    head: CoreTuningLoss, f: torch.Tensor, y: torch.Tensor, seed: int
) -> torch.Tensor:
    m = hard_pair_mixing(f, y, head.num_classes, generator=torch.Generator().manual_seed(seed))
    rows = torch.cat([f, m.features])
    targets = torch.cat([F.one_hot(y, head.num_classes).to(f.dtype), m.targets])
    w = head.classifier.weight
    ce = -(targets * torch.log_softmax(rows @ w.T, dim=1)).sum(1).mean()
    z = F.normalize(head.contrastor(rows), dim=1)
    con = FocalSupCon()(z[:, None], soft_label_ids(targets))
    return ce + head.eta * con


def test_loss_matches_dense_composition_and_gradcheck() -> None:
    torch.manual_seed(0)
    head = CoreTuningLoss(feature_dim=5, num_classes=3, contrast_dim=4, eta=0.5).double()
    f = torch.randn(8, 5, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    out = head(f, y, generator=torch.Generator().manual_seed(3))
    ref = _dense_core_loss(head, f, y, 3)
    assert torch.allclose(out.loss, ref)
    assert torch.allclose(out.loss, out.ce + 0.5 * out.contrastive)
    (g1,) = torch.autograd.grad(out.loss, f)
    (g2,) = torch.autograd.grad(ref, f)
    assert torch.allclose(g1, g2)

    small = f.detach()[:4].clone().requires_grad_()
    ys = y[:4]
    assert torch.autograd.gradcheck(
        lambda x: head(x, ys, generator=torch.Generator().manual_seed(3)).loss,
        (small,),
        eps=1e-6,
        atol=1e-5,
    )


def test_detach_original_flag_changes_only_the_encoder_gradient() -> None:
    torch.manual_seed(0)
    f = torch.randn(8, 5, dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    grads = {}
    head_grads = {}
    for detach in (False, True):
        torch.manual_seed(1)
        head = CoreTuningLoss(
            feature_dim=5, num_classes=3, contrast_dim=4, detach_original=detach
        ).double()
        x = f.clone().requires_grad_()
        out = head(x, y, generator=torch.Generator().manual_seed(0))
        out.loss.backward()
        grads[detach] = x.grad
        head_grads[detach] = head.classifier.weight.grad
        assert bool(torch.isfinite(out.loss))
    # same value, same head gradient, different encoder gradient (originals carry none)
    assert torch.allclose(head_grads[False], head_grads[True])
    assert not torch.allclose(grads[False], grads[True])
    assert float(grads[True].abs().sum()) > 0  # still gets gradient through the mixed rows
    # with detached originals, the gradient equals that of the mixed rows alone
    torch.manual_seed(1)
    head = CoreTuningLoss(feature_dim=5, num_classes=3, contrast_dim=4).double()
    x = f.clone().requires_grad_()
    m = hard_pair_mixing(x, y, 3, generator=torch.Generator().manual_seed(0))
    rows = torch.cat([f, m.features])  # constant originals
    targets = torch.cat([F.one_hot(y, 3).double(), m.targets])
    ce = -(targets * torch.log_softmax(head.classifier(rows), 1)).sum(1).mean()
    con = FocalSupCon()(F.normalize(head.contrastor(rows), dim=1)[:, None], soft_label_ids(targets))
    (ce + 0.1 * con).backward()
    assert torch.allclose(x.grad, grads[True])


def test_reference_argmin_flag_changes_mixtures() -> None:
    head_i = CoreTuningLoss(feature_dim=2, num_classes=2, contrast_dim=2).double()
    head_r = CoreTuningLoss(
        feature_dim=2, num_classes=2, contrast_dim=2, reference_argmin=True
    ).double()
    head_r.load_state_dict(head_i.state_dict())
    a = head_i(F4, Y4, generator=torch.Generator().manual_seed(0))
    b = head_r(F4, Y4, generator=torch.Generator().manual_seed(0))
    assert a.mixed.hard_positive.tolist() != b.mixed.hard_positive.tolist()
    assert not torch.allclose(a.loss, b.loss)


def test_loss_errors() -> None:
    with pytest.raises(ValueError, match="num_classes"):
        CoreTuningLoss(feature_dim=4, num_classes=1)
    with pytest.raises(TypeError, match="detach_original"):
        CoreTuningLoss(feature_dim=4, num_classes=2, detach_original=1)  # type: ignore[arg-type]
    head = CoreTuningLoss(feature_dim=4, num_classes=2)
    with pytest.raises(ValueError, match="dim 4"):
        head(torch.randn(3, 5), torch.tensor([0, 1, 0]))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        hard_pair_mixing(torch.randn(3, 4), torch.tensor([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="min_negative_lambda"):
        hard_pair_mixing(torch.randn(3, 4), torch.tensor([0, 1, 1]), 2, min_negative_lambda=1.5)


def _blobs(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat(n // 3)
    centres = torch.tensor([[2.0, 0, 0, 0], [0, 2.0, 0, 0], [0, 0, 2.0, 0]])
    return centres[y] + torch.randn(len(y), 4, generator=g), y


def test_core_tune_both_methods_same_budget_and_seeded() -> None:
    train, test = _blobs(60, 0), _blobs(30, 1)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    before = [p.clone() for p in enc.parameters()]
    runs = {
        m: core_tune(enc, train, test, method=m, epochs=20, batch_size=16, lr=1e-2, seed=0)
        for m in ("core", "ce")
    }
    assert all(torch.equal(a, b) for a, b in zip(before, enc.parameters(), strict=True))
    for run in runs.values():
        assert len(run.epoch_losses) == 20 and 0.6 < run.accuracy <= 1.0
    again = core_tune(enc, train, test, method="core", epochs=20, batch_size=16, lr=1e-2, seed=0)
    assert (
        again.accuracy == runs["core"].accuracy and again.epoch_losses == runs["core"].epoch_losses
    )
    with pytest.raises(ValueError, match="method"):
        core_tune(enc, train, test, method="mixup")


def test_core_tune_methods_see_the_same_batches_and_augmentations() -> None:
    """Regression: the mixing draws once shared the batch generator, so after the first Core step
    CE and Core saw different batch orders and augmentations at the same seed."""
    train, test = _blobs(60, 0), _blobs(30, 1)
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    seen: dict[str, list[torch.Tensor]] = {"core": [], "ce": []}
    for method in ("core", "ce"):

        def augment(x: torch.Tensor, generator: torch.Generator, m: str = method) -> torch.Tensor:
            out = x + 0.1 * torch.randn(x.shape, generator=generator)
            seen[m].append(out.clone())
            return out

        core_tune(enc, train, test, method=method, epochs=3, batch_size=16, seed=5, augment=augment)
    assert len(seen["core"]) == len(seen["ce"]) == 3 * 4
    assert all(torch.equal(a, b) for a, b in zip(seen["core"], seen["ce"], strict=True))


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x + 0.05 * torch.randn(x.shape, generator=generator)


# Recorded from the hand-written loop core_tune had before it moved onto the training core;
# the port must reproduce them (same batches, same draws of both generators).
ORIGINAL_LOOP = {
    "core": (
        {"method": "core", "epochs": 3, "batch_size": 16, "seed": 0},
        60,
        [1.2664141496022543, 1.2032523552576702, 1.1936897118886312],
        0.3333333333333333,
    ),
    "ce": (
        {"method": "ce", "epochs": 3, "batch_size": 16, "seed": 0},
        60,
        [1.2437894582748412, 1.1743459304173787, 1.1514581282933554],
        0.3333333333333333,
    ),
    "core_sgd_detach_augmented": (
        {
            "method": "core",
            "epochs": 2,
            "batch_size": 13,
            "seed": 2,
            "optimizer": "sgd",
            "augment": _augment,
            "detach_original": True,
        },
        60,
        [1.1258680800596872, 1.1001080413659414],
        0.43333333333333335,
    ),
    "core_last_batch_of_one_dropped": (
        {"method": "core", "epochs": 2, "batch_size": 31, "seed": 6, "augment": _augment},
        63,
        [1.1111528873443604, 1.0881631970405579],
        0.36666666666666664,
    ),
    "core_reference_argmin": (
        {
            "method": "core",
            "epochs": 2,
            "batch_size": 16,
            "seed": 3,
            "reference_argmin": True,
            "eta": 1.0,
        },
        60,
        [1.5334485371907551, 1.5303971608479818],
        0.4666666666666667,
    ),
}


@pytest.mark.parametrize("case", sorted(ORIGINAL_LOOP))
def test_core_tune_numbers_match_the_original_loop(case: str) -> None:
    kwargs, n, losses, accuracy = ORIGINAL_LOOP[case]
    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    run = core_tune(enc, _blobs(n, 0), _blobs(30, 1), lr=1e-2, **kwargs)  # type: ignore[arg-type]
    assert run.epoch_losses == pytest.approx(losses, abs=1e-6)
    assert run.accuracy == pytest.approx(accuracy)


@pytest.mark.parametrize("method", ["core", "ce"])
def test_core_tune_non_finite_loss_stops_with_the_step(method: str) -> None:
    calls: list[int] = []

    def poison(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        calls.append(1)
        return x * math.nan if len(calls) == 6 else x

    torch.manual_seed(0)
    enc = nn.Sequential(nn.Linear(4, 8), nn.ReLU())
    with pytest.raises(NonFiniteLossError, match=f"{method} fine-tuning stopped") as info:
        core_tune(
            enc,
            _blobs(60, 0),
            _blobs(30, 1),
            method=method,
            epochs=2,
            augment=poison,
            batch_size=16,
        )
    assert "epoch 2, step 2 (optimizer step 6)" in str(info.value)
    assert isinstance(info.value, FloatingPointError) and not isinstance(info.value, ValueError)
