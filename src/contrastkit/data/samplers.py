"""Batch samplers that shape what a contrastive batch contains, and a rehearsal buffer.

- :class:`ClusterSpreadBatchSampler` (G-SimCLR, docs/methods.md, section 3.8): batches that hold at most one
  sample of each pseudo-label cluster, so that in-batch negatives are unlikely to be
  same-category samples.
- :class:`CellBatchSampler` and :func:`mixed_radix_labels` (MCL, docs/methods.md, section 3.8): every batch is
  drawn from one pseudo-label cell of the earlier stages' clusterings, so all in-batch negatives
  share the anchor's earlier clusters.
- :class:`GroupPairSampler` (participant-level / device positives, docs/methods.md, section 3.8): pairs of
  different samples that share a group id.
- :class:`ReplayBuffer` and :func:`replay_batch` (COCONUT, docs/methods.md 2.3(c), 3.8): a class-balanced
  or reservoir rehearsal buffer and the ``anchor_mask`` that restricts SupCon to its samples.

Every sampler is a ``torch.utils.data.Sampler`` of index lists (usable as a DataLoader's
``batch_sampler``); its randomness is a pure function of ``(seed, epoch)``: call
:meth:`set_epoch` before each epoch, as with ``DistributedSampler``. ``batches(epoch)`` returns
the epoch's batches directly.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Sampler

from contrastkit._validation import check_choice, check_int

__all__ = [
    "CellBatchSampler",
    "ClusterSpreadBatchSampler",
    "GroupPairSampler",
    "ReplayBuffer",
    "mixed_radix_labels",
    "replay_batch",
]

# Large odd constants that separate the random streams of the samplers (mixed with seed, epoch).
_SPREAD_STREAM = 0x5EED_C1A5
_CELL_STREAM = 0x5EED_CE11
_PAIR_STREAM = 0x5EED_9A12


def _check_int(value: object, name: str, minimum: int) -> int:
    return check_int(value, name, minimum=minimum)


def _check_bool(value: object, name: str) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
    return value


def _as_ids(ids: object, name: str) -> Tensor:
    """A 1-D int64 CPU tensor from a tensor, array or sequence of integers."""
    if isinstance(ids, Tensor):
        t = ids.detach().cpu()
    elif isinstance(ids, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(ids))
    elif isinstance(ids, Sequence) and not isinstance(ids, str | bytes):
        try:
            t = torch.as_tensor(list(ids))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise TypeError(f"{name} must hold integers: {exc}") from exc
    else:
        raise TypeError(
            f"{name} must be a 1-D tensor, numpy array or sequence of integers, got "
            f"{type(ids).__name__}"
        )
    if t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
        raise TypeError(f"{name} must hold integers, got dtype {t.dtype}")
    if t.dim() != 1 or t.numel() < 1:
        raise ValueError(f"{name} must be a non-empty 1-D vector; got shape {tuple(t.shape)}")
    return t.to(torch.int64)


def _generator(stream: int, seed: int, epoch: int) -> torch.Generator:
    mixed = (stream * 1_000_003 + seed * 9_176_141 + epoch * 6_700_417) % (2**63 - 1)
    return torch.Generator().manual_seed(mixed)


def _groups(ids: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Distinct ids (ascending) and, for each, its member indices in ascending order."""
    uniq, inverse = torch.unique(ids, return_inverse=True)
    order = torch.argsort(inverse, stable=True)
    counts = torch.bincount(inverse, minlength=uniq.numel()).tolist()
    return uniq, list(torch.split(order, counts))


