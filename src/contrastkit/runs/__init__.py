"""Runs: the configuration of a training run and the directory it writes.

This package sits below training and evaluation, which both read and write run directories:

- :class:`FitConfig`, :func:`config_from_mapping`: a run's validated configuration
  (``contrastkit.train`` re-exports them);
- :func:`load_run`, :func:`build_model`: rebuild a finished run's configuration and model;
- :data:`WEIGHTS_FILE`, :data:`CONFIG_FILE`, :data:`METRICS_FILE`, :data:`CHECKPOINT_DIR`,
  :func:`weights_header`: what a run directory holds;
- :func:`save_weights`, :func:`load_weights`, :func:`atomic_write_json`: safetensors and JSON
  files written atomically and read without pickle.

Example:
    >>> from contrastkit.runs import FitConfig, default_out_dir
    >>> config = FitConfig(loss="dcl", epochs=5)
    >>> default_out_dir(config.to_dict())
    'runs/dcl-digits'
"""

from contrastkit.runs.config import (
    FitConfig,
    check_value_type,
    config_from_mapping,
    config_keys,
    default_out_dir,
)
from contrastkit.runs.directory import (
    CHECKPOINT_DIR,
    CONFIG_FILE,
    EPOCH_LOG,
    METRICS_FILE,
    STEP_LOG,
    WEIGHTS_FILE,
    build_model,
    load_run,
    read_config,
    weights_header,
)
from contrastkit.runs.weights import (
    CheckpointError,
    atomic_write_json,
    load_weights,
    save_weights,
    weights_metadata,
)

__all__ = [
    "CHECKPOINT_DIR",
    "CONFIG_FILE",
    "EPOCH_LOG",
    "METRICS_FILE",
    "STEP_LOG",
    "WEIGHTS_FILE",
    "CheckpointError",
    "FitConfig",
    "atomic_write_json",
    "build_model",
    "check_value_type",
    "config_from_mapping",
    "config_keys",
    "default_out_dir",
    "load_run",
    "load_weights",
    "read_config",
    "save_weights",
    "weights_header",
    "weights_metadata",
]
