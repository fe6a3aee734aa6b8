"""Momentum (EMA) encoders and the FIFO key queue of MoCo-style training.

- :class:`MomentumEncoder` keeps an exponential-moving-average copy of a module (MoCo's key encoder,
  BYOL's target network) whose parameters never receive gradients.
- :func:`cosine_momentum` is the cosine schedule of the EMA momentum (BYOL: from ``base`` to 1).
- :class:`KeyQueue` is MoCo's dictionary: a ring buffer of L2-normalised keys (and optional
  labels), kept in persistent buffers so that it is saved and restored with the ``state_dict``.

Papers: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (2020) for
the key encoder and the queue; Grill et al., "Bootstrap Your Own Latent" (2020) for the cosine
momentum schedule.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_embeddings, check_probability, check_tensor

__all__ = ["KeyQueue", "MomentumEncoder", "cosine_momentum"]


def _check_momentum(momentum: float) -> float:
    return check_probability(momentum, "momentum")


def cosine_momentum(
    step: int, total_steps: int, *, base: float = 0.996, final: float = 1.0
) -> float:
    r"""Cosine momentum schedule ``m(t) = final - (final - base) (cos(pi t / T) + 1) / 2``.

    Starts at ``base`` (``t = 0``) and rises to ``final`` at ``t = T``; steps past ``T`` stay at
    ``final``. Defaults from BYOL (Grill et al., "Bootstrap Your Own Latent", 2020): ``base =
    0.996``, ``final = 1``.

    Args:
        step: current step ``t >= 0``.
        total_steps: ``T >= 1``.
        base: momentum at step 0, in [0, 1].
        final: momentum at step ``T``, in [0, 1].
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be a non-negative integer, got {step!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, int) or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer, got {total_steps!r}")
    b = check_probability(base, "base")
    f = check_probability(final, "final")
    t = min(step, total_steps) / total_steps
    return f - (f - b) * (math.cos(math.pi * t) + 1.0) / 2.0


