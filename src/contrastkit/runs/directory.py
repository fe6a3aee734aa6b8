"""What a run directory is: its file names, the model weights' header, and reading a run back.

A run directory of ``contrastkit fit`` holds:

- ``config.json``: the :class:`~contrastkit.runs.config.FitConfig` (:data:`CONFIG_FILE`);
- ``steps.jsonl`` / ``epochs.jsonl``: one JSON line per optimizer step / per epoch
  (:data:`STEP_LOG`, :data:`EPOCH_LOG`);
- ``checkpoints/``: the training state, for resuming (:data:`CHECKPOINT_DIR`);
- ``model.safetensors``: the encoder and head weights, with the input shape in the header
  (:data:`WEIGHTS_FILE`, :func:`weights_header`);
- ``metrics.json``: the final evaluation and run statistics (:data:`METRICS_FILE`).

Training writes it; :func:`load_run` rebuilds the configuration and the model for evaluation,
reports and embedding export, without executing any pickled code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from contrastkit.models import ContrastiveModel, MLPHead, build_encoder
from contrastkit.runs.config import FitConfig, config_from_mapping
from contrastkit.runs.weights import load_weights, weights_metadata

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "EPOCH_LOG",
    "METRICS_FILE",
    "STEP_LOG",
    "WEIGHTS_FILE",
    "WEIGHTS_FORMAT",
    "build_model",
    "load_run",
    "read_config",
    "weights_header",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
CHECKPOINT_DIR = "checkpoints"
STEP_LOG = "steps.jsonl"
EPOCH_LOG = "epochs.jsonl"
#: The ``format`` entry of a run's weights header.
WEIGHTS_FORMAT = "contrastkit/1"
# SmallCNN's first convolution, whose weight gives the input channels of runs saved before the
# header held the input shape.
_LEGACY_FIRST_CONV = "encoder.features.0.0.weight"


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
    return config_from_mapping(json.loads(cfg_path.read_text()), source=str(cfg_path))


def _input_shape(weights_path: Path, first_conv: object) -> tuple[int, int | None]:
    """``(in_channels, image_size)`` from the weights header, or from SmallCNN's first layer."""
    header = weights_metadata(weights_path)
    if "in_channels" in header:
        image_size = int(header["image_size"]) if "image_size" in header else None
        return int(header["in_channels"]), image_size
    shape = getattr(first_conv, "shape", None)
    if shape is None:  # runs saved before the header held the input shape: SmallCNN only
        raise ValueError(
            f"{weights_path} has no input shape in its header and does not hold a "
            "contrastkit SmallCNN encoder"
        )
    return int(shape[1]), None


def load_run(run_dir: str | os.PathLike[str]) -> tuple[FitConfig, ContrastiveModel]:
    """Rebuild a run's configuration and trained model from its directory.

    Only JSON and safetensors are read: no pickled code is executed.

    Args:
        run_dir: A run directory written by ``contrastkit fit``.

    Returns:
        ``(config, model)``, the model on the CPU with the trained weights.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory.
        CheckpointError: If the weights are missing or damaged.
        ValueError: If the configuration is invalid or the weights do not fit it.
    """
    path = Path(run_dir)
    config = read_config(path)
    weights_path = path / WEIGHTS_FILE
    weights = load_weights(weights_path)
    in_channels, image_size = _input_shape(weights_path, weights.get(_LEGACY_FIRST_CONV))
    model = build_model(config, in_channels, image_size)
    model.load_state_dict(weights)
    return config, model
