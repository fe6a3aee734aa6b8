"""Contrastive objectives, all over one exact, blockwise log-sum-exp engine (``_engine``)."""

from contrastkit.losses.cacr import CACR
from contrastkit.losses.clip import MILNCE, CLIPLoss, CLIPRocketLoss
from contrastkit.losses.decoupled import DCL, DCLW
from contrastkit.losses.dense import RelationGraphLoss, region_pool, sample_pixels
from contrastkit.losses.geometry import Alignment, AlignUniform, JointEntropy, KoLeo, Uniformity
from contrastkit.losses.global_ import ISogCLR, ISogCLRBimodal, SogCLR, SogCLRBimodal
from contrastkit.losses.graph import (
    DECHead,
    NeighbourhoodContrast,
    influence_targets,
    knn_graph,
    normalized_adjacency,
)
from contrastkit.losses.infonce import HardInfoNCE, InfoNCE
from contrastkit.losses.mixing import HardNegativeMixer, MoCoLoss, QueueInfoNCE
from contrastkit.losses.multiview import DHEL, MVDHEL, AVGInfoNCE, MVInfoNCE, PWEInfoNCE
from contrastkit.losses.objectives import (
    BilinearInfoNCE,
    BinaryNCE,
    ListwiseKL,
    ListwiseWasserstein1D,
    PatchSelectionInfoNCE,
)
from contrastkit.losses.registry import LossInfo, get_loss, loss_info, loss_names, register_loss
from contrastkit.losses.sorting import GroCo, odd_even_sort
from contrastkit.losses.supcon import FocalSupCon, MultiLevelSupCon, SupCon
from contrastkit.losses.supremix import SupReMix
from contrastkit.losses.weights import normalize_weights

NTXent = InfoNCE

__all__ = [
    "CACR",
    "DCL",
    "DCLW",
    "DHEL",
    "MILNCE",
    "MVDHEL",
    "AVGInfoNCE",
    "AlignUniform",
    "Alignment",
    "BilinearInfoNCE",
    "BinaryNCE",
    "CLIPLoss",
    "CLIPRocketLoss",
    "DECHead",
    "FocalSupCon",
    "GroCo",
    "HardInfoNCE",
    "HardNegativeMixer",
    "ISogCLR",
    "ISogCLRBimodal",
    "InfoNCE",
    "JointEntropy",
    "KoLeo",
    "ListwiseKL",
    "ListwiseWasserstein1D",
    "LossInfo",
    "MVInfoNCE",
    "MoCoLoss",
    "MultiLevelSupCon",
    "NTXent",
    "NeighbourhoodContrast",
    "PWEInfoNCE",
    "PatchSelectionInfoNCE",
    "QueueInfoNCE",
    "RelationGraphLoss",
    "SogCLR",
    "SogCLRBimodal",
    "SupCon",
    "SupReMix",
    "Uniformity",
    "get_loss",
    "influence_targets",
    "knn_graph",
    "loss_info",
    "loss_names",
    "normalize_weights",
    "normalized_adjacency",
    "odd_even_sort",
    "region_pool",
    "register_loss",
    "sample_pixels",
]
