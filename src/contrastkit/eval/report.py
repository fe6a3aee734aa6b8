"""The run report: plots and a self-contained HTML page of a trained run (``contrastkit report``).

:func:`write_report` reads a run directory of ``contrastkit fit`` (``config.json``,
``model.safetensors``, ``epochs.jsonl``, ``steps.jsonl``, ``metrics.json``), reloads the model and
its dataset (same split), and writes into ``RUN_DIR/report/``:

- ``loss.png``: the training loss per step and per epoch;
- ``knn.png``: kNN accuracy over the epochs (from the monitoring entries of ``epochs.jsonl``, see
  ``FitConfig.monitor_every``), with the final model's value;
- ``align_uniform.png``: alignment and uniformity (Wang & Isola, 2020) and tolerance (Wang & Liu,
  2021) over the epochs and in the alignment-uniformity plane, in both spaces: the encoder
  features ``h`` and the head output ``z`` the loss acts on (normalised);
- ``spectrum.png``: singular values of the centred test features ``h`` and projections ``z``
  (dimensional collapse), their effective ranks, and the monitored effective ranks over epochs;
- ``embedding.png``: a t-SNE map (scikit-learn) of at most ``max_points`` test features, coloured
  by label, and beside it a UMAP map with ``umap=True`` (the ``umap`` extra: ``pip install
  'contrastkit[umap]'``);
- ``views.png``: a few training images and augmented views of them, as the trainer made them;
- ``metrics.png``: the final metrics table;
- ``summary.json``: the metrics of the table;
- ``report.html``: all of the above in one file, every image embedded as a ``data:`` URI (no
  external resource), the metrics as an HTML table with ``id="metrics"``.

No chart is drawn from a single point: a chart over epochs whose quantity was monitored at fewer
than two epochs is left out, and the page says in one line how to get it (the final values are in
the table).

A two-tower run gets its own report (:mod:`contrastkit.eval.report_two_tower`: recall@k, a
retrieval example grid, zero-shot per class).

Plots need matplotlib (the ``plot`` extra: ``pip install 'contrastkit[plot]'``); it is imported
when a report is written, and drawn through the Agg canvas (no display, no global backend change).
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from contrastkit._validation import check_device
from contrastkit.eval.clustering import cluster_metrics
from contrastkit.eval.features import _check_int, extract_features
from contrastkit.eval.geometry import singular_values
from contrastkit.eval.knn import knn_accuracy
from contrastkit.eval.linear import linear_probe
from contrastkit.eval.monitor import geometry_metrics, read_metric
from contrastkit.eval.probes import collect_features
from contrastkit.runs import (
    EPOCH_LOG,
    METRICS_FILE,
    STEP_LOG,
    is_two_tower_run,
    load_run,
    read_json,
)
from contrastkit.views import ViewAugment, preset_for_dataset

__all__ = ["REPORT_DIR", "MissingExtraError", "require_matplotlib", "write_report"]

REPORT_DIR = "report"
REPORT_FILE = "report.html"
PLOT_EXTRA = "plot"
UMAP_EXTRA = "umap"

#: Colours and labels of the two spaces in every geometry chart (the report's and the comparison's).
SPACES = (
    ("h", "tab:blue", "h (encoder features)"),
    ("z", "tab:orange", "z (head output, what the loss acts on)"),
)

#: Training images shown in the grid of views, and views per image.
GRID_IMAGES = 6
GRID_VIEWS = 5


#: Geometry keys of older metrics files (all of h), replaced by the ``_h``/``_z`` keys.
LEGACY_GEOMETRY = ("alignment", "uniformity", "tolerance")


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the extra that installs it."""


