"""Projection heads, pretext-task heads and the encoder + head wrapper.

- :class:`MLPHead`: SimCLR's projection head, with or without batch norm; ``out_batch_norm=True``
  (or :func:`libauc_head`) gives the LibAUC variant with a final non-affine batch norm.
- :class:`ReweightHead`: the fixed (non-trainable) reweighting head ``z = h * kappa^-k``.
- :class:`RotationHead` and :class:`JigsawHead`: ScatSimCLR's pretext-task classifiers.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from contrastkit._validation import check_int

__all__ = [
    "REWEIGHT_DEFAULT_KAPPA",
    "ContrastiveModel",
    "JigsawHead",
    "MLPHead",
    "ReweightHead",
    "RotationHead",
    "libauc_head",
]


def _check_dim(value: object, name: str) -> int:
    return check_int(value, name, minimum=1)


def _check_dropout(p: object) -> float:
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0.0 <= float(p) < 1.0:
        raise ValueError(f"dropout must be a probability in [0, 1); got {p!r}")
    return float(p)


class MLPHead(nn.Module):
    """SimCLR's projection head: ``Linear(d_h, hidden) -> [BN] -> ReLU -> Linear(hidden, d_z)``.

    Paper: Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations"
    (2020); ScatSimCLR (2021) uses it without batch norm (2048 -> 2048 -> 128, docs/methods.md 2.9). With
    ``batch_norm=True`` the hidden linear layer has no bias (the batch norm's shift replaces it).
    With ``out_batch_norm=True`` a ``BatchNorm1d(d_z, affine=False)`` follows the output layer,
    which then has no bias either: the LibAUC SimCLR head (``Linear(no bias)-BN-ReLU-Linear-
    BN(affine=False)``, hidden 2048, out 256; see :func:`libauc_head`).

    Args:
        in_dim: encoder output size ``d_h``.
        hidden_dim: hidden layer size.
        out_dim: projection size ``d_z``.
        batch_norm: insert a BatchNorm1d after the hidden linear layer.
        out_batch_norm: append a non-affine BatchNorm1d after the output layer.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden_dim: int = 512,
        out_dim: int = 128,
        batch_norm: bool = False,
        out_batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if min(in_dim, hidden_dim, out_dim) < 1:
            raise ValueError(
                f"head sizes must be positive; got in_dim={in_dim}, hidden_dim={hidden_dim}, "
                f"out_dim={out_dim}"
            )
        layers: list[nn.Module] = [nn.Linear(in_dim, hidden_dim, bias=not batch_norm)]
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden_dim))
        layers += [nn.ReLU(inplace=True), nn.Linear(hidden_dim, out_dim, bias=not out_batch_norm)]
        if out_batch_norm:
            layers.append(nn.BatchNorm1d(out_dim, affine=False))
        self.net = nn.Sequential(*layers)
        self.out_dim = out_dim

    def forward(self, h: Tensor) -> Tensor:
        out: Tensor = self.net(h)
        return out


def libauc_head(in_dim: int, *, hidden_dim: int = 2048, out_dim: int = 256) -> MLPHead:
    """LibAUC's SimCLR head: ``Linear(no bias)-BN-ReLU-Linear(no bias)-BN(affine=False)``.

    Defaults (hidden 2048, output 256) from the LibAUC SimCLR tutorial (docs/methods.md 2.9). The second
    linear layer's bias is dropped because the non-affine batch norm after it cancels any bias.
    """
    return MLPHead(
        in_dim, hidden_dim=hidden_dim, out_dim=out_dim, batch_norm=True, out_batch_norm=True
    )


# No default is known from the paper (docs/methods.md, sections 2.9 and 6: [UNVERIFIED]); 1.01 is this
# library's choice: over 512 dimensions the weights fall from 1 to 1.01^-511 = 0.006.
REWEIGHT_DEFAULT_KAPPA = 1.01


class ReweightHead(nn.Module):
    """Fixed reweighting head: ``z_k = h_k * kappa^(-k)`` for ``k = 0 .. d - 1``.

    The alternative to a trainable projection head studied in Xue et al., "Investigating the
    Benefits of Projection Head for Representation Learning" (ICLR 2024, docs/methods.md 2.9): the loss
    sees geometrically down-weighted features, so the encoder keeps in ``h`` features that the loss
    down-weights in ``z``. The weights are a non-trainable buffer (they move with ``.to()`` and are
    saved in the state dict); the head has no parameters.

    Default: ``kappa = 1.01`` is **unverified** (the paper's value was not available when this was
    written; the reference model file, a SpuCo-style ``ReweightProjectionHead``, takes kappa
    without a default). ``kappa = 1`` is the identity.

    Args:
        dim: Size of ``h`` (and of ``z``).
        kappa: Ratio between consecutive weights, > 0 (> 1 decays).
    """

    def __init__(self, dim: int, *, kappa: float = REWEIGHT_DEFAULT_KAPPA) -> None:
        super().__init__()
        self.dim = _check_dim(dim, "dim")
        if (
            isinstance(kappa, bool)
            or not isinstance(kappa, int | float)
            or not (math.isfinite(kappa) and kappa > 0)
        ):
            raise ValueError(f"kappa must be a finite number > 0; got {kappa!r}")
        self.kappa = float(kappa)
        k = torch.arange(dim, dtype=torch.float64)
        self.register_buffer("weights", torch.pow(self.kappa, -k).float())
        self.out_dim = dim

    def extra_repr(self) -> str:
        """Show the parameters in ``repr``."""
        return f"dim={self.dim}, kappa={self.kappa}"

    def forward(self, h: Tensor) -> Tensor:
        """Reweight ``h`` of shape ``(..., dim)``."""
        if h.shape[-1] != self.dim:
            raise ValueError(f"h must have last dimension {self.dim}; got shape {tuple(h.shape)}")
        return h * self.get_buffer("weights").to(h.dtype)


