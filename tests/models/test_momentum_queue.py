"""MomentumEncoder, cosine_momentum and KeyQueue (MoCo's key encoder and dictionary)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from contrastkit.models.momentum import KeyQueue, MomentumEncoder, cosine_momentum


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6), nn.ReLU(), nn.Linear(6, 3))


# --------------------------------------------------------------------------------------------------
# MomentumEncoder
# --------------------------------------------------------------------------------------------------


def test_copy_is_equal_independent_and_frozen() -> None:
    online = _net()
    ema = MomentumEncoder(online, momentum=0.9)
    for (name, p), (_, q) in zip(
        ema.module.named_parameters(), online.named_parameters(), strict=True
    ):
        assert torch.equal(p, q), name
        assert p.data_ptr() != q.data_ptr()
        assert not p.requires_grad
    assert all(p.requires_grad for p in online.parameters())
    assert list(ema.parameters()) and not any(p.requires_grad for p in ema.parameters())


def test_update_is_ema_formula() -> None:
    online = _net(0)
    ema = MomentumEncoder(online, momentum=0.75)
    before = {k: v.clone() for k, v in ema.module.named_parameters()}
    with torch.no_grad():
        for p in online.parameters():
            p.add_(torch.randn_like(p))
    ema.update(online)
    for name, p_q in online.named_parameters():
        expected = 0.75 * before[name] + 0.25 * p_q
        torch.testing.assert_close(dict(ema.module.named_parameters())[name], expected)
    # an explicit momentum overrides the default; m = 0 copies, m = 1 keeps
    ema.update(online, momentum=1.0)
    for name, p in ema.module.named_parameters():
        expected = 0.75 * before[name] + 0.25 * dict(online.named_parameters())[name]
        torch.testing.assert_close(p, expected)
    ema.update(online, momentum=0.0)
    for (_, p), (_, q) in zip(
        ema.module.named_parameters(), online.named_parameters(), strict=True
    ):
        torch.testing.assert_close(p, q, rtol=0, atol=0)


def test_update_does_not_touch_online_or_its_grads() -> None:
    online = _net()
    ema = MomentumEncoder(online)
    snapshot = [p.clone() for p in online.parameters()]
    online(torch.randn(5, 4)).sum().backward()
    grads = [p.grad.clone() for p in online.parameters() if p.grad is not None]
    ema.update(online)
    for p, s in zip(online.parameters(), snapshot, strict=True):
        assert torch.equal(p, s)
    assert all(
        torch.equal(p.grad, g)
        for p, g in zip(online.parameters(), grads, strict=True)
        if p.grad is not None
    )


def test_forward_has_no_grad() -> None:
    ema = MomentumEncoder(_net())
    x = torch.randn(5, 4, requires_grad=True)
    out = ema(x)
    assert out.shape == (5, 3)
    assert not out.requires_grad


def test_buffers_kept_by_default_and_copied_on_request() -> None:
    online = _net()
    online.train()
    online(torch.randn(16, 4) * 3 + 2)  # moves the online BatchNorm statistics
    keep = MomentumEncoder(_net())
    copy_ = MomentumEncoder(_net(), copy_buffers=True)
    keep.update(online)
    copy_.update(online)
    bn_online = online[1]
    assert isinstance(bn_online, nn.BatchNorm1d)
    assert bn_online.running_mean is not None
    assert torch.equal(copy_.module[1].running_mean, bn_online.running_mean)
    assert torch.equal(keep.module[1].running_mean, torch.zeros(6))


def test_state_dict_round_trip() -> None:
    online = _net()
    ema = MomentumEncoder(online, momentum=0.5)
    with torch.no_grad():
        for p in online.parameters():
            p.mul_(2)
    ema.update(online)
    other = MomentumEncoder(_net(3), momentum=0.5)
    other.load_state_dict(ema.state_dict())
    for (_, p), (_, q) in zip(other.named_parameters(), ema.named_parameters(), strict=True):
        assert torch.equal(p, q)


def test_update_errors() -> None:
    ema = MomentumEncoder(_net())
    with pytest.raises(ValueError, match="same parameters"):
        ema.update(nn.Linear(4, 3))
    wrong = nn.Sequential(nn.Linear(4, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3))
    with pytest.raises(ValueError, match="has shape"):
        ema.update(wrong)
    with pytest.raises(ValueError, match="momentum must lie in"):
        ema.update(_net(), momentum=1.5)
    with pytest.raises(ValueError, match="momentum"):
        MomentumEncoder(_net(), momentum=-0.1)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        MomentumEncoder("not a module")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# cosine schedule
# --------------------------------------------------------------------------------------------------


def test_cosine_momentum_values() -> None:
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)
    assert cosine_momentum(250, 100) == pytest.approx(1.0)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    t = 0.3
    expected = 1.0 - (1.0 - 0.9) * (math.cos(math.pi * t) + 1) / 2
    assert cosine_momentum(30, 100, base=0.9) == pytest.approx(expected)
    values = [cosine_momentum(s, 20, base=0.5, final=0.99) for s in range(21)]
    assert all(b >= a for a, b in itertools.pairwise(values))


def test_cosine_momentum_errors() -> None:
    with pytest.raises(ValueError, match="step"):
        cosine_momentum(-1, 10)
    with pytest.raises(ValueError, match="total_steps"):
        cosine_momentum(0, 0)
    with pytest.raises(ValueError, match="base"):
        cosine_momentum(0, 10, base=1.2)


# --------------------------------------------------------------------------------------------------
# KeyQueue
# --------------------------------------------------------------------------------------------------


def test_queue_fifo_ring_and_normalisation() -> None:
    q = KeyQueue(3, 5)
    assert len(q) == 0 and q.negatives().shape == (0, 3)
    a = torch.arange(1, 10, dtype=torch.float32).reshape(3, 3)
    q.enqueue(a)
    assert len(q) == 3 and not q.is_full and int(q.ptr) == 3
    torch.testing.assert_close(q.negatives(), F.normalize(a, dim=1))
    b = -torch.arange(1, 10, dtype=torch.float32).reshape(3, 3) - 0.5
    q.enqueue(b)  # slots 3, 4, then wraps to 0
    assert q.is_full and len(q) == 5 and int(q.ptr) == 1
    expected = torch.cat([b[2:], a[1:], b[:2]])
    torch.testing.assert_close(q.negatives(), F.normalize(expected, dim=1))
    torch.testing.assert_close(q.negatives().norm(dim=1), torch.ones(5))


def test_queue_batch_longer_than_queue_keeps_last_keys() -> None:
    q = KeyQueue(2, 3)
    x = torch.randn(7, 2)
    q.enqueue(x)
    assert q.is_full
    # keys 4, 5, 6 written at slots 0, 1, 2
    torch.testing.assert_close(q.negatives(), F.normalize(x[4:], dim=1))
    assert int(q.ptr) == 0


def test_queue_is_deterministic_and_detached() -> None:
    torch.manual_seed(0)
    batches = [torch.randn(4, 8, requires_grad=True) for _ in range(5)]
    q1, q2 = KeyQueue(8, 10), KeyQueue(8, 10)
    for x in batches:
        q1.enqueue(x)
        q2.enqueue(x.detach().clone())
    assert torch.equal(q1.negatives(), q2.negatives())
    assert not q1.negatives().requires_grad
    assert not q1.keys.requires_grad


def test_negatives_is_a_copy_safe_for_backward() -> None:
    q = KeyQueue(4, 4)
    q.enqueue(torch.randn(4, 4))
    query = torch.randn(2, 4, requires_grad=True)
    logits = query @ q.negatives().T
    q.enqueue(torch.randn(4, 4))  # in-place write after the graph was built
    logits.sum().backward()  # would raise if negatives() were a view of the buffer
    assert query.grad is not None


def test_queue_labels() -> None:
    q = KeyQueue(2, 4, with_labels=True)
    q.enqueue(torch.randn(3, 2), torch.tensor([1, 2, 3]))
    q.enqueue(torch.randn(2, 2), torch.tensor([4, 5]))
    assert q.negative_labels().tolist() == [5, 2, 3, 4]
    with pytest.raises(ValueError, match="needs labels"):
        q.enqueue(torch.randn(1, 2))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        q.enqueue(torch.randn(2, 2), torch.tensor([1]))
    with pytest.raises(TypeError, match="integer"):
        q.enqueue(torch.randn(1, 2), torch.tensor([1.0]))
    plain = KeyQueue(2, 4)
    with pytest.raises(ValueError, match="with_labels=False"):
        plain.enqueue(torch.randn(1, 2), torch.tensor([1]))
    with pytest.raises(ValueError, match="keeps no labels"):
        plain.negative_labels()


def test_queue_state_dict_is_persistent() -> None:
    q = KeyQueue(3, 4, with_labels=True)
    q.enqueue(torch.randn(3, 3), torch.tensor([7, 8, 9]))
    sd = q.state_dict()
    assert set(sd) == {"keys", "ptr", "count", "labels"}
    r = KeyQueue(3, 4, with_labels=True)
    r.load_state_dict(sd)
    assert torch.equal(r.negatives(), q.negatives())
    assert r.negative_labels().tolist() == [7, 8, 9]
    # the restored queue continues at the same pointer
    x = torch.randn(2, 3)
    q.enqueue(x, torch.tensor([1, 2]))
    r.enqueue(x, torch.tensor([1, 2]))
    assert torch.equal(r.negatives(), q.negatives())
    assert int(r.ptr) == int(q.ptr) == 1


def test_queue_reset_and_errors() -> None:
    q = KeyQueue(2, 3)
    q.enqueue(torch.randn(2, 2))
    q.reset()
    assert len(q) == 0 and int(q.ptr) == 0
    with pytest.raises(ValueError, match="embedding dim 2"):
        q.enqueue(torch.randn(2, 5))
    with pytest.raises(ValueError, match="finite"):
        q.enqueue(torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="size must be a positive integer"):
        KeyQueue(2, 0)
    with pytest.raises(ValueError, match="dim must be a positive integer"):
        KeyQueue(0, 3)


def test_moco_style_step_with_queue_and_momentum_encoder() -> None:
    """One MoCo step: keys from the EMA encoder, logits against the queue, then enqueue."""
    torch.manual_seed(0)
    online = nn.Linear(4, 3)
    ema = MomentumEncoder(online, momentum=0.99)
    queue = KeyQueue(3, 8)
    queue.enqueue(torch.randn(8, 3))
    x1, x2 = torch.randn(4, 4), torch.randn(4, 4)
    q = F.normalize(online(x1), dim=1)
    k = F.normalize(ema(x2), dim=1)
    logits = torch.cat([(q * k).sum(1, keepdim=True), q @ queue.negatives().T], dim=1) / 0.2
    loss = F.cross_entropy(logits, torch.zeros(4, dtype=torch.long))
    loss.backward()
    assert online.weight.grad is not None
    ema.update(online)
    queue.enqueue(k)
    torch.testing.assert_close(queue.negatives()[:4], k)
