"""Small videos of moving sprites, and CVRL's clip sampling from them.

- :func:`moving_sprites` -> :class:`SpriteVideos`: seeded videos ``(N, T, 1, H, W)`` of one item
  (a sprite, e.g. a downscaled Fashion-MNIST image) moving in a straight line on a toroidal frame
  (it leaves one side and comes back in on the opposite one), optionally in front of a dimmer
  distractor item moving its own way (the main item occludes it). Labels: the main item's class
  and its motion direction (:data:`DIRECTIONS`).
- :func:`interval_probabilities`, :func:`sample_clip_starts`, :func:`gather_clips`,
  :func:`sample_clip_pairs`: two clips of the same video whose start times lie ``t`` frames apart,
  ``t`` drawn from CVRL's decreasing distribution (or ``t = 0``: same-time views).
- :func:`consistent_clip_augment`: CVRL's temporally consistent spatial augmentation: one random
  translation, contrast and brightness per clip, the same for all of its frames.

Paper: Qian et al., "Spatiotemporal Contrastive Video Representation Learning" (CVPR 2021). The
interval ``t`` between the two clips' starts is drawn on ``[0, M)``, ``M`` = the number of possible
start frames, with density ``p(t) = (k + 1) / (k M) * (1 - (t / M)^k)`` (power ``k = 1``: ``P(t) ∝ M
- t``, linearly decreasing); the earlier clip starts uniformly where both fit, and which of the two
is "first" is shuffled, as the reference ``sample_ssl_sequence`` (tensorflow/models, video_ssl).

Example:
    >>> import torch
    >>> sprites = torch.rand(5, 1, 6, 6)
    >>> v = moving_sprites(sprites, torch.arange(5), num_videos=4, frames=8, size=16, seed=0)
    >>> v.videos.shape, v.directions.shape
    (torch.Size([4, 8, 1, 16, 16]), torch.Size([4]))
    >>> a, b, gap = sample_clip_pairs(v.videos, 4, generator=torch.Generator().manual_seed(0))
    >>> a.shape
    torch.Size([4, 4, 1, 16, 16])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_choice, check_int, check_positive, check_probability

__all__ = [
    "DIRECTIONS",
    "INTERVALS",
    "SpriteVideos",
    "consistent_clip_augment",
    "gather_clips",
    "interval_probabilities",
    "moving_sprites",
    "sample_clip_pairs",
    "sample_clip_starts",
]

#: Motion directions, in label order, and their unit steps ``(dy, dx)`` (y grows downwards).
DIRECTIONS: tuple[str, ...] = ("right", "left", "down", "up")
_STEPS = np.array([(0, 1), (0, -1), (1, 0), (-1, 0)], dtype=np.int64)

#: How the two clips of a pair are placed in time: CVRL's decreasing interval distribution,
#: a uniform interval, or the same start (same-time views).
INTERVALS: tuple[str, ...] = ("decreasing", "uniform", "same")


@dataclass(frozen=True)
class SpriteVideos:
    """Videos made by :func:`moving_sprites`.

    Attributes:
        videos: ``(N, T, 1, H, W)`` float32 in ``[0, 1]``.
        classes: ``(N,)`` int64, the main item's label.
        directions: ``(N,)`` int64, index into :data:`DIRECTIONS`.
        speeds: ``(N,)`` int64 pixels per frame.
        positions: ``(N, T, 2)`` int64 top-left ``(y, x)`` of the main item in each frame.
        has_distractor: ``(N,)`` bool.
    """

    videos: Tensor
    classes: Tensor
    directions: Tensor
    speeds: Tensor
    positions: Tensor
    has_distractor: Tensor

    def __len__(self) -> int:
        return int(self.videos.shape[0])


def _check_sprites(sprites: object, labels: object) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(sprites, Tensor | np.ndarray):
        raise TypeError(f"sprites must be a tensor or array, got {type(sprites).__name__}")
    arr = np.asarray(sprites.detach().cpu() if isinstance(sprites, Tensor) else sprites)
    if arr.ndim == 4 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 3 or arr.shape[0] < 1:
        raise ValueError(f"sprites must be (M, h, w) or (M, 1, h, w), got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError("sprites must be finite")
    lab = np.asarray(labels.detach().cpu() if isinstance(labels, Tensor) else labels)
    if lab.shape != (arr.shape[0],) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be {arr.shape[0]} integers, got shape {lab.shape}")
    return arr.astype(np.float32), lab.astype(np.int64)


def _paste(canvas: np.ndarray, sprites: np.ndarray, top_left: np.ndarray, *, behind: bool) -> None:
    """Paste ``sprites[n]`` at ``top_left[n]`` on ``canvas[n]`` (toroidal), in place."""
    n, h, w = sprites.shape
    size = canvas.shape[-1]
    rows = (top_left[:, 0:1] + np.arange(h)[None]) % size  # (n, h)
    cols = (top_left[:, 1:2] + np.arange(w)[None]) % size  # (n, w)
    index = (np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :])
    under = canvas[index]
    if behind:  # the distractor only shows where nothing is drawn yet
        canvas[index] = np.where(under > 0, under, sprites)
    else:  # the main item occludes what is below its silhouette
        canvas[index] = np.where(sprites > 0.05, sprites, under)


def moving_sprites(
    sprites: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    *,
    num_videos: int,
    frames: int = 16,
    size: int = 32,
    speeds: tuple[int, ...] = (1, 2),
    distractor_prob: float = 0.5,
    distractor_intensity: float = 0.5,
    seed: int = 0,
) -> SpriteVideos:
    """Seeded videos of a sprite moving in a straight line, optionally over a distractor.

    Video ``n`` shows sprite ``i_n`` (drawn uniformly from ``sprites``) starting at a uniform
    position and moving ``speed_n`` pixels per frame in direction ``d_n`` (uniform over
    :data:`DIRECTIONS`; speed uniform over ``speeds``) on a toroidal ``size x size`` frame, so its
    position in any frame is uniform and independent of the labels. With probability
    ``distractor_prob`` a second sprite (dimmed by ``distractor_intensity``) moves behind it in a
    direction of its own and is occluded by the main item's silhouette (pixels above 0.05).

    Args:
        sprites: ``(M, h, w)`` or ``(M, 1, h, w)`` item images in ``[0, 1]``, ``h, w <= size``.
        labels: ``(M,)`` integer class of each sprite.
        num_videos: Number of videos ``N`` (>= 1).
        frames: Frames per video ``T`` (>= 2).
        size: Frame side ``H = W``.
        speeds: Possible speeds in pixels per frame (each >= 1).
        distractor_prob: Probability that a video has a distractor.
        distractor_intensity: Brightness factor of the distractor, in ``[0, 1]``.
        seed: Seeds every random choice.

    Returns:
        A :class:`SpriteVideos`.
    """
    arr, lab = _check_sprites(sprites, labels)
    n = check_int(num_videos, "num_videos", minimum=1)
    t_len = check_int(frames, "frames", minimum=2)
    size = check_int(size, "size", minimum=2)
    if arr.shape[1] > size or arr.shape[2] > size:
        raise ValueError(f"sprites of {arr.shape[1:]} do not fit in a {size}x{size} frame")
    if not speeds or any(check_int(s, "speeds[i]", minimum=1) < 1 for s in speeds):
        raise ValueError(f"speeds must list at least one speed >= 1, got {speeds!r}")
    p_distract = check_probability(distractor_prob, "distractor_prob")
    dim = check_probability(distractor_intensity, "distractor_intensity")
    rng = np.random.default_rng(check_int(seed, "seed", minimum=0))
    items = rng.integers(0, arr.shape[0], size=n)
    direction = rng.integers(0, len(DIRECTIONS), size=n)
    speed = np.asarray(speeds, dtype=np.int64)[rng.integers(0, len(speeds), size=n)]
    start = rng.integers(0, size, size=(n, 2))
    other = rng.integers(0, arr.shape[0], size=n)
    other_dir = rng.integers(0, len(DIRECTIONS), size=n)
    other_speed = np.asarray(speeds, dtype=np.int64)[rng.integers(0, len(speeds), size=n)]
    other_start = rng.integers(0, size, size=(n, 2))
    distract = rng.random(n) < p_distract
    steps = np.arange(t_len)[None, :, None]
    pos = (start[:, None, :] + steps * (speed[:, None] * _STEPS[direction])[:, None, :]) % size
    other_pos = (
        other_start[:, None, :] + steps * (other_speed[:, None] * _STEPS[other_dir])[:, None, :]
    ) % size
    videos = np.zeros((n, t_len, size, size), dtype=np.float32)
    main, back = arr[items], arr[other] * dim
    has = np.flatnonzero(distract)
    for t in range(t_len):
        canvas = videos[:, t]
        _paste(canvas, main, pos[:, t], behind=False)
        if has.size:
            sub = canvas[has]
            _paste(sub, back[has], other_pos[has, t], behind=True)
            canvas[has] = sub
    return SpriteVideos(
        videos=torch.from_numpy(videos).unsqueeze(2),
        classes=torch.from_numpy(lab[items]),
        directions=torch.from_numpy(direction),
        speeds=torch.from_numpy(speed),
        positions=torch.from_numpy(pos),
        has_distractor=torch.from_numpy(distract),
    )


def interval_probabilities(num_frames: int, clip_length: int, *, power: float = 1.0) -> Tensor:
    """CVRL's distribution of the interval ``t`` between the two clips' start frames.

    With ``M = num_frames - clip_length + 1`` possible start frames, ``P(t) ∝ 1 - (t / M)^power``
    for ``t = 0 .. M-1`` (``power = 1``: ``P(t) ∝ M - t``, decreasing linearly; larger powers
    flatten it towards uniform).

    Args:
        num_frames: Frames per video ``T``.
        clip_length: Frames per clip ``L <= T``.
        power: The exponent ``k > 0``.

    Returns:
        ``(M,)`` float64 probabilities summing to 1.
    """
    t_len = check_int(num_frames, "num_frames", minimum=1)
    length = check_int(clip_length, "clip_length", minimum=1, maximum=t_len)
    k = check_positive(power, "power")
    m = t_len - length + 1
    t = torch.arange(m, dtype=torch.float64)
    weights = 1.0 - (t / m) ** k
    return weights / weights.sum()


def sample_clip_starts(
    num_videos: int,
    num_frames: int,
    clip_length: int,
    *,
    generator: torch.Generator,
    interval: str = "decreasing",
    power: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Start frames of two clips per video (the reference's ``sample_ssl_sequence``).

    The interval ``t`` is drawn from :func:`interval_probabilities` (``"decreasing"``), uniformly
    on ``[0, M)`` (``"uniform"``) or is 0 (``"same"``); the earlier clip starts uniformly on
    ``[0, M - t)``, the later ``t`` frames after it, and the order of the two is a coin flip.

    Args:
        num_videos: Number of pairs ``N``.
        num_frames: Frames per video ``T``.
        clip_length: Frames per clip ``L``.
        generator: The torch generator of every draw.
        interval: One of :data:`INTERVALS`.
        power: The exponent of the decreasing distribution.

    Returns:
        ``(starts_a, starts_b)``, two ``(N,)`` int64 tensors with ``|a - b| = t``.
    """
    n = check_int(num_videos, "num_videos", minimum=1)
    check_choice(interval, "interval", INTERVALS)
    probs = interval_probabilities(num_frames, clip_length, power=power)
    m = probs.numel()
    if interval == "decreasing":
        gap = torch.multinomial(probs, n, replacement=True, generator=generator)
    elif interval == "uniform":
        gap = torch.randint(0, m, (n,), generator=generator)
    else:
        gap = torch.zeros(n, dtype=torch.long)
    first = (torch.rand(n, generator=generator, dtype=torch.float64) * (m - gap)).long()
    first = torch.minimum(first, m - gap - 1)
    second = first + gap
    swap = torch.rand(n, generator=generator) < 0.5
    return torch.where(swap, second, first), torch.where(swap, first, second)


