"""Pretext tasks as regularisers of a contrastive loss: rotation prediction and jigsaw (ScatSimCLR).

ScatSimCLR (Kinakh, Taran & Voloshynovskiy, "ScatSimCLR: self-supervised contrastive learning with
pretext task regularization for small-scale datasets", 2021; docs/methods.md, section 3.9) trains with
``L = L_NT-Xent + lambda * L_t``, where ``L_t`` is the cross-entropy of a classifier on the
encoder's representation ``h``:

- **rotation**: every image is also shown in its four rotations by 0, 90, 180 and 270 degrees
  (each augmented separately); the head predicts which. Label ``k`` is a rotation by ``k``
  quarter turns **clockwise**, as the reference code (label 1 = ``cv2.ROTATE_90_CLOCKWISE``,
  3 = counter-clockwise).
- **jigsaw**: the image is cut into a 3 x 3 grid of tiles, the tiles are put in the order of one
  of a fixed set of 35 permutations, each tile is encoded on its own, and the head predicts the
  permutation from the 9 tile representations. The reference code loads its set from a file
  (``permutations_35.npy``) that is not available here; :func:`jigsaw_permutations` generates a set
  deterministically instead (see there), so its permutations differ from the reference ones.

Both tasks have a weight ``lambda`` (paper: 0.3) and a ``start_epoch``: the paper uses
``lambda = 0`` for the first 40 epochs, the reference code applies ``lambda`` from the first epoch;
``start_epoch=0`` (the default) is the reference behaviour, ``start_epoch=40`` the paper's.
Epochs are counted from 0: the term is on when ``epoch >= start_epoch``.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_tensor
from contrastkit.models.heads import JigsawHead, RotationHead
from contrastkit.views import image as ops
from contrastkit.views.pipeline import check_size

__all__ = [
    "PAPER_START_EPOCH",
    "PRETEXT_WEIGHT",
    "JigsawPretext",
    "PretextOutput",
    "RotationPretext",
    "jigsaw_batch",
    "jigsaw_permutations",
    "random_rotation_batch",
    "rotation_batch",
]

PRETEXT_WEIGHT = 0.3  # lambda, ScatSimCLR paper and config
PAPER_START_EPOCH = 40  # the paper's delay; the reference code starts at epoch 0

Augment = Callable[[Tensor, torch.Generator | None], Tensor]


def _check_square(images: Tensor) -> None:
    h, w = images.shape[-2:]
    if h != w:
        raise ValueError(
            f"rotation needs square images (a quarter turn swaps height and width); got {h}x{w}"
        )


def rotation_batch(
    images: Tensor, *, augment: Augment | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """All four rotations of every image, optionally augmented, with their labels.

    Args:
        images: Square images ``(B, C, S, S)``.
        augment: Called once as ``augment(rotated, generator)`` on the ``(4 B, C, S, S)`` batch
            (e.g. a :class:`~contrastkit.views.pipeline.ViewAugment`), so every rotated copy is
            augmented with its own random parameters, as in the reference code.
        generator: Passed to ``augment``.

    Returns:
        ``(inputs, labels)``: ``inputs`` ``(4 B, C, S, S)`` ordered image by image (the four
        rotations of image 0, then of image 1, ...) and ``labels`` ``(4 B,)`` int64 in
        ``{0, 1, 2, 3}``, the number of clockwise quarter turns.
    """
    ops.check_images(images)
    _check_square(images)
    b = images.shape[0]
    # torch.rot90 turns counter-clockwise for k > 0 on (row, column) dims; clockwise is -k.
    rotated = torch.stack([torch.rot90(images, -k, dims=(-2, -1)) for k in range(4)], dim=1)
    inputs = rotated.flatten(0, 1)
    if augment is not None:
        inputs = augment(inputs, generator)
    labels = torch.arange(4, device=images.device).repeat(b)
    return inputs, labels


def random_rotation_batch(
    images: Tensor, *, augment: Augment | None = None, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Each image turned by a random number of clockwise quarter turns, with that number as label.

    A one-sample estimate of :func:`rotation_batch`'s task at a quarter of its cost: the expected
    cross-entropy over the uniformly drawn turn equals the mean over all four.

    Args:
        images: Square images ``(B, C, S, S)``.
        augment: Called once as ``augment(rotated, generator)`` on the ``(B, C, S, S)`` batch.
        generator: Draws the turns (on the CPU) and is passed to ``augment``.

    Returns:
        ``(inputs, labels)``: ``(B, C, S, S)`` and ``(B,)`` int64 in ``{0, 1, 2, 3}``.
    """
    ops.check_images(images)
    _check_square(images)
    labels = torch.randint(0, 4, (images.shape[0],), generator=generator).to(images.device)
    inputs = images.clone()
    for k in range(1, 4):
        chosen = labels == k
        if bool(chosen.any()):
            inputs[chosen] = torch.rot90(images[chosen], -k, dims=(-2, -1))
    if augment is not None:
        inputs = augment(inputs, generator)
    return inputs, labels


