"""Peak memory of the blockwise engine: it grows like ``N * chunk``, never like ``N^2``.

DESIGN.md: "the peak memory grows with N * chunk, not N * N". Memory is measured on the CPU,
deterministically, by :class:`PeakMemory`: a ``TorchDispatchMode`` that sees every tensor produced by
an ATen operation (forward and backward, autograd's saved tensors and recomputations included), counts
each storage once when it appears and subtracts it when the storage is freed (a ``weakref.finalize``
on the storage, whose Python object lives exactly as long as the storage). The inputs are not
counted: the peak is the extra memory of forward + backward.

Each test also runs the dense path (one block holding every row, ``chunk_size >= N``), which must
break the same bound: the measurement can tell ``N * chunk`` from ``N^2``.
"""

from __future__ import annotations

import gc
import inspect
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from contrastkit.losses import _engine as engine
from contrastkit.losses import get_loss

F32_BYTES = 4


class PeakMemory(TorchDispatchMode):
    """Largest total size of the storages created inside the ``with`` block and alive at once."""

    def __init__(self, *inputs: Tensor) -> None:
        super().__init__()
        self._sizes: dict[int, int | None] = {}  # storage id -> bytes (None: an input, not counted)
        self.current = 0
        self.peak = 0
        for t in inputs:
            for part in self._parts(t):
                self._sizes[id(part.untyped_storage())] = None

    @staticmethod
    def _parts(t: Tensor) -> list[Tensor]:
        if t.layout == torch.sparse_coo:
            return [t._indices(), t._values()]
        return [t] if t.layout == torch.strided else []

    def _free(self, key: int) -> None:
        size = self._sizes.pop(key, None)
        if size:
            self.current -= size

    def _track(self, t: object) -> None:
        if not isinstance(t, Tensor) or t.device.type == "meta":
            return
        if t.layout != torch.strided:
            for part in self._parts(t):
                self._track(part)
            return
        storage = t.untyped_storage()
        key, size = id(storage), storage.nbytes()
        if key not in self._sizes:
            self._sizes[key] = size
            self.current += size
            weakref.finalize(storage, self._free, key).atexit = False
        else:
            old = self._sizes[key]
            if old is not None and old != size:  # a storage resized in place
                self._sizes[key] = size
                self.current += size - old
        self.peak = max(self.peak, self.current)

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self._track(t)
        return out


def peak_bytes(run: Callable[[], object], *inputs: Tensor) -> int:
    """Peak extra bytes of ``run()`` (forward and backward), not counting ``inputs``.

    The cyclic garbage collector is off while it runs, so that the peak does not depend on when a
    collection happens to run (storages are freed by reference counting alone).
    """
    gc.collect()
    gc.disable()
    try:
        with PeakMemory(*inputs) as mem:
            run()
    finally:
        gc.enable()
    return mem.peak


def _rows(n: int, d: int, seed: int) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1).requires_grad_(True)


# --------------------------------------------------------------------------------------------------
# The engine's entry points, each run forward + backward on N rows of dimension D
# --------------------------------------------------------------------------------------------------


def _self_logsumexp(n: int, d: int, chunk: int) -> int:
    z = _rows(n, d, 0)
    groups = torch.arange(n) % 7
    return peak_bytes(
        lambda: (
            engine.self_logsumexp(z, 10.0, groups=groups, group_mode="exclude", chunk_size=chunk)
            .sum()
            .backward()
        ),
        z,
        groups,
    )


def _masked_logsumexp(n: int, d: int, chunk: int) -> int:
    a, c = _rows(n, d, 0), _rows(n, d, 1)
    idx, groups = torch.arange(n), torch.arange(n) % 7
    return peak_bytes(
        lambda: (
            engine.masked_logsumexp(
                a,
                c,
                self_index=idx,
                anchor_groups=groups,
                candidate_groups=groups,
                group_mode="exclude",
                chunk_size=chunk,
            )
            .sum()
            .backward()
        ),
        a,
        c,
        idx,
        groups,
    )


def _two_sided_logsumexp(n: int, d: int, chunk: int) -> int:
    a, b = _rows(n, d, 0), _rows(n, d, 1)

    def run() -> None:
        row, col = engine.two_sided_logsumexp(a, b, chunk_size=chunk)
        (row.sum() + col.sum()).backward()

    return peak_bytes(run, a, b)


