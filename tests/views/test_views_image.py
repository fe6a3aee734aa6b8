"""Tests of the batched image ops in ``contrastkit.views.image``."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.views import image as I


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture
def rgb() -> Tensor:
    return torch.rand(8, 3, 12, 16, generator=gen(123))


# Each op with parameters that make it act on every sample (p = 1) and draw per-sample randomness.
OPS: list[tuple[str, Callable[..., Tensor], dict[str, Any]]] = [
    ("crop", I.random_resized_crop, {"scale": (0.2, 0.8)}),
    (
        "affine",
        I.random_affine,
        {"degrees": 20.0, "translate": (0.1, 0.2), "scale": (0.8, 1.2), "shear": 10.0},
    ),
    ("hflip", I.random_horizontal_flip, {"p": 0.5}),
    ("jitter", I.color_jitter, {"p": 1.0}),
    ("gray", I.random_grayscale, {"p": 0.5}),
    ("blur", I.gaussian_blur, {"p": 1.0, "sigma": (0.5, 2.0)}),
    ("noise", I.gaussian_noise, {"p": 1.0, "std": (0.02, 0.1)}),
    ("solarize", I.solarize, {"p": 0.5, "threshold": 0.5}),
    ("cutout", I.cutout, {"p": 1.0, "value": 0.5}),
]
IDS = [name for name, _, _ in OPS]


@pytest.mark.parametrize(("name", "op", "kw"), OPS, ids=IDS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_op_keeps_shape_dtype_and_range(
    name: str, op: Callable[..., Tensor], kw: dict[str, Any], dtype: torch.dtype, rgb: Tensor
) -> None:
    x = rgb.to(dtype)
    y = op(x, gen(1), **kw)
    assert y.shape == x.shape
    assert y.dtype == dtype
    assert y.device == x.device
    assert float(y.min()) >= 0.0
    assert float(y.max()) <= 1.0
    assert not torch.equal(y, x)


@pytest.mark.parametrize(("name", "op", "kw"), OPS, ids=IDS)
def test_op_reproducible_from_seed(
    name: str, op: Callable[..., Tensor], kw: dict[str, Any], rgb: Tensor
) -> None:
    a = op(rgb, gen(7), **kw)
    b = op(rgb, gen(7), **kw)
    c = op(rgb, gen(8), **kw)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize(("name", "op", "kw"), OPS, ids=IDS)
def test_op_draws_per_sample_parameters(
    name: str, op: Callable[..., Tensor], kw: dict[str, Any]
) -> None:
    # A batch of 16 copies of one image: per-sample parameters make the outputs differ.
    one = torch.rand(1, 3, 12, 12, generator=gen(5))
    y = op(one.expand(16, 3, 12, 12).contiguous(), gen(3), **kw)
    distinct = {tuple(row.flatten().tolist()) for row in y}
    assert len(distinct) > 1


def test_op_works_on_grayscale_images() -> None:
    x = torch.rand(4, 1, 10, 10, generator=gen(2))
    for _, op, kw in OPS:
        y = op(x, gen(0), **kw)
        assert y.shape == x.shape
        assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_global_generator_is_used_without_a_generator(rgb: Tensor) -> None:
    torch.manual_seed(0)
    a = I.color_jitter(rgb)
    torch.manual_seed(0)
    b = I.color_jitter(rgb)
    assert torch.equal(a, b)


# --- geometry -------------------------------------------------------------------------------------


def test_affine_grid_matches_torch(rgb: Tensor) -> None:
    n, _, h, w = rgb.shape
    theta = I.crop_matrix(n, height=h, width=w, generator=gen(0)) @ I.affine_matrix(
        n, height=h, width=w, degrees=30, translate=(0.1, 0.1), shear=10, generator=gen(1)
    )
    ours = I._affine_grid(theta, n, h, w)
    ref = F.affine_grid(theta[:, :2], [n, 3, h, w], align_corners=False)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_full_crop_is_identity(rgb: Tensor) -> None:
    h, w = rgb.shape[-2:]
    y = I.random_resized_crop(rgb, gen(0), scale=(1.0, 1.0), ratio=(w / h, w / h))
    torch.testing.assert_close(y, rgb, atol=1e-5, rtol=0)
    square = rgb[..., :12]
    y = I.random_resized_crop(square, gen(0), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    torch.testing.assert_close(y, square, atol=1e-5, rtol=0)


def test_crop_boxes_stay_inside_and_follow_the_ranges() -> None:
    h, w = 20, 30
    m = I.crop_matrix(4000, height=h, width=w, scale=(0.1, 0.6), ratio=(0.5, 2.0), generator=gen(0))
    sx, sy, tx, ty = m[:, 0, 0], m[:, 1, 1], m[:, 0, 2], m[:, 1, 2]
    assert torch.all(tx.abs() + sx <= 1 + 1e-6)
    assert torch.all(ty.abs() + sy <= 1 + 1e-6)
    area = sx * sy
    assert torch.all(area >= 0.1 - 1e-5) and torch.all(area <= 0.6 + 1e-5)
    ratio = (sx * w) / (sy * h)
    assert torch.all(ratio >= 0.5 - 1e-4) and torch.all(ratio <= 2.0 + 1e-4)
    assert torch.all(m[:, 0, 1] == 0) and torch.all(m[:, 2] == torch.tensor([0.0, 0.0, 1.0]))


def test_crop_falls_back_to_centre_crop_when_nothing_fits() -> None:
    # A ratio of 4 cannot cover 90% of a square image: the fallback is the centred full-height box.
    m = I.crop_matrix(5, height=10, width=10, scale=(0.9, 1.0), ratio=(4.0, 4.0), generator=gen(0))
    torch.testing.assert_close(m[:, 0, 0], torch.ones(5))
    torch.testing.assert_close(m[:, 1, 1], torch.full((5,), 0.25))
    torch.testing.assert_close(m[:, :2, 2], torch.zeros(5, 2))


def test_flip_matrix_and_flip_op_flip(rgb: Tensor) -> None:
    n = rgb.shape[0]
    flipped = I.apply_affine(rgb, I.flip_matrix(n, p=1.0, generator=gen(0)))
    torch.testing.assert_close(flipped, rgb.flip(-1), atol=1e-6, rtol=0)
    vflipped = I.apply_affine(rgb, I.flip_matrix(n, p=1.0, vertical=True, generator=gen(0)))
    torch.testing.assert_close(vflipped, rgb.flip(-2), atol=1e-6, rtol=0)
    assert torch.equal(I.random_horizontal_flip(rgb, gen(0), p=1.0), rgb.flip(-1))
    assert torch.equal(I.random_horizontal_flip(rgb, gen(0), p=0.0), rgb)
    half = I.random_horizontal_flip(rgb, gen(0), p=0.5)
    for a, b in zip(half, rgb, strict=True):
        assert torch.equal(a, b) or torch.equal(a, b.flip(-1))


def test_apply_affine_rotates_a_quarter_turn_exactly() -> None:
    x = torch.rand(2, 1, 9, 9, generator=gen(0))
    # Sampling matrix of a 90-degree rotation: output (u, v) reads input (v, -u).
    theta = torch.tensor([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]).expand(2, 2, 3)
    y = I.apply_affine(x, theta)
    assert torch.allclose(y, torch.rot90(x, 1, dims=(-2, -1)), atol=1e-6) or torch.allclose(
        y, torch.rot90(x, -1, dims=(-2, -1)), atol=1e-6
    )


def test_affine_identity_settings_and_rigid_rotation_on_non_square_images(rgb: Tensor) -> None:
    y = I.random_affine(rgb, gen(0))
    torch.testing.assert_close(y, rgb, atol=1e-5, rtol=0)
    h, w = 20, 40
    m = I.affine_matrix(50, height=h, width=w, degrees=45.0, generator=gen(0))
    # Back in pixel units the 2x2 part must be a rotation (orthonormal, det 1).
    p = torch.diag(torch.tensor([w / 2.0, h / 2.0]))
    a = p @ m[:, :2, :2] @ torch.linalg.inv(p)
    torch.testing.assert_close(
        a @ a.transpose(1, 2), torch.eye(2).expand(50, 2, 2), atol=1e-5, rtol=0
    )
    torch.testing.assert_close(torch.linalg.det(a), torch.ones(50), atol=1e-5, rtol=0)
    angles = torch.rad2deg(torch.atan2(a[:, 1, 0], a[:, 0, 0]))
    assert float(angles.abs().max()) <= 45.0 + 1e-3
    assert float(angles.abs().max()) > 20.0


def test_affine_zoom_and_translation_ranges() -> None:
    m = I.affine_matrix(
        200, height=10, width=10, scale=(0.5, 2.0), translate=(0.25, 0.0), generator=gen(0)
    )
    zoom = 1.0 / m[:, 0, 0]  # sampling matrix holds the inverse zoom
    assert float(zoom.min()) >= 0.5 - 1e-5 and float(zoom.max()) <= 2.0 + 1e-5
    torch.testing.assert_close(m[:, 1, 2], torch.zeros(200))
    shift = -m[:, 0, 2] * zoom  # translation in normalised units = 2 * fraction
    assert float(shift.abs().max()) <= 0.5 + 1e-5


# --- colour ---------------------------------------------------------------------------------------


def test_grayscale_makes_channels_equal(rgb: Tensor) -> None:
    y = I.random_grayscale(rgb, gen(0), p=1.0)
    assert torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    torch.testing.assert_close(y[:, :1], I.rgb_to_grayscale(rgb))
    g1 = torch.rand(3, 1, 5, 5)
    assert torch.equal(I.random_grayscale(g1, gen(0), p=1.0), g1)
    assert torch.equal(I.random_grayscale(rgb, gen(0), p=0.0), rgb)


def test_hsv_round_trip_and_hue_shift(rgb: Tensor) -> None:
    torch.testing.assert_close(I.hsv_to_rgb(I.rgb_to_hsv(rgb)), rgb, atol=1e-5, rtol=0)
    shift = torch.linspace(-0.5, 0.5, rgb.shape[0])
    hsv = I.rgb_to_hsv(rgb)
    hsv = torch.stack(
        (torch.remainder(hsv[:, 0] + shift.view(-1, 1, 1), 1.0), hsv[:, 1], hsv[:, 2]), dim=1
    )
    torch.testing.assert_close(I._shift_hue(rgb, shift), I.hsv_to_rgb(hsv), atol=1e-5, rtol=0)
    # Pure red shifted by a third of a turn is pure green.
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    torch.testing.assert_close(
        I._shift_hue(red, torch.tensor([1 / 3])),
        torch.tensor([0.0, 1.0, 0.0]).view(1, 3, 1, 1),
        atol=1e-6,
        rtol=0,
    )


def test_jitter_identity_settings(rgb: Tensor) -> None:
    assert torch.equal(I.color_jitter(rgb, gen(0), p=0.0), rgb)
    assert torch.equal(
        I.color_jitter(rgb, gen(0), brightness=0, contrast=0, saturation=0, hue=0), rgb
    )
    gray = rgb[:, :1].expand(-1, 3, -1, -1).contiguous()
    # Saturation and hue leave gray pixels alone.
    y = I.color_jitter(gray, gen(0), brightness=0, contrast=0, saturation=0.9, hue=0.5, p=1.0)
    torch.testing.assert_close(y, gray, atol=1e-5, rtol=0)


def test_brightness_scales_each_sample_by_its_own_factor() -> None:
    x = torch.rand(6, 3, 8, 8, generator=gen(0)) * 0.5
    y = I.color_jitter(x, gen(1), brightness=0.5, contrast=0, saturation=0, hue=0, p=1.0)
    ratio = (y / x).flatten(1)
    torch.testing.assert_close(ratio, ratio[:, :1].expand_as(ratio), atol=1e-4, rtol=0)
    assert float(ratio.min()) >= 0.5 - 1e-4 and float(ratio.max()) <= 1.5 + 1e-4
    assert len(set(ratio[:, 0].tolist())) == 6


def test_contrast_keeps_the_mean_luma_when_unclamped() -> None:
    x = 0.4 + 0.2 * torch.rand(6, 3, 8, 8, generator=gen(0))
    y = I.color_jitter(x, gen(1), brightness=0, contrast=0.5, saturation=0, hue=0, p=1.0)
    torch.testing.assert_close(I._mean_luma(y), I._mean_luma(x), atol=1e-5, rtol=0)


def test_jitter_orders_differ_and_fixed_order_is_reproducible(rgb: Tensor) -> None:
    a = I.color_jitter(rgb, gen(0), p=1.0, order="fixed")
    b = I.color_jitter(rgb, gen(0), p=1.0, order="fixed")
    c = I.color_jitter(rgb, gen(0), p=1.0, order="random")
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# --- blur, noise, solarize, cutout ----------------------------------------------------------------


def _reference_blur(x: Tensor, sigma: float, k: int) -> Tensor:
    t = torch.arange(k, dtype=torch.float64) - k // 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).float()
    c = x.shape[1]
    y = F.pad(x, (k // 2,) * 4, mode="reflect")
    y = F.conv2d(y, g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(y, g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


@pytest.mark.parametrize("k", [3, 5, 7])
def test_blur_matches_a_reference_gaussian(rgb: Tensor, k: int) -> None:
    y = I.gaussian_blur(rgb, gen(0), sigma=(1.3, 1.3), p=1.0, kernel_size=k)
    torch.testing.assert_close(y, _reference_blur(rgb, 1.3, k), atol=1e-5, rtol=0)


def test_blur_identity_settings_and_kernel_rule(rgb: Tensor) -> None:
    assert torch.equal(I.gaussian_blur(rgb, gen(0), p=0.0), rgb)
    y = I.gaussian_blur(rgb, gen(0), sigma=(0.05, 0.05), p=1.0)
    torch.testing.assert_close(y, rgb, atol=1e-6, rtol=0)
    const = torch.full((2, 3, 10, 10), 0.3)
    torch.testing.assert_close(I.gaussian_blur(const, gen(0), p=1.0), const)
    assert [I.blur_kernel_size(s, s) for s in (224, 96, 32, 28, 8)] == [23, 9, 3, 3, 3]
    assert I.blur_kernel_size(28, 224) == 3


def test_noise_identity_and_clamping(rgb: Tensor) -> None:
    assert torch.equal(I.gaussian_noise(rgb, gen(0), std=(0.0, 0.0), p=1.0), rgb)
    assert torch.equal(I.gaussian_noise(rgb, gen(0), p=0.0), rgb)
    y = I.gaussian_noise(rgb, gen(0), std=(0.5, 0.5), p=1.0)
    assert float(y.min()) == 0.0 and float(y.max()) == 1.0
    d = I.gaussian_noise(rgb, gen(0), std=(0.01, 0.01), p=1.0) - rgb
    inner = (rgb > 0.1) & (rgb < 0.9)
    assert 0.007 < float(d[inner].std()) < 0.013


def test_solarize_inverts_above_threshold(rgb: Tensor) -> None:
    torch.testing.assert_close(I.solarize(rgb, gen(0), threshold=0.0, p=1.0), 1 - rgb)
    y = I.solarize(rgb, gen(0), threshold=0.5, p=1.0)
    torch.testing.assert_close(y, torch.where(rgb >= 0.5, 1 - rgb, rgb))
    assert torch.equal(I.solarize(rgb, gen(0), p=0.0), rgb)


def test_cutout_erases_one_rectangle_per_sample(rgb: Tensor) -> None:
    y = I.cutout(rgb, gen(0), p=1.0, value=0.5, scale=(0.1, 0.3))
    erased = (y != rgb).any(dim=1)  # (B, H, W)
    assert torch.all(y[:, 0][erased] == 0.5)
    h, w = rgb.shape[-2:]
    for m in erased:
        rows = m.any(dim=1).nonzero().flatten()
        cols = m.any(dim=0).nonzero().flatten()
        assert rows.numel() > 0
        box = m[int(rows.min()) : int(rows.max()) + 1, int(cols.min()) : int(cols.max()) + 1]
        assert bool(box.all())  # one solid rectangle
        assert box.numel() <= math.ceil(0.3 * h * w * 1.5) + 2 * (h + w)
    assert torch.equal(I.cutout(rgb, gen(0), p=0.0), rgb)


# --- validation -----------------------------------------------------------------------------------


def test_bad_inputs_are_rejected_with_clear_messages(rgb: Tensor) -> None:
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*rank 3"):
        I.color_jitter(rgb[0])
    with pytest.raises(TypeError, match=r"floating-point.*uint8"):
        I.gaussian_blur((rgb * 255).to(torch.uint8))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        I.solarize(rgb.numpy())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="empty"):
        I.cutout(torch.rand(0, 3, 4, 4))


@pytest.mark.parametrize(
    ("op", "kw", "match"),
    [
        (I.random_resized_crop, {"scale": (0.9, 0.1)}, "ordered"),
        (I.random_resized_crop, {"scale": (0.0, 0.5)}, "> 0"),
        (I.random_resized_crop, {"scale": (0.5, 1.5)}, "<= 1"),
        (I.random_resized_crop, {"ratio": (1.0,)}, "pair"),
        (I.random_resized_crop, {"padding_mode": "wrap"}, "padding_mode"),
        (I.random_affine, {"translate": (1.5, 0.0)}, "translate"),
        (I.random_affine, {"shear": 95.0}, "shear"),
        (I.random_affine, {"degrees": -1.0}, "degrees"),
        (I.random_horizontal_flip, {"p": 1.5}, r"\[0, 1\]"),
        (I.color_jitter, {"hue": 0.7}, "hue"),
        (I.color_jitter, {"order": "sorted"}, "order"),
        (I.color_jitter, {"brightness": -0.1}, "brightness"),
        (I.gaussian_blur, {"kernel_size": 4}, "odd"),
        (I.gaussian_blur, {"sigma": (0.0, 1.0)}, "sigma"),
        (I.gaussian_noise, {"std": (-0.1, 0.1)}, "std"),
        (I.solarize, {"threshold": 2.0}, "threshold"),
        (I.cutout, {"value": float("nan")}, "value"),
    ],
)
def test_bad_parameters_are_rejected(
    op: Callable[..., Tensor], kw: dict[str, Any], match: str, rgb: Tensor
) -> None:
    with pytest.raises(ValueError, match=match):
        op(rgb, gen(0), **kw)


def test_apply_affine_checks_theta(rgb: Tensor) -> None:
    with pytest.raises(ValueError, match="theta must have shape"):
        I.apply_affine(rgb, torch.eye(3).expand(2, 3, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_ops_on_gpu_with_cpu_and_gpu_generators(rgb: Tensor) -> None:
    x = rgb.cuda()
    for _, op, kw in OPS:
        a = op(x, gen(4), **kw)
        b = op(x, gen(4), **kw)
        assert a.device == x.device and torch.equal(a, b)
        g = torch.Generator(device="cuda").manual_seed(4)
        c = op(x, g, **kw)
        assert c.device == x.device and c.shape == x.shape


# --- cross-checks against torchvision, where it is installed (it is not a dependency) ------------


def _jitter_factors(seed: int, n: int, strength: float) -> Tensor:
    """Replay the draws of ``_color_jitter`` with p = 1: a coin per sample, then (n, 4) uniforms."""
    g = gen(seed)
    torch.rand(n, generator=g)
    u = torch.rand((n, 4), generator=g)
    lo = max(0.0, 1.0 - strength)
    return lo + (1.0 + strength - lo) * u


@pytest.mark.parametrize(
    ("which", "column"), [("brightness", 0), ("contrast", 1), ("saturation", 2)]
)
def test_jitter_steps_match_torchvision(which: str, column: int, rgb: Tensor) -> None:
    tvf = pytest.importorskip("torchvision.transforms.functional")
    kw = {"brightness": 0.0, "contrast": 0.0, "saturation": 0.0, "hue": 0.0, which: 0.6}
    y = I.color_jitter(rgb, gen(3), p=1.0, order="fixed", **kw)
    f = _jitter_factors(3, rgb.shape[0], 0.6)[:, column]
    adjust = getattr(tvf, f"adjust_{which}")
    ref = torch.stack([adjust(img, float(fi)) for img, fi in zip(rgb, f, strict=True)])
    # torchvision's luma weights are (0.2989, 0.587, 0.114), ours (0.299, 0.587, 0.114).
    torch.testing.assert_close(y, ref, atol=2e-4, rtol=0)


def test_hue_grayscale_and_blur_match_torchvision(rgb: Tensor) -> None:
    tvf = pytest.importorskip("torchvision.transforms.functional")
    shift = torch.linspace(-0.5, 0.5, rgb.shape[0])
    ref = torch.stack([tvf.adjust_hue(img, float(s)) for img, s in zip(rgb, shift, strict=True)])
    torch.testing.assert_close(I._shift_hue(rgb, shift), ref, atol=1e-5, rtol=0)
    gray = I.random_grayscale(rgb, gen(0), p=1.0)
    torch.testing.assert_close(
        gray, tvf.rgb_to_grayscale(rgb, num_output_channels=3), atol=2e-4, rtol=0
    )
    for k in (3, 7):
        y = I.gaussian_blur(rgb, gen(0), sigma=(1.1, 1.1), p=1.0, kernel_size=k)
        ref = tvf.gaussian_blur(rgb, kernel_size=[k, k], sigma=[1.1, 1.1])
        torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