def gather_clips(videos: Tensor, starts: Tensor, clip_length: int) -> Tensor:
    """Clips ``videos[n, starts[n] : starts[n] + clip_length]``.

    Args:
        videos: ``(N, T, ...)``.
        starts: ``(N,)`` start frames with ``0 <= start <= T - clip_length``.
        clip_length: Frames per clip.

    Returns:
        ``(N, clip_length, ...)``.
    """
    if not isinstance(videos, Tensor) or videos.dim() < 2:
        raise ValueError("videos must be a tensor (N, T, ...)")
    n, t_len = videos.shape[:2]
    length = check_int(clip_length, "clip_length", minimum=1, maximum=t_len)
    if not isinstance(starts, Tensor) or starts.shape != (n,):
        raise ValueError(f"starts must be a tensor of shape ({n},)")
    if bool((starts < 0).any()) or bool((starts > t_len - length).any()):
        raise ValueError(f"starts must lie in [0, {t_len - length}]")
    frames = starts.to(torch.long)[:, None] + torch.arange(length)[None]
    return videos[torch.arange(n)[:, None], frames]


def sample_clip_pairs(
    videos: Tensor,
    clip_length: int,
    *,
    generator: torch.Generator,
    interval: str = "decreasing",
    power: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Two clips of every video, placed in time by :func:`sample_clip_starts`.

    Returns:
        ``(clips_a, clips_b, gaps)``: two ``(N, L, ...)`` tensors and the ``(N,)`` intervals.
    """
    if not isinstance(videos, Tensor) or videos.dim() < 2:
        raise ValueError("videos must be a tensor (N, T, ...)")
    n, t_len = videos.shape[:2]
    a, b = sample_clip_starts(
        n, t_len, clip_length, generator=generator, interval=interval, power=power
    )
    return gather_clips(videos, a, clip_length), gather_clips(videos, b, clip_length), (a - b).abs()


def consistent_clip_augment(
    clips: Tensor,
    *,
    generator: torch.Generator,
    max_shift: int = 8,
    contrast: float = 0.4,
    brightness: float = 0.2,
    noise: float = 0.05,
) -> Tensor:
    """CVRL's temporally consistent spatial augmentation of clips ``(N, L, C, H, W)``.

    Each clip gets one random toroidal translation by up to ``max_shift`` pixels per axis, one
    contrast factor in ``[1 - contrast, 1 + contrast]`` and one brightness offset in
    ``[-brightness, brightness]``, applied to all of its frames alike (so motion is untouched);
    then independent Gaussian pixel noise of std ``noise``; the result is clipped to ``[0, 1]``.

    Returns:
        The augmented clips, same shape.
    """
    if not isinstance(clips, Tensor) or clips.dim() != 5:
        raise ValueError("clips must be a tensor (N, L, C, H, W)")
    n, _, _, h, w = clips.shape
    shift = check_int(max_shift, "max_shift", minimum=0)
    c = check_probability(contrast, "contrast")
    b = check_positive(brightness, "brightness", allow_zero=True)
    sigma = check_positive(noise, "noise", allow_zero=True)
    dy = torch.randint(-shift, shift + 1, (n,), generator=generator)
    dx = torch.randint(-shift, shift + 1, (n,), generator=generator)
    rows = (torch.arange(h)[None] - dy[:, None]) % h  # (n, h)
    cols = (torch.arange(w)[None] - dx[:, None]) % w  # (n, w)
    idx = torch.arange(n)[:, None, None]
    moved = clips.permute(0, 3, 4, 1, 2)[idx, rows[:, :, None], cols[:, None, :]]
    out = moved.permute(0, 3, 4, 1, 2)
    gain = 1.0 + (torch.rand(n, generator=generator) * 2 - 1) * c
    offset = (torch.rand(n, generator=generator) * 2 - 1) * b
    out = out * gain.view(n, 1, 1, 1, 1).to(out.dtype) + offset.view(n, 1, 1, 1, 1).to(out.dtype)
    if sigma > 0:
        out = out + sigma * torch.randn(out.shape, generator=generator, dtype=out.dtype)
    return out.clamp(0.0, 1.0)
