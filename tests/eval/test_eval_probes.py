"""Tests of contrastkit.eval.probes (collect_features, layerwise_probe, attribute_probe)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.data import ArrayDataset
from contrastkit.eval import attribute_probe, collect_features, layerwise_probe, probe_layers
from contrastkit.models import ContrastiveModel, MLPHead


def _model(seed: int = 0) -> ContrastiveModel:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.BatchNorm1d(8), nn.ReLU())
    return ContrastiveModel(encoder, MLPHead(8, hidden_dim=6, out_dim=4))


def _images(n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, 4, 4, generator=torch.Generator().manual_seed(seed))


# --- collect_features -----------------------------------------------------------------------------


def test_probe_layers_of_the_simclr_head() -> None:
    assert probe_layers(_model()) == ["h", "head.net.0", "head.net.1", "z"]
    with pytest.raises(ValueError, match="encoder"):
        probe_layers(nn.Linear(2, 2))


def test_collects_h_z_and_the_hidden_layers() -> None:
    model = _model()
    model.train()
    model(_images(32, seed=5))  # move the batch-norm running statistics away from the defaults
    x = _images(20)
    feats = collect_features(model, x, probe_layers(model), batch_size=7)
    assert list(feats) == ["h", "head.net.0", "head.net.1", "z"]
    model.eval()
    with torch.no_grad():
        h, z = model(x)
        hidden = model.head.net[0](h)  # before the in-place ReLU
    torch.testing.assert_close(feats["h"], h)
    torch.testing.assert_close(feats["z"], z)
    torch.testing.assert_close(feats["head.net.0"], hidden)
    torch.testing.assert_close(feats["head.net.1"], F.relu(hidden))
    # The in-place ReLU after head.net.0 did not overwrite the copy taken by the hook.
    assert bool((feats["head.net.0"] < 0).any())
    for value in feats.values():
        assert value.dtype == torch.float32 and value.device.type == "cpu"


def test_aliases_and_full_names_agree() -> None:
    model = _model()
    x = _images(6)
    a = collect_features(model, x, ["h", "z"])
    b = collect_features(model, x, ["encoder", "head"])
    torch.testing.assert_close(a["h"], b["encoder"])
    torch.testing.assert_close(a["z"], b["head"])


def test_modes_restored_and_hooks_removed() -> None:
    model = _model()
    model.train()
    model.encoder[2].eval()
    collect_features(model, _images(5), ["h", "head.net.1"])
    assert model.training and model.head.training and not model.encoder[2].training
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_hooks_removed_when_the_model_raises() -> None:
    model = _model()
    model.train()
    with pytest.raises(RuntimeError):
        collect_features(model, torch.rand(3, 1, 5, 5), ["h"])  # 25 inputs for Linear(16, .)
    assert model.training
    assert all(len(m._forward_hooks) == 0 for m in model.modules())


def test_conv_outputs_flattened_or_pooled() -> None:
    net = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(48, 2))
    x = _images(4)
    flat = collect_features(net, x, ["0"])["0"]
    pooled = collect_features(net, x, ["0"], pool=True)["0"]
    with torch.no_grad():
        conv = net[0](x)
    torch.testing.assert_close(flat, conv.flatten(1))
    torch.testing.assert_close(pooled, conv.mean(dim=(2, 3)))


def test_numpy_input() -> None:
    model = _model()
    x = _images(5)
    a = collect_features(model, x.numpy(), ["z"])["z"]
    b = collect_features(model, x, ["z"])["z"]
    torch.testing.assert_close(a, b)


@pytest.mark.parametrize(
    ("layers", "error", "match"),
    [
        (["nope"], ValueError, "no layer named 'nope'.*head.net.0"),
        (["h", "h"], ValueError, "twice"),
        ([], ValueError, "non-empty"),
        ("h", ValueError, "non-empty list"),
        ([3], TypeError, "str"),
    ],
)
def test_bad_layer_names(layers: object, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        collect_features(_model(), _images(3), layers)  # type: ignore[arg-type]


def test_layer_not_called() -> None:
    class Skip(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Linear(16, 2)
            self.unused = nn.Linear(2, 2)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = self.used(x.flatten(1))
            return out

    with pytest.raises(ValueError, match="'unused' was not called"):
        collect_features(Skip(), _images(3), ["unused"])


def test_other_input_errors() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        collect_features("model", _images(2), ["h"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="N >= 1"):
        collect_features(_model(), torch.zeros(0, 1, 4, 4), ["h"])
    bad = _images(2)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        collect_features(_model(), bad, ["h"])


# --- layerwise_probe ------------------------------------------------------------------------------


class _Suppressing(nn.Module):
    """h = the input (feature 0 carries the label); z = h with feature 0 removed."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Identity()
        head = nn.Linear(4, 4, bias=False)
        with torch.no_grad():
            head.weight.copy_(torch.diag(torch.tensor([0.0, 1.0, 1.0, 1.0])))
        self.head = head

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return h, self.head(h)


def _signal_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 4, generator=gen)
    x[:, 0] = (2 * y - 1).float() + 0.1 * torch.randn(n, generator=gen)
    return x, y


def test_layerwise_probe_sees_what_the_head_removes() -> None:
    model = _Suppressing()
    train, test = _signal_data(300, 0), _signal_data(200, 1)
    acc = layerwise_probe(model, train, test, ["h", "z"])
    assert list(acc) == ["h", "z"]
    assert acc["h"] >= 0.98
    assert acc["z"] <= 0.65  # only noise is left: chance level


def _coded_pixels(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=gen)
    images = torch.rand(n, 1, 4, 4, generator=gen) * 0.5
    images[torch.arange(n), 0, 0, labels] += 0.5  # a class-coded pixel
    return images, labels


