"""Deterministic tiny training problems shared by the DDP equivalence worker and its test."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.losses import get_loss, loss_info

STEPS = 3
GLOBAL_N = 12  # instances per global batch (6 per rank with 2 processes)
IN_DIM, OUT_DIM = 6, 5
DATASET = 40

#: loss name -> (constructor keyword arguments, views); the first three must exist
CASES: dict[str, tuple[dict[str, object], int]] = {
    "ntxent": ({"temperature": 0.3}, 2),
    "supcon": ({"temperature": 0.2, "base_temperature": 0.2}, 2),
    "dcl": ({"temperature": 0.3}, 3),
    "mvdhel": ({"temperature": 0.4}, 3),
    "mvinfonce": ({"temperature": 0.4}, 3),
    "isogclr": ({"temperature": 0.3, "num_samples": DATASET, "eta": 0.05}, 2),
    "cacr": ({"tau_minus": 0.9}, 3),
    "groco": ({"topk_negatives": 4, "stop_grad": False}, 2),
    "moco_v2": ({"queue_size": 30, "temperature": 0.3}, 2),
    "mochi": ({"queue_size": 30, "mix_hard": 8, "mix_pairs": 5, "mix_query": 3}, 2),
}
REQUIRED = ("ntxent", "supcon", "dcl")


def available_cases() -> list[str]:
    """The cases whose loss is registered (multi-view and global losses join when they exist)."""
    names = []
    for name in CASES:
        try:
            loss_info(name)
        except ValueError:
            if name in REQUIRED:
                raise
            continue
        names.append(name)
    return names


def build_case(name: str, *, reduction: str) -> tuple[nn.Module, nn.Module]:
    """A seeded Linear model and the case's loss."""
    kwargs, _ = CASES[name]
    torch.manual_seed(1234)
    model = nn.Linear(IN_DIM, OUT_DIM)
    loss = get_loss(name, reduction=reduction, **kwargs)
    if getattr(loss_info(name), "momentum_encoder", False):
        loss.attach(model, OUT_DIM)  # type: ignore[operator]  # queue of random keys
    return model, loss


def case_batch(name: str, step: int) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """The global batch of ``step``: inputs (N, V, IN_DIM), labels (N,) or None, index (N,) or
    None."""
    _, views = CASES[name]
    g = torch.Generator().manual_seed(100 + step)
    x = torch.randn(GLOBAL_N, views, IN_DIM, generator=g)
    info = loss_info(name)
    labels = torch.randint(0, 3, (GLOBAL_N,), generator=g) if info.needs_labels else None
    index = None
    if getattr(info, "needs_index", False):
        index = torch.randperm(DATASET, generator=g)[:GLOBAL_N]
    return x, labels, index


def make_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
