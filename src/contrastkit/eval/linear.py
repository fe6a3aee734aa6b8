"""Linear probe: multinomial logistic regression on frozen features, in torch.

The probe standardises the features with the statistics of the set it is fitted on, fits a softmax
classifier by full-batch L-BFGS (strong-Wolfe line search), chooses the L2 strength on a stratified
held-out split of the training set, refits on the whole training set with that strength and reports
the test accuracy.

The objective for weight decay ``lambda`` is::

    mean_i CE(W x_i + b, y_i) + (lambda / 2) * ||W||_F^2        (the bias is not penalised)

which is scikit-learn's ``LogisticRegression(C=1 / (lambda * n_fit))`` on the same standardised
data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_positive
from contrastkit.eval.features import _as_features, _as_labels, _check_int, _check_same_dim

__all__ = ["ProbeResult", "linear_probe"]


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of :func:`linear_probe`.

    Attributes:
        accuracy: Test accuracy of the classifier refitted on the whole training set.
        weight_decay: The L2 strength chosen on the validation split.
        val_accuracy: Validation accuracy of the chosen strength (fitted on the rest of the train
            set); NaN when no validation split could be held out (``fallback_weight_decay``).
        train_accuracy: Accuracy of the refitted classifier on the whole training set.
        val_accuracies: ``(weight_decay, val_accuracy)`` for every candidate strength, in the given
            order.
    """

    accuracy: float
    weight_decay: float
    val_accuracy: float
    train_accuracy: float
    val_accuracies: tuple[tuple[float, float], ...] = ()


class _Standardizer:
    """Per-feature standardisation with the (biased) statistics of a fitting set."""

    def __init__(self, x: Tensor) -> None:
        std, mean = torch.std_mean(x, dim=0, correction=0)
        self.mean = mean
        # Constant features (e.g. always-zero pixels) are left at 0 after centring. A float constant
        # c gets a rounding-error std of about eps * |c|, which must not be blown up to unit scale.
        eps = torch.finfo(x.dtype).eps
        constant = std <= 16 * eps * mean.abs()
        self.scale = torch.where(constant, torch.ones_like(std), std)

    def __call__(self, x: Tensor) -> Tensor:
        return (x - self.mean) / self.scale


