"""The one training core: every gradient-training path in contrastkit runs its steps here.

A training path (``fit``, the strategies, fine-tuning, autoencoder pretraining, SCGC, ``fit-arrays``)
says *what* one step computes, as a function from a batch to a :class:`StepOutput`; the
:class:`TrainingCore` does the rest, the same way for all of them:

- device placement, bf16 autocast and channels_last (:meth:`TrainingCore.autocast`,
  :meth:`TrainingCore.to_device`);
- one non-finite-loss policy: a NaN or infinite loss stops the run with a
  :class:`NonFiniteLossError` that names the epoch, the step and the value and says what to try;
- zeroing, backward, averaging by hand the gradients of parameters outside DDP, gradient clipping,
  the optimizer step and the LR schedule step, then ``after_step`` hooks (e.g. a momentum encoder);
- progress (the position a checkpoint needs, :class:`~contrastkit.train.state.Progress`), a progress
  bar, the per-step log record, and ``on_step`` callbacks (checkpoints, user hooks).

The epochs themselves are iterated by the caller, which calls :meth:`TrainingCore.run_epoch` once per
epoch (or :meth:`TrainingCore.step` for a full-batch method), because what happens between epochs
differs between methods (monitoring, refreshing cluster centres, switching tasks).

>>> import torch
>>> from torch import nn
>>> model = nn.Linear(4, 1)
>>> core = TrainingCore(torch.optim.SGD(model.parameters(), lr=0.1))
>>> x, y = torch.randn(32, 4), torch.randn(32, 1)
>>> def step(idx: torch.Tensor) -> StepOutput:
...     return StepOutput(loss=nn.functional.mse_loss(model(x[idx]), y[idx]), samples=len(idx))
>>> summary = core.run_epoch(0, torch.arange(32).split(8), step)
>>> summary.steps, core.progress.global_step
(4, 4)
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from contrastkit.distributed import all_reduce_mean, average_gradients
from contrastkit.train.state import Progress

__all__ = [
    "EpochSummary",
    "NonFiniteLossError",
    "StepOutput",
    "TrainingCore",
    "bf16_is_fast",
    "progress_bar",
    "require_finite",
    "resolve_device",
]

Batch = TypeVar("Batch")


class NonFiniteLossError(FloatingPointError):
    """A training step produced a NaN or infinite loss; training stopped before using it.

    It is a training failure, not bad input: the command line reports it as such (exit code 1).
    """


@dataclass
class StepOutput:
    """What one training step computed.

    Attributes:
        loss: The scalar that ``backward()`` runs on (this process's share under DDP).
        value: The loss to log and check (None: ``loss``); a tensor is averaged over the processes.
        logs: Further per-step values to log (tensors are converted with ``float``).
        samples: The step's weight in the epoch mean (e.g. the global batch size; 1 gives the mean
            over steps).
    """

    loss: Tensor
    value: Tensor | float | None = None
    logs: Mapping[str, Tensor | float] = field(default_factory=dict)
    samples: int = 1


@dataclass(frozen=True)
class EpochSummary:
    """One epoch as the core ran it: ``loss`` is the sample-weighted mean of the step losses."""

    epoch: int
    steps: int
    loss: float
    samples: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)

    def record(self, **extra: Any) -> dict[str, Any]:
        """The epoch's log record (``epoch`` 1-based), with ``extra`` keys added."""
        return {
            "epoch": self.epoch + 1,
            "loss": self.loss,
            "steps": self.steps,
            "seconds": self.seconds,
            **extra,
        }


def resolve_device(name: str | torch.device | None) -> torch.device:
    """``"auto"`` (or None) picks CUDA when available, else the CPU."""
    if name is None or name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            "device='cuda' was requested but CUDA is not available; use 'cpu' or 'auto'"
        )
    return device


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is expected to speed up convolutions on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


class _NullBar:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, *, initial: int = 0, enabled: bool = True) -> Any:
    """A tqdm bar over ``total`` steps, or an object with the same methods that shows nothing."""
    if not enabled:
        return _NullBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=0.5)


_HINT = "lower the learning rate, set grad_clip, or train in fp32 (precision='fp32')"


def require_finite(x: Tensor, what: str = "embeddings") -> Tensor:
    """``x`` if it is all finite, else stop the run as diverged (:class:`NonFiniteLossError`).

    Step functions call it on the model's outputs before a loss validates them, so that a diverged
    model is reported as a training failure and not as bad input; :meth:`TrainingCore.run_epoch`
    adds the epoch and step to the message.
    """
    if not bool(torch.isfinite(x).all()):
        raise NonFiniteLossError(f"the {what} became NaN or infinite")
    return x


