"""Batched, per-sample random augmentations of image tensors, in plain torch.

Every op takes a batch ``images`` of shape ``(B, C, H, W)`` with values in ``[0, 1]`` (float32,
float64, float16 or bfloat16; CPU or GPU) and returns a tensor of the same shape, dtype and device
with values kept in ``[0, 1]``. Each sample of the batch gets its own random parameters, drawn from
``generator`` (a ``torch.Generator``; ``None`` uses torch's global generator), so a seeded generator
reproduces the result exactly on the same device. The small per-sample parameters are drawn on the
generator's device and moved to the images' device, so a CPU generator can drive GPU augmentation;
per-pixel noise for images on another device is drawn from a generator on that device seeded from
``generator``. Half-precision inputs are computed in float32 and cast back.

Geometry (random resized crop, flips, rotation / translation / scale / shear) is expressed as
per-sample 3x3 homogeneous *sampling* matrices in the normalised coordinates of ``F.affine_grid``
(``align_corners=False``): a matrix maps a point of the output image to the point of the input image
it is read from. Geometric steps compose by matrix product in the order they are applied to the
image (``crop_matrix(...) @ flip_matrix(...) @ affine_matrix(...)`` crops first, then flips, then
rotates), and the whole composition is applied with one sampling grid and one bilinear
``F.grid_sample`` for the batch (:func:`apply_affine`). The grid is ``F.affine_grid``'s (tested
equal to float rounding) but built by broadcasting, which is several times faster on CPUs.

Values are assumed to lie in ``[0, 1]``; this is not checked (it would cost a pass over the data
and, on a GPU, a host sync), but every op clamps its output to ``[0, 1]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_choice, check_positive, check_probability, check_tensor

__all__ = [
    "PADDING_MODES",
    "affine_matrix",
    "apply_affine",
    "blur_kernel_size",
    "check_images",
    "color_jitter",
    "crop_matrix",
    "cutout",
    "flip_matrix",
    "gaussian_blur",
    "gaussian_noise",
    "hsv_to_rgb",
    "random_affine",
    "random_grayscale",
    "random_horizontal_flip",
    "random_resized_crop",
    "rgb_to_grayscale",
    "rgb_to_hsv",
    "solarize",
]

PADDING_MODES = ("zeros", "border", "reflection")
_LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2 luma (torchvision rounds 0.299 to 0.2989)
_HALF = (torch.float16, torch.bfloat16)

# --------------------------------------------------------------------------------------------------
# validation and random helpers


def check_images(images: object, name: str = "images") -> Tensor:
    """Validate a floating-point image batch of shape ``(B, C, H, W)``.

    Args:
        images: The object to check.
        name: Name used in error messages.

    Returns:
        ``images`` unchanged.

    Raises:
        TypeError: If ``images`` is not a tensor or not floating point.
        ValueError: If it is not of rank 4 or has an empty dimension.
    """
    t = check_tensor(images, name)
    if t.dim() != 4:
        raise ValueError(
            f"{name} must have shape (B, C, H, W) (batch, channels, height, width); got a "
            f"tensor of rank {t.dim()} with shape {tuple(t.shape)}"
            + (" (add a channel dim with images.unsqueeze(1))" if t.dim() == 3 else "")
        )
    if not t.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1]; got dtype {t.dtype} "
            f"(convert with images.float() / 255 for uint8 images)"
        )
    if min(t.shape) < 1:
        raise ValueError(f"{name} must not have an empty dimension; got shape {tuple(t.shape)}")
    return t


def _range(
    value: Sequence[float],
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    strict_low: bool = False,
) -> tuple[float, float]:
    """Validate an ordered pair ``(lo, hi)`` of finite numbers with optional bounds."""
    lo, hi = _pair(value, name)
    if lo > hi:
        raise ValueError(f"{name} must be ordered (low <= high); got {value!r}")
    if low is not None and (lo < low or (strict_low and lo <= low)):
        bound = ">" if strict_low else ">="
        raise ValueError(f"{name} values must be {bound} {low}; got {value!r}")
    if high is not None and hi > high:
        raise ValueError(f"{name} values must be <= {high}; got {value!r}")
    return lo, hi


def _pair(value: object, name: str) -> tuple[float, float]:
    """Validate a pair of finite numbers."""
    if isinstance(value, str | bytes) or not isinstance(value, Sequence) or len(value) != 2:
        raise ValueError(f"{name} must be a pair of numbers (a, b); got {value!r}")
    return _number(value[0], name), _number(value[1], name)


def _number(v: object, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(float(v)):
        raise ValueError(f"{name} must hold finite numbers; got {v!r}")
    return float(v)


def _gen_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    return generator.device if generator is not None else device


def _rand(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """Uniform [0, 1) float32 numbers drawn on the generator's device, returned on ``device``."""
    r = torch.rand(shape, generator=generator, device=_gen_device(generator, device))
    return r.to(device)


