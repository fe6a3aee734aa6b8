"""Tests of contrastkit.eval.monitor (epoch_metrics, geometry_metrics, the default rule, subset)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from contrastkit.data import ArrayDataset
from contrastkit.eval import (
    alignment,
    effective_rank,
    epoch_metrics,
    geometry_metrics,
    tolerance,
    uniformity,
)
from contrastkit.eval.monitor import (
    EVERY_EPOCH_SAMPLES,
    auto_monitor_every,
    monitor_sizes,
    read_metric,
    subset,
)
from contrastkit.views import ViewAugment, preset


def _one_hot_dataset(n_per_class: int, k: int, *, seed: int = 0, side: int = 4) -> ArrayDataset:
    """Images with one bright pixel at position ``label`` (a one-hot code of the class)."""
    labels = torch.arange(k).repeat_interleave(n_per_class)
    labels = labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]
    images = torch.zeros(labels.numel(), 1, side, side)
    images.view(labels.numel(), -1)[torch.arange(labels.numel()), labels] = 1.0
    return ArrayDataset(images=images, labels=labels, name="onehot", num_classes=k)


class _Flatten(nn.Module):
    """A parameter-free 'encoder': the flattened pixels, with a batch norm to check the modes."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(dim, affine=False, track_running_stats=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)


# --- subset ---------------------------------------------------------------------------------------


def test_subset_is_seeded_ordered_and_sized() -> None:
    n = 50
    ids = torch.arange(n, dtype=torch.float32)
    images = (ids / n).view(n, 1, 1, 1).expand(n, 1, 2, 2).contiguous()  # pixel = index / n
    data = ArrayDataset(images=images, labels=torch.arange(n) % 5, name="ids", num_classes=5)
    a = subset(data, 7, seed=3)
    b = subset(data, 7, seed=3)
    c = subset(data, 7, seed=4)
    assert len(a) == 7 and a.num_classes == 5 and a.name == "ids"
    torch.testing.assert_close(a.images, b.images)
    assert not torch.equal(a.images, c.images)
    picked = torch.round(a.images[:, 0, 0, 0] * n).long()
    assert picked.tolist() == sorted(set(picked.tolist()))  # distinct rows, original order
    torch.testing.assert_close(a.labels, picked % 5)  # labels travel with their images


def test_subset_of_a_small_dataset_is_the_dataset() -> None:
    data = _one_hot_dataset(2, 3)
    assert subset(data, 6, seed=0) is data
    assert subset(data, 100, seed=0) is data


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, 0), ValueError),
        ((3, -1), ValueError),
        ((2.5, 0), TypeError),
    ],
)
def test_subset_rejects_bad_arguments(args: tuple[object, object], error: type) -> None:
    with pytest.raises(error):
        subset(_one_hot_dataset(3, 2), *args)  # type: ignore[arg-type]


def test_subset_rejects_non_datasets() -> None:
    with pytest.raises(TypeError, match="ArrayDataset"):
        subset(torch.zeros(3, 1, 2, 2), 2)  # type: ignore[arg-type]


# --- epoch_metrics --------------------------------------------------------------------------------


def test_known_answers_on_one_hot_features() -> None:
    k, m = 4, 6
    train = _one_hot_dataset(m, k, seed=1)
    test = _one_hot_dataset(m, k, seed=2)
    out = epoch_metrics(_Flatten(16), train, test, k=5)
    assert set(out) == {"knn_acc", "uniformity_h", "tolerance_h", "effective_rank_h"}
    assert all(isinstance(v, float) for v in out.values())
    assert out["knn_acc"] == 1.0
    # Balanced centred one-hot codes of k classes have k - 1 equal singular values.
    assert out["effective_rank_h"] == pytest.approx(k - 1, rel=1e-5)
    # Normalised one-hot: distance^2 is 0 within a class and 2 across classes.
    n = k * m
    same, other = k * m * (m - 1), n * (n - m)
    expected = math.log((same + other * math.exp(-4.0)) / (n * (n - 1)))
    assert out["uniformity_h"] == pytest.approx(expected, rel=1e-6)
    assert out["tolerance_h"] == pytest.approx(1.0)  # same class: the same code


