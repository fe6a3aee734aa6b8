"""Pieces of dense (pixel-, point- and region-level) contrastive objectives.

- :func:`region_pool`: average the features of the members of each region (a superpixel, a
  segment): SLidR's superpixel pooling of 3-D point and 2-D pixel features before the InfoNCE.
- :func:`sample_pixels`: a fixed number of pixels per class of each image's mask, the anchors of a
  mask-supervised pixel SupCon (FreeCOS's curvilinear mask contrastive loss).
- :class:`RelationGraphLoss`: the non-contrastive relation-graph loss that makes the cosine
  similarity graph of a batch match a soft target graph (SHAMISA's soft relational supervision).

>>> import torch
>>> feats = torch.tensor([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
>>> pooled, present = region_pool(feats, torch.tensor([0, 0, 2]), num_regions=3)
>>> pooled.tolist(), present.tolist()
([[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]], [True, False, True])
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_int, check_reduction, check_tensor

__all__ = ["RelationGraphLoss", "region_pool", "sample_pixels"]


def region_pool(
    features: Tensor, region_ids: Tensor, num_regions: int | None = None
) -> tuple[Tensor, Tensor]:
    """Mean feature of each region.

    Args:
        features: ``(N, D)`` member features (points, pixels).
        region_ids: ``(N,)`` integer region of each member, in ``[0, num_regions)``.
        num_regions: Number of regions R (None: ``max(region_ids) + 1``).

    Returns:
        ``(pooled, present)``: ``(R, D)`` mean features (zeros for an empty region) and ``(R,)``
        bool, whether the region has a member. Differentiable in ``features``.

    Raises:
        ValueError: Wrong shapes, a non-integer or out-of-range region id.
    """
    features = check_tensor(features, "features")
    region_ids = check_tensor(region_ids, "region_ids")
    if features.dim() != 2:
        raise ValueError(f"features must be (N, D), got shape {tuple(features.shape)}")
    if region_ids.dim() != 1 or region_ids.shape[0] != features.shape[0]:
        raise ValueError(
            f"region_ids must be ({features.shape[0]},) to match features, "
            f"got shape {tuple(region_ids.shape)}"
        )
    if region_ids.dtype.is_floating_point or region_ids.dtype == torch.bool:
        raise ValueError(f"region_ids must be integers, got {region_ids.dtype}")
    region_ids = region_ids.to(device=features.device, dtype=torch.long)
    if num_regions is None:
        num_regions = int(region_ids.max().item()) + 1 if region_ids.numel() else 0
    num_regions = check_int(num_regions, "num_regions", minimum=0)
    if region_ids.numel() and (
        int(region_ids.min().item()) < 0 or int(region_ids.max().item()) >= num_regions
    ):
        raise ValueError(f"region_ids must lie in [0, {num_regions}), got values outside")
    sums = features.new_zeros(num_regions, features.shape[1]).index_add(0, region_ids, features)
    counts = torch.bincount(region_ids, minlength=num_regions).to(features.dtype)
    pooled = sums / counts.clamp(min=1.0)[:, None]
    return pooled, counts > 0


def sample_pixels(
    labels: Tensor, per_class: int, *, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Draw up to ``per_class`` pixels of each class of each image, uniformly without replacement.

    Args:
        labels: ``(B, H, W)`` integer (or bool) class of every pixel (e.g. a binary mask).
        per_class: Pixels drawn per class and image (fewer when the class has fewer pixels).
        generator: Torch generator of the draw (on the labels' device).

    Returns:
        ``(index, label)``: ``(M, 3)`` long ``(image, row, column)`` of the drawn pixels and their
        ``(M,)`` classes, image by image, class by class.

    Raises:
        ValueError: ``labels`` not 3-D or of float dtype, ``per_class < 1``.
    """
    labels = check_tensor(labels, "labels")
    if labels.dim() != 3:
        raise ValueError(f"labels must be (B, H, W), got shape {tuple(labels.shape)}")
    if labels.dtype.is_floating_point:
        raise ValueError(f"labels must be integers or bool, got {labels.dtype}")
    per_class = check_int(per_class, "per_class", minimum=1)
    b, h, w = labels.shape
    flat = labels.reshape(b, h * w).long()
    k = min(per_class, h * w)
    picks: list[Tensor] = []
    classes: list[Tensor] = []
    for c in torch.unique(flat).tolist():
        scores = torch.rand(b, h * w, generator=generator, device=flat.device)
        scores = torch.where(flat == c, scores, torch.full_like(scores, -1.0))
        top, pos = scores.topk(k, dim=1)
        keep = top >= 0
        img = torch.arange(b, device=flat.device)[:, None].expand(b, k)[keep]
        pix = pos[keep]
        picks.append(torch.stack([img, pix // w, pix % w], dim=1))
        classes.append(torch.full((pix.numel(),), c, dtype=torch.long, device=flat.device))
    index = torch.cat(picks)
    label = torch.cat(classes)
    order = torch.argsort(index[:, 0], stable=True)
    return index[order], label[order]


class RelationGraphLoss(nn.Module):
    r"""Match a batch's cosine-similarity graph to a soft target relation graph (non-contrastive).

    With ``s_ij = cos(z_i, z_j)`` and a target ``r_ij`` in ``[-1, 1]`` (how strongly samples i and
    j are related; e.g. 1 for the same distortion type at the same level, decaying with the level
    gap, 0 for unrelated samples), over the off-diagonal pairs:

    .. math:: \ell = \frac{1}{N(N-1)} \sum_{i \neq j} (s_{ij} - r_{ij})^2

    There are no negatives and no softmax: related samples are pulled to the target similarity and
    unrelated ones pushed to orthogonality, which also keeps the embedding from collapsing.

    Paper: "SHAMISA: SHAped Modeling of Implicit Structural Associations for Self-supervised
    No-Reference Image Quality Assessment" (relation graphs from distortion metadata); this is the
    squared-error form of its graph-matching supervision.

    Args:
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``"none"``: ``(N, N)`` squared errors, 0 on
            the diagonal).

    Shape:
        embeddings ``(N, D)`` with N >= 2; target ``(N, N)``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import RelationGraphLoss
        >>> _ = torch.manual_seed(0)
        >>> z = torch.randn(6, 8, requires_grad=True)
        >>> target = torch.eye(6)
        >>> loss = RelationGraphLoss()(z, target)
        >>> loss.shape, bool(loss >= 0)
        (torch.Size([]), True)
        >>> loss.backward()
    """

    def __init__(self, *, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)

    def forward(self, embeddings: Tensor, target: Tensor) -> Tensor:
        z = check_tensor(embeddings, "embeddings")
        if z.dim() != 2 or z.shape[0] < 2:
            raise ValueError(f"embeddings must be (N, D) with N >= 2, got {tuple(z.shape)}")
        r = check_tensor(target, "target")
        n = z.shape[0]
        if r.shape != (n, n):
            raise ValueError(f"target must be ({n}, {n}), got {tuple(r.shape)}")
        if not torch.isfinite(r).all() or r.abs().max() > 1:
            raise ValueError("target must be finite and within [-1, 1]")
        zn = F.normalize(z, dim=1)
        sim = zn @ zn.T
        off = ~torch.eye(n, dtype=torch.bool, device=z.device)
        err = (sim - r.detach().to(sim)) ** 2 * off
        if self.reduction == "none":
            return err
        if self.reduction == "sum":
            return err.sum()
        return err.sum() / (n * (n - 1))

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"