def _uniform(
    n: int, lo: float, hi: float, generator: torch.Generator | None, device: torch.device
) -> Tensor:
    """``n`` numbers uniform in ``[lo, hi]``, float32 on ``device``."""
    return lo + (hi - lo) * _rand((n,), generator, device)


def _coin(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> Tensor:
    """``n`` booleans, each True with probability ``p``."""
    return _rand((n,), generator, device) < p


def _randn_like(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """Standard normal noise shaped like ``x``, drawn on ``x``'s device.

    If ``generator`` lives on another device, a generator on ``x``'s device is seeded from it, so
    the noise is still reproducible from the seed without moving a full-size tensor between devices.
    """
    if generator is not None and generator.device != x.device:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        local = torch.Generator(device=x.device)
        local.manual_seed(seed)
        generator = local
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _work(images: Tensor) -> Tensor:
    """Float32 working copy for half-precision input, else ``images`` itself."""
    return images.float() if images.dtype in _HALF else images


# --------------------------------------------------------------------------------------------------
# geometry: matrix builders and the one-shot affine warp


def _eye(n: int, device: torch.device) -> Tensor:
    return torch.eye(3, device=device).expand(n, 3, 3).clone()


def crop_matrix(
    n: int,
    *,
    height: int,
    width: int,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sampling matrices of a random resized crop, one per sample.

    As torchvision's ``RandomResizedCrop``: the crop covers a fraction of the image area drawn
    uniformly from ``scale`` and has an aspect ratio (width / height) drawn log-uniformly from
    ``ratio``; up to 10 draws are tried per sample (all at once, no Python loop) and the first that
    fits is kept; if none fits, the largest centred crop with a ratio clamped to ``ratio`` is used.
    The crop position is uniform over the positions that keep it inside the image. Unlike
    torchvision the crop box is not rounded to whole pixels.

    Args:
        n: Number of matrices (batch size).
        height: Image height in pixels.
        width: Image width in pixels.
        scale: Range of the crop area as a fraction of the image area, within (0, 1].
        ratio: Range of the crop aspect ratio (width / height), > 0.
        generator: Source of randomness.
        device: Device of the returned tensor (default CPU).

    Returns:
        Float32 tensor of shape ``(n, 3, 3)``.
    """
    scale = _range(scale, "scale", low=0.0, high=1.0, strict_low=True)
    ratio = _range(ratio, "ratio", low=0.0, strict_low=True)
    dev = torch.device(device) if device is not None else torch.device("cpu")
    tries = 10
    area = scale[0] + (scale[1] - scale[0]) * _rand((n, tries), generator, dev)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(log_lo + (log_hi - log_lo) * _rand((n, tries), generator, dev))
    aspect = height / width
    w_frac = torch.sqrt(area * r * aspect)  # crop width / image width
    h_frac = torch.sqrt(area / r / aspect)  # crop height / image height
    ok = (w_frac <= 1.0) & (h_frac <= 1.0)
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    w_sel = w_frac.gather(1, first).squeeze(1)
    h_sel = h_frac.gather(1, first).squeeze(1)
    # Fallback (torchvision): whole image, ratio clamped into range, centred.
    img_ratio = width / height
    fb_ratio = min(max(img_ratio, ratio[0]), ratio[1])
    if img_ratio > fb_ratio:  # image too wide: full height
        fb_w, fb_h = fb_ratio / img_ratio, 1.0
    else:
        fb_w, fb_h = 1.0, img_ratio / fb_ratio
    any_ok = ok.any(dim=1)
    w_sel = torch.where(any_ok, w_sel, torch.full_like(w_sel, fb_w)).clamp(max=1.0)
    h_sel = torch.where(any_ok, h_sel, torch.full_like(h_sel, fb_h)).clamp(max=1.0)
    pos = 2.0 * _rand((n, 2), generator, dev) - 1.0  # in [-1, 1)
    pos = torch.where(any_ok.unsqueeze(1), pos, torch.zeros_like(pos))
    m = _eye(n, dev)
    m[:, 0, 0] = w_sel
    m[:, 1, 1] = h_sel
    m[:, 0, 2] = pos[:, 0] * (1.0 - w_sel)
    m[:, 1, 2] = pos[:, 1] * (1.0 - h_sel)
    return m


def flip_matrix(
    n: int,
    *,
    p: float = 0.5,
    vertical: bool = False,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sampling matrices that flip each sample with probability ``p``.

    Args:
        n: Number of matrices (batch size).
        p: Probability of flipping a sample.
        vertical: Flip top-bottom instead of left-right.
        generator: Source of randomness.
        device: Device of the returned tensor (default CPU).

    Returns:
        Float32 tensor of shape ``(n, 3, 3)``: identity or a mirror.
    """
    p = check_probability(p, "p")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    flip = _coin(n, p, generator, dev)
    m = _eye(n, dev)
    axis = 1 if vertical else 0
    m[:, axis, axis] = torch.where(flip, -1.0, 1.0)
    return m


def affine_matrix(
    n: int,
    *,
    height: int,
    width: int,
    degrees: float = 0.0,
    translate: Sequence[float] = (0.0, 0.0),
    scale: Sequence[float] = (1.0, 1.0),
    shear: float = 0.0,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Tensor:
    """Sampling matrices of a random affine transform about the image centre, one per sample.

    As torchvision's ``RandomAffine``: the image is scaled by a factor uniform in ``scale``, sheared
    along x by an angle uniform in ``[-shear, shear]`` degrees, rotated by an angle uniform in
    ``[-degrees, degrees]`` (positive = counter-clockwise on screen) and translated by up to
    ``translate[0] * width`` and ``translate[1] * height`` pixels. The transform is built in pixel
    units (so rotations stay rigid on non-square images), inverted and expressed in normalised
    coordinates.

    Args:
        n: Number of matrices (batch size).
        height: Image height in pixels.
        width: Image width in pixels.
        degrees: Maximum absolute rotation angle in degrees.
        translate: Maximum absolute translation as fractions of (width, height), each in [0, 1].
        scale: Range of the zoom factor (> 0); > 1 enlarges the content.
        shear: Maximum absolute x-shear angle in degrees, in [0, 90).
        generator: Source of randomness.
        device: Device of the returned tensor (default CPU).

    Returns:
        Float32 tensor of shape ``(n, 3, 3)``.
    """
    degrees = check_positive(degrees, "degrees", allow_zero=True)
    tx_max, ty_max = _pair(translate, "translate")  # not an interval: two maxima
    if not (0 <= tx_max <= 1 and 0 <= ty_max <= 1):
        raise ValueError(f"translate fractions must lie in [0, 1]; got {translate!r}")
    s_lo, s_hi = _range(scale, "scale", low=0.0, strict_low=True)
    shear = check_positive(shear, "shear", allow_zero=True)
    if shear >= 90:
        raise ValueError(f"shear must be an angle in [0, 90) degrees; got {shear!r}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    u = _rand((n, 5), generator, dev)
    angle = torch.deg2rad((2 * u[:, 0] - 1) * degrees)
    sh = torch.tan(torch.deg2rad((2 * u[:, 1] - 1) * shear))
    s = s_lo + (s_hi - s_lo) * u[:, 2]
    tx = (2 * u[:, 3] - 1) * tx_max * width
    ty = (2 * u[:, 4] - 1) * ty_max * height
    # Forward map in pixel units about the centre, y pointing down:
    # A = R(-angle) @ Shear_x(sh) @ s  (screen counter-clockwise rotation for angle > 0).
    cos, sin = torch.cos(angle), torch.sin(angle)
    a00, a01 = s * cos, s * (cos * sh + sin)
    a10, a11 = -s * sin, s * (-sin * sh + cos)
    det = a00 * a11 - a01 * a10
    i00, i01, i10, i11 = a11 / det, -a01 / det, -a10 / det, a00 / det
    it0 = -(i00 * tx + i01 * ty)
    it1 = -(i10 * tx + i11 * ty)
    # Pixel -> normalised: u = x / (W / 2), v = y / (H / 2).
    hw, hh = width / 2.0, height / 2.0
    m = _eye(n, dev)
    m[:, 0, 0] = i00
    m[:, 0, 1] = i01 * hh / hw
    m[:, 0, 2] = it0 / hw
    m[:, 1, 0] = i10 * hw / hh
    m[:, 1, 1] = i11
    m[:, 1, 2] = it1 / hh
    return m


def _affine_grid(theta: Tensor, n: int, h: int, w: int) -> Tensor:
    """``F.affine_grid(theta, (n, C, h, w), align_corners=False)``, by broadcasting.

    Same grid (to float rounding) as ``F.affine_grid``, whose batched 3x2 matmul is several times
    slower on a CPU; the result is a ``(n, h, w, 2)`` view with non-contiguous strides, which
    ``grid_sample`` accepts.
    """
    xs = (torch.arange(w, device=theta.device, dtype=theta.dtype) * 2 + 1) / w - 1
    ys = (torch.arange(h, device=theta.device, dtype=theta.dtype) * 2 + 1) / h - 1
    gx = theta[:, :2, 0].reshape(n, 2, 1, 1) * xs.view(1, 1, 1, w)  # (n, 2, 1, w)
    gy = torch.addcmul(
        theta[:, :2, 2].reshape(n, 2, 1, 1),
        theta[:, :2, 1].reshape(n, 2, 1, 1),
        ys.view(1, 1, h, 1),
    )  # (n, 2, h, 1)
    return (gx + gy).permute(0, 2, 3, 1)


def _apply_affine(
    x: Tensor, theta: Tensor, padding_mode: str, out_size: tuple[int, int] | None = None
) -> Tensor:
    """Warp ``x`` by ``theta``; the output is ``out_size`` (default: the input size).

    The sampling matrices are in normalised coordinates, so the same matrix crops the same
    region whatever the output size: a different ``out_size`` resizes the crop (bilinear, no
    antialiasing) in the same pass.
    """
    n, _, h, w = x.shape
    if out_size is not None:
        h, w = out_size
    grid = _affine_grid(theta.to(device=x.device, dtype=x.dtype), n, h, w)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)
    return out.clamp_(0.0, 1.0)


def apply_affine(images: Tensor, theta: Tensor, *, padding_mode: str = "zeros") -> Tensor:
    """Warp each image by its sampling matrix: one affine grid + one bilinear ``grid_sample``.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        theta: Sampling matrices of shape ``(B, 2, 3)`` or ``(B, 3, 3)`` (normalised coordinates,
            ``align_corners=False``; see the module docstring).
        padding_mode: ``"zeros"``, ``"border"`` or ``"reflection"``: what is read outside the image.

    Returns:
        The warped batch, same shape, dtype and device as ``images``.
    """
    check_images(images)
    check_choice(padding_mode, "padding_mode", PADDING_MODES)
    check_tensor(theta, "theta")
    if (
        theta.dim() != 3
        or theta.shape[0] != images.shape[0]
        or theta.shape[1:] not in ((2, 3), (3, 3))
    ):
        raise ValueError(
            f"theta must have shape ({images.shape[0]}, 2, 3) or ({images.shape[0]}, 3, 3), one "
            f"matrix per image; got shape {tuple(theta.shape)}"
        )
    return _apply_affine(_work(images), theta, padding_mode).to(images.dtype)


def random_resized_crop(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    scale: Sequence[float] = (0.08, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    padding_mode: str = "zeros",
) -> Tensor:
    """Crop a random box of each image and resize it back to the input size (bilinear).

    See :func:`crop_matrix` for how the box is drawn. The crop always lies inside the image, so
    ``padding_mode`` only matters at the sub-pixel border.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        scale: Range of the crop area as a fraction of the image area, within (0, 1].
        ratio: Range of the crop aspect ratio (width / height).
        padding_mode: Passed to ``grid_sample``.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    b, _, h, w = images.shape
    theta = crop_matrix(
        b, height=h, width=w, scale=scale, ratio=ratio, generator=generator, device=images.device
    )
    return apply_affine(images, theta, padding_mode=padding_mode)


def random_affine(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    degrees: float = 0.0,
    translate: Sequence[float] = (0.0, 0.0),
    scale: Sequence[float] = (1.0, 1.0),
    shear: float = 0.0,
    padding_mode: str = "zeros",
) -> Tensor:
    """Rotate, translate, scale and shear each image by its own random amounts.

    See :func:`affine_matrix` for the parameters and their distributions.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        degrees: Maximum absolute rotation in degrees.
        translate: Maximum absolute translation as fractions of (width, height).
        scale: Range of the zoom factor.
        shear: Maximum absolute x-shear in degrees.
        padding_mode: What is read outside the image: ``"zeros"``, ``"border"`` or ``"reflection"``.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    b, _, h, w = images.shape
    theta = affine_matrix(
        b,
        height=h,
        width=w,
        degrees=degrees,
        translate=translate,
        scale=scale,
        shear=shear,
        generator=generator,
        device=images.device,
    )
    return apply_affine(images, theta, padding_mode=padding_mode)


def _hflip(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    flip = _coin(x.shape[0], p, generator, x.device).view(-1, 1, 1, 1)
    return torch.where(flip, x.flip(-1), x)


def random_horizontal_flip(
    images: Tensor, generator: torch.Generator | None = None, *, p: float = 0.5
) -> Tensor:
    """Mirror each image left-right with probability ``p`` (exact, no resampling).

    In :class:`~contrastkit.views.pipeline.ViewAugment` the flip is folded into the single affine
    warp instead (:func:`flip_matrix`).

    Args:
        images: Batch of shape ``(B, C, H, W)``.
        generator: Source of randomness.
        p: Probability of flipping each sample.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    p = check_probability(p, "p")
    return _hflip(images, p, generator)


# --------------------------------------------------------------------------------------------------
# intensity and colour


def rgb_to_grayscale(x: Tensor) -> Tensor:
    """Luma of a batch ``(B, C, H, W)`` as ``(B, 1, H, W)``.

    Three channels use the ITU-R 601-2 weights (0.299, 0.587, 0.114), which sum to 1 so a gray image
    stays put (torchvision uses 0.2989, a difference below 1e-4); any other channel count uses the
    channel mean (one channel: the image itself).
    """
    if x.shape[1] == 3:
        r, g, b = x.unbind(1)
        return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(1)
    if x.shape[1] == 1:
        return x
    return x.mean(dim=1, keepdim=True)


def rgb_to_hsv(x: Tensor) -> Tensor:
    """RGB batch ``(B, 3, H, W)`` in [0, 1] to HSV with channels in [0, 1], as torchvision."""
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    eqc = maxc == minc
    cr = maxc - minc
    one = torch.ones_like(maxc)
    s = cr / torch.where(eqc, one, maxc)
    crd = torch.where(eqc, one, cr)
    rc, gc, bc = (maxc - r) / crd, (maxc - g) / crd, (maxc - b) / crd
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~is_g & ~is_r
    h = is_r * (bc - gc) + is_g * (2.0 + rc - bc) + is_b * (4.0 + gc - rc)
    h = torch.remainder(h / 6.0, 1.0)
    return torch.stack((h, s, maxc), dim=1)


def hsv_to_rgb(x: Tensor) -> Tensor:
    """Convert an HSV batch ``(B, 3, H, W)`` (channels in [0, 1]) to RGB in [0, 1]."""
    h, s, v = x.unbind(1)
    h6 = h.unsqueeze(1) * 6.0
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    k = torch.remainder(n + h6, 6.0)
    ramp = torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0)
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * ramp


def _shift_hue(x: Tensor, shift: Tensor) -> Tensor:
    """Add ``shift`` (B,) turns to the HSV hue of an RGB batch, keeping saturation and value.

    Equal (to float rounding) to ``hsv_to_rgb`` of ``rgb_to_hsv`` with a shifted hue, but computed
    straight from max, min and chroma, branch-free (full-size ``torch.where`` and ``remainder`` are
    slow on CPUs) and without materialising the HSV image.
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    chroma = maxc - torch.minimum(torch.minimum(r, g), b)
    # Hue in sixths of a turn: (g - b) / C if max is r, 2 + (b - r) / C if g, 4 + (r - g) / C if b.
    is_r = (maxc == r).to(x.dtype)
    is_g = (maxc == g).to(x.dtype) * (1.0 - is_r)
    is_b = 1.0 - is_r - is_g
    h6 = is_r * (g - b) + is_g * (b - r + 2.0 * chroma) + is_b * (r - g + 4.0 * chroma)
    h6 = h6 / chroma.clamp_min(torch.finfo(x.dtype).tiny)  # chroma 0 -> numerator 0 -> hue 0
    h6 = h6.add_(6.0 * shift.to(x.dtype).view(-1, 1, 1)).unsqueeze(1)
    # Channel n (R: 5, G: 3, B: 1) = max - C * clamp(min(k, 4 - k), 0, 1), k = (n + h6) mod 6,
    # written as the periodic triangle clamp(2 - |d|, 0, 1), d = k - 2 wrapped into [-3, 3].
    offsets = torch.tensor([3.0, 1.0, -1.0], device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    d = h6 + offsets
    d = d.sub_(torch.round(d / 6.0).mul_(6.0)).abs_()
    ramp = d.neg_().add_(2.0).clamp_(0.0, 1.0)
    return torch.addcmul(maxc.unsqueeze(1), chroma.unsqueeze(1), ramp, value=-1.0).clamp_(0.0, 1.0)


JITTER_ORDERS = ("random", "fixed")


def _mean_luma(x: Tensor) -> Tensor:
    """Per-sample mean of :func:`rgb_to_grayscale`, shape (B,)."""
    if x.shape[1] == 3:
        w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype)
        return x.mean(dim=(2, 3)) @ w
    return x.mean(dim=(1, 2, 3))


def _color_jitter(
    x: Tensor,
    generator: torch.Generator | None,
    *,
    brightness: float,
    contrast: float,
    saturation: float,
    hue: float,
    p: float,
    order: str,
) -> Tensor:
    n, c = x.shape[0], x.shape[1]
    dev = x.device
    colour = c == 3
    # op ids: 0 brightness, 1 contrast, 2 saturation, 3 hue; only the active ones take a stage.
    strengths = (brightness, contrast, saturation if colour else 0.0, hue if colour else 0.0)
    active = [i for i, s in enumerate(strengths) if s > 0]
    if not active or p == 0:
        return x
    apply = _coin(n, p, generator, dev)
    u = _rand((n, 4), generator, dev)
    factors = []
    for i, s in enumerate(strengths[:3]):
        f = max(0.0, 1.0 - s) + (1.0 + s - max(0.0, 1.0 - s)) * u[:, i]
        factors.append(torch.where(apply, f, torch.ones_like(f)))
    hue_shift = torch.where(apply, (2 * u[:, 3] - 1) * hue, torch.zeros_like(u[:, 3]))
    k = len(active)
    ids = torch.tensor(active, device=dev)
    if order == "random":
        perm = ids[torch.argsort(_rand((n, k), generator, dev), dim=1)]  # (n, k) op id per stage
    else:
        perm = ids.expand(n, k)
    linear = [i for i in active if i < 3]
    ones = torch.ones(n, device=dev)
    # Per stage and sample: the blend weight a (1 = untouched) of the linear ops.
    weights = []
    for stage in range(k):
        a = ones
        for i in linear:
            a = torch.where(perm[:, stage] == i, factors[i], a)
        weights.append(a)
    # Every sample is processed independently once its parameters are drawn, so on CPUs the stages
    # run over cache-sized chunks of the batch (same result, fewer trips to memory).
    step = _cpu_chunk(x)
    parts = []
    for s0 in range(0, n, step):
        sl = slice(s0, s0 + step)
        parts.append(
            _jitter_stages(
                x[sl],
                perm[sl],
                [w[sl] for w in weights],
                apply[sl],
                hue_shift[sl],
                linear,
                3 in active,
            )
        )
    return parts[0] if len(parts) == 1 else torch.cat(parts)


_CHUNK_ELEMENTS = 3 * 2**17  # ~1.5 MB of float32 per chunk: the temporaries stay in cache


def _cpu_chunk(x: Tensor) -> int:
    """Samples per chunk for the multi-pass colour ops: the whole batch on GPUs."""
    n = x.shape[0]
    if x.device.type != "cpu":
        return n
    return max(1, min(n, _CHUNK_ELEMENTS // max(1, x[0].numel())))


def _jitter_stages(
    x: Tensor,
    perm: Tensor,
    weights: list[Tensor],
    apply: Tensor,
    hue_shift: Tensor,
    linear: list[int],
    with_hue: bool,
) -> Tensor:
    """Apply the jitter stages to a chunk whose per-sample parameters are drawn."""
    for stage, a in enumerate(weights):
        op = perm[:, stage]
        if linear:
            # Brightness, contrast and saturation are blends x <- a * x + (1 - a) * ref with
            # ref = 0, the mean luma or the per-pixel luma; a = 1 leaves a sample untouched. One
            # fused pass per stage: x <- a * x + offset (+ coef * luma).
            offset = torch.zeros_like(a)
            if 1 in linear:
                offset = torch.where(op == 1, (1.0 - a) * _mean_luma(x).float(), offset)
            y = torch.addcmul(
                offset.to(x.dtype).view(-1, 1, 1, 1), x, a.to(x.dtype).view(-1, 1, 1, 1)
            )
            if 2 in linear:
                coef = torch.where(op == 2, 1.0 - a, torch.zeros_like(a)).to(x.dtype)
                y.addcmul_(rgb_to_grayscale(x), coef.view(-1, 1, 1, 1))
            x = y.clamp_(0.0, 1.0)
        if with_hue:
            sel = (op == 3) & apply
            idx = sel.nonzero().squeeze(1)
            if idx.numel() > 0:
                x = x.index_copy(0, idx, _shift_hue(x.index_select(0, idx), hue_shift[idx]))
    return x


def color_jitter(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    brightness: float = 0.4,
    contrast: float = 0.4,
    saturation: float = 0.4,
    hue: float = 0.1,
    p: float = 0.8,
    order: str = "random",
) -> Tensor:
    """Randomly change brightness, contrast, saturation and hue, as torchvision's ``ColorJitter``.

    With probability ``p`` a sample is jittered; its factors are drawn uniformly from ``[max(0, 1 -
    s), 1 + s]`` for brightness, contrast and saturation (strength ``s``) and its hue shift from
    ``[-hue, hue]`` turns. Brightness scales the image; contrast blends it with its mean luma;
    saturation blends it with its per-pixel luma; hue rotates it in HSV space. The result is clamped
    to [0, 1] after each step, so the order matters: with ``order="random"`` every sample gets its
    own random order of the active steps (as torchvision, which draws one order per image); with
    ``order="fixed"`` the order is brightness, contrast, saturation, hue. Saturation and hue apply
    only to 3-channel (RGB) images and are ignored otherwise.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        brightness: Brightness strength, >= 0 (0 disables).
        contrast: Contrast strength, >= 0 (0 disables).
        saturation: Saturation strength, >= 0 (0 disables).
        hue: Maximum hue shift in turns, in [0, 0.5] (0 disables).
        p: Probability of jittering each sample.
        order: ``"random"`` (per sample) or ``"fixed"``.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    for name, v in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation)):
        check_positive(v, name, allow_zero=True)
    _check_hue(hue)
    p = check_probability(p, "p")
    check_choice(order, "order", JITTER_ORDERS)
    out = _color_jitter(
        _work(images),
        generator,
        brightness=brightness,
        contrast=contrast,
        saturation=saturation,
        hue=hue,
        p=p,
        order=order,
    )
    return out.to(images.dtype)


def _check_hue(hue: float) -> None:
    check_positive(hue, "hue", allow_zero=True)
    if hue > 0.5:
        raise ValueError(f"hue must lie in [0, 0.5] (a fraction of a full turn); got {hue!r}")


def _grayscale(x: Tensor, p: float, generator: torch.Generator | None) -> Tensor:
    if x.shape[1] == 1 or p == 0:
        return x
    sel = _coin(x.shape[0], p, generator, x.device)
    # Only the selected samples are converted (a full-size broadcast torch.where is slow on CPUs).
    idx = sel.nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    gray = rgb_to_grayscale(x.index_select(0, idx)).expand(-1, x.shape[1], -1, -1)
    return x.index_copy(0, idx, gray.contiguous())


def random_grayscale(
    images: Tensor, generator: torch.Generator | None = None, *, p: float = 0.2
) -> Tensor:
    """Replace each image by its luma in every channel with probability ``p``.

    Uses :func:`rgb_to_grayscale` (ITU-R 601-2 weights for RGB, channel mean otherwise); one-channel
    images are returned unchanged.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        p: Probability of converting each sample.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    p = check_probability(p, "p")
    return _grayscale(_work(images), p, generator).to(images.dtype)


def _solarize(x: Tensor, threshold: float, p: float, generator: torch.Generator | None) -> Tensor:
    if p == 0:
        return x
    sel = _coin(x.shape[0], p, generator, x.device).to(x.dtype).view(-1, 1, 1, 1)
    # x + m * (1 - 2x) is 1 - x where m = 1, x where m = 0 (no full-size boolean select).
    m = (x >= threshold).to(x.dtype).mul_(sel)
    return torch.addcmul(x, m, 1.0 - 2.0 * x).clamp_(0.0, 1.0)


def solarize(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    threshold: float = 0.5,
    p: float = 0.2,
) -> Tensor:
    """Invert the pixels at or above ``threshold`` (``x -> 1 - x``), per sample with probability p.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        threshold: Pixel value in [0, 1] from which pixels are inverted.
        p: Probability of solarizing each sample.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    threshold = check_probability(threshold, "threshold")
    p = check_probability(p, "p")
    return _solarize(_work(images), threshold, p, generator).to(images.dtype)


# --------------------------------------------------------------------------------------------------
# blur, noise, cutout


def blur_kernel_size(height: int, width: int) -> int:
    """SimCLR's kernel size rule: about 10% of the (smaller) image side, odd, at least 3.

    ``2 * (min(height, width) // 10 // 2) + 1``, floored at 3: 224 -> 23, 96 -> 9, 32 -> 3, 28 -> 3.
    """
    return max(3, 2 * (min(height, width) // 10 // 2) + 1)


def _gaussian_blur(
    x: Tensor,
    sigma_range: tuple[float, float],
    p: float,
    kernel_size: int,
    generator: torch.Generator | None,
) -> Tensor:
    if p == 0:
        return x
    n, c, h, w = x.shape
    sigma = _uniform(n, sigma_range[0], sigma_range[1], generator, x.device)
    sel = _coin(n, p, generator, x.device)
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, device=x.device, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2.0 * sigma.unsqueeze(1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)
    delta = (t == 0).to(k.dtype).expand_as(k)
    k = torch.where(sel.unsqueeze(1), k, delta).to(x.dtype)  # (n, K): identity for unselected
    mode = "reflect" if r < min(h, w) else "replicate"
    if kernel_size <= 5:
        # Small kernels: the separable depthwise convolution as K shifted multiply-adds per axis
        # (several times faster on CPUs than a grouped conv with B * C groups).
        y = F.pad(x, (r, r, r, r), mode=mode)
        kw = k.view(n, 1, 1, 1, kernel_size)
        rows = y[..., 0:w] * kw[..., 0]
        for i in range(1, kernel_size):
            rows.addcmul_(y[..., i : i + w], kw[..., i])
        out = rows[:, :, 0:h] * kw[..., 0]
        for i in range(1, kernel_size):
            out.addcmul_(rows[:, :, i : i + h], kw[..., i])
        return out.clamp_(0.0, 1.0)
    kc = k.repeat_interleave(c, dim=0)  # (n * c, K)
    y = F.pad(x.reshape(1, n * c, h, w), (r, r, r, r), mode=mode)
    y = F.conv2d(y, kc.view(n * c, 1, 1, kernel_size), groups=n * c)
    y = F.conv2d(y, kc.view(n * c, 1, kernel_size, 1), groups=n * c)
    return y.view(n, c, h, w).clamp_(0.0, 1.0)


def gaussian_blur(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    sigma: Sequence[float] = (0.1, 2.0),
    p: float = 0.5,
    kernel_size: int | None = None,
) -> Tensor:
    """Blur each image with a Gaussian of its own sigma, with probability ``p``.

    A separable depthwise convolution (one horizontal and one vertical pass for the whole batch;
    kernels of up to 5 taps as shifted multiply-adds, larger ones as a grouped ``conv2d``) with
    reflect padding, as torchvision's ``GaussianBlur``. Sigma is drawn uniformly from ``sigma``.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        sigma: Range of the standard deviation in pixels, > 0.
        p: Probability of blurring each sample.
        kernel_size: Odd kernel size; ``None`` uses :func:`blur_kernel_size` (SimCLR's 10% rule).

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    sig = _range(sigma, "sigma", low=0.0, strict_low=True)
    p = check_probability(p, "p")
    ks = _check_kernel_size(kernel_size, images.shape[-2], images.shape[-1])
    return _gaussian_blur(_work(images), sig, p, ks, generator).to(images.dtype)


def _check_kernel_size(kernel_size: int | None, h: int, w: int) -> int:
    if kernel_size is None:
        return blur_kernel_size(h, w)
    if (
        isinstance(kernel_size, bool)
        or not isinstance(kernel_size, int)
        or kernel_size < 1
        or (kernel_size % 2 == 0)
    ):
        raise ValueError(f"kernel_size must be an odd positive int or None; got {kernel_size!r}")
    return kernel_size


def _gaussian_noise(
    x: Tensor, std_range: tuple[float, float], p: float, generator: torch.Generator | None
) -> Tensor:
    if p == 0 or std_range[1] == 0:
        return x
    n = x.shape[0]
    std = _uniform(n, std_range[0], std_range[1], generator, x.device)
    # Noise is drawn only for the selected samples: random numbers dominate the cost of this op.
    idx = _coin(n, p, generator, x.device).nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    noise = _randn_like(x.new_empty((idx.numel(), *x.shape[1:])), generator)
    noise.mul_(std[idx].to(x.dtype).view(-1, 1, 1, 1))
    return x.index_add(0, idx, noise).clamp_(0.0, 1.0)


def gaussian_noise(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    std: Sequence[float] = (0.0, 0.05),
    p: float = 0.5,
) -> Tensor:
    """Add white Gaussian noise with a per-sample standard deviation, then clamp to [0, 1].

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        std: Range of the noise standard deviation, >= 0.
        p: Probability of adding noise to each sample.

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    sd = _range(std, "std", low=0.0)
    p = check_probability(p, "p")
    return _gaussian_noise(_work(images), sd, p, generator).to(images.dtype)


def _cutout(
    x: Tensor,
    p: float,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    value: float,
    generator: torch.Generator | None,
) -> Tensor:
    if p == 0:
        return x
    n, _, h, w = x.shape
    dev = x.device
    u = _rand((n, 5), generator, dev)
    area = (scale[0] + (scale[1] - scale[0]) * u[:, 0]) * (h * w)
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    r = torch.exp(log_lo + (log_hi - log_lo) * u[:, 1])  # height / width, as torchvision
    eh = torch.sqrt(area * r).round().clamp(1, h)
    ew = torch.sqrt(area / r).round().clamp(1, w)
    y0 = torch.floor(u[:, 2] * (h - eh + 1)).view(-1, 1, 1)
    x0 = torch.floor(u[:, 3] * (w - ew + 1)).view(-1, 1, 1)
    ys = torch.arange(h, device=dev, dtype=torch.float32).view(1, -1, 1)
    xs = torch.arange(w, device=dev, dtype=torch.float32).view(1, 1, -1)
    rows = (ys >= y0) & (ys < y0 + eh.view(-1, 1, 1)) & (u[:, 4] < p).view(-1, 1, 1)  # (n, h, 1)
    cols = (xs >= x0) & (xs < x0 + ew.view(-1, 1, 1))  # (n, 1, w)
    # Arithmetic instead of a full-size boolean mask (masked_fill / where are slow on CPUs).
    erase = (rows.to(x.dtype) * cols.to(x.dtype)).unsqueeze(1)  # (n, 1, h, w), 0 or 1
    out = x * (1.0 - erase)
    if value != 0:
        out.add_(erase * value)
    return out


def cutout(
    images: Tensor,
    generator: torch.Generator | None = None,
    *,
    p: float = 0.5,
    scale: Sequence[float] = (0.02, 0.33),
    ratio: Sequence[float] = (0.3, 3.3),
    value: float = 0.0,
) -> Tensor:
    """Erase one random rectangle per sample with probability p (torchvision's ``RandomErasing``).

    The rectangle covers a fraction of the image area uniform in ``scale`` with an aspect ratio
    (height / width) log-uniform in ``ratio``, clipped to the image, at a uniform position; all its
    channels are set to ``value``.

    Args:
        images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
        generator: Source of randomness.
        p: Probability of erasing a rectangle in each sample.
        scale: Range of the erased area as a fraction of the image area, within (0, 1].
        ratio: Range of the rectangle's aspect ratio, > 0.
        value: Fill value in [0, 1].

    Returns:
        The augmented batch, same shape, dtype and device.
    """
    check_images(images)
    p = check_probability(p, "p")
    sc = _range(scale, "scale", low=0.0, high=1.0, strict_low=True)
    ra = _range(ratio, "ratio", low=0.0, strict_low=True)
    value = check_probability(value, "value")
    return _cutout(_work(images), p, sc, ra, value, generator).to(images.dtype)
