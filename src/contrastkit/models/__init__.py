"""Encoders, projection heads, their wrapper, and the momentum encoder and key queue of MoCo.

Encoders map ``(B, C, H, W)`` images (or ``(B, C, T)`` series, ``(B, F)`` rows) to ``(B, out_dim)``
features; :func:`build_encoder` builds an image encoder by name (:func:`encoder_names`).
Building blocks (ResNet's ``BasicBlock``, the pretext heads) stay in their modules.

Example:
    >>> import torch
    >>> from contrastkit.models import ContrastiveModel, MLPHead, build_encoder
    >>> encoder = build_encoder("smallcnn", in_channels=1)
    >>> model = ContrastiveModel(encoder, MLPHead(encoder.out_dim, out_dim=32))
    >>> h, z = model(torch.rand(4, 1, 8, 8))
    >>> z.shape
    torch.Size([4, 32])
"""

from contrastkit.models.autoencoder import DenoisingAutoencoder
from contrastkit.models.cnn import SmallCNN, count_parameters
from contrastkit.models.conv1d import Conv1dEncoder
from contrastkit.models.heads import ContrastiveModel, MLPHead, ReweightHead, libauc_head
from contrastkit.models.mlp import MLPEncoder
from contrastkit.models.momentum import KeyQueue, MomentumEncoder, cosine_momentum
from contrastkit.models.registry import build_encoder, encoder_names
from contrastkit.models.resnet import ResNet, resnet18, resnet34
from contrastkit.models.scatnet import ScatNetEncoder, Scattering2D
from contrastkit.models.text import CaptionTruncatedWarning, TextTokenizer, TextTransformer
from contrastkit.models.two_tower import TwoTowerModel, build_tower
from contrastkit.models.video import VideoEncoder

__all__ = [
    "CaptionTruncatedWarning",
    "ContrastiveModel",
    "Conv1dEncoder",
    "DenoisingAutoencoder",
    "KeyQueue",
    "MLPEncoder",
    "MLPHead",
    "MomentumEncoder",
    "ResNet",
    "ReweightHead",
    "ScatNetEncoder",
    "Scattering2D",
    "SmallCNN",
    "TextTokenizer",
    "TextTransformer",
    "TwoTowerModel",
    "VideoEncoder",
    "build_encoder",
    "build_tower",
    "cosine_momentum",
    "count_parameters",
    "encoder_names",
    "libauc_head",
    "resnet18",
    "resnet34",
]
