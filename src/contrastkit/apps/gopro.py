"""GOPro's idea on a two-tower model: CLIP's image-text loss plus visual self-supervision in the
joint space.

Paper: Mainak Singha, Ankit Jha, Biplab Banerjee, "GOPro: Generate and Optimize Prompts in CLIP
using Self-Supervised Learning", BMVC 2023.

What the system does: an image tower and a text tower (:class:`contrastkit.models.TwoTowerModel`,
a small CNN and a small causal text transformer with its BPE tokenizer) are trained from scratch on
image-caption pairs. Both variants see the same two augmented views of every image (the
Fashion-MNIST view preset: crops of 30-100 %, flips, intensity jitter, blur, light noise) and the
image's caption. The baseline trains with CLIP's symmetric image-text InfoNCE on each view
(:class:`contrastkit.losses.CLIPLoss`, learnable logit scale). GOPro adds a visual contrastive
loss between the two views *in the shared image-text space* (:class:`contrastkit.losses.NTXent` on
the projected image embeddings), so that the image side of the joint space is invariant to the
augmentations:

``L = 1/2 (CLIP(z_1, t) + CLIP(z_2, t)) + lambda NTXent(z_1, z_2)``,

``CLIP(z, t) = 1/2 (CE(sigma z^ t^T, diag) + CE(sigma t^ z^T, diag))`` with ``z^, t^`` the
L2-normalised projected image and text embeddings and ``sigma`` the learnt scale; ``NTXent`` is
SimCLR's loss at temperature ``tau`` over the ``2N`` views. What GOPro does beyond this is not
reproduced: it learns prompts and projectors on a *frozen pre-trained* CLIP (here both towers are
trained from scratch, small), and its prompt-consistency loss and style/content primitives are
left out.

Measured: zero-shot accuracy on held-out test images (primary), with class embeddings from the
zero-shot templates that no caption uses (prompt ensembling,
:func:`contrastkit.eval.zero_shot_classifier`), and the linear-probe accuracy of the image tower's
features. Same towers, data, views, epochs, learning rate and seeds for both variants.

Data: real: Fashion-MNIST images (the ``dataset-fashion-mnist`` files) with GENERATED captions
(:func:`contrastkit.data.load_caption_dataset` ``"fashion-mnist-captions"``: the class name or a
synonym, attributes measured from the pixels, a random template); a seeded class-balanced subset.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps._fmnist_subsets import FashionSubset, load_subset
from contrastkit.eval import linear_probe, zero_shot_accuracy, zero_shot_classifier
from contrastkit.losses import CLIPLoss, NTXent
from contrastkit.models import SmallCNN, TextTokenizer, TextTransformer, TwoTowerModel
from contrastkit.train import StepOutput, train_custom
from contrastkit.views import ViewAugment, preset

__all__ = ["APP", "build_model", "run", "zero_shot"]

#: Weight and temperature of the visual NT-Xent term.
SSL_WEIGHT = 1.0
SSL_TEMPERATURE = 0.2
DIM = 64
LR = 2e-3
BATCH = 128


def build_model(captions: Sequence[str]) -> TwoTowerModel:
    """The two towers: a small CNN and a one-layer text transformer over a BPE of ``captions``."""
    tokenizer = TextTokenizer.train(captions, vocab_size=400)
    image = SmallCNN(widths=(16, 32, 64), strides=(2, 2, 1))
    text = TextTransformer(tokenizer, context_length=24, width=64, layers=1, heads=4)
    return TwoTowerModel(image, text, dim=DIM)


@torch.no_grad()
def _embed_images(model: TwoTowerModel, images: Tensor, *, projected: bool) -> Tensor:
    was = model.training
    model.eval()
    out = [
        model.encode_image(x) if projected else model.features("a", x) for x in images.split(512)
    ]
    model.train(was)
    return torch.cat(out)


@torch.no_grad()
def zero_shot(model: TwoTowerModel, data: FashionSubset) -> dict[str, float]:
    """Zero-shot top-1/top-3 accuracy on the test images with the held-out templates."""
    was = model.training
    model.eval()
    classifier = zero_shot_classifier(
        lambda texts: model.encode_text(texts), data.class_names, data.templates
    )
    model.train(was)
    emb = _embed_images(model, data.test_images, projected=True)
    acc = zero_shot_accuracy(emb, data.test_labels, classifier, topk=(1, 3))
    return {"zero_shot_accuracy": acc["zero_shot_top1"], "zero_shot_top3": acc["zero_shot_top3"]}


def _train(
    data: FashionSubset, *, ssl: bool, epochs: int, batch_size: int, seed: int
) -> tuple[TwoTowerModel, list[float]]:
    torch.manual_seed(seed)
    model = build_model(data.train_captions)
    text_tower = model.tower_b
    assert isinstance(text_tower, TextTransformer)
    tokens = text_tower.tokenize(data.train_captions)
    clip = CLIPLoss()
    ntxent = NTXent(temperature=SSL_TEMPERATURE)
    augment = ViewAugment(preset("fashion-mnist", channels=1, image_size=28))
    images = data.train_images
    n = images.shape[0]

    def batches(epoch: int) -> list[tuple[int, Tensor]]:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return [
            (epoch * 10_000 + s, i) for s, i in enumerate(order.split(batch_size)) if len(i) > 1
        ]

    def step(batch: tuple[int, Tensor]) -> StepOutput:
        key, idx = batch
        gen = torch.Generator().manual_seed(seed * 1_000_003 + key)
        views = augment.views(images[idx], 2, generator=gen)  # (B, 2, 1, 28, 28)
        b = views.shape[0]
        z = model.encode_image(views.flatten(0, 1)).reshape(b, 2, -1)
        t = model.encode_text(tokens[idx])
        loss = 0.5 * (clip(z[:, 0], t) + clip(z[:, 1], t))
        if ssl:
            loss = loss + SSL_WEIGHT * ntxent(z)
        return StepOutput(loss=loss, samples=b)

    history = train_custom([model, clip], step, batches, epochs=epochs, lr=LR, name="gopro")
    model.set_logit_scale(clip.logit_scale.detach())
    return model, [h.loss for h in history]


def _measure(model: TwoTowerModel, data: FashionSubset, seed: int) -> dict[str, float]:
    metrics = zero_shot(model, data)
    f_train = _embed_images(model, data.train_images, projected=False)
    f_test = _embed_images(model, data.test_images, projected=False)
    probe = linear_probe(
        f_train, data.train_labels, f_test, data.test_labels, seed=seed, weight_decays=(1e-3,)
    )
    metrics["probe_accuracy"] = float(probe.accuracy)
    return metrics


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train CLIP with and without the visual NT-Xent term; measure zero-shot accuracy."""
    per_train, per_test, epochs, batch = (80, 30, 4, 64) if settings.quick else (500, 200, 8, BATCH)
    data = load_subset(
        settings.seed, per_class_train=per_train, per_class_test=per_test, quick=settings.quick
    )
    out: dict[str, Measured] = {}
    for name, ssl in (("gopro", True), ("clip", False)):
        model, losses = _train(data, ssl=ssl, epochs=epochs, batch_size=batch, seed=settings.seed)
        out[name] = Measured(metrics=_measure(model, data, settings.seed), losses=losses)
    return out


APP = App(
    name="gopro",
    title="GOPro: CLIP's image-text loss plus an NT-Xent between augmented views in the joint space",
    paper=(
        "Singha, Jha, Banerjee, 'GOPro: Generate and Optimize Prompts in CLIP using "
        "Self-Supervised Learning', BMVC 2023"
    ),
    data=(
        "real: Fashion-MNIST images (dataset-fashion-mnist) with generated captions "
        "(contrastkit's fashion-mnist-captions: class name or synonym + attributes measured from "
        "the pixels + a random template); seeded class-balanced subset, 5000 train / 2000 test"
    ),
    claim=(
        "Adding a visual contrastive loss between augmented views in the shared image-text space "
        "to CLIP's loss improves zero-shot classification."
    ),
    method="gopro",
    baselines=("clip",),
    metric="zero_shot_accuracy",
    chance=0.1,
    run=run,
    needs_fashion_mnist=True,
)
