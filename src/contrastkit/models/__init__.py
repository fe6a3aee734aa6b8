"""Encoders, projection heads and their wrapper."""

from contrastkit.models.cnn import SmallCNN, count_parameters
from contrastkit.models.heads import ContrastiveModel, MLPHead

__all__ = ["ContrastiveModel", "MLPHead", "SmallCNN", "count_parameters"]
