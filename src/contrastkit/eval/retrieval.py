"""Cross-modal retrieval and zero-shot classification over the embeddings of two towers.

- :func:`retrieval_metrics`: image->text and text->image recall@1/5/10, mean and median rank of
  paired embeddings (row ``i`` of one side is the partner of row ``i`` of the other), with the
  metric names of open_clip's ``get_clip_metrics``.
- :func:`zero_shot_classifier`: one text embedding per class from prompt templates, ensembled the
  open_clip way (normalise each template's embedding, average, renormalise).
- :func:`zero_shot_predict`, :func:`zero_shot_accuracy`: classify image embeddings by cosine
  similarity to those class embeddings.

Similarities are cosine (both sides are L2-normalised). Everything runs without grad and in row
blocks of ``chunk_size``, so the peak memory is ``chunk_size * N`` similarities, never ``N * N``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_int
from contrastkit.eval.features import _as_features, _as_labels, _check_same_dim

__all__ = [
    "RECALL_KS",
    "retrieval_metrics",
    "zero_shot_accuracy",
    "zero_shot_classifier",
    "zero_shot_predict",
]

#: The recall cut-offs reported by :func:`retrieval_metrics` (open_clip's).
RECALL_KS: tuple[int, ...] = (1, 5, 10)


def _ranks(queries: Tensor, keys: Tensor, chunk_size: int) -> Tensor:
    """1-based rank of key ``i`` among all keys for query ``i`` (ties count against the pair)."""
    n = queries.shape[0]
    ranks = torch.empty(n, dtype=torch.int64)
    for start in range(0, n, chunk_size):
        q = queries[start : start + chunk_size]
        sims = q @ keys.T  # (chunk, N)
        rows = torch.arange(q.shape[0], device=sims.device)
        positive = sims[rows, rows + start].unsqueeze(1)
        # Every other key scoring at least as high as the partner is ranked before it.
        ahead = (sims >= positive).sum(dim=1) - 1
        ranks[start : start + q.shape[0]] = ahead.cpu() + 1
    return ranks


@torch.no_grad()
def retrieval_metrics(
    image_emb: Tensor | np.ndarray,
    text_emb: Tensor | np.ndarray,
    *,
    chunk_size: int = 1024,
    names: tuple[str, str] = ("image", "text"),
) -> dict[str, float]:
    """Recall@1/5/10, mean and median rank of paired embeddings, in both directions.

    Row ``i`` of ``image_emb`` and row ``i`` of ``text_emb`` form a pair. For image ``i`` the
    rank of text ``i`` is ``1 + #{j != i : cos(img_i, txt_j) >= cos(img_i, txt_i)}`` (ties count
    against the pair, so a collapsed model gets rank ``N``, not 1), likewise for text -> image.
    ``R@k`` is the share of queries whose partner has rank ``<= k``; the median rank is open_clip's
    ``floor(median(rank - 1)) + 1``. Names follow open_clip's ``get_clip_metrics``. Queries are
    processed in blocks of ``chunk_size`` rows, so 10,000 x 10,000 pairs need ``chunk_size x
    10,000`` similarities at a time.

    Args:
        image_emb: ``(N, D)`` embeddings of the first modality (need not be normalised).
        text_emb: ``(N, D)`` embeddings of the second modality, row ``i`` paired with image ``i``.
        chunk_size: Query rows per block (>= 1); it does not change the result.
        names: What to call the two sides in the metric names (e.g. ``("a", "b")`` for two
            sensors: ``a_to_b_R@1``, ...).

    Returns:
        ``image_to_text_R@1``, ``image_to_text_R@5``, ``image_to_text_R@10``,
        ``image_to_text_mean_rank``, ``image_to_text_median_rank`` and the same five for
        ``text_to_image``, as floats (with ``names``' words in place of image and text).

    Raises:
        TypeError: For non-numeric input.
        ValueError: For shapes other than ``(N, D)``, different ``N`` or ``D``, NaN/inf, or an
            all-zero row (it has no direction).

    Example:
        >>> img = torch.eye(3)
        >>> txt = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.5, 1.0], [0.0, 1.0, 0.5]])
        >>> m = retrieval_metrics(img, txt)  # text 1 is closer to image 2, text 2 to image 1
        >>> round(m["image_to_text_R@1"], 3), round(m["image_to_text_mean_rank"], 3)
        (0.333, 1.667)
        >>> m["text_to_image_R@5"], m["text_to_image_median_rank"]
        (1.0, 2.0)
    """
    img = _as_features(image_emb, "image_emb")
    txt = _as_features(text_emb, "text_emb")
    if img.shape[0] != txt.shape[0]:
        raise ValueError(
            "image_emb and text_emb must hold the same number of rows (row i of each is a pair); "
            f"got {img.shape[0]} and {txt.shape[0]}"
        )
    _check_same_dim(img, txt, "image_emb", "text_emb")
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    if (
        not isinstance(names, tuple | list)
        or len(names) != 2
        or not all(isinstance(n, str) and n.strip() for n in names)
        or names[0] == names[1]
    ):
        raise ValueError(f"names must be two different non-empty strings, got {names!r}")
    first, second = names
    for t, name in ((img, "image_emb"), (txt, "text_emb")):
        zero = (t.abs().sum(dim=1) == 0).nonzero()
        if zero.numel():
            raise ValueError(
                f"{name} has {zero.numel()} all-zero row(s), first at index {int(zero[0, 0])}; "
                "an all-zero embedding has no direction for cosine similarity"
            )
    img, txt = F.normalize(img, dim=1), F.normalize(txt.to(img.device), dim=1)
    metrics: dict[str, float] = {}
    directions = ((f"{first}_to_{second}", (img, txt)), (f"{second}_to_{first}", (txt, img)))
    for direction, (q, k) in directions:
        ranks = _ranks(q, k, chunk_size).to(torch.float64)
        for cut in RECALL_KS:
            metrics[f"{direction}_R@{cut}"] = float((ranks <= cut).to(torch.float64).mean())
        metrics[f"{direction}_mean_rank"] = float(ranks.mean())
        metrics[f"{direction}_median_rank"] = float(np.floor(np.median((ranks - 1).numpy())) + 1)
    return metrics


def _check_names(values: object, name: str) -> list[str]:
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise TypeError(
            f"{name} must be a sequence of str (not one str), got {type(values).__name__}"
        )
    out = list(values)
    if not out:
        raise ValueError(f"{name} must not be empty")
    for i, v in enumerate(out):
        if not isinstance(v, str):
            raise TypeError(f"{name}[{i}] must be a str, got {type(v).__name__}")
        if not v.strip():
            raise ValueError(f"{name}[{i}] is empty")
    return out


@torch.no_grad()
def zero_shot_classifier(
    encode_text: Callable[[list[str]], Tensor],
    class_names: Sequence[str],
    templates: Sequence[str],
) -> Tensor:
    """Build zero-shot class embeddings from prompt templates (open_clip's ensembling).

    For each class ``c`` every template has its ``{}`` replaced by ``c``; ``encode_text`` embeds
    those prompts (one call per class); each embedding is L2-normalised, the class's embeddings
    are averaged and the mean is normalised again.

    Args:
        encode_text: Maps a list of ``T`` strings to a float tensor ``(T, D)``.
        class_names: ``K`` distinct, non-empty class names.
        templates: Non-empty prompt templates, each with ``{}`` where the class name goes
            (e.g. ``"a photo of a {}."``).

    Returns:
        float32 tensor ``(K, D)`` with unit rows, on the device ``encode_text`` returned.

    Raises:
        TypeError: If the arguments or the encoder's output have the wrong type.
        ValueError: For empty or duplicate names, a template without ``{}``, or an encoder output
            of the wrong shape, with NaN/inf or with an all-zero row.

    Example:
        >>> vocab = {"cat": [1.0, 0.0], "dog": [0.0, 1.0], "photo": [0.2, 0.2]}
        >>> def encode(texts):
        ...     return torch.tensor([[sum(vocab.get(w, [0.0, 0.0])[d] for w in t.split())
        ...                           for d in range(2)] for t in texts])
        >>> w = zero_shot_classifier(encode, ["cat", "dog"], ["a photo of a {}", "{}"])
        >>> w.shape, bool(w[0, 0] > w[0, 1])
        (torch.Size([2, 2]), True)
    """
    if not callable(encode_text):
        raise TypeError(f"encode_text must be callable, got {type(encode_text).__name__}")
    names = _check_names(class_names, "class_names")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"class_names must be distinct; repeated: {', '.join(map(repr, dup))}")
    temps = _check_names(templates, "templates")
    for i, t in enumerate(temps):
        if "{}" not in t:
            raise ValueError(f"templates[{i}] = {t!r} has no '{{}}' where the class name goes")
    rows: list[Tensor] = []
    dim: int | None = None
    for name in names:
        prompts = [t.replace("{}", name) for t in temps]
        out = encode_text(prompts)
        if not isinstance(out, Tensor):
            raise TypeError(f"encode_text must return a torch.Tensor, got {type(out).__name__}")
        emb = _as_features(out, f"encode_text output for class {name!r}")
        if emb.shape[0] != len(prompts) or (dim is not None and emb.shape[1] != dim):
            want = f"({len(prompts)}, {dim if dim is not None else 'D'})"
            raise ValueError(
                f"encode_text returned shape {tuple(emb.shape)} for {len(prompts)} prompts of "
                f"class {name!r}; expected {want}"
            )
        if bool((emb.abs().sum(dim=1) == 0).any()):
            raise ValueError(f"encode_text returned an all-zero embedding for class {name!r}")
        dim = int(emb.shape[1])
        rows.append(F.normalize(F.normalize(emb, dim=1).mean(dim=0), dim=0))
    return torch.stack(rows)


def _check_classifier(classifier: object, image: Tensor) -> Tensor:
    w = _as_features(classifier, "classifier")
    _check_same_dim(image, w, "image_emb", "classifier")
    if bool((w.abs().sum(dim=1) == 0).any()):
        raise ValueError("classifier has an all-zero row; every class needs a direction")
    return F.normalize(w.to(image.device), dim=1)


@torch.no_grad()
def zero_shot_predict(
    image_emb: Tensor | np.ndarray,
    classifier: Tensor | np.ndarray,
    *,
    k: int = 1,
    chunk_size: int = 4096,
) -> tuple[Tensor, Tensor]:
    """Return the ``k`` most cosine-similar classes of each image, best first.

    Args:
        image_emb: ``(N, D)`` image embeddings.
        classifier: ``(K, D)`` class embeddings (:func:`zero_shot_classifier`).
        k: Classes per image, ``1 <= k <= K``.
        chunk_size: Images per block (>= 1).

    Returns:
        ``(indices, scores)``: int64 ``(N, k)`` class indices and float32 ``(N, k)`` cosine
        similarities, on the CPU.

    Raises:
        TypeError: For non-numeric input.
        ValueError: For bad shapes, NaN/inf, or ``k`` out of range.

    Example:
        >>> idx, score = zero_shot_predict(torch.tensor([[0.0, 2.0]]), torch.eye(2))
        >>> idx.tolist(), score.tolist()
        ([[1]], [[1.0]])
    """
    img = _as_features(image_emb, "image_emb")
    w = _check_classifier(classifier, img)
    k = check_int(k, "k", minimum=1, maximum=int(w.shape[0]))
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    img = F.normalize(img, dim=1)
    idx, val = [], []
    for start in range(0, img.shape[0], chunk_size):
        s, i = (img[start : start + chunk_size] @ w.T).topk(k, dim=1)
        idx.append(i.cpu())
        val.append(s.cpu())
    return torch.cat(idx), torch.cat(val)


@torch.no_grad()
def zero_shot_accuracy(
    image_emb: Tensor | np.ndarray,
    labels: Tensor | np.ndarray,
    classifier: Tensor | np.ndarray,
    *,
    topk: Sequence[int] = (1, 5),
) -> dict[str, float]:
    """Top-k accuracy of zero-shot classification by cosine similarity to class embeddings.

    Args:
        image_emb: ``(N, D)`` image embeddings.
        labels: ``(N,)`` integer labels in ``0..K-1`` (indices into the classifier's rows).
        classifier: ``(K, D)`` class embeddings (:func:`zero_shot_classifier`).
        topk: Cut-offs, each in ``1..K``.

    Returns:
        ``{"zero_shot_top{k}": accuracy}`` for each ``k``, as floats in ``[0, 1]``.

    Raises:
        TypeError: For non-numeric input or non-integer labels.
        ValueError: For bad shapes, NaN/inf, labels out of range, or a cut-off out of range.

    Example:
        >>> emb = torch.tensor([[1.0, 0.1], [0.2, 1.0], [1.0, 0.0]])
        >>> zero_shot_accuracy(emb, torch.tensor([0, 1, 1]), torch.eye(2), topk=(1, 2))
        {'zero_shot_top1': 0.6666666666666666, 'zero_shot_top2': 1.0}
    """
    img = _as_features(image_emb, "image_emb")
    y = _as_labels(labels, img.shape[0], "labels")
    w = _check_classifier(classifier, img)
    n_cls = int(w.shape[0])
    if isinstance(topk, int | str) or not isinstance(topk, Sequence) or not topk:
        raise TypeError(f"topk must be a non-empty sequence of ints, got {topk!r}")
    ks = [check_int(k, "topk entry", minimum=1, maximum=n_cls) for k in topk]
    if int(y.min()) < 0 or int(y.max()) >= n_cls:
        raise ValueError(
            f"labels must lie in 0..{n_cls - 1} (one row of classifier per class); got "
            f"{int(y.min())}..{int(y.max())}"
        )
    idx, _ = zero_shot_predict(img, w, k=max(ks))
    hit = idx == y.unsqueeze(1)
    return {f"zero_shot_top{k}": float(hit[:, :k].any(dim=1).double().mean()) for k in ks}
