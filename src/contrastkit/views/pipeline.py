"""The composed view augmentation (:class:`ViewAugment`), its configuration and presets.

A :class:`ViewConfig` holds every parameter of the pipeline; :class:`ViewAugment` applies it to a
whole
batch at once. The steps, in order (each can be disabled):

1. geometry, as **one** affine warp per sample (one affine grid + one ``grid_sample`` for the
   batch): random resized crop, horizontal / vertical flip, then rotation, translation, scale and
   shear;
2. colour jitter (brightness, contrast, saturation, hue; per-sample random order by default);
3. random grayscale;
4. Gaussian blur (per-sample sigma);
5. solarize;
6. additive Gaussian noise (per-sample std);
7. cutout (one erased rectangle).

``ViewAugment.views(images, n_views)`` gives ``(B, V, C, H, W)``: every view of every sample with
its own random parameters, all ``B * V`` images augmented in one pass.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from contrastkit._validation import check_choice
from contrastkit.views import image as ops

__all__ = [
    "PRESETS",
    "ViewAugment",
    "ViewConfig",
    "augment_names",
    "check_augment",
    "check_size",
    "preset",
    "preset_for_dataset",
    "with_color_strength",
]

_Pair = tuple[float, float]


def _prob(value: object, name: str) -> float:
    v = ops._number(value, name)
    if not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1]; got {value!r}")
    return v


def _nonneg(value: object, name: str) -> float:
    v = ops._number(value, name)
    if v < 0:
        raise ValueError(f"{name} must be >= 0; got {value!r}")
    return v


@dataclass(frozen=True)
class ViewConfig:
    """Parameters of :class:`ViewAugment`; the defaults are SimCLR's ImageNet pipeline.

    The colour jitter defaults (0.4, 0.4, 0.4, 0.1) are SimCLR's strength ``s = 0.5``; the paper's
    ImageNet default strength is ``s = 1`` (0.8, 0.8, 0.8, 0.2, also ScatSimCLR's), which
    :func:`with_color_strength` sets.

    Every field is validated on construction (a ``ValueError`` names the field, what it must be and
    what came). Pairs may be given as lists; they are stored as tuples of floats. Use
    ``dataclasses.replace(cfg, field=value)`` to derive a variant and :meth:`identity` for a config
    that changes nothing.

    Attributes:
        crop_scale: Random resized crop area range, within (0, 1]; ``None`` disables the crop.
        crop_ratio: Crop aspect ratio (width / height) range, > 0.
        hflip_p: Probability of a left-right flip.
        vflip_p: Probability of a top-bottom flip.
        degrees: Maximum absolute rotation in degrees (0 disables).
        translate: Maximum absolute translation as fractions of (width, height), each in [0, 1].
        affine_scale: Zoom factor range (> 0); ``(1, 1)`` disables.
        shear: Maximum absolute x-shear in degrees, in [0, 90).
        padding_mode: What the warp reads outside the image: ``"zeros"``, ``"border"`` or
            ``"reflection"``.
        jitter_p: Probability of colour jitter per view.
        brightness: Brightness strength (factor in [max(0, 1 - s), 1 + s]), >= 0.
        contrast: Contrast strength, >= 0.
        saturation: Saturation strength, >= 0 (RGB only; ignored for other channel counts).
        hue: Maximum hue shift in turns, in [0, 0.5] (RGB only).
        jitter_order: ``"random"`` (own order per view, as torchvision) or ``"fixed"``
            (brightness, contrast, saturation, hue).
        grayscale_p: Probability of converting to grayscale (kept with C channels).
        blur_p: Probability of Gaussian blur.
        blur_sigma: Blur sigma range in pixels, > 0.
        blur_kernel_size: Odd kernel size; ``None`` uses SimCLR's 10% rule
            (:func:`~contrastkit.views.image.blur_kernel_size`).
        solarize_p: Probability of solarizing.
        solarize_threshold: Pixel value in [0, 1] from which pixels are inverted.
        noise_p: Probability of additive Gaussian noise.
        noise_std: Noise standard deviation range, >= 0.
        cutout_p: Probability of erasing one rectangle.
        cutout_scale: Erased area fraction range, within (0, 1].
        cutout_ratio: Erased rectangle aspect ratio range, > 0.
        cutout_value: Fill value in [0, 1].
        name: A label for reports and ``repr`` (not compared).
    """

    crop_scale: _Pair | None = (0.08, 1.0)
    crop_ratio: _Pair = (3 / 4, 4 / 3)
    hflip_p: float = 0.5
    vflip_p: float = 0.0
    degrees: float = 0.0
    translate: _Pair = (0.0, 0.0)
    affine_scale: _Pair = (1.0, 1.0)
    shear: float = 0.0
    padding_mode: str = "zeros"
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    jitter_order: str = "random"
    grayscale_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: _Pair = (0.1, 2.0)
    blur_kernel_size: int | None = None
    solarize_p: float = 0.0
    solarize_threshold: float = 0.5
    noise_p: float = 0.0
    noise_std: _Pair = (0.0, 0.0)
    cutout_p: float = 0.0
    cutout_scale: _Pair = (0.02, 0.33)
    cutout_ratio: _Pair = (0.3, 3.3)
    cutout_value: float = 0.0
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        """Validate every field and normalise pairs to tuples of floats."""
        put = object.__setattr__
        if self.crop_scale is not None:
            put(
                self,
                "crop_scale",
                ops._range(self.crop_scale, "crop_scale", low=0.0, high=1.0, strict_low=True),
            )
        put(self, "crop_ratio", ops._range(self.crop_ratio, "crop_ratio", low=0.0, strict_low=True))
        for f in (
            "hflip_p",
            "vflip_p",
            "jitter_p",
            "grayscale_p",
            "blur_p",
            "solarize_p",
            "noise_p",
            "cutout_p",
        ):
            put(self, f, _prob(getattr(self, f), f))
        for f in ("degrees", "shear", "brightness", "contrast", "saturation"):
            put(self, f, _nonneg(getattr(self, f), f))
        if self.shear >= 90:
            raise ValueError(f"shear must be an angle in [0, 90) degrees; got {self.shear!r}")
        tx, ty = ops._pair(self.translate, "translate")
        if not (0 <= tx <= 1 and 0 <= ty <= 1):
            raise ValueError(
                f"translate must be two fractions (x, y) in [0, 1]; got {self.translate!r}"
            )
        put(self, "translate", (tx, ty))
        put(
            self,
            "affine_scale",
            ops._range(self.affine_scale, "affine_scale", low=0.0, strict_low=True),
        )
        check_choice(self.padding_mode, "padding_mode", ops.PADDING_MODES)
        hue = ops._number(self.hue, "hue")
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5] (a fraction of a full turn); got {hue!r}")
        put(self, "hue", hue)
        check_choice(self.jitter_order, "jitter_order", ops.JITTER_ORDERS)
        put(self, "blur_sigma", ops._range(self.blur_sigma, "blur_sigma", low=0.0, strict_low=True))
        k = self.blur_kernel_size
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1 or k % 2 == 0):
            raise ValueError(f"blur_kernel_size must be an odd positive int or None; got {k!r}")
        put(self, "solarize_threshold", _prob(self.solarize_threshold, "solarize_threshold"))
        put(self, "noise_std", ops._range(self.noise_std, "noise_std", low=0.0))
        put(
            self,
            "cutout_scale",
            ops._range(self.cutout_scale, "cutout_scale", low=0.0, high=1.0, strict_low=True),
        )
        put(
            self,
            "cutout_ratio",
            ops._range(self.cutout_ratio, "cutout_ratio", low=0.0, strict_low=True),
        )
        put(self, "cutout_value", _prob(self.cutout_value, "cutout_value"))

    @classmethod
    def identity(cls, **overrides: object) -> ViewConfig:
        """A config with every step disabled (the pipeline returns its input), plus overrides."""
        base: dict[str, object] = dict(
            crop_scale=None,
            hflip_p=0.0,
            vflip_p=0.0,
            degrees=0.0,
            translate=(0.0, 0.0),
            affine_scale=(1.0, 1.0),
            shear=0.0,
            jitter_p=0.0,
            grayscale_p=0.0,
            blur_p=0.0,
            solarize_p=0.0,
            noise_p=0.0,
            cutout_p=0.0,
            name="identity",
        )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]

    @property
    def uses_affine(self) -> bool:
        """Whether rotation, translation, zoom or shear is enabled."""
        return (
            self.degrees > 0
            or self.translate != (0.0, 0.0)
            or self.affine_scale != (1.0, 1.0)
            or self.shear > 0
        )

    @property
    def uses_geometry(self) -> bool:
        """Whether the affine warp runs at all (crop, flips or affine enabled)."""
        return (
            self.crop_scale is not None or self.hflip_p > 0 or self.vflip_p > 0 or self.uses_affine
        )


class ViewAugment(nn.Module):
    """Batched view generator: a whole image batch in one call, per-sample random parameters.

    Input is ``(B, C, H, W)`` with values in [0, 1], float32/float64/float16/bfloat16, on any
    device; half-precision input is computed in float32 and returned in its own dtype. Randomness
    comes from ``generator`` (a ``torch.Generator``, which may live on the CPU while the images are
    on a GPU) or, when it is ``None``, from torch's global generator. The same seed on the same
    device gives the same views. The module has no parameters or buffers; it is a ``nn.Module`` so
    it can sit in a model or be moved with it.

    Example:
        >>> aug = ViewAugment(preset("fashion-mnist", channels=1, image_size=28))
        >>> g = torch.Generator().manual_seed(0)
        >>> v = aug.views(torch.rand(8, 1, 28, 28), 2, generator=g)  # (8, 2, 1, 28, 28)

    Args:
        config: The pipeline parameters; ``None`` uses ``ViewConfig()`` (SimCLR).
    """

    def __init__(self, config: ViewConfig | None = None) -> None:
        super().__init__()
        if config is None:
            config = ViewConfig()
        if not isinstance(config, ViewConfig):
            raise TypeError(f"config must be a ViewConfig, got {type(config).__name__}")
        self.config = config

    @classmethod
    def from_preset(cls, name: str, *, channels: int, image_size: int) -> ViewAugment:
        """Build from a named preset (see :func:`preset`)."""
        return cls(preset(name, channels=channels, image_size=image_size))

    def extra_repr(self) -> str:
        """Show the config in ``repr``."""
        return repr(self.config)

    def forward(self, images: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One augmented view of each image.

        Args:
            images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
            generator: Source of randomness (``None``: torch's global generator).

        Returns:
            Tensor of shape ``(B, C, H, W)``, same dtype and device as ``images``.
        """
        ops.check_images(images)
        return self._augment(ops._work(images), generator).to(images.dtype)

    def views(
        self,
        images: Tensor,
        n_views: int,
        *,
        generator: torch.Generator | None = None,
        size: int | tuple[int, int] | None = None,
    ) -> Tensor:
        """``n_views`` independently augmented views of each image, all in one pass.

        Args:
            images: Batch of shape ``(B, C, H, W)``, values in [0, 1].
            n_views: Number of views V >= 1.
            generator: Source of randomness (``None``: torch's global generator).
            size: Output side ``S`` or ``(H_out, W_out)``; the resize happens in the geometric
                warp (bilinear, no antialiasing), so a crop is read once at its output size.
                ``None`` keeps the input size. Used by
                :class:`~contrastkit.views.multicrop.MultiCrop`.

        Returns:
            Tensor of shape ``(B, V, C, H_out, W_out)``, same dtype and device as ``images``;
            ``out[:, v]`` is the v-th view of every image.
        """
        ops.check_images(images)
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ValueError(f"n_views must be an int >= 1; got {n_views!r}")
        out_size = check_size(size, "size") if size is not None else None
        b, c, h, w = images.shape
        x = ops._work(images).unsqueeze(1).expand(b, n_views, c, h, w).reshape(b * n_views, c, h, w)
        out = self._augment(x, generator, out_size)
        return out.view(b, n_views, c, *out.shape[-2:]).to(images.dtype)

    def _augment(
        self, x: Tensor, g: torch.Generator | None, out_size: tuple[int, int] | None = None
    ) -> Tensor:
        """Augment a batch; ``out_size`` resizes the output in the geometric warp (multi-crop)."""
        cfg = self.config
        n, _, h, w = x.shape
        dev = x.device
        resize = out_size is not None and tuple(out_size) != (h, w)
        if not cfg.uses_geometry and resize:
            x = ops._apply_affine(x, ops._eye(n, dev), cfg.padding_mode, out_size)
        if cfg.uses_geometry:
            theta: Tensor | None = None
            if cfg.crop_scale is not None:
                theta = ops.crop_matrix(
                    n,
                    height=h,
                    width=w,
                    scale=cfg.crop_scale,
                    ratio=cfg.crop_ratio,
                    generator=g,
                    device=dev,
                )
            for p, vertical in ((cfg.hflip_p, False), (cfg.vflip_p, True)):
                if p > 0:
                    m = ops.flip_matrix(n, p=p, vertical=vertical, generator=g, device=dev)
                    theta = m if theta is None else theta @ m
            if cfg.uses_affine:
                m = ops.affine_matrix(
                    n,
                    height=h,
                    width=w,
                    degrees=cfg.degrees,
                    translate=cfg.translate,
                    scale=cfg.affine_scale,
                    shear=cfg.shear,
                    generator=g,
                    device=dev,
                )
                theta = m if theta is None else theta @ m
            assert theta is not None
            x = ops._apply_affine(x, theta, cfg.padding_mode, out_size)
        h, w = x.shape[-2:]
        x = ops._color_jitter(
            x,
            g,
            brightness=cfg.brightness,
            contrast=cfg.contrast,
            saturation=cfg.saturation,
            hue=cfg.hue,
            p=cfg.jitter_p,
            order=cfg.jitter_order,
        )
        x = ops._grayscale(x, cfg.grayscale_p, g)
        if cfg.blur_p > 0:
            k = cfg.blur_kernel_size or ops.blur_kernel_size(h, w)
            x = ops._gaussian_blur(x, cfg.blur_sigma, cfg.blur_p, k, g)
        x = ops._solarize(x, cfg.solarize_threshold, cfg.solarize_p, g)
        x = ops._gaussian_noise(x, cfg.noise_std, cfg.noise_p, g)
        x = ops._cutout(x, cfg.cutout_p, cfg.cutout_scale, cfg.cutout_ratio, cfg.cutout_value, g)
        return x


# --------------------------------------------------------------------------------------------------
# presets


def _simclr(channels: int, image_size: int) -> ViewConfig:
    # SimCLR (Chen et al., 2020), appendix A: crop (0.08, 1), flip 0.5, colour jitter (0.8 * s with
    # s = 0.5 -> 0.4, 0.4, 0.4, 0.1) with p = 0.8, grayscale 0.2, blur p = 0.5, sigma (0.1, 2.0),
    # kernel 10% of the image side. The paper's ImageNet strength is s = 1 (0.8, 0.8, 0.8, 0.2):
    # with_color_strength(preset("simclr", ...), 1.0).
    return ViewConfig(name="simclr")


def _cifar(channels: int, image_size: int) -> ViewConfig:
    # SimCLR's CIFAR-10 setting: the same pipeline without blur.
    return ViewConfig(blur_p=0.0, name="cifar")


def _digits(channels: int, image_size: int) -> ViewConfig:
    # 8x8 digits: mild crops, no flips (a mirrored 2 is not a 2), small rotation and shift,
    # intensity jitter and light noise; no blur (an 8x8 image has nothing left to blur away).
    return ViewConfig(
        crop_scale=(0.6, 1.0),
        crop_ratio=(0.8, 1.25),
        hflip_p=0.0,
        degrees=10.0,
        translate=(0.1, 0.1),
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        grayscale_p=0.0,
        blur_p=0.0,
        noise_p=0.5,
        noise_std=(0.0, 0.05),
        name="digits",
    )


def _fashion_mnist(channels: int, image_size: int) -> ViewConfig:
    # 28x28 grayscale clothing: crops (0.3, 1), left-right flips are label-preserving, intensity
    # jitter, blur half of the time (3x3 kernel at 28 px), light noise.
    return ViewConfig(
        crop_scale=(0.3, 1.0),
        hflip_p=0.5,
        jitter_p=0.8,
        brightness=0.4,
        contrast=0.4,
        saturation=0.0,
        hue=0.0,
        grayscale_p=0.0,
        blur_p=0.5,
        blur_sigma=(0.1, 1.0),
        noise_p=0.5,
        noise_std=(0.0, 0.05),
        name="fashion-mnist",
    )


_BUILDERS = {
    "digits": _digits,
    "fashion-mnist": _fashion_mnist,
    "simclr": _simclr,
    "cifar": _cifar,
}
PRESETS: tuple[str, ...] = tuple(_BUILDERS)


def with_color_strength(config: ViewConfig, strength: float) -> ViewConfig:
    """``config`` with SimCLR's colour-jitter strength ``s``: (0.8 s, 0.8 s, 0.8 s, 0.2 s).

    SimCLR (Chen et al., 2020, appendix A) parameterises colour jitter by one strength ``s``:
    brightness, contrast and saturation ``0.8 s`` and hue ``0.2 s``. Its ImageNet default is
    ``s = 1`` (0.8, 0.8, 0.8, 0.2), which ScatSimCLR uses too (docs/methods.md, section 3.9); its CIFAR-10
    experiments use ``s = 0.5`` (0.4, 0.4, 0.4, 0.1), the strength of the ``"simclr"`` and
    ``"cifar"`` presets. Saturation and hue stay 0 where ``config`` has them at 0 (non-RGB
    presets).

    Args:
        config: The config to modify.
        strength: ``s`` in [0, 2.5] (the hue shift ``0.2 s`` must stay <= 0.5).

    Returns:
        A new frozen config.
    """
    s = ops._number(strength, "strength")
    if not 0.0 <= s <= 2.5:
        raise ValueError(f"strength must lie in [0, 2.5] (hue = 0.2 * strength <= 0.5); got {s!r}")
    return dataclasses.replace(
        config,
        brightness=0.8 * s,
        contrast=0.8 * s,
        saturation=0.8 * s if config.saturation > 0 else 0.0,
        hue=0.2 * s if config.hue > 0 else 0.0,
    )


def check_size(size: object, name: str = "size") -> tuple[int, int]:
    """Validate an image size given as one positive int or a pair ``(height, width)``."""
    pair = (size, size) if isinstance(size, int) and not isinstance(size, bool) else size
    if (
        not isinstance(pair, tuple | list)
        or len(pair) != 2
        or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in pair)
    ):
        raise ValueError(
            f"{name} must be a positive int or a pair (height, width) of them; got {size!r}"
        )
    return int(pair[0]), int(pair[1])