@functools.lru_cache(maxsize=2)
def _all_permutations(tiles: int) -> Tensor:
    """Every permutation of ``range(tiles)`` in lexicographic order, int8 ``(tiles!, tiles)``."""
    return torch.tensor(list(itertools.permutations(range(tiles))), dtype=torch.int8)


@functools.lru_cache(maxsize=8)
def _permutations(n: int, grid: int, seed: int) -> Tensor:
    tiles = grid * grid
    every = _all_permutations(tiles)
    g = torch.Generator().manual_seed(seed)
    first = int(torch.randint(0, every.shape[0], (1,), generator=g))
    chosen = [first]
    d = (every != every[first]).sum(1, dtype=torch.int64)
    min_d, sum_d = d.clone(), d.clone()
    for _ in range(n - 1):
        # Largest minimum distance to the chosen set; ties: largest total distance, then the
        # first in lexicographic order (argmax returns the first maximum).
        key = min_d * (tiles * n + 1) + sum_d
        nxt = int(torch.argmax(key))
        chosen.append(nxt)
        d = (every != every[nxt]).sum(1, dtype=torch.int64)
        min_d = torch.minimum(min_d, d)
        sum_d = sum_d + d
    return every[chosen].long()


def jigsaw_permutations(n: int = 35, *, grid: int = 3, seed: int = 0) -> Tensor:
    """A fixed set of ``n`` tile permutations far apart in Hamming distance.

    Greedy maximal-Hamming-distance selection, as proposed for jigsaw puzzles by Noroozi & Favaro
    ("Unsupervised Learning of Visual Representations by Solving Jigsaw Puzzles", 2016): the first
    permutation is drawn uniformly from all ``(grid^2)!`` by a generator seeded with ``seed``; each
    next one is the permutation whose minimum Hamming distance to those already chosen is
    largest (ties: largest sum of distances, then the first in lexicographic order). The result
    depends only on ``(n, grid, seed)`` and is cached. Noroozi & Favaro rank candidates by their
    *mean* distance; the minimum is used here because it guarantees the spread of the worst pair.

    Args:
        n: Number of permutations (ScatSimCLR: 35), ``1 <= n <= (grid^2)!``.
        grid: Tiles per side (3 -> 9 tiles, 9! = 362,880 candidates; about a second).
        seed: Seed of the first permutation.

    Returns:
        int64 tensor ``(n, grid^2)``; row ``p`` lists, for each output position, the input tile
        placed there.
    """
    if isinstance(grid, bool) or not isinstance(grid, int) or not 2 <= grid <= 3:
        raise ValueError(f"grid must be 2 or 3 (9! candidates at most); got {grid!r}")
    total = 1
    for i in range(2, grid * grid + 1):
        total *= i
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= total:
        raise ValueError(f"n must be an int in [1, {total}]; got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int; got {seed!r}")
    return _permutations(n, grid, seed).clone()


