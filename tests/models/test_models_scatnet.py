"""Tests of the scattering transform and the ScatNet + adapter encoder (docs/methods.md 3.9)."""

from __future__ import annotations

import math

import pytest
import torch

from contrastkit.models import MLPHead, ScatNetEncoder, Scattering2D, count_parameters
from contrastkit.models.scatnet import ADAPTER_LAYOUTS, scattering_channels


def _kymatio_scattering() -> type:
    """kymatio's torch Scattering2D, or skip.

    kymatio 0.3.0 imports ``scipy.special.sph_harm`` in its 3-D module, which scipy >= 1.15 no
    longer has; the 2-D transform does not use it, so a placeholder attribute lets the package
    import. Nothing else is changed.
    """
    pytest.importorskip("kymatio")
    import scipy.special

    if not hasattr(scipy.special, "sph_harm"):
        scipy.special.sph_harm = None  # type: ignore[attr-defined]
    try:
        from kymatio.torch import Scattering2D as KymatioScattering2D
    except ImportError as err:  # pragma: no cover - depends on the installed versions
        pytest.skip(f"kymatio does not import here: {err}")
    return KymatioScattering2D  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("J", "L", "shape", "max_order"),
    [
        (2, 8, (28, 28), 2),  # Fashion-MNIST size, kymatio's default L
        (2, 16, (32, 32), 2),  # ScatSimCLR's J, L at CIFAR size
        (3, 4, (32, 24), 2),  # non-square, three scales
        (1, 6, (14, 18), 2),  # J = 1: no second order
        (2, 4, (30, 26), 1),  # sizes not divisible by 2^J, order 1 only
    ],
)
def test_scattering_matches_kymatio(J: int, L: int, shape: tuple[int, int], max_order: int) -> None:
    reference_cls = _kymatio_scattering()
    x = torch.rand(3, 2, *shape, generator=torch.Generator().manual_seed(J * 100 + L))
    ref = reference_cls(J=J, shape=shape, L=L, max_order=max_order)(x)
    ours = Scattering2D(J=J, shape=shape, L=L, max_order=max_order)(x)
    assert ours.shape == ref.shape
    # float32 tolerance: differences come from the order of float32 operations only (measured
    # max |difference| about 2e-7 on coefficients of size up to 0.7).
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=2e-6)


def test_scattering_shapes_and_channel_count() -> None:
    assert scattering_channels(2, 16) == 289  # ScatSimCLR, per colour channel
    assert scattering_channels(2, 8) == 81
    assert scattering_channels(3, 8, max_order=1) == 25
    s = Scattering2D(J=2, shape=(28, 28), L=8)
    assert s.out_channels == 81 and s.out_shape == (7, 7)
    assert s(torch.rand(4, 28, 28)).shape == (4, 81, 7, 7)
    assert s(torch.rand(2, 3, 28, 28)).shape == (2, 3, 81, 7, 7)
    assert s(torch.rand(28, 28)).shape == (81, 7, 7)
    assert list(s.parameters()) == [] and s.state_dict() == {}
    assert Scattering2D(J=2, shape=(30, 26), L=4).out_shape == (7, 6)


def test_constant_image_gives_only_the_low_pass() -> None:
    # The Morlet wavelets have zero mean, so a constant image has no order-1 / order-2 energy; the
    # low-pass filter sums to pi / 3.1415 (kymatio's normalisation constant), not exactly 1.
    s = Scattering2D(J=2, shape=(16, 16), L=4)
    y = s(torch.full((1, 16, 16), 0.7, dtype=torch.float64))
    torch.testing.assert_close(
        y[0, 0], torch.full((4, 4), 0.7 * math.pi / 3.1415, dtype=torch.float64)
    )
    assert float(y[0, 1:].abs().max()) < 1e-10


def test_scattering_is_positively_homogeneous_and_dtype_preserving() -> None:
    s = Scattering2D(J=2, shape=(16, 16), L=4)
    x = torch.rand(2, 16, 16, dtype=torch.float64)
    torch.testing.assert_close(s(3.0 * x), 3.0 * s(x))
    assert s(x).dtype == torch.float64
    assert s(x.float()).dtype == torch.float32
    assert s(x.bfloat16()).dtype == torch.bfloat16
    torch.testing.assert_close(s(x.float()).double(), s(x), rtol=1e-4, atol=1e-6)


def test_scattering_errors() -> None:
    s = Scattering2D(J=2, shape=(16, 16), L=4)
    with pytest.raises(ValueError, match=r"\(\.\.\., 16, 16\)"):
        s(torch.rand(2, 16, 15))
    with pytest.raises(TypeError, match="floating-point"):
        s(torch.zeros(2, 16, 16, dtype=torch.long))
    with pytest.raises(ValueError, match="too small"):
        Scattering2D(J=3, shape=(8, 8))
    with pytest.raises(ValueError, match="max_order"):
        Scattering2D(J=2, shape=(16, 16), max_order=3)
    with pytest.raises(ValueError, match="J must"):
        Scattering2D(J=0, shape=(16, 16))


def test_scatnet_reference_parameter_count() -> None:
    # ScatSimCLR8 on RGB (J = 2, L = 16: 867 scattering channels) with the 2048-2048-128 head:
    # 6,106,214 trainable parameters (paper: 6.1 M); filters are buffers, not parameters.
    enc = ScatNetEncoder(image_size=16, in_channels=3, J=2, L=16, n_blocks=8)
    head = MLPHead(enc.out_dim, hidden_dim=2048, out_dim=128)
    assert enc.scattering_channels == 867 and enc.out_dim == 2048
    assert count_parameters(enc) + count_parameters(head) == 6_106_214
    no_bn = ScatNetEncoder(image_size=16, in_channels=3, J=2, L=16, input_batch_norm=False)
    assert count_parameters(enc) - count_parameters(no_bn) == 2 * 867
    assert set(ADAPTER_LAYOUTS) == {8, 12, 16, 30, 45}


def test_scatnet_encoder_forward_and_custom_adapter() -> None:
    torch.manual_seed(0)
    enc = ScatNetEncoder(
        image_size=28,
        in_channels=1,
        J=2,
        L=8,
        stem_width=16,
        stages=((16, 1), (32, 1)),
        pool_size=2,
    )
    assert enc.out_dim == 32 * 4
    x = torch.rand(4, 1, 28, 28)
    h = enc(x)
    assert h.shape == (4, 128) and torch.isfinite(h).all()
    h.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())
    enc.eval()
    assert torch.equal(enc(x), enc(x))
    # Trainable: BN on 81 maps + stem + two one-block stages.
    stem = 81 * 16 * 9 + 32
    stage1 = 2 * (16 * 16 * 9 + 32)
    stage2 = 16 * 32 * 9 + 64 + 32 * 32 * 9 + 64 + 16 * 32 + 64
    assert count_parameters(enc) == 2 * 81 + stem + stage1 + stage2
    with pytest.raises(ValueError, match=r"\(B, 1, 28, 28\)"):
        enc(torch.rand(4, 3, 28, 28))
    with pytest.raises(ValueError, match="n_blocks"):
        ScatNetEncoder(image_size=28, n_blocks=10)
    with pytest.raises(ValueError, match="stages"):
        ScatNetEncoder(image_size=28, stages=((16, 0),))
