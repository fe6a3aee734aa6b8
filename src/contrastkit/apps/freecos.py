"""FreeCOS: curvilinear object segmentation with a mask-supervised pixel contrastive loss.

Paper: Shi, Ding, Zhang and Yang, "FreeCOS: Self-Supervised Learning from Fractals and Unlabeled
Images for Curvilinear Object Segmentation" (ICCV 2023).

What the system does: FreeCOS trains a segmentation network for thin curvilinear structures
(vessels, cracks) without manual labels by synthesising training images: fractal (L-system) curves
are rendered into background images, and the renderer's masks supervise the network. Besides the
segmentation loss it adds the curvilinear mask contrastive loss (CMCL): pixel embeddings from a
projection head on the decoder are drawn from the curve and from the background of each image, and
a supervised contrastive loss treats "curve" and "background" as the two classes, pulling pixels of
the same class together and pushing the two apart. Here a small U-Net (three scales) is trained on
the synthetic images with

``L = BCE_w(p, m) + (1 - Dice(p, m)) + lambda * SupCon({e_k}, {c_k})``

where ``p`` is the predicted curve probability, ``m`` the rendered mask, ``BCE_w`` the binary
cross-entropy with curve pixels weighted 4 (they are about 6 % of the image), and ``e_k`` the
L2-normalised embeddings of ``per_class`` pixels drawn uniformly per class and image
(:func:`contrastkit.losses.sample_pixels`), ``c_k`` their classes and SupCon the L_out loss of
:class:`contrastkit.losses.SupCon` (``-1/|P(k)| sum_p log softmax_j(e_k . e_j / tau)_p``). The
baseline is the same U-Net with the same budget and ``lambda = 0``. The paper's other parts (Fourier
domain adaptation to real unlabeled images, the intensity-order alignment, the prediction-space
adaptation loss) are not reproduced: no unlabelled target-domain image is used in training.

Data (simulated): a seeded generator draws, per 48 x 48 image, one to three branching fractal
curves (a recursive random walk that forks at random angles, branches thinner and shorter than
their parent, widths 0.8-2.5 px), rendered anti-aliased and darker than a textured background (a
smooth random illumination field, dark Gaussian blobs that mimic overlapping tissue, and pixel
noise) with a random low contrast. It stands for vessel (X-ray angiography) or crack images; the
mask is the set of pixels within half a width of a curve. Held-out test images come from the same
generator with other seeds; a second test set from a shifted generator (fainter curves,
contrast 0.1-0.25 instead of 0.12-0.35, under stronger noise, 0.08 instead of 0.06) stands for the
harder "real" domain the paper transfers to. Metrics: mean per-image Dice (primary) and IoU of the
thresholded (0.5) prediction, on both test sets (``*_shifted``). The contrastive weight ``lambda =
0.1`` was chosen on seed 0 among 0.5 and 0.1 (at 0.5 the method was worse than the baseline).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.losses import SupCon, sample_pixels
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "CurveConfig", "TinyUNet", "render_curvilinear", "run"]


@dataclass(frozen=True)
class CurveConfig:
    """Sizes of one run (the quick form shrinks them)."""

    size: int = 48
    train_images: int = 384
    test_images: int = 160
    batch_size: int = 32
    epochs: int = 6
    width: int = 12
    lr: float = 3e-3
    contrast_weight: float = 0.1
    temperature: float = 0.1
    per_class: int = 24


MAX_SEGMENTS = 64
# the harder test domain: fainter curves under stronger noise (not seen in training)
SHIFTED: dict[str, Any] = {"contrast": (0.1, 0.25), "noise": 0.08}
POS_WEIGHT = 4.0  # curve pixels are ~6 % of the image
QUICK = CurveConfig(size=32, train_images=128, test_images=48, batch_size=8, epochs=3, lr=5e-3)


# -- the synthetic curvilinear images -------------------------------------------------------------


def _branch(
    rng: np.random.Generator,
    start: np.ndarray,
    angle: float,
    length: float,
    width: float,
    depth: int,
    out: list[tuple[float, float, float, float, float]],
) -> None:
    """Append the segments ``(x0, y0, x1, y1, width)`` of one branch and its sub-branches."""
    steps = max(2, int(length / 4.0))
    pos = start.copy()
    for _ in range(steps):
        if len(out) >= MAX_SEGMENTS:
            return
        angle += rng.normal(0.0, 0.3)
        nxt = pos + 4.0 * np.array([math.cos(angle), math.sin(angle)])
        out.append((pos[0], pos[1], nxt[0], nxt[1], width))
        if depth > 0 and rng.random() < 0.15:
            side = rng.choice([-1.0, 1.0]) * rng.uniform(0.4, 0.9)
            _branch(rng, pos, angle + side, length * 0.6, width * 0.7, depth - 1, out)
        pos = nxt


def _curve_segments(rng: np.random.Generator, size: int) -> np.ndarray:
    segments: list[tuple[float, float, float, float, float]] = []
    for _ in range(int(rng.integers(1, 4))):
        start = rng.uniform(0.1 * size, 0.9 * size, 2)
        _branch(
            rng,
            start,
            rng.uniform(0, 2 * math.pi),
            rng.uniform(0.5, 1.1) * size,
            rng.uniform(1.4, 2.5),
            3,
            segments,
        )
    return np.asarray(segments, dtype=np.float64)


def _distance_and_width(segments: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: the distance to the nearest segment, and that segment's width."""
    seg = torch.from_numpy(segments).float()
    ys, xs = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    px = (xs.reshape(-1, 1) + 0.5).float()  # (P, 1)
    py = (ys.reshape(-1, 1) + 0.5).float()
    ax, ay, bx, by = seg[:, 0], seg[:, 1], seg[:, 2], seg[:, 3]
    dx, dy = bx - ax, by - ay
    t = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy).clamp(min=1e-9)).clamp(0.0, 1.0)
    d2 = (px - ax - t * dx) ** 2 + (py - ay - t * dy) ** 2  # (P, S)
    best, nearest = d2.min(dim=1)
    dist = best.sqrt().reshape(size, size).numpy().astype(np.float64)
    return dist, seg[nearest, 4].reshape(size, size).numpy().astype(np.float64)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    coarse = torch.from_numpy(rng.uniform(0.0, 1.0, (1, 1, 5, 5)))
    field = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True)[0, 0]
    bg = 0.45 + 0.3 * (field.numpy() - 0.5)
    ys, xs = np.mgrid[0:size, 0:size]
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, size, 2)
        r = rng.uniform(2.0, 7.0)
        bg = bg - rng.uniform(0.05, 0.25) * np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * r * r))
    return bg