def require_matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)`` from matplotlib, or a :class:`MissingExtraError`."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(
            "the run report draws its plots with matplotlib, which is not installed; install the "
            f"'{PLOT_EXTRA}' extra: pip install 'contrastkit[{PLOT_EXTRA}]'"
        ) from exc
    return Figure, FigureCanvasAgg


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The JSON objects of a log file; a missing file gives [] and a torn last line is skipped."""
    if not path.is_file():
        return []
    records: list[dict[str, Any]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            value = json.loads(line)
        except (ValueError, RecursionError):
            continue  # a line cut by a killed run, or a damaged one
        if isinstance(value, dict):
            records.append(value)
    return records


def _series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """``(epochs, values)`` of the records that hold a finite number under ``key``."""
    xs: list[float] = []
    ys: list[float] = []
    for i, rec in enumerate(records):
        value = read_metric(rec, key)  # "alignment_h" also reads "alignment" of older runs
        if value is not None:
            xs.append(float(rec.get("epoch", i + 1)))
            ys.append(value)
    return xs, ys


def _missing_note(n_points: int) -> str:
    """The one line that replaces a chart over epochs drawn from fewer than two points."""
    got = "not monitored during training" if n_points == 0 else "monitored at one epoch only"
    return (
        f"not drawn, {got}. To get it, train with `--set monitor_every=1` (every epoch; the "
        "default monitors every epoch from 1,000 training samples). The final values are in the "
        "table."
    )


def _loss_points(epochs: Sequence[Mapping[str, Any]], steps: Sequence[Mapping[str, Any]]) -> int:
    """How many points the loss chart would have (steps, else epochs)."""
    return max(len(_series(steps, "loss")[1]), len(_series(epochs, "loss")[1]))


@dataclass
class _Page:
    """What goes into the HTML: figures (name, title, caption) and notes per figure."""

    figures: list[tuple[str, str, str]] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (heading, how to get it)


class _Plotter:
    def __init__(self, out_dir: Path) -> None:
        self.figure_cls, self.canvas_cls = require_matplotlib()
        self.out_dir = out_dir

    def figure(self, width: float, height: float) -> Any:
        fig = self.figure_cls(figsize=(width, height), dpi=100, layout="constrained")
        self.canvas_cls(fig)
        return fig

    def save(self, fig: Any, name: str) -> Path:
        path = self.out_dir / name
        fig.savefig(path, format="png")
        return path


def _note_text(ax: Any, text: str) -> None:
    ax.text(
        0.5,
        0.96,
        text,
        transform=ax.transAxes,
        ha="center",
        va="top",
        fontsize=8,
        color="0.3",
        wrap=True,
    )


def _step_losses(steps: Sequence[Mapping[str, Any]]) -> tuple[list[float], list[float]]:
    """``(positions in epochs, losses)`` of the logged steps: step s of epoch e sits at
    ``e - 1 + (s - first step of e + 1) / steps in e``."""
    _, sy = _series(steps, "loss")
    per_epoch: dict[int, list[int]] = {}
    for rec in steps:
        if isinstance(rec.get("loss"), int | float) and "epoch" in rec and "step" in rec:
            per_epoch.setdefault(int(rec["epoch"]), []).append(int(rec["step"]))
    pos: list[float] = []
    for rec in steps:
        if read_metric(rec, "loss") is None:
            continue
        if "epoch" in rec and "step" in rec:
            ids = per_epoch[int(rec["epoch"])]
            lo, n = min(ids), len(ids)
            pos.append(int(rec["epoch"]) - 1 + (int(rec["step"]) - lo + 1) / n)
        else:
            pos.append(float(len(pos) + 1))
    return pos, sy


def _plot_loss(p: _Plotter, epochs: list[dict[str, Any]], steps: list[dict[str, Any]]) -> Any:
    fig = p.figure(6.4, 3.6)
    ax = fig.add_subplot()
    ex, ey = _series(epochs, "loss")
    pos, sy = _step_losses(steps)
    if sy:
        ax.plot(pos, sy, color="tab:blue", alpha=0.35, lw=0.8, label="per step")
    if ey:
        ax.plot(ex, ey, "o-", color="tab:blue", lw=1.6, ms=4, label="epoch mean")
    if not (sy or ey):
        _note_text(ax, "no loss was logged (epochs.jsonl and steps.jsonl are empty)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    if sy or ey:
        ax.legend(fontsize=8)
    return fig


def _plot_knn(
    p: _Plotter, epochs: list[dict[str, Any]], final: float | None, last_epoch: float
) -> tuple[Any, str | None]:
    """The kNN chart, or ``(None, note)`` when fewer than two epochs were monitored."""
    xs, ys = _series(epochs, "knn_acc")
    if len(ys) < 2:
        return None, _missing_note(len(ys))
    note = None
    fig = p.figure(6.4, 3.6)
    ax = fig.add_subplot()
    ax.plot(xs, ys, "o-", color="tab:green", ms=4, label="held-out subset (monitor)")
    if final is not None:
        ax.plot([last_epoch], [final], "*", color="tab:red", ms=12, label="final model, test set")
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN accuracy")
    ax.set_title("kNN accuracy over epochs")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return fig, note


def _plot_align_uniform(
    p: _Plotter,
    epochs: list[dict[str, Any]],
    final: Mapping[str, Any],
    last_epoch: float,
) -> tuple[Any, str | None]:
    """Alignment, uniformity and tolerance of ``h`` and ``z`` over the epochs, and the plane.

    Returns ``(None, note)`` when no quantity was monitored at two epochs or more.
    """
    names = ("alignment", "uniformity", "tolerance")
    series = {
        (name, space): _series(epochs, f"{name}_{space}")
        for name in names
        for space, _, _ in SPACES
    }
    most = max(len(ys) for _, ys in series.values())
    if most < 2:
        return None, _missing_note(most)
    fig = p.figure(10.4, 7.2)
    axes = fig.subplots(2, 2)
    titles = {
        "alignment": "Alignment  E||f(x)-f(x')||²  (lower: views closer)",
        "uniformity": "Uniformity  log E exp(-2||f(x)-f(y)||²)  (lower: more uniform)",
        "tolerance": "Tolerance  E cos(f(x), f(y)), same class  (higher: classes tighter)",
    }
    for ax, name in zip((axes[0][0], axes[0][1], axes[1][0]), names, strict=True):
        for space, color, label in SPACES:
            xs, ys = series[(name, space)]
            if len(ys) >= 2:
                ax.plot(xs, ys, "o-" if space == "h" else "s--", color=color, ms=3, label=label)
            value = final.get(f"{name}_{space}")
            if isinstance(value, int | float) and math.isfinite(float(value)):
                ax.plot([last_epoch], [float(value)], "*", color=color, ms=11)
        ax.set_xlabel("epoch")
        ax.set_title(titles[name], fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        else:
            _note_text(ax, f"{name} was not monitored")
    ax_p = axes[1][1]
    for space, color, label in SPACES:
        ax_e, ay = series[("alignment", space)]
        ux, uy = series[("uniformity", space)]
        by_u = dict(zip(ux, uy, strict=True))
        common = [(e, a) for e, a in zip(ax_e, ay, strict=True) if e in by_u]
        if len(common) >= 2:
            pu = [by_u[e] for e, _ in common]
            pa = [a for _, a in common]
            ax_p.plot(pu, pa, "-", color=color, lw=1, alpha=0.6, label=label)
            ax_p.scatter(pu, pa, c=[e for e, _ in common], cmap="viridis", s=18, zorder=3)
        fa, fu = final.get(f"alignment_{space}"), final.get(f"uniformity_{space}")
        if isinstance(fa, int | float) and isinstance(fu, int | float):
            ax_p.plot([fu], [fa], "*", color=color, ms=13, zorder=4)
    ax_p.set_xlabel("uniformity (lower is better)")
    ax_p.set_ylabel("alignment (lower is better)")
    ax_p.set_title("Alignment-uniformity plane (dots coloured by epoch)", fontsize=9)
    ax_p.locator_params(axis="x", nbins=4)
    ax_p.grid(alpha=0.3)
    if ax_p.get_legend_handles_labels()[0]:
        ax_p.legend(fontsize=7)
    fig.suptitle(
        "Geometry of the test subset over epochs (monitor); stars: final model on the test set",
        fontsize=10,
    )
    return fig, None


def _plot_spectrum(
    p: _Plotter,
    spectra: Mapping[str, Tensor],
    ranks: Mapping[str, float],
    epochs: list[dict[str, Any]],
) -> Any:
    ranks_over = {space: _series(epochs, f"effective_rank_{space}") for space, _, _ in SPACES}
    ey = any(len(ys) >= 2 for _, ys in ranks_over.values())
    fig = p.figure(9.6 if ey else 6.4, 3.8)
    axes = fig.subplots(1, 2) if ey else [fig.add_subplot()]
    ax = axes[0]
    for (name, s), color in zip(spectra.items(), ("tab:blue", "tab:orange"), strict=False):
        s = s.double()
        top = float(s[0]) if s.numel() and float(s[0]) > 0 else 1.0
        rel = (s / top).clamp_min(1e-12).numpy()
        ax.semilogy(
            np.arange(1, rel.size + 1),
            rel,
            color=color,
            label=f"{name} (effective rank {ranks[name]:.1f} of {rel.size})",
        )
    ax.set_xlabel("index k")
    ax.set_ylabel("σ_k / σ_1")
    ax.set_title("Singular values of the centred test features")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    if ey:
        for space, color, label in SPACES:
            xs, ys = ranks_over[space]
            if len(ys) >= 2:
                axes[1].plot(xs, ys, "o-", color=color, ms=3, label=label)
        axes[1].legend(fontsize=7)
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("effective rank (monitor)")
        axes[1].set_title("Effective rank over epochs")
        axes[1].grid(alpha=0.3)
    return fig


def _tsne(features: Tensor, seed: int) -> np.ndarray:
    from sklearn.manifold import TSNE

    x = F.normalize(features.double(), dim=1).numpy()
    n = x.shape[0]
    perplexity = float(max(1.0, min(30.0, (n - 1) / 3.0)))
    tsne = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed)
    out: np.ndarray = tsne.fit_transform(x)
    return out


def _umap(features: Tensor, seed: int) -> np.ndarray:
    """A 2-D UMAP map of the L2-normalised features (the ``umap`` extra)."""
    try:
        import umap
    except ImportError as exc:
        raise MissingExtraError(
            "the UMAP map needs umap-learn, which is not installed; install the "
            f"'{UMAP_EXTRA}' extra: pip install 'contrastkit[{UMAP_EXTRA}]' (or leave out --umap)"
        ) from exc
    x = F.normalize(features.double(), dim=1).numpy()
    n = x.shape[0]
    reducer = umap.UMAP(n_components=2, n_neighbors=int(min(15, n - 1)), random_state=seed)
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state" and kin
        warnings.simplefilter("ignore")
        out: np.ndarray = reducer.fit_transform(x)
    return out


def _plot_embedding(
    p: _Plotter,
    maps: Sequence[tuple[str, np.ndarray | None]],
    labels: np.ndarray,
    n_total: int,
    num_classes: int,
) -> Any:
    """One scatter panel per ``(method, points)`` of ``maps``, side by side, coloured by label."""
    fig = p.figure(6.4 * len(maps) - (0.6 if len(maps) > 1 else 0.0), 5.6)
    axes = fig.subplots(1, len(maps), squeeze=False)[0]
    cmap = "tab10" if num_classes <= 10 else "tab20"
    for i, (ax, (method, points)) in enumerate(zip(axes, maps, strict=True)):
        if points is None:
            _note_text(ax, f"too few test points for a {method} map")
        else:
            sc = ax.scatter(
                points[:, 0],
                points[:, 1],
                c=labels,
                cmap=cmap,
                s=6,
                alpha=0.8,
                vmin=-0.5,
                vmax=max(num_classes, 10 if cmap == "tab10" else 20) - 0.5,
            )
            if num_classes <= 20 and i == len(maps) - 1:
                handles = [
                    ax.scatter([], [], color=sc.cmap(sc.norm(c)), s=20, label=str(c))
                    for c in range(num_classes)
                ]
                ax.legend(
                    handles=handles,
                    title="label",
                    fontsize=7,
                    title_fontsize=8,
                    loc="center left",
                    bbox_to_anchor=(1.0, 0.5),
                    frameon=False,
                )
        ax.set_xticks([])
        ax.set_yticks([])
        shown = 0 if points is None else points.shape[0]
        ax.set_title(f"{method} of the test features h ({shown} of {n_total} points)")
    return fig


def _image_for_display(img: Tensor) -> tuple[np.ndarray, str | None]:
    x = img.detach().float().clamp(0, 1).cpu()
    if x.shape[0] == 1:
        return x[0].numpy(), "gray"
    if x.shape[0] == 3:
        return x.permute(1, 2, 0).numpy(), None
    return x.mean(dim=0).numpy(), "gray"


def _plot_views(p: _Plotter, images: Tensor, views: Tensor) -> Any:
    rows, cols = images.shape[0], 1 + views.shape[1]
    fig = p.figure(1.2 * cols, 1.25 * rows + 0.4)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax = axes[r][c]
            img, cmap = _image_for_display(images[r] if c == 0 else views[r, c - 1])
            ax.imshow(img, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title("original" if c == 0 else f"view {c}", fontsize=8)
    fig.suptitle("Training images and augmented views", fontsize=10)
    return fig


def _format_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if value != 0 and (abs(value) >= 1e5 or abs(value) < 1e-3):
            return f"{value:.3e}"
        return f"{value:.4f}"
    return str(value)


def _plot_metrics(p: _Plotter, rows: Sequence[tuple[str, str, str]]) -> Any:
    fig = p.figure(7.2, 0.25 * (len(rows) + 1) + 0.5)
    ax = fig.add_subplot()
    ax.axis("off")
    table = ax.table(
        cellText=[[name, value] for name, value, _ in rows],
        colLabels=["metric", "value"],
        loc="center",
        cellLoc="left",
        colWidths=[0.55, 0.45],
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.scale(1.0, 1.2)
    ax.set_title("Final metrics", fontsize=10)
    return fig


# Descriptions of the metrics in the table (shown in the HTML).
_DESCRIPTIONS = {
    "knn_acc": "kNN accuracy (cosine, weighted votes) of the test set against the train set",
    "linear_acc": "linear-probe accuracy (logistic regression on frozen features)",
    "final_loss": "mean training loss of the last epoch",
    "kmeans_nmi": "k-means (k = classes) NMI on the normalised test features",
    "kmeans_ari": "k-means ARI",
    "kmeans_acc": "k-means accuracy under the best cluster-class matching",
    "feature_dim": "dimension of h",
    "epochs": "training epochs",
    "steps": "optimizer steps",
    "train_seconds": "training time (s)",
    "encoder_parameters": "encoder parameters",
}
_SPACE_WORDS = {
    "h": "encoder features h",
    "z": "head output z (what the loss acts on)",
}
for _space, _words in _SPACE_WORDS.items():
    _DESCRIPTIONS.update(
        {
            f"alignment_{_space}": f"alignment E||f(x)-f(x')||² of two augmented views of each "
            f"test image; normalised {_words}",
            f"uniformity_{_space}": f"uniformity log E exp(-2||f(x)-f(y)||²) of the test set; "
            f"normalised {_words}",
            f"tolerance_{_space}": f"tolerance: mean cosine of same-class test pairs; {_words}",
            f"effective_rank_{_space}": f"effective rank of the centred test {_words}",
        }
    )

_TABLE_ORDER = (
    "knn_acc",
    "linear_acc",
    "kmeans_nmi",
    "kmeans_ari",
    "kmeans_acc",
    "alignment_z",
    "uniformity_z",
    "tolerance_z",
    "effective_rank_z",
    "alignment_h",
    "uniformity_h",
    "tolerance_h",
    "effective_rank_h",
    "final_loss",
    "feature_dim",
    "epochs",
    "steps",
    "train_seconds",
    "encoder_parameters",
    "precision",
    "device",
    "world_size",
)


def _table_rows(values: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    keys = [k for k in _TABLE_ORDER if k in values]
    keys += sorted(k for k in values if k not in _TABLE_ORDER and values[k] is not None)
    return [(k, _format_value(values[k]), _DESCRIPTIONS.get(k, "")) for k in keys]


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.5em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0f0; } td.num { font-family: ui-monospace, monospace; }
img { max-width: 100%; height: auto; border: 1px solid #eee; }
p.note { color: #555; font-style: italic; } figure { margin: 0; }
figcaption { font-size: 0.85em; color: #444; }
"""


