"""Two-tower training (CLIP and any two modalities) on the training core, through ``fit``.

``fit(config)`` comes here when the config names paired data (``pairs: FILE.csv|FILE.npz`` or a
caption set as ``data``) and a bimodal loss (``clip``, ``cliprocket``, ``sogclr_bimodal``,
``isogclr_bimodal``, ``milnce``). The run is a standard run in everything but the model and
the step:

- :func:`_build`: the paired split (:meth:`FitConfig.load_pairs`), a BPE tokenizer trained on the
  training texts (or read back from the run directory on resume), the towers by modality
  (:func:`~contrastkit.runs.build_two_tower`), the loss wrapped in
  :class:`~contrastkit.distributed.DistributedPairLoss` (both towers gathered with gradient,
  anchors local), the sampler, optimizer and schedule of image runs, DDP under torchrun;
- :func:`_two_tower_step`: one step. Images get a light view as in CLIP (a random resized crop of
  90-100 % of the area, open_clip's training transform; nothing else); texts are the tokenized
  captions. CLIP-rocket's global image view is its weak crop (50-100 %); it adds ``views``
  strongly augmented image views (the ``augment`` preset, by default the data's) and as many
  EDA-augmented captions (``contrastkit.views.text``: stopword removal, then one of swap / deletion
  per caption, CLIP-rocket's weights) through the model's local projections; its global caption
  gets the stopword removal only. A side that is neither images nor text (series, vectors) is used
  as it is (CLIP-rocket's local term sees it once). SogCLR / iSogCLR get the dataset indices of the
  batch for their per-sample state. MIL-NCE encodes the ``P`` captions of each image
  (``captions_per_image`` of a caption set; a bag of one otherwise) and scores the image against
  the bag ``(B, P, D)``;
- checkpoints, logs, resume and the final files as every run (:mod:`contrastkit.train.run`),
  plus ``tokenizer.json``; the final metrics are :func:`~contrastkit.eval.evaluate_two_tower`'s
  (retrieval both ways, zero-shot with the held-out templates, probes of the non-text tower).

The views of a step are a pure function of ``(seed, epoch, step, rank)`` and the batch order of
``(seed, epoch)``, so a resumed run repeats the uninterrupted one (bitwise on a CPU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.data.paired import Modality, PairedSplit, modality_kind
from contrastkit.distributed import (
    DistContext,
    DistributedPairLoss,
    broadcast_text,
    view_generator,
)
from contrastkit.eval.two_tower import evaluate_two_tower
from contrastkit.losses import get_loss, loss_info
from contrastkit.models import TextTokenizer, TextTransformer, TwoTowerModel, count_parameters
from contrastkit.models.text import trim_padding
from contrastkit.runs import (
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    build_two_tower,
    two_tower_header,
)
from contrastkit.train.checkpoint import (
    CheckpointError,
    save_weights,
)
from contrastkit.train.config import FitConfig
from contrastkit.train.core import (
    StepOutput,
    TrainingCore,
    require_finite,
)
from contrastkit.train.run import FitResult, RunParts, execute, fork_rng, optimize, run_device
from contrastkit.views import ViewAugment, ViewConfig, preset_for_dataset
from contrastkit.views.text import TextAugment, TextAugmentConfig

__all__ = [
    "CLIP_CROP_SCALE",
    "CLIP_ROCKET_GLOBAL_CROP_SCALE",
    "STOPWORDS",
    "clip_view",
    "fit_two_tower",
]

#: open_clip's training crop: ``RandomResizedCrop(scale=(0.9, 1.0))`` (open_clip ``transform.py``).
CLIP_CROP_SCALE = (0.9, 1.0)
#: CLIP-rocket's weak global view: a crop of 50-100 % (clip-rocket ``--weak-min-scale 0.5``).
CLIP_ROCKET_GLOBAL_CROP_SCALE = (0.5, 1.0)
#: Stopwords CLIP-rocket's text augmentation may remove (a short part of NLTK's English list:
#: CLIP-rocket removes NLTK's stopwords; only those in the tokenizer's vocabulary are used).
STOPWORDS = (
    "a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "is", "are",
    "this", "that", "these", "those", "it", "its", "by", "from", "as", "be", "some",
)  # fmt: skip


def clip_view(scale: tuple[float, float] = CLIP_CROP_SCALE) -> ViewConfig:
    """CLIP's light image view: a random resized crop of ``scale`` of the area, nothing else.

    Example:
        >>> clip_view().crop_scale, clip_view().jitter_p
        ((0.9, 1.0), 0.0)
    """
    return ViewConfig.identity(crop_scale=scale, name=f"clip (crop {scale[0]}-{scale[1]})")


@dataclass
class _Side:
    """One side of the pairs as the step uses it."""

    kind: str
    shape: tuple[int, ...]
    inputs: Tensor  # images / series / vectors, or token ids (N, context_length)
    view: ViewAugment | None = None  # CLIP's light view (images)
    aug_view: ViewAugment | None = None  # CLIP-rocket's augmented views (images)
    text_augment: TextAugment | None = None  # CLIP-rocket's text views
    bags: Tensor | None = None  # MIL-NCE: token ids (N, P, context_length) of P captions per item


@dataclass(kw_only=True)
class _TwoTower(RunParts):
    """What a two-tower run trains with, built from its config (see :func:`_build`)."""

    split: PairedSplit
    sides: tuple[_Side, _Side]
    tokenizer: TextTokenizer | None
    model: TwoTowerModel
    criterion: DistributedPairLoss
    needs_index: bool
    rocket: bool
    bagged: bool = False  # MIL-NCE: the b side is fed as bags (B, P, D)
    name: str = "two-tower training"

    @property
    def shapes(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        return self.sides[0].shape, self.sides[1].shape

    def step_for_epoch(self, core: TrainingCore, epoch: int) -> Callable[[Any], StepOutput]:
        return _two_tower_step(self, core, epoch)

    def train_modules(self) -> list[nn.Module]:
        return [self.net, self.loss_fn]

    def write_fresh_files(self, run_dir: Path) -> None:
        if self.tokenizer is not None:
            self.tokenizer.save(run_dir / TOKENIZER_FILE)

    def finish(self) -> dict[str, Any]:
        return _finish(self)


def _shape(side: Modality) -> tuple[int, ...]:
    return () if isinstance(side, list) else tuple(int(d) for d in side.shape[1:])


def _texts(split: PairedSplit) -> list[str]:
    out: list[str] = []
    for side in (split.train.a, split.train.b):
        if isinstance(side, list):
            out.extend(side)
    return out


def _tokenizer(
    config: FitConfig, split: PairedSplit, ctx: DistContext, device: torch.device, *, resume: bool
) -> TextTokenizer | None:
    """The run's tokenizer: trained on the training texts, or read back from the run on resume."""
    texts = _texts(split)
    if not texts:
        return None
    saved = Path(config.out) / TOKENIZER_FILE
    if resume:
        if not saved.is_file():
            raise CheckpointError(f"nothing to resume in {config.out}: no tokenizer at {saved}")
        tokenizer = TextTokenizer.from_file(saved)
    else:
        keys = ("vocab_size", "min_frequency")
        options = {k: config.text_kwargs[k] for k in keys if k in config.text_kwargs}
        tokenizer = TextTokenizer.train(texts, **options)
    if ctx.distributed:  # BPE ties are broken in hash order: every rank takes rank 0's vocabulary
        tokenizer = TextTokenizer.from_json(broadcast_text(tokenizer.to_json(), device=device))
    return tokenizer


