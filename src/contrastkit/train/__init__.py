"""Training: the loop, its configuration, optimizers and checkpoints."""

from contrastkit.train.config import FitConfig
from contrastkit.train.loop import FitResult, build_model, evaluate_encoder, fit, load_run

__all__ = ["FitConfig", "FitResult", "build_model", "evaluate_encoder", "fit", "load_run"]
