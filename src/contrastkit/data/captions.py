"""Built-in offline image-caption sets: digits and Fashion-MNIST images with GENERATED captions.

The captions are not written by people. Each one is made by a program from three things:

1. the image's class name or one of its training synonyms (``"sneaker"``, ``"trainer"``,
   ``"running shoe"``; ``"zero"``, ``"digit 0"``);
2. attributes MEASURED from the image itself (:func:`measure_attributes`), each bucketed into a word
   by the tertiles of the training images (:func:`attribute_thresholds`, :func:`attribute_words`):

   - size: the share of pixels that hold ink (value > :data:`INK_THRESHOLD`): small / medium / large;
   - tone: the mean value of the ink pixels: faint / grey / dark ("dark" means strong strokes,
     i.e. high pixel values, as both sets store the object bright on black);
   - shape: width over height of the ink's bounding box: tall / compact / wide;
   - balance: the ink's vertical centre of mass within that box: top-heavy / balanced /
     bottom-heavy;

3. one of several training templates and "medium" words (photo, sketch, ...), picked with a
   random generator seeded by ``seed``.

So ``"a small, faint sketch of a sneaker"`` and ``"a wide dark photo of a pullover"`` describe what
the pixels show, captions differ within a class, and retrieval is not a 10-way lookup. Some
templates and some class synonyms never occur in any caption (train or test): the templates are
returned in :attr:`PairedSplit.zero_shot_templates` for zero-shot evaluation, the synonyms by
:func:`caption_vocabulary` (``held_out_synonyms``). The same ``seed`` always gives the same split
and the same captions.

Example:
    >>> from contrastkit.data.captions import load_caption_dataset
    >>> split = load_caption_dataset("digits-captions", seed=0)
    >>> len(split.train), len(split.test), split.class_names[:3]
    (1347, 450, ('zero', 'one', 'two'))
    >>> isinstance(split.train.b[0], str), split.zero_shot_templates[0]
    (True, 'a blurry photo of the {}.')
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_int
from contrastkit.data.arrays import check_seed
from contrastkit.data.datasets import load_dataset
from contrastkit.data.paired import PairedDataset, PairedSplit

__all__ = [
    "ATTRIBUTES",
    "ATTRIBUTE_WORDS",
    "INK_THRESHOLD",
    "CaptionVocabulary",
    "attribute_thresholds",
    "attribute_words",
    "caption_datasets",
    "caption_vocabulary",
    "load_caption_dataset",
    "make_captions",
    "measure_attributes",
]

#: A pixel holds ink when its value (in [0, 1], averaged over channels) exceeds this.
INK_THRESHOLD = 0.2

#: The measured attributes, in the order their words are placed before the noun.
ATTRIBUTES: tuple[str, ...] = ("size", "tone", "shape", "balance")

#: Words for the low / middle / high tertile of each attribute (the first word of each tuple is
#: the canonical one; the others are training synonyms picked at random).
ATTRIBUTE_WORDS: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "size": (("small", "little"), ("medium-sized", "mid-sized"), ("large", "big")),
    "tone": (("faint", "pale"), ("grey", "mid-tone"), ("dark", "bold")),
    "shape": (("tall", "narrow"), ("compact", "squarish"), ("wide", "broad")),
    "balance": (("top-heavy",), ("balanced", "even"), ("bottom-heavy",)),
}

# Probability that a caption mentions each attribute (at least one is always mentioned).
_MENTION = {"size": 0.8, "tone": 0.8, "shape": 0.65, "balance": 0.45}

# Training templates: {adjs} "small, faint", {adjs_and} "small and faint", {medium}, {noun}.
_TRAIN_TEMPLATES: tuple[str, ...] = (
    "a {adjs} {medium} of a {noun}",
    "a {medium} of a {adjs} {noun}",
    "a {adjs} {noun}",
    "{noun}, {adjs_and}",
    "a {noun} that looks {adjs_and}",
    "this {medium} shows a {adjs} {noun}",
    "{adjs} {noun} in a {medium}",
    "a {noun}: {adjs_and}",
)
_TRAIN_MEDIA: tuple[str, ...] = ("photo", "picture", "image", "sketch", "drawing")

# Zero-shot templates, never used for a caption (train or test).
_ZERO_SHOT_TEMPLATES: tuple[str, ...] = (
    "a blurry photo of the {}.",
    "a close-up photo of a {}.",
    "a picture showing a {}.",
    "an image of one {}.",
    "a {} shown in a drawing.",
    "the {}, low resolution.",
)


@dataclass(frozen=True)
class CaptionVocabulary:
    """What the captions of one built-in set are made of.

    Attributes:
        class_names: One canonical name per label (used by zero-shot evaluation).
        train_synonyms: Per class, the nouns captions use (the canonical name first).
        held_out_synonyms: Per class, synonyms that no caption uses (for zero-shot tests with
            unseen names).
        train_templates: The caption templates (``{adjs}``, ``{adjs_and}``, ``{medium}``,
            ``{noun}`` slots).
        zero_shot_templates: Templates with ``{}`` for the class name that no caption uses.
    """

    class_names: tuple[str, ...]
    train_synonyms: tuple[tuple[str, ...], ...]
    held_out_synonyms: tuple[tuple[str, ...], ...]
    train_templates: tuple[str, ...] = _TRAIN_TEMPLATES
    zero_shot_templates: tuple[str, ...] = _ZERO_SHOT_TEMPLATES


_NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_VOCABULARIES: dict[str, CaptionVocabulary] = {
    "digits-captions": CaptionVocabulary(
        class_names=_NUMBERS,
        train_synonyms=tuple(
            (word, f"digit {i}", f"number {word}", f"handwritten {i}")
            for i, word in enumerate(_NUMBERS)
        ),
        held_out_synonyms=tuple((f"numeral {i}",) for i in range(10)),
    ),
    "fashion-mnist-captions": CaptionVocabulary(
        class_names=(
            "t-shirt",
            "trouser",
            "pullover",
            "dress",
            "coat",
            "sandal",
            "shirt",
            "sneaker",
            "bag",
            "ankle boot",
        ),
        train_synonyms=(
            ("t-shirt", "tee shirt", "top"),
            ("trouser", "pair of trousers", "pants"),
            ("pullover", "sweater", "jumper"),
            ("dress", "gown"),
            ("coat", "jacket"),
            ("sandal", "open shoe"),
            ("shirt", "button-up shirt"),
            ("sneaker", "trainer", "running shoe"),
            ("bag", "handbag", "purse"),
            ("ankle boot", "boot"),
        ),
        held_out_synonyms=(
            ("singlet",),
            ("slacks",),
            ("jersey",),
            ("frock",),
            ("overcoat",),
            ("flip-flop",),
            ("blouse",),
            ("sports shoe",),
            ("tote",),
            ("bootie",),
        ),
    ),
}

_ALIASES = {
    "digits-captions": "digits-captions",
    "digits_captions": "digits-captions",
    "fashion-mnist-captions": "fashion-mnist-captions",
    "fashion_mnist_captions": "fashion-mnist-captions",
    "fmnist-captions": "fashion-mnist-captions",
}

_BASE_DATA = {"digits-captions": "digits", "fashion-mnist-captions": "fashion-mnist"}


def caption_datasets() -> list[str]:
    """Return the names :func:`load_caption_dataset` accepts (without aliases).

    Example:
        >>> caption_datasets()
        ['digits-captions', 'fashion-mnist-captions']
    """
    return sorted(_VOCABULARIES)


def _canonical(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, got {type(name).__name__}")
    key = _ALIASES.get(name.strip().lower())
    if key is None:
        raise ValueError(
            f"unknown caption dataset {name!r}; known: {', '.join(caption_datasets())}"
        )
    return key


def caption_vocabulary(name: str) -> CaptionVocabulary:
    """Return the class names, synonyms and templates of a built-in caption set.

    Args:
        name: ``"digits-captions"`` or ``"fashion-mnist-captions"`` (or an alias such as
            ``"fmnist-captions"``).

    Returns:
        The :class:`CaptionVocabulary`.

    Raises:
        ValueError: For an unknown name.

    Example:
        >>> vocab = caption_vocabulary("fashion-mnist-captions")
        >>> vocab.class_names[7], vocab.train_synonyms[7], vocab.held_out_synonyms[7]
        ('sneaker', ('sneaker', 'trainer', 'running shoe'), ('sports shoe',))
    """
    return _VOCABULARIES[_canonical(name)]


def _check_images(images: object) -> Tensor:
    if not isinstance(images, Tensor):
        raise TypeError(f"images must be a torch.Tensor, got {type(images).__name__}")
    if images.dim() != 4 or images.shape[0] < 1 or images.shape[2] < 1 or images.shape[3] < 1:
        raise ValueError(
            f"images must have shape (N, C, H, W) with N >= 1, got shape {tuple(images.shape)}"
        )
    if not images.is_floating_point():
        raise TypeError(f"images must be a float tensor with values in [0, 1], got {images.dtype}")
    lo, hi = torch.aminmax(images.detach())
    if not (bool(lo >= 0) and bool(hi <= 1)):  # NaN fails both
        raise ValueError(
            f"images must hold finite values in [0, 1]; got min {float(lo)}, max {float(hi)}"
        )
    return images.detach().to(torch.float32)


@torch.no_grad()
def measure_attributes(images: Tensor) -> dict[str, Tensor]:
    """Measure the four caption attributes of each image.

    Pixels are averaged over channels; a pixel holds ink when its value exceeds
    :data:`INK_THRESHOLD`. For an image without ink every attribute is that of an empty picture:
    size 0, tone 0, shape 1 and balance 0.5.

    Args:
        images: float tensor ``(N, C, H, W)`` with values in ``[0, 1]`` (object bright on dark).

    Returns:
        float32 tensors ``(N,)`` keyed by :data:`ATTRIBUTES`:

        - ``size``: share of the pixels that hold ink, in ``[0, 1]``;
        - ``tone``: mean value of the ink pixels, in ``[0, 1]``;
        - ``shape``: width / height of the ink's bounding box (1 = as wide as tall);
        - ``balance``: vertical centre of mass of the ink (pixel values as weights) within that
          box, 0 = at its top row, 1 = at its bottom row.

    Raises:
        TypeError: If ``images`` is not a float tensor.
        ValueError: For a wrong shape or values outside ``[0, 1]``.

    Example:
        >>> x = torch.zeros(1, 1, 8, 8)
        >>> x[0, 0, 2:4, 1:7] = 1.0  # a wide bar, 6 x 2 pixels
        >>> a = measure_attributes(x)
        >>> float(a["size"]), float(a["tone"]), float(a["shape"]), float(a["balance"])
        (0.1875, 1.0, 3.0, 0.5)
    """
    x = _check_images(images).mean(dim=1)  # (N, H, W)
    n, h, w = x.shape
    ink = x > INK_THRESHOLD
    count = ink.sum(dim=(1, 2)).to(torch.float32)
    has_ink = count > 0
    size = count / float(h * w)
    tone = torch.where(has_ink, (x * ink).sum(dim=(1, 2)) / count.clamp_min(1), torch.zeros(n))
    rows, cols = ink.any(dim=2), ink.any(dim=1)  # (N, H), (N, W)
    r_idx = torch.arange(h, dtype=torch.float32)
    c_idx = torch.arange(w, dtype=torch.float32)
    big = float(max(h, w) + 1)
    top = torch.where(rows, r_idx, big).amin(dim=1)
    bottom = torch.where(rows, r_idx, -1.0).amax(dim=1)
    left = torch.where(cols, c_idx, big).amin(dim=1)
    right = torch.where(cols, c_idx, -1.0).amax(dim=1)
    height = (bottom - top + 1).clamp_min(1)
    width = (right - left + 1).clamp_min(1)
    shape = torch.where(has_ink, width / height, torch.ones(n))
    weights = x * ink
    mass = weights.sum(dim=(1, 2)).clamp_min(1e-12)
    centre = (weights.sum(dim=2) * r_idx).sum(dim=1) / mass
    span = (height - 1).clamp_min(1)
    balance = torch.where(has_ink & (height > 1), (centre - top) / span, torch.full((n,), 0.5))
    return {"size": size, "tone": tone, "shape": shape, "balance": balance}


def attribute_thresholds(attributes: dict[str, Tensor]) -> dict[str, tuple[float, float]]:
    """Return the tertiles (1/3 and 2/3 quantiles) of each measured attribute.

    Args:
        attributes: The output of :func:`measure_attributes` on the reference (training) images.

    Returns:
        ``(low, high)`` per attribute; :func:`attribute_words` maps a value ``<= low`` to the
        first word, ``> high`` to the last and the rest to the middle one.

    Raises:
        ValueError: If an attribute is missing or empty.

    Example:
        >>> a = {k: torch.arange(6.0) for k in ATTRIBUTES}
        >>> [round(v, 3) for v in attribute_thresholds(a)["size"]]
        [1.667, 3.333]
    """
    out: dict[str, tuple[float, float]] = {}
    for key in ATTRIBUTES:
        values = attributes.get(key)
        if not isinstance(values, Tensor) or values.dim() != 1 or values.numel() == 0:
            raise ValueError(f"attributes[{key!r}] must be a non-empty 1-D tensor, got {values!r}")
        q = torch.quantile(values.to(torch.float32), torch.tensor([1 / 3, 2 / 3]))
        out[key] = (float(q[0]), float(q[1]))
    return out


def _buckets(attributes: dict[str, Tensor], thresholds: dict[str, tuple[float, float]]) -> Tensor:
    """``(N, 4)`` int64 bucket (0 low, 1 middle, 2 high) of each attribute."""
    cols = []
    for key in ATTRIBUTES:
        if key not in attributes or key not in thresholds:
            raise ValueError(f"attributes and thresholds must both hold {key!r}")
        lo, hi = thresholds[key]
        if not lo <= hi:
            raise ValueError(
                f"thresholds[{key!r}] must be (low, high) with low <= high, got {(lo, hi)}"
            )
        v = attributes[key]
        cols.append((v > lo).to(torch.int64) + (v > hi).to(torch.int64))
    return torch.stack(cols, dim=1)


def attribute_words(
    attributes: dict[str, Tensor], thresholds: dict[str, tuple[float, float]]
) -> list[dict[str, str]]:
    """Map measured attributes to their canonical words (the first synonym of each bucket).

    Args:
        attributes: The output of :func:`measure_attributes`.
        thresholds: ``(low, high)`` per attribute, e.g. from :func:`attribute_thresholds`.

    Returns:
        One dict per image, attribute -> word (``"small"``, ``"dark"``, ``"wide"``, ...).

    Raises:
        ValueError: If an attribute or threshold is missing or a threshold pair is not ordered.

    Example:
        >>> a = {"size": torch.tensor([0.05]), "tone": torch.tensor([0.9]),
        ...      "shape": torch.tensor([2.0]), "balance": torch.tensor([0.5])}
        >>> t = {"size": (0.1, 0.2), "tone": (0.4, 0.6), "shape": (0.8, 1.2), "balance": (0.45, 0.55)}
        >>> attribute_words(a, t)
        [{'size': 'small', 'tone': 'dark', 'shape': 'wide', 'balance': 'balanced'}]
    """
    buckets = _buckets(attributes, thresholds).tolist()
    return [
        {key: ATTRIBUTE_WORDS[key][b][0] for key, b in zip(ATTRIBUTES, row, strict=True)}
        for row in buckets
    ]


_ARTICLE = re.compile(r"\ba (?=[aeiou8])")


def _join(words: Sequence[str], last: str) -> str:
    if len(words) == 1:
        return words[0]
    return ", ".join(words[:-1]) + f" {last} " + words[-1] if last else ", ".join(words)


def make_captions(
    labels: Tensor,
    attributes: dict[str, Tensor],
    thresholds: dict[str, tuple[float, float]],
    vocabulary: CaptionVocabulary,
    *,
    seed: int = 0,
) -> list[str]:
    """Generate one caption per image from its class and its measured attributes.

    Each caption names the class (the canonical name half of the time, else a training synonym),
    mentions a random non-empty subset of the attributes (each by one of its bucket's words) and
    uses one of ``vocabulary.train_templates``. Zero-shot templates and held-out synonyms are never
    used.

    Args:
        labels: int64 ``(N,)`` class indices into ``vocabulary.class_names``.
        attributes: :func:`measure_attributes` of the same ``N`` images.
        thresholds: ``(low, high)`` per attribute (:func:`attribute_thresholds` of the train set).
        vocabulary: The names and templates (:func:`caption_vocabulary`).
        seed: Seed of the random choices; the same inputs and seed give the same captions.

    Returns:
        ``N`` captions.

    Raises:
        ValueError: For labels out of range or of the wrong shape.

    Example:
        >>> vocab = caption_vocabulary("fashion-mnist-captions")
        >>> a = {"size": torch.tensor([0.05]), "tone": torch.tensor([0.1]),
        ...      "shape": torch.tensor([1.0]), "balance": torch.tensor([0.5])}
        >>> t = {k: (0.3, 0.6) for k in ATTRIBUTES}
        >>> caps = make_captions(torch.tensor([7]), a, t, vocab, seed=0)
        >>> any(w in caps[0] for w in ("small", "little", "faint", "pale"))
        True
    """
    seed = check_seed(seed)
    k = len(vocabulary.class_names)
    if not isinstance(labels, Tensor) or labels.dim() != 1 or labels.is_floating_point():
        raise ValueError(f"labels must be a 1-D integer tensor, got {labels!r}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= k):
        raise ValueError(
            f"labels must lie in 0..{k - 1}, got {int(labels.min())}..{int(labels.max())}"
        )
    buckets = _buckets(attributes, thresholds)
    n = int(labels.shape[0])
    if buckets.shape[0] != n:
        raise ValueError(f"attributes hold {buckets.shape[0]} images but labels {n}")
    rng = np.random.default_rng(seed)
    p = np.array([_MENTION[key] for key in ATTRIBUTES])
    mention = rng.random((n, len(ATTRIBUTES))) < p
    fallback = rng.integers(0, 2, n)  # size or tone when nothing was drawn
    mention[np.arange(n), fallback] |= ~mention.any(axis=1)
    use_canonical = rng.random(n) < 0.5
    syn_pick = rng.integers(0, 1 << 30, n)
    word_pick = rng.integers(0, 1 << 30, (n, len(ATTRIBUTES)))
    template_pick = rng.integers(0, len(vocabulary.train_templates), n)
    medium_pick = rng.integers(0, len(_TRAIN_MEDIA), n)
    captions: list[str] = []
    for i, (y, row) in enumerate(zip(labels.tolist(), buckets.tolist(), strict=True)):
        synonyms = vocabulary.train_synonyms[y]
        noun = (
            synonyms[0]
            if use_canonical[i] or len(synonyms) == 1
            else (synonyms[1 + syn_pick[i] % (len(synonyms) - 1)])
        )
        words = []
        for j, key in enumerate(ATTRIBUTES):
            if mention[i, j]:
                choices = ATTRIBUTE_WORDS[key][row[j]]
                words.append(choices[word_pick[i, j] % len(choices)])
        text = vocabulary.train_templates[template_pick[i]].format(
            adjs=_join(words, ""),
            adjs_and=_join(words, "and"),
            medium=_TRAIN_MEDIA[medium_pick[i]],
            noun=noun,
        )
        captions.append(_ARTICLE.sub("an ", text))
    return captions


def _caption_seed(seed: int, stream: int) -> int:
    """The seed of caption stream ``stream`` (0: train, 1: test, 2..: further train bag members)."""
    return (seed + stream * 0x9E3779B9) % (1 << 32)


def load_caption_dataset(
    name: str,
    *,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    captions_per_image: int = 1,
) -> PairedSplit:
    """Load a built-in image-caption set: images with GENERATED captions (see the module docstring).

    - ``"digits-captions"``: scikit-learn's bundled 8x8 digits (1,347 train / 450 test, the split
      of ``load_dataset("digits", seed=seed)``).
    - ``"fashion-mnist-captions"``: Fashion-MNIST's official 60,000 / 10,000 split (the IDX files:
      ``root``, ``$CONTRASTKIT_DATA_DIR`` or Debian's ``dataset-fashion-mnist``).

    The attribute buckets are the tertiles of the training images; train and test captions use
    the training templates with independent random streams derived from ``seed``.

    Args:
        name: ``"digits-captions"`` or ``"fashion-mnist-captions"`` (aliases
            ``"digits_captions"``, ``"fashion_mnist_captions"``, ``"fmnist-captions"``).
        seed: Seed of the digits split and of the caption choices, an int in ``[0, 2**32)``.
        root: Folder of the Fashion-MNIST files (ignored for digits).
        captions_per_image: Captions generated for each training image (>= 1): the first is ``b``,
            the others (independent draws of name, template and attribute words) are
            ``train.more_b``, the bags of candidate positives MIL-NCE trains with. Test images
            keep one caption.

    Returns:
        A :class:`PairedSplit` with images ``(N, 1, H, W)`` as ``a``, captions as ``b``, int64
        labels, the class names and the held-out zero-shot templates.

    Raises:
        ValueError: For an unknown name, a bad seed or ``captions_per_image`` < 1.
        DatasetNotFoundError: If the Fashion-MNIST files are missing (the message says where it
            looked and how to get them).

    Example:
        >>> split = load_caption_dataset("digits-captions", seed=0)
        >>> split.train.a.shape, split.train.labels.dtype
        (torch.Size([1347, 1, 8, 8]), torch.int64)
    """
    key = _canonical(name)
    seed = check_seed(seed)
    per_image = check_int(captions_per_image, "captions_per_image", minimum=1)
    vocab = _VOCABULARIES[key]
    base = load_dataset(_BASE_DATA[key], seed=seed, root=root if key != "digits-captions" else None)
    train_attr = measure_attributes(base.train.images)
    thresholds = attribute_thresholds(train_attr)
    test_attr = measure_attributes(base.test.images)
    # Independent streams for train and test captions; check_seed bounds seed below 2**32.
    train_caps = make_captions(base.train.labels, train_attr, thresholds, vocab, seed=seed)
    test_caps = make_captions(
        base.test.labels, test_attr, thresholds, vocab, seed=_caption_seed(seed, 1)
    )
    more = tuple(
        make_captions(base.train.labels, train_attr, thresholds, vocab, seed=_caption_seed(seed, j))
        for j in range(2, per_image + 1)
    )
    return PairedSplit(
        train=PairedDataset(base.train.images, train_caps, base.train.labels, key, more_b=more),
        test=PairedDataset(base.test.images, test_caps, base.test.labels, key),
        class_names=vocab.class_names,
        zero_shot_templates=vocab.zero_shot_templates,
    )