def render_curvilinear(
    rng: np.random.Generator,
    n: int,
    size: int = 48,
    *,
    contrast: tuple[float, float] = (0.12, 0.35),
    noise: float = 0.06,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` synthetic curvilinear images and their masks.

    Args:
        rng: The generator of every random choice.
        n: Number of images.
        size: Height and width in pixels.
        contrast: Range of the curves' darkening (drawn uniformly per image).
        noise: Standard deviation of the pixel noise.

    Returns:
        ``(images, masks)``: ``(n, 1, size, size)`` float32 in ``[0, 1]`` and ``(n, size, size)``
        bool (True on a curve).
    """
    images = np.empty((n, 1, size, size), dtype=np.float32)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        dist, width = _distance_and_width(_curve_segments(rng, size), size)
        half = width / 2.0
        ink = np.clip(half + 0.5 - dist, 0.0, 1.0)  # anti-aliased stroke
        depth = rng.uniform(*contrast)
        img = _background(rng, size) - depth * ink + rng.normal(0.0, rng.uniform(0.03, 0.09))
        img = img + rng.normal(0.0, noise, (size, size))
        images[i, 0] = np.clip(img, 0.0, 1.0)
        masks[i] = dist <= half
    return images, masks


# -- the network ----------------------------------------------------------------------------------


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class TinyUNet(nn.Module):
    """A three-scale U-Net with a segmentation head and a pixel-embedding projection head.

    Args:
        width: Channels at full resolution (doubled at each of the two lower scales).
        embed_dim: Dimension of the pixel embeddings of the projection head.
    """

    def __init__(self, width: int = 16, embed_dim: int = 32) -> None:
        super().__init__()
        w = width
        self.enc1, self.enc2, self.mid = _block(1, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.dec2, self.dec1 = _block(6 * w, 2 * w), _block(3 * w, w)
        self.head = nn.Conv2d(w, 1, 1)
        self.proj = nn.Sequential(
            nn.Conv2d(w, w, 1), nn.ReLU(inplace=True), nn.Conv2d(w, embed_dim, 1)
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Images ``(B, 1, H, W)`` (H, W divisible by 4) -> logits ``(B, H, W)`` and pixel
        embeddings ``(B, E, H, W)``."""
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0), e1], dim=1))
        return self.head(d1)[:, 0], self.proj(d1)


# -- training and measurement ---------------------------------------------------------------------


def _segmentation_loss(logits: Tensor, masks: Tensor) -> Tensor:
    target = masks.float()
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum(dim=(1, 2))
    dice = (2 * inter + 1.0) / (prob.sum(dim=(1, 2)) + target.sum(dim=(1, 2)) + 1.0)
    bce = F.binary_cross_entropy_with_logits(
        logits, target, pos_weight=logits.new_tensor(POS_WEIGHT)
    )
    return bce + (1 - dice).mean()


def _train(
    images: Tensor, masks: Tensor, cfg: CurveConfig, contrast: bool, seed: int
) -> tuple[TinyUNet, list[float]]:
    torch.manual_seed(seed)
    net = TinyUNet(width=cfg.width)
    supcon = SupCon(temperature=cfg.temperature, base_temperature=cfg.temperature)
    gen = torch.Generator().manual_seed(seed + 1)
    pix_gen = torch.Generator().manual_seed(seed + 2)

    def step(idx: Tensor) -> StepOutput:
        logits, emb = net(images[idx])
        loss = _segmentation_loss(logits, masks[idx])
        logs: dict[str, Tensor] = {}
        if contrast:
            where, label = sample_pixels(masks[idx], cfg.per_class, generator=pix_gen)
            rows = emb[where[:, 0], :, where[:, 1], where[:, 2]]
            con = supcon(rows[:, None, :], label)
            logs["supcon"] = con.detach()
            loss = loss + cfg.contrast_weight * con
        return StepOutput(loss=loss, samples=len(idx), logs=logs)

    def batches(epoch: int) -> list[Tensor]:
        return list(torch.randperm(len(images), generator=gen).split(cfg.batch_size))

    history = train_custom(
        [net], step, batches, epochs=cfg.epochs, lr=cfg.lr, cosine=True, name="freecos u-net"
    )
    return net, [h.loss for h in history]


@torch.no_grad()
def _scores(net: TinyUNet, images: Tensor, masks: Tensor) -> dict[str, float]:
    net.eval()
    pred = torch.cat([net(chunk)[0] > 0 for chunk in images.split(128)])
    target = masks.bool()
    inter = (pred & target).sum(dim=(1, 2)).double()
    union = (pred | target).sum(dim=(1, 2)).double()
    total = pred.sum(dim=(1, 2)).double() + target.sum(dim=(1, 2)).double()
    dice = torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))
    iou = torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
    return {"dice": float(dice.mean()), "iou": float(iou.mean())}


def run(settings: AppSettings) -> dict[str, Measured]:
    """Train the U-Net with and without the pixel contrastive term; score both on held-out images."""
    cfg = QUICK if settings.quick else CurveConfig()
    rng = np.random.default_rng(settings.seed)
    x_train, m_train = render_curvilinear(rng, cfg.train_images, cfg.size)
    x_test, m_test = render_curvilinear(rng, cfg.test_images, cfg.size)
    x_shift, m_shift = render_curvilinear(rng, cfg.test_images, cfg.size, **SHIFTED)
    images, masks = torch.from_numpy(x_train), torch.from_numpy(m_train)
    test_images, test_masks = torch.from_numpy(x_test), torch.from_numpy(m_test)
    out: dict[str, Measured] = {}
    for name, contrast in (("freecos", True), ("segmentation_only", False)):
        net, losses = _train(images, masks, cfg, contrast, settings.seed)
        metrics = _scores(net, test_images, test_masks)
        shifted = _scores(net, torch.from_numpy(x_shift), torch.from_numpy(m_shift))
        metrics.update({f"{k}_shifted": v for k, v in shifted.items()})
        out[name] = Measured(metrics=metrics, losses=losses)
    return out


APP = App(
    name="freecos",
    title="Curvilinear (vessel/crack) segmentation with a mask-supervised pixel contrastive loss",
    paper=(
        "Shi, Ding, Zhang and Yang, FreeCOS: Self-Supervised Learning from Fractals and Unlabeled "
        "Images for Curvilinear Object Segmentation (ICCV 2023)"
    ),
    data=(
        "simulated: seeded 48x48 images of branching fractal curves (widths 0.8-2.5 px) rendered "
        "darker than a textured background with blobs and noise, with their masks; they stand for "
        "vessel/crack images"
    ),
    claim=(
        "Adding the curvilinear mask contrastive loss (pixel SupCon, curve vs background) to the "
        "segmentation loss improves the segmentation of thin curvilinear structures."
    ),
    method="freecos",
    baselines=("segmentation_only",),
    metric="dice",
    chance=0.11,
    run=run,
)
