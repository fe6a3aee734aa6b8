"""Quality-scored views (contrastkit.views.quality): crop boxes, foreground kept, degradation."""

from __future__ import annotations

import pytest
import torch

from contrastkit.views.image import apply_affine, crop_matrix, flip_matrix
from contrastkit.views.quality import crop_boxes, foreground_kept, foreground_mask, scored_views


def _box_theta(x0: float, y0: float, x1: float, y1: float) -> torch.Tensor:
    """The sampling matrix of the crop box (x0, y0, x1, y1) in normalised coordinates."""
    return torch.tensor(
        [[[(x1 - x0) / 2, 0.0, (x1 + x0) / 2], [0.0, (y1 - y0) / 2, (y1 + y0) / 2], [0, 0, 1.0]]]
    )


def test_crop_boxes_of_random_crops_lie_inside_the_image_and_have_the_drawn_area() -> None:
    gen = torch.Generator().manual_seed(0)
    theta = crop_matrix(64, height=28, width=28, scale=(0.1, 0.5), generator=gen)
    boxes = crop_boxes(theta)
    assert bool((boxes[:, :2] >= -1 - 1e-6).all()) and bool((boxes[:, 2:] <= 1 + 1e-6).all())
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) / 4
    assert bool((area >= 0.1 - 1e-5).all()) and bool((area <= 0.5 + 1e-5).all())


def test_a_flip_does_not_move_the_box() -> None:
    gen = torch.Generator().manual_seed(1)
    crop = crop_matrix(16, height=28, width=28, generator=gen)
    flipped = crop @ flip_matrix(16, p=1.0)
    torch.testing.assert_close(crop_boxes(crop), crop_boxes(flipped))


def test_the_box_is_where_the_crop_reads_from() -> None:
    # A bright pixel inside the box shows up in the crop; one outside it does not.
    x = torch.zeros(2, 1, 8, 8)
    x[0, 0, 1, 1] = 1.0  # top-left: inside the box below
    x[1, 0, 6, 6] = 1.0  # bottom-right: outside it
    theta = _box_theta(-1.0, -1.0, 0.0, 0.0).expand(2, 3, 3)
    views = apply_affine(x, theta)
    assert float(views[0].max()) > 0.5 and float(views[1].max()) == 0.0


def test_foreground_kept_counts_the_object_pixels_inside_the_box() -> None:
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, :] = True  # top row: 4 pixels
    mask[0, 3, 0] = True  # one more at the bottom left
    whole = _box_theta(-1, -1, 1, 1)
    top = _box_theta(-1, -1, 1, -0.5)  # keeps the top row's centres only
    left_half = _box_theta(-1, -1, 0, 1)
    assert float(foreground_kept(mask, whole)) == pytest.approx(1.0)
    assert float(foreground_kept(mask, top)) == pytest.approx(4 / 5)
    assert float(foreground_kept(mask, left_half)) == pytest.approx(3 / 5)


def test_an_image_without_foreground_keeps_zero() -> None:
    assert float(foreground_kept(torch.zeros(1, 5, 5), _box_theta(-1, -1, 1, 1))) == 0.0


def test_foreground_mask_thresholds_the_channel_mean() -> None:
    x = torch.tensor([[[[0.1, 0.3]], [[0.5, 0.0]]]])  # (1, 2, 1, 2): means 0.3 and 0.15
    assert foreground_mask(x, threshold=0.2).tolist() == [[[True, False]]]


def test_clean_full_views_have_quality_one_and_equal_the_image() -> None:
    x = torch.rand(3, 1, 8, 8)
    views, quality = scored_views(
        x,
        2,
        generator=torch.Generator().manual_seed(0),
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        flip_p=0.0,
        degrade_p=0.0,
    )
    torch.testing.assert_close(views, x[:, None].expand(3, 2, 1, 8, 8))
    assert torch.equal(quality, torch.ones(3, 2))


def test_degraded_views_lose_clarity_in_proportion_to_the_noise() -> None:
    x = torch.rand(4, 1, 8, 8)
    _, quality = scored_views(
        x,
        3,
        generator=torch.Generator().manual_seed(0),
        scale=(1.0, 1.0),
        ratio=(1.0, 1.0),
        degrade_p=1.0,
        noise=(0.25, 0.25),
        max_sigma=1.0,
    )
    torch.testing.assert_close(quality, torch.full((4, 3), 0.75))


def test_small_crops_of_a_centred_object_score_lower_on_average() -> None:
    x = torch.zeros(512, 1, 16, 16)
    x[:, :, 4:12, 4:12] = 1.0
    common = {"degrade_p": 0.0, "generator": torch.Generator().manual_seed(0)}
    _, small = scored_views(x, 1, scale=(0.05, 0.1), **common)  # type: ignore[arg-type]
    _, large = scored_views(x, 1, scale=(0.8, 1.0), **common)  # type: ignore[arg-type]
    assert float(small.mean()) < 0.5 < float(large.mean())
    assert float(small.min()) < 0.05  # some small crops miss the object


def test_seeded_views_are_reproducible() -> None:
    x = torch.rand(5, 1, 12, 12)
    a = scored_views(x, 2, generator=torch.Generator().manual_seed(3))
    b = scored_views(x, 2, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.parametrize(
    "kwargs",
    [{"views": 0}, {"noise": (0.5, 0.2)}, {"noise": (0.0, 2.0)}, {"degrade_p": 1.5}],
)
def test_bad_settings_raise(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        scored_views(torch.rand(2, 1, 8, 8), **kwargs)  # type: ignore[arg-type]


def test_bad_theta_raises() -> None:
    with pytest.raises(ValueError, match="theta"):
        foreground_kept(torch.ones(2, 4, 4), torch.eye(3)[None])
