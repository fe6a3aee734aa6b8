"""MoCo-style objectives: a momentum key encoder, a key queue, optional MoCHi mixing.

:class:`MomentumQueueObjective` packages what MoCo adds to a views loss so that the training loop and
:class:`~contrastkit.distributed.DistributedLoss` treat it like any other loss (it is registered as
``moco_v2``, and :class:`MoCHiObjective` as ``mochi``, with ``LossInfo.momentum_encoder`` set):

- it owns the momentum (EMA) copy of the model, :class:`~contrastkit.models.momentum.MomentumEncoder`
  (attached by the trainer with :meth:`~MomentumQueueObjective.attach`), and the
  :class:`~contrastkit.models.momentum.KeyQueue`, so both are buffers of the loss module and are saved
  in every checkpoint with the rest of the loss state;
- its input is a views tensor ``(N, 2, D)``: view 0 holds the queries of the online model, view 1 the
  keys of the momentum encoder (no gradient); the terms are MoCo's InfoNCE of each query against its
  key and the queue (:class:`~contrastkit.losses.MoCoLoss`), plus, for MoCHi, per-query synthetic hard
  negatives (:class:`~contrastkit.losses.HardNegativeMixer`);
- in training mode it enqueues the keys of the batch after computing the terms.

Under torchrun the wrapper hands it the keys of the *global* batch, in rank order, on every rank, so
every rank enqueues the same keys in the same order and the queues stay identical (the bug of
PML#639 and lightly#1018 cannot happen). MoCHi's random draws use the global torch generator, which
the trainer keeps identical on every rank and checkpoints.

The queue starts filled with random unit vectors (as in MoCo's reference code) drawn from the global
generator, so the first batches already have ``queue_size`` negatives.

Papers: He et al., "Momentum Contrast for Unsupervised Visual Representation Learning" (2020);
Chen et al., "Improved Baselines with Momentum Contrastive Learning" (2020, MoCo v2: temperature 0.2);
Kalantidis et al., "Hard Negative Mixing for Contrastive Learning" (NeurIPS 2020, MoCHi).

Not done here: MoCo's shuffling batch norm (the key encoder's batch norm uses per-rank statistics).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import check_int, check_probability, check_reduction, check_views
from contrastkit.losses.mixing import HardNegativeMixer, MoCoLoss
from contrastkit.models.momentum import KeyQueue, MomentumEncoder

__all__ = ["MoCHiObjective", "MomentumQueueObjective"]


class MomentumQueueObjective(nn.Module):
    r"""MoCo (v2) InfoNCE against a queue of momentum keys, with optional MoCHi hard negatives.

    For query ``q_i`` (online model, view 0), key ``k_i`` (momentum encoder, view 1) and the queue
    ``n_1 .. n_K`` (keys of earlier batches), all L2-normalised:

    .. math::
        \ell_i = -\frac{q_i\cdot k_i}{\tau} + \log\Big(e^{q_i\cdot k_i/\tau}
            + \sum_j e^{q_i\cdot n_j/\tau} + \sum_m e^{q_i\cdot h_{i,m}/\tau}\Big)

    where ``h_{i,m}`` are MoCHi's ``s + s'`` synthetic negatives of query ``i`` (none without mixing,
    or before step ``mix_start_step``).

    Args:
        temperature: divides the similarities (MoCo v2: 0.2).
        queue_size: number of queued keys ``K`` (MoCo: 65536 on ImageNet; 4096 at CIFAR scale).
        momentum: EMA momentum of the key encoder (MoCo v1/v2: 0.999; MoCo v3: 0.99).
        decoupled: leave the positive out of the denominator (DCL-style).
        mix_hard: MoCHi's ``N`` (hardest negatives per query); 0 disables mixing.
        mix_pairs: MoCHi's ``s`` (mixtures of two hard negatives).
        mix_query: MoCHi's ``s'`` (mixtures of the query with a hard negative).
        mix_beta_max: upper bound of the query's share in ``s'`` mixtures (paper: 0.5).
        mix_start_step: first training step at which mixing is applied (warm-up; the paper's policy
            is unverified, ``docs/methods.md``, section 3.2).
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)``).
        chunk_size: queries per block of the engine (None: automatic).

    Shape:
        views ``(N, 2, D)``: queries in ``[:, 0]``, keys in ``[:, 1]``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> loss = MomentumQueueObjective(queue_size=16)
        >>> loss.attach(nn.Linear(4, 3), dim=3)  # the trainer attaches its model
        >>> queries = torch.randn(8, 3)
        >>> keys = loss.encode_keys(torch.randn(8, 4))
        >>> loss(torch.stack([queries, keys], dim=1)).shape
        torch.Size([])
    """

    steps: Tensor

    def __init__(
        self,
        *,
        temperature: float = 0.2,
        queue_size: int = 4096,
        momentum: float = 0.999,
        decoupled: bool = False,
        mix_hard: int = 0,
        mix_pairs: int = 0,
        mix_query: int = 0,
        mix_beta_max: float = 0.5,
        mix_start_step: int = 0,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self.queue_size = check_int(queue_size, "queue_size", minimum=1)
        mix_start_step = check_int(mix_start_step, "mix_start_step", minimum=0)
        mix_hard = check_int(mix_hard, "mix_hard", minimum=0)
        self.momentum = check_probability(momentum, "momentum")
        self.reduction = check_reduction(reduction)
        self.criterion = MoCoLoss(
            temperature=temperature, decoupled=decoupled, reduction="none", chunk_size=chunk_size
        )
        self.temperature = self.criterion.temperature
        self.mixer: HardNegativeMixer | None = None
        if mix_hard > 0:
            self.mixer = HardNegativeMixer(
                n_hard=mix_hard, n_mix=mix_pairs, n_mix_query=mix_query, beta_max=mix_beta_max
            )
        elif mix_pairs or mix_query:
            raise ValueError(
                f"mix_pairs={mix_pairs} and mix_query={mix_query} need mix_hard >= 1 hard negatives"
            )
        self.mix_start_step = mix_start_step
        self.queue: KeyQueue | None = None
        self.key_encoder: MomentumEncoder | None = None
        self.register_buffer("steps", torch.zeros((), dtype=torch.long))

    def attach(self, model: nn.Module, dim: int) -> None:
        """Create the momentum copy of ``model`` and the queue of ``dim``-dimensional keys.

        The queue is filled with random unit vectors from the global generator.
        """
        self.key_encoder = MomentumEncoder(model, momentum=self.momentum)
        device = next(model.parameters()).device
        queue = KeyQueue(dim, self.queue_size).to(device)
        queue.enqueue(F.normalize(torch.randn(self.queue_size, dim), dim=1).to(device))
        self.queue = queue

    def _require(self) -> tuple[MomentumEncoder, KeyQueue]:
        if self.key_encoder is None or self.queue is None:
            raise RuntimeError(
                f"{type(self).__name__} has no key encoder: call attach(model, dim) first "
                "(the training loop does)"
            )
        return self.key_encoder, self.queue

    def encode_keys(self, images: Tensor) -> Tensor:
        """Projections of ``images`` by the momentum encoder (no gradient)."""
        encoder, _ = self._require()
        out = encoder(images)
        z: Tensor = out[1] if isinstance(out, tuple) else out
        return z.detach()

    @torch.no_grad()
    def update_key_encoder(self, model: nn.Module) -> None:
        """EMA step of the key encoder after an optimizer step of ``model``."""
        encoder, _ = self._require()
        encoder.update(model)

    def forward(self, views: Tensor) -> Tensor:
        _, queue = self._require()
        x = check_views(views, min_views=2)
        if x.shape[1] != 2:
            raise ValueError(
                f"{type(self).__name__} takes views of shape (N, 2, D) (queries, keys); "
                f"got V = {x.shape[1]}"
            )
        q, k = x[:, 0], x[:, 1].detach()
        negatives = queue.negatives()
        extra = None
        if self.mixer is not None and int(self.steps) >= self.mix_start_step:
            extra = self.mixer(q, negatives)
        terms = self.criterion(q, k, negatives, extra)
        if self.training:
            queue.enqueue(k)
            self.steps += 1
        if self.reduction == "none":
            return terms
        return terms.mean() if self.reduction == "mean" else terms.sum()

    def extra_repr(self) -> str:
        mix = (
            f", mix=({self.mixer.n_hard}, {self.mixer.n_mix}, {self.mixer.n_mix_query}) "
            f"from step {self.mix_start_step}"
            if self.mixer is not None
            else ""
        )
        return (
            f"temperature={self.temperature}, queue_size={self.queue_size}, "
            f"momentum={self.momentum}{mix}, reduction={self.reduction!r}"
        )


class MoCHiObjective(MomentumQueueObjective):
    """:class:`MomentumQueueObjective` with MoCHi's mixing on by default: ``(N, s, s') = (256, 256,
    64)``, a scaled-down version of the paper's ImageNet setting (1024, 1024, 128) for queues of a few
    thousand keys (our choice). Same arguments as :class:`MomentumQueueObjective`.

    Paper: Kalantidis et al., "Hard Negative Mixing for Contrastive Learning" (NeurIPS 2020);
    ``docs/methods.md``, section 3.2.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> loss = MoCHiObjective(queue_size=32, mix_hard=8, mix_pairs=4, mix_query=2)
        >>> loss.attach(nn.Linear(4, 3), dim=3)  # the trainer attaches its model
        >>> keys = loss.encode_keys(torch.randn(8, 4))
        >>> loss(torch.stack([torch.randn(8, 3), keys], dim=1)).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        temperature: float = 0.2,
        queue_size: int = 4096,
        momentum: float = 0.999,
        decoupled: bool = False,
        mix_hard: int = 256,
        mix_pairs: int = 256,
        mix_query: int = 64,
        mix_beta_max: float = 0.5,
        mix_start_step: int = 0,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            temperature=temperature,
            queue_size=queue_size,
            momentum=momentum,
            decoupled=decoupled,
            mix_hard=mix_hard,
            mix_pairs=mix_pairs,
            mix_query=mix_query,
            mix_beta_max=mix_beta_max,
            mix_start_step=mix_start_step,
            reduction=reduction,
            chunk_size=chunk_size,
        )
