"""The COCONUT rehearsal buffer and the replay anchor mask for SupCon (docs/methods.md 2.3c, 3.8)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from contrastkit.data.samplers import ReplayBuffer, replay_batch
from contrastkit.losses import SupCon


def _stream(n: int, classes: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(classes, (n,), generator=g)
    x = torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)  # row i holds i: traceable
    return x, y


def test_capacity_and_content_are_stream_rows() -> None:
    x, y = _stream(500, 5)
    for mode in ("balanced", "reservoir"):
        buf = ReplayBuffer(40, mode=mode, seed=0)
        buf.add(x[:10], y[:10])
        assert len(buf) == 10 and torch.equal(buf.x, x[:10])
        buf.add(x[10:], y[10:])
        assert len(buf) == 40 and buf.seen == 500
        ids = buf.x[:, 0].long()
        assert torch.equal(buf.y, y[ids])  # each stored row keeps its own label
        assert torch.unique(ids).numel() == 40


def test_balanced_mode_equalises_classes_of_an_imbalanced_stream() -> None:
    # class 0 is 80 % of the stream; a balanced buffer ends with (nearly) equal counts
    g = torch.Generator().manual_seed(0)
    y = torch.where(
        torch.rand(2000, generator=g) < 0.8, 0, torch.randint(1, 4, (2000,), generator=g)
    )
    x = torch.randn(2000, 2, generator=g)
    bal = ReplayBuffer(40, mode="balanced", seed=1)
    bal.add(x, y)
    counts = bal.class_counts()
    assert set(counts) == {0, 1, 2, 3}
    assert max(counts.values()) - min(counts.values()) <= 1
    res = ReplayBuffer(40, mode="reservoir", seed=1)
    res.add(x, y)
    assert res.class_counts()[0] > 20  # reservoir follows the stream's imbalance


def test_reservoir_is_uniform_over_the_stream() -> None:
    # each of 100 rows should be kept with probability 10/100
    hits = torch.zeros(100)
    x = torch.arange(100, dtype=torch.float32)[:, None]
    y = torch.zeros(100, dtype=torch.long)
    for seed in range(300):
        buf = ReplayBuffer(10, mode="reservoir", seed=seed)
        buf.add(x, y)
        hits[buf.x[:, 0].long()] += 1
    freq = hits / 300
    assert abs(float(freq.mean()) - 0.1) < 1e-6
    assert float((freq[:50].mean() - freq[50:].mean()).abs()) < 0.03


def test_buffer_determinism_and_state_roundtrip() -> None:
    x, y = _stream(300, 4)
    a, b = ReplayBuffer(32, seed=5), ReplayBuffer(32, seed=5)
    a.add(x, y)
    b.add(x, y)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    c = ReplayBuffer(32, seed=6)
    c.add(x, y)
    assert not torch.equal(a.x, c.x)
    restored = ReplayBuffer(32, seed=0)
    restored.load_state_dict(a.state_dict())
    more_x, more_y = _stream(50, 4, seed=9)
    a.add(more_x + 1000, more_y)
    restored.add(more_x + 1000, more_y)
    assert torch.equal(a.x, restored.x) and torch.equal(a.sample(8)[0], restored.sample(8)[0])


def test_replay_batch_anchors_only_from_buffer() -> None:
    buf = ReplayBuffer(20, seed=0)
    old_x = torch.full((30, 3), -1.0)
    buf.add(old_x, torch.arange(30) % 3)
    new_x = torch.rand(8, 3)
    new_y = torch.full((8,), 7)
    x_all, y_all, mask = replay_batch(
        new_x, new_y, buf, 6, generator=torch.Generator().manual_seed(0)
    )
    assert x_all.shape == (14, 3) and mask.dtype == torch.bool
    assert mask.tolist() == [False] * 8 + [True] * 6
    assert bool((x_all[mask] == -1).all()) and bool((x_all[~mask] >= 0).all())
    assert bool((y_all[mask] < 3).all()) and bool((y_all[~mask] == 7).all())


def test_replay_supcon_uses_only_rehearsal_anchors() -> None:
    g = torch.Generator().manual_seed(0)
    buf = ReplayBuffer(16, seed=0)
    buf.add(torch.randn(40, 5, generator=g), torch.randint(3, (40,), generator=g))
    x_all, y_all, mask = replay_batch(
        torch.randn(10, 5, generator=g), torch.randint(3, 6, (10,), generator=g), buf, 8
    )
    z = F.normalize(torch.randn(x_all.shape[0], 2, 4, generator=g, dtype=torch.float64), dim=-1)
    loss = SupCon(temperature=0.5, reduction="none")
    per = loss(z, y_all, anchor_mask=mask)
    assert bool((per[~mask] == 0).all())
    full = loss(z, y_all)
    assert torch.allclose(per[mask], full[mask])  # same candidates (whole batch), same terms
    mean = SupCon(temperature=0.5)(z, y_all, anchor_mask=mask)
    assert torch.allclose(mean, full[mask].mean())
    # gradients reach new rows only as candidates: perturbing a new row's embedding changes the loss
    zz = z.clone().requires_grad_(True)
    SupCon(temperature=0.5)(zz, y_all, anchor_mask=mask).backward()
    assert zz.grad is not None and float(zz.grad[~mask].abs().sum()) > 0


def test_replay_batch_with_empty_buffer() -> None:
    x, _y, mask = replay_batch(
        torch.rand(4, 2), torch.zeros(4, dtype=torch.long), ReplayBuffer(3), 5
    )
    assert x.shape == (4, 2) and not bool(mask.any())


def test_buffer_errors() -> None:
    with pytest.raises(ValueError, match="capacity"):
        ReplayBuffer(0)
    with pytest.raises(ValueError, match="mode"):
        ReplayBuffer(3, mode="fifo")
    buf = ReplayBuffer(3)
    with pytest.raises(ValueError, match="one label per row"):
        buf.add(torch.rand(4, 2), torch.zeros(3, dtype=torch.long))
    with pytest.raises(TypeError, match="integers"):
        buf.add(torch.rand(2, 2), torch.zeros(2))
    buf.add(torch.rand(2, 2), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="shape"):
        buf.add(torch.rand(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="capacity=3"):
        ReplayBuffer(4).load_state_dict(buf.state_dict())
    with pytest.raises(TypeError, match="ReplayBuffer"):
        replay_batch(torch.rand(2, 2), torch.zeros(2, dtype=torch.long), object(), 1)  # type: ignore[arg-type]
