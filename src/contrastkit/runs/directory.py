"""What a run directory is: its file names, the model weights' header, and reading a run back.

A run directory of ``contrastkit fit`` holds:

- ``config.json``: the :class:`~contrastkit.runs.config.FitConfig` (:data:`CONFIG_FILE`);
- ``steps.jsonl`` / ``epochs.jsonl``: one JSON line per optimizer step / per epoch
  (:data:`STEP_LOG`, :data:`EPOCH_LOG`);
- ``checkpoints/``: the training state, for resuming (:data:`CHECKPOINT_DIR`);
- ``model.safetensors``: the encoder and head weights, with the input shape in the header
  (:data:`WEIGHTS_FILE`, :func:`weights_header`);
- ``metrics.json``: the final evaluation and run statistics (:data:`METRICS_FILE`).

A two-tower run (``config.two_tower``: image-text or any two modalities) writes the same files; its
``model.safetensors`` holds both towers and their projections, and its header says what each side
is (``model: two-tower``, ``kind_a``/``shape_a``, ``kind_b``/``shape_b``, ``dim``; see
:func:`two_tower_header`); a text tower's tokenizer is its own JSON file, ``tokenizer.json``
(:data:`TOKENIZER_FILE`). :func:`load_two_tower_run` reads it back.

Training writes it; :func:`load_run` rebuilds the configuration and the model for evaluation,
reports and embedding export, without executing any pickled code.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor

from contrastkit.models import (
    ContrastiveModel,
    MLPHead,
    TextTokenizer,
    TwoTowerModel,
    build_encoder,
    build_tower,
)
from contrastkit.runs.config import TOKENIZER_KWARGS, FitConfig, config_from_mapping
from contrastkit.runs.weights import (
    CheckpointError,
    check_state_shapes,
    load_weights,
    read_json,
    weights_metadata,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "EPOCH_LOG",
    "METRICS_FILE",
    "STEP_LOG",
    "TOKENIZER_FILE",
    "WEIGHTS_FILE",
    "WEIGHTS_FORMAT",
    "build_model",
    "build_two_tower",
    "is_two_tower_run",
    "load_run",
    "load_two_tower_run",
    "read_config",
    "two_tower_header",
    "weights_header",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
STEP_LOG = "steps.jsonl"
EPOCH_LOG = "epochs.jsonl"
#: A two-tower run's tokenizer (Hugging Face ``tokenizers`` JSON).
TOKENIZER_FILE = "tokenizer.json"
#: The ``model`` entry of a two-tower run's weights header.
TWO_TOWER_MODEL = "two-tower"
#: The ``format`` entry of a run's weights header.
WEIGHTS_FORMAT = "contrastkit/1"
# SmallCNN's first convolution, whose weight gives the input channels of runs saved before the
# header held the input shape.
_LEGACY_FIRST_CONV = "encoder.features.0.0.weight"
#: The largest input shape a weights header may give (channels, image side): the header is read
#: before the model is built, so its numbers are bounded before they size anything.
MAX_HEADER_CHANNELS = 1024
MAX_HEADER_IMAGE_SIZE = 8192


def weights_header(
    *, in_channels: int | None = None, image_size: int | None = None, **extra: str
) -> dict[str, str]:
    """The safetensors header of a run's ``model.safetensors``.

    Args:
        in_channels: Channels of the training images (needed to rebuild the encoder).
        image_size: Side of the square training images (needed by fixed-shape encoders).
        **extra: Further string entries (e.g. ``strategy="mcl"``).

    Returns:
        String metadata: ``format`` and the given entries.

    Example:
        >>> weights_header(in_channels=1, image_size=8)
        {'format': 'contrastkit/1', 'in_channels': '1', 'image_size': '8'}
    """
    header = {"format": WEIGHTS_FORMAT}
    if in_channels:
        header["in_channels"] = str(int(in_channels))
    if image_size:
        header["image_size"] = str(int(image_size))
    header.update({str(k): str(v) for k, v in extra.items()})
    return header


def build_model(
    config: FitConfig, in_channels: int, image_size: int | None = None
) -> ContrastiveModel:
    """The encoder and projection head a config describes.

    Args:
        config: The run's configuration (encoder, its arguments, head sizes).
        in_channels: Channels of the input images.
        image_size: Side of the square input images; needed by encoders with a fixed input shape
            (``scatnet``).

    Returns:
        The untrained model.
    """
    kwargs = dict(config.encoder_kwargs)
    if config.encoder == "smallcnn":
        kwargs.update(
            widths=config.encoder_widths,
            strides=config.encoder_strides,
            pool_size=config.encoder_pool,
        )
    encoder = build_encoder(
        config.encoder, in_channels=in_channels, image_size=image_size, **kwargs
    )
    out_dim = int(encoder.out_dim)  # type: ignore[arg-type]
    head = MLPHead(out_dim, hidden_dim=config.head_hidden_dim, out_dim=config.head_out_dim)
    return ContrastiveModel(encoder, head)


def read_config(run_dir: str | os.PathLike[str]) -> FitConfig:
    """The validated configuration of the run in ``run_dir`` (its ``config.json``).

    Raises:
        FileNotFoundError: If ``run_dir`` has no ``config.json``.
        ValueError: If the file does not hold a valid configuration.
    """
    path = Path(run_dir)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a contrastkit run directory: {cfg_path} is missing")
    return config_from_mapping(read_json(cfg_path), source=str(cfg_path))


def _header_int(header: Mapping[str, str], key: str, limit: int, path: Path) -> int | None:
    """The header entry ``key`` as an int in ``[1, limit]`` (None when absent)."""
    if key not in header:
        return None
    text = str(header[key])
    value = int(text) if text.isascii() and text.isdigit() and len(text) <= 9 else 0
    if not 1 <= value <= limit:
        raise CheckpointError(
            f"{path}: header entry {key!r} must be an integer in [1, {limit}], got {text[:40]!r}"
        )
    return value


def _input_shape(weights_path: Path, first_conv: object) -> tuple[int, int | None]:
    """``(in_channels, image_size)`` from the weights header, or from SmallCNN's first layer."""
    header = weights_metadata(weights_path)
    in_channels = _header_int(header, "in_channels", MAX_HEADER_CHANNELS, weights_path)
    if in_channels is not None:
        image_size = _header_int(header, "image_size", MAX_HEADER_IMAGE_SIZE, weights_path)
        return in_channels, image_size
    shape = getattr(first_conv, "shape", None)
    if shape is None:  # runs saved before the header held the input shape: SmallCNN only
        raise ValueError(
            f"{weights_path} has no input shape in its header and does not hold a "
            "contrastkit SmallCNN encoder"
        )
    return int(shape[1]), None