def _side(
    config: FitConfig,
    data: Modality,
    tower: nn.Module,
    *,
    rocket: bool,
    bags: list[list[str]] | None = None,
) -> _Side:
    kind = modality_kind(data)
    shape = _shape(data)
    if kind == "text":
        assert isinstance(tower, TextTransformer) and isinstance(data, list)
        side = _Side(kind, shape, tower.tokenize(data))
        if bags is not None and len(bags) > 1:
            side.bags = torch.stack([tower.tokenize(member) for member in bags], dim=1)
        if rocket:
            tok = tower.tokenizer
            stopwords = tok.token_ids(STOPWORDS)
            text_cfg = TextAugmentConfig.clip_rocket(
                tok.pad_id,
                protected_ids=(tok.sot_id, tok.eot_id),
                **({} if stopwords else {"stopwords_p": 0.0}),
            )
            side.text_augment = TextAugment(text_cfg, stopword_ids=stopwords)
        return side
    assert isinstance(data, Tensor)
    side = _Side(kind, shape, data)
    if kind == "image":
        channels, height = shape[0], shape[1]
        side.view = ViewAugment(
            clip_view(CLIP_ROCKET_GLOBAL_CROP_SCALE if rocket else CLIP_CROP_SCALE)
        )
        if rocket:
            name = config.augment or config.data
            side.aug_view = ViewAugment(
                preset_for_dataset(name, channels=channels, image_size=height)
            )
    return side


