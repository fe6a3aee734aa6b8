"""Two towers and their projections to one shared space (CLIP and any two modalities).

:class:`TwoTowerModel` holds one encoder per modality ("tower") and a linear projection from each
to the shared dimension, as CLIP; :func:`build_tower` picks a tower for a modality kind: an image
encoder of the :func:`~contrastkit.models.registry.build_encoder` registry for ``"image"``, the 1-D
CNN for ``"series"``, the MLP for ``"vector"`` and the causal text transformer for ``"text"``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_int, check_positive
from contrastkit.models.conv1d import Conv1dEncoder
from contrastkit.models.mlp import MLPEncoder
from contrastkit.models.registry import build_encoder
from contrastkit.models.text import TextTokenizer, TextTransformer

__all__ = ["TOWER_KINDS", "TwoTowerModel", "build_tower"]

#: The modality kinds a tower is built for (the kinds of ``contrastkit.data.paired``).
TOWER_KINDS = ("image", "series", "vector", "text")


def build_tower(
    kind: str,
    *,
    shape: Sequence[int] = (),
    tokenizer: TextTokenizer | None = None,
    encoder: str = "smallcnn",
    encoder_kwargs: Mapping[str, Any] | None = None,
    text_kwargs: Mapping[str, Any] | None = None,
) -> nn.Module:
    """The encoder of one side of the pairs, by its modality ``kind``.

    Args:
        kind: ``"image"``, ``"series"``, ``"vector"`` or ``"text"``.
        shape: One sample's shape: ``(C, H, W)``, ``(C, L)`` or ``(D,)`` (unused for text).
        tokenizer: The tokenizer of a text tower.
        encoder: The image encoder's registry name (``smallcnn``, ``resnet18``, ...).
        encoder_kwargs: Further arguments of the image encoder.
        text_kwargs: Arguments of :class:`~contrastkit.models.text.TextTransformer` (context
            length, width, layers, heads, ...).

    Returns:
        A module with an ``out_dim`` attribute mapping a batch to ``(B, out_dim)``.

    Example:
        >>> build_tower("vector", shape=(12,)).out_dim
        256
    """
    check_choice(kind, "kind", TOWER_KINDS)
    dims = [check_int(d, "shape entry", minimum=1) for d in shape]
    if kind == "text":
        if tokenizer is None:
            raise ValueError("a text tower needs its tokenizer")
        return TextTransformer(tokenizer, **dict(text_kwargs or {}))
    need = {"image": 3, "series": 2, "vector": 1}[kind]
    if len(dims) != need:
        raise ValueError(f"a {kind} tower needs a sample shape of {need} dims, got {tuple(dims)}")
    if kind == "image":
        return build_encoder(
            encoder, in_channels=dims[0], image_size=dims[1], **dict(encoder_kwargs or {})
        )
    if kind == "series":
        return Conv1dEncoder(dims[0])
    return MLPEncoder(dims[0])


def _out_dim(tower: nn.Module, name: str) -> int:
    dim = getattr(tower, "out_dim", None)
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise TypeError(f"{name} must be an nn.Module with an int out_dim attribute, got {dim!r}")
    return dim


class TwoTowerModel(nn.Module):
    r"""Two encoders and linear projections to a shared space, as CLIP.

    For a pair ``(x_a, x_b)`` of modalities A and B:

    .. math::
        z_a = W_a f_a(x_a), \qquad z_b = W_b f_b(x_b), \qquad
        \mathrm{logits} = \sigma\, \hat z_a \hat z_b^\top, \quad
        \sigma = e^{\theta},\ \theta \in [0, \log 100]

    with ``f_a, f_b`` the towers, ``W_a, W_b`` bias-free linear maps to ``dim`` and ``\hat z`` the
    L2-normalised embeddings (a loss normalises them itself). The logit scale ``sigma`` is CLIP's:
    initialised at ``1 / init_temperature`` and clamped to at most ``max_logit_scale``; it is a
    trained parameter with ``learn_logit_scale=True`` (for a loss without a scale of its own) and
    otherwise a buffer, which training sets to the learnt scale of a CLIP loss
    (:meth:`set_logit_scale`) so that a saved model scores pairs as it was trained.
    ``local_projections=True`` adds a second pair of projections for augmented views
    (CLIP-rocket's "local" embeddings).

    Paper: Radford et al., "Learning Transferable Visual Models From Natural Language Supervision"
    (2021): linear projections of both encoders to the multi-modal space, a learnable temperature
    initialised at 0.07 and clipped to keep the logits scale at most 100. Fini et al., "Improved
    baselines for vision-language pre-training" (2023): separate projections for augmented views.

    Args:
        tower_a: Encoder of side A (an ``nn.Module`` with ``out_dim``).
        tower_b: Encoder of side B.
        dim: The shared dimension.
        kinds: The modality kinds ``(A, B)`` (``"image"``, ``"series"``, ``"vector"``, ``"text"``);
            :meth:`encode_image` and :meth:`encode_text` find their side by them.
        local_projections: Add projections for augmented views (``encode_*(..., local=True)``).
        learn_logit_scale: Train the logit scale with the towers.
        init_temperature: Initial ``1 / sigma`` (> 0).
        max_logit_scale: Upper clamp of ``sigma`` (>= 1).

    Shape:
        ``forward(a, b)`` -> ``(z_a (B, dim), z_b (B, dim))``; with augmented views ``a_aug (B, V,
        ...)`` (and ``b_aug (B, V', ...)``) also their local embeddings ``(B, V, dim)``.

    Example:
        >>> import torch
        >>> from contrastkit.models import TextTokenizer, build_tower
        >>> tok = TextTokenizer.train(["a small zero", "a large one"], vocab_size=60)
        >>> image = build_tower("image", shape=(1, 8, 8))
        >>> text = build_tower("text", tokenizer=tok, text_kwargs={"width": 16, "heads": 2})
        >>> model = TwoTowerModel(image, text, dim=8)
        >>> za, zb = model(torch.rand(2, 1, 8, 8), text.tokenize(["a small zero", "a large one"]))
        >>> za.shape, zb.shape, round(float(model.logit_scale_value()), 2)
        (torch.Size([2, 8]), torch.Size([2, 8]), 14.29)
    """

    logit_scale: Tensor

    def __init__(
        self,
        tower_a: nn.Module,
        tower_b: nn.Module,
        *,
        dim: int = 128,
        kinds: tuple[str, str] = ("image", "text"),
        local_projections: bool = False,
        learn_logit_scale: bool = False,
        init_temperature: float = 0.07,
        max_logit_scale: float = 100.0,
    ) -> None:
        super().__init__()
        self.dim = check_int(dim, "dim", minimum=1)
        if not isinstance(kinds, tuple | list) or len(kinds) != 2:
            raise ValueError(f"kinds must be two modality kinds (A, B), got {kinds!r}")
        self.kinds: tuple[str, str] = (
            check_choice(kinds[0], "kinds[0]", TOWER_KINDS),
            check_choice(kinds[1], "kinds[1]", TOWER_KINDS),
        )
        self.tower_a, self.tower_b = tower_a, tower_b
        da, db = _out_dim(tower_a, "tower_a"), _out_dim(tower_b, "tower_b")
        self.proj_a = nn.Linear(da, self.dim, bias=False)
        self.proj_b = nn.Linear(db, self.dim, bias=False)
        self.local_projections = bool(local_projections)
        if self.local_projections:
            self.proj_a_local = nn.Linear(da, self.dim, bias=False)
            self.proj_b_local = nn.Linear(db, self.dim, bias=False)
        self.max_logit_scale = check_positive(max_logit_scale, "max_logit_scale")
        if self.max_logit_scale < 1:
            raise ValueError(f"max_logit_scale must be >= 1, got {max_logit_scale!r}")
        theta = torch.tensor(math.log(1.0 / check_positive(init_temperature, "init_temperature")))
        self.learn_logit_scale = bool(learn_logit_scale)
        if self.learn_logit_scale:
            self.logit_scale = nn.Parameter(theta)
        else:
            self.register_buffer("logit_scale", theta)

    # ------------------------------------------------------------------------------ encoding

    def _side(self, side: str) -> tuple[nn.Module, nn.Linear, nn.Linear | None]:
        if side == "a":
            local = self.proj_a_local if self.local_projections else None
            return self.tower_a, self.proj_a, local
        local = self.proj_b_local if self.local_projections else None
        return self.tower_b, self.proj_b, local

    def _prepare(self, side: str, x: Tensor | Sequence[str]) -> Tensor:
        tower = self.tower_a if side == "a" else self.tower_b
        if isinstance(x, Tensor):
            return x
        if isinstance(tower, TextTransformer):
            device = tower.token_embedding.weight.device
            return tower.tokenize(list(x)).to(device)
        raise TypeError(f"side {side!r} is a {self._kind(side)} tower; pass a tensor, not texts")

    def _kind(self, side: str) -> str:
        return self.kinds[0] if side == "a" else self.kinds[1]

    def _encode(
        self, side: str, x: Tensor | Sequence[str], *, local: bool, normalize: bool
    ) -> Tensor:
        tower, proj, proj_local = self._side(side)
        if local and proj_local is None:
            raise ValueError("local=True needs a model built with local_projections=True")
        h = tower(self._prepare(side, x))
        z = (proj_local if local and proj_local is not None else proj)(h)
        return F.normalize(z, dim=-1) if normalize else z

    def encode_a(
        self, x: Tensor | Sequence[str], *, local: bool = False, normalize: bool = False
    ) -> Tensor:
        """Embeddings ``(B, dim)`` of side A (texts are tokenized by a text tower)."""
        return self._encode("a", x, local=local, normalize=normalize)

    def encode_b(
        self, x: Tensor | Sequence[str], *, local: bool = False, normalize: bool = False
    ) -> Tensor:
        """Embeddings ``(B, dim)`` of side B (texts are tokenized by a text tower)."""
        return self._encode("b", x, local=local, normalize=normalize)

    def features(self, side: str, x: Tensor | Sequence[str]) -> Tensor:
        """The tower's output before the projection (for linear probes), ``side`` ``"a"``/``"b"``."""
        check_choice(side, "side", ("a", "b"))
        tower = self.tower_a if side == "a" else self.tower_b
        out: Tensor = tower(self._prepare(side, x))
        return out

    def side_of(self, kind: str) -> str:
        """``"a"`` or ``"b"``: the side holding modality ``kind`` (A first when both do)."""
        for side, k in zip(("a", "b"), self.kinds, strict=True):
            if k == kind:
                return side
        raise ValueError(f"this model has no {kind} tower; its sides are {self.kinds}")

    def encode_image(self, images: Tensor, *, normalize: bool = False) -> Tensor:
        """Embeddings of images by the image tower."""
        return self._encode(self.side_of("image"), images, local=False, normalize=normalize)

    def encode_text(self, texts: Tensor | Sequence[str], *, normalize: bool = False) -> Tensor:
        """Embeddings of texts (strings, or token ids from the text tower's ``tokenize``)."""
        return self._encode(self.side_of("text"), texts, local=False, normalize=normalize)

    @property
    def tokenizer(self) -> TextTokenizer | None:
        """The text tower's tokenizer (side A's if both are text), or None."""
        for tower in (self.tower_a, self.tower_b):
            if isinstance(tower, TextTransformer):
                return tower.tokenizer
        return None

    # ------------------------------------------------------------------------- logit scale

    def logit_scale_value(self) -> Tensor:
        """The clamped logit scale ``sigma = exp(theta)`` (``theta`` is clamped in place)."""
        with torch.no_grad():
            self.logit_scale.clamp_(0.0, math.log(self.max_logit_scale))
        return self.logit_scale.exp()

    def set_logit_scale(self, theta: Tensor | float) -> None:
        """Set ``theta = log(sigma)`` (e.g. to the learnt scale of a CLIP loss)."""
        with torch.no_grad():
            value = float(theta)
            self.logit_scale.fill_(min(max(value, 0.0), math.log(self.max_logit_scale)))

    # ------------------------------------------------------------------------------- forward

    def _encode_views(self, side: str, views: Tensor) -> Tensor:
        b, v = views.shape[:2]
        flat = views.reshape(b * v, *views.shape[2:])
        return self._encode(side, flat, local=True, normalize=False).reshape(b, v, -1)

    def forward(
        self, a: Tensor, b: Tensor, a_aug: Tensor | None = None, b_aug: Tensor | None = None
    ) -> tuple[Tensor, ...]:
        """``(z_a, z_b)``, then ``z_a_aug (B, V, dim)`` if ``a_aug`` and ``z_b_aug`` if ``b_aug``.

        Augmented views go through the local projections (``local_projections=True``). One call
        computes everything a step needs, as ``DistributedDataParallel`` wants.
        """
        out: tuple[Tensor, ...] = (
            self._encode("a", a, local=False, normalize=False),
            self._encode("b", b, local=False, normalize=False),
        )
        if a_aug is not None:
            out += (self._encode_views("a", a_aug),)
        if b_aug is not None:
            out += (self._encode_views("b", b_aug),)
        return out

    def extra_repr(self) -> str:
        return (
            f"kinds={self.kinds}, dim={self.dim}, local_projections={self.local_projections}, "
            f"learn_logit_scale={self.learn_logit_scale}"
        )
