"""Tests of the encoders: CIFAR-stem ResNet, MLP, 1-D CNN (shapes, parameters, determinism)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from contrastkit.models import (
    Conv1dEncoder,
    MLPEncoder,
    ResNet,
    count_parameters,
    resnet18,
    resnet34,
)
from contrastkit.models.resnet import BasicBlock


def _expected_resnet_params(layers: tuple[int, ...], in_channels: int, width: int) -> int:
    """Parameter count written out layer by layer (conv weights + BN weight and bias)."""
    total = in_channels * width * 9 + 2 * width  # stem conv + BN
    c = width
    for i, n in enumerate(layers):
        out = width * 2**i
        for b in range(n):
            c_in = c if b == 0 else out
            total += c_in * out * 9 + 2 * out + out * out * 9 + 2 * out
            if b == 0 and (i > 0 or c != out):
                total += c_in * out + 2 * out  # 1x1 shortcut conv + BN
        c = out
    return total


def test_resnet_parameter_counts() -> None:
    # torchvision's ResNet-18 / 34 counts (11,689,512 / 21,797,672) minus the fc layer
    # (513,000) and the 7x7 stem (9,408), plus the 3x3 stem (1,728).
    assert count_parameters(resnet18()) == 11_168_832
    assert count_parameters(resnet34()) == 21_276_992
    assert count_parameters(resnet18()) == _expected_resnet_params((2, 2, 2, 2), 3, 64)
    for layers, c, w in (((2, 2, 2, 2), 1, 8), ((3, 4, 6, 3), 2, 4), ((1, 1, 1, 1), 3, 16)):
        model = ResNet(layers, in_channels=c, width=w)
        assert count_parameters(model) == _expected_resnet_params(layers, c, w)


@pytest.mark.parametrize("factory", [resnet18, resnet34])
def test_resnet_shapes_and_stem(factory: type[ResNet]) -> None:
    torch.manual_seed(0)
    model = factory(in_channels=1, width=4)
    assert model.out_dim == 32
    y = model(torch.rand(2, 1, 8, 8))
    assert y.shape == (2, 32)
    # CIFAR stem: 3x3 stride 1, no max-pool (a stem feature map keeps the input size).
    stem_conv = model.stem[0]
    assert isinstance(stem_conv, nn.Conv2d)
    assert stem_conv.kernel_size == (3, 3) and stem_conv.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    assert model.stem(torch.rand(2, 1, 8, 8)).shape == (2, 4, 8, 8)
    # Stages halve the resolution three times: 8 -> 1.
    assert model.stages(model.stem(torch.rand(2, 1, 8, 8))).shape == (2, 32, 1, 1)


def test_resnet_is_deterministic_and_zero_init() -> None:
    torch.manual_seed(3)
    a = resnet18(width=4)
    torch.manual_seed(3)
    b = resnet18(width=4)
    x = torch.rand(2, 3, 8, 8)
    a.eval()
    b.eval()
    assert torch.equal(a(x), b(x))
    z = resnet18(width=4, zero_init_residual=True)
    blocks = [m for m in z.modules() if isinstance(m, BasicBlock)]
    assert len(blocks) == 8 and all(float(m.bn2.weight.detach().abs().sum()) == 0 for m in blocks)


def test_basic_block_shortcut() -> None:
    assert isinstance(BasicBlock(4, 4).shortcut, nn.Identity)
    assert isinstance(BasicBlock(4, 8).shortcut, nn.Sequential)
    assert BasicBlock(4, 8, stride=2)(torch.rand(1, 4, 6, 6)).shape == (1, 8, 3, 3)


def test_mlp_encoder() -> None:
    enc = MLPEncoder(10, hidden_dims=(16, 8))
    assert enc.out_dim == 8
    assert count_parameters(enc) == 10 * 16 + 2 * 16 + 16 * 8 + 2 * 8  # no bias with BN
    y = enc(torch.rand(5, 10)).detach()
    assert y.shape == (5, 8) and float(y.min()) >= 0
    assert enc(torch.rand(5, 1, 2, 5)).shape == (5, 8)  # flattened
    plain = MLPEncoder(10, hidden_dims=(16,), batch_norm=False, dropout=0.1)
    assert count_parameters(plain) == 10 * 16 + 16
    assert any(isinstance(m, nn.Dropout) for m in plain.modules())
    with pytest.raises(ValueError, match=r"\(B, 10\)"):
        enc(torch.rand(5, 9))
    for kw in ({"hidden_dims": ()}, {"hidden_dims": (4, 0)}, {"dropout": 1.0}):
        with pytest.raises(ValueError):
            MLPEncoder(10, **kw)  # type: ignore[arg-type]


def test_conv1d_encoder() -> None:
    enc = Conv1dEncoder(3)
    assert enc.out_dim == 128
    # FCN (128, 256, 128) filters, kernels (8, 5, 3), BN: conv weights + 2 per channel.
    assert count_parameters(enc) == (3 * 128 * 8 + 256) + (128 * 256 * 5 + 512) + (
        256 * 128 * 3 + 256
    )
    torch.manual_seed(0)
    small = Conv1dEncoder(2, widths=(4, 6), kernel_sizes=(4, 3), strides=(2, 1))
    for t in (1, 7, 32):
        assert small(torch.randn(3, 2, t)).shape == (3, 6)
    # "same" padding at stride 1: the feature map keeps the length.
    same = Conv1dEncoder(1, widths=(2,), kernel_sizes=(8,))
    assert same.features(torch.randn(1, 1, 11)).shape == (1, 2, 11)
    with pytest.raises(ValueError, match=r"\(B, 2, T\)"):
        small(torch.randn(3, 3, 8))
    with pytest.raises(ValueError, match="equal length"):
        Conv1dEncoder(1, widths=(4, 4), kernel_sizes=(3,))


@pytest.mark.parametrize(
    ("bad", "exc"),
    # check_int: a non-integer (bool included) is a TypeError, an integer out of range a ValueError
    [(0, ValueError), (-1, ValueError), (True, TypeError), (2.0, TypeError)],
)
def test_resnet_rejects_bad_arguments(bad: int, exc: type[Exception]) -> None:
    with pytest.raises(exc):
        resnet18(in_channels=bad)
    with pytest.raises(exc):
        ResNet((2, 2, 2, bad))
    with pytest.raises(ValueError, match="4 stages"):
        ResNet((2, 2, 2))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        resnet18(width=2)(torch.rand(1, 1, 8, 8))
