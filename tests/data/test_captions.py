"""The built-in generated image-caption sets (contrastkit.data.captions)."""

from __future__ import annotations

import doctest
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import torch

import contrastkit.data.captions as captions_module
import contrastkit.data.datasets as datasets_module
from contrastkit.data import DATA_DIR_ENV
from contrastkit.data.captions import (
    ATTRIBUTE_WORDS,
    ATTRIBUTES,
    INK_THRESHOLD,
    attribute_thresholds,
    attribute_words,
    caption_datasets,
    caption_vocabulary,
    load_caption_dataset,
    make_captions,
    measure_attributes,
)
from contrastkit.data.idx import write_idx
from contrastkit.data.paired import PairedSplit


@pytest.fixture(scope="module")
def digits() -> PairedSplit:
    return load_caption_dataset("digits-captions", seed=0)


def test_docstring_examples() -> None:
    result = doctest.testmod(captions_module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_shapes_labels_and_fields(digits: PairedSplit) -> None:
    assert caption_datasets() == ["digits-captions", "fashion-mnist-captions"]
    assert (len(digits.train), len(digits.test)) == (1347, 450)
    assert isinstance(digits.train.a, torch.Tensor) and digits.train.a.shape[1:] == (1, 8, 8)
    assert isinstance(digits.train.b, list) and all(isinstance(c, str) for c in digits.train.b)
    assert digits.train.labels is not None and digits.train.labels.dtype == torch.int64
    assert digits.test.labels is not None and digits.test.labels.dtype == torch.int64
    assert len(digits.class_names) == 10 and digits.class_names[3] == "three"
    assert len(digits.zero_shot_templates) >= 4
    assert all(t.count("{}") == 1 for t in digits.zero_shot_templates)
    assert digits.train.name == "digits-captions"


def test_deterministic_from_the_seed(digits: PairedSplit) -> None:
    again = load_caption_dataset("digits_captions", seed=0)
    assert again.train.b == digits.train.b and again.test.b == digits.test.b
    assert isinstance(again.train.a, torch.Tensor) and isinstance(digits.train.a, torch.Tensor)
    assert torch.equal(again.train.a, digits.train.a)
    other = load_caption_dataset("digits-captions", seed=1)
    assert other.train.b != digits.train.b
    # Train and test draw from different streams: no shared prefix pattern of choices.
    assert digits.train.b[:20] != digits.test.b[:20]


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(r"\{\}", ".+"))


@pytest.mark.parametrize("seed", [0, 3])
def test_held_out_templates_and_synonyms_never_in_captions(seed: int) -> None:
    split = load_caption_dataset("digits-captions", seed=seed)
    vocab = caption_vocabulary("digits-captions")
    assert tuple(split.zero_shot_templates) == vocab.zero_shot_templates
    captions = list(split.train.b) + list(split.test.b)
    for template in split.zero_shot_templates:
        pattern = _template_regex(template)
        assert not any(pattern.fullmatch(c) for c in captions), template
        # Nor as a fragment: the template's text around {} with a class name filled in.
        for name in split.class_names:
            assert not any(template.replace("{}", name) in c for c in captions)
    # The same holds for the Fashion-MNIST vocabulary, checked on generated captions directly.
    fm = caption_vocabulary("fashion-mnist-captions")
    for vocabulary in (vocab, fm):
        n = 3000
        labels = torch.arange(n) % len(vocabulary.class_names)
        attrs = {k: torch.rand(n, generator=torch.Generator().manual_seed(1)) for k in ATTRIBUTES}
        caps = make_captions(labels, attrs, attribute_thresholds(attrs), vocabulary, seed=seed)
        for template in vocabulary.zero_shot_templates:
            assert not any(_template_regex(template).fullmatch(c) for c in caps), template
        for held in vocabulary.held_out_synonyms:
            for word in held:
                hit = re.compile(rf"(?<![\w-]){re.escape(word)}(?![\w-])")
                assert not any(hit.search(c) for c in caps), word


def test_class_names_are_used_in_training(digits: PairedSplit) -> None:
    assert digits.train.labels is not None
    for y, name in enumerate(digits.class_names):
        caps = [
            c for c, t in zip(digits.train.b, digits.train.labels.tolist(), strict=True) if t == y
        ]
        share = np.mean([re.search(rf"\b{name}\b", c) is not None for c in caps])
        assert 0.3 < share < 0.8


