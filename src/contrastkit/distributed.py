r"""Multi-process training: one autograd-aware all-gather, one loss wrapper, deterministic sharding.

Design
------
``torchrun --nproc-per-node P -m contrastkit fit ...`` starts P processes (ranks). Each rank holds a
replica of the model wrapped in ``DistributedDataParallel`` (DDP, which *averages* parameter
gradients over the ranks) and sees ``n = N / P`` instances of every global batch of ``N`` instances.
Every loss then goes through the same wrapper, :class:`DistributedLoss`:

1. :func:`gather_with_grad` concatenates the ``(n, V, D)`` embeddings of all ranks, in rank order,
   into the global ``(N, V, D)`` batch (labels and dataset indices are gathered too, without
   gradient);
2. the loss, built with ``reduction="none"``, is computed on the global batch, giving one term per
   anchor (``(N, V)`` or ``(N,)``);
3. the terms of this rank's anchors, rows ``rank * n ... rank * n + n - 1``, are kept and averaged.

Two-tower losses (CLIP, CLIP-rocket, bimodal SogCLR / iSogCLR) go through
:class:`DistributedPairLoss`, the same three steps with both towers' embeddings gathered.

``gather_with_grad`` is ``all_gather`` forward; backward, it ``all_reduce``\ s (SUM) the incoming
gradient of the global batch over the ranks, then returns this rank's slice. (The gradient is
neither left local, lightly#1528, nor divided by the world size, lightly#1977.)

Gradient convention (proof). Let ``T_a(Z)`` be the term of anchor ``a`` computed on the global batch
``Z = (z_1, ..., z_N)``, ``A_r`` the ``m = |A_r| = N_T / P`` anchors of rank ``r`` (``N_T`` terms in
all), and ``L = (1/N_T) sum_a T_a`` the single-process mean loss over the concatenated batch. Rank
``r`` minimises ``L_r = (1/m) sum_{a in A_r} T_a``, so ``L = (1/P) sum_r L_r``. Backward on rank
``r`` gives ``dL_r/dZ``; the all-reduce in the gather's backward turns it into
``G = sum_r dL_r/dZ = P dL/dZ`` (the same on every rank), of which rank ``q`` keeps the rows of its
own instances, ``P dL/dz_j`` for ``j`` in rank ``q``'s shard. Back-propagating through its
encoder replica, rank ``q`` obtains ``g_q = P sum_{j in q} (dL/dz_j)(dz_j/dtheta)``. DDP averages:
``(1/P) sum_q g_q = sum_j (dL/dz_j)(dz_j/dtheta) = dL/dtheta``, exactly the gradient of the
single-process mean loss over the concatenated batch, for every loss, whatever its negatives are.
(Parameters of the loss module itself, outside DDP, receive ``dL_r/dphi`` on rank ``r``; averaging
them over the ranks, :func:`average_gradients`, gives ``dL/dphi``.) The logged loss is
``(1/P) sum_r L_r = L``, via :func:`all_reduce_mean`.

Stateful losses (per-sample state of iSogCLR, key queues) see the same global batch, labels and
dataset indices on every rank, so their buffers are updated identically everywhere; the global torch
RNG is seeded identically on every rank (views use their own per-rank generators), so random choices
inside a loss agree as well. The loss is computed for all ``N`` anchors on every rank (its cost is
``P`` times that of the local-anchor share), which is what makes the state update rank-independent.

Sharding (:class:`ShardedBatchSampler`) is a pure function of ``(seed, epoch, rank)``: the epoch's
permutation of the dataset depends on ``(seed, epoch)`` only, global batch ``k`` is its slice
``[k N, (k + 1) N)``, and rank ``r`` takes the ``r``-th of ``P`` equal parts of it. The global
batches are therefore the same for every ``P`` (a single process sees exactly the concatenation),
and a run resumed in the middle of an epoch continues with exactly the batches it would have seen.

Limits: batch norm statistics stay per rank (as in plain DDP); a loss whose ``"mean"`` reduction is
not the plain mean of its ``"none"`` terms (SupCon with ``anchors_without_positives="drop"`` and a
single view) is averaged over all of its terms by the wrapper.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = [
    "DistContext",
    "DistributedLoss",
    "DistributedPairLoss",
    "ShardedBatchSampler",
    "all_reduce_mean",
    "average_gradients",
    "barrier",
    "call_loss",
    "derive_seed",
    "epoch_permutation",
    "gather_tensor",
    "gather_with_grad",
    "get_rank",
    "get_world_size",
    "init_distributed",
    "is_main_process",
]


# --------------------------------------------------------------------------------------------------
# process group


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (1 without torchrun), its local rank,
    and whether :func:`init_distributed` created the process group (and so should destroy it)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def close(self, *, synchronize: bool = False) -> None:
        """Destroy the process group if this context created it.

        Args:
            synchronize: Wait at a barrier first, so that no rank tears down its communicator
                while another still uses it (gloo may abort a process that exits mid-collective,
                "terminate called without an active exception"). Use it on the success path only:
                after a failure on one rank the others would wait at the barrier until the timeout.
        """
        if self.owns_group and dist.is_initialized():
            if synchronize and self.distributed:
                dist.barrier()
            dist.destroy_process_group()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ValueError(f"environment variable {name} must be an integer, got {value!r}") from exc


def init_distributed(*, use_cuda: bool, timeout_s: float = 1800.0) -> DistContext:
    """Join the process group that ``torchrun`` describes in the environment (``WORLD_SIZE`` > 1).

    Uses NCCL when ``use_cuda`` (one GPU per process, ``cuda:LOCAL_RANK``) and gloo otherwise.
    Without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) this is a single process and nothing is
    started. An already initialised group is reused.
    """
    if dist.is_available() and dist.is_initialized():
        return DistContext(
            rank=dist.get_rank(),
            world_size=dist.get_world_size(),
            local_rank=_env_int("LOCAL_RANK", 0),
            owns_group=False,
        )
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistContext()
    if not dist.is_available():
        raise RuntimeError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local_rank = _env_int("LOCAL_RANK", 0)
    backend = "nccl" if use_cuda else "gloo"
    if use_cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        owns_group=True,
    )


def _active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's rank (0 without a process group)."""
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    """The number of processes (1 without a process group)."""
    return dist.get_world_size() if _active() else 1


