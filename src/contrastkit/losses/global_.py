r"""Global contrastive losses with per-sample state: SogCLR and iSogCLR (unimodal and bimodal).

These losses optimise a contrastive objective whose negatives are *all* other samples of the
dataset, not only the mini-batch. For anchor ``i`` with similarity ``s(a_i, z)`` to a negative ``z``
and positive similarity ``s_i^+``, the robust global contrastive objective (RGCL) of iSogCLR is

.. math::
    F(w, \tau) = \frac{1}{n}\sum_i \Big[\tau_i \log \mathbb{E}_{z \in S_i^-}
        \exp\Big(\frac{s(a_i, z) - s_i^+}{\tau_i}\Big) + \tau_i \rho\Big]

(SogCLR: one fixed ``tau`` and no ``rho`` term). The dataset expectation is tracked by a per-sample
moving average ``u_i`` indexed by the dataset index, so every batch must come with the ``index`` of
its instances and the loss keeps ``num_samples`` entries of state in registered buffers
(checkpointed with ``state_dict``). ``docs/methods.md``, section 2.7, is the specification implemented
here.

Papers: Yuan et al., "Provable Stochastic Optimization for Global Contrastive Learning: Small Batch
Does Not Harm Performance" (ICML 2022) for SogCLR; Qiu et al., "Not All Semantics are Created Equal:
Contrastive Self-supervised Learning with Automatic Temperature Individualization" (ICML 2023) for
iSogCLR. Reference behaviour: LibAUC ``libauc/losses/contrastive.py`` (``GCLoss_v1`` unimodal,
``GCLoss_v2`` bimodal) and zhqiu/contrastive-learning-iSogCLR (``SogCLR_DRO_Loss``, gradient clip).

How the engine is used
----------------------
The update needs, per anchor, the negative partition sum ``sum_z exp(s(a_i, z)/tau_i)``; it comes
from the blockwise engine as ``exp(lse_i)`` with a per-row inverse temperature. The surrogate loss
of step 4, ``(1/|S_i|) sum_z p_iz s(a_i, z)`` with detached ``p_iz = exp(s(a_i, z)/tau_i) / u_i``,
has the gradient ``(g_i / u_i) tau_i grad(lse_i)`` where ``g_i = exp(lse_i)/|S_i|`` is the batch
estimate (the softmax weights of the engine's backward pass *are* ``p_iz`` up to that factor). So
the gradient goes through the engine, and no ``N x N`` matrix is stored. The *value* of the
surrogate and the temperature gradient need the softmax-weighted mean similarity ``E_p[s_i]``; it is
computed without autograd, block by block (peak memory ``chunk x candidates``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit._validation import (
    check_choice,
    check_chunk_size,
    check_embeddings,
    check_int,
    check_positive,
    check_probability,
    check_reduction,
    check_tensor,
)
from contrastkit.losses._common import check_rows, make_view_batch, reduce_terms, upcast_half
from contrastkit.losses._engine import masked_logsumexp, masked_softmax_stats, self_logsumexp

__all__ = ["ISogCLR", "ISogCLRBimodal", "SogCLR", "SogCLRBimodal", "check_dataset_index"]

GAMMA_SCHEDULES = ("constant", "cosine")


def check_dataset_index(index: object, n: int, num_samples: int, *, owner: str = "loss") -> Tensor:
    """Validate the dataset indices ``(n,)`` of a batch against a state of ``num_samples`` rows."""
    if index is None:
        raise ValueError(
            f"{owner} keeps per-sample state and needs the dataset index of every instance: "
            f"call it as loss(..., index) with an integer tensor of shape ({n},) holding values in "
            f"[0, num_samples={num_samples})"
        )
    t = check_tensor(index, "index")
    if t.is_floating_point() or t.is_complex() or t.dtype == torch.bool:
        raise TypeError(f"index must be an integer tensor of dataset indices, got dtype {t.dtype}")
    if t.dim() != 1 or t.shape[0] != n:
        raise ValueError(
            f"index must have shape ({n},), one dataset index per instance of the batch; "
            f"got shape {tuple(t.shape)}"
        )
    if n:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= num_samples:
            raise ValueError(
                f"index values must lie in [0, num_samples={num_samples}); got min {lo}, max {hi} "
                "(construct the loss with num_samples = the size of the training set)"
            )
        if torch.unique(t).numel() != n:
            raise ValueError(
                "index holds duplicate dataset indices; each instance of a batch must be a "
                "different sample (sample batches without replacement)"
            )
    return t.long()


def _check_state_finite(loss: nn.Module, name: str, values: Tensor) -> None:
    """Refuse a state update that is not finite, before anything is written."""
    if not bool(torch.isfinite(values).all()):
        raise FloatingPointError(
            f"{type(loss).__name__}: the update of its state {name!r} is not finite "
            f"({int((~torch.isfinite(values)).sum())} of {values.numel()} values); the state was "
            "left unchanged"
        )


def _acc_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


class _GlobalContrastive(nn.Module):
    """Shared machinery: the moving-average factor schedule, index checks, objective reporting."""

    last_objective: Tensor | None
    schedule_epoch: Tensor
    temperature: float  # set by each subclass

    def __init__(
        self,
        *,
        num_samples: int,
        gamma: float,
        gamma_schedule: str,
        gamma_decay_epochs: int,
        eps: float,
        reduction: str,
        chunk_size: int | None,
    ) -> None:
        super().__init__()
        self.num_samples = check_int(num_samples, "num_samples", minimum=1)
        self.gamma = check_probability(gamma, "gamma")
        if self.gamma == 0.0:
            raise ValueError(
                "gamma must lie in (0, 1]: with gamma = 0 the moving averages never move"
            )
        self.gamma_schedule = check_choice(gamma_schedule, "gamma_schedule", GAMMA_SCHEDULES)
        self.gamma_decay_epochs = check_int(gamma_decay_epochs, "gamma_decay_epochs", minimum=1)
        self.eps = check_positive(eps, "eps")
        self.reduction = check_reduction(reduction)
        self.chunk_size = check_chunk_size(chunk_size)
        self.register_buffer("schedule_epoch", torch.zeros((), dtype=torch.long))
        self.last_objective = None

    # -- the gamma schedule ------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss which epoch starts (0-based); drives the ``"cosine"`` gamma schedule.

        Call it once per epoch, before the first batch. The epoch is a buffer, so it is
        checkpointed.
        """
        self.schedule_epoch.fill_(check_int(epoch, "epoch", minimum=0))

    def adjust_gamma(self, epoch: int) -> None:
        """Alias of :meth:`set_epoch` under LibAUC's name."""
        self.set_epoch(epoch)

    @property
    def current_gamma(self) -> float:
        """The moving-average factor for samples already visited, at the current epoch."""
        if self.gamma_schedule == "constant":
            return self.gamma
        epoch = int(self.schedule_epoch)
        if epoch >= self.gamma_decay_epochs:
            return self.gamma
        cos = 0.5 * (1.0 + math.cos(math.pi * epoch / self.gamma_decay_epochs))
        return self.gamma + (1.0 - self.gamma) * cos

    def _gamma_rows(self, first_visit: Tensor, like: Tensor) -> Tensor:
        """Per-sample factor (dtype and device of ``like``): 1 on a sample's first visit (its
        stored ``u`` is still 0), else the current gamma."""
        gamma = torch.full_like(like, self.current_gamma)
        return torch.where(first_visit, torch.ones_like(like), gamma)

    # -- monitoring --------------------------------------------------------------------------------

    def objective(self) -> Tensor:
        """The estimate of the true objective at the last call (see the class docstring)."""
        if self.last_objective is None:
            raise RuntimeError("objective() is available after the first forward call")
        return self.last_objective

    def _index(self, index: object, n: int) -> Tensor | None:
        if self.training or index is not None:
            return check_dataset_index(index, n, self.num_samples, owner=type(self).__name__)
        return None

    def _gamma_repr(self) -> str:
        return (
            f"num_samples={self.num_samples}, gamma={self.gamma}, "
            f"gamma_schedule={self.gamma_schedule!r}, "
            f"gamma_decay_epochs={self.gamma_decay_epochs}, "
            f"eps={self.eps}, reduction={self.reduction!r}"
        )

    def _init_temperature_update(
        self,
        *,
        rho: float,
        eta: float,
        beta: float,
        tau_min: float,
        tau_max: float,
        grad_tau_clip: float | None,
    ) -> None:
        """Check and store the settings of iSogCLR's per-sample temperature update."""
        self.rho = check_positive(rho, "rho", allow_zero=True)
        self.rho_term = self.rho
        self.eta = check_positive(eta, "eta", allow_zero=True)
        self.beta = check_probability(beta, "beta")
        self.tau_min, self.tau_max = _check_tau_bounds(self.temperature, tau_min, tau_max)
        self.grad_tau_clip = _check_clip(grad_tau_clip)

    @torch.no_grad()
    def _temperature_step(
        self, tau_buf: Tensor, momentum_buf: Tensor, index: Tensor, tau: Tensor, grad: Tensor
    ) -> None:
        """iSogCLR's temperature update of the samples ``index`` (one place for both variants).

        ``grad`` is the derivative of the objective with respect to their temperatures ``tau``;
        optionally clipped to ``[-grad_tau_clip, grad_tau_clip]``, it takes one momentum step,
        ``m <- (1 - beta) m + beta grad``, ``tau <- clip(tau - eta m, tau_min, tau_max)``, written to
        the state buffers ``momentum_buf`` and ``tau_buf``.
        """
        if self.grad_tau_clip is not None:
            grad = grad.clamp(-self.grad_tau_clip, self.grad_tau_clip)
        m_old = momentum_buf[index].to(device=grad.device, dtype=grad.dtype)
        m = (1.0 - self.beta) * m_old + self.beta * grad
        new_tau = (tau - self.eta * m).clamp(self.tau_min, self.tau_max)
        _check_state_finite(self, "tau_momentum", m)
        momentum_buf[index] = m.to(momentum_buf.dtype).to(momentum_buf.device)
        tau_buf[index] = new_tau.to(tau_buf.dtype).to(tau_buf.device)


