r"""Selfie: masked-patch selection among distractors as image pretraining, on Fashion-MNIST.

Paper: Trieu H. Trinh, Minh-Thang Luong, Quoc V. Le, "Selfie: Self-supervised Pretraining for
Image Embedding", arXiv 2019.

The system: each 28x28 image is cut into a 4x4 grid of 7x7 patches. A convolutional patch network
(:class:`~contrastkit.models.SmallCNN`, 16-32-64 channels, stride 2: 7 -> 4 -> 2 -> 1) encodes
every patch to ``h_p``; for a random subset ``M`` of 5 positions the patches are hidden, an
attention-pooling network (one learned query attending over the visible patches' codes plus their
position embeddings) summarises the visible patches into ``u``, and each masked position ``m``
asks with ``v_m = u + e_m`` (a learned position embedding) for its patch among the masked
patches of the same image (the distractors):

.. math::
    \ell_m = -\log \frac{\exp(v_m \cdot h_m)}{\sum_{p \in M} \exp(v_m \cdot h_p)}

(:class:`~contrastkit.losses.PatchSelectionInfoNCE`, raw dot products and no temperature as in the
paper). The baseline is SimCLR (NT-Xent, temperature 0.2, two augmented views) with the **same**
patch network and attention pooling (over all 16 patches, then a 64 -> 64 -> 64 MLP head), the same
epochs, batch size and optimizer; a second baseline is the same architecture left untrained
(random initialisation), which is what the paper's claim is about (pretraining helps).
Representation for the linear probe: the patch codes of the whole image averaged over each
quadrant (2x2 patches) and concatenated, 256 features (the patch network is what Selfie
transfers); the probe of the pooled ``u`` is also reported. The paper
fine-tunes a ResNet-50 on CIFAR-10/ImageNet; this is a linear-probe check at a small scale, and
the paper does not compare with SimCLR (which appeared later).

Data: real: Fashion-MNIST (the Debian ``dataset-fashion-mnist`` files read by
:func:`contrastkit.data.load_dataset`), a seeded class-balanced subset of 6000 training and 2000
test images (quick form: 768 and 400).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps._fashion import embed, load_subset, probe, shuffled_batches, two_views
from contrastkit.losses import InfoNCE, PatchSelectionInfoNCE
from contrastkit.models import MLPHead, SmallCNN
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "PatchEncoder", "patchify", "run"]

GRID = 4
PATCH = 7
MASKED = 5


def patchify(images: Tensor) -> Tensor:
    """``(B, 1, 28, 28)`` -> ``(B, 16, 1, 7, 7)``: the 4x4 grid of patches, row-major."""
    b, c = images.shape[:2]
    x = images.reshape(b, c, GRID, PATCH, GRID, PATCH).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, GRID * GRID, c, PATCH, PATCH)


class PatchEncoder(nn.Module):
    """Patch network + attention pooling (Selfie's pretraining architecture, small).

    ``codes(images)`` gives the ``(B, 16, 64)`` patch codes; ``pool(codes, visible)`` the
    ``(B, 64)`` summary of the visible patches (a learned query attending over code + position).
    """

    def __init__(self, dim: int = 64) -> None:
        super().__init__()
        self.patch_net = SmallCNN(in_channels=1, widths=(16, 32, dim), strides=(2, 2, 2))
        self.position = nn.Parameter(0.1 * torch.randn(GRID * GRID, dim))
        self.query_position = nn.Parameter(0.1 * torch.randn(GRID * GRID, dim))
        self.query = nn.Parameter(0.1 * torch.randn(1, 1, dim))
        self.attention = nn.MultiheadAttention(dim, num_heads=4, batch_first=True)
        self.dim = dim

    def codes(self, images: Tensor) -> Tensor:
        """Patch codes ``(B, 16, dim)``."""
        patches = patchify(images)
        b, p = patches.shape[:2]
        h: Tensor = self.patch_net(patches.reshape(b * p, *patches.shape[2:]))
        return h.reshape(b, p, self.dim)

    def pool(self, codes: Tensor, visible: Tensor | None = None) -> Tensor:
        """Attention-pooled summary ``(B, dim)`` of the visible patches (all when None)."""
        tokens = codes + self.position
        q = self.query.expand(codes.shape[0], 1, self.dim)
        mask = None if visible is None else ~visible
        u, _ = self.attention(q, tokens, tokens, key_padding_mask=mask, need_weights=False)
        out: Tensor = u[:, 0]
        return out

    def summary(self, images: Tensor) -> Tensor:
        """The attention-pooled summary ``u`` of all 16 patches, ``(B, dim)``."""
        return self.pool(self.codes(images))

    def forward(self, images: Tensor) -> Tensor:
        """The probe representation ``(B, 4 * dim)``: the patch codes averaged over each 2x2 block
        of patches (the image's quadrants), concatenated."""
        c = self.codes(images).reshape(-1, 2, 2, 2, 2, self.dim)  # (B, qr, r, qc, c, dim)
        return c.mean(dim=(2, 4)).flatten(1)


def _mask(b: int, gen: torch.Generator) -> Tensor:
    """``(B, MASKED)`` random distinct masked positions per image."""
    return torch.rand(b, GRID * GRID, generator=gen).argsort(dim=1)[:, :MASKED]


def _train_selfie(model: PatchEncoder, images: Tensor, seed: int, epochs: int) -> list[float]:
    loss_fn = PatchSelectionInfoNCE()
    gen = torch.Generator().manual_seed(seed + 11)

    def step(idx: Tensor) -> StepOutput:
        codes = model.codes(images[idx])
        b = codes.shape[0]
        masked = _mask(b, gen)
        visible = torch.ones(b, GRID * GRID, dtype=torch.bool)
        visible.scatter_(1, masked, False)
        u = model.pool(codes, visible)
        query = u[:, None, :] + model.query_position[masked]
        candidates = torch.gather(codes, 1, masked[:, :, None].expand(b, MASKED, model.dim))
        return StepOutput(loss=loss_fn(query, candidates), samples=b)

    history = train_custom(
        [model],
        step,
        shuffled_batches(len(images), 256, seed),
        epochs=epochs,
        lr=2e-3,
        weight_decay=1e-4,
        name="Selfie",
    )
    return [h.loss for h in history]


def _train_simclr(model: PatchEncoder, images: Tensor, seed: int, epochs: int) -> list[float]:
    head = MLPHead(model.dim, hidden_dim=64, out_dim=64)
    loss_fn = InfoNCE(temperature=0.2)
    gen = torch.Generator().manual_seed(seed + 13)

    def step(idx: Tensor) -> StepOutput:
        views = two_views(images[idx], gen)
        b = views.shape[0]
        u = model.pool(model.codes(views.reshape(2 * b, *views.shape[2:])))
        return StepOutput(loss=loss_fn(head(u).reshape(b, 2, -1)), samples=b)

    history = train_custom(
        [model, head],
        step,
        shuffled_batches(len(images), 256, seed),
        epochs=epochs,
        lr=2e-3,
        weight_decay=1e-4,
        name="SimCLR (patch encoder)",
    )
    return [h.loss for h in history]


def run(settings: AppSettings) -> dict[str, Measured]:
    """Pretrain with Selfie and with SimCLR (and keep an untrained copy); probe all three."""
    quick = settings.quick
    data = load_subset(settings.seed, 768 if quick else 6000, 400 if quick else 2000)
    epochs = 2 if quick else 5
    results: dict[str, Measured] = {}
    for name in ("selfie", "simclr", "random_init"):
        torch.manual_seed(settings.seed)
        model = PatchEncoder()
        losses: list[float] = []
        if name == "selfie":
            losses = _train_selfie(model, data.train_images, settings.seed, epochs)
        elif name == "simclr":
            losses = _train_simclr(model, data.train_images, settings.seed, epochs)
        metrics = {}
        for key, fn in (
            ("probe", model.forward),
            ("probe_pooled", model.summary),
        ):
            f_tr = embed(fn, [model], data.train_images)
            f_te = embed(fn, [model], data.test_images)
            metrics[key] = probe(f_tr, data.train_labels, f_te, data.test_labels, settings.seed)
        results[name] = Measured(metrics=metrics, losses=losses)
    return results


APP = App(
    name="selfie",
    title="Selfie: masked-patch selection pretraining vs SimCLR on Fashion-MNIST (linear probe)",
    paper=(
        "Trinh, Luong, Le, 'Selfie: Self-supervised Pretraining for Image Embedding', arXiv 2019"
    ),
    data=(
        "real: Fashion-MNIST (Debian dataset-fashion-mnist), seeded class-balanced subset of 6000 "
        "train / 2000 test images"
    ),
    claim=(
        "Pretraining the patch network by selecting masked patches among distractors gives better "
        "image features than no pretraining (checked here by a linear probe, also against SimCLR at "
        "the same budget)"
    ),
    method="selfie",
    baselines=("simclr", "random_init"),
    metric="probe",
    chance=0.1,
    run=run,
    needs_fashion_mnist=True,
)
