"""VTP's idea at small scale: a visual tokenizer (autoencoder) whose latent is also trained with
CLIP's image-text loss.

Paper: "Towards Scalable Pre-training of Visual Tokenizers for Generation" (VTP), MiniMax, arXiv
2025 (code: MiniMax-AI/VTP).

What the system does: a small convolutional autoencoder (:class:`Tokenizer`) encodes each 28x28
image into a latent grid of ``8 x 7 x 7`` numbers (the "tokens") and decodes the image back from
it. VTP's claim is that a tokenizer trained only to reconstruct has a latent biased towards pixels,
and that training it jointly with an image-text contrastive (CLIP) loss gives a latent that also
carries semantics (VTP reports zero-shot accuracy of its tokenizer) while it still reconstructs
well. The method trains the tokenizer, a linear map from the flattened latent grid to a 64-d joint
space and a small text transformer together:

``L = MSE(D(E(x)), x) + lambda CLIP(W vec(E(x)), T(caption))``,

``CLIP(z, t) = 1/2 (CE(sigma z^ t^T, diag) + CE(sigma t^ z^T, diag))``
(:class:`contrastkit.losses.CLIPLoss`, learnable logit scale ``sigma``, in-batch negatives),
``lambda = 0.5`` (chosen between 0.05 and 0.5 on seed 0: 0.05 gave almost no zero-shot gain, 0.5
a larger gain at a larger reconstruction cost; both numbers are reported).

The baseline is the reconstruction-only tokenizer (``lambda = 0``) with the same encoder, decoder,
data and epochs; to give its latent a zero-shot score, the same linear map and text transformer are
then trained with the same CLIP loss for the same number of epochs on the *frozen* latent
(post-hoc alignment, as one would align a frozen tokenizer). So both latents are read by the same
kind of linear map, and both text towers get the same training; only the tokenizer's objective
differs. VTP's self-supervised term, its ViT tokenizer and the diffusion model it feeds are not
reproduced.

Measured: zero-shot accuracy of the latent on held-out test images (primary; held-out prompt
templates, :func:`contrastkit.eval.zero_shot_classifier`), the reconstruction MSE on the test images
(lower is better) and the linear-probe accuracy of the flattened latent.

Data: real: Fashion-MNIST images (the ``dataset-fashion-mnist`` files) with GENERATED captions
(:func:`contrastkit.data.load_caption_dataset` ``"fashion-mnist-captions"``: the class name or a
synonym, attributes measured from the pixels, a random template); a seeded class-balanced subset.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps._fmnist_subsets import FashionSubset, load_subset
from contrastkit.eval import linear_probe, zero_shot_accuracy, zero_shot_classifier
from contrastkit.losses import CLIPLoss
from contrastkit.models import TextTokenizer, TextTransformer
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "Aligner", "Tokenizer", "run"]

LATENT_CHANNELS = 8
LATENT_SIZE = LATENT_CHANNELS * 7 * 7
DIM = 64
#: Weight of the CLIP term against the pixel MSE.
CLIP_WEIGHT = 0.5
LR = 2e-3
BATCH = 128


class Tokenizer(nn.Module):
    """A small convolutional autoencoder: 28x28 image -> latent grid ``(8, 7, 7)`` -> image.

    Encoder: two 4x4 stride-2 convolutions (16, 32 channels, ReLU) and a 3x3 convolution to the
    8 latent channels; decoder: the mirror image with transposed convolutions and a sigmoid.
    """

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Conv2d(1, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, LATENT_CHANNELS, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            nn.Conv2d(LATENT_CHANNELS, 32, 3, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(32, 16, 4, stride=2, padding=1),
            nn.ReLU(),
            nn.ConvTranspose2d(16, 1, 4, stride=2, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Reconstruction of ``x`` ``(B, 1, 28, 28)``."""
        out: Tensor = self.decoder(self.encoder(x))
        return out


class Aligner(nn.Module):
    """What reads the latent for CLIP: a linear map of the flattened grid and a text tower."""

    def __init__(self, captions: Sequence[str]) -> None:
        super().__init__()
        tokenizer = TextTokenizer.train(captions, vocab_size=400)
        self.text = TextTransformer(tokenizer, context_length=24, width=64, layers=1, heads=4)
        self.image_proj = nn.Linear(LATENT_SIZE, DIM, bias=False)
        self.text_proj = nn.Linear(64, DIM, bias=False)

    def image(self, latent: Tensor) -> Tensor:
        """Joint-space embeddings ``(B, DIM)`` of latent grids ``(B, 8, 7, 7)``."""
        out: Tensor = self.image_proj(latent.flatten(1))
        return out

    def caption(self, texts: Tensor | Sequence[str]) -> Tensor:
        """Joint-space embeddings of token ids (or strings)."""
        tokens = texts if isinstance(texts, Tensor) else self.text.tokenize(list(texts))
        out: Tensor = self.text_proj(self.text(tokens))
        return out


def _batches(n: int, seed: int, batch_size: int) -> Callable[[int], list[Tensor]]:
    def batches(epoch: int) -> list[Tensor]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return [i for i in order.split(batch_size) if len(i) > 1]

    return batches