def is_main_process() -> bool:
    """Whether this is rank 0 (the one that writes checkpoints and logs)."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if _active():
        dist.barrier()


# --------------------------------------------------------------------------------------------------
# collectives


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; all_reduce(SUM) of the gradient, then this rank's slice, backward."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        x = x.contiguous()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
        ctx.rank, ctx.n = rank, x.shape[0]
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        total = grad.contiguous().clone()
        dist.all_reduce(total, op=dist.ReduceOp.SUM)
        return total[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def _check_same_rows(x: Tensor, name: str) -> None:
    sizes = torch.tensor([x.shape[0]], dtype=torch.int64, device=x.device)
    every = [torch.empty_like(sizes) for _ in range(dist.get_world_size())]
    dist.all_gather(every, sizes)
    rows = [int(s) for s in every]
    if len(set(rows)) != 1:
        raise ValueError(
            f"{name}: every rank must hold the same number of rows to be gathered; got {rows} "
            "(use ShardedBatchSampler, which gives every rank an equal share of each global batch)"
        )


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` (same shape on every rank) over the ranks along dim 0, differentiably.

    Forward: ``all_gather`` in rank order. Backward: the gradient of the concatenation is summed
    over the ranks (``all_reduce`` SUM) and each rank keeps the rows of its own ``x``, which is the
    gradient of the sum of every rank's objective with respect to this rank's input (see the module
    docstring for why, with DDP's averaging, this yields the single-process gradient). In a single
    process it returns ``x`` unchanged.
    """
    if not _active():
        return x
    out: Tensor = _GatherWithGrad.apply(x)
    return out


def gather_tensor(x: Tensor) -> Tensor:
    """Concatenate ``x`` over the ranks along dim 0, without gradient (labels, dataset indices)."""
    if not _active():
        return x
    x = x.detach().contiguous()
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x)
    return torch.cat(parts, dim=0)


def broadcast_text(text: str, *, device: torch.device | None = None) -> str:
    """Rank 0's ``text`` on every rank (``text`` itself in a single process).

    The bytes travel as a uint8 tensor (nothing is pickled); ``device`` must be a CUDA device
    under NCCL.
    """
    if not _active():
        return text
    data = torch.frombuffer(bytearray(text.encode("utf-8")), dtype=torch.uint8).to(device)
    size = torch.tensor([data.numel()], dtype=torch.int64, device=device)
    dist.broadcast(size, src=0)
    buffer = (
        data if dist.get_rank() == 0 else torch.empty(int(size), dtype=torch.uint8, device=device)
    )
    dist.broadcast(buffer, src=0)
    return bytes(buffer.cpu().tolist()).decode("utf-8")


