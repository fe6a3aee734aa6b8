"""Mask & Match app: expression composition, operator glyphs and symbol pooling."""

from __future__ import annotations

import numpy as np
import torch

from contrastkit.apps.mask_match import (
    NUM_CLASSES,
    OPERATORS,
    _Encoder,
    _local_sites,
    compose_expressions,
    draw_operator,
    symbol_features,
)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(50, 1, 8, 8, generator=g), torch.arange(50) % 10


def test_operator_glyphs_differ_by_kind() -> None:
    rng = np.random.default_rng(0)
    means = {op: np.mean([draw_operator(rng, op) for _ in range(30)], axis=0) for op in OPERATORS}
    assert all(g.max() <= 1 and g.min() >= 0 for g in means.values())
    # "-" has ink only around the middle row; "+" also has a vertical stroke
    assert means["+"][:, 3:5].sum() > 2 * means["-"][:, 3:5].sum()
    assert means["="][3:5].sum() < means["-"][3:5].sum()  # "=" leaves the middle row empty


def test_expressions_place_every_symbol_inside_the_image() -> None:
    digits, labels = _digits()
    data = compose_expressions(np.random.default_rng(1), digits, labels, 40)
    assert data.images.shape == (40, 1, 12, 64)
    assert len(data.boxes) == len(data.labels)
    assert (data.boxes[:, 1] + 8 <= 64).all() and (data.boxes[:, 2] + 8 <= 12).all()
    per_expr = torch.bincount(data.boxes[:, 0], minlength=40)
    assert per_expr.min() >= 3 and per_expr.max() <= 7
    assert set(data.labels.tolist()) == set(range(NUM_CLASSES))
    for (e, x, y), c in zip(data.boxes.tolist(), data.labels.tolist(), strict=True):
        assert data.images[e, 0, y : y + 8, x : x + 8].sum() > 0, c


def test_symbol_features_and_local_sites() -> None:
    digits, labels = _digits()
    data = compose_expressions(np.random.default_rng(2), digits, labels, 6)
    feats = symbol_features(_Encoder(dim=16, proj=8), data)
    assert feats.shape == (len(data.labels), 16)
    sites = _local_sites(data.images, 5, torch.Generator().manual_seed(0))
    assert sites.shape == (30, 3)
    ink = torch.nn.functional.avg_pool2d(data.images, 2)[:, 0] > 0.05
    assert ink[sites[:, 0], sites[:, 1], sites[:, 2]].float().mean() > 0.9