def _checked_model(
    config: FitConfig,
    weights: Mapping[str, Tensor],
    shape: tuple[int, int | None],
    weights_path: Path,
    config_path: Path,
) -> ContrastiveModel:
    """The model of ``config``, built only once its shapes are known to match ``weights``.

    The model is first laid out on the ``meta`` device (no memory), so that a ``config.json``
    or header that does not match the stored tensors (or asks for huge layers) is refused
    before anything is allocated.
    """
    in_channels, image_size = shape
    with torch.device("meta"):
        skeleton = build_model(config, in_channels, image_size)
    check_state_shapes(
        skeleton.state_dict(),
        weights,
        what=f"the weights in {weights_path} (header in_channels={in_channels}, "
        f"image_size={image_size}) and the configuration in {config_path}",
    )
    return build_model(config, in_channels, image_size)


def load_run(run_dir: str | os.PathLike[str]) -> tuple[FitConfig, ContrastiveModel]:
    """Rebuild a run's configuration and trained model from its directory.

    Only JSON and safetensors are read: no pickled code is executed.

    Args:
        run_dir: A run directory written by ``contrastkit fit``.

    Returns:
        ``(config, model)``, the model on the CPU with the trained weights.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory.
        CheckpointError: If the weights are missing or damaged, their header's input shape is out
            of range, or their tensors do not match the model the configuration describes
            (checked before the model is allocated).
        ValueError: If the configuration is damaged or invalid.
    """
    path = Path(run_dir)
    config = read_config(path)
    if config.two_tower:
        raise ValueError(
            f"{path} holds a two-tower run (loss {config.loss!r}); read it with "
            "contrastkit.runs.load_two_tower_run"
        )
    weights_path = path / WEIGHTS_FILE
    weights = load_weights(weights_path)
    shape = _input_shape(weights_path, weights.get(_LEGACY_FIRST_CONV))
    model = _checked_model(config, weights, shape, weights_path, path / CONFIG_FILE)
    model.load_state_dict(weights)
    return config, model


# --------------------------------------------------------------------------------------------------
# two-tower runs


def _image_encoder_kwargs(config: FitConfig) -> dict[str, object]:
    kwargs = dict(config.encoder_kwargs)
    if config.encoder == "smallcnn":
        kwargs.update(
            widths=config.encoder_widths,
            strides=config.encoder_strides,
            pool_size=config.encoder_pool,
        )
    return kwargs


def build_two_tower(
    config: FitConfig,
    kinds: tuple[str, str],
    shapes: tuple[tuple[int, ...], tuple[int, ...]],
    tokenizer: TextTokenizer | None = None,
) -> TwoTowerModel:
    """The untrained two-tower model a config describes for data of ``kinds`` and ``shapes``.

    Image sides get the config's ``encoder`` (with ``encoder_kwargs``), series the 1-D CNN,
    vectors the MLP, texts the text transformer of ``text_kwargs`` over ``tokenizer``; both are
    projected linearly to ``head_out_dim``. CLIP-rocket (``loss: cliprocket``) gets the extra
    projections of its augmented views.

    Args:
        config: The run's configuration.
        kinds: The modality kind of side A and of side B.
        shapes: One sample's shape on each side (``()`` for text).
        tokenizer: The tokenizer of the text side(s).
    """
    text_kwargs = {k: v for k, v in config.text_kwargs.items() if k not in TOKENIZER_KWARGS}
    towers = [
        build_tower(
            kind,
            shape=shape,
            tokenizer=tokenizer,
            encoder=config.encoder,
            encoder_kwargs=_image_encoder_kwargs(config),
            text_kwargs=text_kwargs,
        )
        for kind, shape in zip(kinds, shapes, strict=True)
    ]
    return TwoTowerModel(
        towers[0],
        towers[1],
        dim=config.head_out_dim,
        kinds=(kinds[0], kinds[1]),
        local_projections=config.loss == "cliprocket",
    )