def test_matches_the_geometry_functions() -> None:
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(30, 1, 3, 3, generator=gen)
    labels = torch.randint(0, 3, (30,), generator=gen)
    data = ArrayDataset(images=images, labels=labels, name="r", num_classes=3)
    torch.manual_seed(0)  # the layer's initial weights (kNN's margin depends on them)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(9, 5))
    out = epoch_metrics(enc, data, data)
    with torch.no_grad():
        feats = enc(images)
    assert out["uniformity_h"] == pytest.approx(uniformity(feats), rel=1e-5)
    assert out["effective_rank_h"] == pytest.approx(effective_rank(feats), rel=1e-5)
    assert out["tolerance_h"] == pytest.approx(tolerance(feats, labels), rel=1e-5)
    # Each held-out row finds itself among the train rows (same data), so kNN beats chance.
    assert out["knn_acc"] > 0.5


def test_alignment_only_with_augment() -> None:
    data = _one_hot_dataset(4, 3)
    enc = _Flatten(16)
    calls: list[object] = []

    def identity(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        calls.append(generator)
        return x.clone()

    out = epoch_metrics(enc, data, data, augment=identity)
    assert out["alignment_h"] == pytest.approx(0.0, abs=1e-12)
    assert len(calls) == 2 and all(isinstance(g, torch.Generator) for g in calls)

    def noisy(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + 0.5 * torch.rand(x.shape, generator=generator)

    noisy_out = epoch_metrics(enc, data, data, augment=noisy)
    assert noisy_out["alignment_h"] > 0.01
    assert "alignment_h" not in epoch_metrics(enc, data, data)


def test_view_augment_is_used_and_seeded() -> None:
    gen = torch.Generator().manual_seed(1)
    images = torch.rand(12, 1, 8, 8, generator=gen)
    data = ArrayDataset(images=images, labels=torch.arange(12) % 2, name="d", num_classes=2)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 6))
    aug = ViewAugment(preset("digits", channels=1, image_size=8))
    before = torch.get_rng_state()
    first = epoch_metrics(enc, data, data, augment=aug)
    second = epoch_metrics(enc, data, data, augment=aug)
    assert torch.equal(torch.get_rng_state(), before)  # the global generator is not used
    assert first == second  # fixed view seed: the same numbers for the same encoder
    assert 0.0 < first["alignment_h"] <= 4.0


def test_k_is_capped_and_modes_restored() -> None:
    data = _one_hot_dataset(2, 2)
    enc = _Flatten(16)
    enc.train()
    out = epoch_metrics(enc, data, data, k=1000)
    assert 0.0 <= out["knn_acc"] <= 1.0
    assert enc.training and enc.bn.training


def test_single_heldout_image_has_no_uniformity() -> None:
    data = _one_hot_dataset(3, 2)
    one = subset(data, 1, seed=0)
    out = epoch_metrics(_Flatten(16), data, one)
    assert "uniformity_h" not in out and "tolerance_h" not in out and "knn_acc" in out


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"encoder": "net"}, TypeError, "encoder"),
        ({"train_subset": torch.zeros(2)}, TypeError, "train_subset"),
        ({"k": 0}, ValueError, "k"),
        ({"augment": 3}, TypeError, "augment"),
        ({"head": "mlp"}, TypeError, "head"),
    ],
)
def test_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    data = _one_hot_dataset(2, 2)
    args: dict[str, object] = {"encoder": _Flatten(16), "train_subset": data, "heldout": data}
    args.update(kwargs)
    enc, train, held = args.pop("encoder"), args.pop("train_subset"), args.pop("heldout")
    with pytest.raises(error, match=match):
        epoch_metrics(enc, train, held, **args)  # type: ignore[arg-type]


# --- both spaces ------------------------------------------------------------------------------


