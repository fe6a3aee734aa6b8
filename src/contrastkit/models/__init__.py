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
from contrastkit.models.registry import ENCODERS, build_encoder, encoder_names
from contrastkit.models.resnet import BasicBlock, ResNet, resnet18, resnet34
from contrastkit.models.scatnet import ScatNetEncoder, Scattering2D

__all__ = [
    "ENCODERS",
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
    "build_encoder",
    "count_parameters",
    "encoder_names",
    "libauc_head",
    "resnet18",
    "resnet34",
]