def all_reduce_mean(x: Tensor) -> Tensor:
    """The mean of ``x`` over the ranks (a detached copy; ``x`` itself in a single process)."""
    if not _active():
        return x.detach()
    out = x.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out / dist.get_world_size()


def average_gradients(params: Any) -> None:
    """Average the ``.grad`` of ``params`` over the ranks (for parameters outside DDP, e.g. a
    loss's)."""
    if not _active():
        return
    world = dist.get_world_size()
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            p.grad.div_(world)


# --------------------------------------------------------------------------------------------------
# the one loss wrapper


def call_loss(
    loss: nn.Module,
    views: Tensor,
    labels: Tensor | None = None,
    index: Tensor | None = None,
) -> Tensor:
    """Call a views-loss with ``labels`` and ``index`` passed only when given (by keyword)."""
    kwargs: dict[str, Tensor] = {}
    if labels is not None:
        kwargs["labels"] = labels
    if index is not None:
        kwargs["index"] = index
    out: Tensor = loss(views, **kwargs)
    return out


class DistributedLoss(nn.Module):
    """Local anchors against the global batch, for any loss: the module docstring's convention.

    ``loss`` must be built with ``reduction="none"`` and return one term per anchor with the
    instances along dim 0 (``(N, V)`` or ``(N,)``). ``forward(views (n, V, D), labels=None,
    index=None)`` gathers the embeddings (with gradient), labels and dataset indices of every rank,
    computes the terms on the global batch and returns the mean of this rank's terms. In a single
    process it is the mean of all terms, i.e. the loss's ``"mean"`` reduction.

    Args:
        loss: a loss module with ``reduction="none"``.
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        reduction = getattr(loss, "reduction", None)
        if reduction != "none":
            raise ValueError(
                f"DistributedLoss needs a loss built with reduction='none' (one term per anchor); "
                f"{type(loss).__name__} has reduction={reduction!r}"
            )
        self.loss = loss

    def forward(
        self, views: Tensor, labels: Tensor | None = None, index: Tensor | None = None
    ) -> Tensor:
        n = views.shape[0]
        if _active():
            _check_same_rows(views, "DistributedLoss")
            rank = dist.get_rank()
            all_views = gather_with_grad(views)
            all_labels = gather_tensor(labels) if labels is not None else None
            all_index = gather_tensor(index) if index is not None else None
        else:
            rank, all_views, all_labels, all_index = 0, views, labels, index
        terms = call_loss(self.loss, all_views, all_labels, all_index)
        if terms.dim() == 0 or terms.shape[0] != all_views.shape[0]:
            raise ValueError(
                f"{type(self.loss).__name__}(reduction='none') must return one term per anchor, "
                f"with the {all_views.shape[0]} instances along dim 0; got shape "
                f"{tuple(terms.shape)}"
            )
        return terms[rank * n : (rank + 1) * n].mean()


class DistributedPairLoss(nn.Module):
    """:class:`DistributedLoss`'s convention for two-tower losses: both towers are gathered.

    ``loss`` (built with ``reduction="none"``) takes ``(a, b, *extra)`` and returns one term per
    pair, ``(N,)``. ``forward(a (n, D), b (n, D), *extra, index=None)`` gathers ``a``, ``b`` and
    every tensor of ``extra`` (e.g. augmented-view embeddings ``(n, A, D)``) from every rank with
    :func:`gather_with_grad`, so that both towers see the negatives of the global batch with their
    gradients, gathers the dataset indices without gradient (per-sample state, e.g. SogCLR's, is
    then updated identically on every rank), computes the terms on the global batch and returns the
    mean of this rank's pairs (the anchors stay local). ``None`` entries of ``extra`` are passed on
    as ``None``. The module docstring's proof applies unchanged: with DDP's gradient averaging, the
    gradient equals the single-process one on the concatenated batch. In a single process it is
    the mean of all terms, i.e. the loss's ``"mean"`` reduction.

    Args:
        loss: a two-tower loss module with ``reduction="none"``.

    Example:
        >>> from contrastkit.losses import CLIPLoss
        >>> image, text = torch.randn(8, 16), torch.randn(8, 16)
        >>> wrapped = DistributedPairLoss(CLIPLoss(reduction="none"))
        >>> bool(torch.allclose(wrapped(image, text), CLIPLoss()(image, text)))
        True
    """

    def __init__(self, loss: nn.Module) -> None:
        super().__init__()
        reduction = getattr(loss, "reduction", None)
        if reduction != "none":
            raise ValueError(
                "DistributedPairLoss needs a loss built with reduction='none' (one term per pair); "
                f"{type(loss).__name__} has reduction={reduction!r}"
            )
        self.loss = loss

    def forward(
        self, a: Tensor, b: Tensor, *extra: Tensor | None, index: Tensor | None = None
    ) -> Tensor:
        n = a.shape[0]
        if b.shape[0] != n or any(e is not None and e.shape[0] != n for e in extra):
            raise ValueError(
                "DistributedPairLoss: a, b and the extra inputs must hold the same number of "
                f"pairs; got {[a.shape[0], b.shape[0], *(e.shape[0] for e in extra if e is not None)]}"
            )
        if _active():
            _check_same_rows(a, "DistributedPairLoss")
            rank = dist.get_rank()
            all_a, all_b = gather_with_grad(a), gather_with_grad(b)
            all_extra = [gather_with_grad(e) if e is not None else None for e in extra]
            all_index = gather_tensor(index) if index is not None else None
        else:
            rank, all_a, all_b, all_extra, all_index = 0, a, b, list(extra), index
        kwargs = {"index": all_index} if all_index is not None else {}
        terms: Tensor = self.loss(all_a, all_b, *all_extra, **kwargs)
        if terms.dim() != 1 or terms.shape[0] != all_a.shape[0]:
            raise ValueError(
                f"{type(self.loss).__name__}(reduction='none') must return one term per pair, "
                f"shape ({all_a.shape[0]},); got shape {tuple(terms.shape)}"
            )
        return terms[rank * n : (rank + 1) * n].mean()


# --------------------------------------------------------------------------------------------------
# deterministic sharding


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the non-negative integers ``parts``
    (SeedSequence)."""
    words = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


