"""Evaluation of a trained two-tower model: retrieval, zero-shot, probes, embeddings of a run.

- :func:`evaluate_two_tower`: what a two-tower run reports at its end and what ``contrastkit
  eval`` recomputes (retrieval both ways, zero-shot with the held-out templates, probes);
- :func:`embed_side`: one tower (with or without its projection) over a whole side, in batches;
- :func:`zero_shot_run`: classify a run's test images (or other images) with any class names
  (``contrastkit zeroshot``);
- :func:`two_tower_embeddings`: either tower's embeddings of a run's data, or of other images or
  texts (``contrastkit embed --tower``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from contrastkit._validation import check_choice, check_positive
from contrastkit.data import load_dataset
from contrastkit.data.captions import caption_datasets, caption_vocabulary
from contrastkit.data.paired import Modality, PairedDataset, PairedSplit
from contrastkit.eval.features import _check_int, _module_device
from contrastkit.eval.knn import knn_accuracy
from contrastkit.eval.linear import linear_probe
from contrastkit.eval.retrieval import (
    retrieval_metrics,
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_predict,
)
from contrastkit.models.two_tower import TwoTowerModel
from contrastkit.runs import WEIGHTS_FILE, FitConfig, load_two_tower_run, weights_metadata

__all__ = [
    "ZeroShotResult",
    "embed_side",
    "evaluate_two_tower",
    "retrieval_names",
    "two_tower_embeddings",
    "zero_shot_run",
]

# Weight decay of the linear probe when the training set is too small for a validation split (the
# value the image runs use, train.loop.SMALL_DATA_WEIGHT_DECAY).
_SMALL_DATA_WEIGHT_DECAY = 1e-4


@contextlib.contextmanager
def _eval_mode(module: nn.Module) -> Iterator[None]:
    modes = [(m, m.training) for m in module.modules()]
    try:
        module.eval()
        with torch.no_grad():
            yield
    finally:
        for m, mode in modes:
            m.training = mode


def _check_model(model: object) -> TwoTowerModel:
    if not isinstance(model, TwoTowerModel):
        raise TypeError(f"model must be a TwoTowerModel, got {type(model).__name__}")
    return model


def embed_side(
    model: TwoTowerModel,
    side: str,
    data: Modality,
    *,
    projected: bool = True,
    normalize: bool = False,
    batch_size: int = 512,
) -> Tensor:
    """Run one tower over all samples of one side, in batches, in eval mode and without grad.

    Args:
        model: The trained :class:`~contrastkit.models.two_tower.TwoTowerModel`.
        side: ``"a"`` or ``"b"``.
        data: That side's samples: a tensor ``(N, ...)`` or ``N`` strings (a text tower).
        projected: The shared-space embedding (True) or the tower's features before the
            projection (False; what linear probes use).
        normalize: L2-normalise the rows (only with ``projected``).
        batch_size: Samples per forward pass.

    Returns:
        float32 CPU tensor ``(N, D)``.

    Raises:
        TypeError: For a model of another type or texts given to a non-text tower.
        ValueError: For an unknown side, empty data or a non-finite output.

    Example:
        >>> from contrastkit.models import build_tower
        >>> model = TwoTowerModel(build_tower("vector", shape=(3,)), build_tower("vector", shape=(5,)),
        ...                       dim=4, kinds=("vector", "vector"))
        >>> embed_side(model, "b", torch.randn(10, 5), batch_size=4).shape
        torch.Size([10, 4])
    """
    model = _check_model(model)
    side = check_choice(side, "side", ("a", "b"))
    batch_size = _check_int(batch_size, "batch_size")
    n = len(data) if isinstance(data, list) else int(data.shape[0])
    if n < 1:
        raise ValueError(f"side {side!r} holds no samples")
    device = _module_device(model)
    out: list[Tensor] = []
    with _eval_mode(model):
        for start in range(0, n, batch_size):
            chunk = data[start : start + batch_size]
            batch: Tensor | list[str] = chunk.to(device) if isinstance(chunk, Tensor) else chunk
            if projected:
                encode = model.encode_a if side == "a" else model.encode_b
                z = encode(batch, normalize=normalize)
            else:
                z = model.features(side, batch)
            out.append(z.detach().to("cpu", torch.float32).reshape(z.shape[0], -1))
    emb = torch.cat(out)
    if not bool(torch.isfinite(emb).all()):
        raise ValueError(f"the side-{side} tower produced NaN or inf embeddings")
    return emb


def retrieval_names(model: TwoTowerModel) -> tuple[str, str]:
    """The words for the two sides in retrieval metric names: the kinds, or ``("a", "b")``.

    Example:
        >>> from contrastkit.models import build_tower
        >>> m = TwoTowerModel(build_tower("series", shape=(3, 20)), build_tower("series", shape=(3, 20)),
        ...                   kinds=("series", "series"))
        >>> retrieval_names(m)
        ('a', 'b')
    """
    kinds = tuple(_check_model(model).kinds)
    return ("a", "b") if kinds[0] == kinds[1] else (str(kinds[0]), str(kinds[1]))


def _probe(
    model: TwoTowerModel,
    side: str,
    train: PairedDataset,
    test: PairedDataset,
    *,
    batch_size: int,
    knn_k: int,
    knn_temperature: float,
) -> dict[str, float]:
    assert train.labels is not None and test.labels is not None
    data_tr = train.a if side == "a" else train.b
    data_te = test.a if side == "a" else test.b
    f_tr = embed_side(model, side, data_tr, projected=False, batch_size=batch_size)
    f_te = embed_side(model, side, data_te, projected=False, batch_size=batch_size)
    k_used = min(knn_k, len(train))
    knn = knn_accuracy(f_tr, train.labels, f_te, test.labels, k=k_used, temperature=knn_temperature)
    probe = linear_probe(
        f_tr, train.labels, f_te, test.labels, fallback_weight_decay=_SMALL_DATA_WEIGHT_DECAY
    )
    return {
        "knn_acc": float(knn),
        "knn_k": k_used,
        "linear_acc": float(probe.accuracy),
        "feature_dim": int(f_tr.shape[1]),
    }


def evaluate_two_tower(
    model: TwoTowerModel,
    split: PairedSplit,
    *,
    templates: Sequence[str] | None = None,
    topk: Sequence[int] = (1, 5),
    probe: bool = True,
    knn_k: int = 20,
    knn_temperature: float = 0.07,
    batch_size: int = 512,
) -> dict[str, float]:
    """Final metrics of a two-tower model on a paired split.

    - Retrieval on the held-out pairs (``split.test``): :func:`retrieval_metrics` in both
      directions, named after the sides' kinds (``image_to_text_R@1``, ...; ``a_to_b_R@1`` for two
      towers of the same kind).
    - Zero-shot classification (when one side is text, the other is not, the test set has labels
      and the split has class names): the class embeddings come from the text tower over
      ``templates`` (default: ``split.zero_shot_templates``, the ones kept out of training),
      ensembled as :func:`zero_shot_classifier`; ``zero_shot_top1``, ``zero_shot_top5`` (each ``k``
      at most the number of classes).
    - Probes of each non-text tower's features before the projection (when both sets have
      labels), as for image runs: ``knn_acc``, ``knn_k``, ``linear_acc``, ``feature_dim`` for the
      first non-text side, the same with a ``_b`` suffix for side B when both are non-text.

    Args:
        model: The trained model.
        split: The paired train/test split it was trained on.
        templates: Zero-shot prompt templates with ``{}`` (None: ``split.zero_shot_templates``).
        topk: Zero-shot cut-offs (those above the number of classes are left out).
        probe: Run the kNN and linear probes (the slow part on large sets).
        knn_k: Neighbours of the kNN probe (fewer if the training set is smaller).
        knn_temperature: Temperature of the kNN vote.
        batch_size: Samples per forward pass.

    Returns:
        Metric name -> value.

    Raises:
        TypeError: For a model or split of the wrong type.
        ValueError: For bad arguments or non-finite embeddings.

    Example:
        >>> from contrastkit.data.paired import PairedDataset, PairedSplit
        >>> from contrastkit.models import build_tower
        >>> model = TwoTowerModel(build_tower("vector", shape=(3,)), build_tower("vector", shape=(5,)),
        ...                       dim=4, kinds=("vector", "vector"))
        >>> y = torch.arange(40) % 2
        >>> part = PairedDataset(torch.randn(40, 3), torch.randn(40, 5), y)
        >>> m = evaluate_two_tower(model, PairedSplit(part, part))
        >>> sorted(k for k in m if k.startswith("a_to_b"))[:2], "linear_acc_b" in m
        (['a_to_b_R@1', 'a_to_b_R@10'], True)
    """
    model = _check_model(model)
    if not isinstance(split, PairedSplit):
        raise TypeError(f"split must be a PairedSplit, got {type(split).__name__}")
    knn_k = _check_int(knn_k, "knn_k")
    knn_temperature = check_positive(knn_temperature, "knn_temperature")
    batch_size = _check_int(batch_size, "batch_size")
    train, test = split.train, split.test
    metrics: dict[str, float] = {}
    emb_a = embed_side(model, "a", test.a, batch_size=batch_size)
    emb_b = embed_side(model, "b", test.b, batch_size=batch_size)
    metrics.update(retrieval_metrics(emb_a, emb_b, names=retrieval_names(model)))

    kinds = tuple(model.kinds)
    text_sides = [s for s, k in zip(("a", "b"), kinds, strict=True) if k == "text"]
    other_sides = [s for s in ("a", "b") if s not in text_sides]
    chosen = list(split.zero_shot_templates) if templates is None else list(templates)
    if (
        len(text_sides) == 1
        and other_sides
        and test.labels is not None
        and split.class_names
        and chosen
    ):
        text_side, other = text_sides[0], other_sides[0]
        encode = model.encode_a if text_side == "a" else model.encode_b

        def encode_text(texts: list[str]) -> Tensor:
            with _eval_mode(model):
                return encode(texts).detach().to("cpu", torch.float32)

        classifier = zero_shot_classifier(encode_text, list(split.class_names), chosen)
        n_cls = int(classifier.shape[0])
        ks = [k for k in topk if isinstance(k, int) and 1 <= k <= n_cls] or [1]
        metrics.update(
            zero_shot_accuracy(emb_a if other == "a" else emb_b, test.labels, classifier, topk=ks)
        )
    if probe and train.labels is not None and test.labels is not None:
        for i, side in enumerate(other_sides):
            result = _probe(
                model,
                side,
                train,
                test,
                batch_size=batch_size,
                knn_k=knn_k,
                knn_temperature=knn_temperature,
            )
            suffix = "" if i == 0 else f"_{side}"
            metrics.update({f"{k}{suffix}": v for k, v in result.items()})
    return metrics


# --------------------------------------------------------------------------------------------------
# whole runs: zero-shot with user-given class names, embeddings of either tower

_SPLITS = ("train", "test")


def _data_class_names(name: str) -> tuple[str, ...] | None:
    """The class names of a dataset by its name (the built-in sets only), or None."""
    key = name.strip().lower().replace("_", "-")
    for caption_set in caption_datasets():
        base = caption_set.removesuffix("-captions")
        if key in (caption_set, base) or (base == "fashion-mnist" and key == "fmnist"):
            return caption_vocabulary(caption_set).class_names
    return None


def _text_side(model: TwoTowerModel) -> tuple[str, str]:
    """``(text side, other side)`` of a model with exactly one text tower."""
    kinds = tuple(model.kinds)
    if kinds.count("text") != 1:
        raise ValueError(
            f"zero-shot classification needs a run with one text tower and one other; this run's "
            f"towers are {kinds}"
        )
    text = "a" if kinds[0] == "text" else "b"
    return text, "b" if text == "a" else "a"


def _check_shape(run_dir: Path, side: str, samples: Tensor, what: str) -> None:
    header = weights_metadata(run_dir / WEIGHTS_FILE)
    want = header.get(f"shape_{side}", "")
    got = ",".join(str(d) for d in samples.shape[1:])
    if want and want != got:
        raise ValueError(
            f"{what} have sample shape ({got}) but the run's side-{side} tower was trained on "
            f"({want})"
        )


def _default_templates(config: FitConfig) -> tuple[str, ...]:
    if config.pairs is None and _data_class_names(config.data) is not None:
        return tuple(caption_vocabulary(config.data).zero_shot_templates)
    return ("{}",)


@dataclass(frozen=True, eq=False)
class ZeroShotResult:
    """What :func:`zero_shot_run` found.

    Attributes:
        class_names: The class names classified into, in the given order.
        templates: The prompt templates used.
        indices: int64 ``(N, k)``: the ``k`` best classes of each sample, best first.
        scores: float32 ``(N, k)``: their cosine similarities.
        targets: int64 ``(N,)`` index into ``class_names`` of each sample's true class, when the
            data have labels with known names that all appear among ``class_names``
            (case-insensitive); else None.
        source: What was classified (e.g. ``"fashion-mnist-captions test"``).
    """

    class_names: tuple[str, ...]
    templates: tuple[str, ...]
    indices: Tensor
    scores: Tensor
    targets: Tensor | None
    source: str

    @property
    def predictions(self) -> Tensor:
        """``(N,)`` the best class of each sample."""
        return self.indices[:, 0]

    @property
    def accuracy(self) -> float | None:
        """Top-1 accuracy against ``targets`` (None without them)."""
        if self.targets is None:
            return None
        return float((self.predictions == self.targets).double().mean())


def zero_shot_run(
    run_dir: str | os.PathLike[str],
    class_names: Sequence[str],
    *,
    templates: Sequence[str] | None = None,
    data: str | None = None,
    split: str = "test",
    data_root: str | None = None,
    k: int = 1,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> ZeroShotResult:
    """Classify a two-tower run's test images (or other images) into user-given classes.

    The class embeddings are :func:`zero_shot_classifier` over ``templates``; each image goes to
    the most cosine-similar class. When the data's own class names are known (the built-in sets:
    a caption run's data, ``digits``, ``fashion-mnist``) and all appear among ``class_names``, the
    result carries the true class of every image, and so an accuracy.

    Args:
        run_dir: A two-tower run directory with one text tower.
        class_names: The classes, e.g. ``["sneaker", "bag", "coat"]``.
        templates: Prompt templates with ``{}``; None: the held-out zero-shot templates of a
            built-in caption run, else ``["{}"]``.
        data: A dataset for :func:`contrastkit.data.load_dataset` (name, ``.npz`` or image
            folder) whose images to classify; None: the run's own paired data (its non-text side).
        split: ``"train"`` or ``"test"`` part of the data.
        data_root: Folder of the dataset files (None: the run's ``data_root``).
        k: Classes kept per sample (at most ``len(class_names)``).
        batch_size: Samples per forward pass.
        device: Where to run the model (None: the CPU).

    Returns:
        A :class:`ZeroShotResult`.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory or the data are missing.
        ValueError: For a run without exactly one text tower, images of another shape than the
            tower's, or bad names/templates.
    """
    split = check_choice(split, "split", _SPLITS)
    k = _check_int(k, "k")
    run = Path(run_dir)
    config, model = load_two_tower_run(run)
    if device is not None:
        model = model.to(device)
    text_side, other = _text_side(model)
    names = [str(n).strip() for n in class_names] if not isinstance(class_names, str) else []
    if not names:
        raise ValueError("class_names must be a non-empty list of names, e.g. ['cat', 'dog']")
    chosen = tuple(templates) if templates is not None else _default_templates(config)
    root = data_root if data_root is not None else config.data_root
    labels: Tensor | None
    if data is None:
        pairs = config.load_pairs(root=root)
        part = getattr(pairs, split)
        samples: Modality = part.a if other == "a" else part.b
        labels, known = part.labels, tuple(pairs.class_names) or None
        source = f"{config.pairs or config.data} {split}"
    else:
        if model.kinds[0 if other == "a" else 1] != "image":
            raise ValueError(
                f"data applies to image towers; this run's non-text tower is a "
                f"{model.kinds[0 if other == 'a' else 1]} tower"
            )
        images = getattr(load_dataset(data, root=root, seed=config.seed), split)
        samples, labels, known = images.images, images.labels, _data_class_names(data)
        _check_shape(run, other, images.images, f"the images of {data!r}")
        source = f"{data} {split}"
    encode = model.encode_a if text_side == "a" else model.encode_b

    def encode_text(texts: list[str]) -> Tensor:
        with _eval_mode(model):
            return encode(texts).detach().to("cpu", torch.float32)

    classifier = zero_shot_classifier(encode_text, names, chosen)
    emb = embed_side(model, other, samples, batch_size=batch_size)
    indices, scores = zero_shot_predict(emb, classifier, k=min(k, len(names)))
    targets = None
    if labels is not None and known is not None:
        lookup = {n.lower(): i for i, n in enumerate(names)}
        mapped = [lookup.get(n.lower(), -1) for n in known]
        used = torch.unique(labels).tolist()
        if all(0 <= y < len(mapped) and mapped[y] >= 0 for y in used):
            targets = torch.tensor(mapped, dtype=torch.int64)[labels]
    return ZeroShotResult(tuple(names), chosen, indices, scores, targets, source)


def _read_texts(path: str) -> list[str]:
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no text file at {file} (one text per line)")
    texts = [line.strip() for line in file.read_text(encoding="utf-8").splitlines()]
    texts = [t for t in texts if t]
    if not texts:
        raise ValueError(f"{file} holds no text (one text per line expected)")
    return texts


def two_tower_embeddings(
    run_dir: str | os.PathLike[str],
    *,
    tower: str | None = None,
    data: str | None = None,
    split: str = "test",
    layer: str = "z",
    data_root: str | None = None,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> tuple[Tensor, Tensor | None, Tensor | None, dict[str, str]]:
    """One tower's embeddings of a two-tower run's data (or of other images or texts).

    Args:
        run_dir: A two-tower run directory.
        tower: ``"image"``, ``"text"`` (or another kind: ``"series"``, ``"vector"``), or the side
            ``"a"`` / ``"b"``; None: side A.
        data: Other inputs: for an image tower a dataset for
            :func:`contrastkit.data.load_dataset`, for a text tower a UTF-8 file with one text per
            line; None: the run's own paired data.
        split: ``"train"``, ``"test"`` or ``"all"`` (train rows, then test rows).
        layer: ``"z"``: the shared-space embedding (the projection, not normalised); ``"h"``: the
            tower's features before the projection.
        data_root: Folder of the dataset files (None: the run's ``data_root``).
        batch_size: Samples per forward pass.
        device: Where to run the model (None: the CPU).

    Returns:
        ``(features (N, D), labels (N,) or None, split marks (N,) or None, metadata)``; marks
        (0 train, 1 test) only for ``split="all"``.

    Raises:
        ValueError: For an unknown tower, data that do not fit it, or bad arguments.
        FileNotFoundError: If the run or the data are missing.
    """
    split = check_choice(split, "split", ("train", "test", "all"))
    layer = check_choice(layer, "layer", ("h", "z"))
    run = Path(run_dir)
    config, model = load_two_tower_run(run)
    if device is not None:
        model = model.to(device)
    if tower is None or tower in ("a", "b"):
        side = tower or "a"
    else:
        side = model.side_of(str(tower))
    kind = model.kinds[0 if side == "a" else 1]
    root = data_root if data_root is not None else config.data_root
    parts: list[tuple[Modality, Tensor | None]] = []
    if data is None:
        pairs = config.load_pairs(root=root)
        for name in ("train", "test") if split == "all" else (split,):
            part = getattr(pairs, name)
            parts.append((part.a if side == "a" else part.b, part.labels))
    elif kind == "text":
        if split == "all":
            raise ValueError("a text file has no train/test parts; use split 'train' or 'test'")
        parts.append((_read_texts(data), None))
    elif kind == "image":
        loaded = load_dataset(data, root=root, seed=config.seed)
        for name in ("train", "test") if split == "all" else (split,):
            images = getattr(loaded, name)
            _check_shape(run, side, images.images, f"the images of {data!r}")
            parts.append((images.images, images.labels))
    else:
        raise ValueError(f"data applies to image and text towers; side {side} is a {kind} tower")
    feats = [
        embed_side(model, side, x, projected=layer == "z", batch_size=batch_size) for x, _ in parts
    ]
    labels = None
    if all(y is not None for _, y in parts):
        labels = torch.cat([y for _, y in parts if y is not None])
    marks = None
    if split == "all":
        marks = torch.cat(
            [torch.full((len(f),), i, dtype=torch.int64) for i, f in enumerate(feats)]
        )
    metadata = {
        "run_dir": str(run),
        "data": str(data if data is not None else (config.pairs or config.data)),
        "split": split,
        "layer": layer,
        "tower": f"{side} ({kind})",
        "loss": str(config.loss),
    }
    return torch.cat(feats), labels, marks, metadata
