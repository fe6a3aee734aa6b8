"""Retrieval metrics and zero-shot classification (contrastkit.eval.retrieval)."""

from __future__ import annotations

import doctest

import pytest
import torch

import contrastkit.eval.retrieval as retrieval_module
from contrastkit.eval.retrieval import (
    retrieval_metrics,
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_predict,
)

NAMES = [
    f"{d}_{m}"
    for d in ("image_to_text", "text_to_image")
    for m in ("R@1", "R@5", "R@10", "mean_rank", "median_rank")
]


def test_docstring_examples() -> None:
    result = doctest.testmod(retrieval_module)
    assert result.attempted > 0 and result.failed == 0


def test_hand_computed_small_case() -> None:
    # 4 pairs on the unit circle: images at 0, 90, 180, 270 degrees, texts at 10, 150, 100, 215.
    # Texts are scaled by 1..4: only the direction may count.
    ang_img = torch.tensor([0.0, 90.0, 180.0, 270.0], dtype=torch.float64).deg2rad()
    ang_txt = torch.tensor([10.0, 150.0, 100.0, 215.0], dtype=torch.float64).deg2rad()
    img = torch.stack([ang_img.cos(), ang_img.sin()], 1)
    txt = torch.stack([ang_txt.cos(), ang_txt.sin()], 1) * torch.tensor(
        [[1.0], [2.0], [3.0], [4.0]]
    )
    m = retrieval_metrics(img, txt)
    assert sorted(m) == sorted(NAMES)
    # image -> text, angular distances to texts 0..3:
    #   img0: 10, 150, 100, 145 -> partner first, rank 1
    #   img1: 80, 60, 10, 125   -> text2 closer: rank 2
    #   img2: 170, 30, 80, 35   -> texts 1 and 3 closer: rank 3
    #   img3: 100, 120, 170, 55 -> rank 1
    assert m["image_to_text_R@1"] == 0.5
    assert m["image_to_text_R@5"] == 1.0 and m["image_to_text_R@10"] == 1.0
    assert m["image_to_text_mean_rank"] == pytest.approx(7 / 4)
    assert m["image_to_text_median_rank"] == 1.0  # floor(median(0, 1, 2, 0)) + 1
    # text -> image, distances to images 0..3:
    #   text0: 10, 80, 170, 100 -> 1;  text1: 150, 60, 30, 120 -> 2
    #   text2: 100, 10, 80, 170 -> 2;  text3: 145, 125, 35, 55 -> 2
    assert m["text_to_image_R@1"] == 0.25
    assert m["text_to_image_mean_rank"] == pytest.approx(7 / 4)
    assert m["text_to_image_median_rank"] == 2.0  # floor(median(0, 1, 1, 1)) + 1


def test_perfect_reversed_and_collapsed() -> None:
    n = 12
    x = torch.randn(n, 16, generator=torch.Generator().manual_seed(0))
    perfect = retrieval_metrics(x, x * 3.0)  # scale does not matter
    for d in ("image_to_text", "text_to_image"):
        assert perfect[f"{d}_R@1"] == 1.0 and perfect[f"{d}_mean_rank"] == 1.0
        assert perfect[f"{d}_median_rank"] == 1.0
    # Reversed: each partner is the opposite direction, the least similar of all: rank n.
    rev = retrieval_metrics(x, -x)
    for d in ("image_to_text", "text_to_image"):
        assert rev[f"{d}_R@1"] == rev[f"{d}_R@5"] == rev[f"{d}_R@10"] == 0.0
        assert rev[f"{d}_mean_rank"] == n and rev[f"{d}_median_rank"] == n
    # Collapsed: every text identical -> every pair ties with all others -> rank n, not 1.
    c = retrieval_metrics(x, torch.ones(n, 16))
    assert c["image_to_text_R@1"] == 0.0 and c["image_to_text_mean_rank"] == n
    assert c["image_to_text_R@10"] == 0.0


@pytest.mark.parametrize("chunk", [1, 7, 64, 1000])
def test_chunking_does_not_change_the_result(chunk: int) -> None:
    g = torch.Generator().manual_seed(1)
    img = torch.randn(200, 8, generator=g)
    txt = img + 1.5 * torch.randn(200, 8, generator=g)
    ref = retrieval_metrics(img, txt, chunk_size=200)
    assert retrieval_metrics(img, txt, chunk_size=chunk) == ref
    assert 0 < ref["image_to_text_R@1"] < ref["image_to_text_R@5"] < 1
    renamed = retrieval_metrics(img, txt, names=("a", "b"))
    assert renamed["b_to_a_R@5"] == ref["text_to_image_R@5"] and len(renamed) == len(ref)
    # numpy input works the same.
    assert retrieval_metrics(img.numpy(), txt.numpy(), chunk_size=chunk) == ref


def test_retrieval_input_errors() -> None:
    x = torch.randn(5, 4)
    with pytest.raises(ValueError, match="same number of rows"):
        retrieval_metrics(x, torch.randn(6, 4))
    with pytest.raises(ValueError, match="same feature dim"):
        retrieval_metrics(x, torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"shape \(N, D\)"):
        retrieval_metrics(torch.randn(5), x)
    bad = x.clone()
    bad[2, 1] = float("nan")
    with pytest.raises(ValueError, match=r"text_emb must be finite.*1 NaN"):
        retrieval_metrics(x, bad)
    zero = x.clone()
    zero[3] = 0
    with pytest.raises(ValueError, match=r"image_emb has 1 all-zero row.*index 3"):
        retrieval_metrics(zero, x)
    with pytest.raises(ValueError, match="chunk_size"):
        retrieval_metrics(x, x, chunk_size=0)
    with pytest.raises(ValueError, match="names must be two different"):
        retrieval_metrics(x, x, names=("a", "a"))
    with pytest.raises(TypeError, match=r"torch\.Tensor or a numpy\.ndarray"):
        retrieval_metrics([[1.0]], x)  # type: ignore[arg-type]