def jigsaw_batch(
    images: Tensor,
    permutations: Tensor,
    *,
    generator: torch.Generator | None = None,
    tile_size: int | tuple[int, int] | None = None,
    augment: Augment | None = None,
) -> tuple[Tensor, Tensor]:
    """Cut every image into a grid of tiles and shuffle them by a random permutation of the set.

    The image is cut into ``g x g`` tiles of ``H // g`` by ``W // g`` pixels (the remainder rows and
    columns, fewer than ``g``, are cut evenly from the borders); tile ``i * g + j`` is row ``i``,
    column ``j``. Each image draws a label ``y`` uniformly in ``[0, P)`` and output position ``t``
    holds input tile ``permutations[y, t]``.

    Args:
        images: Batch ``(B, C, H, W)``.
        permutations: ``(P, g^2)`` from :func:`jigsaw_permutations`.
        generator: Source of randomness (labels, then ``augment``).
        tile_size: Resize every tile to this side or ``(h, w)`` (bilinear, antialiased); the
            reference code resizes tiles to the input size so the encoder sees full-size inputs.
            ``None`` keeps the tile size.
        augment: Called once as ``augment(tiles, generator)`` on the ``(B g^2, C, h, w)`` tiles.

    Returns:
        ``(tiles, labels)``: ``tiles`` ``(B, g^2, C, h, w)`` and ``labels`` ``(B,)`` int64.
    """
    ops.check_images(images)
    perms = check_tensor(permutations, "permutations")
    if perms.dim() != 2 or perms.is_floating_point():
        raise ValueError(
            f"permutations must be an integer tensor (P, tiles); got dtype {perms.dtype}, shape "
            f"{tuple(perms.shape)}"
        )
    n_tiles = perms.shape[1]
    g = round(n_tiles**0.5)
    if g * g != n_tiles or not torch.equal(
        perms.sort(dim=1).values.cpu(), torch.arange(n_tiles).expand_as(perms)
    ):
        raise ValueError(
            f"permutations must hold permutations of range(g^2) for a square grid; got shape "
            f"{tuple(perms.shape)}"
        )
    b, c, h, w = images.shape
    th, tw = h // g, w // g
    if th < 1 or tw < 1:
        raise ValueError(f"images of {h}x{w} are too small for a {g}x{g} grid")
    top, left = (h - g * th) // 2, (w - g * tw) // 2
    body = images[..., top : top + g * th, left : left + g * tw]
    tiles = (
        body.reshape(b, c, g, th, g, tw).permute(0, 2, 4, 1, 3, 5).reshape(b, n_tiles, c, th, tw)
    )
    gen_dev = generator.device if generator is not None else images.device
    labels = torch.randint(0, perms.shape[0], (b,), generator=generator, device=gen_dev)
    labels = labels.to(images.device)
    order = perms.to(images.device)[labels]  # (B, tiles)
    shuffled = tiles.gather(1, order.view(b, n_tiles, 1, 1, 1).expand_as(tiles))
    flat = shuffled.reshape(b * n_tiles, c, th, tw)
    if tile_size is not None:
        size = check_size(tile_size, "tile_size")
        if size != (th, tw):
            work = ops._work(flat)
            flat = (
                F.interpolate(work, size=size, mode="bilinear", align_corners=False, antialias=True)
                .clamp_(0.0, 1.0)
                .to(flat.dtype)
            )
    if augment is not None:
        flat = augment(flat, generator)
    return flat.view(b, n_tiles, c, *flat.shape[-2:]), labels


class PretextOutput(NamedTuple):
    """Result of a pretext task on one batch.

    Attributes:
        loss: ``weight * cross_entropy`` (a zero tensor when the task is off), to add to the
            contrastive loss.
        cross_entropy: The unweighted cross-entropy (zero when off), detached.
        accuracy: Fraction of correct predictions (zero when off), a detached 0-d tensor (no host
            sync).
        weight: The weight used at this epoch.
    """

    loss: Tensor
    cross_entropy: Tensor
    accuracy: Tensor
    weight: float


def _check_schedule(weight: object, start_epoch: object) -> tuple[float, int]:
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not float(weight) >= 0:
        raise ValueError(f"weight must be a number >= 0; got {weight!r}")
    if isinstance(start_epoch, bool) or not isinstance(start_epoch, int) or start_epoch < 0:
        raise ValueError(f"start_epoch must be an int >= 0; got {start_epoch!r}")
    return float(weight), start_epoch


class _Pretext(nn.Module):
    head: nn.Module

    def __init__(self, weight: float, start_epoch: int) -> None:
        super().__init__()
        self.weight, self.start_epoch = _check_schedule(weight, start_epoch)

    def weight_at(self, epoch: int) -> float:
        """``weight`` if ``epoch >= start_epoch`` (epochs counted from 0), else 0."""
        return self.weight if epoch >= self.start_epoch else 0.0

    def extra_repr(self) -> str:
        """Show the schedule in ``repr``."""
        return f"weight={self.weight}, start_epoch={self.start_epoch}"

    def _finish(self, logits: Tensor, labels: Tensor, weight: float) -> PretextOutput:
        ce = F.cross_entropy(logits, labels)
        acc = (logits.detach().argmax(1) == labels).float().mean()
        return PretextOutput(weight * ce, ce.detach(), acc, weight)

    def _off(self, device: torch.device) -> PretextOutput:
        zero = torch.zeros((), device=device)
        return PretextOutput(zero, zero, zero, 0.0)


