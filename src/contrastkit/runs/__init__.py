"""Runs: the configuration of a training run and the directory it writes.

This package sits below training and evaluation, which both read and write run directories:

- :class:`FitConfig`, :func:`config_from_mapping`: a run's validated configuration
  (``contrastkit.train`` re-exports them);
- :func:`load_run`, :func:`build_model`: rebuild a finished run's configuration and model;
  :func:`load_two_tower_run`, :func:`build_two_tower` for two-tower runs;
- :data:`WEIGHTS_FILE`, :data:`CONFIG_FILE`, :data:`METRICS_FILE`, :data:`CHECKPOINT_DIR`,
  :func:`weights_header`: what a run directory holds;
- :func:`save_weights`, :func:`load_weights`, :func:`atomic_write_json`: safetensors and JSON
  files written atomically and read without pickle; :func:`read_json` reads a run's JSON files
  (a damaged one is a ``ValueError`` naming it).

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
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    build_model,
    build_two_tower,
    is_two_tower_run,
    load_run,
    load_two_tower_run,
    read_config,
    two_tower_header,
    weights_header,
)
from contrastkit.runs.weights import (
    CheckpointError,
    WriteError,
    atomic_write_json,
    load_weights,
    read_json,
    save_weights,
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
    "CheckpointError",
    "FitConfig",
    "WriteError",
    "atomic_write_json",
    "build_model",
    "build_two_tower",
    "check_value_type",
    "config_from_mapping",
    "config_keys",
    "default_out_dir",
    "is_two_tower_run",
    "load_run",
    "load_two_tower_run",
    "load_weights",
    "read_config",
    "read_json",
    "save_weights",
    "two_tower_header",
    "weights_header",
    "weights_metadata",
]
