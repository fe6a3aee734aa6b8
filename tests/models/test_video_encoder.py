"""contrastkit.models.VideoEncoder: (2+1)-D clip encoder and its frame-only form."""

from __future__ import annotations

import pytest
import torch

from contrastkit.models import VideoEncoder


def test_output_shape_and_out_dim() -> None:
    enc = VideoEncoder(in_channels=1, width=4, stages=3)
    assert enc.out_dim == 16
    assert enc(torch.rand(3, 5, 1, 16, 16)).shape == (3, 16)


def test_frame_only_encoder_ignores_frame_order() -> None:
    torch.manual_seed(0)
    enc = VideoEncoder(in_channels=1, width=4, temporal=False).eval()
    clips = torch.rand(2, 6, 1, 16, 16)
    reversed_clips = clips.flip(1)
    assert torch.allclose(enc(clips), enc(reversed_clips), atol=1e-6)


def test_temporal_encoder_sees_frame_order() -> None:
    torch.manual_seed(0)
    enc = VideoEncoder(in_channels=1, width=4, temporal=True).eval()
    clips = torch.rand(2, 6, 1, 16, 16)
    assert not torch.allclose(enc(clips), enc(clips.flip(1)), atol=1e-4)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="clips"):
        VideoEncoder()(torch.rand(2, 1, 16, 16))
