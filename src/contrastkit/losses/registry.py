"""Short names for every loss, for the CLI, recipes and ``contrastkit losses``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn

from contrastkit.losses.cacr import CACR
from contrastkit.losses.clip import MILNCE, CLIPLoss, CLIPRocketLoss
from contrastkit.losses.decoupled import DCL, DCLW
from contrastkit.losses.geometry import Alignment, AlignUniform, JointEntropy, KoLeo, Uniformity
from contrastkit.losses.global_ import ISogCLR, ISogCLRBimodal, SogCLR, SogCLRBimodal
from contrastkit.losses.graph import NeighbourhoodContrast
from contrastkit.losses.infonce import HardInfoNCE, InfoNCE
from contrastkit.losses.mixing import MoCoLoss
from contrastkit.losses.momentum import MoCHiObjective, MomentumQueueObjective
from contrastkit.losses.multiview import DHEL, MVDHEL, AVGInfoNCE, MVInfoNCE, PWEInfoNCE
from contrastkit.losses.objectives import (
    BilinearInfoNCE,
    BinaryNCE,
    ListwiseKL,
    ListwiseWasserstein1D,
    PatchSelectionInfoNCE,
)
from contrastkit.losses.sorting import GroCo
from contrastkit.losses.supcon import FocalSupCon, SupCon
from contrastkit.losses.supremix import SupReMix

__all__ = ["LossInfo", "get_loss", "loss_info", "loss_names", "register_loss"]


@dataclass(frozen=True)
class LossInfo:
    """A registered loss: its factory, one line of description and how it is fed.

    ``input_kind`` is ``"views"`` (``forward(views (N,V,D), labels=None)``) or ``"pair"``
    (``forward(a (N,D), b (N,D))``). ``needs_labels`` says whether training must pass labels.
    ``needs_index`` marks stateful losses (SogCLR/iSogCLR) that take the dataset indices of the
    batch as a last argument (``loss(z, index)`` / ``loss(a, b, index)``) and are built with
    ``num_samples`` = the training-set size.

    Other kinds: ``"queue"`` (``forward(query, key, negatives (K,D), extra_negatives=None)``),
    ``"regression"`` (``forward(views, labels)`` with real-valued labels), ``"graph"``
    (``forward(z (n,d), target (n,n))``), ``"bag"`` (``forward(video (B,D), text (B,P,D), mask)``),
    ``"patches"`` (``forward(query (B,M,d), candidates (B,M,d), mask)``), ``"scores"``
    (``forward(positive (B,), negatives (B,K))``) and ``"list"``
    (``forward(scores (B,L), relevance (B,L), mask)``).

    ``momentum_encoder`` marks views losses that own a momentum copy of the model (MoCo v2,
    MoCHi): the trainer attaches the model, feeds queries and momentum keys as two views, and
    updates the copy after every optimizer step.
    """

    name: str
    factory: Callable[..., nn.Module]
    summary: str
    input_kind: str = "views"
    needs_labels: bool = False
    min_views: int = 2
    needs_index: bool = False
    momentum_encoder: bool = False


_REGISTRY: dict[str, LossInfo] = {}
_ALIASES: dict[str, str] = {}


def register_loss(info: LossInfo, *aliases: str) -> None:
    """Add a loss (and optional aliases) to the registry."""
    _REGISTRY[info.name] = info
    for alias in aliases:
        _ALIASES[alias] = info.name


def loss_names() -> list[str]:
    """Sorted canonical names of the registered losses."""
    return sorted(_REGISTRY)


def loss_info(name: str) -> LossInfo:
    """Look a loss up by name or alias; an unknown name lists the known ones."""
    key = _ALIASES.get(name, name)
    if key not in _REGISTRY:
        known = ", ".join(loss_names() + sorted(_ALIASES))
        raise ValueError(f"unknown loss {name!r}; known losses: {known}")
    return _REGISTRY[key]


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build a loss by name with keyword arguments."""
    return loss_info(name).factory(**kwargs)


