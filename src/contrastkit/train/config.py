"""The configuration of one training run: :class:`FitConfig`, defined in :mod:`contrastkit.runs`.

Re-exported here because training is where a configuration is used; evaluation and reports read it
back from a run directory through :mod:`contrastkit.runs`, below this package.
"""

from contrastkit.runs.config import (
    FitConfig,
    check_value_type,
    config_from_mapping,
    config_keys,
    default_out_dir,
)

__all__ = ["FitConfig", "check_value_type", "config_from_mapping", "config_keys", "default_out_dir"]
