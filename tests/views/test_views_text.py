"""Tests of the batched EDA-style text augmentation on token ids (contrastkit.views.text)."""

from __future__ import annotations

from collections import Counter

import pytest
import torch
from torch import Tensor, nn

from contrastkit.losses import CLIPRocketLoss
from contrastkit.views import (
    TextAugment,
    TextAugmentConfig,
    random_deletion,
    random_insertion,
    random_swap,
    remove_stopwords,
    synonym_replacement,
    token_dropout,
)
from contrastkit.views.text import check_tokens

PAD, BOS, EOS, MASK = 0, 1, 2, 3
PROT = (BOS, EOS)
VOCAB = 40


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def batch(b: int = 32, length: int = 16, seed: int = 0) -> Tensor:
    """BOS, 3..length-3 random word ids in [4, VOCAB), EOS, then padding (varied lengths)."""
    g = gen(seed)
    x = torch.full((b, length), PAD, dtype=torch.long)
    n_words = torch.randint(3, length - 3, (b,), generator=g)
    for i in range(b):
        n = int(n_words[i])
        x[i, 0] = BOS
        x[i, 1 : n + 1] = torch.randint(4, VOCAB, (n,), generator=g)
        x[i, n + 1] = EOS
    return x


def words(row: Tensor) -> list[int]:
    return [t for t in row.tolist() if t not in (PAD, BOS, EOS)]


def check_layout(y: Tensor, x: Tensor) -> None:
    """Same shape/dtype; BOS first, one EOS, padding only after EOS."""
    assert y.shape == x.shape and y.dtype == x.dtype
    for row in y.tolist():
        assert row[0] == BOS
        e = row.index(EOS)
        assert row.count(EOS) == 1 and row.count(BOS) == 1
        assert all(t == PAD for t in row[e + 1 :])
        assert PAD not in row[:e]


# --------------------------------------------------------------------------------------------------
# deletion


def test_deletion_keeps_order_and_layout() -> None:
    x = batch()
    y = random_deletion(x, 0.4, pad_id=PAD, protected_ids=PROT, generator=gen(1))
    check_layout(y, x)
    for a, b in zip(x, y, strict=True):
        wa, wb = words(a), words(b)
        assert 1 <= len(wb) <= len(wa)
        it = iter(wa)  # survivors are a subsequence of the original words, in order
        assert all(any(t == s for s in it) for t in wb)
    assert int((y != PAD).sum()) < int((x != PAD).sum())


