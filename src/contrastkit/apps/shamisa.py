"""SHAMISA: no-reference image quality from soft relation graphs over synthetic distortions.

Paper: "SHAMISA: SHAped Modeling of Implicit Structural Associations for Self-supervised
No-Reference Image Quality Assessment" (arXiv preprint).

What the system does: SHAMISA trains an image encoder for no-reference image quality assessment
without human quality labels. A distortion engine degrades unlabelled images with known distortion
types and severities, grouped so that only one factor varies at a time (the same image at several
levels of one distortion). From this metadata it builds a soft relation graph between the images of
a batch (images with the same distortion pattern strongly related, the relation decaying with the
severity gap) and trains the encoder, non-contrastively, to make its embedding similarity graph
match that graph; quality is then read from the frozen features by a linear regressor. Here a
:class:`contrastkit.models.SmallCNN` with a projection head is trained with
:class:`contrastkit.losses.RelationGraphLoss`,

``L = 1/(N(N-1)) sum_{i != j} (cos(z_i, z_j) - r_ij)^2``,
``r_ij = t_ij * exp(-(l_i - l_j)^2 / 2)``,

where ``l`` is the distortion level (0-4) and ``t_ij`` is 1 when the two images carry the same
distortion type or one of them is pristine (level 0), else 0.3. The "emergent" half of the paper's
dual-source graph (affinities inferred from the features during training) is not reproduced: the
target is the metadata graph only. The baseline is a SimCLR encoder (same network, batch and
epochs; NT-Xent, temperature 0.5, over two random resized crops with flips of the same distorted
images), and the untrained network. The measure: a ridge regressor (regularisation chosen by
cross-validation) fitted on frozen features of distorted training images to their distortion level
predicts the level of held-out distorted test images; the metric is the Spearman rank correlation
(SROCC, primary) and the Pearson correlation with the true level.

Data: real images (Fashion-MNIST, read from its files) with simulated distortions: Gaussian blur
(Pillow), additive Gaussian noise, JPEG compression (Pillow) and contrast reduction, each at four
severity levels (1-4) with continuous jitter of the parameter inside the level, and level 0 the
pristine image. The distortion level stands for the (inverse) perceptual quality score; there are
no human opinion scores here. Training and test images are disjoint Fashion-MNIST images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.data import load_dataset
from contrastkit.losses import InfoNCE, RelationGraphLoss
from contrastkit.models import SmallCNN
from contrastkit.train import StepOutput, train_custom
from contrastkit.views import random_horizontal_flip, random_resized_crop

__all__ = ["APP", "DISTORTIONS", "IQAConfig", "distort", "relation_targets", "run"]

DISTORTIONS = ("blur", "noise", "jpeg", "contrast")
LEVELS = 5  # 0 pristine .. 4 strongest
_PARAMS = {
    "blur": (0.0, 0.5, 0.8, 1.2, 1.8),  # Gaussian radius (pixels)
    "noise": (0.0, 0.05, 0.1, 0.16, 0.25),  # noise std
    "jpeg": (100, 40, 20, 10, 4),  # JPEG quality
    "contrast": (1.0, 0.7, 0.5, 0.35, 0.22),  # contrast factor
}


@dataclass(frozen=True)
class IQAConfig:
    """Sizes of one run (the quick form shrinks them)."""

    train_images: int = 1000
    probe_images: int = 1000
    test_images: int = 600
    contents_per_batch: int = 16
    epochs: int = 4
    lr: float = 2e-3
    other_type_relation: float = 0.3
    temperature: float = 0.5


QUICK = IQAConfig(train_images=96, probe_images=150, test_images=120, epochs=3)


def _pil(image: np.ndarray) -> object:
    from PIL import Image

    return Image.fromarray((np.clip(image, 0, 1) * 255).round().astype(np.uint8))


def distort(image: np.ndarray, kind: str, level: int, rng: np.random.Generator) -> np.ndarray:
    """Apply distortion ``kind`` at ``level`` (0 = none) to a ``(H, W)`` image in ``[0, 1]``.

    The level's parameter is jittered by up to +-15 % (continuous severities within a level).
    """
    if level == 0:
        return image.astype(np.float32)
    from PIL import Image, ImageFilter

    jitter = float(rng.uniform(0.85, 1.15))
    p = _PARAMS[kind][level]
    if kind == "blur":
        pil = _pil(image).filter(ImageFilter.GaussianBlur(radius=p * jitter))  # type: ignore[attr-defined]
        out = np.asarray(pil, dtype=np.float32) / 255
    elif kind == "noise":
        out = image + rng.normal(0.0, p * jitter, image.shape)
    elif kind == "jpeg":
        buf = io.BytesIO()
        _pil(image).save(buf, format="JPEG", quality=max(1, round(p * jitter)))  # type: ignore[attr-defined]
        out = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255
    else:
        mean = image.mean()
        out = mean + (image - mean) * min(1.0, p * jitter)
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def _distorted_set(images: np.ndarray, rng: np.random.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """Every image at every (type, level): ``(N, T, L, 1, H, W)``, with type and level grids."""
    n, h, w = images.shape
    out = np.empty((n, len(DISTORTIONS), LEVELS, 1, h, w), dtype=np.float32)
    for i in range(n):
        for t, kind in enumerate(DISTORTIONS):
            for lv in range(LEVELS):
                out[i, t, lv, 0] = distort(images[i], kind, lv, rng)
    types = torch.arange(len(DISTORTIONS))[:, None].expand(-1, LEVELS)
    levels = torch.arange(LEVELS)[None, :].expand(len(DISTORTIONS), -1)
    return torch.from_numpy(out), types, levels


def relation_targets(types: Tensor, levels: Tensor, other_type: float = 0.3) -> Tensor:
    """The soft relation graph ``r_ij = t_ij * exp(-(l_i - l_j)^2 / 2)`` of a batch.

    ``t_ij`` is 1 for the same distortion type or when either image is pristine (level 0), else
    ``other_type``.
    """
    lv = levels.float()
    level_rel = torch.exp(-((lv[:, None] - lv[None, :]) ** 2) / 2)
    same = (types[:, None] == types[None, :]) | (levels[:, None] == 0) | (levels[None, :] == 0)
    return level_rel * torch.where(same, 1.0, other_type)


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = SmallCNN(widths=(32, 64, 64), strides=(2, 2, 1))
        self.head = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 64))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.encoder(x))


def _train(data: Tensor, cfg: IQAConfig, method: str, seed: int) -> tuple[_Net, list[float]]:
    torch.manual_seed(seed)
    net = _Net()
    gen = torch.Generator().manual_seed(seed + 1)
    n, t_count = data.shape[0], data.shape[1]
    relation = RelationGraphLoss()
    nce = InfoNCE(temperature=cfg.temperature)

    def step(idx: Tensor) -> StepOutput:
        b = len(idx)
        # one distortion type per image, all its levels: only the severity varies inside a group
        types = torch.randint(0, t_count, (b,), generator=gen)
        x = data[idx, types].reshape(b * LEVELS, *data.shape[3:])
        t = types.repeat_interleave(LEVELS)
        lv = torch.arange(LEVELS).repeat(b)
        if method == "shamisa":
            target = relation_targets(t, lv, cfg.other_type_relation)
            loss = relation(net(x), target)
        else:
            views = [
                random_horizontal_flip(random_resized_crop(x, gen, scale=(0.5, 1.0)), generator=gen)
                for _ in range(2)
            ]
            loss = nce(torch.stack([net(views[0]), net(views[1])], dim=1))
        return StepOutput(loss=loss, samples=b)

    def batches(epoch: int) -> list[Tensor]:
        return list(torch.randperm(n, generator=gen).split(cfg.contents_per_batch))

    history = train_custom([net], step, batches, epochs=cfg.epochs, lr=cfg.lr, name="shamisa")
    return net, [h.loss for h in history]


def _sample(data: Tensor, rng: np.random.Generator) -> tuple[Tensor, np.ndarray]:
    """One random (type, level) version of each image: images and levels."""
    n = data.shape[0]
    types = rng.integers(0, data.shape[1], n)
    levels = rng.integers(0, LEVELS, n)
    return data[np.arange(n), types, levels], levels


@torch.no_grad()
def _features(net: _Net, x: Tensor) -> np.ndarray:
    net.eval()
    return torch.cat([net.encoder(c) for c in x.split(512)]).numpy()


def _quality_scores(
    net: _Net, probe: tuple[Tensor, np.ndarray], test: tuple[Tensor, np.ndarray]
) -> dict[str, float]:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    head = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 13)))
    head.fit(_features(net, probe[0]), probe[1])
    pred = head.predict(_features(net, test[0]))
    if np.std(pred) == 0:
        return {"srocc": 0.0, "plcc": 0.0}
    return {
        "srocc": float(spearmanr(pred, test[1]).statistic),
        "plcc": float(pearsonr(pred, test[1]).statistic),
    }


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train SHAMISA and SimCLR encoders on distorted images; score a ridge quality head."""
    cfg = QUICK if settings.quick else IQAConfig()
    split = load_dataset("fashion-mnist")
    rng = np.random.default_rng(settings.seed)
    pick = rng.permutation(len(split.train.images))[: cfg.train_images + cfg.probe_images]
    train_imgs = split.train.images[pick[: cfg.train_images], 0].numpy()
    probe_imgs = split.train.images[pick[cfg.train_images :], 0].numpy()
    test_pick = rng.permutation(len(split.test.images))[: cfg.test_images]
    test_imgs = split.test.images[test_pick, 0].numpy()
    train, _, _ = _distorted_set(train_imgs, rng)
    probe = _sample(_distorted_set(probe_imgs, rng)[0], rng)
    test = _sample(_distorted_set(test_imgs, rng)[0], rng)
    out: dict[str, Measured] = {}
    for name in ("shamisa", "simclr", "random_init"):
        if name == "random_init":
            torch.manual_seed(settings.seed)
            net, losses = _Net(), list[float]()
        else:
            net, losses = _train(train, cfg, name, settings.seed)
        out[name] = Measured(metrics=_quality_scores(net, probe, test), losses=losses)
    return out


APP = App(
    name="shamisa",
    title="No-reference image quality from a relation-graph (non-contrastive) encoder",
    paper=(
        "SHAMISA: SHAped Modeling of Implicit Structural Associations for Self-supervised "
        "No-Reference Image Quality Assessment (arXiv preprint)"
    ),
    data=(
        "real: Fashion-MNIST images (read from its files), with simulated distortions (Pillow "
        "Gaussian blur and JPEG, Gaussian noise, contrast reduction) at levels 0-4; the level "
        "stands for the quality score"
    ),
    claim=(
        "An encoder trained to match soft relation graphs built from distortion metadata gives "
        "features from which a linear head predicts image quality better than a SimCLR encoder."
    ),
    method="shamisa",
    baselines=("simclr", "random_init"),
    metric="srocc",
    chance=0.0,
    run=run,
    needs=("PIL", "scipy", "sklearn"),
    needs_fashion_mnist=True,
)