def _shape_text(shape: tuple[int, ...]) -> str:
    return ",".join(str(int(d)) for d in shape)


def two_tower_header(
    model: TwoTowerModel, shapes: tuple[tuple[int, ...], tuple[int, ...]]
) -> dict[str, str]:
    """The safetensors header of a two-tower run's ``model.safetensors``.

    Example:
        >>> from contrastkit.models import build_tower
        >>> model = TwoTowerModel(build_tower("vector", shape=(3,)),
        ...                       build_tower("series", shape=(2, 16)), kinds=("vector", "series"))
        >>> two_tower_header(model, ((3,), (2, 16)))["shape_b"]
        '2,16'
    """
    return weights_header(
        model=TWO_TOWER_MODEL,
        kind_a=model.kinds[0],
        shape_a=_shape_text(shapes[0]),
        kind_b=model.kinds[1],
        shape_b=_shape_text(shapes[1]),
        dim=str(model.dim),
        tokenizer=TOKENIZER_FILE if model.tokenizer is not None else "",
    )


def is_two_tower_run(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` holds a two-tower run (by its configuration)."""
    return read_config(run_dir).two_tower


#: The kinds of tower a two-tower header may name (:func:`contrastkit.data.paired.modality_kind`).
TOWER_KINDS = frozenset({"image", "series", "vector", "text"})

#: Bounds on a two-tower header's sample shapes (checked before any tower is built).
MAX_HEADER_DIMS = 4
MAX_HEADER_SIDE = 65536
MAX_HEADER_SAMPLE_SIZE = 2**26


def _parse_shape(text: object, where: str) -> tuple[int, ...]:
    """A sample shape from the header (``"3,32,32"``; ``""`` for text), within sane bounds."""
    if not isinstance(text, str) or len(text) > 64:
        raise ValueError(f"{where}: bad shape {text!r} in the weights header")
    try:
        shape = tuple(int(d) for d in text.split(",")) if text else ()
    except ValueError as exc:
        raise ValueError(f"{where}: bad shape {text!r} in the weights header") from exc
    if (
        len(shape) > MAX_HEADER_DIMS
        or any(not 1 <= d <= MAX_HEADER_SIDE for d in shape)
        or math.prod(shape) > MAX_HEADER_SAMPLE_SIZE
    ):
        raise ValueError(
            f"{where}: the weights header's sample shape {shape} is out of range (at most "
            f"{MAX_HEADER_DIMS} dims of 1..{MAX_HEADER_SIDE}, {MAX_HEADER_SAMPLE_SIZE} values)"
        )
    return shape


def load_two_tower_run(run_dir: str | os.PathLike[str]) -> tuple[FitConfig, TwoTowerModel]:
    """Rebuild a two-tower run's configuration and trained model from its directory.

    The towers are rebuilt from ``config.json`` and the header of ``model.safetensors``, a text
    tower's tokenizer from ``tokenizer.json``; only JSON and safetensors are read (no pickle).

    Args:
        run_dir: A run directory written by a two-tower ``contrastkit fit``.

    Returns:
        ``(config, model)``, the model on the CPU with the trained weights.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory or lacks its tokenizer.
        CheckpointError: If the weights are missing or damaged.
        ValueError: If the run is not a two-tower run or the weights do not fit its config.
    """
    path = Path(run_dir)
    config = read_config(path)
    if not config.two_tower:
        raise ValueError(f"{path} is not a two-tower run; read it with contrastkit.runs.load_run")
    weights_path = path / WEIGHTS_FILE
    weights = load_weights(weights_path)
    header = weights_metadata(weights_path)
    if header.get("model") != TWO_TOWER_MODEL:
        raise ValueError(f"{weights_path} does not hold a two-tower model (header {header})")
    kind_a, kind_b = header.get("kind_a", ""), header.get("kind_b", "")
    if kind_a not in TOWER_KINDS or kind_b not in TOWER_KINDS:
        raise ValueError(
            f"{weights_path}: the weights header's tower kinds {(kind_a, kind_b)} are not among "
            f"{sorted(TOWER_KINDS)}"
        )
    kinds = (kind_a, kind_b)
    shapes = (
        _parse_shape(header.get("shape_a", ""), str(weights_path)),
        _parse_shape(header.get("shape_b", ""), str(weights_path)),
    )
    tokenizer = None
    if "text" in kinds:
        tokenizer = TextTokenizer.from_file(path / (header.get("tokenizer") or TOKENIZER_FILE))
    model = build_two_tower(config, kinds, shapes, tokenizer)
    model.load_state_dict(weights)
    return config, model
