"""Tests of contrastkit.train.finetune: fine-tuning on the training core."""

from __future__ import annotations

import importlib
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from contrastkit.data import ArrayDataset
from contrastkit.train import FinetuneResult, finetune
from contrastkit.train.core import NonFiniteLossError

# ``contrastkit.train.finetune`` as an attribute is the function; the module is in sys.modules.
finetune_module = importlib.import_module("contrastkit.train.finetune")


def _data(n: int, seed: int) -> ArrayDataset:
    """Three classes, each a bright quadrant of a 4x4 image, plus noise."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 3, (n,), generator=gen)
    images = torch.rand(n, 1, 4, 4, generator=gen) * 0.4
    for c, (r, q) in enumerate([(0, 0), (0, 2), (2, 0)]):
        rows = labels == c
        images[rows, 0, r : r + 2, q : q + 2] += 0.6
    return ArrayDataset(images=images, labels=labels, name="quad", num_classes=3)


def _encoder(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 12), nn.BatchNorm1d(12), nn.ReLU())


def test_learns_a_separable_task() -> None:
    result = finetune(_encoder(), _data(240, 0), _data(120, 1), epochs=6, batch_size=32, lr=1e-2)
    assert isinstance(result, FinetuneResult)
    assert result.accuracy >= 0.95
    assert len(result.epoch_losses) == 6
    assert result.epoch_losses[-1] < 0.5 * result.epoch_losses[0]
    assert 0.0 <= result.train_accuracy <= 1.0
    assert result.model is not None and not result.model.training


def test_training_the_encoder_beats_training_the_head_alone() -> None:
    # Fine-tuning the encoder too must help over training the head alone (lr 0 for the encoder).
    train, test = _data(240, 2), _data(200, 3)
    kwargs = {"epochs": 2, "batch_size": 48, "head_lr": 1e-2, "seed": 0}
    frozen = finetune(_encoder(), train, test, lr=1e-12, **kwargs)  # type: ignore[arg-type]
    tuned = finetune(_encoder(), train, test, lr=3e-2, **kwargs)  # type: ignore[arg-type]
    assert tuned.epoch_losses[-1] < frozen.epoch_losses[-1]


def test_copy_encoder_leaves_the_callers_model_alone() -> None:
    enc = _encoder()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    finetune(enc, _data(60, 0), _data(30, 1), epochs=1)
    for k, v in enc.state_dict().items():
        torch.testing.assert_close(v, before[k])
    finetune(enc, _data(60, 0), _data(30, 1), epochs=1, copy_encoder=False)
    assert not torch.equal(enc.state_dict()["1.weight"], before["1.weight"])


def test_seeded_and_global_rng_untouched() -> None:
    train, test = _data(64, 0), _data(32, 1)
    state = torch.get_rng_state()
    a = finetune(_encoder(), train, test, epochs=2, seed=5)
    torch.set_rng_state(state)
    b = finetune(_encoder(), train, test, epochs=2, seed=5)
    assert a.epoch_losses == b.epoch_losses and a.accuracy == b.accuracy
    before = torch.get_rng_state()
    finetune(_encoder(), train, test, epochs=1, seed=7)
    assert torch.equal(torch.get_rng_state(), before)


def test_augment_and_tuple_data() -> None:
    seen: list[int] = []

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        assert isinstance(generator, torch.Generator)
        seen.append(x.shape[0])
        return x + 0.01 * torch.randn(x.shape, generator=generator)

    data = _data(50, 0)
    result = finetune(
        _encoder(),
        (data.images, data.labels),
        (data.images.numpy(), data.labels.numpy()),
        num_classes=3,
        epochs=2,
        batch_size=16,
        augment=augment,
        schedule="constant",
    )
    assert seen == [16, 16, 16, 2] * 2
    assert 0.0 <= result.accuracy <= 1.0


def test_tuple_output_encoder() -> None:
    class Pair(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(16, 5)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            h = self.lin(x.flatten(1))
            return h, h * 2

    result = finetune(Pair(), _data(30, 0), _data(20, 1), epochs=1)
    assert result.model is not None
    assert result.model[1].in_features == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"epochs": 0}, ValueError, "epochs"),
        ({"lr": 0.0}, ValueError, "lr"),
        ({"schedule": "step"}, ValueError, "schedule"),
        ({"num_classes": 2}, ValueError, r"\[0, 2\)"),
        ({"augment": 5}, TypeError, "augment"),
    ],
)
def test_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        finetune(_encoder(), _data(20, 0), _data(10, 1), **kwargs)  # type: ignore[arg-type]


def test_rejects_non_modules() -> None:
    with pytest.raises(TypeError, match=r"nn\.Module"):
        finetune("enc", _data(4, 0), _data(4, 1))  # type: ignore[arg-type]


# Recorded from the hand-written loop this module had before it moved onto the training core
# (contrastkit.eval.finetune at the commit before the move); the port must reproduce them.
ORIGINAL_LOOP = {
    "plain": (
        {"epochs": 3, "batch_size": 16, "lr": 1e-2, "seed": 1},
        [1.2637469959259033, 0.9872055149078369, 0.8791764569282532],
        0.7,
        0.68,
    ),
    "augmented": (
        {
            "epochs": 2,
            "batch_size": 20,
            "lr": 3e-3,
            "head_lr": 1e-2,
            "schedule": "constant",
            "seed": 4,
            "augment": lambda x, generator=None: (
                x + 0.05 * torch.randn(x.shape, generator=generator)
            ),
        },
        [1.1363294124603271, 0.9210876941680908],
        0.6333333333333333,
        0.62,
    ),
}


@pytest.mark.parametrize("case", sorted(ORIGINAL_LOOP))
def test_numbers_match_the_original_loop(case: str) -> None:
    kwargs, losses, accuracy, train_accuracy = ORIGINAL_LOOP[case]
    result = finetune(_encoder(), _data(50, 0), _data(30, 1), **kwargs)  # type: ignore[arg-type]
    assert result.epoch_losses == pytest.approx(losses, abs=1e-6)
    assert result.accuracy == pytest.approx(accuracy)
    assert result.train_accuracy == pytest.approx(train_accuracy)


@pytest.mark.parametrize(
    ("poisoned_call", "where"), [(3, "epoch 1, step 3"), (5, "epoch 2, step 1")]
)
def test_nan_loss_stops_with_the_step(poisoned_call: int, where: str) -> None:
    calls: list[int] = []

    def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        calls.append(len(calls) + 1)
        return x * math.nan if len(calls) == poisoned_call else x

    with pytest.raises(NonFiniteLossError, match="fine-tuning stopped") as info:
        finetune(_encoder(), _data(50, 0), _data(10, 1), epochs=2, batch_size=16, augment=augment)
    assert where in str(info.value) and "nan" in str(info.value)
    assert f"optimizer step {poisoned_call})" in str(info.value)
    assert isinstance(info.value, FloatingPointError) and not isinstance(info.value, ValueError)


def test_infinite_loss_stops_before_the_update(monkeypatch: pytest.MonkeyPatch) -> None:
    enc = _encoder()
    before = [p.detach().clone() for p in enc.parameters()]
    calls: list[int] = []

    def exploding(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        loss = nn.functional.cross_entropy(logits, target)
        return loss * math.inf if len(calls) == 2 else loss

    monkeypatch.setattr(finetune_module, "F", SimpleNamespace(cross_entropy=exploding))
    with pytest.raises(NonFiniteLossError, match=r"inf at epoch 1, step 2"):
        finetune(enc, _data(40, 0), _data(10, 1), epochs=1, batch_size=16, copy_encoder=False)
    after = list(enc.parameters())
    assert not all(torch.equal(a, b) for a, b in zip(before, after, strict=True))  # step 1 ran
    assert all(bool(torch.isfinite(p).all()) for p in after)  # the infinite step did not