def _adapt(cfg: ViewConfig, channels: int) -> ViewConfig:
    """Turn off the colour-only steps for images that are not RGB."""
    if channels == 3:
        return cfg
    return dataclasses.replace(cfg, saturation=0.0, hue=0.0, grayscale_p=0.0)


def _check_shape_args(channels: int, image_size: int) -> None:
    for name, v in (("channels", channels), ("image_size", image_size)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name} must be a positive int; got {v!r}")


def preset(name: str, *, channels: int, image_size: int) -> ViewConfig:
    """A named augmentation preset.

    ``"digits"`` (8x8 grayscale digits), ``"fashion-mnist"`` (28x28 grayscale), ``"simclr"``
    (SimCLR's RGB pipeline) and ``"cifar"`` (SimCLR without blur). For images that do not have 3
    channels the colour-only steps (saturation, hue, grayscale) are turned off.

    Args:
        name: Preset name (case-insensitive; ``_`` and ``-`` are equivalent).
        channels: Number of image channels.
        image_size: Image side in pixels (the blur kernel is derived from the actual input size).

    Returns:
        The frozen config.

    Raises:
        ValueError: For an unknown name (the message lists the known ones) or bad sizes.
    """
    _check_shape_args(channels, image_size)
    key = str(name).strip().lower().replace("_", "-")
    if key not in _BUILDERS:
        raise ValueError(f"unknown view preset {name!r}; known presets: {', '.join(PRESETS)}")
    return _adapt(_BUILDERS[key](channels, image_size), channels)