class RotationHead(nn.Module):
    """ScatSimCLR's rotation classifier: ``d -> d/4 -> d/16 -> 4`` with ReLU and dropout.

    At ``in_dim = 2048`` this is the paper's 2048 -> 512 -> 128 -> 4 with dropout 0.5 after each
    hidden layer (docs/methods.md, section 3.9; the reference code builds the same layers on its ``h``). Other
    encoder sizes scale the hidden layers by the same factors (at least 1 unit each).

    Args:
        in_dim: Encoder output size.
        hidden_dims: The two hidden sizes (default ``(in_dim // 4, in_dim // 16)``).
        n_classes: Number of rotations (4: 0, 90, 180, 270 degrees).
        dropout: Dropout probability after each hidden layer.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        hidden_dims: tuple[int, int] | None = None,
        n_classes: int = 4,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        in_dim = _check_dim(in_dim, "in_dim")
        h1, h2 = (
            hidden_dims if hidden_dims is not None else (max(1, in_dim // 4), max(1, in_dim // 16))
        )
        _check_dim(h1, "hidden_dims[0]")
        _check_dim(h2, "hidden_dims[1]")
        _check_dim(n_classes, "n_classes")
        p = _check_dropout(dropout)
        self.net = nn.Sequential(
            nn.Linear(in_dim, h1),
            nn.ReLU(inplace=True),
            nn.Dropout(p),
            nn.Linear(h1, h2),
            nn.ReLU(inplace=True),
            nn.Dropout(p),
            nn.Linear(h2, n_classes),
        )
        self.in_dim = in_dim
        self.n_classes = n_classes

    def forward(self, h: Tensor) -> Tensor:
        """Logits ``(B, n_classes)`` from representations ``(B, in_dim)``."""
        out: Tensor = self.net(h)
        return out


class JigsawHead(nn.Module):
    """ScatSimCLR's jigsaw classifier: shared per-tile fc, concatenation, classifier.

    ``h`` of the ``T`` tiles of each image ``(B, T, d)`` -> shared ``Linear(d, d/4) -> ReLU ->
    Dropout`` per tile -> concatenation ``(B, T d/4)`` -> ``Linear(T d/4, 2 d) -> ReLU -> Dropout``
    -> ``Linear(2 d, n_permutations)``. At ``d = 2048`` this is the paper's 2048 -> 512 per tile,
    9 x 512 -> 4096 -> 35 (docs/methods.md, section 3.9); the ReLU / dropout placement is the reference code's.

    Args:
        in_dim: Encoder output size ``d``.
        n_tiles: Tiles per image (9 for a 3 x 3 grid).
        n_permutations: Number of classes (permutations).
        tile_dim: Per-tile fc size (default ``d // 4``).
        hidden_dim: Hidden size after concatenation (default ``2 d``).
        dropout: Dropout probability.
    """

    def __init__(
        self,
        in_dim: int,
        *,
        n_tiles: int = 9,
        n_permutations: int = 35,
        tile_dim: int | None = None,
        hidden_dim: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        in_dim = _check_dim(in_dim, "in_dim")
        self.n_tiles = _check_dim(n_tiles, "n_tiles")
        self.n_permutations = _check_dim(n_permutations, "n_permutations")
        t = _check_dim(tile_dim if tile_dim is not None else max(1, in_dim // 4), "tile_dim")
        hd = _check_dim(hidden_dim if hidden_dim is not None else 2 * in_dim, "hidden_dim")
        p = _check_dropout(dropout)
        self.tile_fc = nn.Sequential(nn.Linear(in_dim, t), nn.ReLU(inplace=True), nn.Dropout(p))
        self.classifier = nn.Sequential(
            nn.Linear(self.n_tiles * t, hd),
            nn.ReLU(inplace=True),
            nn.Dropout(p),
            nn.Linear(hd, self.n_permutations),
        )
        self.in_dim = in_dim

    def forward(self, h: Tensor) -> Tensor:
        """Logits ``(B, n_permutations)`` from tile representations ``(B, n_tiles, in_dim)``."""
        if h.dim() != 3 or h.shape[1] != self.n_tiles or h.shape[2] != self.in_dim:
            raise ValueError(
                f"h must have shape (B, {self.n_tiles}, {self.in_dim}) (tiles of each image in "
                f"order); got {tuple(h.shape)}"
            )
        out: Tensor = self.classifier(self.tile_fc(h).flatten(1))
        return out


class ContrastiveModel(nn.Module):
    """An encoder followed by a projection head; ``forward`` returns both ``h`` and ``z``."""

    def __init__(self, encoder: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.encoder(x)
        return h, self.head(h)
