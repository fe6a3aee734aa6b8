"""CVRL: contrastive video representations from two clips of one video, a temporal interval apart.

Paper: Rui Qian, Tianjian Meng, Boqing Gong, Ming-Hsuan Yang, Huisheng Wang, Serge Belongie and Yin
Cui, "Spatiotemporal Contrastive Video Representation Learning", CVPR 2021.

What the system does: a small (2+1)-D convolutional video encoder
(:class:`contrastkit.models.VideoEncoder`) and an MLP projection head learn from unlabelled videos.
Each training video gives two clips whose start frames lie ``t`` frames apart, ``t`` drawn from
CVRL's decreasing distribution ``P(t) ∝ M - t`` over the ``M`` possible starts
(:func:`contrastkit.data.video.sample_clip_pairs`); each clip gets its own temporally consistent
spatial augmentation (one translation, contrast and brightness for all its frames,
:func:`contrastkit.data.video.consistent_clip_augment`). The loss is NT-Xent
(:class:`contrastkit.losses.NTXent`, CVRL's temperature 0.1) over the ``2B`` clip embeddings
``z``: for clip ``i`` with partner ``p(i)``,

    l_i = -log( exp(s(z_i, z_p(i)) / tau) / sum_{k != i} exp(s(z_i, z_k) / tau) ),

``s`` the cosine similarity, averaged over the ``2B`` clips.

What is measured: linear probes (:func:`contrastkit.eval.linear_probe`) of the frozen encoder's
pooled clip features, fitted on one clip of each training video and tested on one clip of each
held-out video, for the item's class (10 classes) and its motion direction (4); the primary
metric is their mean. Full form: 1536 training and 1000 held-out videos, clips of 6 frames, 5
epochs of 128 clip pairs. Variants, with the same encoder, data, augmentation, epochs and optimizer:
``temporal_interval`` (the method), ``same_time`` (both clips start at the same frame, only the
spatial augmentation differs: the baseline CVRL argues against) and ``untrained`` (the randomly
initialised encoder).

Data (simulated from real images): moving-sprite videos built by
:func:`contrastkit.data.video.moving_sprites` from real Fashion-MNIST images (the Debian package
``dataset-fashion-mnist``; training videos from its training set, held-out videos from its test
set), each downscaled to 14x14 and moving in a straight line at 1 or 2 pixels per frame, in one
of four directions, on a toroidal 32x32 frame for 12 frames, half of them in front of a dimmer
distractor item moving its own way. It stands for short action videos in which what moves and how
it moves are the content and the position is a nuisance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.data import load_dataset
from contrastkit.data.video import (
    SpriteVideos,
    consistent_clip_augment,
    gather_clips,
    moving_sprites,
    sample_clip_pairs,
)
from contrastkit.eval import linear_probe
from contrastkit.losses import NTXent
from contrastkit.models import ContrastiveModel, MLPHead, VideoEncoder
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "VideoConfig", "clip_features", "make_videos"]


@dataclass(frozen=True)
class VideoConfig:
    """Sizes of one run.

    Attributes:
        train_videos: Training videos (unlabelled for the encoder; the probe reads their labels).
        test_videos: Held-out videos.
        frames: Frames per video.
        clip: Frames per clip.
        epochs: Training epochs.
        batch: Videos per batch (two clips each).
        lr: AdamW learning rate.
        width: Channels of the encoder's first stage.
    """

    train_videos: int
    test_videos: int
    frames: int
    clip: int
    epochs: int
    batch: int
    lr: float
    width: int


def _config(quick: bool) -> VideoConfig:
    if quick:
        return VideoConfig(256, 200, 12, 6, 2, 64, 2e-3, 8)
    return VideoConfig(1536, 1000, 12, 6, 5, 128, 2e-3, 16)


def make_videos(
    seed: int, train_videos: int, test_videos: int, frames: int
) -> tuple[SpriteVideos, SpriteVideos]:
    """Training and held-out moving-sprite videos (32x32 frames, 14x14 items) from Fashion-MNIST's
    train and test images, seeded."""
    split = load_dataset("fashion-mnist")
    rng = np.random.default_rng(seed)
    sides = []
    for k, (data, n) in enumerate(((split.train, train_videos), (split.test, test_videos))):
        pick = torch.from_numpy(rng.choice(len(data.labels), size=n, replace=False))
        sprites = F.avg_pool2d(data.images[pick], 2)  # 28x28 -> 14x14
        sides.append(
            moving_sprites(
                sprites, data.labels[pick], num_videos=n, frames=frames, size=32, seed=seed * 10 + k
            )
        )
    return sides[0], sides[1]


@torch.no_grad()
def clip_features(encoder: nn.Module, videos: Tensor, clip: int, seed: int) -> Tensor:
    """Pooled encoder features of one clip per video (a seeded random start), in eval mode."""
    g = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, videos.shape[1] - clip + 1, (videos.shape[0],), generator=g)
    clips = gather_clips(videos, starts, clip)
    flag = encoder.training
    encoder.eval()
    try:
        out = torch.cat([encoder(chunk) for chunk in clips.split(500)])
    finally:
        encoder.train(flag)
    return out


def _probe(train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, seed: int) -> float:
    result = linear_probe(
        train_x, train_y, test_x, test_y, weight_decays=(1e-4, 1e-3, 1e-2), seed=seed, max_iter=200
    )
    return float(result.accuracy)


def _measure(
    encoder: nn.Module, train: SpriteVideos, test: SpriteVideos, cfg: VideoConfig, seed: int
) -> dict[str, float]:
    tr = clip_features(encoder, train.videos, cfg.clip, seed)
    te = clip_features(encoder, test.videos, cfg.clip, seed + 1)
    cls = _probe(tr, train.classes, te, test.classes, seed)
    direction = _probe(tr, train.directions, te, test.directions, seed)
    return {"probe_mean": (cls + direction) / 2, "class_probe": cls, "direction_probe": direction}


def _train(
    encoder: VideoEncoder, videos: Tensor, cfg: VideoConfig, seed: int, interval: str
) -> list[float]:
    model = ContrastiveModel(encoder, MLPHead(encoder.out_dim, hidden_dim=128, out_dim=64))
    loss_fn = NTXent(temperature=0.1)
    gen = torch.Generator().manual_seed(seed + 7)
    n = videos.shape[0]

    def step(idx: Tensor) -> StepOutput:
        a, b, _ = sample_clip_pairs(videos[idx], cfg.clip, generator=gen, interval=interval)
        clips = torch.cat([a, b])
        clips = consistent_clip_augment(clips, generator=gen)
        _, z = model(clips)
        views = torch.stack(z.split(len(idx)), dim=1)  # (B, 2, D)
        return StepOutput(loss=loss_fn(views), samples=len(idx))

    def batches(epoch: int) -> list[Tensor]:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return list(perm[: (n // cfg.batch) * cfg.batch].split(cfg.batch))

    history = train_custom(
        [model],
        step,
        batches,
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=1e-4,
        name=f"cvrl {interval}",
    )
    return [h.loss for h in history]


def _run(settings: AppSettings) -> dict[str, Measured]:
    cfg = _config(settings.quick)
    seed = settings.seed
    train, test = make_videos(seed, cfg.train_videos, cfg.test_videos, cfg.frames)
    out: dict[str, Measured] = {}
    for name, interval in (("temporal_interval", "decreasing"), ("same_time", "same")):
        torch.manual_seed(seed)
        encoder = VideoEncoder(in_channels=1, width=cfg.width)
        losses = _train(encoder, train.videos, cfg, seed, interval)
        out[name] = Measured(_measure(encoder, train, test, cfg, seed), losses)
    torch.manual_seed(seed)
    out["untrained"] = Measured(
        _measure(VideoEncoder(in_channels=1, width=cfg.width), train, test, cfg, seed)
    )
    return out


APP = App(
    name="cvrl",
    title="CVRL: video representations from clip pairs a sampled temporal interval apart",
    paper=(
        "Qian, Meng, Gong, Yang, Wang, Belongie and Cui, 'Spatiotemporal Contrastive Video "
        "Representation Learning', CVPR 2021"
    ),
    data=(
        "simulated: moving-sprite videos (12 frames, 32x32, toroidal) of real Fashion-MNIST items "
        "moving in one of 4 directions, half over a dimmer distractor; train/test videos from the "
        "train/test images"
    ),
    claim=(
        "Sampling the two positive clips a decreasing-distributed temporal interval apart gives "
        "better linear-probe representations than same-time views"
    ),
    method="temporal_interval",
    baselines=("same_time", "untrained"),
    metric="probe_mean",
    chance=(0.1 + 0.25) / 2,
    run=_run,
    needs_fashion_mnist=True,
)
