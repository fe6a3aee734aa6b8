"""SCARF-style corruption of tabular rows from the features' empirical marginal distributions.

SCARF (Bahri, Jiang, Tay & Metzler, "SCARF: Self-Supervised Contrastive Learning using Random
Feature Corruption", ICLR 2022): for each row, a random subset of ``q = round(c * F)`` of its
``F`` features is chosen, and each chosen feature is replaced by a value drawn from that
feature's empirical marginal distribution, i.e. the same feature of a uniformly random row of the
training table. The positive pair is the original row and its corrupted copy. The paper's default
corruption rate is ``c = 0.6`` [recall: not re-checked here].

Here everything is batched: per row, the ``q`` features with the smallest random keys are
corrupted (a uniform subset of exactly ``q``), and the replacements are one ``gather`` from the
marginal table. ``mode="bernoulli"`` corrupts each feature independently with probability ``c``
instead (the number then varies per row, as in some re-implementations).

Rows may hold floats or integer codes (categorical features); values are copied, never computed,
so any dtype works as long as the marginal table can be cast to it.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_probability, check_tensor
from contrastkit.views.image import _gen_device

__all__ = ["CORRUPTION_MODES", "SCARF_CORRUPTION_RATE", "ScarfCorruption", "scarf_corrupt"]

SCARF_CORRUPTION_RATE = 0.6  # Bahri et al. (2022), default corruption rate [recall]
CORRUPTION_MODES = ("exact", "bernoulli")


def _check_table(x: object, name: str) -> Tensor:
    t = check_tensor(x, name)
    if t.dim() != 2:
        raise ValueError(
            f"{name} must have shape (rows, features); got a tensor of rank {t.dim()} with shape "
            f"{tuple(t.shape)}"
        )
    if min(t.shape) < 1:
        raise ValueError(f"{name} must not be empty; got shape {tuple(t.shape)}")
    if t.is_floating_point() and not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite (impute missing values first)")
    return t


def _randint(
    high: int, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    r = torch.randint(0, high, shape, generator=generator, device=_gen_device(generator, device))
    return r.to(device)


def _uniform(
    shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device
) -> Tensor:
    r = torch.rand(shape, generator=generator, device=_gen_device(generator, device))
    return r.to(device)


def scarf_corrupt(
    x: Tensor,
    marginals: Tensor | None = None,
    *,
    corruption_rate: float = SCARF_CORRUPTION_RATE,
    mode: str = "exact",
    generator: torch.Generator | None = None,
) -> Tensor:
    """Corrupt each row of ``x`` with values drawn from the features' empirical marginals.

    Args:
        x: Rows ``(B, F)``.
        marginals: The table ``(R, F)`` whose columns are the empirical marginals (normally the
            training set); ``None`` uses the batch ``x`` itself.
        corruption_rate: Fraction ``c`` of the features to corrupt, in [0, 1].
        mode: ``"exact"`` (``round(c * F)`` features per row, as the paper) or ``"bernoulli"``
            (each feature with probability ``c``).
        generator: Source of randomness.

    Returns:
        Tensor of the shape, dtype and device of ``x``.
    """
    x = _check_table(x, "x")
    m = x if marginals is None else _check_table(marginals, "marginals")
    if m.shape[1] != x.shape[1]:
        raise ValueError(
            f"marginals must have the features of x ({x.shape[1]} columns); got shape "
            f"{tuple(m.shape)}"
        )
    c = check_probability(corruption_rate, "corruption_rate")
    check_choice(mode, "mode", CORRUPTION_MODES)
    b, f = x.shape
    dev = x.device
    keys = _uniform((b, f), generator, dev)
    if mode == "exact":
        q = round(c * f)
        rank = torch.argsort(torch.argsort(keys, dim=1), dim=1)
        corrupt = rank < q
    else:
        corrupt = keys < c
    rows = _randint(m.shape[0], (b, f), generator, dev)
    replacement = m.to(device=dev, dtype=x.dtype).gather(0, rows)
    return torch.where(corrupt, replacement, x)


class ScarfCorruption(nn.Module):
    """SCARF views: corrupt rows with values from stored empirical marginals.

    The marginal table (normally the training set, or a random subset of it) is a buffer, so it
    moves with ``.to()`` and is saved in the state dict. Without a table, each batch is its own
    marginal table.

    Example:
        >>> data = torch.randn(1000, 12)
        >>> scarf = ScarfCorruption(data)
        >>> v = scarf.views(data[:64], 2, generator=torch.Generator().manual_seed(0))
        >>> v.shape, bool((v[:, 0] == data[:64]).all())
        (torch.Size([64, 2, 12]), True)

    Args:
        marginals: Table ``(R, F)`` of rows whose columns are the empirical marginals, or
            ``None`` (use each batch).
        corruption_rate: Fraction of the features to corrupt (SCARF: 0.6 [recall]).
        mode: ``"exact"`` or ``"bernoulli"`` (see :func:`scarf_corrupt`).
    """

    marginals: Tensor | None

    def __init__(
        self,
        marginals: Tensor | None = None,
        *,
        corruption_rate: float = SCARF_CORRUPTION_RATE,
        mode: str = "exact",
    ) -> None:
        super().__init__()
        self.corruption_rate = check_probability(corruption_rate, "corruption_rate")
        self.mode = check_choice(mode, "mode", CORRUPTION_MODES)
        self.register_buffer("marginals", None)
        if marginals is not None:
            self.fit(marginals)

    def fit(self, data: Tensor) -> ScarfCorruption:
        """Store (a copy of) ``data`` ``(R, F)`` as the marginal table; returns ``self``."""
        self.marginals = _check_table(data, "data").detach().clone()
        return self

    def extra_repr(self) -> str:
        """Show the settings in ``repr``."""
        table = "batch" if self.marginals is None else tuple(self.marginals.shape)
        return f"corruption_rate={self.corruption_rate}, mode={self.mode!r}, marginals={table}"

    def forward(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """A corrupted copy of each row of ``x`` ``(B, F)``."""
        return scarf_corrupt(
            x,
            self.marginals,
            corruption_rate=self.corruption_rate,
            mode=self.mode,
            generator=generator,
        )

    def views(
        self,
        x: Tensor,
        n_views: int,
        *,
        generator: torch.Generator | None = None,
        keep_original: bool = True,
    ) -> Tensor:
        """``(B, V, F)`` views; with ``keep_original`` view 0 is ``x`` itself (SCARF's anchor).

        Args:
            x: Rows ``(B, F)``.
            n_views: Number of views V >= 1 (>= 2 with ``keep_original`` to get a pair).
            generator: Source of randomness.
            keep_original: Put the uncorrupted row first, as SCARF pairs the original row with
                its corruption; otherwise every view is corrupted independently.
        """
        x = _check_table(x, "x")
        if isinstance(n_views, bool) or not isinstance(n_views, int) or n_views < 1:
            raise ValueError(f"n_views must be an int >= 1; got {n_views!r}")
        b, f = x.shape
        k = n_views - 1 if keep_original else n_views
        parts = [x.unsqueeze(1)] if keep_original else []
        if k > 0:
            rep = x.unsqueeze(1).expand(b, k, f).reshape(b * k, f)
            parts.append(self.forward(rep, generator).view(b, k, f))
        return torch.cat(parts, dim=1)