def _masked_softmax_stats(n: int, d: int, chunk: int) -> int:
    # no autograd: forward only (SogCLR / iSogCLR's surrogate and temperature statistics)
    a, c = _rows(n, d, 0).detach(), _rows(n, d, 1).detach()
    beta = torch.full((n,), 10.0)
    idx = torch.arange(n)
    lse = engine.masked_logsumexp(a * beta[:, None], c, self_index=idx).detach()
    anchors = a * beta[:, None]
    return peak_bytes(
        lambda: engine.masked_softmax_stats(
            anchors, c, beta, lse, self_index=idx, chunk_size=chunk
        ),
        anchors,
        c,
        beta,
        lse,
        idx,
    )


def _lse_block(start: int, stop: int, z: Tensor) -> Tensor:
    return torch.logsumexp(10.0 * z[start:stop] @ z.T, dim=1)


def _checkpointed_row_blocks(n: int, d: int, chunk: int) -> int:
    z = _rows(n, d, 0)
    return peak_bytes(
        lambda: engine.checkpointed_row_blocks(_lse_block, n, chunk, z).sum().backward(), z
    )


# name -> run(n, d, chunk) -> peak extra bytes
ENTRY_POINTS: dict[str, Callable[[int, int, int], int]] = {
    "self_logsumexp": _self_logsumexp,
    "masked_logsumexp": _masked_logsumexp,
    "two_sided_logsumexp": _two_sided_logsumexp,
    "masked_softmax_stats": _masked_softmax_stats,
    "checkpointed_row_blocks": _checkpointed_row_blocks,
}
# Public functions with a chunk size that only do index arithmetic (no tensors to measure).
NOT_COMPUTING = {"row_blocks"}

N, D, CHUNK = 4096, 32, 256
# A block and its temporaries: at most this many (chunk x N) float32 matrices alive at once
# (measured: 0.5 to 3.4), plus the (N, D) inputs' gradients and copies.
BLOCK_FACTOR = 6
DENSE = N * N * F32_BYTES


def _bound(n: int, d: int, chunk: int) -> int:
    return BLOCK_FACTOR * n * chunk * F32_BYTES + 8 * n * d * F32_BYTES