class MomentumEncoder(nn.Module):
    r"""An exponential-moving-average copy of a module, with frozen parameters.

    After each optimiser step of the online module ``f_q``, :meth:`update` sets every parameter of
    the copy

    .. math:: \theta_k \leftarrow m\,\theta_k + (1 - m)\,\theta_q

    (MoCo's key-encoder update; ``m = 0.999`` in MoCo, ``0.99`` in MoCo v3 and BYOL's schedule
    starting at 0.996, see :func:`cosine_momentum`). The copy's parameters have
    ``requires_grad=False`` and its forward pass runs under ``torch.no_grad()``, so keys never carry
    gradients.

    Buffers (e.g. BatchNorm running statistics) are, by default, left to the copy's own forward
    passes, as in MoCo; ``copy_buffers=True`` copies them from the online module at every update
    instead.

    Args:
        module: the online module; it is deep-copied at construction.
        momentum: default ``m`` of :meth:`update`, in [0, 1].
        copy_buffers: copy the online module's buffers at each update.
    """

    def __init__(
        self, module: nn.Module, *, momentum: float = 0.999, copy_buffers: bool = False
    ) -> None:
        super().__init__()
        if not isinstance(module, nn.Module):
            raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
        self.momentum = _check_momentum(momentum)
        self.copy_buffers = bool(copy_buffers)
        self.module = copy.deepcopy(module)
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, online: nn.Module, momentum: float | None = None) -> None:
        """EMA step ``theta_k <- m theta_k + (1 - m) theta_q`` from the online module's parameters.

        Raises:
            ValueError: if ``online`` does not have the same parameter names and shapes as the copy.
        """
        m = self.momentum if momentum is None else _check_momentum(momentum)
        mine = dict(self.module.named_parameters())
        theirs = dict(online.named_parameters())
        if mine.keys() != theirs.keys():
            missing = sorted(mine.keys() ^ theirs.keys())
            raise ValueError(
                "online module must have the same parameters as the momentum copy; "
                f"names that differ: {missing[:5]}"
            )
        for name, p_k in mine.items():
            p_q = theirs[name]
            if p_q.shape != p_k.shape:
                raise ValueError(
                    f"parameter {name!r} has shape {tuple(p_q.shape)} in the online module but "
                    f"{tuple(p_k.shape)} in the momentum copy"
                )
            p_k.mul_(m).add_(p_q.detach().to(p_k.dtype), alpha=1.0 - m)
        if self.copy_buffers:
            own = dict(self.module.named_buffers())
            for name, b_q in online.named_buffers():
                if name in own:
                    own[name].copy_(b_q)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the copy under ``torch.no_grad()``."""
        with torch.no_grad():
            return self.module(*args, **kwargs)

    def extra_repr(self) -> str:
        return f"momentum={self.momentum}, copy_buffers={self.copy_buffers}"


class KeyQueue(nn.Module):
    """A FIFO ring buffer of L2-normalised keys (MoCo's dictionary), with optional labels.

    The ``size`` slots live in the persistent buffer ``keys`` ``(size, dim)``; ``ptr`` is the next
    slot to write and ``count`` the number of filled slots, both persistent buffers too, so
    ``state_dict`` holds the whole queue state. :meth:`enqueue` writes a batch at ``ptr`` (wrapping
    around and overwriting the oldest keys); a batch longer than the queue keeps its last ``size``
    keys.

    Ordering is deterministic: :meth:`negatives` returns the filled slots in **slot order** (slot 0
    first), which is what MoCo uses (the order does not change any loss, only the column order of
    the logits). Before the queue is full, slots ``0 .. count - 1`` are filled, so only those are
    returned.

    Distributed training: the queue does not communicate. Every process must call :meth:`enqueue`
    with the keys **already gathered from all processes** (in rank order, e.g.
    ``torch.distributed.all_gather`` then ``torch.cat``), so that the queues of all processes stay
    identical.

    Args:
        dim: key dimension.
        size: number of slots (MoCo: 65536 on ImageNet, 4096 for CIFAR-scale).
        with_labels: also keep an integer label per key (for supervised / class-aware negatives).
    """

    keys: Tensor
    ptr: Tensor
    count: Tensor
    labels: Tensor

    def __init__(self, dim: int, size: int, *, with_labels: bool = False) -> None:
        super().__init__()
        for name, value in (("dim", dim), ("size", size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.dim = dim
        self.size = size
        self.with_labels = bool(with_labels)
        self.register_buffer("keys", torch.zeros(size, dim))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self.register_buffer("count", torch.zeros((), dtype=torch.long))
        if self.with_labels:
            self.register_buffer("labels", torch.full((size,), -1, dtype=torch.long))

    def __len__(self) -> int:
        return int(self.count)

    @property
    def is_full(self) -> bool:
        """Whether every slot holds a key."""
        return int(self.count) == self.size

    @torch.no_grad()
    def enqueue(self, keys: Tensor, labels: Tensor | None = None) -> None:
        """Write a batch of keys (normalised, detached) at the pointer; the oldest are overwritten.

        Args:
            keys: ``(B, dim)``; under distributed training, the keys gathered from all processes.
            labels: ``(B,)`` integers, required when the queue keeps labels, refused otherwise.
        """
        k = check_embeddings(keys, "keys", dim=self.dim)
        b = k.shape[0]
        lab: Tensor | None = None
        if self.with_labels:
            if labels is None:
                raise ValueError(
                    "this KeyQueue keeps labels (with_labels=True); enqueue needs labels"
                )
            lab = check_tensor(labels, "labels")
            if lab.dim() != 1 or lab.shape[0] != b:
                raise ValueError(f"labels must have shape ({b},); got {tuple(lab.shape)}")
            if lab.is_floating_point() or lab.dtype == torch.bool:
                raise TypeError(f"labels must be an integer tensor, got dtype {lab.dtype}")
        elif labels is not None:
            raise ValueError("labels given, but this KeyQueue was built with with_labels=False")
        if b == 0:
            return
        k = F.normalize(k.detach().to(device=self.keys.device, dtype=torch.float32), dim=1)
        k = k.to(self.keys.dtype)
        if b > self.size:
            k = k[b - self.size :]
            lab = lab[b - self.size :] if lab is not None else None
            b = self.size
        start = int(self.ptr)
        slots = (start + torch.arange(b, device=self.keys.device)) % self.size
        self.keys[slots] = k
        if lab is not None:
            self.labels[slots] = lab.to(device=self.labels.device, dtype=torch.long)
        self.ptr.fill_((start + b) % self.size)
        self.count.fill_(min(int(self.count) + b, self.size))

    def negatives(self) -> Tensor:
        """A detached copy of the filled keys ``(count, dim)`` in slot order.

        A copy, so that a later :meth:`enqueue` (an in-place write) cannot corrupt a graph that used
        it.
        """
        return self.keys[: int(self.count)].clone()

    def negative_labels(self) -> Tensor:
        """The labels ``(count,)`` of :meth:`negatives`, in the same order."""
        if not self.with_labels:
            raise ValueError("this KeyQueue keeps no labels (built with with_labels=False)")
        return self.labels[: int(self.count)].clone()

    def reset(self) -> None:
        """Empty the queue."""
        self.keys.zero_()
        self.ptr.zero_()
        self.count.zero_()
        if self.with_labels:
            self.labels.fill_(-1)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, size={self.size}, with_labels={self.with_labels}"