def _loss_kwargs(config: FitConfig, dataset_size: int) -> dict[str, Any]:
    kwargs = dict(config.loss_kwargs)
    if config.temperature is not None:  # CLIP's losses learn a scale from init_temperature
        key = "init_temperature" if config.loss in ("clip", "cliprocket") else "temperature"
        kwargs.setdefault(key, config.temperature)
    if loss_info(config.loss).needs_index:
        kwargs.setdefault("num_samples", dataset_size)
    return kwargs


def _build(config: FitConfig, ctx: DistContext, *, resume: bool) -> _TwoTower:
    """Data, tokenizer, towers, loss, sampler, optimizer and schedule of a two-tower run."""
    device, use_bf16 = run_device(config, ctx)
    split = config.load_pairs()
    kinds = (modality_kind(split.train.a), modality_kind(split.train.b))
    shapes = (_shape(split.train.a), _shape(split.train.b))
    tokenizer = _tokenizer(config, split, ctx, device, resume=resume)
    model = build_two_tower(config, kinds, shapes, tokenizer)
    rocket = config.loss == "cliprocket"
    bagged = config.loss == "milnce"
    bags = split.train.b_bags() if bagged and isinstance(split.train.b, list) else None
    sides = (
        _side(config, split.train.a, model.tower_a, rocket=rocket),
        _side(config, split.train.b, model.tower_b, rocket=rocket, bags=bags),
    )
    model = model.to(device)
    info = loss_info(config.loss)
    loss_fn = get_loss(config.loss, reduction="none", **_loss_kwargs(config, len(split.train))).to(
        device
    )
    sampler, optimizer, schedule, net = optimize(
        config, ctx, model, list(loss_fn.parameters()), len(split.train)
    )
    return _TwoTower(
        config=config,
        ctx=ctx,
        device=device,
        use_bf16=use_bf16,
        split=split,
        sides=sides,
        tokenizer=tokenizer,
        model=model,
        net=net,
        loss_fn=loss_fn,
        criterion=DistributedPairLoss(loss_fn),
        sampler=sampler,
        optimizer=optimizer,
        schedule=schedule,
        needs_index=bool(info.needs_index),
        rocket=rocket,
        bagged=bagged,
    )


def _tokens(side: _Side, tokens: Tensor, gen: torch.Generator, views: int) -> tuple[Tensor, Tensor]:
    """CLIP-rocket's text views: the global caption (stopwords removed) and ``views`` EDA copies."""
    assert side.text_augment is not None
    weak = trim_padding(side.text_augment.weak(tokens, gen))
    aug = side.text_augment.views(tokens, views, gen)
    b, v, length = aug.shape
    aug = trim_padding(aug.reshape(b * v, length)).reshape(b, v, -1)
    return weak, aug


def _inputs(
    t: _TwoTower, side: _Side, idx: Tensor, gen: torch.Generator
) -> tuple[Tensor, Tensor | None]:
    """One side's global input and (CLIP-rocket) augmented views ``(B, V, ...)`` for a batch."""
    x = side.inputs[idx]
    views = t.config.views
    if side.bags is not None:  # MIL-NCE: the P captions of each item, flattened to (B * P, L)
        bag = side.bags[idx]
        return trim_padding(bag.reshape(-1, bag.shape[-1])).to(t.device), None
    if side.kind == "text":
        if t.rocket:
            weak, aug = _tokens(side, x, gen, views)
            return weak.to(t.device), aug.to(t.device)
        return trim_padding(x).to(t.device), None
    x = x.to(t.device, non_blocking=True)
    if side.kind != "image":  # series / vectors: no views; CLIP-rocket's local term sees the input
        return x, (x.unsqueeze(1) if t.rocket else None)
    assert side.view is not None
    global_view = side.view(x, generator=gen)
    if not t.rocket:
        return global_view, None
    assert side.aug_view is not None
    return global_view, side.aug_view.views(x, views, generator=gen)


