"""Tests of the projection heads (SimCLR MLP, LibAUC BN, fixed reweighting) and pretext heads."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.models import MLPHead, ReweightHead, count_parameters, libauc_head
from contrastkit.models.heads import REWEIGHT_DEFAULT_KAPPA, JigsawHead, RotationHead


def test_simclr_head_with_and_without_batch_norm() -> None:
    plain = MLPHead(2048, hidden_dim=2048, out_dim=128)  # ScatSimCLR's head
    assert count_parameters(plain) == 2048 * 2048 + 2048 + 2048 * 128 + 128
    assert not any(isinstance(m, nn.BatchNorm1d) for m in plain.modules())
    bn = MLPHead(16, hidden_dim=8, out_dim=4, batch_norm=True)
    layers = list(bn.net)
    assert isinstance(layers[0], nn.Linear) and layers[0].bias is None
    assert isinstance(layers[1], nn.BatchNorm1d)
    assert bn(torch.randn(5, 16)).shape == (5, 4)


def test_libauc_head_layout_and_output_normalisation() -> None:
    head = libauc_head(32)
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear", "BatchNorm1d"]
    assert head.out_dim == 256
    lin1, bn1, _, lin2, bn2 = head.net
    assert lin1.out_features == 2048 and lin1.bias is None and lin2.bias is None
    assert bn1.affine and not bn2.affine
    assert count_parameters(head) == 32 * 2048 + 2 * 2048 + 2048 * 256
    head.train()
    z = head(torch.randn(64, 32)).detach()
    # Training-mode output is standardised per dimension by the final non-affine batch norm.
    torch.testing.assert_close(z.mean(0), torch.zeros(256), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.var(0, unbiased=False), torch.ones(256), atol=1e-3, rtol=0)


def test_reweight_head_is_fixed_and_geometric() -> None:
    head = ReweightHead(5, kappa=2.0)
    assert count_parameters(head, trainable_only=False) == 0
    torch.testing.assert_close(head.weights, torch.tensor([1.0, 0.5, 0.25, 0.125, 0.0625]))
    h = torch.randn(3, 5, requires_grad=True)
    z = head(h)
    torch.testing.assert_close(z, h * torch.tensor([1.0, 0.5, 0.25, 0.125, 0.0625]))
    z.sum().backward()
    assert h.grad is not None
    torch.testing.assert_close(h.grad[0], torch.tensor([1.0, 0.5, 0.25, 0.125, 0.0625]))
    assert "weights" in head.state_dict()
    ident = ReweightHead(4, kappa=1.0)
    x = torch.randn(2, 4)
    assert torch.equal(ident(x), x)
    default = ReweightHead(512)
    assert default.kappa == REWEIGHT_DEFAULT_KAPPA
    torch.testing.assert_close(default.weights[-1], torch.tensor(REWEIGHT_DEFAULT_KAPPA**-511))
    assert head(torch.randn(2, 5, dtype=torch.float64)).dtype == torch.float64
    with pytest.raises(ValueError, match="last dimension 5"):
        head(torch.randn(2, 4))
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="kappa"):
            ReweightHead(4, kappa=bad)


def test_rotation_head_matches_the_paper_at_2048_and_scales() -> None:
    head = RotationHead(2048)
    linears = [m for m in head.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2048, 512), (512, 128), (128, 4)]
    kinds = [type(m).__name__ for m in head.net]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    assert all(m.p == 0.5 for m in head.net if isinstance(m, nn.Dropout))
    small = RotationHead(128)
    assert [m.out_features for m in small.net if isinstance(m, nn.Linear)] == [32, 8, 4]
    assert small(torch.randn(6, 128)).shape == (6, 4)
    assert [m.out_features for m in RotationHead(8).net if isinstance(m, nn.Linear)] == [2, 1, 4]


def test_jigsaw_head_matches_the_paper_at_2048_and_scales() -> None:
    head = JigsawHead(2048)
    assert (head.tile_fc[0].in_features, head.tile_fc[0].out_features) == (2048, 512)
    assert (head.classifier[0].in_features, head.classifier[0].out_features) == (9 * 512, 4096)
    assert head.classifier[-1].out_features == 35
    small = JigsawHead(16, n_permutations=10)
    h = torch.randn(3, 9, 16)
    assert small(h).shape == (3, 10)
    small.eval()
    # The per-tile fc is shared: permuting the tiles permutes the concatenated blocks.
    per_tile = small.tile_fc(h)
    torch.testing.assert_close(small.tile_fc(h.flip(1)), per_tile.flip(1))
    with pytest.raises(ValueError, match=r"\(B, 9, 16\)"):
        small(torch.randn(3, 8, 16))
    with pytest.raises(ValueError, match="dropout"):
        JigsawHead(16, dropout=1.5)
