"""The configuration of one training run, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from contrastkit._validation import check_choice, check_positive
from contrastkit.losses import loss_info

__all__ = ["FitConfig"]

OPTIMIZERS = ("adamw", "sgd", "lars")
SCHEDULES = ("cosine", "constant")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class FitConfig:
    """Everything that defines a training run; saved as ``config.json`` in the run directory.

    ``temperature=None`` keeps the loss's own default; ``loss_kwargs`` passes further keyword arguments
    to the loss. ``precision="auto"`` uses bf16 autocast where the device supports it fast (CUDA with bf16,
    or a CPU with AMX/AVX512-BF16) and float32 elsewhere.
    """

    loss: str = "ntxent"
    data: str = "digits"
    data_root: str | None = None
    epochs: int = 40
    batch_size: int = 256
    views: int = 2
    temperature: float | None = 0.2
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    schedule: str = "cosine"
    warmup_epochs: int = 2
    encoder_widths: tuple[int, ...] = (32, 32, 64, 64, 128, 128)
    encoder_strides: tuple[int, ...] = (1, 1, 2, 1, 2, 1)
    head_hidden_dim: int = 512
    head_out_dim: int = 128
    augment: str | None = None
    seed: int = 0
    out: str = "runs/latest"
    device: str = "auto"
    precision: str = "auto"
    threads: int | None = None
    knn_k: int = 20
    knn_temperature: float = 0.07
    progress: bool = True

    def __post_init__(self) -> None:
        info = loss_info(self.loss)
        if info.input_kind != "views":
            raise ValueError(
                f"loss {self.loss!r} takes pairs of modalities, not image views; image training needs "
                "a multi-view loss (e.g. ntxent, supcon, dcl, dclw)"
            )
        for name in ("epochs", "batch_size", "views", "knn_k"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.views < info.min_views and not info.needs_labels:
            raise ValueError(f"loss {self.loss!r} needs views >= {info.min_views}, got {self.views}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 for contrastive training, got {self.batch_size}")
        if self.temperature is not None:
            check_positive(self.temperature, "temperature")
        check_positive(self.lr, "lr")
        check_positive(self.weight_decay, "weight_decay", allow_zero=True)
        check_positive(self.knn_temperature, "knn_temperature")
        if self.warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")
        check_choice(self.optimizer, "optimizer", OPTIMIZERS)
        check_choice(self.schedule, "schedule", SCHEDULES)
        check_choice(self.precision, "precision", PRECISIONS)
        check_choice(self.device, "device", DEVICES)
        self.encoder_widths = tuple(int(w) for w in self.encoder_widths)
        self.encoder_strides = tuple(int(s) for s in self.encoder_strides)
        if len(self.encoder_widths) != len(self.encoder_strides):
            raise ValueError(
                f"encoder_widths and encoder_strides must have the same length; got "
                f"{list(self.encoder_widths)} and {list(self.encoder_strides)}"
            )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the configuration."""
        d = dataclasses.asdict(self)
        d["encoder_widths"] = list(self.encoder_widths)
        d["encoder_strides"] = list(self.encoder_strides)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        """Build a config from a dict; unknown keys are an error that lists the allowed ones."""
        allowed = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise ValueError(f"unknown config key(s) {unknown}; allowed: {sorted(allowed)}")
        return cls(**data)