def _train_joint(
    data: FashionSubset, *, clip_weight: float, epochs: int, batch_size: int, seed: int
) -> tuple[Tokenizer, Aligner, list[float]]:
    """The tokenizer (+ the aligner when ``clip_weight > 0``), trained together."""
    torch.manual_seed(seed)
    tokenizer = Tokenizer()
    aligner = Aligner(data.train_captions)
    clip = CLIPLoss()
    tokens = aligner.text.tokenize(data.train_captions)
    x = data.train_images

    def step(idx: Tensor) -> StepOutput:
        latent = tokenizer.encoder(x[idx])
        loss = F.mse_loss(tokenizer.decoder(latent), x[idx])
        if clip_weight > 0:
            loss = loss + clip_weight * clip(aligner.image(latent), aligner.caption(tokens[idx]))
        return StepOutput(loss=loss, samples=len(idx))

    modules: list[nn.Module] = [tokenizer] + ([aligner, clip] if clip_weight > 0 else [])
    history = train_custom(
        modules, step, _batches(len(x), seed, batch_size), epochs=epochs, lr=LR, name="vtp"
    )
    return tokenizer, aligner, [h.loss for h in history]


@torch.no_grad()
def _latents(tokenizer: Tokenizer, images: Tensor) -> Tensor:
    tokenizer.eval()
    return torch.cat([tokenizer.encoder(b) for b in images.split(512)])


def _train_posthoc(
    data: FashionSubset,
    tokenizer: Tokenizer,
    aligner: Aligner,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
) -> list[float]:
    """CLIP alignment of a fresh aligner on the frozen latent of a reconstruction-only tokenizer."""
    torch.manual_seed(seed + 1)
    latent = _latents(tokenizer, data.train_images)
    clip = CLIPLoss()
    tokens = aligner.text.tokenize(data.train_captions)

    def step(idx: Tensor) -> StepOutput:
        loss = clip(aligner.image(latent[idx]), aligner.caption(tokens[idx]))
        return StepOutput(loss=loss, samples=len(idx))

    history = train_custom(
        [aligner, clip],
        step,
        _batches(len(latent), seed, batch_size),
        epochs=epochs,
        lr=LR,
        name="vtp-align",
    )
    return [h.loss for h in history]


@torch.no_grad()
def _measure(
    data: FashionSubset, tokenizer: Tokenizer, aligner: Aligner, seed: int
) -> dict[str, float]:
    tokenizer.eval()
    aligner.eval()
    test_latent = _latents(tokenizer, data.test_images)
    recon = torch.cat([tokenizer.decoder(b) for b in test_latent.split(512)])
    mse = float(F.mse_loss(recon, data.test_images))
    classifier = zero_shot_classifier(aligner.caption, data.class_names, data.templates)
    acc = zero_shot_accuracy(aligner.image(test_latent), data.test_labels, classifier, topk=(1, 3))
    probe = linear_probe(
        _latents(tokenizer, data.train_images).flatten(1),
        data.train_labels,
        test_latent.flatten(1),
        data.test_labels,
        seed=seed,
        weight_decays=(1e-3,),
    )
    return {
        "zero_shot_accuracy": acc["zero_shot_top1"],
        "zero_shot_top3": acc["zero_shot_top3"],
        "reconstruction_mse": mse,
        "probe_accuracy": float(probe.accuracy),
    }


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train the tokenizer with and without the CLIP term; measure zero-shot and reconstruction."""
    per_train, per_test, epochs, batch = (60, 30, 3, 32) if settings.quick else (500, 200, 8, BATCH)
    seed = settings.seed
    data = load_subset(
        seed, per_class_train=per_train, per_class_test=per_test, quick=settings.quick
    )
    tokenizer, aligner, losses = _train_joint(
        data, clip_weight=CLIP_WEIGHT, epochs=epochs, batch_size=batch, seed=seed
    )
    out = {"vtp": Measured(metrics=_measure(data, tokenizer, aligner, seed), losses=losses)}
    tokenizer, aligner, losses = _train_joint(
        data, clip_weight=0.0, epochs=epochs, batch_size=batch, seed=seed
    )
    align_losses = _train_posthoc(
        data, tokenizer, aligner, epochs=epochs, batch_size=batch, seed=seed
    )
    metrics = _measure(data, tokenizer, aligner, seed)
    metrics["posthoc_clip_loss"] = align_losses[-1]
    out["reconstruction_only"] = Measured(metrics=metrics, losses=losses)
    return out


APP = App(
    name="vtp",
    title="VTP: a visual tokenizer (autoencoder) trained jointly with reconstruction and CLIP",
    paper=(
        "MiniMax, 'Towards Scalable Pre-training of Visual Tokenizers for Generation' (VTP), "
        "arXiv 2025"
    ),
    data=(
        "real: Fashion-MNIST images (dataset-fashion-mnist) with generated captions "
        "(contrastkit's fashion-mnist-captions: class name or synonym + attributes measured from "
        "the pixels + a random template); seeded class-balanced subset, 5000 train / 2000 test"
    ),
    claim=(
        "Training the tokenizer's latent with an image-text contrastive loss next to "
        "reconstruction gives a latent with much better semantics (zero-shot accuracy) than "
        "reconstruction alone, at little cost in reconstruction error."
    ),
    method="vtp",
    baselines=("reconstruction_only",),
    metric="zero_shot_accuracy",
    chance=0.1,
    run=run,
    needs_fashion_mnist=True,
)