_DATASET_ALIASES = {
    "digits": "digits",
    "loaddigits": "digits",
    "sklearndigits": "digits",
    "fashionmnist": "fashion-mnist",
    "fmnist": "fashion-mnist",
    "cifar": "cifar",
    "cifar10": "cifar",
    "cifar100": "cifar",
    "cifar10020": "cifar",
    "svhn": "cifar",
    "stl10": "simclr",
    "imagenet": "simclr",
    "imagenette": "simclr",
    "imagenet100": "simclr",
    "tinyimagenet": "simclr",
    "simclr": "simclr",
}
# Handwritten characters: like Fashion-MNIST but never flipped.
_CHARACTER_SETS = {"mnist", "emnist", "kmnist", "qmnist", "usps"}


def _dataset_key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", str(name).strip().lower())


def augment_names() -> list[str]:
    """The names ``augment`` (``--augment``) accepts: the presets, then the datasets with one.

    Example:
        >>> augment_names()[:4]
        ['cifar', 'digits', 'fashion-mnist', 'simclr']
    """
    datasets = {k for k in _DATASET_ALIASES if _dataset_key(k) not in map(_dataset_key, PRESETS)}
    return sorted(PRESETS) + sorted(datasets | _CHARACTER_SETS)


def check_augment(name: object) -> str:
    """Check that ``name`` names a view preset or a dataset that has one; return it.

    Unknown names are refused instead of falling back to the generic pipeline that
    :func:`preset_for_dataset` picks for unknown *datasets*: a misspelt preset would otherwise
    train silently with other views than asked for.

    Args:
        name: A preset (:data:`PRESETS`) or a dataset name (case, ``-``, ``_`` and spaces
            ignored).

    Returns:
        ``name`` unchanged.

    Raises:
        TypeError: ``name`` is not a str.
        ValueError: An unknown name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise TypeError(f"augment must be a str naming a view preset, got {type(name).__name__}")
    key = _dataset_key(name)
    if key in _DATASET_ALIASES or key in _CHARACTER_SETS or key in map(_dataset_key, PRESETS):
        return name
    names = augment_names()
    raise ValueError(
        f"augment: unknown view preset {name!r}; the presets are {', '.join(PRESETS)}, and "
        f"datasets name theirs ({', '.join(names[len(PRESETS) :])})"
    )


def preset_for_dataset(dataset_name: str, channels: int, image_size: int) -> ViewConfig:
    """The preset suited to a dataset, with a sensible generic fallback for unknown names.

    Known names (case, ``-``, ``_`` and spaces ignored): digits, fashion-mnist, cifar10/100, svhn,
    stl10, imagenet(te), and the handwritten sets mnist/emnist/kmnist/qmnist/usps (the Fashion-MNIST
    pipeline without flips). Anything else (a folder, an ``.npz`` path, ...) gets a generic config
    chosen from the image shape: images of 16 px or less get the digits pipeline (no flips, no
    blur); other RGB images get the CIFAR pipeline below 64 px and SimCLR's from 64 px; other
    channel counts get the Fashion-MNIST pipeline.

    Args:
        dataset_name: Dataset name or path.
        channels: Number of image channels.
        image_size: Image side in pixels.

    Returns:
        The frozen config; its ``name`` says which pipeline was chosen.
    """
    _check_shape_args(channels, image_size)
    key = re.sub(r"[\s_\-]", "", str(dataset_name).strip().lower())
    if key in _DATASET_ALIASES:
        return preset(_DATASET_ALIASES[key], channels=channels, image_size=image_size)
    if key in _CHARACTER_SETS:
        cfg = preset("fashion-mnist", channels=channels, image_size=image_size)
        return dataclasses.replace(cfg, hflip_p=0.0, degrees=10.0, name=f"{key} (no flip)")
    if image_size <= 16:
        base = "digits"
    elif channels == 3:
        base = "cifar" if image_size < 64 else "simclr"
    else:
        base = "fashion-mnist"
    cfg = preset(base, channels=channels, image_size=image_size)
    return dataclasses.replace(cfg, name=f"generic ({base})")
