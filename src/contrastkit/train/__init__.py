"""Training: the loop, its configuration, recipes, optimizers, checkpoints and resume."""

from contrastkit.train import moco  # registers the moco_v2 and mochi objectives
from contrastkit.train.checkpoint import CheckpointError, CheckpointManager, CheckpointWarning
from contrastkit.train.config import FitConfig, config_from_mapping
from contrastkit.train.loop import (
    FitResult,
    build_loss,
    build_model,
    evaluate_encoder,
    fit,
    load_run,
    resume_run,
)
from contrastkit.train.recipes import Recipe, load_recipe, recipe_config, recipe_names

__all__ = [
    "CheckpointError",
    "CheckpointManager",
    "CheckpointWarning",
    "FitConfig",
    "FitResult",
    "Recipe",
    "build_loss",
    "build_model",
    "config_from_mapping",
    "evaluate_encoder",
    "fit",
    "load_recipe",
    "load_run",
    "moco",
    "recipe_config",
    "recipe_names",
    "resume_run",
]