# A hand-made text encoder: a bag of words over 3 axes ("cat", "dog", "bird"); other words add a
# shared nuisance direction, so templates matter but the class word decides.
_AXES = {"cat": 0, "kitten": 0, "dog": 1, "puppy": 1, "bird": 2}


def _encode(texts: list[str]) -> torch.Tensor:
    out = torch.zeros(len(texts), 4)
    for i, t in enumerate(texts):
        for w in t.replace(".", "").split():
            if w in _AXES:
                out[i, _AXES[w]] += 1.0
            else:
                out[i, 3] += 0.3
    return out


def test_zero_shot_classifier_ensembles_like_open_clip() -> None:
    templates = [
        "a photo of a {}.",
        "{}",
        "a {} and a {} again",
    ]  # the last: two slots, both filled
    w = zero_shot_classifier(_encode, ["cat", "dog", "bird"], templates)
    assert w.shape == (3, 4)
    assert torch.allclose(w.norm(dim=1), torch.ones(3))
    # By hand for "cat": normalise each template's embedding, average, renormalise.
    e = torch.nn.functional.normalize(
        _encode(["a photo of a cat.", "cat", "a cat and a cat again"])
    )
    expected = torch.nn.functional.normalize(e.mean(0), dim=0)
    assert torch.allclose(w[0], expected)
    calls: list[list[str]] = []

    def spy(texts: list[str]) -> torch.Tensor:
        calls.append(texts)
        return _encode(texts)

    zero_shot_classifier(spy, ["cat", "dog"], templates)
    assert calls[1] == ["a photo of a dog.", "dog", "a dog and a dog again"]


def test_zero_shot_on_a_known_case() -> None:
    w = zero_shot_classifier(_encode, ["cat", "dog", "bird"], ["a photo of a {}.", "{}"])
    # Images embedded in the same space: near their class axis, plus noise on the nuisance axis.
    images = torch.tensor(
        [
            [1.0, 0.1, 0.0, 0.5],  # cat
            [0.2, 1.0, 0.3, 0.1],  # dog
            [0.0, 0.2, 1.0, 0.9],  # bird
            [0.9, 0.8, 0.0, 0.0],  # labelled dog, but closer to cat: top-1 miss, top-2 hit
        ]
    )
    labels = torch.tensor([0, 1, 2, 1])
    acc = zero_shot_accuracy(images, labels, w, topk=(1, 2, 3))
    assert acc == {"zero_shot_top1": 0.75, "zero_shot_top2": 1.0, "zero_shot_top3": 1.0}
    idx, score = zero_shot_predict(images, w, k=2)
    assert idx[:, 0].tolist() == [0, 1, 2, 0] and idx[3, 1] == 1
    assert bool((score[:, 0] >= score[:, 1]).all())
    # Unseen synonyms ("kitten", "puppy") give the same classifier rows here.
    w2 = zero_shot_classifier(_encode, ["kitten", "puppy", "bird"], ["a photo of a {}.", "{}"])
    assert torch.allclose(w, w2)
    # Chunking inside predict does not change the answer.
    assert torch.equal(zero_shot_predict(images, w, k=2, chunk_size=1)[0], idx)


def test_zero_shot_input_errors() -> None:
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        zero_shot_classifier(_encode, ["cat"], ["a photo"])
    with pytest.raises(ValueError, match="distinct; repeated: 'cat'"):
        zero_shot_classifier(_encode, ["cat", "cat"], ["{}"])
    with pytest.raises(ValueError, match=r"class_names\[1\] is empty"):
        zero_shot_classifier(_encode, ["cat", " "], ["{}"])
    with pytest.raises(TypeError, match="not one str"):
        zero_shot_classifier(_encode, "cat,dog", ["{}"])
    with pytest.raises(ValueError, match="templates must not be empty"):
        zero_shot_classifier(_encode, ["cat"], [])
    with pytest.raises(ValueError, match=r"returned shape \(1, 4\) for 2 prompts"):
        zero_shot_classifier(lambda t: torch.ones(1, 4), ["cat"], ["{}", "a {}"])
    with pytest.raises(ValueError, match="finite"):
        zero_shot_classifier(lambda t: torch.full((len(t), 4), float("nan")), ["cat"], ["{}"])
    with pytest.raises(TypeError, match=r"must return a torch\.Tensor"):
        zero_shot_classifier(lambda t: [[1.0]], ["cat"], ["{}"])  # type: ignore[arg-type,return-value]
    w = torch.eye(3)
    x = torch.randn(4, 3)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        zero_shot_accuracy(x, torch.tensor([0, 1, 2, 3]), w, topk=(1,))
    with pytest.raises(ValueError, match="topk entry must be"):
        zero_shot_accuracy(x, torch.tensor([0, 1, 2, 0]), w, topk=(1, 5))
    with pytest.raises(ValueError, match=r"labels must have shape \(4,\)"):
        zero_shot_accuracy(x, torch.tensor([0, 1]), w, topk=(1,))
    with pytest.raises(ValueError, match="same feature dim"):
        zero_shot_accuracy(x, torch.tensor([0, 1, 2, 0]), torch.eye(4), topk=(1,))
    with pytest.raises(ValueError, match="k must be"):
        zero_shot_predict(x, w, k=4)
