"""TACO app: the pendulum renderer, the transition windows and the ridge state probe."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

pytest.importorskip("gymnasium")

from contrastkit.apps import taco


def _centroid(img: np.ndarray) -> tuple[float, float]:
    yy, xx = np.mgrid[: img.shape[0], : img.shape[1]]
    return float((img * xx).sum() / img.sum()), float((img * yy).sum() / img.sum())


def test_render_draws_the_rod_where_the_angle_points() -> None:
    up, right, down = taco._render(np.array([0.0, math.pi / 2, math.pi]))
    c = (taco._SIZE - 1) / 2
    assert _centroid(up)[1] < c - 2  # upright: mass above the pivot (image y grows downwards)
    assert _centroid(down)[1] > c + 2
    assert _centroid(right)[0] > c + 2  # theta = pi/2: to the right
    assert up.min() >= 0.0 and up.max() <= 1.0
    again = taco._render(np.array([2 * math.pi]))[0]
    np.testing.assert_allclose(again, up, atol=1e-5)


def test_transitions_pair_each_frame_with_the_one_k_steps_later() -> None:
    tr = taco._transitions(seed=3, episodes=2, length=10, horizon=3)
    per_episode = 10 + 2 - 1 - 3
    assert tr.obs.shape == (2 * per_episode, 2, taco._SIZE, taco._SIZE)
    assert tr.actions.shape == (2 * per_episode, 3) and tr.actions.abs().max() <= 1.0
    # within an episode, the future of step t is the observation of step t + K
    torch.testing.assert_close(tr.future[0], tr.obs[3])
    # the second frame of an observation is the first frame of the next one
    torch.testing.assert_close(tr.obs[0, 1], tr.obs[1, 0])
    # the state is (cos, sin, velocity) of the current frame
    torch.testing.assert_close(tr.state[:, 0] ** 2 + tr.state[:, 1] ** 2, torch.ones(len(tr.state)))


def test_ridge_r2_reads_a_linear_target_and_not_noise() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    y = torch.stack([x[:, 0] * 2 - x[:, 3], torch.randn(400, generator=g)], dim=1)
    r2 = taco._ridge_r2(x[:300], y[:300], x[300:], y[300:], alpha=1e-4)
    assert r2[0] > 0.99
    assert r2[1] < 0.1


def test_taco_loss_is_finite_and_reaches_the_encoder() -> None:
    torch.manual_seed(0)
    model = taco._Taco(horizon=3, proj_dim=8)
    tr = taco._transitions(seed=1, episodes=1, length=12, horizon=3)
    loss = model.loss(tr.obs, tr.actions, tr.future)
    grads = torch.autograd.grad(loss, list(model.encoder.parameters()))
    assert torch.isfinite(loss) and any(g.abs().sum() > 0 for g in grads)
