"""evaluate_two_tower and embed_side (contrastkit.eval.two_tower)."""

from __future__ import annotations

import doctest

import pytest
import torch

import contrastkit.eval.two_tower as two_tower_module
from contrastkit.data.captions import load_caption_dataset
from contrastkit.data.paired import PairedDataset, PairedSplit
from contrastkit.eval.retrieval import retrieval_metrics, zero_shot_accuracy, zero_shot_classifier
from contrastkit.eval.two_tower import embed_side, evaluate_two_tower, retrieval_names
from contrastkit.models import TextTokenizer, TwoTowerModel, build_tower

pytest.importorskip("tokenizers")


def _subset(part: PairedDataset, n: int) -> PairedDataset:
    assert isinstance(part.a, torch.Tensor) and isinstance(part.b, list)
    assert part.labels is not None
    return PairedDataset(part.a[:n], part.b[:n], part.labels[:n], part.name)


@pytest.fixture(scope="module")
def image_text() -> tuple[TwoTowerModel, PairedSplit]:
    full = load_caption_dataset("digits-captions", seed=0)
    split = PairedSplit(
        _subset(full.train, 120),
        _subset(full.test, 60),
        full.class_names,
        full.zero_shot_templates,
    )
    assert isinstance(split.train.b, list)
    tok = TextTokenizer.train(split.train.b, vocab_size=200)
    torch.manual_seed(0)
    image = build_tower("image", shape=(1, 8, 8))
    text = build_tower("text", tokenizer=tok, text_kwargs={"width": 16, "heads": 2, "layers": 1})
    return TwoTowerModel(image, text, dim=8), split


def test_docstring_examples() -> None:
    result = doctest.testmod(two_tower_module)
    assert result.attempted > 0 and result.failed == 0


def test_image_text_metrics_match_the_parts(image_text: tuple[TwoTowerModel, PairedSplit]) -> None:
    model, split = image_text
    model.train()
    m = evaluate_two_tower(model, split)
    assert model.training  # the train/eval flags are restored
    for key in ("image_to_text_R@1", "text_to_image_median_rank", "zero_shot_top1", "linear_acc"):
        assert key in m
    assert "zero_shot_top5" in m and "knn_acc" in m and m["feature_dim"] > 0
    # The same numbers by hand from the parts.
    assert isinstance(split.test.b, list) and split.test.labels is not None
    img = embed_side(model, "a", split.test.a, batch_size=7)
    txt = embed_side(model, "b", split.test.b, batch_size=50)
    ref = retrieval_metrics(img, txt)
    assert all(m[k] == pytest.approx(v) for k, v in ref.items())
    model.eval()
    with torch.no_grad():
        w = zero_shot_classifier(
            lambda t: model.encode_text(t), split.class_names, split.zero_shot_templates
        )
    zs = zero_shot_accuracy(img, split.test.labels, w)
    assert m["zero_shot_top1"] == pytest.approx(zs["zero_shot_top1"])
    # Other templates can be given; no templates -> no zero-shot.
    m2 = evaluate_two_tower(model, split, templates=["{}"], probe=False, topk=(1, 3, 50))
    assert "zero_shot_top3" in m2 and "zero_shot_top50" not in m2 and "linear_acc" not in m2
    bare = PairedSplit(split.train, split.test)
    assert "zero_shot_top1" not in evaluate_two_tower(model, bare, probe=False)
    assert retrieval_names(model) == ("image", "text")


def test_embed_side_projected_or_features(image_text: tuple[TwoTowerModel, PairedSplit]) -> None:
    model, split = image_text
    z = embed_side(model, "a", split.test.a, normalize=True)
    assert z.shape == (60, 8) and torch.allclose(z.norm(dim=1), torch.ones(60))
    h = embed_side(model, "a", split.test.a, projected=False)
    assert h.shape[0] == 60 and h.shape[1] == model.tower_a.out_dim
    with pytest.raises(ValueError, match="side"):
        embed_side(model, "c", split.test.a)
    with pytest.raises(TypeError, match="TwoTowerModel"):
        embed_side(torch.nn.Linear(2, 2), "a", split.test.a)  # type: ignore[arg-type]


def test_two_sensors_get_a_b_names_and_two_probes() -> None:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(60) % 3
    a = torch.randn(60, 2, 16, generator=g) + y[:, None, None]
    b = torch.randn(60, 3, 16, generator=g) - y[:, None, None]
    part = PairedDataset(a, b, y)
    model = TwoTowerModel(
        build_tower("series", shape=(2, 16)),
        build_tower("series", shape=(3, 16)),
        dim=8,
        kinds=("series", "series"),
    )
    m = evaluate_two_tower(model, PairedSplit(part, part), knn_k=5)
    assert {"a_to_b_R@1", "b_to_a_R@10", "linear_acc", "linear_acc_b", "knn_k_b"} <= set(m)
    assert "zero_shot_top1" not in m and m["knn_k"] == 5
    with pytest.raises(TypeError, match="PairedSplit"):
        evaluate_two_tower(model, part)  # type: ignore[arg-type]