def test_captions_differ_within_a_class(digits: PairedSplit) -> None:
    assert digits.train.labels is not None
    per_class: dict[int, set[str]] = defaultdict(set)
    for c, y in zip(digits.train.b, digits.train.labels.tolist(), strict=True):
        per_class[y].add(c)
    # ~135 images per class; nearly every caption is different.
    assert min(len(v) for v in per_class.values()) >= 100
    assert len(set(digits.train.b)) >= 0.9 * len(digits.train)


def _image(h: int = 10, w: int = 10) -> torch.Tensor:
    return torch.zeros(1, 1, h, w)


def test_measured_attributes_on_hand_made_images() -> None:
    wide = _image()
    wide[0, 0, 4:6, 1:9] = 1.0  # 8 wide, 2 tall, full intensity
    tall = _image()
    tall[0, 0, 1:9, 4:6] = 0.5
    top = _image()
    top[0, 0, 0, :] = 1.0  # a T: heavy bar on top of a thin stem
    top[0, 0, 1:10, 5] = 0.3
    empty = _image()
    faint = _image()
    faint[0, 0, :, :] = INK_THRESHOLD / 2  # below the ink threshold: no ink
    a = measure_attributes(torch.cat([wide, tall, top, empty, faint]))
    assert a["size"].tolist() == pytest.approx([0.16, 0.16, 0.19, 0.0, 0.0])
    assert a["tone"].tolist() == pytest.approx([1.0, 0.5, (10 * 1.0 + 9 * 0.3) / 19, 0, 0])
    assert a["shape"].tolist() == pytest.approx([4.0, 0.25, 1.0, 1.0, 1.0])
    centre_top = sum(r * 0.3 for r in range(1, 10)) / (10 + 9 * 0.3) / 9
    assert a["balance"].tolist() == pytest.approx([0.5, 0.5, centre_top, 0.5, 0.5])
    # RGB is averaged over channels.
    rgb = wide.repeat(1, 3, 1, 1)
    rgb[:, 1:] = 0.0
    assert float(measure_attributes(rgb)["tone"][0]) == pytest.approx(1 / 3)


def test_attribute_words_agree_with_the_measurement() -> None:
    x = torch.zeros(4, 1, 12, 12)
    x[0, 0, 5:7, 0:12] = 1.0  # wide, dark, small
    x[1, 0, 0:12, 5:7] = 0.3  # tall, faint, small
    x[2, 0, 1:11, 1:11] = 0.6  # large, compact, grey
    x[2, 0, 1:3, 1:11] = 1.0  # ... with a heavy top
    x[3, 0, 2:10, 2:10] = 0.6  # large-ish, compact, balanced, grey
    x[3, 0, 8:10, 2:10] = 1.0  # ... with a heavy bottom
    a = measure_attributes(x)
    thresholds = {
        "size": (0.2, 0.4),
        "tone": (0.4, 0.8),
        "shape": (0.7, 1.4),
        "balance": (0.45, 0.55),
    }
    words = attribute_words(a, thresholds)
    assert words[0] == {"size": "small", "tone": "dark", "shape": "wide", "balance": "balanced"}
    assert words[1] == {"size": "small", "tone": "faint", "shape": "tall", "balance": "balanced"}
    assert words[2]["size"] == "large" and words[2]["shape"] == "compact"
    assert words[2]["balance"] == "top-heavy"
    assert words[3]["balance"] == "bottom-heavy" and words[3]["tone"] == "grey"
    # Every attribute word a caption uses comes from the image's own bucket.
    vocab = caption_vocabulary("fashion-mnist-captions")
    reps = 50
    labels = torch.arange(4).repeat(reps)
    attrs = {k: v.repeat(reps) for k, v in a.items()}
    caps = make_captions(labels, attrs, thresholds, vocab, seed=0)
    for i, cap in enumerate(caps):
        for key in ATTRIBUTES:
            own = next(b for b in ATTRIBUTE_WORDS[key] if words[i % 4][key] in b)
            others = [w for b in ATTRIBUTE_WORDS[key] if b is not own for w in b]
            for w in others:
                assert not re.search(rf"(?<![\w-]){re.escape(w)}(?![\w-])", cap), (cap, w)
    assert any("wide" in c or "broad" in c for c in caps[0::4])


