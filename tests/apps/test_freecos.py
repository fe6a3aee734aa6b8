"""FreeCOS app: the curvilinear image simulator and the U-Net's shapes."""

from __future__ import annotations

import numpy as np
import torch

from contrastkit.apps.freecos import TinyUNet, render_curvilinear


def test_curves_are_darker_thin_and_reproducible() -> None:
    images, masks = render_curvilinear(np.random.default_rng(3), 24, 48)
    again, _ = render_curvilinear(np.random.default_rng(3), 24, 48)
    np.testing.assert_array_equal(images, again)
    assert images.shape == (24, 1, 48, 48) and masks.shape == (24, 48, 48)
    assert images.min() >= 0 and images.max() <= 1
    share = masks.mean(axis=(1, 2))
    assert (share > 0).all() and share.mean() < 0.15  # thin structures
    on = np.array([images[i, 0][masks[i]].mean() for i in range(24)])
    off = np.array([images[i, 0][~masks[i]].mean() for i in range(24)])
    assert (on < off).mean() > 0.9  # curves are darker than their background


def test_unet_outputs_logits_and_pixel_embeddings() -> None:
    net = TinyUNet(width=4, embed_dim=8)
    logits, emb = net(torch.rand(2, 1, 32, 32))
    assert logits.shape == (2, 32, 32) and emb.shape == (2, 8, 32, 32)
