r"""Projection heads: probes of pre-head, post-head and reweighted-head features across training.

Paper: Yihao Xue, Eric Gan, Jiayi Ni, Siddharth Joshi, Baharan Mirzasoleiman, "Investigating the
Benefits of Projection Head for Representation Learning", ICLR 2024.

The system: SimCLR (NT-Xent over two augmented views,
:math:`\ell_i = -\log \frac{e^{s(z_i, z_i')/\tau}}{\sum_{k \neq i} e^{s(z_i, z_k)/\tau}}`
over the 2N views, cosine similarity ``s``) trains a small CNN encoder ``h = f(x)`` through a
projection head ``z = g(h)``. The paper shows that the layers below the head keep features that
the loss down-weights at the top (layer-wise progressive feature weighting), so the pre-head ``h``
is the better representation, and proposes a fixed, non-trainable reweighting head
``z_k = h_k \kappa^{-k}`` as an interpretable alternative to the trainable MLP head. Here one
encoder is trained with the MLP head (:class:`~contrastkit.models.MLPHead`, 256 -> 256 -> 64) and
its ``h`` (the method) and ``z`` (a baseline) are probed; a second encoder, same budget, is trained
through the fixed :class:`~contrastkit.models.ReweightHead` (``kappa = 1.02`` over 256 features:
weights from 1 down to 0.006; the paper's kappa is not known here) and its features are the other
baseline (``h`` and ``z = h * w`` give the same standardised linear probe, since ``w`` only
rescales each feature). Probes (linear, :func:`contrastkit.eval.linear_probe`) run at checkpoints
during training (``on_epoch``) and at the end; the effective rank of each representation is also
reported.

Data: real: Fashion-MNIST (the Debian ``dataset-fashion-mnist`` files read by
:func:`contrastkit.data.load_dataset`), a seeded class-balanced subset of 6000 training and 2000
test images (quick form: 768 and 400).
"""

from __future__ import annotations

import torch
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
from contrastkit.eval import effective_rank
from contrastkit.losses import InfoNCE
from contrastkit.models import ContrastiveModel, MLPHead, ReweightHead
from contrastkit.train import EpochSummary, StepOutput, train_custom

__all__ = ["APP", "run"]

KAPPA = 1.02
TEMPERATURE = 0.2


def _train(
    model: ContrastiveModel,
    images: Tensor,
    seed: int,
    epochs: int,
    checkpoints: set[int],
    on_checkpoint: _Checkpoint,
) -> list[float]:
    """Train ``model`` with NT-Xent on two views; ``on_checkpoint(epoch)`` after listed epochs."""
    loss_fn = InfoNCE(temperature=TEMPERATURE)
    gen = torch.Generator().manual_seed(seed + 7)

    def step(idx: Tensor) -> StepOutput:
        views = two_views(images[idx], gen)
        b = views.shape[0]
        _, z = model(views.reshape(2 * b, *views.shape[2:]))
        return StepOutput(loss=loss_fn(z.reshape(b, 2, -1)), samples=b)

    def after_epoch(summary: EpochSummary) -> None:
        if summary.epoch + 1 in checkpoints:
            on_checkpoint(summary.epoch + 1)

    history = train_custom(
        [model],
        step,
        shuffled_batches(len(images), 256, seed),
        epochs=epochs,
        lr=2e-3,
        weight_decay=1e-4,
        on_epoch=after_epoch,
        name="projection-head SimCLR",
    )
    return [h.loss for h in history]


class _Checkpoint:
    """Probes ``h`` and ``z`` of a model at a checkpoint and keeps the accuracies by name."""

    def __init__(
        self, model: ContrastiveModel, data: tuple[Tensor, Tensor, Tensor, Tensor], seed: int
    ):
        self.model = model
        self.data = data
        self.seed = seed
        self.metrics: dict[str, float] = {}
        self.features: dict[str, tuple[Tensor, Tensor]] = {}

    def __call__(self, epoch: int) -> None:
        x_tr, y_tr, x_te, y_te = self.data
        model = self.model
        for space, fn in (("h", model.encoder), ("z", lambda x: model.head(model.encoder(x)))):
            f_tr = embed(fn, [model], x_tr)
            f_te = embed(fn, [model], x_te)
            self.metrics[f"{space}_epoch{epoch}"] = probe(f_tr, y_tr, f_te, y_te, self.seed)
            self.features[space] = (f_tr, f_te)


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train the MLP-head and the reweighting-head encoders and probe their features."""
    quick = settings.quick
    data = load_subset(settings.seed, 768 if quick else 6000, 400 if quick else 2000)
    epochs = 2 if quick else 6
    checkpoints = {epochs} if quick else {2, 4, 6}
    arrays = (data.train_images, data.train_labels, data.test_images, data.test_labels)
    out: dict[str, tuple[ContrastiveModel, _Checkpoint, list[float]]] = {}
    for name in ("mlp", "reweight"):
        torch.manual_seed(settings.seed)
        enc = encoder()
        head: nn.Module = (
            MLPHead(enc.out_dim, hidden_dim=256, out_dim=64)
            if name == "mlp"
            else ReweightHead(enc.out_dim, kappa=KAPPA)
        )
        model = ContrastiveModel(enc, head)
        check = _Checkpoint(model, arrays, settings.seed)
        losses = _train(model, data.train_images, settings.seed, epochs, checkpoints, check)
        out[name] = (model, check, losses)

    def measured(name: str, space: str) -> Measured:
        _, check, losses = out[name]
        curve = {f"probe_epoch{e}": check.metrics[f"{space}_epoch{e}"] for e in sorted(checkpoints)}
        feats = check.features[space][1]
        return Measured(
            metrics={
                "probe": check.metrics[f"{space}_epoch{epochs}"],
                **curve,
                "effective_rank": effective_rank(feats),
            },
            losses=losses,
        )

    return {
        "pre_head": measured("mlp", "h"),
        "post_head": measured("mlp", "z"),
        "reweight_head": measured("reweight", "h"),
    }


APP = App(
    name="projection_head",
    title="Pre-head vs post-head vs fixed-reweighting-head features of SimCLR on Fashion-MNIST",
    paper=(
        "Xue, Gan, Ni, Joshi, Mirzasoleiman, 'Investigating the Benefits of Projection Head for "
        "Representation Learning', ICLR 2024"
    ),
    data=(
        "real: Fashion-MNIST (Debian dataset-fashion-mnist), seeded class-balanced subset of 6000 "
        "train / 2000 test images"
    ),
    claim=(
        "The features below a projection head (pre-head) are better for a linear probe than the "
        "head's output, and a fixed reweighting head narrows that gap"
    ),
    method="pre_head",
    baselines=("post_head", "reweight_head"),
    metric="probe",
    chance=0.1,
    run=run,
    needs_fashion_mnist=True,
)
