"""Image encoders by name, so that a recipe can pick one: ``build_encoder("scatnet", ...)``.

Every encoder here maps ``(B, C, H, W)`` images to ``(B, out_dim)`` representations and has an
``out_dim`` attribute. The trainer fills in ``in_channels`` (and ``image_size`` for encoders whose
shape is fixed at construction, such as the scattering network); the rest of a constructor's
keyword arguments come from the recipe's ``encoder_kwargs``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import nn

from contrastkit._validation import check_keyword_arguments, keyword_parameters
from contrastkit.models.cnn import SmallCNN
from contrastkit.models.resnet import resnet18, resnet34
from contrastkit.models.scatnet import ScatNetEncoder

__all__ = ["ENCODERS", "build_encoder", "check_encoder_kwargs", "encoder_names"]

ENCODERS: dict[str, Callable[..., nn.Module]] = {
    "smallcnn": SmallCNN,
    "scatnet": ScatNetEncoder,
    "resnet18": resnet18,
    "resnet34": resnet34,
}

# Arguments the trainer sets from the data; a recipe may not set them.
_FROM_DATA = ("in_channels", "image_size")


def encoder_names() -> list[str]:
    """The registered encoder names, sorted."""
    return sorted(ENCODERS)


def _factory(name: str) -> Callable[..., nn.Module]:
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {', '.join(encoder_names())}")
    return ENCODERS[name]


def check_encoder_kwargs(
    name: str, kwargs: Mapping[str, Any], *, reserved: tuple[str, ...] = ()
) -> None:
    """Check that ``kwargs`` are keyword arguments of encoder ``name``'s constructor.

    ``in_channels`` and ``image_size`` come from the data, and ``reserved`` names are set by other
    configuration keys; setting either is an error that says so.
    """
    factory = _factory(name)
    if not isinstance(kwargs, Mapping):
        raise TypeError(f"encoder_kwargs must be a mapping, got {type(kwargs).__name__}")
    taken = sorted(set(kwargs) & set(_FROM_DATA + reserved))
    if taken:
        raise ValueError(
            f"encoder_kwargs may not set {taken}: in_channels and image_size come from the data"
            + (f", and {list(reserved)} from their own config keys" if reserved else "")
        )
    check_keyword_arguments(
        kwargs,
        factory,
        key="encoder_kwargs",
        owner=f"encoder {name!r}",
        exclude=_FROM_DATA + reserved,
    )


def build_encoder(
    name: str, *, in_channels: int, image_size: int | None = None, **kwargs: Any
) -> nn.Module:
    """Encoder ``name`` for ``in_channels``-channel images of side ``image_size``.

    Args:
        name: One of :func:`encoder_names`: ``smallcnn``, ``scatnet`` (ScatSimCLR's fixed
            scattering transform + trainable adapter), ``resnet18``, ``resnet34`` (CIFAR stem).
        in_channels: Image channels.
        image_size: Image side; required by encoders whose input shape is fixed (``scatnet``).
        **kwargs: Further constructor arguments (checked by :func:`check_encoder_kwargs`).

    Raises:
        ValueError: Unknown name or keyword, or ``image_size`` missing where it is needed.
    """
    check_encoder_kwargs(name, kwargs)
    factory = _factory(name)
    if "image_size" in (keyword_parameters(factory) or ()):
        if image_size is None:
            raise ValueError(f"encoder {name!r} needs image_size (its input shape is fixed)")
        kwargs["image_size"] = image_size
    return factory(in_channels=in_channels, **kwargs)