def test_every_engine_entry_point_has_a_memory_test() -> None:
    """A new public blockwise function of the engine gets a memory test here."""
    chunked = {
        name
        for name in engine.__all__
        if callable(getattr(engine, name))
        and not isinstance(getattr(engine, name), type)
        and "chunk_size" in inspect.signature(getattr(engine, name)).parameters
    }
    assert chunked - NOT_COMPUTING == set(ENTRY_POINTS)


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_engine_peak_memory_grows_like_n_times_chunk(name: str) -> None:
    """At N=4096, D=32, chunk=256: peak extra memory far below N^2 floats, within a few
    chunk x N blocks, and doubling N about doubles it (N^2 would quadruple it)."""
    run = ENTRY_POINTS[name]
    peak = run(N, D, CHUNK)
    half = run(N // 2, D, CHUNK)
    assert peak <= _bound(N, D, CHUNK), f"{name}: {peak / 2**20:.1f} MiB at chunk={CHUNK}"
    assert peak < DENSE / 2, f"{name}: {peak / 2**20:.1f} MiB is not well below N^2 floats"
    assert peak / half < 2.6, f"{name}: doubling N multiplied the peak by {peak / half:.2f}"


@pytest.mark.parametrize("name", list(ENTRY_POINTS))
def test_engine_dense_path_breaks_the_bound(name: str) -> None:
    """The unchunked path (one block of N rows) holds N^2 floats: the bound above can fail."""
    peak = ENTRY_POINTS[name](N, D, N)
    assert peak >= DENSE, f"{name}: dense path peaked at only {peak / 2**20:.1f} MiB"
    assert peak > _bound(N, D, CHUNK)


# --------------------------------------------------------------------------------------------------
# Losses over the engine: one per entry point by default, every chunked loss with -m slow
# --------------------------------------------------------------------------------------------------


def _loss_inputs(name: str, n: int) -> tuple[list[Tensor], list[Tensor]]:
    """(positional inputs, tensors not to count) for ``n`` instances of loss ``name``."""
    g = torch.Generator().manual_seed(0)
    d = 16
    if name in ("clip", "cliprocket", "bilinear_nce", "joint_entropy"):
        args = [torch.randn(n, d, generator=g, requires_grad=True) for _ in range(2)]
    elif name in ("sogclr_bimodal", "isogclr_bimodal"):
        args = [torch.randn(n, d, generator=g, requires_grad=True) for _ in range(2)]
        args.append(torch.arange(n))
    elif name == "koleo":
        args = [torch.randn(n, d, generator=g, requires_grad=True)]
    elif name == "moco":  # a queue as long as the batch: candidates grow with N
        args = [torch.randn(n, d, generator=g, requires_grad=True) for _ in range(2)]
        args.append(torch.randn(n, d, generator=g))
    elif name == "scgc":  # a sparse graph target (a dense one is itself N^2)
        idx = torch.randint(0, n, (2, 8 * n), generator=g)
        target = torch.sparse_coo_tensor(idx, torch.ones(8 * n), (n, n), check_invariants=True)
        args = [torch.randn(n, d, generator=g, requires_grad=True), target.coalesce()]
    elif name == "milnce":
        args = [torch.randn(n, d, generator=g, requires_grad=True)]
        args.append(torch.randn(n, 3, d, generator=g, requires_grad=True))
    elif name == "patch_nce":
        args = [torch.randn(n, 2, d, generator=g, requires_grad=True) for _ in range(2)]
    else:  # views (N, 2, D) with labels / regression targets / dataset indices as registered
        args = [torch.randn(n, 2, d, generator=g, requires_grad=True)]
        if name in ("supcon", "focal_supcon"):
            args.append(torch.randint(0, 10, (n,), generator=g))
        elif name == "supremix":
            args.append(torch.rand(n, generator=g))
        elif name in ("sogclr", "isogclr"):
            args.append(torch.arange(n))
    return args, args


def _loss_kwargs(name: str, n: int, chunk: int) -> dict[str, Any]:
    kw: dict[str, Any] = {"chunk_size": chunk}
    if name in ("sogclr", "isogclr", "sogclr_bimodal", "isogclr_bimodal"):
        kw["num_samples"] = n
    if name == "bilinear_nce":
        kw["dim"] = 16
    if name == "patch_nce":
        kw["cross_image"] = True  # candidates from every image of the batch: N^2 when dense
    return kw


def _loss_peak(name: str, n: int, chunk: int) -> int:
    torch.manual_seed(0)
    loss = get_loss(name, **_loss_kwargs(name, n, chunk))
    args, inputs = _loss_inputs(name, n)
    params = [*loss.parameters(), *loss.buffers()]
    return peak_bytes(lambda: loss(*args).backward(), *inputs, *params)


# One loss per entry point (the ones that call it), in the default suite.
REPRESENTATIVE = {
    "ntxent": "self_logsumexp",
    "moco": "masked_logsumexp",
    "clip": "two_sided_logsumexp",
    "sogclr": "masked_softmax_stats",
    "focal_supcon": "checkpointed_row_blocks",
}
# Chunked losses whose candidates are not the batch (a queue of fixed length K): N * K by definition.
NOT_BATCH_CANDIDATES = {"moco_v2", "mochi"}


def _chunked_losses() -> list[Any]:
    from contrastkit.losses import loss_info, loss_names

    out = []
    for name in loss_names():
        if "chunk_size" not in inspect.signature(loss_info(name).factory).parameters:
            continue
        if name in NOT_BATCH_CANDIDATES:
            continue
        marks = [] if name in REPRESENTATIVE else [pytest.mark.slow]
        out.append(pytest.param(name, id=name, marks=marks))
    return out


# Losses whose peak at this size is not the blockwise part: GroCo's chunk only bounds its top-K
# search (no autograd); its peak is the per-anchor sorting networks, linear in N.
PEAK_NOT_BLOCKWISE = {"groco"}


@pytest.mark.parametrize("name", _chunked_losses())
def test_loss_peak_memory_grows_linearly_in_n(name: str) -> None:
    """A chunked loss: doubling N about doubles the peak, and the dense path holds far more."""
    # about 2048 embeddings in all: 1024 instances of two views, or 2048 rows of (N, D) inputs
    n, chunk = (1024 if _loss_inputs(name, 2)[0][0].dim() == 3 else 2048), 128
    peak, half = _loss_peak(name, n, chunk), _loss_peak(name, n // 2, chunk)
    assert peak / half < 2.8, f"{name}: doubling N multiplied the peak by {peak / half:.2f}"
    if name not in PEAK_NOT_BLOCKWISE:
        dense = _loss_peak(name, n, 10**6)
        assert peak < dense / 3, (
            f"{name}: chunked {peak / 2**20:.1f} MiB vs dense {dense / 2**20:.1f} MiB"
        )