_ORDER_STREAM = 0x5EED0  # separates the shuffling stream from the view stream of the same seed
_VIEW_STREAM = 0x71E35


def epoch_permutation(n: int, *, seed: int, epoch: int) -> Tensor:
    """The order of the ``n`` samples in ``epoch``: a pure function of ``(seed, epoch)``."""
    g = torch.Generator().manual_seed(derive_seed(_ORDER_STREAM, seed, epoch))
    return torch.randperm(n, generator=g)


def view_generator(*, seed: int, epoch: int, step: int, rank: int) -> torch.Generator:
    """The CPU generator of the random views of one step on one rank (a pure function of its
    args)."""
    return torch.Generator().manual_seed(derive_seed(_VIEW_STREAM, seed, epoch, step, rank))


class ShardedBatchSampler:
    """Global batches of a seeded epoch permutation, each split into equal per-rank parts.

    The effective global batch is ``min(batch_size, n)`` rounded down to a multiple of
    ``world_size``; the incomplete last batch of an epoch is dropped (contrastive losses want full
    batches). ``batches(epoch, start)`` yields this rank's index batches from step ``start`` on.

    Args:
        n: dataset size.
        batch_size: global batch size (all ranks together).
        seed: the run's seed.
        rank: this process's rank.
        world_size: number of processes.
    """

    def __init__(
        self, n: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1
    ) -> None:
        if n < 1 or batch_size < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need n >= 1, batch_size >= 1 and 0 <= rank < world_size; got n={n}, "
                f"batch_size={batch_size}, rank={rank}, world_size={world_size}"
            )
        global_batch = (min(batch_size, n) // world_size) * world_size
        if global_batch < world_size:
            raise ValueError(
                f"a global batch of {min(batch_size, n)} cannot be shared by {world_size} processes"
            )
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.global_batch = global_batch
        self.local_batch = global_batch // world_size
        self.steps_per_epoch = n // global_batch

    def __len__(self) -> int:
        return self.steps_per_epoch

    def global_batches(self, epoch: int) -> list[Tensor]:
        """Every global batch of ``epoch``, in order."""
        order = epoch_permutation(self.n, seed=self.seed, epoch=epoch)
        b = self.global_batch
        return [order[k * b : (k + 1) * b] for k in range(self.steps_per_epoch)]

    def batches(self, epoch: int, start: int = 0) -> Iterator[tuple[int, Tensor]]:
        """``(step, indices)`` of this rank for steps ``start, start + 1, ...`` of ``epoch``."""
        lo, hi = self.rank * self.local_batch, (self.rank + 1) * self.local_batch
        for step, batch in enumerate(self.global_batches(epoch)):
            if step >= start:
                yield step, batch[lo:hi]
