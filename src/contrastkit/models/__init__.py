"""Encoders, projection heads and their wrapper."""

from contrastkit.models.cnn import SmallCNN, count_parameters
from contrastkit.models.conv1d import Conv1dEncoder
from contrastkit.models.heads import (
    ContrastiveModel,
    JigsawHead,
    MLPHead,
    ReweightHead,
    RotationHead,
    libauc_head,
)
from contrastkit.models.mlp import MLPEncoder
from contrastkit.models.resnet import BasicBlock, ResNet, resnet18, resnet34
from contrastkit.models.scatnet import ScatNetEncoder, Scattering2D

__all__ = [
    "BasicBlock",
    "ContrastiveModel",
    "Conv1dEncoder",
    "JigsawHead",
    "MLPEncoder",
    "MLPHead",
    "ResNet",
    "ReweightHead",
    "RotationHead",
    "ScatNetEncoder",
    "Scattering2D",
    "SmallCNN",
    "count_parameters",
    "libauc_head",
    "resnet18",
    "resnet34",
]
