"""SLidR app: the scene renderer's geometry and the point encoder."""

from __future__ import annotations

import numpy as np
import torch

from contrastkit.apps.slidr import CLASSES, PointEncoder, local_shape, render_scene


def test_points_project_onto_pixels_of_their_segment_class() -> None:
    rng = np.random.default_rng(0)
    agree, total = 0, 0
    for _ in range(5):
        scene = render_scene(rng, 48)
        seg = scene.segments.ravel()[scene.pixels]
        assert (seg >= 0).mean() > 0.97  # points land on rendered surfaces, not the sky
        # the pixel's segment is ground (0) exactly when the point is a ground return, up to edges
        agree += int(((seg == 0) == (scene.labels == 0)).sum())
        total += len(seg)
        assert set(np.unique(scene.labels)) <= set(range(len(CLASSES)))
        assert scene.image.shape == (3, 48, 48)
    assert agree / total > 0.95


def test_point_encoder_is_permutation_equivariant() -> None:
    enc = PointEncoder(dim=16)
    xyz, off = torch.randn(10, 3), torch.randn(10, 8, 3)
    perm = torch.randperm(8)
    shape = local_shape(off)
    torch.testing.assert_close(shape, local_shape(off[:, perm]))  # neighbour order is free
    torch.testing.assert_close(enc(xyz, off, shape), enc(xyz, off[:, perm], shape))
    assert enc(xyz, off, shape).shape == (10, 16)


def test_local_shape_tells_planes_from_lines() -> None:
    g = torch.Generator().manual_seed(0)
    plane = torch.randn(1, 30, 3, generator=g) * torch.tensor([1.0, 0.0, 1.0])  # horizontal plane
    line = torch.randn(1, 30, 3, generator=g) * torch.tensor([0.0, 1.0, 0.0])  # vertical line
    p, ln = local_shape(plane)[0], local_shape(line)[0]
    assert p[0] < 1e-6 and p[3] > 0.99  # no spread along the normal, which is vertical
    assert ln[0] < 1e-6 and ln[1] < 1e-6 and ln[2] > 0.99  # all the spread on one axis