def test_deletion_hand_cases() -> None:
    x = torch.tensor([[BOS, 5, 6, 7, EOS, PAD], [BOS, 9, EOS, PAD, PAD, PAD]])
    assert torch.equal(random_deletion(x, 0.0, pad_id=PAD, protected_ids=PROT), x)
    y = random_deletion(x, 1.0, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    # p = 1 keeps exactly one movable token (keep_one), protected kept, rest left-packed.
    assert y[0, 0] == BOS and y[0, 2] == EOS and int(y[0, 1]) in (5, 6, 7)
    assert y[0, 3:].eq(PAD).all()
    assert torch.equal(y[1], x[1])  # a single word is never removed
    z = random_deletion(x, 1.0, pad_id=PAD, protected_ids=PROT, keep_one=False)
    assert z.tolist() == [[BOS, EOS, PAD, PAD, PAD, PAD]] * 2
    # Without protected ids BOS/EOS are ordinary tokens.
    w = random_deletion(x, 1.0, pad_id=PAD, generator=gen(0))
    assert int((w != PAD).sum(1).max()) == 1


def test_deletion_packs_interior_padding() -> None:
    x = torch.tensor([[5, PAD, 6, PAD, 7]])
    assert random_deletion(x, 0.0, pad_id=PAD).tolist() == [[5, 6, 7, PAD, PAD]]


# --------------------------------------------------------------------------------------------------
# swap


def test_swap_keeps_multiset_and_protected_positions() -> None:
    x = batch()
    y = random_swap(x, 3, pad_id=PAD, protected_ids=PROT, generator=gen(2))
    check_layout(y, x)
    fixed = (x == PAD) | (x == BOS) | (x == EOS)
    assert torch.equal(y[fixed], x[fixed])
    for a, b in zip(x, y, strict=True):
        assert Counter(a.tolist()) == Counter(b.tolist())
    assert not torch.equal(x, y)


def test_swap_hand_cases() -> None:
    x = torch.tensor([[BOS, 5, 6, EOS, PAD], [BOS, 5, EOS, PAD, PAD]])
    one = random_swap(x, 1, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    assert one.tolist() == [[BOS, 6, 5, EOS, PAD], [BOS, 5, EOS, PAD, PAD]]
    two = random_swap(x, 2, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    assert torch.equal(two, x)  # two swaps of the only pair undo each other
    assert torch.equal(random_swap(x, 0, pad_id=PAD, protected_ids=PROT), x)


def test_swap_alpha_count() -> None:
    # 10 distinct words, alpha 0.3 -> max(1, int(3)) = 3 swaps: at most 6 positions change.
    x = torch.tensor([[BOS, *range(10, 20), EOS]]).repeat(50, 1)
    y = random_swap(x, alpha=0.3, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    changed = (y != x).sum(1)
    assert int(changed.max()) <= 6 and int(changed.min()) >= 2


# --------------------------------------------------------------------------------------------------
# synonym replacement and insertion


def table() -> Tensor:
    """Token t in [4, 20) has synonyms {100 + t, 200 + t} (one slot -1); others none."""
    t = torch.full((VOCAB, 3), -1, dtype=torch.long)
    ids = torch.arange(4, 20)
    t[ids, 0] = 100 + ids
    t[ids, 2] = 200 + ids  # -1 hole in the middle on purpose
    return t


def test_synonym_replacement_uses_only_table_entries() -> None:
    x = batch()
    y = synonym_replacement(x, table(), 2, pad_id=PAD, protected_ids=PROT, generator=gen(3))
    check_layout(y, x)
    changed = y != x
    assert bool((changed.sum(1) <= 2).all()) and bool(changed.any())
    orig, new = x[changed], y[changed]
    assert bool((orig >= 4).all() & (orig < 20).all())
    assert bool(((new == 100 + orig) | (new == 200 + orig)).all())
    # Rows holding >= 2 replaceable tokens get exactly 2 replacements.
    replaceable = ((x >= 4) & (x < 20)).sum(1)
    assert torch.equal(
        changed.sum(1)[replaceable >= 2], torch.full_like(replaceable, 2)[replaceable >= 2]
    )


def test_synonym_hand_case_and_both_synonyms_drawn() -> None:
    x = torch.tensor([[BOS, 5, 30, EOS]]).repeat(200, 1)
    y = synonym_replacement(x, table(), 5, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    assert bool((y[:, 2] == 30).all())  # 30 has no synonym
    assert set(y[:, 1].tolist()) == {105, 205}
    assert bool((y[:, [0, 3]] == x[:, [0, 3]]).all())


def test_insertion_hand_cases() -> None:
    t = torch.full((VOCAB, 1), -1, dtype=torch.long)
    t[5, 0] = 7
    x = torch.tensor([[BOS, 5, EOS, PAD], [BOS, 5, 6, EOS]]).repeat(100, 1)
    y = random_insertion(x, t, 1, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    room = y[0::2]
    assert set(map(tuple, room.tolist())) == {(BOS, 7, 5, EOS), (BOS, 5, 7, EOS)}
    assert torch.equal(y[1::2], x[1::2])  # full rows are never extended


def test_insertion_layout_and_counts() -> None:
    x = batch()
    y = random_insertion(x, table(), 2, pad_id=PAD, protected_ids=PROT, generator=gen(4))
    check_layout(y, x)
    for a, b in zip(x, y, strict=True):
        wa, wb = words(a), words(b)
        extra = Counter(wb) - Counter(wa)
        assert sum(extra.values()) == len(wb) - len(wa) <= 2
        assert all(v >= 100 for v in extra)


# --------------------------------------------------------------------------------------------------
# stopwords and token dropout


def test_remove_stopwords_hand_cases() -> None:
    x = torch.tensor([[BOS, 5, 8, 6, 8, EOS, PAD], [BOS, 8, 8, EOS, PAD, PAD, PAD]])
    y = remove_stopwords(x, [8], 1.0, pad_id=PAD, protected_ids=PROT, generator=gen(0))
    assert y.tolist() == [[BOS, 5, 6, EOS, PAD, PAD, PAD], x[1].tolist()]
    assert torch.equal(remove_stopwords(x, [8], 0.0, pad_id=PAD, protected_ids=PROT), x)


def test_token_dropout_modes() -> None:
    x = torch.tensor([[BOS, 5, 6, 7, EOS, PAD]])
    m = token_dropout(x, 1.0, pad_id=PAD, mask_id=MASK, protected_ids=PROT)
    assert m.tolist() == [[BOS, MASK, MASK, MASK, EOS, PAD]]
    d = token_dropout(x, 1.0, pad_id=PAD, mode="drop", protected_ids=PROT)
    assert d.tolist() == [[BOS, EOS, PAD, PAD, PAD, PAD]]
    xb = batch(200)
    half = token_dropout(xb, 0.5, pad_id=PAD, mask_id=MASK, protected_ids=PROT, generator=gen(0))
    rate = float((half == MASK).sum()) / float(((xb != PAD) & (xb > EOS)).sum())
    assert 0.4 < rate < 0.6


# --------------------------------------------------------------------------------------------------
# module, reproducibility, dtypes


def test_module_views_shape_reproducible_and_varied() -> None:
    aug = TextAugment(TextAugmentConfig(pad_id=PAD, protected_ids=PROT), synonyms=table())
    x = batch()
    v1 = aug.views(x, 3, generator=gen(5))
    v2 = aug.views(x, 3, generator=gen(5))
    assert v1.shape == (32, 3, 16) and v1.dtype == x.dtype
    assert torch.equal(v1, v2)
    assert not torch.equal(v1, aug.views(x, 3, generator=gen(6)))
    for v in range(3):
        check_layout(v1[:, v], x)
    # The same sentence repeated: its copies differ across the batch and across views.
    same = x[:1].repeat(16, 1)
    out = aug(same, generator=gen(7))
    assert len({tuple(r) for r in out.tolist()}) > 3


def test_module_op_choice_and_no_table() -> None:
    aug = TextAugment(TextAugmentConfig(pad_id=PAD, protected_ids=PROT))
    assert set(aug.op_weights) == {"swap", "deletion"}
    assert abs(aug.op_weights["swap"] - 2 / 3) < 1e-9
    only = TextAugment(TextAugmentConfig(pad_id=PAD, protected_ids=PROT, weights={"swap": 1.0}))
    x = batch()
    y = only(x, generator=gen(0))
    for a, b in zip(x, y, strict=True):
        assert Counter(a.tolist()) == Counter(b.tolist())
    ident = TextAugment(TextAugmentConfig(pad_id=PAD, weights={"identity": 1.0}))
    assert torch.equal(ident(x), x)
    assert "swap" in repr(aug)


def test_clip_rocket_preset_with_stopwords_and_dropout() -> None:
    cfg = TextAugmentConfig.clip_rocket(PAD, protected_ids=PROT, dropout_p=0.2, mask_id=MASK)
    assert cfg.stopwords_p == 0.8 and cfg.weights["swap"] == 0.4
    aug = TextAugment(cfg, synonyms=table(), stopword_ids=[4, 5])
    x = batch(64)
    weak = aug.weak(x, generator=gen(0))
    check_layout(weak, x)
    strong = aug(x, generator=gen(0))
    assert strong.shape == x.shape
    assert bool(((strong == BOS).sum(1) == 1).all() and ((strong == EOS).sum(1) == 1).all())


@pytest.mark.parametrize("dtype", [torch.int32, torch.int16, torch.uint8])
def test_other_integer_dtypes(dtype: torch.dtype) -> None:
    x = batch().to(dtype)
    aug = TextAugment(TextAugmentConfig(pad_id=PAD, protected_ids=PROT), synonyms=table())
    y = aug.views(x, 2, generator=gen(0))
    assert y.dtype == dtype
    ref = aug.views(x.long(), 2, generator=gen(0))
    assert torch.equal(y.long(), ref)


def test_cuda_matches_layout() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    aug = TextAugment(TextAugmentConfig(pad_id=PAD, protected_ids=PROT), synonyms=table()).cuda()
    x = batch().cuda()
    y = aug.views(x, 2, generator=gen(0))  # CPU generator, CUDA tokens
    assert y.device == x.device
    check_layout(y[:, 0].cpu(), x.cpu())


# --------------------------------------------------------------------------------------------------
# errors


def test_errors() -> None:
    x = batch(4)
    with pytest.raises(TypeError, match="integer"):
        check_tokens(x.float())
    with pytest.raises(TypeError, match="integer"):
        check_tokens(x > 3)
    with pytest.raises(ValueError, match=r"\(B, L\)"):
        check_tokens(x[0])
    with pytest.raises(TypeError, match="pad_id"):
        random_swap(x, pad_id=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        random_swap(x)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        random_deletion(x, 1.5, pad_id=PAD)
    with pytest.raises(ValueError, match="n must"):
        random_swap(x, -1, pad_id=PAD)
    with pytest.raises(ValueError, match="shape"):
        synonym_replacement(x, torch.zeros(5, dtype=torch.long), pad_id=PAD)
    with pytest.raises(TypeError, match="LongTensor"):
        synonym_replacement(x, torch.zeros(5, 2), pad_id=PAD)
    with pytest.raises(ValueError, match="-1"):
        synonym_replacement(x, torch.full((5, 2), -3), pad_id=PAD)
    with pytest.raises(ValueError, match="mask_id"):
        token_dropout(x, 0.1, pad_id=PAD)
    with pytest.raises(ValueError, match="mode"):
        token_dropout(x, 0.1, pad_id=PAD, mode="zap")
    with pytest.raises(ValueError, match="weights key"):
        TextAugmentConfig(pad_id=PAD, weights={"shuffle": 1.0})
    with pytest.raises(ValueError, match="weights"):
        TextAugmentConfig(pad_id=PAD, weights={"swap": -1.0})
    with pytest.raises(ValueError, match="dropout_p"):
        TextAugmentConfig(pad_id=PAD, dropout_p=2.0)
    with pytest.raises(ValueError, match="mask_id"):
        TextAugmentConfig(pad_id=PAD, dropout_p=0.1)
    with pytest.raises(ValueError, match="stopword_ids"):
        TextAugment(TextAugmentConfig(pad_id=PAD, stopwords_p=0.5))
    with pytest.raises(ValueError, match="n_views"):
        TextAugment(TextAugmentConfig(pad_id=PAD)).views(x, 0)


# --------------------------------------------------------------------------------------------------
# the pieces fit: CLIP-rocket loss on augmented captions


def test_clip_rocket_loss_on_augmented_text_smoke() -> None:
    torch.manual_seed(0)
    b, d, n_aug = 8, 16, 2
    text_encoder = nn.EmbeddingBag(300, d, mode="mean", padding_idx=PAD)
    aug = TextAugment(
        TextAugmentConfig(pad_id=PAD, protected_ids=PROT, dropout_p=0.1, mask_id=MASK),
        synonyms=table(),
    )
    tokens = batch(b)
    views = aug.views(tokens, n_aug, generator=gen(0))  # (B, A, L)
    text = text_encoder(tokens)
    text_aug = text_encoder(views.reshape(b * n_aug, -1)).view(b, n_aug, d)
    image = torch.randn(b, d, requires_grad=True)
    image_aug = torch.randn(b, n_aug, d, requires_grad=True)
    loss = CLIPRocketLoss()(image, text, image_aug, text_aug)
    assert loss.ndim == 0 and bool(torch.isfinite(loss))
    loss.backward()
    assert text_encoder.weight.grad is not None and bool(text_encoder.weight.grad.abs().sum() > 0)