register_loss(
    LossInfo("ntxent", InfoNCE, "InfoNCE / NT-Xent (SimCLR), any number of views"),
    "infonce",
    "simclr",
)
register_loss(
    LossInfo("supcon", SupCon, "supervised contrastive (L_out or L_in)", needs_labels=True)
)
register_loss(LossInfo("dcl", DCL, "decoupled contrastive: no positive in the denominator"))
register_loss(LossInfo("dclw", DCLW, "DCL with von Mises-Fisher weighted positives"))
register_loss(
    LossInfo(
        "clip", CLIPLoss, "symmetric image-text InfoNCE, learnable clamped scale", input_kind="pair"
    )
)
register_loss(
    LossInfo("hard_infonce", HardInfoNCE, "InfoNCE with only the K hardest negatives (Wang & Liu)")
)
register_loss(
    LossInfo("focal_supcon", FocalSupCon, "focal SupCon of Core-tuning", needs_labels=True)
)
register_loss(LossInfo("dhel", DHEL, "decoupled hyperspherical energy loss, exactly 2 views"))
register_loss(LossInfo("mvinfonce", MVInfoNCE, "multi-view InfoNCE, one term per instance"))
register_loss(LossInfo("mvdhel", MVDHEL, "multi-view DHEL: per-view uniformity, any V"))
register_loss(LossInfo("pwe", PWEInfoNCE, "NT-Xent averaged over all pairs of views"))
register_loss(LossInfo("avg", AVGInfoNCE, "NT-Xent of each view vs the mean of the others"))
register_loss(
    LossInfo(
        "sogclr",
        SogCLR,
        "global contrastive loss, per-sample moving averages (needs index, num_samples)",
        needs_index=True,
    )
)
register_loss(
    LossInfo(
        "isogclr",
        ISogCLR,
        "SogCLR with individual learned temperatures (needs index, num_samples)",
        needs_index=True,
    )
)
register_loss(
    LossInfo(
        "sogclr_bimodal",
        SogCLRBimodal,
        "image-text SogCLR (needs index, num_samples)",
        input_kind="pair",
        needs_index=True,
    )
)
register_loss(
    LossInfo(
        "isogclr_bimodal",
        ISogCLRBimodal,
        "image-text iSogCLR, per-sample temperatures (needs index, num_samples)",
        input_kind="pair",
        needs_index=True,
    )
)
register_loss(LossInfo("cacr", CACR, "contrastive attraction + contrastive repulsion, K views"))
register_loss(LossInfo("groco", GroCo, "group ordering constraints by differentiable sorting"))
register_loss(
    LossInfo("align_uniform", AlignUniform, "alignment + uniformity (Wang & Isola)"), "alignuniform"
)
register_loss(
    LossInfo(
        "moco",
        MoCoLoss,
        "InfoNCE against a key queue (MoCo); MoCHi via extra negatives",
        input_kind="queue",
    ),
    "queue_infonce",
)
register_loss(
    LossInfo(
        "moco_v2",
        MomentumQueueObjective,
        "MoCo v2: InfoNCE against a queue of momentum keys (training loop)",
        momentum_encoder=True,
    )
)
register_loss(
    LossInfo(
        "mochi",
        MoCHiObjective,
        "MoCHi: MoCo v2 with synthetic hard negatives (training loop)",
        momentum_encoder=True,
    )
)
register_loss(
    LossInfo(
        "supremix",
        SupReMix,
        "supervised contrastive regression with mixed pairs (SupReMix, approximate assembly)",
        input_kind="regression",
        needs_labels=True,
        min_views=1,
    )
)
register_loss(
    LossInfo(
        "scgc",
        NeighbourhoodContrast,
        "SCGC neighbourhood / IAC contrast over a graph target (inverse temperature)",
        input_kind="graph",
    ),
    "ncontrast",
)
register_loss(
    LossInfo(
        "cliprocket",
        CLIPRocketLoss,
        "CLIP + augmented-view terms with label smoothing (CLIP-rocket)",
        input_kind="pair",
    )
)
register_loss(
    LossInfo("milnce", MILNCE, "MIL-NCE: bags of candidate positive texts", input_kind="bag")
)
register_loss(
    LossInfo(
        "patch_nce",
        PatchSelectionInfoNCE,
        "Selfie/CPC patch selection among masked patches",
        input_kind="patches",
    )
)
register_loss(
    LossInfo(
        "bilinear_nce",
        BilinearInfoNCE,
        "InfoNCE with a learned bilinear critic (TACO/CURL; needs dim)",
        input_kind="pair",
    )
)
register_loss(
    LossInfo(
        "binary_nce", BinaryNCE, "binary NCE / density-ratio logistic loss", input_kind="scores"
    )
)
register_loss(
    LossInfo("listwise_kl", ListwiseKL, "KL to graded-relevance list targets", input_kind="list")
)
register_loss(
    LossInfo(
        "listwise_w1",
        ListwiseWasserstein1D,
        "1-D Wasserstein to graded-relevance list targets",
        input_kind="list",
    )
)

# Regularisers: terms added to an objective, not objectives to train an encoder with on their own
# (alignment alone collapses, uniformity alone ignores positives).
register_loss(
    LossInfo(
        "alignment",
        Alignment,
        "alignment of positive views (Wang & Isola)",
        input_kind="regularizer",
    )
)
register_loss(
    LossInfo(
        "uniformity",
        Uniformity,
        "Gaussian-potential uniformity (Wang & Isola)",
        input_kind="regularizer",
    )
)
register_loss(
    LossInfo(
        "koleo",
        KoLeo,
        "KoLeo nearest-neighbour spreading term, on (N, D)",
        input_kind="regularizer",
    )
)
register_loss(
    LossInfo(
        "joint_entropy",
        JointEntropy,
        "SepCLR kernel joint-entropy term between common and salient heads",
        input_kind="regularizer",
    )
)
