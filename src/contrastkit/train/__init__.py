"""Training: ``fit`` and its configuration, recipes, checkpoints and resume.

A run's configuration (:class:`FitConfig`) and what its directory holds (:func:`load_run`,
:func:`build_model`) live in :mod:`contrastkit.runs`, below this package, and are re-exported here.

Example:
    >>> from contrastkit.train import FitConfig, recipe_config
    >>> recipe_config("dcl", {"epochs": 3}).temperature
    0.1
    >>> FitConfig(loss="ntxent").temperature is None  # NT-Xent's own default (0.5) applies
    True
"""

from contrastkit.runs import FitConfig, build_model, config_from_mapping, load_run
from contrastkit.train.checkpoint import CheckpointError, CheckpointManager, CheckpointWarning
from contrastkit.train.core import EpochSummary, StepOutput, TrainingCore
from contrastkit.train.custom import train_custom
from contrastkit.train.finetune import FinetuneResult, finetune
from contrastkit.train.loop import FitResult, build_loss, evaluate_encoder, fit, resume_run
from contrastkit.train.recipes import Recipe, load_recipe, recipe_config, recipe_names

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWarning",
    "EpochSummary",
    "FinetuneResult",
    "FitConfig",
    "FitResult",
    "Recipe",
    "StepOutput",
    "TrainingCore",
    "build_loss",
    "build_model",
    "config_from_mapping",
    "evaluate_encoder",
    "finetune",
    "fit",
    "load_recipe",
    "load_run",
    "recipe_config",
    "recipe_names",
    "resume_run",
    "train_custom",
]
