r"""SepCLR: separating common from salient patterns with contrastive learning, on Fashion-MNIST.

Paper: Robin Louiset, Edouard Duchesnay, Antoine Grigis, Pietro Gori, "Separating common from
salient patterns with Contrastive Representation Learning", ICLR 2024.

Contrastive analysis: a background set (here plain Fashion-MNIST images) and a target set (other
Fashion-MNIST images with a salient pattern drawn over them) share common factors (the garment
class); the salient factor (which pattern) exists only in the target set. SepCLR trains a common
encoder ``c`` (L2-normalised head) and a salient encoder ``s`` (raw head) on two augmented views of
both sets, with the reference code's loss (``cifar_mnist/sep_clr_k-jem.py``):

.. math::
    L = \big[A(c_1, c_2) + 2\,\tfrac{U(c_1) + U(c_2)}{2}\big]
      + \beta_s \big[A(s_1, s_2)_{target} + 2\,\tfrac{U(s'_1) + U(s'_2)}{2}\big]
      + \beta_r \|s_{bg}\|^2 + \lambda\, \tfrac{JEM(c_1, s'_1) + JEM(c_2, s'_2)}{2}

with ``A`` the alignment ``||x - y||^2`` (:class:`~contrastkit.losses.Alignment`), ``U`` the
uniformity ``log mean exp(-||x - y||^2)`` (:class:`~contrastkit.losses.Uniformity`, ``t = 1``),
``s'`` the salient head with the background rows set to the null vector, and ``JEM`` the kernel
joint-entropy term (:class:`~contrastkit.losses.JointEntropy`, ``tau = 0.5``) that minimises the
mutual information between the two spaces; ``beta_s = beta_r = 1000`` and ``lambda = 10`` as in the
reference. Each branch is the studies' small CNN (256 features) with a 256 -> 128 -> 32 BN-MLP head.
The baseline is a single-head SimCLR (NT-Xent, one branch of the same size, the same number of
steps) on the target set. Measured on the frozen 256-d representations (before the heads) with
linear probes: the salient branch's accuracy on the pattern (primary; chance 0.25), the common
branch's on the garment class, and the leaks: the pattern read from the common branch and the class
read from the salient branch (lower is better separation). The SimCLR baseline has one
representation, read for everything.

Data: simulated on real images: Fashion-MNIST (the Debian ``dataset-fashion-mnist`` files read by
:func:`contrastkit.data.load_dataset`), a seeded class-balanced subset of 6000 training and 2000 test
images (quick form: 768 and 400); half of each is the background set, and on the other half a
seeded simulator draws one of four patterns (a horizontal bar, a vertical bar, an X, a square
frame; random size, position and strength) in contrast over the garment (bright strokes on the
dark background, dark strokes on the garment). The pattern
stands for the paper's salient factor (the MNIST digit of its CIFAR-MNIST set).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps._fashion import (
    embed,
    encoder,
    load_subset,
    probe,
    shuffled_batches,
    two_views,
)
from contrastkit.losses import Alignment, InfoNCE, JointEntropy, Uniformity
from contrastkit.models import MLPHead
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "PATTERNS", "draw_patterns", "run"]

PATTERNS = ("horizontal bar", "vertical bar", "cross", "square frame")
BETA_SALIENT = 1000.0
BETA_REG = 1000.0
JEM_WEIGHT = 10.0


def _pattern(kind: int, size: int, thickness: int) -> np.ndarray:
    """A ``size x size`` binary stamp of pattern ``kind``."""
    p = np.zeros((size, size), dtype=np.float32)
    mid, half = size // 2, thickness // 2
    lo, hi = max(mid - half, 0), min(mid - half + thickness, size)
    if kind == 0:
        p[lo:hi, :] = 1.0
    elif kind == 1:
        p[:, lo:hi] = 1.0
    elif kind == 2:
        for t in range(thickness):
            idx = np.arange(size - t)
            p[idx, idx + t] = 1.0
            p[idx, size - 1 - idx - t] = 1.0
    else:
        p[:thickness, :] = p[-thickness:, :] = p[:, :thickness] = p[:, -thickness:] = 1.0
    return p


def draw_patterns(images: Tensor, kinds: Tensor, rng: np.random.Generator) -> Tensor:
    """Draw pattern ``kinds[i]`` (0..3) over ``images[i]`` (``(N, 1, 28, 28)``) in contrast: under
    the stroke a pixel ``p`` becomes ``p + a (1 - 2 p)`` (bright on dark, dark on bright), with
    size 10-16 px, thickness 2-3 px, a random position inside the image and ``a`` in 0.8-1."""
    out = images.clone()
    for i, kind in enumerate(kinds.tolist()):
        size = int(rng.integers(10, 17))
        stamp = _pattern(kind, size, int(rng.integers(2, 4))) * float(rng.uniform(0.8, 1.0))
        r, c = (int(v) for v in rng.integers(0, 28 - size + 1, size=2))
        patch = out[i, 0, r : r + size, c : c + size]
        out[i, 0, r : r + size, c : c + size] = patch + torch.from_numpy(stamp) * (1 - 2 * patch)
    return out


class _Branch(nn.Module):
    """One branch: the small CNN and its BN-MLP head."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = encoder()
        self.head = MLPHead(self.encoder.out_dim, hidden_dim=128, out_dim=32, batch_norm=True)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.head(self.encoder(x))
        return out


