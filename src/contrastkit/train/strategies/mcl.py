"""MCL: multistage contrastive learning with cell-restricted negatives (docs/methods.md 3.8).

Stage 0 trains SimCLR with random batches. After each stage the current encoder's training
features are clustered (:func:`~contrastkit.data.pseudo_labels.stage_clusters`, MiniBatchKMeans,
``K = 10``); the next stage continues from the current weights with every batch drawn from one
cell of all earlier clusterings (:func:`~contrastkit.data.samplers.mixed_radix_labels`,
:class:`~contrastkit.data.samplers.CellBatchSampler`), so the negatives of an anchor share its
earlier clusters and the model must learn the features that earlier stages did not use. The final
representation concatenates the (L2-normalised) features of every stage's encoder
("cross-stage integration").

Paper: "Learning the Unlearned: Mitigating Feature Suppression in Contrastive Learning" (MCL,
2024); MajorDavidZhang/MCL.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from contrastkit._validation import check_int
from contrastkit.data.pseudo_labels import stage_clusters
from contrastkit.data.samplers import CellBatchSampler, mixed_radix_labels
from contrastkit.eval import extract_features
from contrastkit.models import ContrastiveModel
from contrastkit.train.config import FitConfig
from contrastkit.train.loop import build_model
from contrastkit.train.strategies._common import (
    StrategyResult,
    batch_label_purity,
    encoder_features,
    evaluate_features,
    random_batches,
    train_contrastive,
)

__all__ = ["fit_mcl"]


def fit_mcl(
    config: FitConfig,
    *,
    stages: int = 2,
    k: int = 10,
    epochs_per_stage: int | None = None,
    baseline: bool = True,
    log: Callable[[str], None] | None = None,
) -> StrategyResult:
    """Train MCL on ``config.data`` (and SimCLR with the same total epochs), then evaluate.

    Args:
        config: The run; ``config.epochs`` is the total budget.
        stages: Training stages (>= 1; stage 0 is plain SimCLR).
        k: Clusters per stage (MCL: 10).
        epochs_per_stage: Epochs of each stage (None: ``config.epochs // stages``).
        baseline: Also train SimCLR for ``stages * epochs_per_stage`` epochs from the same
            initialisation.
        log: Called with progress lines.

    Returns:
        A :class:`StrategyResult`: ``metrics`` has ``mcl_*`` (concatenated features of all
        stages), ``mcl_last_*`` (the last stage's encoder alone), ``simclr_*``, the number of
        cells and the same-label pair fraction of each stage's batches; ``extras["stage_models"]``
        and ``extras["cells"]``.

    Raises:
        TypeError: ``stages`` or ``epochs_per_stage`` is not an int.
        ValueError: ``stages`` < 1, or a stage would get no epoch.
        NonFiniteLossError: A step's loss is NaN or infinite.
    """
    stages = check_int(stages, "stages", minimum=1)
    per_stage = config.epochs // stages if epochs_per_stage is None else epochs_per_stage
    per_stage = check_int(per_stage, "epochs_per_stage")
    if per_stage < 1:
        raise ValueError(
            f"each stage needs >= 1 epoch; got epochs_per_stage={per_stage} (config.epochs="
            f"{config.epochs}, stages={stages})"
        )
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    split = config.load_data()
    train, test = split.train, split.test
    channels, size, _ = train.image_shape
    torch.manual_seed(config.seed)
    model = build_model(config, channels, size)
    init = copy.deepcopy(model.state_dict())
    metrics: dict[str, Any] = {"stages": stages, "k": k, "epochs_per_stage": per_stage}
    history: list[dict[str, Any]] = []
    stage_models: list[ContrastiveModel] = []
    stage_ids: list[Tensor] = []
    cells: list[Tensor] = []
    t0 = time.perf_counter()
    for stage in range(stages):
        if stage == 0:
            order = random_batches(len(train), config.batch_size, config.seed)
        else:
            cell = mixed_radix_labels(stage_ids, k)
            cells.append(cell)
            sampler = CellBatchSampler(cell, config.batch_size, seed=config.seed + stage)
            order = sampler.batches
            metrics[f"stage{stage}_cells"] = sampler.num_cells
            metrics[f"stage{stage}_samples_per_epoch"] = sampler.samples_used
        metrics[f"stage{stage}_same_label_pairs"] = batch_label_purity(order(0), train.labels)
        history += train_contrastive(
            model, train, config, order, epochs=per_stage, tag=f"stage{stage}", log=log
        )
        stage_models.append(copy.deepcopy(model).eval())
        if stage + 1 < stages:
            feats = extract_features(model.encoder, train.images)
            stage_ids.append(stage_clusters(feats, k, seed=config.seed + stage))
    metrics["mcl_train_seconds"] = time.perf_counter() - t0
    encoders = [m.encoder for m in stage_models]
    tr, te = encoder_features(encoders, train.images), encoder_features(encoders, test.images)
    for key, value in evaluate_features(tr, train.labels, te, test.labels).items():
        metrics[f"mcl_{key}"] = value
    last_tr = extract_features(model.encoder, train.images)
    last_te = extract_features(model.encoder, test.images)
    for key, value in evaluate_features(last_tr, train.labels, last_te, test.labels).items():
        metrics[f"mcl_last_{key}"] = value
    extras: dict[str, Any] = {"stage_models": stage_models, "cells": cells}
    if baseline:
        base = build_model(config, channels, size)
        base.load_state_dict(init)
        order = random_batches(len(train), config.batch_size, config.seed)
        t0 = time.perf_counter()
        history += train_contrastive(
            base, train, config, order, epochs=stages * per_stage, tag="simclr", log=log
        )
        metrics["simclr_train_seconds"] = time.perf_counter() - t0
        btr = extract_features(base.encoder, train.images)
        bte = extract_features(base.encoder, test.images)
        for key, value in evaluate_features(btr, train.labels, bte, test.labels).items():
            metrics[f"simclr_{key}"] = value
        extras["simclr_model"] = base
    metrics.update({"batch_size": config.batch_size, "data": config.data})
    metrics.update({"in_channels": channels, "image_size": size})
    return StrategyResult(metrics=metrics, model=model, history=history, extras=extras)