class RotationPretext(_Pretext):
    """Rotation prediction (4 classes) with ScatSimCLR's head, weight and start epoch.

    ``forward(encoder, images, epoch=e)`` rotates every image four times, augments the copies
    (if an ``augment`` is given), encodes them and returns the weighted cross-entropy of
    :class:`~contrastkit.models.heads.RotationHead`. Before ``start_epoch`` nothing is computed.

    Example:
        >>> from contrastkit.models import SmallCNN
        >>> enc = SmallCNN(in_channels=1)
        >>> task = RotationPretext(enc.out_dim, weight=0.3)
        >>> out = task(enc, torch.rand(4, 1, 8, 8), epoch=0)
        >>> out.loss.shape, out.weight
        (torch.Size([]), 0.3)

    Args:
        in_dim: Encoder output size (the head is scaled to it, see ``RotationHead``).
        weight: lambda (paper: 0.3).
        start_epoch: First epoch (from 0) with the term on (paper: 40, reference code: 0).
        augment: Augmentation of the rotated copies, ``augment(images, generator)``.
        dropout: Dropout of the head.
        rotations_per_image: 4 (the paper: all four turns of every image) or 1 (one random turn
            per image, :func:`random_rotation_batch`: the same expected loss for a quarter of the
            encoder passes).
    """

    def __init__(
        self,
        in_dim: int,
        *,
        weight: float = PRETEXT_WEIGHT,
        start_epoch: int = 0,
        augment: Augment | None = None,
        dropout: float = 0.5,
        rotations_per_image: int = 4,
    ) -> None:
        super().__init__(weight, start_epoch)
        if rotations_per_image not in (1, 4) or isinstance(rotations_per_image, bool):
            raise ValueError(f"rotations_per_image must be 1 or 4; got {rotations_per_image!r}")
        self.head = RotationHead(in_dim, dropout=dropout)
        self.augment = augment
        self.rotations_per_image = rotations_per_image

    def forward(
        self,
        encoder: Callable[[Tensor], Tensor],
        images: Tensor,
        *,
        epoch: int,
        generator: torch.Generator | None = None,
    ) -> PretextOutput:
        """The rotation term for a batch ``(B, C, S, S)`` at ``epoch``."""
        weight = self.weight_at(epoch)
        if weight == 0.0:
            return self._off(images.device)
        make = rotation_batch if self.rotations_per_image == 4 else random_rotation_batch
        inputs, labels = make(images, augment=self.augment, generator=generator)
        return self._finish(self.head(encoder(inputs)), labels, weight)


class JigsawPretext(_Pretext):
    """Jigsaw (3 x 3 tiles, a fixed set of permutations) with ScatSimCLR's head and schedule.

    Args:
        in_dim: Encoder output size (the head is scaled to it, see ``JigsawHead``).
        n_permutations: Size of the permutation set (paper: 35).
        weight: lambda (paper: 0.3).
        start_epoch: First epoch (from 0) with the term on (paper: 40, reference code: 0).
        tile_size: Resize tiles to this size before encoding (reference: the input size);
            ``None`` keeps the tile size (the encoder must accept it).
        augment: Augmentation of the tiles, ``augment(tiles, generator)``.
        seed: Seed of :func:`jigsaw_permutations`.
        dropout: Dropout of the head.

    Attributes:
        permutations: ``(n_permutations, 9)`` buffer.
    """

    permutations: Tensor

    def __init__(
        self,
        in_dim: int,
        *,
        n_permutations: int = 35,
        weight: float = PRETEXT_WEIGHT,
        start_epoch: int = 0,
        tile_size: int | tuple[int, int] | None = None,
        augment: Augment | None = None,
        seed: int = 0,
        dropout: float = 0.5,
    ) -> None:
        super().__init__(weight, start_epoch)
        self.register_buffer("permutations", jigsaw_permutations(n_permutations, seed=seed))
        self.head = JigsawHead(in_dim, n_tiles=9, n_permutations=n_permutations, dropout=dropout)
        self.tile_size = check_size(tile_size, "tile_size") if tile_size is not None else None
        self.augment = augment

    def forward(
        self,
        encoder: Callable[[Tensor], Tensor],
        images: Tensor,
        *,
        epoch: int,
        generator: torch.Generator | None = None,
    ) -> PretextOutput:
        """The jigsaw term for a batch ``(B, C, H, W)`` at ``epoch``."""
        weight = self.weight_at(epoch)
        if weight == 0.0:
            return self._off(images.device)
        tiles, labels = jigsaw_batch(
            images,
            self.permutations,
            generator=generator,
            tile_size=self.tile_size,
            augment=self.augment,
        )
        b, t = tiles.shape[:2]
        h = encoder(tiles.flatten(0, 1)).view(b, t, -1)
        return self._finish(self.head(h), labels, weight)
