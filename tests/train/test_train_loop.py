"""Loop details: logs, gradient clipping, the epoch monitor, dataset indices and loss state."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import Tensor, nn

import contrastkit.train.loop as loop
from contrastkit.data import ArrayDataset
from contrastkit.eval.monitor import monitor_sizes
from contrastkit.losses import InfoNCE, LossInfo, registry
from contrastkit.train import FitConfig, fit, resume_run
from contrastkit.train.loop import summary_line

TINY: dict[str, Any] = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 256,
    "encoder_widths": (8,),
    "encoder_strides": (2,),
    "head_hidden_dim": 16,
    "head_out_dim": 8,
    "threads": 1,
    "progress": False,
    "evaluate": False,
    "tensorboard": False,
    "device": "cpu",
    "precision": "fp32",
    "checkpoint_every": 2,
}


def lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_logs_metrics_and_summary_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    result = fit(FitConfig(out=str(out), **{**TINY, "evaluate": True}))
    steps, epochs = lines(out / "steps.jsonl"), lines(out / "epochs.jsonl")
    assert [s["step"] for s in steps] == list(range(1, 11))  # 1347 images, 5 steps of 256 per epoch
    assert {"step", "epoch", "loss", "lr"} <= set(steps[0]) and "grad_norm" not in steps[0]
    assert [e["epoch"] for e in epochs] == [1, 2]
    assert epochs[0]["loss"] == pytest.approx(sum(s["loss"] for s in steps[:5]) / 5)
    assert result.metrics["steps"] == 10 and result.metrics["world_size"] == 1
    assert (
        0 <= result.metrics["knn_acc"] <= 1 and result.metrics["final_loss"] == epochs[-1]["loss"]
    )
    assert capsys.readouterr().out == ""  # the library prints nothing; the CLI prints the line
    summary = summary_line(result.metrics, out)
    assert (
        summary.startswith("contrastkit fit: done") and "10 steps" in summary and "kNN" in summary
    )
    assert not (out / "tensorboard").exists()


def test_gradient_clipping_is_applied_and_logged(tmp_path: Path) -> None:
    base = fit(FitConfig(out=str(tmp_path / "a"), **TINY)).model
    clipped = fit(FitConfig(out=str(tmp_path / "b"), grad_clip=1e-3, **TINY)).model
    steps = lines(tmp_path / "b" / "steps.jsonl")
    assert all(s["grad_norm"] > 1e-3 for s in steps)  # the raw norm, before clipping
    w0 = base.state_dict()["head.net.0.weight"]
    w1 = clipped.state_dict()["head.net.0.weight"]
    assert not torch.allclose(w0, w1)
    with pytest.raises(ValueError, match="grad_clip"):
        FitConfig(grad_clip=0.0)


def test_epoch_monitor_is_called_every_k_epochs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[int, int]] = []

    def epoch_metrics(
        encoder: nn.Module, train: ArrayDataset, heldout: ArrayDataset, **kwargs: Any
    ) -> dict[str, Any]:
        assert set(kwargs) == {"augment", "k", "head"}
        assert isinstance(encoder, nn.Module) and not isinstance(encoder, loop.ContrastiveModel)
        calls.append((len(train), len(heldout)))
        torch.rand(100)  # consuming the global RNG must not change training
        return {"knn_acc": 0.5, "loss": 1.0, "erank": torch.tensor(3.0)}

    monkeypatch.setattr(loop, "epoch_metrics", epoch_metrics)
    cfg = {**TINY, "epochs": 3}
    fit(FitConfig(out=str(tmp_path / "m"), monitor_every=2, **cfg))
    assert calls == [monitor_sizes(10)]  # epoch 2 only: subsets of the bank and held-out sizes
    epochs = lines(tmp_path / "m" / "epochs.jsonl")
    assert "knn_acc" not in epochs[0] and epochs[1]["knn_acc"] == 0.5 and epochs[1]["erank"] == 3.0
    assert epochs[1]["monitor_loss"] == 1.0 and epochs[1]["loss"] != 1.0
    # the monitor does not perturb training
    fit(FitConfig(out=str(tmp_path / "n"), monitor_every=0, **cfg))
    assert lines(tmp_path / "n" / "steps.jsonl") == lines(tmp_path / "m" / "steps.jsonl")


def test_real_monitor_module(tmp_path: Path) -> None:
    fit(FitConfig(out=str(tmp_path / "real"), monitor_every=1, **{**TINY, "epochs": 1}))
    record = lines(tmp_path / "real" / "epochs.jsonl")[0]
    assert 0.0 <= record["knn_acc"] <= 1.0 and "alignment_h" in record  # augment was passed
    assert "alignment_z" in record  # and the head


class IndexProbe(nn.Module):
    """InfoNCE plus per-sample state: counts how often each dataset index was seen."""

    def __init__(
        self, *, num_samples: int, temperature: float = 0.5, reduction: str = "mean"
    ) -> None:
        super().__init__()
        self.inner = InfoNCE(temperature=temperature, reduction=reduction)
        self.reduction = reduction
        self.register_buffer("seen", torch.zeros(num_samples))
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)

    def forward(self, views: Tensor, index: Tensor) -> Tensor:
        assert index.dtype == torch.int64 and index.shape == views.shape[:1]
        self.seen.index_add_(0, index, torch.ones(len(index)))
        out: Tensor = self.inner(views)
        return out


@dataclass(frozen=True)
class _IndexInfo(LossInfo):
    needs_index: bool = True


@pytest.fixture
def index_loss(monkeypatch: pytest.MonkeyPatch) -> str:
    info = _IndexInfo("index_probe", IndexProbe, "test loss with per-sample state")
    monkeypatch.setitem(registry._REGISTRY, "index_probe", info)
    return "index_probe"


def test_dataset_index_reaches_the_loss_and_its_state_is_checkpointed(
    index_loss: str, tmp_path: Path
) -> None:
    cfg = {**TINY, "loss": index_loss, "temperature": None}
    ref = fit(FitConfig(out=str(tmp_path / "ref"), **cfg))
    built = loop.build_loss(FitConfig(**cfg), 1347)
    assert isinstance(built, IndexProbe) and built.seen.numel() == 1347  # dataset size passed
    seen = load_file(str(tmp_path / "ref" / "checkpoints" / "step-00000010.safetensors"))[
        "loss.seen"
    ]
    assert seen.sum() == 2 * 5 * 256 and seen.max() <= 2  # each index at most once per epoch

    class CrashError(Exception):
        pass

    def crash(record: dict[str, Any]) -> None:
        if record["step"] == 7:
            raise CrashError

    with pytest.raises(CrashError):
        fit(FitConfig(out=str(tmp_path / "crash"), **cfg), on_step=crash)
    resumed = resume_run(tmp_path / "crash")
    assert torch.equal(
        resumed.model.state_dict()["head.net.2.weight"], ref.model.state_dict()["head.net.2.weight"]
    )
    final = load_file(str(tmp_path / "crash" / "checkpoints" / "step-00000010.safetensors"))
    assert torch.equal(final["loss.seen"], seen)


def test_non_finite_loss_stops_with_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class NaNLoss(InfoNCE):
        def forward(self, views: Tensor, labels: Tensor | None = None) -> Tensor:
            return super().forward(views) * float("nan")

    monkeypatch.setitem(registry._REGISTRY, "nan_loss", LossInfo("nan_loss", NaNLoss, "nan"))
    with pytest.raises(FloatingPointError, match="loss became nan at epoch 1, step 1"):
        fit(FitConfig(out=str(tmp_path / "nan"), loss="nan_loss", **TINY))


def test_moco_queue_and_key_encoder_resume_exactly(tmp_path: Path) -> None:
    cfg = {
        **TINY,
        "loss": "mochi",
        "temperature": 0.2,
        "loss_kwargs": {"queue_size": 300, "mix_hard": 32, "mix_pairs": 8, "mix_query": 4,
                        "mix_start_step": 3, "momentum": 0.9},
    }  # fmt: skip
    ref = fit(FitConfig(out=str(tmp_path / "ref"), **cfg))
    state = load_file(str(tmp_path / "ref" / "checkpoints" / "step-00000010.safetensors"))
    assert int(state["loss.queue.ptr"]) == (300 + 10 * 256) % 300 and int(state["loss.steps"]) == 10
    online = ref.model.state_dict()["head.net.2.weight"]
    key = state["loss.key_encoder.module.head.net.2.weight"]
    assert not torch.equal(online, key)  # an EMA copy, not the online weights

    class CrashError(Exception):
        pass

    def crash(record: dict[str, Any]) -> None:
        if record["step"] == 7:
            raise CrashError

    with pytest.raises(CrashError):
        fit(FitConfig(out=str(tmp_path / "crash"), **cfg), on_step=crash)
    resume_run(tmp_path / "crash")
    again = load_file(str(tmp_path / "crash" / "checkpoints" / "step-00000010.safetensors"))
    for name, value in state.items():
        if not name.startswith("rng."):
            assert torch.equal(value, again[name]), name
    assert lines(tmp_path / "crash" / "steps.jsonl") == lines(tmp_path / "ref" / "steps.jsonl")
    with pytest.raises(ValueError, match="needs views=2"):
        FitConfig(loss="moco_v2", views=3)


def test_tensorboard_events_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a (fake) ``torch.utils.tensorboard``, step and epoch scalars are written; a resumed run
    purges the events after its checkpoint."""
    writers: list[Any] = []

    class FakeWriter:
        def __init__(self, log_dir: str, purge_step: int | None = None) -> None:
            self.log_dir, self.purge_step, self.scalars = log_dir, purge_step, []
            self.closed = False
            writers.append(self)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            self.scalars.append((tag, value, step))

        def close(self) -> None:
            self.closed = True

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    cfg = {**TINY, "tensorboard": True, "epochs": 1}
    fit(FitConfig(out=str(tmp_path / "tb"), **cfg))
    (w,) = writers
    assert w.log_dir == str(tmp_path / "tb" / "tensorboard") and w.purge_step is None and w.closed
    tags = {t for t, _, _ in w.scalars}
    assert {"step/loss", "step/lr", "epoch/loss", "epoch/samples_per_s"} <= tags
    assert [s for t, _, s in w.scalars if t == "step/loss"] == [1, 2, 3, 4, 5]
    resume_run(tmp_path / "tb")  # finished: nothing new, but the writer purges after step 5
    assert writers[1].purge_step == 5
