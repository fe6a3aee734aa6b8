"""The text tower (tokenizer, causal transformer) and the two-tower model."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from contrastkit.models import (
    CaptionTruncatedWarning,
    TextTokenizer,
    TextTransformer,
    TwoTowerModel,
    build_tower,
)

pytest.importorskip("tokenizers")

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
CAPTIONS = [f"a photo of the digit {n}" for n in NAMES] + [
    f"a small sketch of a {n}" for n in NAMES
]


@pytest.fixture(scope="module")
def tokenizer() -> TextTokenizer:
    return TextTokenizer.train(CAPTIONS, vocab_size=120)


def test_tokenizer_round_trip_and_special_tokens(tokenizer: TextTokenizer) -> None:
    texts = ["A photo of the digit Three", "a sketch of a seven", "a photo of a zebra"]
    ids, full = tokenizer.encode(texts, context_length=16)
    assert ids.shape == (3, 16) and ids.dtype == torch.int64
    assert (ids[:, 0] == tokenizer.sot_id).all() and tokenizer.pad_id == 0
    for row, n in zip(ids, full.tolist(), strict=True):
        assert int(row[n - 1]) == tokenizer.eot_id and (row[n:] == 0).all()
    # lower-cased, and an unseen word ("zebra") is spelt from the characters, not [UNK]
    assert tokenizer.decode(ids) == [t.lower() for t in texts]
    assert tokenizer.unk_id not in ids.tolist()
    assert len(tokenizer.token_ids(["the", "a", "notaword"])) == 2


def test_tokenizer_characters_are_fixed_and_saved_as_json(
    tokenizer: TextTokenizer, tmp_path: Path
) -> None:
    again = TextTokenizer.train(CAPTIONS, vocab_size=120)
    vocab = json.loads(again.to_json())["model"]["vocab"]
    alphabet = [t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1]) if len(t) == 1]
    assert alphabet == sorted(alphabet)  # characters get fixed ids (merge ties may not)
    path = tmp_path / "tokenizer.json"
    tokenizer.save(path)
    loaded = TextTokenizer.from_file(path)
    assert loaded.to_json() == tokenizer.to_json() and loaded.vocab_size == tokenizer.vocab_size
    ids, _ = tokenizer.encode(CAPTIONS, context_length=12)
    assert torch.equal(loaded.encode(CAPTIONS, context_length=12)[0], ids)
    path.write_text("{not json")
    with pytest.raises(ValueError, match="not a tokenizer JSON document"):
        TextTokenizer.from_file(path)
    with pytest.raises(FileNotFoundError):
        TextTokenizer.from_file(tmp_path / "missing.json")


def test_tokenizer_errors() -> None:
    with pytest.raises(TypeError, match="sequence of str"):
        TextTokenizer.train("one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"texts\[1\] is empty"):
        TextTokenizer.train(["a", " "])
    with pytest.raises(TypeError, match=r"tokenizers\.Tokenizer"):
        TextTokenizer(object())


def test_long_captions_are_truncated_and_said_once(tokenizer: TextTokenizer) -> None:
    encoder = TextTransformer(tokenizer, context_length=6, width=16, layers=1, heads=2)
    long = ["a photo of the digit three and a sketch of a seven", "a one"]
    with pytest.warns(CaptionTruncatedWarning, match=r"1 of 2 caption\(s\) are longer .* 6 tokens"):
        ids = encoder.tokenize(long)
    assert ids.shape == (2, 6) and int(ids[0, -1]) == tokenizer.eot_id
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        encoder.tokenize(long)  # said once per encoder


def test_text_transformer_pools_the_end_of_text_token(tokenizer: TextTokenizer) -> None:
    torch.manual_seed(0)
    encoder = TextTransformer(tokenizer, context_length=16, width=16, layers=2, heads=4).eval()
    ids = encoder.tokenize(["a photo of the digit two", "a six"])
    out = encoder(ids)
    assert out.shape == (2, 16) and encoder.out_dim == 16
    # the causal mask: padding (or anything) after [EOT] changes nothing; tokens before it do
    trimmed = ids[:, : int((ids != 0).sum(1).max())]
    torch.testing.assert_close(encoder(trimmed), out)
    noisy = ids.clone()
    noisy[1, 4:] = 7
    torch.testing.assert_close(encoder(noisy)[1], out[1])
    other = ids.clone()
    other[1, 1] = tokenizer.token_ids(["photo"])[0]
    assert not torch.allclose(encoder(other)[1], out[1])
    with pytest.raises(ValueError, match="context length is 16"):
        encoder(torch.zeros(1, 17, dtype=torch.int64))
    with pytest.raises(ValueError, match="integer tensor"):
        encoder(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="multiple of heads"):
        TextTransformer(tokenizer, width=10, heads=4)


def test_two_tower_shapes_and_logit_scale(tokenizer: TextTokenizer) -> None:
    torch.manual_seed(0)
    image = build_tower("image", shape=(1, 8, 8), encoder_kwargs={"widths": (8,), "strides": (2,)})
    text = build_tower("text", tokenizer=tokenizer, text_kwargs={"width": 16, "heads": 2})
    model = TwoTowerModel(image, text, dim=12, local_projections=True)
    tokens = text.tokenize(CAPTIONS[:4])  # type: ignore[operator]
    za, zb, za_aug, zb_aug = model(
        torch.rand(4, 1, 8, 8), tokens, torch.rand(4, 3, 1, 8, 8), tokens[:, None].expand(-1, 2, -1)
    )
    assert (za.shape, zb.shape, za_aug.shape, zb_aug.shape) == (
        (4, 12),
        (4, 12),
        (4, 3, 12),
        (4, 2, 12),
    )
    model.eval()
    torch.testing.assert_close(model.encode_text(CAPTIONS[:4]), model.encode_b(tokens))
    emb = model.encode_image(torch.rand(5, 1, 8, 8), normalize=True)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(5))
    assert model.features("a", torch.rand(2, 1, 8, 8)).shape == (2, image.out_dim)  # type: ignore[operator]
    assert model.tokenizer is tokenizer and model.side_of("text") == "b"
    # CLIP's clamp: the scale never exceeds 100
    assert float(model.logit_scale_value()) == pytest.approx(1 / 0.07, rel=1e-5)
    model.set_logit_scale(10.0)
    assert float(model.logit_scale_value()) == pytest.approx(100.0)
    learnt = TwoTowerModel(image, text, learn_logit_scale=True)
    assert any(p is learnt.logit_scale for p in learnt.parameters())
    with pytest.raises(ValueError, match="local_projections=True"):
        TwoTowerModel(image, text).encode_a(torch.rand(1, 1, 8, 8), local=True)


def test_any_two_modalities() -> None:
    model = TwoTowerModel(
        build_tower("series", shape=(3, 20)),
        build_tower("vector", shape=(7,)),
        dim=5,
        kinds=("series", "vector"),
    )
    za, zb = model(torch.randn(4, 3, 20), torch.randn(4, 7))
    assert za.shape == zb.shape == (4, 5)
    with pytest.raises(ValueError, match="no text tower"):
        model.encode_text(["a caption"])
    with pytest.raises(TypeError, match="pass a tensor, not texts"):
        model.encode_a(["a caption"])
    with pytest.raises(ValueError, match="kind must be one of"):
        build_tower("audio", shape=(3,))
    with pytest.raises(ValueError, match="sample shape of 3 dims"):
        build_tower("image", shape=(8, 8))
    with pytest.raises(ValueError, match="needs its tokenizer"):
        build_tower("text")