def _make_sets(images: Tensor, seed: int, salt: int) -> tuple[Tensor, Tensor, Tensor]:
    """First half background, second half target with a pattern: (images, is_target, kind or -1)."""
    rng = np.random.default_rng(seed * 7919 + salt)
    n = len(images)
    is_target = torch.arange(n) >= n // 2
    kinds = torch.from_numpy(rng.integers(0, len(PATTERNS), size=n)).long()
    kinds[~is_target] = -1
    out = images.clone()
    out[is_target] = draw_patterns(images[is_target], kinds[is_target], rng)
    return out, is_target, kinds


def _train_sepclr(
    common: _Branch, salient: _Branch, images: Tensor, is_target: Tensor, seed: int, epochs: int
) -> list[float]:
    align, align_raw = Alignment(), Alignment(normalize=False)
    unif, unif_raw = Uniformity(t=1.0), Uniformity(t=1.0, normalize=False)
    jem = JointEntropy(tau=0.5)
    gen = torch.Generator().manual_seed(seed + 19)

    def step(idx: Tensor) -> StepOutput:
        views = two_views(images[idx], gen)
        b = views.shape[0]
        flat = views.reshape(2 * b, *views.shape[2:])
        c = F.normalize(common(flat), dim=1).reshape(b, 2, -1)  # (b, 2, d)
        s = salient(flat).reshape(b, 2, -1)
        tgt = is_target[idx]
        s_teacher = s * tgt[:, None, None].to(s.dtype)  # background rows -> the null vector
        common_loss = align(c) + 2.0 * unif(c)
        salient_loss = align_raw(s[tgt]) + 2.0 * unif_raw(s_teacher)
        reg = (s[~tgt] ** 2).sum(dim=-1).mean()
        mi = (jem(c[:, 0], s_teacher[:, 0]) + jem(c[:, 1], s_teacher[:, 1])) / 2.0
        loss = common_loss + BETA_SALIENT * salient_loss + BETA_REG * reg + JEM_WEIGHT * mi
        return StepOutput(loss=loss, samples=b)

    history = train_custom(
        [common, salient],
        step,
        shuffled_batches(len(images), 256, seed),
        epochs=epochs,
        lr=1e-3,
        name="SepCLR",
    )
    return [h.loss for h in history]


