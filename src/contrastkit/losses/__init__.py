"""Contrastive objectives, all over one exact, blockwise log-sum-exp engine (``_engine``)."""

from contrastkit.losses.clip import CLIPLoss
from contrastkit.losses.decoupled import DCL, DCLW
from contrastkit.losses.infonce import InfoNCE
from contrastkit.losses.registry import LossInfo, get_loss, loss_info, loss_names, register_loss
from contrastkit.losses.supcon import SupCon

NTXent = InfoNCE

__all__ = [
    "DCL",
    "DCLW",
    "CLIPLoss",
    "InfoNCE",
    "LossInfo",
    "NTXent",
    "SupCon",
    "get_loss",
    "loss_info",
    "loss_names",
    "register_loss",
]
