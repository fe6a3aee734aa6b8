"""SmallCNN: output sizes for each configuration, parameter count, and input errors."""

from __future__ import annotations

import pytest
import torch

from contrastkit.models import ContrastiveModel, MLPHead, SmallCNN, count_parameters


@pytest.mark.parametrize(
    ("kwargs", "size", "out_dim"),
    [
        ({}, 8, 128),
        ({"widths": (32, 64, 128, 256), "strides": (2, 1, 2, 1)}, 28, 256),
        ({"widths": (32, 64, 128, 256), "strides": (2, 1, 2, 1), "pool_size": 2}, 28, 1024),
        ({"widths": (8, 16), "in_channels": 3}, 32, 16),
    ],
)
def test_output_dimension(kwargs: dict, size: int, out_dim: int) -> None:
    enc = SmallCNN(**kwargs)
    x = torch.rand(3, enc.in_channels, size, size)
    h = enc(x)
    assert h.shape == (3, out_dim) == (3, enc.out_dim)


def test_default_parameter_count_and_head() -> None:
    enc = SmallCNN()
    assert count_parameters(enc) == 286_880
    model = ContrastiveModel(enc, MLPHead(enc.out_dim, hidden_dim=64, out_dim=16))
    h, z = model(torch.rand(4, 1, 8, 8))
    assert h.shape == (4, 128) and z.shape == (4, 16)


def test_pooling_grid_keeps_layout() -> None:
    enc = SmallCNN(widths=(4,), strides=(1,), pool_size=2).eval()
    left = torch.zeros(1, 1, 8, 8)
    left[..., :, :4] = 1.0
    right = left.flip(-1)
    assert not torch.allclose(enc(left), enc(right))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"widths": ()}, "widths"),
        ({"widths": (8, 8), "strides": (1,)}, "strides"),
        ({"widths": (8,), "strides": (3,)}, "strides"),
        ({"pool_size": 0}, "pool_size"),
        ({"in_channels": 0}, "in_channels"),
    ],
)
def test_bad_configuration(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SmallCNN(**kwargs)


def test_wrong_input_channels() -> None:
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        SmallCNN()(torch.rand(2, 3, 8, 8))