def _train_simclr(branch: _Branch, images: Tensor, seed: int, epochs: int) -> list[float]:
    loss_fn = InfoNCE(temperature=0.2)
    gen = torch.Generator().manual_seed(seed + 23)

    def step(idx: Tensor) -> StepOutput:
        views = two_views(images[idx], gen)
        b = views.shape[0]
        z = branch(views.reshape(2 * b, *views.shape[2:]))
        return StepOutput(loss=loss_fn(z.reshape(b, 2, -1)), samples=b)

    history = train_custom(
        [branch],
        step,
        shuffled_batches(len(images), 256, seed),
        epochs=epochs,
        lr=1e-3,
        name="SimCLR (target set)",
    )
    return [h.loss for h in history]


def _probes(
    common: nn.Module,
    salient: nn.Module,
    train: tuple[Tensor, Tensor, Tensor],
    test: tuple[Tensor, Tensor, Tensor],
    seed: int,
) -> dict[str, float]:
    """The four probes on the frozen representations (before the heads)."""
    (x_tr, y_tr, k_tr), (x_te, y_te, k_te) = train, test
    t_tr, t_te = k_tr >= 0, k_te >= 0
    c_tr, c_te = embed(common, [common], x_tr), embed(common, [common], x_te)
    s_tr, s_te = embed(salient, [salient], x_tr), embed(salient, [salient], x_te)
    return {
        "salient_pattern": probe(s_tr[t_tr], k_tr[t_tr], s_te[t_te], k_te[t_te], seed),
        "common_class": probe(c_tr, y_tr, c_te, y_te, seed),
        "common_pattern_leak": probe(c_tr[t_tr], k_tr[t_tr], c_te[t_te], k_te[t_te], seed),
        "salient_class_leak": probe(s_tr[t_tr], y_tr[t_tr], s_te[t_te], y_te[t_te], seed),
    }


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train SepCLR on background + target and SimCLR on the target set; probe both."""
    quick = settings.quick
    data = load_subset(settings.seed, 768 if quick else 6000, 400 if quick else 2000)
    epochs = 2 if quick else 5
    x_tr, t_tr, k_tr = _make_sets(data.train_images, settings.seed, 1)
    x_te, _, k_te = _make_sets(data.test_images, settings.seed, 2)
    train, test = (x_tr, data.train_labels, k_tr), (x_te, data.test_labels, k_te)

    torch.manual_seed(settings.seed)
    common, salient = _Branch(), _Branch()
    losses = _train_sepclr(common, salient, x_tr, t_tr, settings.seed, epochs)
    sep = Measured(
        metrics=_probes(common.encoder, salient.encoder, train, test, settings.seed), losses=losses
    )

    torch.manual_seed(settings.seed)
    single = _Branch()
    # the target set is half the data: twice the epochs give the same number of steps
    losses = _train_simclr(single, x_tr[t_tr], settings.seed, 2 * epochs)
    simclr = Measured(
        metrics=_probes(single.encoder, single.encoder, train, test, settings.seed), losses=losses
    )
    return {"sepclr": sep, "simclr": simclr}


APP = App(
    name="sepclr",
    title="SepCLR: common and salient branches separated by a joint-entropy term (Fashion-MNIST)",
    paper=(
        "Louiset, Duchesnay, Grigis, Gori, 'Separating common from salient patterns with "
        "Contrastive Representation Learning', ICLR 2024"
    ),
    data=(
        "simulated: seeded patterns (bars, cross, frame) drawn over real Fashion-MNIST images "
        "(Debian dataset-fashion-mnist) form the target set; plain images the background set"
    ),
    claim=(
        "SepCLR's salient space captures the target-only pattern while its common space keeps the "
        "shared content, with little leakage between them, unlike a single SimCLR space"
    ),
    method="sepclr",
    baselines=("simclr",),
    metric="salient_pattern",
    chance=0.25,
    run=run,
    needs_fashion_mnist=True,
)