class _EpochSampler(Sampler[list[int]]):
    """Shared epoch handling: ``set_epoch``, ``__iter__`` over ``batches(self.epoch)``."""

    epoch: int

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches the next iteration yields."""
        self.epoch = _check_int(epoch, "epoch", 0)

    def batches(self, epoch: int) -> list[Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches(self.epoch):
            yield batch.tolist()


class ClusterSpreadBatchSampler(_EpochSampler):
    """G-SimCLR batches: consecutive samples of one rank across clusters, so clusters spread out.

    Every sample gets a rank inside its cluster (its position in the cluster's member order); the
    data are ordered by rank, and inside one rank by cluster, always in the same order of clusters
    within an epoch; the order is cut into consecutive batches. The sequence of cluster ids is thus
    periodic while every cluster still has members, and **when the clusters are balanced (equal
    sizes) and there are ``K >= batch_size`` of them, no batch holds two samples of one cluster**.
    With unbalanced clusters the guarantee holds only for batches inside the first
    ``min_cluster_size`` ranks; later ranks hold fewer clusters and a batch may repeat one.

    Reference behaviour (ariG23498/G-SimCLR, docs/methods.md 3.8): K-means with ``K = batch_size`` on a
    denoising autoencoder's latents, members ranked in dataset order, iterated without shuffling —
    that is ``reshuffle=False`` here. ``reshuffle=True`` (the default) draws, every epoch, a new
    member order inside each cluster and a new order of the clusters, so the batches differ
    between epochs while keeping the spread.

    Paper: Chakraborty et al., "G-SimCLR: Self-Supervised Contrastive Learning with Guided
    Projection via Pseudo Labelling" (2020).

    Args:
        cluster_ids: ``(N,)`` integer pseudo-labels (any integer values).
        batch_size: Samples per batch (>= 1).
        reshuffle: Reshuffle members and cluster order every epoch (False: the reference's fixed
            order: clusters ascending, members in index order).
        seed: Seed of the reshuffling.
        drop_last: Drop the final incomplete batch.
    """

    def __init__(
        self,
        cluster_ids: Tensor | np.ndarray | Sequence[int],
        batch_size: int,
        *,
        reshuffle: bool = True,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.cluster_ids = _as_ids(cluster_ids, "cluster_ids")
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.reshuffle = _check_bool(reshuffle, "reshuffle")
        self.seed = _check_int(seed, "seed", 0)
        self.drop_last = _check_bool(drop_last, "drop_last")
        n = self.cluster_ids.numel()
        if self.drop_last and n < self.batch_size:
            raise ValueError(
                f"batch_size {self.batch_size} is larger than the {n} samples, so drop_last=True "
                "leaves no batch"
            )
        self._uniq, self._members = _groups(self.cluster_ids)
        self.epoch = 0

    @property
    def num_clusters(self) -> int:
        """Number of distinct cluster ids."""
        return int(self._uniq.numel())

    def __len__(self) -> int:
        n = self.cluster_ids.numel()
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def order(self, epoch: int) -> Tensor:
        """The epoch's full sample order (before cutting into batches)."""
        epoch = _check_int(epoch, "epoch", 0)
        members = self._members
        cluster_order = torch.arange(len(members))
        if self.reshuffle:
            g = _generator(_SPREAD_STREAM, self.seed, epoch)
            members = [m[torch.randperm(m.numel(), generator=g)] for m in members]
            cluster_order = torch.randperm(len(members), generator=g)
        sizes = torch.tensor([members[int(c)].numel() for c in cluster_order])
        parts = []
        for rank in range(int(sizes.max())):
            alive = cluster_order[sizes > rank]
            parts.append(torch.stack([members[int(c)][rank] for c in alive]))
        return torch.cat(parts)

    def batches(self, epoch: int) -> list[Tensor]:
        """The index batches of ``epoch`` (int64 tensors)."""
        order = self.order(epoch)
        b = self.batch_size
        out = [order[s : s + b] for s in range(0, order.numel(), b)]
        if self.drop_last and out and out[-1].numel() < b:
            out.pop()
        return out


def mixed_radix_labels(
    stage_cluster_ids: Sequence[Tensor | np.ndarray | Sequence[int]], k: int
) -> Tensor:
    r"""MCL's pseudo-label of stage ``t``: the mixed-radix code of all stage cluster ids so far.

    .. math:: y_t = \sum_{s=0}^{t} c_s\, K^{t-s}

    so samples share ``y_t`` exactly when they share every stage's cluster (``K^{t+1}`` possible
    cells). This is the intended formula of MCL (MajorDavidZhang/MCL ``cluster.py``); the reference
    loop reloads the *current* stage's labels in every iteration, which gives
    ``sum_s c_t K^{t-s}`` instead — not reproduced here (docs/methods.md, section 3.8).

    Paper: "Learning the Unlearned: Mitigating Feature Suppression in Contrastive Learning"
    (Multistage Contrastive Learning, MCL; 2024).

    Args:
        stage_cluster_ids: ``t + 1`` vectors ``(N,)`` of cluster ids in ``[0, k)``, stage 0 first.
        k: Clusters per stage (MCL: 10).

    Returns:
        ``(N,)`` int64 cell ids in ``[0, k^{t+1})``.
    """
    k = _check_int(k, "k", 1)
    if isinstance(stage_cluster_ids, Tensor | np.ndarray | str) or not isinstance(
        stage_cluster_ids, Sequence
    ):
        raise TypeError(
            "stage_cluster_ids must be a sequence (list/tuple) of per-stage id vectors, got "
            f"{type(stage_cluster_ids).__name__}"
        )
    if len(stage_cluster_ids) < 1:
        raise ValueError("stage_cluster_ids must hold at least one stage")
    stages = len(stage_cluster_ids)
    if stages * math.log2(max(k, 2)) >= 63:
        raise ValueError(f"{k}^{stages} cells do not fit in int64; use fewer stages")
    code: Tensor | None = None
    for s, ids in enumerate(stage_cluster_ids):
        c = _as_ids(ids, f"stage_cluster_ids[{s}]")
        if code is not None and c.numel() != code.numel():
            raise ValueError(
                f"stage_cluster_ids[{s}] has {c.numel()} entries, stage 0 has {code.numel()}"
            )
        lo, hi = int(c.min()), int(c.max())
        if lo < 0 or hi >= k:
            raise ValueError(
                f"stage_cluster_ids[{s}] must lie in [0, k) = [0, {k}); got values in [{lo}, {hi}]"
            )
        code = c.clone() if code is None else code * k + c
    assert code is not None
    return code


class CellBatchSampler(_EpochSampler):
    """MCL batches: every batch lies inside one pseudo-label cell; cells take turns.

    Each epoch, the members of every cell are shuffled (seeded by ``(seed, epoch)``; with
    ``shuffle=False`` they stay in index order) and cut into batches of ``batch_size``; the
    leftover ``< batch_size`` samples of a cell are dropped for that epoch (a different subset each
    epoch when shuffling). Batches are then taken round-robin over the cells in ascending cell-id
    order (first batch of every cell, then second batch of every cell, ...), so no cell is starved
    at the end of the epoch. Cells smaller than ``batch_size`` never yield a batch.

    Paper: "Learning the Unlearned: Mitigating Feature Suppression in Contrastive Learning" (MCL,
    2024); MajorDavidZhang/MCL ``my_training/data.py`` (docs/methods.md, section 3.8).

    Args:
        cell_ids: ``(N,)`` integer cell ids (e.g. from :func:`mixed_radix_labels`).
        batch_size: Samples per batch (>= 1).
        seed: Seed of the per-epoch shuffle.
        shuffle: Shuffle inside cells every epoch.
    """

    def __init__(
        self,
        cell_ids: Tensor | np.ndarray | Sequence[int],
        batch_size: int,
        seed: int = 0,
        *,
        shuffle: bool = True,
    ) -> None:
        self.cell_ids = _as_ids(cell_ids, "cell_ids")
        self.batch_size = _check_int(batch_size, "batch_size", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.shuffle = _check_bool(shuffle, "shuffle")
        self._uniq, self._members = _groups(self.cell_ids)
        self._per_cell = [m.numel() // self.batch_size for m in self._members]
        if sum(self._per_cell) == 0:
            largest = max(m.numel() for m in self._members)
            raise ValueError(
                f"no cell holds batch_size={self.batch_size} samples (the largest holds "
                f"{largest}); lower batch_size or use fewer clustering stages"
            )
        self.epoch = 0

    @property
    def num_cells(self) -> int:
        """Number of distinct cell ids."""
        return int(self._uniq.numel())

    @property
    def samples_used(self) -> int:
        """Samples used per epoch (the rest are cell leftovers or cells below one batch)."""
        return sum(self._per_cell) * self.batch_size

    def __len__(self) -> int:
        return sum(self._per_cell)

    def batches(self, epoch: int) -> list[Tensor]:
        """The index batches of ``epoch`` (int64 tensors), round-robin over cells."""
        epoch = _check_int(epoch, "epoch", 0)
        g = _generator(_CELL_STREAM, self.seed, epoch) if self.shuffle else None
        b = self.batch_size
        per_cell: list[list[Tensor]] = []
        for members, count in zip(self._members, self._per_cell, strict=True):
            m = members[torch.randperm(members.numel(), generator=g)] if g is not None else members
            per_cell.append([m[j * b : (j + 1) * b] for j in range(count)])
        out: list[Tensor] = []
        for j in range(max(self._per_cell)):
            out.extend(cell[j] for cell in per_cell if j < len(cell))
        return out


class GroupPairSampler(_EpochSampler):
    """Pairs ``(i, j)``, ``i != j``, of samples that share a group id, batched.

    Each epoch the members of every group are shuffled and paired consecutively (a group of ``m``
    members gives ``m // 2`` disjoint pairs; an odd one out waits for another epoch; groups of one
    member give none). Pairs are then interleaved across groups like
    :class:`ClusterSpreadBatchSampler` (pair rank, then a per-epoch group order), so that a batch of
    ``pairs_per_batch`` pairs holds pairs of distinct groups whenever the groups have equal pair
    counts and there are at least ``pairs_per_batch`` groups. Otherwise two pairs of one group can
    share a batch: pass the group ids as labels to a multi-positive loss (SupCon) to treat them as
    positives rather than negatives.

    Iterating yields ``list[int]`` of length ``2 P``: the first members of the P pairs, then the
    second members (reshape to ``(2, P)``); :meth:`batches` returns ``(P, 2)`` tensors.

    Use: participant-level positives of wearable biosignal models, time-synchronised windows of two
    devices (ColloSSL), trial/patient levels of COMET (docs/methods.md, section 3.8).

    Args:
        group_ids: ``(N,)`` integer group ids.
        pairs_per_batch: Pairs per batch (>= 1).
        seed: Seed of the per-epoch shuffle.
        drop_last: Drop the final incomplete batch.
    """

    def __init__(
        self,
        group_ids: Tensor | np.ndarray | Sequence[int],
        pairs_per_batch: int = 64,
        *,
        seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        self.group_ids = _as_ids(group_ids, "group_ids")
        self.pairs_per_batch = _check_int(pairs_per_batch, "pairs_per_batch", 1)
        self.seed = _check_int(seed, "seed", 0)
        self.drop_last = _check_bool(drop_last, "drop_last")
        self._uniq, members = _groups(self.group_ids)
        self._members = [m for m in members if m.numel() >= 2]
        self.num_pairs = sum(m.numel() // 2 for m in self._members)
        if self.num_pairs == 0:
            raise ValueError("no group id occurs twice in group_ids, so there is no pair to draw")
        if self.drop_last and self.num_pairs < self.pairs_per_batch:
            raise ValueError(
                f"pairs_per_batch {self.pairs_per_batch} is larger than the {self.num_pairs} "
                "pairs available, so drop_last=True leaves no batch"
            )
        self.epoch = 0

    def __len__(self) -> int:
        p = self.pairs_per_batch
        return self.num_pairs // p if self.drop_last else math.ceil(self.num_pairs / p)

    def pairs(self, epoch: int) -> Tensor:
        """All ``(num_pairs, 2)`` pairs of ``epoch`` in batch order."""
        epoch = _check_int(epoch, "epoch", 0)
        g = _generator(_PAIR_STREAM, self.seed, epoch)
        per_group = []
        for m in self._members:
            perm = m[torch.randperm(m.numel(), generator=g)]
            half = m.numel() // 2
            per_group.append(perm[: 2 * half].view(half, 2))
        group_order = torch.randperm(len(per_group), generator=g).tolist()
        rows: list[Tensor] = []
        for rank in range(max(p.shape[0] for p in per_group)):
            rows.extend(per_group[gi][rank] for gi in group_order if rank < per_group[gi].shape[0])
        return torch.stack(rows)

    def batches(self, epoch: int) -> list[Tensor]:
        """The ``(P, 2)`` pair batches of ``epoch``."""
        pairs = self.pairs(epoch)
        p = self.pairs_per_batch
        out = [pairs[s : s + p] for s in range(0, pairs.shape[0], p)]
        if self.drop_last and out and out[-1].shape[0] < p:
            out.pop()
        return out

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches(self.epoch):
            yield batch.T.reshape(-1).tolist()


REPLAY_MODES = ("balanced", "reservoir")


class ReplayBuffer:
    """A fixed-capacity rehearsal buffer of ``(x, y)`` samples: class-balanced or reservoir.

    - ``mode="reservoir"``: reservoir sampling (Vitter's algorithm R): after ``n`` offered samples
      each is in the buffer with probability ``capacity / n``.
    - ``mode="balanced"`` (default): class-balanced reservoir sampling (Chrysakis & Moens, "Online
      Continual Learning from Imbalanced Data", 2020): while full, a sample of a class that is not
      among the largest in the buffer replaces a random sample of a largest class; a sample of a
      largest class replaces a random sample of its own class with probability
      ``stored_c / seen_c``. The buffer tends to equal counts per class.

    All randomness comes from one generator seeded by ``seed``, so the buffer's content is a pure
    function of ``(seed, the stream of added samples)``. Samples are stored (cloned, detached) on
    the CPU; ``x`` rows may have any shape, fixed by the first :meth:`add`.

    Used by COCONUT (Cappellazzo et al., "Continual Contrastive Spoken Language Understanding",
    2023): SupCon restricted to anchors from the buffer (see :func:`replay_batch`).

    Args:
        capacity: Maximum number of stored samples (>= 1).
        mode: ``"balanced"`` or ``"reservoir"``.
        seed: Seed of the buffer's generator.
    """

    def __init__(self, capacity: int, *, mode: str = "balanced", seed: int = 0) -> None:
        self.capacity = _check_int(capacity, "capacity", 1)
        self.mode = check_choice(mode, "mode", REPLAY_MODES)
        self.seed = _check_int(seed, "seed", 0)
        self._gen = torch.Generator().manual_seed(self.seed)
        self._x: Tensor | None = None
        self._y = torch.empty(0, dtype=torch.int64)
        self._size = 0
        self.seen = 0
        self._seen_per_class: dict[int, int] = {}

    def __len__(self) -> int:
        return self._size

    @property
    def x(self) -> Tensor:
        """The stored samples ``(len, ...)`` (empty ``(0,)`` before the first :meth:`add`)."""
        return torch.empty(0) if self._x is None else self._x[: self._size]

    @property
    def y(self) -> Tensor:
        """The stored labels ``(len,)``, int64."""
        return self._y[: self._size]

    def class_counts(self) -> dict[int, int]:
        """Stored samples per label."""
        labels, counts = torch.unique(self.y, return_counts=True)
        return {int(a): int(b) for a, b in zip(labels.tolist(), counts.tolist(), strict=True)}

    def _randint(self, high: int) -> int:
        return int(torch.randint(high, (1,), generator=self._gen))

    def _rand(self) -> float:
        return float(torch.rand((), generator=self._gen))

    def add(self, x: Tensor, y: Tensor) -> None:
        """Offer a batch ``x`` ``(B, ...)`` with integer labels ``y`` ``(B,)``, one at a time."""
        if not isinstance(x, Tensor) or not isinstance(y, Tensor):
            raise TypeError(
                f"x and y must be torch.Tensors, got {type(x).__name__} and {type(y).__name__}"
            )
        if x.dim() < 1:
            raise ValueError(f"x must have shape (B, ...), got a scalar of shape {tuple(x.shape)}")
        labels = _as_ids(y, "y") if y.numel() else y.to(torch.int64)
        if labels.dim() != 1 or labels.shape[0] != x.shape[0]:
            raise ValueError(
                f"y must have shape ({x.shape[0]},), one label per row of x; got {tuple(y.shape)}"
            )
        rows = x.detach().cpu()
        if self._x is None:
            self._x = torch.empty((self.capacity, *rows.shape[1:]), dtype=rows.dtype)
            self._y = torch.empty(self.capacity, dtype=torch.int64)
        elif rows.shape[1:] != self._x.shape[1:] or rows.dtype != self._x.dtype:
            raise ValueError(
                f"x rows must have shape {tuple(self._x.shape[1:])} and dtype {self._x.dtype} like "
                f"the stored samples; got {tuple(rows.shape[1:])} and {rows.dtype}"
            )
        for i in range(rows.shape[0]):
            self._offer(rows[i], int(labels[i]))

    def _store(self, slot: int, row: Tensor, label: int) -> None:
        assert self._x is not None
        self._x[slot] = row
        self._y[slot] = label

    def _offer(self, row: Tensor, label: int) -> None:
        self.seen += 1
        self._seen_per_class[label] = self._seen_per_class.get(label, 0) + 1
        if self._size < self.capacity:
            self._store(self._size, row, label)
            self._size += 1
            return
        if self.mode == "reservoir":
            j = self._randint(self.seen)
            if j < self.capacity:
                self._store(j, row, label)
            return
        counts = self.class_counts()
        largest = max(counts.values())
        full_classes = sorted(c for c, n in counts.items() if n == largest)
        if label not in full_classes:
            victim_class = full_classes[self._randint(len(full_classes))]
            slots = torch.nonzero(self.y == victim_class).flatten()
            self._store(int(slots[self._randint(slots.numel())]), row, label)
            return
        stored = counts[label]
        if self._rand() < stored / self._seen_per_class[label]:
            slots = torch.nonzero(self.y == label).flatten()
            self._store(int(slots[self._randint(slots.numel())]), row, label)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """``min(n, len)`` distinct stored samples drawn uniformly: ``(x, y)``.

        ``generator=None`` draws from the buffer's own generator.
        """
        n = _check_int(n, "n", 0)
        g = self._gen if generator is None else generator
        take = min(n, self._size)
        idx = torch.randperm(self._size, generator=g)[:take]
        return self.x[idx], self.y[idx]

    def state_dict(self) -> dict[str, Any]:
        """The buffer's content and generator state (for checkpoints)."""
        return {
            "x": self.x.clone(),
            "y": self.y.clone(),
            "seen": self.seen,
            "seen_per_class": dict(self._seen_per_class),
            "generator": self._gen.get_state(),
            "capacity": self.capacity,
            "mode": self.mode,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (capacity and mode must match)."""
        if state.get("capacity") != self.capacity or state.get("mode") != self.mode:
            raise ValueError(
                f"state is for capacity={state.get('capacity')}, mode={state.get('mode')!r}; this "
                f"buffer has capacity={self.capacity}, mode={self.mode!r}"
            )
        x, y = state["x"], state["y"]
        self._size = int(y.shape[0])
        self._x = None
        if self._size:
            self._x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self._x[: self._size] = x
        self._y = torch.empty(self.capacity, dtype=torch.int64)
        self._y[: self._size] = y
        self.seen = int(state["seen"])
        self._seen_per_class = {int(k): int(v) for k, v in state["seen_per_class"].items()}
        self._gen.set_state(state["generator"])


def replay_batch(
    x: Tensor,
    y: Tensor,
    buffer: ReplayBuffer,
    n_replay: int,
    *,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """A batch of new samples plus ``n_replay`` rehearsal samples, and the rehearsal anchor mask.

    Returns ``(x_all, y_all, anchor_mask)``: the new rows first, then up to ``n_replay`` rows drawn
    from ``buffer`` (fewer if it holds fewer); ``anchor_mask`` ``(len,)`` bool is True exactly on
    the rehearsal rows. Pass it as ``SupCon(...)(views, y_all, anchor_mask=anchor_mask)``: only
    buffer samples are anchors, every row of the batch is a candidate (COCONUT's rehearsal SupCon,
    docs/methods.md, section 2.3(c); its exact negative set is [UNVERIFIED] there).

    Args:
        x: New samples ``(B, ...)`` (on any device; replayed rows are moved to it).
        y: Their labels ``(B,)``.
        buffer: The rehearsal buffer.
        n_replay: Rehearsal samples to add (>= 0).
        generator: Draws the rehearsal samples (None: the buffer's own generator).
    """
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(
            f"x and y must be torch.Tensors, got {type(x).__name__} and {type(y).__name__}"
        )
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have shape ({x.shape[0]},); got {tuple(y.shape)}")
    if not isinstance(buffer, ReplayBuffer):
        raise TypeError(f"buffer must be a ReplayBuffer, got {type(buffer).__name__}")
    rx, ry = buffer.sample(n_replay, generator=generator)
    if ry.numel() == 0:
        return x, y, torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
    if rx.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"the buffer holds rows of shape {tuple(rx.shape[1:])}, the new batch "
            f"{tuple(x.shape[1:])}"
        )
    x_all = torch.cat([x, rx.to(device=x.device, dtype=x.dtype)])
    y_all = torch.cat([y, ry.to(device=y.device, dtype=y.dtype)])
    mask = torch.zeros(x_all.shape[0], dtype=torch.bool, device=x.device)
    mask[x.shape[0] :] = True
    return x_all, y_all, mask
