"""ColloSSL app: device selection by MMD and the multi-device contrastive loss."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastkit.apps.collossl import _collossl_loss, device_mmd, select_devices
from contrastkit.losses import SupCon


def test_mmd_is_symmetric_zero_on_the_diagonal_and_ranks_shifted_devices_far() -> None:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(60, 1, 16, generator=g)
    same = torch.randn(60, 1, 16, generator=g)  # same distribution
    shifted = torch.randn(60, 1, 16, generator=g) + 1.0
    far = torch.randn(60, 1, 16, generator=g) * 3.0
    mmd = device_mmd(torch.cat([base, same, shifted, far], dim=1))
    assert mmd.shape == (4, 4)
    assert torch.allclose(mmd, mmd.T) and bool((torch.diagonal(mmd) == 0).all())
    assert bool((mmd >= 0).all())
    assert mmd[0, 1] < mmd[0, 2] and mmd[0, 1] < mmd[0, 3]


def test_select_devices_takes_the_closest_as_positives() -> None:
    mmd = torch.tensor(
        [[0.0, 0.1, 0.5, 0.9], [0.1, 0.0, 0.3, 0.8], [0.5, 0.3, 0.0, 0.2], [0.9, 0.8, 0.2, 0.0]]
    )
    sel = select_devices(mmd, 1)
    assert sel[0] == ([1], [2, 3])
    assert sel[3] == ([2], [0, 1])
    sel2 = select_devices(mmd, 2)
    assert sel2[0] == ([1, 2], [3])
    with pytest.raises(ValueError):
        select_devices(mmd, 4)


def test_loss_rewards_synchronised_windows_that_agree() -> None:
    g = torch.Generator().manual_seed(1)
    n, d, e = 16, 3, 8
    selection = select_devices(torch.ones(d, d) - torch.eye(d), 1)
    loss = SupCon(temperature=0.1, base_temperature=0.1)
    window = F.normalize(torch.randn(n, 1, e, generator=g), dim=-1)
    agree = window.expand(n, d, e)  # every device embeds window i the same way
    other = F.normalize(torch.randn(n, d, e, generator=g), dim=-1)
    random = F.normalize(torch.randn(n, d, e, generator=g), dim=-1)
    good = _collossl_loss(agree, other, selection, loss)
    bad = _collossl_loss(random, other, selection, loss)
    assert float(good) < float(bad)
    assert good.dim() == 0 and bool(torch.isfinite(good))
