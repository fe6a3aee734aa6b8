"""The report of a two-tower run (``contrastkit report`` on an image-text or two-sensor run).

:func:`write_two_tower_report` writes into ``RUN_DIR/report/``:

- ``loss.png``: the training loss per step and per epoch;
- ``recall.png``: recall@k for k = 1..50 in both directions on the held-out pairs (every run);
- ``retrieval.png``: a retrieval example grid (image-text runs): query test images, each with the
  captions of its five nearest test captions, the true one marked;
- ``text_to_image.png``: query test captions, each with its five nearest test images, the true one
  framed (image-text runs);
- ``zero_shot.png``: per-class zero-shot accuracy with the held-out templates (runs with class
  names: the built-in caption sets);
- ``metrics.png``, ``summary.json`` and ``report.html`` (every image embedded), as the image
  report (:mod:`contrastkit.eval.report`).

It is called by :func:`contrastkit.eval.report.write_report` for two-tower runs; plots need
matplotlib (the ``plot`` extra).
"""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit.eval.report import (
    REPORT_DIR,
    REPORT_FILE,
    _format_value,
    _html,
    _image_for_display,
    _json_safe,
    _note_text,
    _Page,
    _plot_loss,
    _plot_metrics,
    _Plotter,
    _read_jsonl,
)
from contrastkit.eval.retrieval import zero_shot_classifier, zero_shot_predict
from contrastkit.eval.two_tower import _eval_mode, embed_side, evaluate_two_tower, retrieval_names
from contrastkit.runs import EPOCH_LOG, METRICS_FILE, STEP_LOG, load_two_tower_run, read_json

__all__ = ["write_two_tower_report"]

#: Query rows of the retrieval grids and neighbours shown per query.
QUERIES = 6
NEIGHBOURS = 5

_DESCRIPTIONS = {
    "zero_shot_top1": "zero-shot top-1 accuracy on the test set (held-out prompt templates)",
    "zero_shot_top5": "zero-shot top-5 accuracy",
    "knn_acc": "kNN accuracy of the non-text tower's features (test against train)",
    "linear_acc": "linear-probe accuracy of the non-text tower's features",
    "final_loss": "mean training loss of the last epoch",
    "logit_scale": "the model's logit scale (1 / temperature)",
}


def _describe(name: str) -> str:
    if name in _DESCRIPTIONS:
        return _DESCRIPTIONS[name]
    for direction in ("_to_",):
        if direction in name and ("R@" in name or "rank" in name):
            src, rest = name.split(direction, 1)
            dst, metric = rest.split("_", 1)
            what = (
                f"share of {src} queries whose partner {dst} is in the top {metric[2:]}"
                if metric.startswith("R@")
                else f"{metric.replace('_', ' ')} of the partner {dst} among all test {dst}s"
            )
            return what + " (held-out pairs)"
    return ""