class TrainingCore:
    """Runs training steps: the one place that calls ``backward()`` and ``optimizer.step()``.

    Args:
        optimizer: The optimizer of every trained parameter.
        schedule: Stepped after every optimizer step (None: constant learning rate).
        device: Where inputs go (:meth:`to_device`) and autocast runs.
        bf16: Run the forward pass under bf16 autocast (:meth:`autocast`).
        channels_last: :meth:`to_device` gives 4-D inputs the channels_last memory format.
        grad_clip: Clip the total gradient norm of the optimizer's parameters to this value (the
            norm is logged as ``grad_norm``).
        hand_averaged: Parameters outside DDP whose gradients are averaged over the processes after
            backward (a loss's or a pretext head's).
        after_step: Called after every optimizer step (e.g. a momentum encoder's EMA update).
        on_step: Called after every step with its log record (checkpoints, user hooks); an exception
            stops training as a crash would.
        logger: An object with ``step(record)`` (e.g. :class:`~contrastkit.train.logging.RunLogger`).
        bar: A progress bar (:func:`progress_bar`); None shows nothing.
        progress: Where the run stands (restored from a checkpoint on resume).
        name: What is trained, for error messages (e.g. ``"fine-tuning"``).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        *,
        schedule: LRScheduler | None = None,
        device: torch.device | str = "cpu",
        bf16: bool = False,
        channels_last: bool = False,
        grad_clip: float | None = None,
        hand_averaged: Sequence[nn.Parameter] = (),
        after_step: Sequence[Callable[[], None]] = (),
        on_step: Sequence[Callable[[dict[str, Any]], None]] = (),
        logger: Any = None,
        bar: Any = None,
        progress: Progress | None = None,
        name: str = "training",
    ) -> None:
        if grad_clip is not None and not (math.isfinite(grad_clip) and grad_clip > 0):
            raise ValueError(f"grad_clip must be a finite number > 0 or None, got {grad_clip!r}")
        self.optimizer = optimizer
        self.schedule = schedule
        self.device = torch.device(device)
        self.bf16 = bool(bf16)
        self.channels_last = bool(channels_last)
        self.grad_clip = grad_clip
        self.hand_averaged = list(hand_averaged)
        self.after_step = list(after_step)
        self.on_step = list(on_step)
        self.logger = logger
        self.bar = bar if bar is not None else _NullBar()
        self.progress = progress if progress is not None else Progress()
        self.name = name
        self._params = [p for group in optimizer.param_groups for p in group["params"]]

    # ------------------------------------------------------------------ what step functions use

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        """bf16 autocast on the core's device when ``bf16`` is on, else nothing."""
        if not self.bf16:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)

    def to_device(self, x: Tensor) -> Tensor:
        """``x`` on the core's device, channels_last when it is a 4-D batch and that is on."""
        x = x.to(self.device, non_blocking=True)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def lr(self) -> float:
        """The learning rate of the first parameter group."""
        return float(self.optimizer.param_groups[0]["lr"])

    # ------------------------------------------------------------------------------ the step

    def step(self, output: StepOutput, *, epoch: int) -> dict[str, Any]:
        """Check, backpropagate and apply one step's ``output``; return its log record.

        Raises:
            NonFiniteLossError: The loss is NaN or infinite (nothing is applied).
        """
        value = self._checked_value(output, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        output.loss.backward()
        average_gradients(self.hand_averaged)
        record: dict[str, Any] = {
            "step": self.progress.global_step + 1,
            "epoch": epoch + 1,
            "loss": value,
            "lr": self.lr,
        }
        record.update({k: float(v) for k, v in output.logs.items()})
        if self.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self._params, self.grad_clip)
            record["grad_norm"] = float(norm)
        self.optimizer.step()
        if self.schedule is not None:
            self.schedule.step()
        for hook in self.after_step:
            hook()
        self._advance(value, output.samples)
        if self.logger is not None:
            self.logger.step(record)
        self.bar.update(1)
        for callback in self.on_step:
            callback(record)
        return record

    def _checked_value(self, output: StepOutput, epoch: int) -> float:
        raw = output.loss if output.value is None else output.value
        value = float(all_reduce_mean(raw)) if isinstance(raw, Tensor) else float(raw)
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"{self.name} stopped: the loss became {value} at epoch {epoch + 1}, step "
                f"{self.progress.step_in_epoch + 1} (optimizer step {self.progress.global_step + 1}"
                f"); lower the learning rate, raise the temperature, set grad_clip, or train in "
                "fp32 (precision='fp32')"
            )
        return value

    def _advance(self, value: float, samples: int) -> None:
        p = self.progress
        p.global_step += 1
        p.step_in_epoch += 1
        p.loss_sum += value * samples
        p.samples += samples

    # ----------------------------------------------------------------------------- the epoch

    def run_epoch(
        self,
        epoch: int,
        batches: Iterable[Batch],
        step_fn: Callable[[Batch], StepOutput],
        *,
        train: Sequence[nn.Module] = (),
    ) -> EpochSummary:
        """Run ``step_fn`` on every batch of ``epoch`` (0-based) and close the epoch.

        ``batches`` yields the batches still to run: after a resume, those from
        ``progress.step_in_epoch`` on. The modules in ``train`` are put in training mode first.
        The progress moves to the start of the next epoch at the end.
        """
        for module in train:
            module.train()
        if self.progress.epoch != epoch:
            self.progress = Progress(epoch=epoch, global_step=self.progress.global_step)
        start = time.perf_counter()
        samples_before = self.progress.samples
        for batch in batches:
            self.step(self._forward(step_fn, batch, epoch), epoch=epoch)
            p = self.progress
            rate = (p.samples - samples_before) / max(time.perf_counter() - start, 1e-9)
            self.bar.set_postfix(
                epoch=epoch + 1,
                loss=f"{p.loss_sum / max(p.samples, 1):.4f}",
                samples_s=f"{rate:.0f}",
            )
        p = self.progress
        summary = EpochSummary(
            epoch=epoch,
            steps=p.step_in_epoch,
            loss=p.loss_sum / max(p.samples, 1) if p.samples else math.nan,
            samples=p.samples,
            seconds=time.perf_counter() - start,
        )
        self.progress = Progress(epoch=epoch + 1, global_step=p.global_step)
        return summary

    def _forward(
        self, step_fn: Callable[[Batch], StepOutput], batch: Batch, epoch: int
    ) -> StepOutput:
        """``step_fn(batch)``; a :func:`require_finite` failure inside it gets the step's place."""
        try:
            return step_fn(batch)
        except NonFiniteLossError as exc:
            p = self.progress
            raise NonFiniteLossError(
                f"{self.name} stopped: {exc} at epoch {epoch + 1}, step {p.step_in_epoch + 1} "
                f"(after optimizer step {p.global_step}); {_HINT}"
            ) from exc

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()
