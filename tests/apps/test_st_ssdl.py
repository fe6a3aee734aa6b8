"""ST-SSDL app: the simulated sensor network, the windows and the two self-supervised terms."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from contrastkit.apps import st_ssdl
from contrastkit.losses import MoCoLoss


def test_simulator_has_rush_hours_weekends_and_incidents() -> None:
    net = st_ssdl._simulate(seed=0, nodes=10, weeks=3)
    assert net.flow.shape == (3 * st_ssdl._WEEK, 10)
    days = net.flow.reshape(21, 24, 10)
    weekday, weekend = days[[0, 1, 2, 3, 4]].mean(axis=(0, 2)), days[[5, 6]].mean(axis=(0, 2))
    assert weekday[8] > weekday[3] + 10  # morning peak over the night
    assert weekday[8] > weekend[8] + 5  # weekend mornings are quieter
    assert 0.0 < net.incident.mean() < 0.3
    clean = st_ssdl._simulate(seed=0, nodes=10, weeks=3)
    np.testing.assert_array_equal(clean.flow, net.flow)  # seeded
    np.testing.assert_allclose(net.adjacency, net.adjacency.T)


def test_incidents_lower_the_flow_against_the_historical_average() -> None:
    net = st_ssdl._simulate(seed=1, nodes=12, weeks=6)
    ha = st_ssdl._historical_average(net, 6 * st_ssdl._WEEK)
    dev = net.flow - np.tile(ha, (6, 1))
    assert dev[net.incident].mean() < dev[~net.incident].mean() - 3


def test_windows_are_aligned() -> None:
    cfg = st_ssdl._config(True)
    net, train, test = st_ssdl._data(0, cfg)
    torch.testing.assert_close(train.y[0, 0], torch.from_numpy(net.flow[cfg.window]))
    torch.testing.assert_close(train.x[1, -1], train.y[0, 0])
    ha = st_ssdl._historical_average(net, (cfg.weeks - cfg.test_weeks) * st_ssdl._WEEK)
    torch.testing.assert_close(train.x_hist[0, 0], torch.from_numpy(ha[0]))
    assert test.y.shape[1:] == (cfg.horizon, cfg.nodes)


def test_prototype_contrast_is_cross_entropy_over_prototypes_and_deviation_vanishes() -> None:
    g = torch.Generator().manual_seed(0)
    h, protos = torch.randn(6, 4, generator=g), torch.randn(5, 4, generator=g)
    contrast = MoCoLoss(temperature=0.5, decoupled=True)
    c, d = st_ssdl.prototype_losses(h, h, protos, contrast)
    assert float(d) == pytest.approx(0.0, abs=1e-6)  # no deviation from an identical anchor
    sim = torch.nn.functional.normalize(h, dim=1) @ torch.nn.functional.normalize(protos, dim=1).T
    expected = torch.nn.functional.cross_entropy(sim / 0.5, sim.argmax(dim=1))
    assert float(c) == pytest.approx(float(expected), rel=1e-5)
    _, d2 = st_ssdl.prototype_losses(h, h + 3.0, protos, contrast)
    assert float(d2) > 0.0


def test_forecaster_starts_from_the_historical_average() -> None:
    cfg = dataclasses.replace(st_ssdl._config(True), epochs=1)
    net, train, _ = st_ssdl._data(0, cfg)
    torch.manual_seed(0)
    model = st_ssdl._Forecaster(cfg, net.adjacency, 30.0, 10.0)
    torch.nn.init.zeros_(model.out.weight)
    torch.nn.init.zeros_(model.out.bias)
    pred, h, h_hist = model(train.x[:4], train.x_hist[:4], train.y_hist[:4])
    torch.testing.assert_close(pred, train.y_hist[:4])
    assert h.shape == h_hist.shape == (4, cfg.nodes, cfg.hidden)
