"""The swift app's simulated scans and its 4-D encoder."""

from __future__ import annotations

import torch

from contrastkit.apps.swift import VolumeEncoder, simulate_scans


def test_scans_shape_labels_and_seeding() -> None:
    a = simulate_scans(12, 10, seed=1, world_seed=0)
    b = simulate_scans(12, 10, seed=1, world_seed=0)
    c = simulate_scans(12, 10, seed=2, world_seed=0)
    assert a.volumes.shape == (12, 10, 12, 12, 12) and a.volumes.dtype == torch.float32
    assert torch.equal(a.volumes, b.volumes) and not torch.equal(a.volumes, c.volumes)
    assert torch.equal(a.labels, (a.traits > 0).long())


def test_trait_shapes_the_mean_activation_map() -> None:
    s = simulate_scans(300, 8, seed=3, world_seed=0)
    maps = s.volumes.mean(dim=1).flatten(1)  # time-averaged map per subject
    maps = maps - maps.mean(dim=0)
    # the trait is linearly readable from the map: a least-squares fit on half predicts the rest
    x_tr, x_te = maps[:150], maps[150:]
    y_tr, y_te = s.traits[:150], s.traits[150:]
    u, sv, vh = torch.linalg.svd(x_tr, full_matrices=False)
    k = 10
    w = vh[:k].T @ torch.diag(1 / sv[:k]) @ u[:, :k].T @ y_tr
    corr = torch.corrcoef(torch.stack([x_te @ w, y_te]))[0, 1]
    assert float(corr) > 0.5


def test_world_is_shared_by_train_and_test_subjects() -> None:
    a = simulate_scans(200, 6, seed=1, world_seed=4).volumes.mean(dim=(0, 1))
    b = simulate_scans(200, 6, seed=2, world_seed=4).volumes.mean(dim=(0, 1))
    c = simulate_scans(200, 6, seed=2, world_seed=5).volumes.mean(dim=(0, 1))
    assert float((a - b).abs().mean()) < float((a - c).abs().mean())


def test_encoder_output() -> None:
    enc = VolumeEncoder(6, out_dim=16)
    assert enc(torch.randn(3, 6, 12, 12, 12)).shape == (3, 16)