def _loss_and_grad(
    x: Tensor, y: Tensor, weight: Tensor, bias: Tensor, weight_decay: float, chunk: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Penalised mean cross-entropy and its gradients, computed by hand in row blocks.

    Several times faster on CPU than autograd (no graph, fused in-place softmax gradient, and the
    weight gradient as one ``(C, N) @ (N, D)`` product).
    """
    n = x.shape[0]
    grad_wt = torch.zeros(weight.shape[1], weight.shape[0], dtype=x.dtype, device=x.device)
    grad_b = torch.zeros_like(bias)
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, n, chunk):
        xc = x[start : start + chunk]
        yc = y[start : start + chunk]
        logits = torch.addmm(bias, xc, weight)
        lse = torch.logsumexp(logits, dim=1)
        loss += (lse - logits.gather(1, yc[:, None]).squeeze(1)).sum(dtype=torch.float64)
        probs = torch.exp_(logits.sub_(lse[:, None]))
        probs[torch.arange(xc.shape[0], device=x.device), yc] -= 1.0
        grad_wt.addmm_(probs.T, xc)
        grad_b += probs.sum(dim=0)
    grad_w = grad_wt.T.div_(n)
    grad_b.div_(n)
    loss /= n
    if weight_decay > 0:
        loss += 0.5 * weight_decay * weight.double().pow(2).sum()
        grad_w.add_(weight, alpha=weight_decay)
    return loss.to(x.dtype), grad_w.contiguous(), grad_b


def _fit_softmax(
    x: Tensor,
    y: Tensor,
    n_classes: int,
    weight_decay: float,
    *,
    max_iter: int,
    tol: float,
    init: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """Minimise the L2-penalised mean cross-entropy by full-batch L-BFGS.

    Returns:
        ``(W, b)`` of shapes ``(D, C)`` and ``(C,)``.
    """
    d = x.shape[1]
    if init is None:
        weight = torch.zeros(d, n_classes, dtype=x.dtype, device=x.device)
        bias = torch.zeros(n_classes, dtype=x.dtype, device=x.device)
    else:
        weight, bias = init[0].clone(), init[1].clone()
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=max_iter,
        max_eval=max_iter * 5 // 4 + 1,
        history_size=20,
        tolerance_grad=tol,
        tolerance_change=1e-12,
        line_search_fn="strong_wolfe",
    )
    # Row blocks bound the (rows, C) logits for many classes. They are kept large: each block costs
    # a few parallel regions, and many small regions are slow when the cores are oversubscribed.
    chunk = max(1024, (1 << 24) // max(d, n_classes))

    def closure() -> Tensor:
        with torch.no_grad():
            loss, weight.grad, bias.grad = _loss_and_grad(x, y, weight, bias, weight_decay, chunk)
        return loss

    optimizer.step(closure)
    return weight, bias


def _accuracy(x: Tensor, y: Tensor, params: tuple[Tensor, Tensor]) -> float:
    if x.shape[0] == 0:
        return math.nan
    logits = x @ params[0] + params[1]
    return float((logits.argmax(dim=1) == y).double().mean())


def _stratified_split(y: Tensor, val_fraction: float, seed: int) -> tuple[Tensor, Tensor]:
    """Indices ``(fit, val)``: a seeded ``val_fraction`` of each class (>= 1 per class to fit)."""
    gen = torch.Generator().manual_seed(seed)
    y_cpu = y.cpu()
    fit_parts: list[Tensor] = []
    val_parts: list[Tensor] = []
    for c in torch.unique(y_cpu):
        idx = torch.nonzero(y_cpu == c).flatten()
        idx = idx[torch.randperm(idx.numel(), generator=gen)]
        n_val = min(round(val_fraction * idx.numel()), idx.numel() - 1)
        val_parts.append(idx[:n_val])
        fit_parts.append(idx[n_val:])
    fit = torch.sort(torch.cat(fit_parts)).values
    val = torch.sort(torch.cat(val_parts)).values
    return fit.to(y.device), val.to(y.device)


@torch.no_grad()
def linear_probe(
    train_features: Tensor | np.ndarray,
    train_labels: Tensor | np.ndarray,
    test_features: Tensor | np.ndarray,
    test_labels: Tensor | np.ndarray,
    *,
    weight_decays: Sequence[float] = (0.0, 1e-5, 1e-4, 1e-3, 1e-2),
    val_fraction: float = 0.1,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-5,
    fallback_weight_decay: float | None = None,
) -> ProbeResult:
    """Linear-probe accuracy of frozen features (multinomial logistic regression with L2).

    Steps: (1) split the training set, stratified by class and seeded, into a fitting part and a
    validation part of ``val_fraction``; (2) for each candidate weight decay, standardise with the
    fitting part's statistics, fit, and measure validation accuracy (candidates are fitted from the
    strongest to the weakest penalty, each warm-started from the previous solution); (3) keep the
    best (ties go to the larger weight decay), refit on the whole training set (standardised with
    its own statistics) and report test accuracy. Runs in float32 on the device of
    ``train_features``.

    Weight decay ``lambda`` multiplies ``||W||^2 / 2`` added to the *mean* cross-entropy, i.e.
    scikit-learn's ``C = 1 / (lambda * n)``; ``lambda = 0`` is an unpenalised fit, stopped by
    ``tol`` or ``max_iter`` (on separable data the weights would otherwise grow without bound).

    Args:
        train_features: ``(N_train, D)`` features.
        train_labels: ``(N_train,)`` integer labels (any integer values; at least two classes).
        test_features: ``(N_test, D)`` features.
        test_labels: ``(N_test,)`` integer labels; a class absent from the training set counts as an
            error.
        weight_decays: Candidate L2 strengths (each >= 0), at least one.
        val_fraction: Fraction of each class held out for choosing the weight decay, in ``(0, 1)``.
        seed: Seed of the validation split.
        max_iter: Maximum L-BFGS iterations per fit.
        tol: Stop when the largest absolute gradient entry falls below ``tol``.
        fallback_weight_decay: Used, without validation, when the training set is too small for
            ``val_fraction`` to hold out a sample (every class below about ``0.5 / val_fraction``
            samples); None raises instead.

    Returns:
        A :class:`ProbeResult`.

    Raises:
        ValueError: On wrong shapes, mismatched lengths or dims, NaN/inf, fewer than two classes, an
            empty validation split, a negative weight decay or an out-of-range ``val_fraction``.
    """
    train = _as_features(train_features, "train_features", min_rows=2)
    test = _as_features(test_features, "test_features")
    _check_same_dim(train, test, "train_features", "test_features")
    y_train_raw = _as_labels(train_labels, train.shape[0], "train_labels")
    y_test_raw = _as_labels(test_labels, test.shape[0], "test_labels")
    if isinstance(weight_decays, str) or not isinstance(weight_decays, Sequence):
        raise TypeError(
            f"weight_decays must be a sequence of numbers, got {type(weight_decays).__name__}"
        )
    if len(weight_decays) == 0:
        raise ValueError("weight_decays must hold at least one candidate L2 strength; got none")
    wds = [check_positive(w, "weight_decays[i]", allow_zero=True) for w in weight_decays]
    val_fraction = check_positive(val_fraction, "val_fraction")
    if val_fraction >= 1:
        raise ValueError(f"val_fraction must lie in (0, 1); got {val_fraction!r}")
    seed = _check_int(seed, "seed", minimum=0)
    max_iter = _check_int(max_iter, "max_iter")
    tol = check_positive(tol, "tol")
    if fallback_weight_decay is not None:
        fallback_weight_decay = check_positive(
            fallback_weight_decay, "fallback_weight_decay", allow_zero=True
        )

    device = train.device
    test = test.to(device)
    classes, y_train = torch.unique(y_train_raw.to(device), return_inverse=True)
    n_classes = int(classes.numel())
    if n_classes < 2:
        raise ValueError(
            "train_labels must hold at least two classes for a classifier; "
            f"got only {classes.tolist()}"
        )
    # Map test labels into [0, C); labels unseen in training get -1 (never predicted).
    y_test_dev = y_test_raw.to(device)
    pos = torch.searchsorted(classes, y_test_dev).clamp_max(n_classes - 1)
    y_test = torch.where(classes[pos] == y_test_dev, pos, torch.full_like(pos, -1))

    fit_idx, val_idx = _stratified_split(y_train, val_fraction, seed)
    if val_idx.numel() == 0 and fallback_weight_decay is not None:
        test_acc, train_acc = _refit_and_test(
            train, y_train, test, y_test, n_classes, fallback_weight_decay, max_iter, tol, None
        )
        return ProbeResult(
            accuracy=test_acc,
            weight_decay=fallback_weight_decay,
            val_accuracy=math.nan,
            train_accuracy=train_acc,
        )
    if val_idx.numel() == 0:
        raise ValueError(
            f"val_fraction = {val_fraction} leaves no validation sample (N_train = "
            f"{train.shape[0]}, {n_classes} classes); use a larger val_fraction or more data"
        )
    x_fit, y_fit = train[fit_idx], y_train[fit_idx]
    scaler = _Standardizer(x_fit)
    x_fit = scaler(x_fit)
    x_val = scaler(train[val_idx])
    y_val = y_train[val_idx]

    order = sorted(range(len(wds)), key=lambda i: -wds[i])
    val_acc: dict[int, float] = {}
    solutions: dict[int, tuple[Tensor, Tensor]] = {}
    init: tuple[Tensor, Tensor] | None = None
    for i in order:
        params = _fit_softmax(
            x_fit, y_fit, n_classes, wds[i], max_iter=max_iter, tol=tol, init=init
        )
        solutions[i] = init = params
        val_acc[i] = _accuracy(x_val, y_val, params)
    # Best validation accuracy; ties go to the larger weight decay (the earlier one in ``order``).
    best = max(order, key=lambda i: (val_acc[i], wds[i]))
    del x_fit, x_val

    test_acc, train_acc = _refit_and_test(
        train, y_train, test, y_test, n_classes, wds[best], max_iter, tol, solutions[best]
    )
    return ProbeResult(
        accuracy=test_acc,
        weight_decay=wds[best],
        val_accuracy=val_acc[best],
        train_accuracy=train_acc,
        val_accuracies=tuple((wds[i], val_acc[i]) for i in range(len(wds))),
    )


def _refit_and_test(
    train: Tensor,
    y_train: Tensor,
    test: Tensor,
    y_test: Tensor,
    n_classes: int,
    weight_decay: float,
    max_iter: int,
    tol: float,
    init: tuple[Tensor, Tensor] | None,
) -> tuple[float, float]:
    """Fit on the whole training set (standardised with its own statistics); test and train
    accuracy."""
    scaler = _Standardizer(train)
    x_train = scaler(train)
    final = _fit_softmax(
        x_train, y_train, n_classes, weight_decay, max_iter=max_iter, tol=tol, init=init
    )
    return _accuracy(scaler(test), y_test, final), _accuracy(x_train, y_train, final)
