"""Contrastive objectives, all over one exact, blockwise log-sum-exp engine (``_engine``)."""

from contrastkit.losses.cacr import CACR
from contrastkit.losses.clip import CLIPLoss
from contrastkit.losses.decoupled import DCL, DCLW
from contrastkit.losses.geometry import Alignment, AlignUniform, JointEntropy, KoLeo, Uniformity
from contrastkit.losses.global_ import ISogCLR, ISogCLRBimodal, SogCLR, SogCLRBimodal
from contrastkit.losses.infonce import HardInfoNCE, InfoNCE
from contrastkit.losses.multiview import DHEL, MVDHEL, AVGInfoNCE, MVInfoNCE, PWEInfoNCE
from contrastkit.losses.registry import LossInfo, get_loss, loss_info, loss_names, register_loss
from contrastkit.losses.sorting import GroCo, odd_even_sort
from contrastkit.losses.supcon import FocalSupCon, MultiLevelSupCon, SupCon
from contrastkit.losses.weights import normalize_weights

NTXent = InfoNCE

__all__ = [
    "CACR",
    "DCL",
    "DCLW",
    "DHEL",
    "MVDHEL",
    "AVGInfoNCE",
    "AlignUniform",
    "Alignment",
    "CLIPLoss",
    "FocalSupCon",
    "GroCo",
    "HardInfoNCE",
    "ISogCLR",
    "ISogCLRBimodal",
    "InfoNCE",
    "JointEntropy",
    "KoLeo",
    "LossInfo",
    "MVInfoNCE",
    "MultiLevelSupCon",
    "NTXent",
    "PWEInfoNCE",
    "SogCLR",
    "SogCLRBimodal",
    "SupCon",
    "Uniformity",
    "get_loss",
    "loss_info",
    "loss_names",
    "normalize_weights",
    "odd_even_sort",
    "register_loss",
]