class SogCLR(_GlobalContrastive):
    r"""SogCLR: global contrastive loss with per-sample moving averages, one fixed temperature.

    For a batch of ``N`` instances with two views (anchors ``a_i`` = view 0, ``b_i`` = view 1),
    anchor ``a_i`` has the ``|S_i| = 2(N-1)`` negatives ``S_i`` = every row of the two views except
    ``a_i`` and its positive ``b_i`` (``b_i`` symmetric). Per batch (``docs/methods.md``, section 2.7,
    steps 1-4):

    .. math::
        g_i = \frac{1}{|S_i|}\sum_{z \in S_i} e^{s(a_i,z)/\tau}, \qquad
        u_i \leftarrow (1-\gamma) u_i + \gamma g_i, \qquad
        p_{iz} = \mathrm{sg}\Big[\frac{e^{s(a_i,z)/\tau}}{u_i}\Big],

    .. math::
        \ell_i^a = -s(a_i,b_i) + \frac{1}{|S_i|}\sum_{z\in S_i} p_{iz}\, s(a_i,z), \qquad
        L = \frac{1}{N}\sum_i (\ell_i^a + \ell_i^b).

    ``u`` is updated separately for both views from the same old ``u_i`` and stored as their mean.
    Only the *gradient* of ``L`` matters: it is the stochastic gradient of ``tau log u_i`` (the
    objective multiplied by ``tau``). With ``gamma = 1`` and fixed ``tau`` it equals ``2 tau`` times
    the gradient of the symmetric DCL loss on the same batch. The value of the objective, ``tau log
    u_i - s(a_i, b_i)`` averaged over both views' anchors, is reported by :meth:`objective` (and
    ``last_objective``); use that for curves.

    Gamma schedule: a sample's first visit always uses ``gamma = 1`` (its ``u`` starts at the batch
    estimate, as LibAUC's first-visit rule); afterwards ``"constant"`` uses ``gamma`` and
    ``"cosine"`` decays from 1 at epoch 0 to ``gamma`` at ``gamma_decay_epochs`` as
    ``gamma + (1 - gamma) (1 + cos(pi e / E)) / 2`` (the schedule of LibAUC / FastCLIP), which needs
    :meth:`set_epoch` (or :meth:`adjust_gamma`) once per epoch. Unlike LibAUC's batch-level rule
    ("first visit" when *all* stored ``u`` of the batch are 0), the rule here is per sample.

    Numerics: ``g_i`` and ``u_i`` reach ``e^{1/tau}`` (``e^{200}`` at ``tau = 0.005``, beyond
    float32), so everything is computed in the log domain (``log g_i`` is the engine's
    log-sum-exp, the weight is ``g_i / u_i = exp(log g_i - log u_i)``), and ``u_i`` is stored as
    ``u[i] * exp(u_log_scale[i])``: the log-scale is 0 (``u`` is the plain moving average)
    unless ``|log u_i|`` exceeds about a quarter of the dtype's exponent range (22 in float32),
    and then a multiple of that step which keeps ``u[i]`` in range. Values are exact (no clamp but
    ``eps``) and the state is finite at any temperature; :meth:`log_u` gives ``log u_i``. A
    state holding inf or NaN (written by an older version) is refused with a ``ValueError``.

    State and modes: ``u`` and ``u_log_scale`` are persistent buffers of ``num_samples`` entries
    (plus ``schedule_epoch``), so ``state_dict`` checkpoints them (a state dict without
    ``u_log_scale`` loads with a log-scale of 0); they follow the module's device and dtype
    (keep the loss on CPU to keep the state off the accelerator: the index and values are moved as
    needed; ``.double()`` gives float64 state). The state is updated **only in training mode**. In
    eval mode nothing is written: ``u_i`` is replaced by the batch estimate ``g_i`` (as on a first
    visit), ``index`` is optional (validation samples usually have no state), and the returned value
    is the same surrogate.

    Memory: the partition sums and the gradient go through the blockwise engine; a no-grad blockwise
    pass computes the softmax-mean similarity for the surrogate's value. No ``N x N`` matrix is
    stored.

    Paper: Yuan et al., "Provable Stochastic Optimization for Global Contrastive Learning: Small
    Batch Does Not Harm Performance" (ICML 2022); reference behaviour LibAUC ``GCLoss_v1``.

    Defaults (LibAUC ``GCLoss_v1``): ``temperature=0.1``, ``gamma=0.9``, ``eps=1e-8`` (lower clamp
    of ``u``). ``gamma_decay_epochs=10`` is this library's choice (only used by ``"cosine"``).

    Args:
        num_samples: size of the training set; ``index`` values must lie in ``[0, num_samples)``.
        temperature: the fixed temperature ``tau`` (> 0).
        gamma: moving-average factor in (0, 1] (the final value of the cosine schedule).
        gamma_schedule: ``"constant"`` | ``"cosine"``.
        gamma_decay_epochs: epochs of the cosine decay.
        eps: lower clamp of ``u``.
        reduction: ``"mean"`` | ``"sum"`` | ``"none"`` (``(N,)`` terms ``l_i^a + l_i^b``).
        chunk_size: anchors per block (None: automatic).

    Shape:
        views ``(N, 2, D)`` with ``N >= 2``; index ``(N,)`` integer dataset indices, distinct,
        required in training mode.

    Example:
        >>> import torch
        >>> from contrastkit.losses import SogCLR
        >>> _ = torch.manual_seed(0)
        >>> loss_fn = SogCLR(num_samples=100)  # the training-set size
        >>> views, index = torch.randn(8, 2, 16), torch.arange(8)  # index: dataset indices of the batch
        >>> loss = loss_fn(views, index)
        >>> loss.shape, bool(torch.isfinite(loss_fn.objective()))
        (torch.Size([]), True)
        >>> loss_fn.u.shape  # per-sample state, saved by state_dict
        torch.Size([100])
    """

    def __init__(
        self,
        *,
        num_samples: int,
        temperature: float = 0.1,
        gamma: float = 0.9,
        gamma_schedule: str = "constant",
        gamma_decay_epochs: int = 10,
        eps: float = 1e-8,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples=num_samples,
            gamma=gamma,
            gamma_schedule=gamma_schedule,
            gamma_decay_epochs=gamma_decay_epochs,
            eps=eps,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        self.temperature = check_positive(temperature, "temperature")
        self.register_buffer("u", torch.zeros(self.num_samples))
        self.register_buffer("u_log_scale", torch.zeros(self.num_samples))

    # hooks overridden by ISogCLR
    rho_term: float = 0.0
    u: Tensor
    u_log_scale: Tensor

    def _batch_tau(
        self, index: Tensor | None, n: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        return torch.full((n,), self.temperature, device=device, dtype=dtype)

    def _update_tau(
        self, index: Tensor, tau: Tensor, log_u_v: Tensor, w: Tensor, mean_s: Tensor
    ) -> None:
        """No temperature state in SogCLR."""

    # -- the state u, stored as a mantissa and a log-scale -----------------------------------------

    def log_u(self) -> Tensor:
        """``log`` of every sample's moving average ``u_i`` (``-inf`` where never visited).

        ``u_i = u[i] * exp(u_log_scale[i])``; computed in float64 (``u_i`` itself may exceed
        float32 at small temperatures; its log never does).
        """
        return torch.log(self.u.double()) + self.u_log_scale.double()

    def _read_log_u(self, idx: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
        state_idx = idx.to(self.u.device)
        mantissa = self.u[state_idx].to(device=device, dtype=dtype)
        scale = self.u_log_scale[state_idx].to(device=device, dtype=dtype)
        bad = ~torch.isfinite(mantissa) | (mantissa < 0) | ~torch.isfinite(scale)
        if bool(bad.any()):
            raise ValueError(
                f"{type(self).__name__}'s state u holds {int(bad.sum())} invalid value(s) (inf, NaN "
                "or < 0) for the dataset indices of this batch: the state is corrupt (e.g. a "
                "checkpoint written before the state was kept finite); reset it with "
                "loss.u.zero_() and loss.u_log_scale.zero_()"
            )
        return torch.log(mantissa) + scale

    def _write_log_u(self, idx: Tensor, log_u: Tensor) -> None:
        """Store ``exp(log_u)`` as ``u * exp(u_log_scale)`` with ``u`` inside its dtype's range.

        The log-scale is a multiple of a step ``L`` (about a quarter of the dtype's largest
        exponent: 22 for float32 and bfloat16, 177 for float64), so it is 0 and ``u`` is the
        plain moving average whenever ``|log u| < L``, and ``u`` stays within ``(e^-L, e^L)``
        otherwise: the state is exact and finite at any temperature.
        """
        _check_state_finite(self, "u", log_u)
        step = float(math.floor(math.log(torch.finfo(self.u.dtype).max) / 4.0))
        scale = torch.trunc(log_u / step) * step
        state_idx = idx.to(self.u.device)
        self.u[state_idx] = torch.exp(log_u - scale).to(self.u.dtype).to(self.u.device)
        self.u_log_scale[state_idx] = scale.to(self.u_log_scale.dtype).to(self.u.device)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # A state dict written before u_log_scale existed holds the plain moving average in u.
        if prefix + "u" in state_dict and prefix + "u_log_scale" not in state_dict:
            state_dict[prefix + "u_log_scale"] = torch.zeros_like(state_dict[prefix + "u"])
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def forward(self, views: Tensor, index: Tensor | None = None) -> Tensor:
        batch = make_view_batch(views)
        if batch.v != 2:
            raise ValueError(
                f"{type(self).__name__} takes exactly two views per instance, views of shape "
                f"(N, 2, D); got V = {batch.v}"
            )
        n = check_rows(views, "views", self, minimum=2, what="instances")
        idx = self._index(index, n)
        z = batch.rows
        dtype = _acc_dtype(z)
        tau = self._batch_tau(idx, n, z.device, dtype)
        tau2 = tau.repeat(2)
        beta = 1.0 / tau2
        lse = self_logsumexp(
            z, beta, groups=batch.groups, group_mode="exclude", chunk_size=self.chunk_size
        )
        lse_d = lse.detach()
        zd = z.detach()
        mean_s, _ = masked_softmax_stats(
            zd * beta.to(zd.dtype)[:, None],
            zd,
            beta,
            lse_d,
            anchor_groups=batch.groups,
            candidate_groups=batch.groups,
            group_mode="exclude",
            chunk_size=self.chunk_size,
        )
        # Log domain throughout: at tau = 0.005 the partition mean g_i = e^{s/tau} reaches e^{200},
        # beyond float32 (e^{88.7}); its log and the weight w = g / u = e^{log g - log u} do not.
        log_g = lse_d - math.log(2 * (n - 1))
        log_eps = math.log(self.eps)
        if self.training:
            assert idx is not None
            log_u_old = self._read_log_u(idx, z.device, dtype)
            gam = self._gamma_rows(torch.isneginf(log_u_old), log_u_old).repeat(2)
            log_u_v = torch.logaddexp(
                torch.log1p(-gam) + log_u_old.repeat(2), torch.log(gam) + log_g
            ).clamp(min=log_eps)
        else:
            log_u_v = log_g.clamp(min=log_eps)
        w = torch.exp(log_g - log_u_v)
        pos = (z[:n] * z[n:]).sum(dim=1).repeat(2)
        terms_v = w * (mean_s + tau2 * (lse - lse_d)) - pos
        terms = terms_v[:n] + terms_v[n:]
        with torch.no_grad():
            objective = tau2 * (log_u_v + self.rho_term) - pos.detach()
            self.last_objective = objective.mean()
            if self.training:
                assert idx is not None
                # u is stored as the mean of the two views' moving averages
                log_u_new = torch.logaddexp(log_u_v[:n], log_u_v[n:]) - math.log(2.0)
                _check_state_finite(self, "u", log_u_new)  # before anything is written
                self._update_tau(idx.to(self.u.device), tau, log_u_v, w, mean_s)
                self._write_log_u(idx, log_u_new)
        return reduce_terms(terms, self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, {self._gamma_repr()}"


def _check_tau_bounds(temperature: float, tau_min: float, tau_max: float) -> tuple[float, float]:
    lo = check_positive(tau_min, "tau_min")
    hi = check_positive(tau_max, "tau_max")
    if lo > hi:
        raise ValueError(f"tau_min must be <= tau_max, got tau_min={tau_min}, tau_max={tau_max}")
    if not lo <= temperature <= hi:
        raise ValueError(
            f"the initial temperature must lie in [tau_min, tau_max] = [{lo}, {hi}], "
            f"got {temperature}"
        )
    return lo, hi


def _check_clip(grad_tau_clip: float | None) -> float | None:
    if grad_tau_clip is None:
        return None
    return check_positive(grad_tau_clip, "grad_tau_clip")


class ISogCLR(SogCLR):
    r"""iSogCLR: SogCLR with an individual, learned temperature per sample (unimodal).

    Same loss, surrogate and state as :class:`SogCLR` (read it first), but anchor ``i`` uses its own
    ``tau_i`` (both views), and after each training batch the temperatures take one momentum step on
    the objective ``tau_i log u_i + tau_i rho`` without autograd (``docs/methods.md``, section 2.7,
    step 5):

    .. math::
        \nabla\tau_i = \log u_i + \rho
            - \frac{1}{|S_i|}\sum_{z\in S_i} p_{iz}\,\frac{s(a_i,z)}{\tau_i}
        \quad\text{(mean of the two views)},

    .. math::
        m_i \leftarrow (1-\beta) m_i + \beta \nabla\tau_i, \qquad
        \tau_i \leftarrow \mathrm{clip}(\tau_i - \eta m_i, \tau_{\min}, \tau_{\max}).

    (The positive similarity cancels out of the derivative, so raw similarities are exact.)
    Optionally ``grad_tau_clip=3.0`` clips ``nabla tau_i`` to ``[-3, 3]`` before the momentum, as
    the official iSogCLR repository does (LibAUC does not clip; default ``None``).

    The reported objective (:meth:`objective`) is ``tau_i log u_i + tau_i rho - s(a_i, b_i)``
    averaged over the anchors of both views. State: buffers ``u``, ``tau`` (initialised to
    ``temperature``) and ``tau_momentum`` (``m``), ``num_samples`` entries each, persistent. In eval
    mode the temperatures are read (``tau[index]`` when ``index`` is given, else the initial
    ``temperature``) and never written.

    Paper: Qiu et al., "Not All Semantics are Created Equal: Contrastive Self-supervised Learning
    with Automatic Temperature Individualization" (ICML 2023); reference behaviour LibAUC
    ``GCLoss_v1`` and zhqiu/contrastive-learning-iSogCLR.

    Defaults (LibAUC ``GCLoss_v1`` with ``enable_isogclr=True``): ``temperature=0.1`` (initial tau),
    ``gamma=0.9``, ``rho=0.3``, ``eta=0.01``, ``beta=0.9``, ``tau_min=0.05``, ``tau_max=0.7``,
    ``eps=1e-8``. (Official repo, CIFAR-100: rho 0.4, gamma 0.8, beta 0.5, eta 0.03, tau_max 1.0,
    clip 3.)

    Args:
        rho: the DRO radius ``rho`` (>= 0).
        eta: step size of the temperature update (>= 0; 0 freezes the temperatures).
        beta: momentum factor in [0, 1] of the temperature gradient.
        tau_min, tau_max: bounds of the temperatures.
        grad_tau_clip: clip of the temperature gradient (None: no clipping).
        The other arguments are those of :class:`SogCLR`.

    Example:
        >>> import torch
        >>> from contrastkit.losses import ISogCLR
        >>> _ = torch.manual_seed(0)
        >>> loss_fn = ISogCLR(num_samples=100)
        >>> loss = loss_fn(torch.randn(8, 2, 16), torch.arange(8))
        >>> loss.shape, bool(((loss_fn.tau >= 0.05) & (loss_fn.tau <= 0.7)).all())
        (torch.Size([]), True)
    """

    tau: Tensor
    tau_momentum: Tensor

    def __init__(
        self,
        *,
        num_samples: int,
        temperature: float = 0.1,
        gamma: float = 0.9,
        rho: float = 0.3,
        eta: float = 0.01,
        beta: float = 0.9,
        tau_min: float = 0.05,
        tau_max: float = 0.7,
        grad_tau_clip: float | None = None,
        gamma_schedule: str = "constant",
        gamma_decay_epochs: int = 10,
        eps: float = 1e-8,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples=num_samples,
            temperature=temperature,
            gamma=gamma,
            gamma_schedule=gamma_schedule,
            gamma_decay_epochs=gamma_decay_epochs,
            eps=eps,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        self._init_temperature_update(
            rho=rho,
            eta=eta,
            beta=beta,
            tau_min=tau_min,
            tau_max=tau_max,
            grad_tau_clip=grad_tau_clip,
        )
        self.register_buffer("tau", torch.full((self.num_samples,), self.temperature))
        self.register_buffer("tau_momentum", torch.zeros(self.num_samples))

    def _batch_tau(
        self, index: Tensor | None, n: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        if index is None:
            return super()._batch_tau(index, n, device, dtype)
        return self.tau[index.to(self.tau.device)].to(device=device, dtype=dtype)

    def _update_tau(
        self, index: Tensor, tau: Tensor, log_u_v: Tensor, w: Tensor, mean_s: Tensor
    ) -> None:
        n = tau.shape[0]
        grad_v = log_u_v + self.rho - w * mean_s / tau.repeat(2)
        grad = 0.5 * (grad_v[:n] + grad_v[n:])
        self._temperature_step(self.tau, self.tau_momentum, index, tau, grad)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rho={self.rho}, eta={self.eta}, beta={self.beta}, "
            f"tau_min={self.tau_min}, tau_max={self.tau_max}, grad_tau_clip={self.grad_tau_clip}"
        )


# --------------------------------------------------------------------------------------------------
# Bimodal (image-text)
# --------------------------------------------------------------------------------------------------


class SogCLRBimodal(_GlobalContrastive):
    r"""SogCLR for image-text pairs (LibAUC ``GCLoss_v2``): two states, one per anchor modality.

    For pair ``i`` with ``h_{ik} = s(x_i, t_k) - s(x_i, t_i)`` (image anchor, the ``N-1`` texts
    ``k != i`` as negatives; text anchors symmetric with ``s(x_k, t_i) - s(x_i, t_i)``):

    .. math::
        g_i = \frac{1}{N-1}\sum_{k\ne i} e^{h_{ik}/\tau - b_i}, \quad
        u_i \leftarrow (1-\gamma)\, u_i\, e^{b_i^{old} - b_i} + \gamma g_i, \quad
        p_{ik} = \mathrm{sg}\Big[\frac{e^{h_{ik}/\tau - b_i}}{u_i}\Big],

    .. math::
        L = \frac{1}{N}\sum_i \tfrac12\Big(\sum_{k\ne i} p^{x}_{ik} h^{x}_{ik}
            + \sum_{k\ne i} p^{t}_{ik} h^{t}_{ik}\Big)

    where ``b_i = max(b_i^old, max_k h_ik / tau)`` is a running per-sample maximum (starting at 0)
    that keeps ``exp`` from overflowing at the small temperatures of image-text training; ``u`` is
    stored in that shifted scale (``u_i e^{b_i}`` is the moving average of the partition function).
    As in the reference, the sum over negatives is *not* divided by ``N - 1`` (a constant
    learning-rate scale). Embeddings are L2-normalised here (cosine similarity; LibAUC expects
    normalised features). ``u`` is clamped below at ``eps`` as in the reference: an anchor whose
    negatives all lie more than about ``46 tau`` (``-log eps``) below its positive gets ``u = eps``
    and a vanishing gradient.

    The reported objective is ``tau (log u_i + b_i)`` (+ ``tau rho`` for iSogCLR) averaged over
    image and text anchors. State buffers: ``u_image``, ``u_text``, ``b_image``, ``b_text`` (and the
    gamma schedule's ``schedule_epoch``); training mode only, as in :class:`SogCLR` (eval mode uses
    the batch estimate, ``b = max(0, max_k h_ik / tau)``).

    Paper: Yuan et al. (ICML 2022, SogCLR) for the bimodal loss; reference behaviour LibAUC
    ``GCLoss_v2``.

    Defaults (LibAUC ``GCLoss_v2``): ``temperature=0.01``, ``gamma=0.9``, ``eps=1e-20``.

    Args:
        num_samples, temperature, gamma, gamma_schedule, gamma_decay_epochs, eps, reduction,
        chunk_size: as in :class:`SogCLR`; ``reduction="none"`` gives the ``(N,)`` per-pair terms.

    Shape:
        image ``(N, D)``, text ``(N, D)`` with ``N >= 2``; index ``(N,)`` (required in training
        mode).

    Example:
        >>> import torch
        >>> from contrastkit.losses import SogCLRBimodal
        >>> _ = torch.manual_seed(0)
        >>> loss_fn = SogCLRBimodal(num_samples=100)
        >>> image, text = torch.randn(8, 16), torch.randn(8, 16)
        >>> loss = loss_fn(image, text, torch.arange(8))
        >>> loss.shape, bool(torch.isfinite(loss))
        (torch.Size([]), True)
    """

    def __init__(
        self,
        *,
        num_samples: int,
        temperature: float = 0.01,
        gamma: float = 0.9,
        gamma_schedule: str = "constant",
        gamma_decay_epochs: int = 10,
        eps: float = 1e-20,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples=num_samples,
            gamma=gamma,
            gamma_schedule=gamma_schedule,
            gamma_decay_epochs=gamma_decay_epochs,
            eps=eps,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        self.temperature = check_positive(temperature, "temperature")
        for side in ("image", "text"):
            self.register_buffer(f"u_{side}", torch.zeros(self.num_samples))
            self.register_buffer(f"b_{side}", torch.zeros(self.num_samples))

    rho_term: float = 0.0

    def _batch_tau(
        self, side: str, index: Tensor | None, n: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        return torch.full((n,), self.temperature, device=device, dtype=dtype)

    def _update_tau(self, side: str, index: Tensor, tau: Tensor, grad: Tensor) -> None:
        """No temperature state in SogCLR."""

    def _side(
        self,
        side: str,
        anchors: Tensor,
        candidates: Tensor,
        diag: Tensor,
        idx: Tensor | None,
    ) -> tuple[Tensor, Tensor]:
        """Per-pair surrogate terms and objective for one anchor modality; updates its state."""
        n = anchors.shape[0]
        dtype = _acc_dtype(anchors)
        tau = self._batch_tau(side, idx, n, anchors.device, dtype)
        beta = 1.0 / tau
        self_index = torch.arange(n, device=anchors.device)
        scaled = anchors * beta.to(anchors.dtype)[:, None]
        lse = masked_logsumexp(
            scaled, candidates, self_index=self_index, chunk_size=self.chunk_size
        )
        lse_d = lse.detach()
        mean_s, max_s = masked_softmax_stats(
            scaled.detach(),
            candidates.detach(),
            beta,
            lse_d,
            self_index=self_index,
            chunk_size=self.chunk_size,
        )
        d = diag.detach().to(dtype)
        log_mean = lse_d - d / tau - math.log(n - 1)  # log mean_k exp(h_ik / tau)
        h_max = (max_s - d) / tau
        u_buf: Tensor = getattr(self, f"u_{side}")
        b_buf: Tensor = getattr(self, f"b_{side}")
        if self.training:
            assert idx is not None
            state_idx = idx.to(u_buf.device)
            u_old = u_buf[state_idx].to(device=anchors.device, dtype=dtype)
            b_old = b_buf[state_idx].to(device=anchors.device, dtype=dtype)
            b_new = torch.maximum(b_old, h_max)
            gam = self._gamma_rows(u_old <= 0, u_old)
            g = torch.exp(log_mean - b_new)
            u_new = ((1.0 - gam) * u_old * torch.exp(b_old - b_new) + gam * g).clamp(min=self.eps)
        else:
            b_new = h_max.clamp(min=0.0)
            g = torch.exp(log_mean - b_new)
            u_new = g.clamp(min=self.eps)
        w = (n - 1) * g / u_new
        terms = w * (mean_s + tau * (lse - lse_d) - diag.to(dtype))
        with torch.no_grad():
            log_u = torch.log(u_new) + b_new
            objective = tau * (log_u + self.rho_term)
            if self.training:
                assert idx is not None
                _check_state_finite(self, f"u_{side}", u_new)  # before anything is written
                _check_state_finite(self, f"b_{side}", b_new)
                state_idx = idx.to(u_buf.device)
                u_buf[state_idx] = u_new.to(u_buf.dtype).to(u_buf.device)
                b_buf[state_idx] = b_new.to(b_buf.dtype).to(b_buf.device)
                grad = log_u + self.rho_term - w * (mean_s - d) / ((n - 1) * tau)
                self._update_tau(side, state_idx, tau, grad)
        return terms, objective

    def forward(self, image: Tensor, text: Tensor, index: Tensor | None = None) -> Tensor:
        x = check_embeddings(image, "image")
        t = check_embeddings(text, "text", dim=x.shape[1])
        if t.shape[0] != x.shape[0]:
            raise ValueError(
                "image and text must hold the same number of pairs; "
                f"got {x.shape[0]} and {t.shape[0]}"
            )
        if x.dtype != t.dtype:
            raise TypeError(f"image and text differ in dtype: {x.dtype} vs {t.dtype}")
        n = check_rows(x, "image", self, minimum=2, what="pairs")
        idx = self._index(index, n)
        x, t = F.normalize(upcast_half(x), dim=1), F.normalize(upcast_half(t), dim=1)
        diag = (x * t).sum(dim=1)
        terms_x, obj_x = self._side("image", x, t, diag, idx)
        terms_t, obj_t = self._side("text", t, x, diag, idx)
        self.last_objective = 0.5 * (obj_x.mean() + obj_t.mean())
        return reduce_terms(0.5 * (terms_x + terms_t), self.reduction)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}, {self._gamma_repr()}"


class ISogCLRBimodal(SogCLRBimodal):
    r"""iSogCLR for image-text pairs: an individual temperature per sample and per modality.

    :class:`SogCLRBimodal` (read it first) with ``tau_image[i]`` for image anchors and
    ``tau_text[i]`` for text anchors, each updated after a training batch without autograd (LibAUC
    ``GCLoss_v2``):

    .. math::
        \nabla\tau_i = \log u_i + b_i + \rho
            - \frac{1}{N-1}\sum_{k\ne i} p_{ik}\,\frac{h_{ik}}{\tau_i},
        \quad m_i \leftarrow (1-\beta) m_i + \beta\nabla\tau_i, \quad
        \tau_i \leftarrow \mathrm{clip}(\tau_i - \eta m_i, \tau_{\min}, \tau_{\max}).

    Paper: Qiu et al. (ICML 2023, iSogCLR); reference behaviour LibAUC ``GCLoss_v2``.

    Defaults (LibAUC ``GCLoss_v2``): ``temperature=0.01`` (initial), ``rho=6.0``, ``eta=0.01``,
    ``beta=0.9``, ``tau_min=0.005``, ``tau_max=0.05``, ``gamma=0.9``, ``eps=1e-20``;
    ``grad_tau_clip=None`` (3.0 reproduces the official repository's clip). State buffers add
    ``tau_image``, ``tau_text``, ``tau_momentum_image``, ``tau_momentum_text``.

    Example:
        >>> import torch
        >>> from contrastkit.losses import ISogCLRBimodal
        >>> _ = torch.manual_seed(0)
        >>> loss_fn = ISogCLRBimodal(num_samples=100)
        >>> loss = loss_fn(torch.randn(8, 16), torch.randn(8, 16), torch.arange(8))
        >>> loss.shape, loss_fn.tau_image.shape
        (torch.Size([]), torch.Size([100]))
    """

    def __init__(
        self,
        *,
        num_samples: int,
        temperature: float = 0.01,
        gamma: float = 0.9,
        rho: float = 6.0,
        eta: float = 0.01,
        beta: float = 0.9,
        tau_min: float = 0.005,
        tau_max: float = 0.05,
        grad_tau_clip: float | None = None,
        gamma_schedule: str = "constant",
        gamma_decay_epochs: int = 10,
        eps: float = 1e-20,
        reduction: str = "mean",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__(
            num_samples=num_samples,
            temperature=temperature,
            gamma=gamma,
            gamma_schedule=gamma_schedule,
            gamma_decay_epochs=gamma_decay_epochs,
            eps=eps,
            reduction=reduction,
            chunk_size=chunk_size,
        )
        self._init_temperature_update(
            rho=rho,
            eta=eta,
            beta=beta,
            tau_min=tau_min,
            tau_max=tau_max,
            grad_tau_clip=grad_tau_clip,
        )
        for side in ("image", "text"):
            self.register_buffer(f"tau_{side}", torch.full((self.num_samples,), self.temperature))
            self.register_buffer(f"tau_momentum_{side}", torch.zeros(self.num_samples))

    def _batch_tau(
        self, side: str, index: Tensor | None, n: int, device: torch.device, dtype: torch.dtype
    ) -> Tensor:
        if index is None:
            return super()._batch_tau(side, index, n, device, dtype)
        buf: Tensor = getattr(self, f"tau_{side}")
        return buf[index.to(buf.device)].to(device=device, dtype=dtype)

    def _update_tau(self, side: str, index: Tensor, tau: Tensor, grad: Tensor) -> None:
        tau_buf: Tensor = getattr(self, f"tau_{side}")
        m_buf: Tensor = getattr(self, f"tau_momentum_{side}")
        self._temperature_step(tau_buf, m_buf, index, tau, grad)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, rho={self.rho}, eta={self.eta}, beta={self.beta}, "
            f"tau_min={self.tau_min}, tau_max={self.tau_max}, grad_tau_clip={self.grad_tau_clip}"
        )