def _html(
    title: str,
    rows: Sequence[tuple[str, str, str]],
    config: Mapping[str, Any],
    page: _Page,
    images: Mapping[str, bytes],
) -> str:
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        "<h2>Final metrics</h2>",
        '<table id="metrics"><thead><tr><th>metric</th><th>value</th><th>meaning</th></tr>'
        "</thead><tbody>",
    ]
    for name, value, desc in rows:
        parts.append(
            f'<tr><td>{esc(name)}</td><td class="num">{esc(value)}</td><td>{esc(desc)}</td></tr>'
        )
    parts.append("</tbody></table>")
    if page.missing:
        parts.append('<h2>Charts not drawn</h2><ul id="missing">')
        parts.extend(
            f'<li><p class="note">{esc(heading)}: {esc(how)}</p></li>'
            for heading, how in page.missing
        )
        parts.append("</ul>")
    for name, heading, caption in page.figures:
        data = base64.b64encode(images[name]).decode("ascii")
        parts.append(f"<h2>{esc(heading)}</h2>")
        if name in page.notes:
            parts.append(f'<p class="note">{esc(page.notes[name])}</p>')
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(heading)}" '
            f'data-file="{esc(name)}"><figcaption>{esc(caption)}</figcaption></figure>'
        )
    parts.append('<h2>Configuration</h2><table id="config"><tbody>')
    for key in sorted(config):
        value = json.dumps(config[key]) if not isinstance(config[key], str) else config[key]
        parts.append(f'<tr><td>{esc(str(key))}</td><td class="num">{esc(value)}</td></tr>')
    parts.append("</tbody></table></body></html>")
    return "\n".join(parts) + "\n"


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_report(
    run_dir: str | os.PathLike[str],
    *,
    data_root: str | None = None,
    max_points: int = 2000,
    device: torch.device | str | None = None,
    seed: int = 0,
    umap: bool = False,
) -> Path:
    """Write ``RUN_DIR/report/`` (PNGs, ``summary.json`` and ``report.html``) for a trained run.

    The model and its data are reloaded (the run's dataset and split); the test features give the
    final geometry in both spaces, ``h`` and ``z`` (alignment of two augmented views, uniformity,
    tolerance, effective ranks: :func:`~contrastkit.eval.monitor.geometry_metrics`, the numbers of
    ``metrics.json``), k-means NMI/ARI and the spectra. kNN and linear-probe accuracy come from
    ``metrics.json`` (recomputed only when the run skipped its final evaluation).

    Args:
        run_dir: A run directory of ``contrastkit fit``.
        data_root: Folder of the dataset files (``None``: the run's ``data_root``).
        max_points: Largest number of test points in the t-SNE map (a seeded random subset), >= 2.
        device: Where to run the model (``None``: the CPU).
        seed: Seed of the views, the t-SNE subset and map, and k-means.
        umap: Also draw a UMAP map beside the t-SNE map (needs the ``umap`` extra; its first
            call in a process compiles numba code, about 20 s on a laptop CPU).

    Returns:
        The path of ``report.html``.

    Raises:
        FileNotFoundError: If ``run_dir`` is not a run directory or the data are missing.
        MissingExtraError: If matplotlib (the ``plot`` extra) is not installed, or umap-learn
            (the ``umap`` extra) with ``umap=True``.
    """
    max_points = _check_int(max_points, "max_points", minimum=2)
    if not isinstance(umap, bool):
        raise TypeError(f"umap must be True or False, got {type(umap).__name__}")
    seed = _check_int(seed, "seed", minimum=0)
    if device is not None:
        device = check_device(device)
    if is_two_tower_run(Path(run_dir)):  # retrieval, zero-shot and example grids
        from contrastkit.eval.report_two_tower import write_two_tower_report

        return write_two_tower_report(run_dir, data_root=data_root, device=device, seed=seed)
    plotter = _Plotter(Path(run_dir) / REPORT_DIR)  # matplotlib first: fail before the work
    run = Path(run_dir)
    config, model = load_run(run)
    if device is not None:
        model = model.to(device)
    epochs = _read_jsonl(run / EPOCH_LOG)
    steps = _read_jsonl(run / STEP_LOG)
    metrics_path = run / METRICS_FILE
    metrics: dict[str, Any] = read_json(metrics_path) if metrics_path.is_file() else {}
    if not isinstance(metrics, dict):
        raise ValueError(
            f"{metrics_path}: expected a mapping of metrics, got {type(metrics).__name__}"
        )
    split = config.load_data(root=data_root)
    train, test = split.train, split.test
    channels, height, _ = train.image_shape
    augment = ViewAugment(
        preset_for_dataset(config.augment or config.data, channels=channels, image_size=height)
    )

    feats = collect_features(model, test.images, ["h", "z"])
    h, z = feats["h"], feats["z"]
    values: dict[str, Any] = dict(metrics)
    if "knn_acc" not in values or "linear_acc" not in values:
        train_h = extract_features(model.encoder, train.images)
        values["knn_acc"] = knn_accuracy(
            train_h,
            train.labels,
            h,
            test.labels,
            k=config.knn_k,
            temperature=config.knn_temperature,
        )
        values["linear_acc"] = linear_probe(train_h, train.labels, h, test.labels).accuracy
        values.setdefault("feature_dim", int(h.shape[1]))
    for key in LEGACY_GEOMETRY:  # h-only names of older metrics files: replaced below
        values.pop(key, None)
    values.update(
        geometry_metrics(
            model.encoder, test.images, test.labels, head=model.head, augment=augment, seed=seed
        )
    )
    n_classes = int(torch.unique(test.labels).numel())
    if 2 <= n_classes <= len(test):
        km = cluster_metrics(h, test.labels, n_clusters=n_classes, seed=seed, n_init=4)
        values.update({f"kmeans_{k}": v for k, v in km.items()})

    plotter.out_dir.mkdir(parents=True, exist_ok=True)
    last_epoch = float(epochs[-1].get("epoch", len(epochs))) if epochs else float(config.epochs)
    page = _Page()
    written: dict[str, bytes] = {}

    def emit(fig: Any, name: str, heading: str, caption: str, note: str | None = None) -> None:
        written[name] = plotter.save(fig, name).read_bytes()
        page.figures.append((name, heading, caption))
        if note:
            page.notes[name] = note

    if _loss_points(epochs, steps) >= 2:
        emit(
            _plot_loss(plotter, epochs, steps),
            "loss.png",
            "Training loss",
            "Loss of every optimizer step (light) and the mean of each epoch.",
        )
    else:
        page.missing.append(
            (
                "Training loss",
                "fewer than two losses were logged (steps.jsonl, epochs.jsonl); train for more "
                "than one step to get the curve.",
            )
        )
    final_knn = values.get("knn_acc")
    fig, note = _plot_knn(
        plotter,
        epochs,
        float(final_knn) if isinstance(final_knn, int | float) else None,
        last_epoch,
    )
    if fig is None:
        page.missing.append(("kNN accuracy over epochs", str(note)))
    else:
        emit(
            fig,
            "knn.png",
            "kNN accuracy over epochs",
            "Monitored kNN accuracy on a held-out subset; the star is the final model on the "
            "whole test set.",
            note,
        )
    fig, note = _plot_align_uniform(plotter, epochs, values, last_epoch)
    if fig is None:
        page.missing.append(("Alignment, uniformity and tolerance over epochs", str(note)))
    else:
        emit(
            fig,
            "align_uniform.png",
            "Alignment, uniformity and tolerance: h and z",
            "Wang & Isola (2020) alignment and uniformity, Wang & Liu (2021) tolerance, of the "
            "encoder features h (blue) and of the normalised head output z (orange), on which the "
            "loss and the papers define them. Lines: the monitor's held-out subset at each "
            "monitored epoch; stars: the final model on the whole test set.",
        )
    spectra = {"h": singular_values(h), "z": singular_values(z)}
    ranks = {"h": float(values["effective_rank_h"]), "z": float(values["effective_rank_z"])}
    emit(
        _plot_spectrum(plotter, spectra, ranks, epochs),
        "spectrum.png",
        "Singular-value spectrum",
        "Singular values of the centred test features, relative to the largest; a fast drop "
        "signals dimensional collapse.",
    )
    n_map = min(max_points, len(test))
    idx = torch.randperm(len(test), generator=torch.Generator().manual_seed(seed))[:n_map]
    idx = idx.sort().values
    maps: list[tuple[str, np.ndarray | None]] = [
        ("t-SNE", _tsne(h[idx], seed) if n_map >= 5 else None)
    ]
    if umap:
        maps.append(("UMAP", _umap(h[idx], seed) if n_map >= 5 else None))
    emit(
        _plot_embedding(plotter, maps, test.labels[idx].numpy(), len(test), test.num_classes),
        "embedding.png",
        "2-D embedding maps (t-SNE" + (" and UMAP)" if umap else ")"),
        "t-SNE (scikit-learn, perplexity up to 30, PCA init)"
        + (" and UMAP (umap-learn, 15 neighbours)" if umap else "")
        + " of the L2-normalised test features, coloured by label."
        + ("" if umap else " `contrastkit report RUN_DIR --umap` adds a UMAP map beside it."),
    )
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 1))
    pick = pick[: min(GRID_IMAGES, len(train))]
    originals = train.images[pick]
    views = augment.views(originals, GRID_VIEWS, generator=torch.Generator().manual_seed(seed + 2))
    emit(
        _plot_views(plotter, originals, views),
        "views.png",
        "Augmented views",
        f"Training images and {GRID_VIEWS} views each, drawn by the run's augmentation "
        f"({augment.config.name}).",
    )
    rows = _table_rows(values)
    emit(
        _plot_metrics(plotter, rows),
        "metrics.png",
        "Final metrics (image)",
        "The table above, as an image.",
    )

    summary = {k: _json_safe(v) for k, v in values.items()}
    (plotter.out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    title = f"contrastkit run report: {config.loss} on {config.data} ({run.resolve().name})"
    page_html = _html(title, rows, _config_dict(config), page, written)
    out = plotter.out_dir / REPORT_FILE
    tmp = out.with_suffix(".html.tmp")
    tmp.write_text(page_html, encoding="utf-8")
    tmp.replace(out)
    return out


def _config_dict(config: Any) -> dict[str, Any]:
    to_dict = getattr(config, "to_dict", None)
    if callable(to_dict):
        return dict(to_dict())
    return asdict(config)
