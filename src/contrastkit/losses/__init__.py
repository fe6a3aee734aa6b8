"""Contrastive objectives, all over one exact, blockwise log-sum-exp engine (``_engine``)."""

from contrastkit.losses.clip import CLIPLoss
from contrastkit.losses.decoupled import DCL, DCLW
from contrastkit.losses.infonce import HardInfoNCE, InfoNCE
from contrastkit.losses.multiview import DHEL, MVDHEL, AVGInfoNCE, MVInfoNCE, PWEInfoNCE
from contrastkit.losses.registry import LossInfo, get_loss, loss_info, loss_names, register_loss
from contrastkit.losses.supcon import FocalSupCon, MultiLevelSupCon, SupCon
from contrastkit.losses.weights import normalize_weights

NTXent = InfoNCE

__all__ = [
    "DCL",
    "DCLW",
    "DHEL",
    "MVDHEL",
    "AVGInfoNCE",
    "CLIPLoss",
    "FocalSupCon",
    "HardInfoNCE",
    "InfoNCE",
    "LossInfo",
    "MVInfoNCE",
    "MultiLevelSupCon",
    "NTXent",
    "PWEInfoNCE",
    "SupCon",
    "get_loss",
    "loss_info",
    "loss_names",
    "normalize_weights",
    "register_loss",
]
