"""HULC's video–language contrast: align clips of moving items with captions of what moves and how.

Paper: Oier Mees, Lukas Hermann and Wolfram Burgard, "What Matters in Language Conditioned Robotic
Imitation Learning over Unstructured Data", IEEE Robotics and Automation Letters (RA-L) 2022
(HULC).

What the system does: HULC adds to its language-conditioned policy a self-supervised contrastive
loss that aligns the embedding of a video sequence with the embedding of the language instruction
describing it. This app isolates that part: a two-tower model
(:class:`contrastkit.models.TwoTowerModel`) with a (2+1)-D convolutional video tower
(:class:`contrastkit.models.VideoEncoder`) and the library's causal text transformer
(:func:`contrastkit.models.build_tower`, a BPE tokenizer trained on the training captions), both
linearly projected to one space and trained with the symmetric CLIP loss
(:class:`contrastkit.losses.CLIPLoss`, learnable logit scale ``sigma``): for ``B`` pairs of
L2-normalised clip and caption embeddings ``v_i, c_i``,

    L = 1/2 [ CE(sigma V C^T, diag) + CE(sigma C V^T, diag) ].

The logit scale starts at ``sigma = 1 / 0.5`` rather than CLIP's ``1 / 0.07``: from scratch on
this small data, the sharper start left the loss at ``log B`` for tens of steps.

What is measured: text-to-clip retrieval (:func:`contrastkit.eval.retrieval_metrics`) on held-out
videos and captions, in galleries of 40 videos that hold one video of every (item class, motion
direction) pair, so that a caption has exactly one matching video in its gallery (chance R@1 is
1/40); recall@1 (primary) and @5 and clip-to-text R@1 are averaged over the galleries. Full form:
1536 training and 1000 held-out videos, clips of 6 of their 10 frames, 12 epochs of 64 pairs, 25
galleries. Variants, with the same text tower, data, epochs and optimizer: ``motion_video_tower``
(the method: the (2+1)-D tower, trained), ``frame_only_tower`` (the same tower without its temporal
convolutions: it sees the frames as an unordered set, so it can tell what moves but not where to)
and ``frozen_video_tower`` (the (2+1)-D tower left at its random initialisation; only its projection
and the text side learn).

Data (simulated from real images): the moving-sprite videos of the ``cvrl`` app
(:func:`contrastkit.data.video.moving_sprites`: real Fashion-MNIST items, 14x14, moving in one of 4
directions on a toroidal 32x32 frame for 10 frames, half over a dimmer distractor; training and
held-out videos from Fashion-MNIST's train and test images), each with a GENERATED caption naming
the item and its motion from templates and synonyms ("a sneaker moving left", "the trainer is
sliding to the left", ...). It stands for HULC's robot-play videos and their crowd-sourced
instructions, far simpler."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.apps.cvrl import make_videos
from contrastkit.data.video import DIRECTIONS, SpriteVideos, consistent_clip_augment, gather_clips
from contrastkit.eval import retrieval_metrics
from contrastkit.losses import CLIPLoss
from contrastkit.models import TextTokenizer, TwoTowerModel, VideoEncoder, build_tower
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP", "caption", "galleries"]

#: Synonyms of the ten Fashion-MNIST classes, in label order.
ITEM_WORDS: tuple[tuple[str, ...], ...] = (
    ("t-shirt", "top", "tee"),
    ("pair of trousers", "pair of pants", "pair of slacks"),
    ("pullover", "sweater", "jumper"),
    ("dress", "gown", "frock"),
    ("coat", "jacket", "overcoat"),
    ("sandal", "flip-flop", "summer shoe"),
    ("shirt", "blouse", "button-up shirt"),
    ("sneaker", "trainer", "running shoe"),
    ("bag", "handbag", "purse"),
    ("ankle boot", "boot", "short boot"),
)

#: Phrases for each motion direction of :data:`contrastkit.data.video.DIRECTIONS`.
MOTION_WORDS: dict[str, tuple[str, ...]] = {
    "right": ("moving right", "sliding to the right", "heading right", "drifting rightwards"),
    "left": ("moving left", "sliding to the left", "heading left", "drifting leftwards"),
    "down": ("moving down", "sliding downwards", "heading down", "falling"),
    "up": ("moving up", "sliding upwards", "heading up", "rising"),
}

_CONTEXT = 16
_TEMP = 0.5
_TEXT_WIDTH = 64
_TEMPLATES = ("a {item} {motion}", "the {item} is {motion}", "a video of a {item} {motion}")


def caption(item: int, direction: int, rng: np.random.Generator) -> str:
    """A caption of an item class and a motion direction, template and synonyms drawn by ``rng``."""
    template = _TEMPLATES[rng.integers(len(_TEMPLATES))]
    words = ITEM_WORDS[item]
    motions = MOTION_WORDS[DIRECTIONS[direction]]
    return template.format(
        item=words[rng.integers(len(words))], motion=motions[rng.integers(len(motions))]
    )


def galleries(videos: SpriteVideos, count: int, seed: int) -> list[Tensor]:
    """``count`` galleries of video indices, each holding one video of every (class, direction).

    A pair absent from ``videos`` is left out of every gallery.
    """
    rng = np.random.default_rng(seed)
    key = (videos.classes * len(DIRECTIONS) + videos.directions).numpy()
    groups = [np.flatnonzero(key == k) for k in np.unique(key)]
    return [torch.from_numpy(np.array([rng.choice(g) for g in groups])) for _ in range(count)]


@dataclass(frozen=True)
class _Config:
    train_videos: int
    test_videos: int
    frames: int
    clip: int
    epochs: int
    batch: int
    lr: float
    width: int
    galleries: int


def _config(quick: bool) -> _Config:
    if quick:
        return _Config(320, 200, 8, 6, 4, 32, 3e-3, 8, 10)
    return _Config(1536, 1000, 10, 6, 12, 64, 3e-3, 8, 25)


def _model(tok: TextTokenizer, width: int, temporal: bool) -> TwoTowerModel:
    video = VideoEncoder(in_channels=1, width=width, temporal=temporal)
    text = build_tower(
        "text",
        tokenizer=tok,
        text_kwargs={"context_length": _CONTEXT, "width": _TEXT_WIDTH, "heads": 2, "layers": 1},
    )
    return TwoTowerModel(video, text, dim=64, kinds=("image", "text"))


def _train(
    model: TwoTowerModel, videos: Tensor, tokens: Tensor, cfg: _Config, seed: int
) -> list[float]:
    loss_fn = CLIPLoss(init_temperature=_TEMP)
    gen = torch.Generator().manual_seed(seed + 11)
    n, t_len = videos.shape[:2]

    def step(idx: Tensor) -> StepOutput:
        starts = torch.randint(0, t_len - cfg.clip + 1, (len(idx),), generator=gen)
        clips = consistent_clip_augment(gather_clips(videos[idx], starts, cfg.clip), generator=gen)
        z_video, z_text = model(clips, tokens[idx])
        return StepOutput(loss=loss_fn(z_video, z_text), samples=len(idx))

    def batches(epoch: int) -> list[Tensor]:
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
        return list(perm[: (n // cfg.batch) * cfg.batch].split(cfg.batch))

    history = train_custom(
        [model, loss_fn],
        step,
        batches,
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=1e-4,
        name="hulc",
    )
    return [h.loss for h in history]


@torch.no_grad()
def _measure(
    model: TwoTowerModel, test: SpriteVideos, tokens: Tensor, cfg: _Config, seed: int
) -> dict[str, float]:
    model.eval()
    g = torch.Generator().manual_seed(seed + 1)
    starts = torch.randint(0, test.videos.shape[1] - cfg.clip + 1, (len(test),), generator=g)
    clips = gather_clips(test.videos, starts, cfg.clip)
    z_video = torch.cat([model.encode_a(c) for c in clips.split(500)])
    z_text = torch.cat([model.encode_b(t) for t in tokens.split(500)])
    keys = ("text_to_clip_R@1", "text_to_clip_R@5", "clip_to_text_R@1")
    sums = dict.fromkeys(keys, 0.0)
    picks = galleries(test, cfg.galleries, seed)
    for pick in picks:
        m = retrieval_metrics(z_video[pick], z_text[pick], names=("clip", "text"))
        for k in keys:
            sums[k] += m[k]
    return {k: v / len(picks) for k, v in sums.items()}


def _run(settings: AppSettings) -> dict[str, Measured]:
    cfg = _config(settings.quick)
    seed = settings.seed
    train, test = make_videos(seed, cfg.train_videos, cfg.test_videos, cfg.frames)
    rng = np.random.default_rng(seed + 5)
    train_text = [
        caption(int(c), int(d), rng) for c, d in zip(train.classes, train.directions, strict=True)
    ]
    test_text = [
        caption(int(c), int(d), rng) for c, d in zip(test.classes, test.directions, strict=True)
    ]
    tok = TextTokenizer.train(train_text, vocab_size=200)
    tokens_train = tok.encode(train_text, context_length=_CONTEXT)[0]
    tokens_test = tok.encode(test_text, context_length=_CONTEXT)[0]
    out: dict[str, Measured] = {}
    variants = (
        ("motion_video_tower", True, True),
        ("frame_only_tower", False, True),
        ("frozen_video_tower", True, False),
    )
    for name, temporal, train_video in variants:
        torch.manual_seed(seed)
        model = _model(tok, cfg.width, temporal)
        model.tower_a.requires_grad_(train_video)  # frozen: only batch-norm statistics move
        losses = _train(model, train.videos, tokens_train, cfg, seed)
        out[name] = Measured(_measure(model, test, tokens_test, cfg, seed), losses)
    return out


APP = App(
    name="hulc",
    title="HULC's video–language contrast: clips of moving items retrieved by their captions",
    paper=(
        "Mees, Hermann and Burgard, 'What Matters in Language Conditioned Robotic Imitation "
        "Learning over Unstructured Data', IEEE RA-L 2022"
    ),
    data=(
        "simulated: moving-sprite videos of real Fashion-MNIST items (10 frames, 32x32, 4 motion directions, "
        "toroidal, half with a distractor) with generated captions of the item and its motion"
    ),
    claim=(
        "Contrastive alignment of a motion-aware video encoder with language lets instructions "
        "retrieve the matching video, better than a frame-only or an untrained video encoder"
    ),
    method="motion_video_tower",
    baselines=("frame_only_tower", "frozen_video_tower"),
    metric="text_to_clip_R@1",
    chance=1 / 40,
    run=_run,
    needs_fashion_mnist=True,
)