def _rocket_extra(za_aug: Tensor, zb_aug: Tensor) -> tuple[Tensor, Tensor]:
    """CLIP-rocket's ``(image_aug (N, A, D), text_aug (N, D) | (N, A, D))`` from the views."""
    a_views, b_views = za_aug.shape[1], zb_aug.shape[1]
    if a_views == 1 and b_views > 1:  # a side without views: its one local embedding, A times
        za_aug = za_aug.expand(-1, b_views, -1)
    elif b_views == 1:
        return za_aug, zb_aug[:, 0]
    return za_aug, zb_aug


def _two_tower_step(
    t: _TwoTower, core: TrainingCore, epoch: int
) -> Callable[[tuple[int, Tensor]], StepOutput]:
    """One step of ``epoch``: both sides' inputs -> towers -> projections -> loss (global batch)."""
    config = t.config
    scale = getattr(t.loss_fn, "logit_scale", None)

    def step_fn(batch: tuple[int, Tensor]) -> StepOutput:
        step, idx = batch
        gen = view_generator(seed=config.seed, epoch=epoch, step=step, rank=t.ctx.rank)
        a, a_aug = _inputs(t, t.sides[0], idx, gen)
        b, b_aug = _inputs(t, t.sides[1], idx, gen)
        with core.autocast():
            outputs = t.net(a, b, a_aug, b_aug)
        z = [require_finite(o.float()) for o in outputs]
        if t.bagged:  # MIL-NCE's bags (B, P, D); a side without bags is a bag of one
            z[1] = z[1].reshape(z[0].shape[0], -1, z[1].shape[-1])
        extra: Sequence[Tensor] = _rocket_extra(z[2], z[3]) if t.rocket else ()
        index = idx.to(t.device) if t.needs_index else None
        loss = t.criterion(z[0], z[1], *extra, index=index)
        logs: dict[str, Tensor | float] = {}
        objective = getattr(t.loss_fn, "last_objective", None)
        if isinstance(objective, Tensor):  # SogCLR / iSogCLR: the true objective
            logs["objective"] = objective.detach()
        if isinstance(scale, Tensor):
            logs["logit_scale"] = float(scale.detach().exp())
        return StepOutput(loss=loss, logs=logs, samples=t.sampler.global_batch)

    return step_fn


def _final_logit_scale(t: _TwoTower) -> None:
    """Give the saved model the scale it was trained with (CLIP's learnt one, or 1 / tau)."""
    theta = getattr(t.loss_fn, "logit_scale", None)
    if isinstance(theta, Tensor):
        t.model.set_logit_scale(theta.detach())
        return
    temperature = getattr(t.loss_fn, "temperature", None)
    if isinstance(temperature, float) and temperature > 0:
        t.model.set_logit_scale(math.log(1.0 / temperature))


def _finish(t: _TwoTower) -> dict[str, Any]:
    """Write the weights; evaluate retrieval, zero-shot and probes if asked."""
    _final_logit_scale(t)
    save_weights(
        Path(t.config.out) / WEIGHTS_FILE,
        t.model.state_dict(),
        metadata=two_tower_header(t.model, t.shapes),
    )
    metrics: dict[str, Any] = {}
    if t.config.evaluate:
        with fork_rng(t.device):
            metrics = dict(
                evaluate_two_tower(
                    t.model,
                    t.split,
                    knn_k=t.config.knn_k,
                    knn_temperature=t.config.knn_temperature,
                )
            )
        if "knn_k" in metrics:
            metrics["knn_k"] = int(metrics["knn_k"])
    metrics.update(
        {
            "model": "two-tower",
            "kinds": list(t.model.kinds),
            "logit_scale": float(t.model.logit_scale_value()),
            "encoder_parameters": count_parameters(t.model.tower_a)
            + count_parameters(t.model.tower_b),
            "trainable_parameters": count_parameters(t.model) + count_parameters(t.loss_fn),
        }
    )
    return metrics


def fit_two_tower(
    config: FitConfig,
    ctx: DistContext,
    *,
    resume: bool,
    on_step: Callable[[dict[str, Any]], None] | None,
) -> FitResult:
    """Build, open the run directory, train the epochs, finish: a two-tower run on this rank.

    Called by :func:`contrastkit.train.fit` for a config whose ``two_tower`` is true.
    """
    return execute(_build(config, ctx, resume=resume), resume=resume, on_step=on_step)
