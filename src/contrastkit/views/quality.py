"""Views whose quality is known: crops scored by the foreground they keep, degradations by severity.

GenView (Li et al., "GenView: Enhancing View Quality with Pretrained Generative Model for
Self-Supervised Learning", ECCV 2024) weights each positive pair of a contrastive loss by its
quality: pairs that keep the object count more, pairs that lost it (an aggressive crop that lands on
the background, a heavily degraded view) count less. GenView estimates the quality from a frozen
CLIP's foreground maps; when the crop box and the object's mask are known, it can be computed
exactly instead. This module does that for images whose object is bright on a dark background
(Fashion-MNIST, digits):

- :func:`foreground_mask`: the object's pixels (channel mean above a threshold);
- :func:`crop_boxes`: the box of the input image that a crop's sampling matrix reads;
- :func:`foreground_kept`: the share of the object's pixels that a crop keeps, in ``[0, 1]``;
- :func:`scored_views`: ``V`` random resized crops (+ flips) of each image, some of them degraded
  by strong Gaussian noise, with one quality in ``[0, 1]`` per view: the share of the foreground the
  crop keeps times the view's clarity ``1 - sigma / max_sigma`` (1 for an undegraded view).

Turn the qualities of a pair into loss weights with
:func:`contrastkit.losses.normalize_weights` and pass them as ``weights=`` to
:class:`contrastkit.losses.InfoNCE`.

Example:
    >>> import torch
    >>> x = torch.zeros(4, 1, 8, 8)
    >>> x[:, :, 2:6, 2:6] = 1.0
    >>> views, quality = scored_views(x, 2, generator=torch.Generator().manual_seed(0))
    >>> views.shape, quality.shape, bool(((quality >= 0) & (quality <= 1)).all())
    (torch.Size([4, 2, 1, 8, 8]), torch.Size([4, 2]), True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit._validation import check_int, check_positive, check_probability, check_tensor
from contrastkit.views.image import apply_affine, check_images, crop_matrix, flip_matrix

__all__ = ["crop_boxes", "foreground_kept", "foreground_mask", "scored_views"]


def foreground_mask(images: Tensor, threshold: float = 0.2) -> Tensor:
    """The object's pixels of images that show it bright on a dark background.

    Args:
        images: ``(N, C, H, W)`` float images in ``[0, 1]``.
        threshold: A pixel is foreground when its channel mean exceeds this.

    Returns:
        Bool tensor ``(N, H, W)``.

    Example:
        >>> foreground_mask(torch.tensor([[[[0.0, 0.5], [0.1, 0.9]]]])).tolist()
        [[[False, True], [False, True]]]
    """
    x = check_images(images)
    t = check_probability(threshold, "threshold")
    return x.mean(dim=1) > t


def _check_theta(theta: object, n: int | None = None) -> Tensor:
    t = check_tensor(theta, "theta")
    if t.dim() != 3 or t.shape[1:] not in ((2, 3), (3, 3)) or (n is not None and t.shape[0] != n):
        want = f"({n}, 3, 3)" if n is not None else "(N, 3, 3)"
        raise ValueError(f"theta must have shape {want} or (N, 2, 3); got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise TypeError(f"theta must be a floating-point tensor, got {t.dtype}")
    return t


def crop_boxes(theta: Tensor) -> Tensor:
    """The box of the input image that each sampling matrix reads, in normalised coordinates.

    A sampling matrix maps a point of the output image (``[-1, 1]^2``, ``F.affine_grid``'s
    coordinates, ``align_corners=False``) to the input point it is read from; the box is the
    bounding box of the four output corners' images, so it is exact for crops and flips.

    Args:
        theta: ``(N, 3, 3)`` or ``(N, 2, 3)`` sampling matrices
            (:func:`~contrastkit.views.image.crop_matrix`, possibly times a flip).

    Returns:
        ``(N, 4)`` boxes ``(x0, y0, x1, y1)``, ``x`` left to right and ``y`` top to bottom, in
        ``[-1, 1]`` for a crop that lies inside the image.

    Example:
        >>> theta = torch.tensor([[[0.5, 0.0, 0.25], [0.0, 0.5, -0.5], [0.0, 0.0, 1.0]]])
        >>> crop_boxes(theta).tolist()
        [[-0.25, -1.0, 0.75, 0.0]]
    """
    t = _check_theta(theta)
    corners = torch.tensor(
        [[-1.0, -1.0, 1.0], [1.0, -1.0, 1.0], [-1.0, 1.0, 1.0], [1.0, 1.0, 1.0]],
        dtype=t.dtype,
        device=t.device,
    )
    mapped = torch.einsum("nij,kj->nki", t[:, :2, :], corners)  # (N, 4 corners, 2)
    lo, hi = mapped.amin(dim=1), mapped.amax(dim=1)
    return torch.cat([lo, hi], dim=1)


def foreground_kept(masks: Tensor, theta: Tensor) -> Tensor:
    """The share of each image's foreground pixels that its crop keeps.

    A pixel is kept when its centre lies inside the crop box (:func:`crop_boxes`).

    Args:
        masks: ``(N, H, W)`` foreground masks (bool or 0/1 floats; :func:`foreground_mask`).
        theta: ``(N, 3, 3)`` or ``(N, 2, 3)`` sampling matrices of the crops.

    Returns:
        ``(N,)`` float32 shares in ``[0, 1]``; an image without foreground keeps 0.

    Example:
        >>> m = torch.zeros(1, 4, 4, dtype=torch.bool)
        >>> m[0, :, :2] = True  # the left half is the object
        >>> left = torch.tensor([[[0.5, 0.0, -0.5], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]])
        >>> float(foreground_kept(m, left)), float(foreground_kept(m, -left))
        (1.0, 0.0)
    """
    m = check_tensor(masks, "masks")
    if m.dim() != 3 or m.shape[1] < 1 or m.shape[2] < 1:
        raise ValueError(f"masks must have shape (N, H, W); got {tuple(m.shape)}")
    boxes = crop_boxes(_check_theta(theta, m.shape[0])).to(torch.float32)
    _, h, w = m.shape
    xs = (2 * torch.arange(w, device=m.device, dtype=torch.float32) + 1) / w - 1
    ys = (2 * torch.arange(h, device=m.device, dtype=torch.float32) + 1) / h - 1
    in_x = (xs[None, :] >= boxes[:, 0:1]) & (xs[None, :] <= boxes[:, 2:3])  # (N, W)
    in_y = (ys[None, :] >= boxes[:, 1:2]) & (ys[None, :] <= boxes[:, 3:4])  # (N, H)
    inside = in_y[:, :, None] & in_x[:, None, :]
    fg = m.to(torch.float32)
    total = fg.sum(dim=(1, 2))
    kept = (fg * inside).sum(dim=(1, 2))
    return torch.where(total > 0, kept / total.clamp_min(1e-12), torch.zeros_like(total))


def _pair(value: Sequence[float], name: str, *, low: float, high: float) -> tuple[float, float]:
    if len(value) != 2:
        raise ValueError(f"{name} must be a (low, high) pair, got {value!r}")
    lo, hi = float(value[0]), float(value[1])
    if not low <= lo <= hi <= high:
        raise ValueError(f"{name} must satisfy {low} <= low <= high <= {high}, got {value!r}")
    return lo, hi


def scored_views(
    images: Tensor,
    views: int = 2,
    *,
    generator: torch.Generator | None = None,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    flip_p: float = 0.5,
    degrade_p: float = 0.3,
    noise: Sequence[float] = (0.3, 0.6),
    max_sigma: float = 1.0,
    threshold: float = 0.2,
) -> tuple[Tensor, Tensor]:
    """Random crops of each image, some degraded, each with its quality in ``[0, 1]``.

    Every view is a random resized crop (area share drawn from ``scale``), flipped left-right with
    probability ``flip_p``; with probability ``degrade_p`` Gaussian noise of a standard deviation
    ``sigma`` drawn uniformly from ``noise`` is added (clamped to ``[0, 1]``). A view's quality is
    ``kept * (1 - sigma / max_sigma)``: the share of the object's pixels (:func:`foreground_mask`)
    its crop keeps (:func:`foreground_kept`), times its clarity (``sigma = 0`` for an undegraded
    view).

    Args:
        images: ``(N, C, H, W)`` float images in ``[0, 1]``, object bright on dark.
        views: Views per image (>= 1).
        generator: Source of randomness (a seeded generator reproduces the views).
        scale: Range of the crop's area share, within ``(0, 1]``.
        ratio: Range of the crop's aspect ratio.
        flip_p: Probability of a left-right flip.
        degrade_p: Probability that a view is degraded.
        noise: Range of the noise standard deviation of a degraded view, within
            ``[0, max_sigma]``.
        max_sigma: The standard deviation at which a view's clarity reaches 0 (> 0).
        threshold: Foreground threshold of :func:`foreground_mask`.

    Returns:
        ``(views (N, V, C, H, W), quality (N, V))``.

    Raises:
        ValueError: A setting is out of range.
    """
    x = check_images(images)
    v = check_int(views, "views", minimum=1)
    flip = check_probability(flip_p, "flip_p")
    degrade = check_probability(degrade_p, "degrade_p")
    top = check_positive(max_sigma, "max_sigma")
    lo, hi = _pair(noise, "noise", low=0.0, high=top)
    mask = foreground_mask(x, threshold)
    n, _, h, w = x.shape
    dev = generator.device if generator is not None else x.device  # draws on the generator's
    out, quality = [], []
    for _ in range(v):
        crop = crop_matrix(
            n, height=h, width=w, scale=scale, ratio=ratio, generator=generator, device=dev
        )
        theta = (crop @ flip_matrix(n, p=flip, generator=generator, device=dev)).to(x.device)
        view = apply_affine(x, theta)
        coin = torch.rand(n, generator=generator, device=dev) < degrade
        sigma = lo + (hi - lo) * torch.rand(n, generator=generator, device=dev)
        sigma = torch.where(coin, sigma, torch.zeros_like(sigma)).to(x.device)
        noise_map = torch.randn(view.shape, generator=generator, device=dev).to(x.device)
        view = (view + sigma.to(view.dtype)[:, None, None, None] * noise_map).clamp(0.0, 1.0)
        out.append(view)
        quality.append(foreground_kept(mask, theta) * (1.0 - sigma / top))
    return torch.stack(out, dim=1), torch.stack(quality, dim=1)
