"""Optimizers (AdamW, SGD, LARS) with weight decay kept off norms and biases, and LR schedules."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR

from contrastkit.train.config import FitConfig

__all__ = ["LARS", "build_optimizer", "build_schedule", "param_groups", "warmup_cosine"]


def param_groups(params: Iterable[nn.Parameter], weight_decay: float) -> list[dict[str, object]]:
    """Two groups: matrices and conv kernels get ``weight_decay``; biases, norms, scalars get 0."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in params:
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars_exclude": True},
    ]


class LARS(Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017).

    Each parameter's step is scaled by the trust ratio ``eta * ||w|| / (||g|| + wd * ||w||)``;
    groups marked ``lars_exclude`` (biases, norms) take plain SGD steps, as in SimCLR's setup.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, object]],
        *,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 1e-3,
    ) -> None:
        defaults = {
            "lr": lr,
            "momentum": momentum,
            "weight_decay": weight_decay,
            "eta": eta,
            "lars_exclude": False,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                if not group["lars_exclude"]:
                    w_norm, g_norm = torch.linalg.vector_norm(p), torch.linalg.vector_norm(grad)
                    trust = torch.where(
                        (w_norm > 0) & (g_norm > 0),
                        group["eta"] * w_norm / g_norm,
                        torch.ones_like(w_norm),
                    )
                    grad = grad.mul(trust)
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = grad.clone()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])
        return loss


def build_optimizer(config: FitConfig, params: Iterable[nn.Parameter]) -> Optimizer:
    """The optimizer named by ``config.optimizer`` over ``params``."""
    groups = param_groups(params, config.weight_decay)
    if config.optimizer == "adamw":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "sgd":
        for g in groups:
            g.pop("lars_exclude", None)
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum)
    return LARS(groups, lr=config.lr, momentum=config.momentum)


def warmup_cosine(step: int, *, warmup_steps: int, total_steps: int) -> float:
    """LR multiplier: linear warm-up from 1/warmup to 1, then cosine decay to 0 at total_steps."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(total_steps - warmup_steps, 1)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def build_schedule(config: FitConfig, optimizer: Optimizer, steps_per_epoch: int) -> LambdaLR:
    """A per-step schedule: warm-up then cosine (``"cosine"``) or warm-up then constant."""
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup_epochs * steps_per_epoch, total)
    if config.schedule == "cosine":
        return LambdaLR(
            optimizer, lambda s: warmup_cosine(s, warmup_steps=warmup, total_steps=total)
        )
    return LambdaLR(optimizer, lambda s: min((s + 1) / warmup, 1.0) if warmup else 1.0)