def test_attributes_are_grounded_in_real_images(digits: PairedSplit) -> None:
    """Captions saying "large" come from images with more ink than those saying "small"."""
    assert isinstance(digits.train.a, torch.Tensor)
    size = measure_attributes(digits.train.a)["size"]
    is_small = torch.tensor([bool(re.search(r"\b(small|little)\b", c)) for c in digits.train.b])
    is_large = torch.tensor([bool(re.search(r"\b(large|big)\b", c)) for c in digits.train.b])
    assert is_small.sum() > 100 and is_large.sum() > 100
    assert float(size[is_small].max()) < float(size[is_large].min())


def test_bad_input_messages() -> None:
    with pytest.raises(ValueError, match="unknown caption dataset 'mnist-captions'"):
        load_caption_dataset("mnist-captions")
    with pytest.raises(TypeError, match="name must be a str"):
        load_caption_dataset(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        measure_attributes(torch.zeros(8, 8))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        measure_attributes(torch.full((1, 1, 4, 4), 2.0))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        measure_attributes(torch.full((1, 1, 4, 4), float("nan")))
    vocab = caption_vocabulary("digits-captions")
    a = measure_attributes(torch.rand(3, 1, 4, 4))
    t = attribute_thresholds(a)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.9"):
        make_captions(torch.tensor([0, 1, 10]), a, t, vocab)
    with pytest.raises(ValueError, match="attributes hold 3 images but labels 2"):
        make_captions(torch.tensor([0, 1]), a, t, vocab)


def _tiny_fashion_mnist(folder: Path) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 40), ("t10k", 20)):
        images = np.zeros((n, 28, 28), dtype=np.uint8)
        for i in range(n):
            h, w = rng.integers(4, 24, 2)
            images[i, 2 : 2 + h, 2 : 2 + w] = rng.integers(60, 256)
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_fashion_mnist_captions_from_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets_module, "SYSTEM_FASHION_MNIST_DIRS", (tmp_path / "none",))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match="Fashion-MNIST IDX files not found"):
        load_caption_dataset("fashion-mnist-captions")
    _tiny_fashion_mnist(tmp_path)
    split = load_caption_dataset("fmnist-captions", root=tmp_path, seed=2)
    assert (len(split.train), len(split.test)) == (40, 20)
    assert split.class_names[9] == "ankle boot"
    assert split.train.labels is not None and split.train.labels.dtype == torch.int64
    boots = [c for c, y in zip(split.train.b, split.train.labels.tolist(), strict=True) if y == 9]
    assert all("boot" in c for c in boots)
    assert all("a ankle" not in c for c in split.train.b)  # "an ankle boot"
    assert split.train.b == load_caption_dataset("fmnist-captions", root=tmp_path, seed=2).train.b


@pytest.mark.slow
def test_real_fashion_mnist_captions_if_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Path("/usr/share/datasets/fashion-mnist")
    if not (real / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    monkeypatch.setattr(datasets_module, "SYSTEM_FASHION_MNIST_DIRS", (real,))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    split = load_caption_dataset("fashion-mnist-captions")
    assert (len(split.train), len(split.test)) == (60000, 10000)
    assert split.train.labels is not None
    per_class: dict[int, set[str]] = defaultdict(set)
    for c, y in zip(split.train.b, split.train.labels.tolist(), strict=True):
        per_class[y].add(c)
    assert min(len(v) for v in per_class.values()) >= 1000


def test_several_captions_per_image_make_bags_and_leave_the_rest_unchanged() -> None:
    one = load_caption_dataset("digits-captions", seed=3)
    three = load_caption_dataset("digits-captions", seed=3, captions_per_image=3)
    assert three.train.b == one.train.b and three.test.b == one.test.b
    assert one.train.bag_size == 1 and three.train.bag_size == 3
    bags = three.train.b_bags()
    assert [len(member) for member in bags] == [len(one.train.b)] * 3
    assert bags[1] != bags[0] and bags[2] != bags[1]  # independent draws
    names = caption_vocabulary("digits-captions").train_synonyms
    for i in range(0, len(bags[0]), 97):  # every bag member names the image's own class
        y = int(three.train.labels[i])
        assert all(any(s in member[i] for s in names[y]) for member in bags), i
    with pytest.raises(ValueError, match="captions_per_image"):
        load_caption_dataset("digits-captions", captions_per_image=0)