def test_layerwise_probe_defaults_and_datasets() -> None:
    images, labels = _coded_pixels(120, 0)
    train = ArrayDataset(images=images, labels=labels, name="t", num_classes=3)
    test = _coded_pixels(120, 1)
    acc = layerwise_probe(_model(), train, test, weight_decays=(1e-3,))
    assert list(acc) == ["h", "head.net.0", "head.net.1", "z"]
    # the class-coded pixel survives a random linear-ReLU encoder (3 classes: chance 1/3)
    assert acc["h"] > 0.5 and acc["z"] > 0.5
    # the same features with the training labels shuffled: nothing to learn, at or below chance
    shuffled = labels[torch.randperm(120, generator=torch.Generator().manual_seed(3))]
    noise = layerwise_probe(_model(), (images, shuffled), test, weight_decays=(1e-3,))
    assert all(v < 0.45 for v in noise.values()), noise
    # layers come back in the order asked for, each with its own accuracy
    reverse = layerwise_probe(_model(), train, test, ["z", "h"], weight_decays=(1e-3,))
    assert list(reverse) == ["z", "h"]
    assert reverse == {"z": acc["z"], "h": acc["h"]}


def test_layerwise_probe_rejects_bad_data() -> None:
    with pytest.raises(TypeError, match="ArrayDataset or an \\(images, labels\\) pair"):
        layerwise_probe(_model(), torch.zeros(3), (_images(3), torch.zeros(3, dtype=torch.long)))


# --- attribute_probe ------------------------------------------------------------------------------


def _attributes(n: int, seed: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    shape = torch.randint(0, 3, (n,), generator=gen)  # encoded in the features
    colour = torch.randint(0, 2, (n,), generator=gen)  # not encoded (suppressed)
    x = torch.randn(n, 6, generator=gen) * 0.2
    x[torch.arange(n), shape] += 2.0
    return x, {"shape": shape, "colour": colour}


def test_attribute_probe_finds_the_suppressed_attribute() -> None:
    x, attrs = _attributes(400, 0)
    acc = attribute_probe(x, attrs)
    assert list(acc) == ["shape", "colour"]
    assert acc["shape"] >= 0.97
    assert acc["colour"] <= 0.65


def test_attribute_probe_with_a_test_set_and_numpy() -> None:
    x, attrs = _attributes(300, 0)
    xt, attrs_t = _attributes(200, 1)
    acc = attribute_probe(
        x.numpy(),
        {k: v.numpy() for k, v in attrs.items()},
        test_features=xt,
        test_attributes=attrs_t,
    )
    assert acc["shape"] >= 0.97 and acc["colour"] <= 0.65


def _noisy_attribute(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A binary attribute that the features predict about 80 % of the time."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = torch.randn(n, 3, generator=gen)
    x[:, 0] += 1.2 * (2 * y - 1)
    return x, y


@pytest.mark.parametrize(("fraction", "n_test"), [(0.3, 37), (29 / 123, 29)])
def test_attribute_probe_split_is_seeded(fraction: float, n_test: int) -> None:
    """One split per seed: the same seed gives the same accuracy, other seeds other splits, and
    every accuracy counts correct answers among round(test_fraction * N) held-out samples."""
    x, y = _noisy_attribute(123, 0)
    accs = [attribute_probe(x, {"a": y}, seed=s, test_fraction=fraction)["a"] for s in range(6)]
    assert attribute_probe(x, {"a": y}, seed=4, test_fraction=fraction)["a"] == accs[4]
    assert len(set(accs)) >= 3, accs  # the seed changes which samples are held out
    for acc in accs:
        assert acc * n_test == pytest.approx(round(acc * n_test), abs=1e-9), (acc, n_test)
        assert 0.6 < acc < 1.0  # the attribute is predictable, not perfectly


def test_attribute_probe_same_split_for_every_attribute() -> None:
    """Attributes probed together share one split: an attribute and its relabelling (0 <-> 1)
    score the same, and a copy of an attribute scores what it scores alone."""
    x, y = _noisy_attribute(123, 0)
    both = attribute_probe(x, {"a": y, "flipped": 1 - y, "copy": y.clone()}, seed=2)
    alone = attribute_probe(x, {"a": y}, seed=2)
    assert both["a"] == both["flipped"] == both["copy"] == alone["a"]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"attributes": {}}, ValueError, "non-empty mapping"),
        ({"attributes": {"a": np.zeros(5, dtype=np.int64)}}, ValueError, r"shape \(10,\)"),
        ({"attributes": {"a": np.zeros(10)}}, TypeError, "integers"),
        ({"test_fraction": 1.5}, ValueError, "test_fraction"),
        ({"test_fraction": "half"}, TypeError, "test_fraction"),
        ({"test_features": np.zeros((4, 3))}, ValueError, "together"),
        (
            {"test_features": np.zeros((4, 3)), "test_attributes": {"b": np.zeros(4, np.int64)}},
            ValueError,
            "keys",
        ),
    ],
)
def test_attribute_probe_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    args: dict[str, object] = {
        "features": np.random.default_rng(0).normal(size=(10, 3)),
        "attributes": {"a": np.arange(10) % 2},
    }
    args.update(kwargs)
    with pytest.raises(error, match=match):
        attribute_probe(**args)  # type: ignore[arg-type]


def test_attribute_probe_names_a_constant_attribute() -> None:
    x = torch.randn(20, 3)
    with pytest.raises(ValueError, match=r"attribute 'flat'.*two classes"):
        attribute_probe(x, {"ok": torch.arange(20) % 2, "flat": torch.zeros(20, dtype=torch.long)})