def _rows(values: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    first = [k for k in values if k.startswith("zero_shot")]
    first += [k for k in values if "_to_" in k]
    first += [k for k in ("knn_acc", "linear_acc", "final_loss", "logit_scale") if k in values]
    rest = sorted(
        k
        for k in values
        if k not in first and values[k] is not None and not isinstance(values[k], list | dict)
    )
    return [(k, _format_value(values[k]), _describe(k)) for k in first + rest]


def _recall_curves(q: Tensor, k: Tensor, chunk: int = 1024) -> np.ndarray:
    """1-based rank of each query's partner (ties against it), as in ``retrieval_metrics``."""
    ranks = []
    for start in range(0, q.shape[0], chunk):
        sims = q[start : start + chunk] @ k.T
        rows = torch.arange(sims.shape[0])
        pos = sims[rows, rows + start].unsqueeze(1)
        ranks.append((sims >= pos).sum(dim=1))
    return torch.cat(ranks).numpy()


def _plot_recall(p: _Plotter, ranks: Mapping[str, np.ndarray]) -> Any:
    fig = p.figure(6.4, 3.6)
    ax = fig.add_subplot()
    n = max(len(r) for r in ranks.values())
    ks = np.arange(1, min(50, n) + 1)
    for name, r in ranks.items():
        ax.plot(ks, [(r <= k).mean() for k in ks], "-", lw=1.6, label=name.replace("_", " "))
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"Recall@k on the {n:,} held-out pairs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _wrap(text: str, width: int = 46) -> str:
    return "\n".join(textwrap.wrap(text, width)) or text


def _plot_image_to_text(
    p: _Plotter, images: Tensor, captions: list[str], img: Tensor, txt: Tensor, picks: Tensor
) -> Any:
    fig = p.figure(9.0, 1.5 * len(picks) + 0.5)
    grid = fig.add_gridspec(len(picks), 2, width_ratios=[1, 5])
    for row, i in enumerate(picks.tolist()):
        ax = fig.add_subplot(grid[row, 0])
        pic, cmap = _image_for_display(images[i])
        ax.imshow(pic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"test image {i}", fontsize=7)
        sims = txt @ img[i]
        top = sims.topk(min(NEIGHBOURS, len(captions))).indices.tolist()
        tx = fig.add_subplot(grid[row, 1])
        tx.axis("off")
        lines = []
        for rank, j in enumerate(top, 1):
            mark = "✓" if j == i else " "
            lines.append((f"{rank}. {mark} {captions[j]}  ({float(sims[j]):.2f})", j == i))
        if i not in top:
            true_rank = int((sims >= sims[i]).sum())
            lines.append((f"   true caption (rank {true_rank}): {captions[i]}", True))
        for n, (line, ok) in enumerate(lines):
            tx.text(
                0.0,
                1.0 - n / max(len(lines), 6),
                line,
                transform=tx.transAxes,
                va="top",
                fontsize=7.5,
                family="monospace",
                color="tab:green" if ok else "0.15",
            )
    fig.suptitle(
        "Image → text: query images and their top captions (✓ = the image's own)", fontsize=10
    )
    return fig


def _plot_text_to_image(
    p: _Plotter, images: Tensor, captions: list[str], img: Tensor, txt: Tensor, picks: Tensor
) -> Any:
    cols = NEIGHBOURS + 1
    fig = p.figure(1.35 * cols + 1.5, 1.45 * len(picks) + 0.5)
    axes = fig.subplots(len(picks), cols, squeeze=False)
    for row, i in enumerate(picks.tolist()):
        sims = img @ txt[i]
        top = sims.topk(min(NEIGHBOURS, images.shape[0])).indices.tolist()
        cap = axes[row][0]
        cap.axis("off")
        cap.text(
            0.0, 0.5, _wrap(captions[i], 22), fontsize=7.5, va="center", transform=cap.transAxes
        )
        for c, j in enumerate(top, 1):
            ax = axes[row][c]
            pic, cmap = _image_for_display(images[j])
            ax.imshow(pic, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if j == i:
                for spine in ax.spines.values():
                    spine.set_edgecolor("tab:green")
                    spine.set_linewidth(3)
            ax.set_title(f"{float(sims[j]):.2f}", fontsize=7)
        for c in range(len(top) + 1, cols):
            axes[row][c].axis("off")
    fig.suptitle(
        "Text → image: query captions and their top test images (green = own)", fontsize=10
    )
    return fig


def _plot_zero_shot(p: _Plotter, names: list[str], per_class: list[float], top1: float) -> Any:
    fig = p.figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.bar(range(len(names)), per_class, color="tab:purple")
    ax.axhline(top1, color="0.3", lw=1, ls="--", label=f"overall {top1:.3f}")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("zero-shot top-1 accuracy")
    ax.set_title("Zero-shot accuracy per class (held-out templates)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def write_two_tower_report(
    run_dir: str | os.PathLike[str],
    *,
    data_root: str | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
) -> Path:
    """Write ``RUN_DIR/report/`` for a two-tower run (see the module docstring).

    Metrics come from ``metrics.json``; when it lacks the retrieval metrics (a run with
    ``evaluate: false``) they are computed here with :func:`evaluate_two_tower`.

    Args:
        run_dir: A two-tower run directory.
        data_root: Folder of the dataset files (None: the run's ``data_root``).
        device: Where to run the model (None: the CPU).
        seed: Seed of the query examples shown.

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory or the data are missing.
        MissingExtraError: If matplotlib (the ``plot`` extra) is not installed.
    """
    plotter = _Plotter(Path(run_dir) / REPORT_DIR)  # matplotlib first: fail before the work
    run = Path(run_dir)
    config, model = load_two_tower_run(run)
    if device is not None:
        model = model.to(device)
    epochs = _read_jsonl(run / EPOCH_LOG)
    steps = _read_jsonl(run / STEP_LOG)
    metrics_path = run / METRICS_FILE
    metrics: Any = read_json(metrics_path) if metrics_path.is_file() else {}
    if not isinstance(metrics, dict):
        raise ValueError(
            f"{metrics_path}: expected a mapping of metrics, got {type(metrics).__name__}"
        )
    split = config.load_pairs(root=data_root)
    test = split.test
    names = retrieval_names(model)
    values: dict[str, Any] = dict(metrics)
    if f"{names[0]}_to_{names[1]}_R@1" not in values:
        values.update(
            evaluate_two_tower(
                model, split, knn_k=config.knn_k, knn_temperature=config.knn_temperature
            )
        )
    emb_a = F.normalize(embed_side(model, "a", test.a), dim=1)
    emb_b = F.normalize(embed_side(model, "b", test.b), dim=1)

    plotter.out_dir.mkdir(parents=True, exist_ok=True)
    page = _Page()
    written: dict[str, bytes] = {}

    def emit(fig: Any, name: str, heading: str, caption: str, note: str | None = None) -> None:
        written[name] = plotter.save(fig, name).read_bytes()
        page.figures.append((name, heading, caption))
        if note:
            page.notes[name] = note

    emit(
        _plot_loss(plotter, epochs, steps),
        "loss.png",
        "Training loss",
        "Loss of every optimizer step (light) and the mean of each epoch.",
    )
    ranks = {
        f"{names[0]}_to_{names[1]}": _recall_curves(emb_a, emb_b),
        f"{names[1]}_to_{names[0]}": _recall_curves(emb_b, emb_a),
    }
    emit(
        _plot_recall(plotter, ranks),
        "recall.png",
        "Retrieval: recall@k",
        "Share of held-out queries whose partner is among the k most cosine-similar items of the "
        "other side (ties count against the partner).",
    )
    kinds = tuple(model.kinds)
    gen = torch.Generator().manual_seed(seed)
    picks = torch.randperm(len(test), generator=gen)[: min(QUERIES, len(test))].sort().values
    if set(kinds) == {"image", "text"}:
        image_side = "a" if kinds[0] == "image" else "b"
        images = test.a if image_side == "a" else test.b
        captions = test.b if image_side == "a" else test.a
        img, txt = (emb_a, emb_b) if image_side == "a" else (emb_b, emb_a)
        assert isinstance(images, Tensor) and isinstance(captions, list)
        emit(
            _plot_image_to_text(plotter, images, captions, img, txt, picks),
            "retrieval.png",
            "Retrieval examples: image → text",
            f"Random test images (seed {seed}) and the {NEIGHBOURS} nearest of the {len(test):,} "
            "test captions, with cosine similarities; green marks the image's own caption.",
        )
        emit(
            _plot_text_to_image(plotter, images, captions, img, txt, picks),
            "text_to_image.png",
            "Retrieval examples: text → image",
            f"The captions of the same test images and their {NEIGHBOURS} nearest test images.",
        )
    else:
        page.notes["recall.png"] = (
            f"This run's towers are {kinds}: example grids are drawn for image-text runs only."
        )
    if (
        set(kinds) == {"image", "text"}
        and split.class_names
        and split.zero_shot_templates
        and test.labels is not None
    ):
        text_side = "a" if kinds[0] == "text" else "b"
        encode = model.encode_a if text_side == "a" else model.encode_b

        def encode_text(texts: list[str]) -> Tensor:
            with _eval_mode(model):
                return encode(texts).detach().to("cpu", torch.float32)

        class_names = list(split.class_names)
        w = zero_shot_classifier(encode_text, class_names, list(split.zero_shot_templates))
        pred = zero_shot_predict(emb_a if text_side == "b" else emb_b, w)[0][:, 0]
        per_class = [
            float((pred[test.labels == c] == c).double().mean())
            if bool((test.labels == c).any())
            else float("nan")
            for c in range(len(class_names))
        ]
        top1 = float((pred == test.labels).double().mean())
        emit(
            _plot_zero_shot(plotter, class_names, per_class, top1),
            "zero_shot.png",
            "Zero-shot classification",
            "Each test image goes to the class whose prompt ensemble (the held-out templates, "
            f"{len(split.zero_shot_templates)} of them) is most similar.",
        )
    rows = _rows(values)
    fig = _plot_metrics(plotter, [(n, v, d) for n, v, d in rows])
    emit(fig, "metrics.png", "Final metrics (image)", "The table above, as an image.")
    if not rows:
        _note_text(fig.axes[0], "no metrics")

    summary = {k: _json_safe(v) for k, v in values.items()}
    (plotter.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    data_name = config.pairs or config.data
    title = f"contrastkit two-tower report: {config.loss} on {data_name} ({run.resolve().name})"
    page_html = _html(title, rows, config.to_dict(), page, written)
    out = plotter.out_dir / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page_html, encoding="utf-8")
    tmp.replace(out)
    return out