def test_head_adds_the_z_space_computed_on_the_head_output() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(24, 1, 3, 3, generator=gen)
    labels = torch.arange(24) % 3
    data = ArrayDataset(images=images, labels=labels, name="r", num_classes=3)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(9, 6))
    head = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4))

    def noisy(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return x + 0.3 * torch.rand(x.shape, generator=generator)

    out = epoch_metrics(enc, data, data, augment=noisy, head=head)
    names = ("alignment", "uniformity", "tolerance", "effective_rank")
    assert {f"{n}_{s}" for n in names for s in "hz"} | {"knn_acc"} == set(out)
    with torch.no_grad():
        h = enc(images)
        z = head(h)
        g = torch.Generator().manual_seed(0)  # the monitor's fixed view seed
        v1, v2 = noisy(images, generator=g), noisy(images, generator=g)
        z1, z2 = head(enc(v1)), head(enc(v2))
    assert out["uniformity_z"] == pytest.approx(uniformity(z), rel=1e-5)
    assert out["tolerance_z"] == pytest.approx(tolerance(z, labels), rel=1e-5)
    assert out["effective_rank_z"] == pytest.approx(effective_rank(z), rel=1e-5)
    assert out["alignment_z"] == pytest.approx(alignment(z1, z2), rel=1e-5)
    assert out["uniformity_h"] == pytest.approx(uniformity(h), rel=1e-5)
    assert out["uniformity_z"] != pytest.approx(out["uniformity_h"])


def test_geometry_metrics_matches_the_monitor_and_is_seeded() -> None:
    gen = torch.Generator().manual_seed(4)
    images = torch.rand(20, 1, 8, 8, generator=gen)
    labels = torch.arange(20) % 4
    data = ArrayDataset(images=images, labels=labels, name="g", num_classes=4)
    enc = nn.Sequential(nn.Flatten(), nn.Linear(64, 6))
    head = nn.Linear(6, 3)
    aug = ViewAugment(preset("digits", channels=1, image_size=8))
    final = geometry_metrics(enc, images, labels, head=head, augment=aug)
    monitored = epoch_metrics(enc, data, data, augment=aug, head=head)
    assert final == {k: v for k, v in monitored.items() if k != "knn_acc"}  # seed 0: same views
    other = geometry_metrics(enc, images, labels, head=head, augment=aug, seed=1)
    assert other["alignment_z"] != final["alignment_z"]  # other views
    assert other["tolerance_z"] == final["tolerance_z"]  # no randomness
    with pytest.raises(ValueError, match="labels"):
        geometry_metrics(enc, images, labels[:3])
    with pytest.raises(TypeError, match="head"):
        geometry_metrics(enc, images, labels, head=3)  # type: ignore[arg-type]


# --- the default rule and the readers ---------------------------------------------------------


def test_auto_monitor_every_is_every_epoch_from_1000_samples() -> None:
    assert EVERY_EPOCH_SAMPLES == 1000
    assert auto_monitor_every(1347) == 1  # digits: the demo is monitored every epoch
    assert auto_monitor_every(60_000) == 1
    assert auto_monitor_every(1000) == 1
    assert auto_monitor_every(999) == 2
    assert auto_monitor_every(500) == 2
    assert auto_monitor_every(100) == 10
    assert auto_monitor_every(1) == 1000
    with pytest.raises(ValueError, match="n_train"):
        auto_monitor_every(0)


def test_monitor_sizes_grow_with_the_classes() -> None:
    assert monitor_sizes(10) == (256, 128)
    assert monitor_sizes(100) == (2000, 400)
    with pytest.raises(ValueError, match="num_classes"):
        monitor_sizes(0)


def test_read_metric_reads_legacy_keys_and_skips_non_numbers() -> None:
    old = {"alignment": 0.5, "uniformity": -1.0, "effective_rank": 3, "knn_acc": True}
    assert read_metric(old, "alignment_h") == 0.5
    assert read_metric(old, "uniformity_h") == -1.0
    assert read_metric(old, "effective_rank_h") == 3.0
    assert read_metric(old, "alignment_z") is None  # an old run has no z
    assert read_metric(old, "knn_acc") is None  # a bool is not a number
    assert read_metric({"alignment_h": float("nan"), "alignment": 0.2}, "alignment_h") == 0.2
