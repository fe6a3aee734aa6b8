"""GenView's quality-driven contrastive loss: positive pairs weighted by how much object they keep.

Paper: Xiaojie Li, Yibo Yang, Xiangtai Li, Jianlong Wu, Yue Yu, Bernard Ghanem, Min Zhang,
"GenView: Enhancing View Quality with Pretrained Generative Model for Self-Supervised Learning",
ECCV 2024.

What the system does: a SimCLR-style encoder is trained on two views of each image, and the views
vary in quality on purpose: aggressive random resized crops (8-100 % of the area) of which some
miss most of the object, and 30 % of the views heavily degraded by Gaussian noise. GenView's
quality-driven loss weights each positive pair by its quality so that good pairs dominate and bad
ones (a crop of the background paired with the object) count little. GenView scores a pair from a
frozen CLIP's foreground / background maps; here the crop box and the object are known, so each
view's quality is computed exactly (:func:`contrastkit.views.quality.scored_views`): the share of
the object's pixels (Fashion-MNIST pixels above 0.2) its crop keeps, times its clarity
``1 - sigma`` (``sigma`` the noise level, 0 for a clean view). The GenView generator (Stable
UnCLIP views with an adaptive noise level) is not reproduced: only the quality-weighted loss is.

Loss (weighted InfoNCE, ``contrastkit.losses.NTXent`` with ``weights=``): with ``q_i = q_{i,1}
q_{i,2}`` the pair's quality and ``w_i = N softmax_j(gamma q_j)_i`` (GenView's
``N exp(gamma x_i) / sum_j exp(gamma x_j)``, :func:`contrastkit.losses.normalize_weights`, mean
one, detached),

``L = 1 / (2N) sum_i w_i (l_{i,1} + l_{i,2})``, ``l_{i,v} = -log exp(s(z_{i,v}, z_{i,v'}) / tau) /
sum_{k != (i,v)} exp(s(z_{i,v}, z_k) / tau)``, with ``tau = 0.2`` and ``gamma = 1`` (GenView's
reference value; on seed 0 ``gamma = 3`` and linear mean-one weights ``sqrt(q_i)`` did no better).

The baseline is the same loss with all weights 1 (plain NT-Xent): same encoder, same views (the
view generator is seeded identically for both), same epochs, temperature and learning rate.
Measured: linear-probe accuracy of the frozen encoder's features on held-out Fashion-MNIST test
images (primary) and kNN accuracy.

Data: real: Fashion-MNIST (the ``dataset-fashion-mnist`` files), a seeded class-balanced subset of
the training set (unlabelled for pre-training; its labels train the probe) and of the test set (the
smoke form cuts both from the test file, which is faster to read).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps._fmnist_subsets import load_subset
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import NTXent, normalize_weights
from contrastkit.models import MLPHead, SmallCNN
from contrastkit.train import StepOutput, train_custom
from contrastkit.views.quality import scored_views

__all__ = ["APP", "pair_weights", "run"]

#: Crop area range: aggressive, so that some crops miss most of the object.
CROP_SCALE = (0.08, 1.0)
#: Share of the views degraded by noise, and the noise level range of a degraded view.
DEGRADE_P = 0.3
NOISE = (0.3, 0.6)
#: Sharpness of GenView's softmax weights over the batch (its reference code's value).
GAMMA = 1.0
TEMPERATURE = 0.2
LR = 2e-3
BATCH = 256


def pair_weights(quality: Tensor, gamma: float = GAMMA) -> Tensor:
    """GenView's loss weights ``(N,)`` from per-view qualities ``(N, 2)``: mean-one softmax.

    The pair's quality is the product of its views' (a pair is as good as both views are).
    """
    return normalize_weights(quality.prod(dim=1), "softmax", gamma=gamma)


def _encoder() -> nn.Module:
    return SmallCNN(widths=(16, 32, 64), strides=(2, 2, 1))


def _train(
    images: Tensor, *, weighted: bool, epochs: int, seed: int
) -> tuple[nn.Module, list[float]]:
    """Pre-train an encoder + head on quality-varying views; returns the encoder and the losses."""
    torch.manual_seed(seed)
    encoder = _encoder()
    head = MLPHead(64, hidden_dim=128, out_dim=32)
    loss_fn = NTXent(temperature=TEMPERATURE)
    n = images.shape[0]

    def batches(epoch: int) -> list[tuple[int, Tensor]]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return [
            (epoch * 10_000 + s, idx) for s, idx in enumerate(order.split(BATCH)) if len(idx) > 1
        ]

    def step(batch: tuple[int, Tensor]) -> StepOutput:
        key, idx = batch
        gen = torch.Generator().manual_seed(seed * 1_000_003 + key)
        views, quality = scored_views(
            images[idx], 2, generator=gen, scale=CROP_SCALE, degrade_p=DEGRADE_P, noise=NOISE
        )
        b = views.shape[0]
        z = head(encoder(views.flatten(0, 1))).reshape(b, 2, -1)
        weights = pair_weights(quality) if weighted else None
        return StepOutput(loss=loss_fn(z, weights=weights), samples=b)

    history = train_custom(
        [encoder, head], step, batches, epochs=epochs, lr=LR, weight_decay=1e-4, name="genview"
    )
    return encoder, [h.loss for h in history]


def _measure(
    encoder: nn.Module, train: tuple[Tensor, Tensor], test: tuple[Tensor, Tensor], seed: int
) -> dict[str, float]:
    f_train = extract_features(encoder, train[0])
    f_test = extract_features(encoder, test[0])
    probe = linear_probe(
        f_train, train[1], f_test, test[1], seed=seed, weight_decays=(1e-4, 1e-3, 1e-2)
    )
    knn = knn_accuracy(f_train, train[1], f_test, test[1], k=20)
    return {"probe_accuracy": float(probe.accuracy), "knn_accuracy": float(knn)}


def run(settings: AppSettings) -> dict[str, Measured]:
    """Pre-train with and without GenView's quality weights; probe both encoders."""
    seed = settings.seed
    per_class_train, per_class_test, epochs = (60, 30, 3) if settings.quick else (600, 200, 8)
    data = load_subset(
        seed,
        per_class_train=per_class_train,
        per_class_test=per_class_test,
        quick=settings.quick,
        captions=False,
    )
    train = (data.train_images, data.train_labels)
    test = (data.test_images, data.test_labels)
    out: dict[str, Measured] = {}
    variants: dict[str, Callable[[], tuple[nn.Module, list[float]]]] = {
        "genview": lambda: _train(train[0], weighted=True, epochs=epochs, seed=seed),
        "ntxent": lambda: _train(train[0], weighted=False, epochs=epochs, seed=seed),
    }
    for name, fit in variants.items():
        encoder, losses = fit()
        out[name] = Measured(metrics=_measure(encoder, train, test, seed), losses=losses)
    return out


APP = App(
    name="genview",
    title="GenView: contrastive pre-training with positive pairs weighted by their view quality",
    paper=(
        "Li, Yang, Li, Wu, Yu, Ghanem, Zhang, 'GenView: Enhancing View Quality with Pretrained "
        "Generative Model for Self-Supervised Learning', ECCV 2024"
    ),
    data=(
        "real: Fashion-MNIST (dataset-fashion-mnist), a seeded class-balanced subset (6000 train "
        "images for pre-training and the probe, 2000 test images); the views are aggressive crops "
        "and noise-degraded copies whose quality is computed from the known crop box and the "
        "object's mask (pixels > 0.2)"
    ),
    claim=(
        "Weighting each positive pair of the contrastive loss by its quality (foreground kept, "
        "no heavy degradation) learns better features than the unweighted loss on the same views."
    ),
    method="genview",
    baselines=("ntxent",),
    metric="probe_accuracy",
    chance=0.1,
    run=run,
    needs_fashion_mnist=True,
)
