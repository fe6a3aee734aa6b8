"""GenView's pair weights: mean one over the batch, larger for better pairs, detached by the loss."""

from __future__ import annotations

import torch

from contrastkit.apps.genview import pair_weights
from contrastkit.losses import NTXent


def test_weights_have_mean_one_and_follow_the_pair_quality() -> None:
    quality = torch.tensor([[1.0, 1.0], [1.0, 0.5], [0.2, 0.9], [0.0, 1.0]])
    w = pair_weights(quality, gamma=2.0)
    assert abs(float(w.mean()) - 1) < 1e-6
    # the pair's quality is the product of its views': 1 > 0.5 > 0.18 > 0
    assert bool((w[:-1] > w[1:]).all())


def test_equal_qualities_give_the_unweighted_loss() -> None:
    z = torch.randn(6, 2, 8)
    w = pair_weights(torch.full((6, 2), 0.7))
    loss = NTXent(temperature=0.2)
    torch.testing.assert_close(loss(z, weights=w), loss(z))


def test_a_larger_gamma_spreads_the_weights() -> None:
    quality = torch.rand(32, 2, generator=torch.Generator().manual_seed(0))
    assert float(pair_weights(quality, gamma=5.0).std()) > float(pair_weights(quality, 1.0).std())
