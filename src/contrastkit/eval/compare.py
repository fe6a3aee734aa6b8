"""Run comparison: one self-contained HTML page overlaying several runs (``contrastkit compare``).

:func:`write_comparison` reads the files of each run directory (``config.json``, ``epochs.jsonl``,
``steps.jsonl``, ``metrics.json``; no model is loaded, so it takes a second and works for image and
two-tower runs alike) and writes into one output folder:

- ``loss.png``: every run's training loss per step (light) and per epoch, overlaid;
- ``knn.png``: the monitored kNN accuracy over the epochs of every run, stars at the final values;
- ``geometry.png``: alignment, uniformity and tolerance over the epochs, in both spaces (``z``: the
  normalised head output the loss acts on; ``h``: the encoder features), one colour per run;
- ``plane.png``: the runs' trajectories in the alignment-uniformity plane, ``z`` and ``h``;
- ``metrics.png``: the final metrics side by side (the table of the page, as an image);
- ``summary.json``: the runs, their final metrics and the configuration keys that differ;
- ``compare.html``: all of the above, every image embedded as a ``data:`` URI, the final metrics as
  a table with ``id="metrics"`` (one column per run, the best value of each row marked) and the
  configurations as a table with ``id="config"`` whose differing rows come first, highlighted.

A chart needs a quantity logged at two epochs or more by at least one run; otherwise it is left
out and the page says in one line how to get it. Metrics are shown as the runs have them: a
two-tower run's zero-shot and retrieval numbers sit beside an image run's probes, a cell left
empty where a run has no such number.
"""

from __future__ import annotations

import base64
import html
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contrastkit.eval.monitor import read_metric
from contrastkit.eval.report import (
    _CSS,
    _TABLE_ORDER,
    SPACES,
    _format_value,
    _json_safe,
    _missing_note,
    _Plotter,
    _read_jsonl,
    _series,
    _step_losses,
)
from contrastkit.runs import EPOCH_LOG, METRICS_FILE, STEP_LOG, read_config, read_json

__all__ = [
    "COMPARE_FILE",
    "MAX_RUNS",
    "RunRecord",
    "config_differences",
    "read_run_record",
    "write_comparison",
]

COMPARE_FILE = "compare.html"
#: Most runs on one page (one colour each, from matplotlib's tab10/tab20).
MAX_RUNS = 20
#: Configuration keys left out of the comparison (where a run was written, how it printed).
IGNORED_CONFIG_KEYS = ("out", "progress")

#: Metrics where higher is better, and where lower is better (by exact name, prefix or suffix);
#: the best run of such a row is marked in the table.
#: (Losses of different objectives, tolerance and effective rank have no better direction.)
_HIGHER = ("knn_acc", "linear_acc", "kmeans_", "zero_shot_", "_R@")
_LOWER = ("alignment_", "uniformity_", "_mean_rank", "_median_rank")
#: Run statistics rather than results: listed after the results, never marked best.
_STATS = (
    "epochs",
    "steps",
    "train_seconds",
    "encoder_parameters",
    "trainable_parameters",
    "feature_dim",
    "knn_k",
    "precision",
    "device",
    "world_size",
    "resumed_from",
)


@dataclass(frozen=True)
class RunRecord:
    """What a comparison reads of one run directory.

    Attributes:
        name: The label of the run on the page (its folder name, made unique).
        path: The run directory.
        config: ``config.json`` as a mapping (every key of the run's configuration).
        epochs: The lines of ``epochs.jsonl`` (monitored metrics included).
        steps: The lines of ``steps.jsonl``.
        metrics: ``metrics.json`` (empty when the run did not finish).
    """

    name: str
    path: Path
    config: dict[str, Any]
    epochs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    metrics: dict[str, Any]

    @property
    def last_epoch(self) -> float:
        """The epoch of the final metrics (the last logged epoch, else the configured count)."""
        if self.epochs:
            value = read_metric(self.epochs[-1], "epoch")
            if value is not None:
                return value
        epochs = self.config.get("epochs")
        return float(epochs) if isinstance(epochs, int | float) else 0.0


def read_run_record(run_dir: str | os.PathLike[str], name: str | None = None) -> RunRecord:
    """Read the files of one run directory for a comparison (no model is loaded).

    Args:
        run_dir: A run directory of ``contrastkit fit`` (image or two-tower).
        name: Its label (``None``: the folder name).

    Returns:
        The run's :class:`RunRecord`.

    Raises:
        FileNotFoundError: If ``run_dir`` has no ``config.json``.
        ValueError: If ``config.json`` or ``metrics.json`` is damaged or not a mapping.
    """
    path = Path(run_dir)
    config = read_config(path).to_dict()  # validated, every key present
    metrics_path = path / METRICS_FILE
    metrics: Any = read_json(metrics_path) if metrics_path.is_file() else {}
    if not isinstance(metrics, dict):
        raise ValueError(
            f"{metrics_path}: expected a mapping of metrics, got {type(metrics).__name__}"
        )
    return RunRecord(
        name=name if name is not None else (path.resolve().name or str(path)),
        path=path,
        config=dict(config),
        epochs=_read_jsonl(path / EPOCH_LOG),
        steps=_read_jsonl(path / STEP_LOG),
        metrics=metrics,
    )


def _unique_names(paths: Sequence[Path]) -> list[str]:
    """Folder names, extended by their parents' names until they are unique."""
    parts = [p.resolve().parts for p in paths]
    depth = 1
    while True:
        names = ["/".join(pp[-depth:]) for pp in parts]
        if len(set(names)) == len(names) or depth >= max(len(pp) for pp in parts):
            return names
        depth += 1


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i) for i in range(n)]


# --- charts -----------------------------------------------------------------------------------


def _plot_loss(p: _Plotter, runs: Sequence[RunRecord], colors: Sequence[Any]) -> Any:
    fig = p.figure(7.6, 4.0)
    ax = fig.add_subplot()
    for run, color in zip(runs, colors, strict=True):
        pos, sy = _step_losses(run.steps)
        ex, ey = _series(run.epochs, "loss")
        if sy:
            ax.plot(pos, sy, color=color, alpha=0.3, lw=0.7, label=None if ey else run.name)
        if ey:
            ax.plot(ex, ey, "o-", color=color, lw=1.6, ms=3, label=run.name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss (light: every step; line: epoch mean)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return fig


def _final(run: RunRecord, key: str) -> float | None:
    return read_metric(run.metrics, key)


def _plot_knn(p: _Plotter, runs: Sequence[RunRecord], colors: Sequence[Any]) -> Any:
    fig = p.figure(7.6, 4.0)
    ax = fig.add_subplot()
    for run, color in zip(runs, colors, strict=True):
        xs, ys = _series(run.epochs, "knn_acc")
        if len(ys) >= 2:
            ax.plot(xs, ys, "o-", color=color, ms=3, label=run.name)
        final = _final(run, "knn_acc")
        if final is not None:
            ax.plot([run.last_epoch], [final], "*", color=color, ms=12)
    ax.set_xlabel("epoch")
    ax.set_ylabel("kNN accuracy")
    ax.set_title("kNN accuracy: monitor (held-out subset) and final model (stars, test set)")
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="lower right")
    return fig


_GEOMETRY = (
    ("alignment", "alignment  E||f(x)-f(x')||²"),
    ("uniformity", "uniformity  log E exp(-2||f(x)-f(y)||²)"),
    ("tolerance", "tolerance  E cos, same class"),
)


def _plot_geometry(p: _Plotter, runs: Sequence[RunRecord], colors: Sequence[Any]) -> Any:
    fig = p.figure(12.0, 6.6)
    axes = fig.subplots(2, 3, squeeze=False)
    for row, (space, _, space_label) in enumerate(sorted(SPACES, key=lambda s: s[0] != "z")):
        for col, (name, title) in enumerate(_GEOMETRY):
            ax = axes[row][col]
            key = f"{name}_{space}"
            for run, color in zip(runs, colors, strict=True):
                xs, ys = _series(run.epochs, key)
                if len(ys) >= 2:
                    ax.plot(xs, ys, "o-", color=color, ms=2.5, lw=1.3, label=run.name)
                final = _final(run, key)
                if final is not None:
                    ax.plot([run.last_epoch], [final], "*", color=color, ms=10)
            ax.set_title(f"{title}\n{space_label}", fontsize=8.5)
            ax.set_xlabel("epoch", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if not ax.get_lines():
                ax.text(0.5, 0.5, "no run has it", transform=ax.transAxes, ha="center")
    handles, labels = [], []
    for ax_row in axes:
        for ax in ax_row:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                if label not in labels:
                    handles.append(handle)
                    labels.append(label)
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 5))
    return fig


def _plot_plane(p: _Plotter, runs: Sequence[RunRecord], colors: Sequence[Any]) -> Any:
    fig = p.figure(10.4, 4.4)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, (space, _, space_label) in zip(
        axes, sorted(SPACES, key=lambda s: s[0] != "z"), strict=True
    ):
        for run, color in zip(runs, colors, strict=True):
            ax_e, ay = _series(run.epochs, f"alignment_{space}")
            ux, uy = _series(run.epochs, f"uniformity_{space}")
            by_u = dict(zip(ux, uy, strict=True))
            pts = [(by_u[e], a) for e, a in zip(ax_e, ay, strict=True) if e in by_u]
            if len(pts) >= 2:
                ax.plot(*zip(*pts, strict=True), "o-", color=color, ms=2.5, lw=1, label=run.name)
            fa, fu = _final(run, f"alignment_{space}"), _final(run, f"uniformity_{space}")
            if fa is not None and fu is not None:
                ax.plot([fu], [fa], "*", color=color, ms=12)
        ax.set_xlabel("uniformity (lower is better)")
        ax.set_ylabel("alignment (lower is better)")
        ax.set_title(f"Alignment-uniformity plane: {space_label}", fontsize=9)
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig


# --- tables -----------------------------------------------------------------------------------


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _metric_keys(runs: Sequence[RunRecord]) -> list[str]:
    """Every scalar metric any run has: the report's order first, results before statistics."""
    present = {
        k
        for run in runs
        for k, v in run.metrics.items()
        if _is_number(v) or isinstance(v, str | bool)
    }
    ordered = [k for k in _TABLE_ORDER if k in present and k not in _STATS]
    rest = sorted(k for k in present if k not in ordered and k not in _STATS)
    stats = [k for k in _STATS if k in present]
    return ordered + rest + stats


def _direction(key: str) -> int:
    """+1 when higher is better, -1 when lower is better, 0 when neither is known."""
    if key in _STATS:
        return 0
    for sign, marks in ((1, _HIGHER), (-1, _LOWER)):
        if any(m in key for m in marks):
            return sign
    return 0


def _metric_rows(runs: Sequence[RunRecord]) -> list[tuple[str, list[str], int | None]]:
    """``(metric, formatted values per run, index of the best run or None)`` per metric."""
    rows: list[tuple[str, list[str], int | None]] = []
    for key in _metric_keys(runs):
        raw = [run.metrics.get(key) for run in runs]
        cells = ["" if v is None else _format_value(v) for v in raw]
        best = None
        sign = _direction(key)
        numbers: list[tuple[int, float]] = []
        for i, run in enumerate(runs):
            value = read_metric(run.metrics, key)
            if value is not None:
                numbers.append((i, value))
        if sign and len(numbers) >= 2 and len({v for _, v in numbers}) > 1:
            best = max(numbers, key=lambda iv: sign * iv[1])[0]
        rows.append((key, cells, best))
    return rows


def _config_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def config_differences(runs: Sequence[RunRecord]) -> dict[str, list[Any]]:
    """The configuration keys whose values differ between the runs, with each run's value.

    Args:
        runs: The runs (their ``config``).

    Returns:
        ``{key: [value of run 0, value of run 1, ...]}`` (``None`` where a run lacks the key), for
        the keys that differ, except :data:`IGNORED_CONFIG_KEYS`.
    """
    keys = sorted({k for run in runs for k in run.config} - set(IGNORED_CONFIG_KEYS))
    out: dict[str, list[Any]] = {}
    for key in keys:
        values = [run.config.get(key) for run in runs]
        if len({_config_text(v) for v in values}) > 1:
            out[key] = values
    return out


def _plot_metrics_table(
    p: _Plotter, runs: Sequence[RunRecord], rows: Sequence[tuple[str, list[str], int | None]]
) -> Any:
    n = len(runs)
    fig = p.figure(min(3.0 + 1.6 * n, 22.0), 0.25 * (len(rows) + 1) + 0.6)
    ax = fig.add_subplot()
    ax.axis("off")
    if rows:
        table = ax.table(
            cellText=[[name, *cells] for name, cells, _ in rows],
            colLabels=["metric", *[run.name for run in runs]],
            loc="center",
            cellLoc="left",
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7.5)
        table.scale(1.0, 1.2)
        for r, (_, _, best) in enumerate(rows, start=1):
            if best is not None:
                table[r, best + 1].set_text_props(fontweight="bold")
    else:
        ax.text(0.5, 0.5, "no run has a metrics.json", ha="center")
    ax.set_title("Final metrics (bold: best of the row)", fontsize=10)
    return fig


# --- page -------------------------------------------------------------------------------------

_EXTRA_CSS = """
tr.diff td { background: #fff3c4; } td.best { font-weight: bold; background: #e3f4e1; }
span.swatch { display: inline-block; width: 0.9em; height: 0.9em; margin-right: 0.4em;
  vertical-align: middle; border-radius: 2px; }
details { margin: 0.5em 0; } summary { cursor: pointer; color: #444; }
"""


def _hex(color: Any) -> str:
    r, g, b = (round(255 * float(c)) for c in tuple(color)[:3])
    return f"#{r:02x}{g:02x}{b:02x}"


def _html(
    runs: Sequence[RunRecord],
    colors: Sequence[Any],
    rows: Sequence[tuple[str, list[str], int | None]],
    diffs: Mapping[str, list[Any]],
    figures: Sequence[tuple[str, str, str]],
    missing: Sequence[tuple[str, str]],
    images: Mapping[str, bytes],
) -> str:
    esc = html.escape
    title = "contrastkit run comparison: " + ", ".join(run.name for run in runs)
    head_cells = "".join(
        f'<th><span class="swatch" style="background:{_hex(c)}"></span>{esc(run.name)}</th>'
        for run, c in zip(runs, colors, strict=True)
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        f"<style>{_CSS}{_EXTRA_CSS}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        '<h2>Runs</h2><table id="runs"><thead><tr><th>run</th><th>directory</th><th>loss</th>'
        "<th>data</th><th>epochs</th></tr></thead><tbody>",
    ]
    for run, color in zip(runs, colors, strict=True):
        data = run.config.get("pairs") or run.config.get("data")
        parts.append(
            f'<tr><td><span class="swatch" style="background:{_hex(color)}"></span>'
            f"{esc(run.name)}</td><td>{esc(str(run.path.resolve()))}</td>"
            f"<td>{esc(str(run.config.get('loss')))}</td><td>{esc(str(data))}</td>"
            f'<td class="num">{esc(str(run.config.get("epochs")))}</td></tr>'
        )
    parts.append("</tbody></table>")
    parts.append(
        "<h2>Final metrics</h2>"
        f'<table id="metrics"><thead><tr><th>metric</th>{head_cells}</tr></thead><tbody>'
    )
    for name, cells, best in rows:
        tds = "".join(
            f'<td class="num{" best" if i == best else ""}">{esc(cell)}</td>'
            for i, cell in enumerate(cells)
        )
        parts.append(f"<tr><td>{esc(name)}</td>{tds}</tr>")
    parts.append("</tbody></table>")
    if not rows:
        parts.append('<p class="note">No run has a metrics.json (none of them finished).</p>')
    else:
        parts.append(
            '<p class="note">Green: the best run of a row whose direction is known (higher '
            "accuracy and recall; lower alignment, uniformity and rank). An empty cell: the run "
            "has no such number (e.g. an image run has no retrieval recall).</p>"
        )

    def config_rows(keys: Sequence[str], cls: str) -> None:
        for key in keys:
            tds = "".join(
                f'<td class="num">{esc(_config_text(run.config.get(key)))}</td>' for run in runs
            )
            parts.append(f'<tr class="{cls}"><td>{esc(key)}</td>{tds}</tr>')

    parts.append(f"<h2>Configuration: {len(diffs)} key(s) differ</h2>")
    if diffs:
        parts.append(f'<table id="config"><thead><tr><th>key</th>{head_cells}</tr></thead><tbody>')
        config_rows(list(diffs), "diff")
        parts.append("</tbody></table>")
    else:
        parts.append('<p class="note">The runs share every configuration key.</p>')
    same = sorted({k for run in runs for k in run.config} - set(diffs) - set(IGNORED_CONFIG_KEYS))
    parts.append(
        f"<details><summary>{len(same)} key(s) the runs share</summary>"
        f'<table id="config-same"><thead><tr><th>key</th>{head_cells}</tr></thead><tbody>'
    )
    config_rows(same, "same")
    parts.append("</tbody></table></details>")
    if missing:
        parts.append('<h2>Charts not drawn</h2><ul id="missing">')
        parts.extend(
            f'<li><p class="note">{esc(heading)}: {esc(how)}</p></li>' for heading, how in missing
        )
        parts.append("</ul>")
    for name, heading, caption in figures:
        data = base64.b64encode(images[name]).decode("ascii")
        parts.append(f"<h2>{esc(heading)}</h2>")
        parts.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(heading)}" '
            f'data-file="{esc(name)}"><figcaption>{esc(caption)}</figcaption></figure>'
        )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _without(runs: Sequence[RunRecord], key: str) -> list[str]:
    return [run.name for run in runs if len(_series(run.epochs, key)[1]) < 2]


def write_comparison(
    run_dirs: Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    names: Sequence[str] | None = None,
) -> Path:
    """Write a comparison page of several runs (PNGs, ``summary.json``, ``compare.html``) to ``out``.

    Args:
        run_dirs: Two to :data:`MAX_RUNS` run directories of ``contrastkit fit`` (image or
            two-tower runs, finished or not), each named once.
        out: The output folder: a new or empty one (created if needed), or that of an earlier
            comparison, whose files are replaced; a folder holding other files is refused.
        names: Labels of the runs on the page (``None``: their folder names, extended by parent
            folders until unique).

    Returns:
        The path of ``compare.html``.

    Raises:
        FileNotFoundError: If a run directory has no ``config.json``.
        ValueError: On fewer than two or more than :data:`MAX_RUNS` runs, a run named twice,
            ``names`` of the wrong length or repeated, ``out`` one of the runs or a folder of
            other files, or a damaged ``config.json``/``metrics.json``.
        MissingExtraError: If matplotlib (the ``plot`` extra) is not installed.
    """
    if isinstance(run_dirs, str | os.PathLike) or not isinstance(run_dirs, Sequence):
        raise TypeError(
            f"run_dirs must be a list of run directories, got {type(run_dirs).__name__}"
        )
    paths = [Path(d) for d in run_dirs]
    if not 2 <= len(paths) <= MAX_RUNS:
        raise ValueError(
            f"compare needs between 2 and {MAX_RUNS} run directories, got {len(paths)}"
        )
    resolved = [p.resolve() for p in paths]
    repeated = sorted({str(p) for p in resolved if resolved.count(p) > 1})
    if repeated:
        raise ValueError(f"each run directory must be named once; repeated: {', '.join(repeated)}")
    if names is None:
        labels = _unique_names(paths)
    else:
        if isinstance(names, str) or len(names) != len(paths):
            raise ValueError(
                f"names must give one label per run directory ({len(paths)}), got {names!r}"
            )
        labels = [str(n) for n in names]
        if len(set(labels)) != len(labels) or not all(labels):
            raise ValueError(f"names must be non-empty and distinct, got {labels!r}")
    out_dir = Path(out)
    if out_dir.resolve() in resolved:
        raise ValueError(
            f"--out {out_dir} is one of the compared run directories; write the comparison to "
            "a folder of its own"
        )
    if out_dir.is_dir() and any(out_dir.iterdir()) and not (out_dir / COMPARE_FILE).is_file():
        raise ValueError(
            f"--out {out_dir} holds files and no earlier comparison ({COMPARE_FILE}); write the "
            "comparison to a new or empty folder (only an earlier comparison is replaced)"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is a file; expected a folder for the comparison")
    runs = [read_run_record(p, name) for p, name in zip(paths, labels, strict=True)]
    plotter = _Plotter(out_dir)  # matplotlib first: fail before any file is written
    colors = _colors(len(runs))
    out_dir.mkdir(parents=True, exist_ok=True)

    figures: list[tuple[str, str, str]] = []
    missing: list[tuple[str, str]] = []
    images: dict[str, bytes] = {}

    def emit(fig: Any, name: str, heading: str, caption: str) -> None:
        images[name] = plotter.save(fig, name).read_bytes()
        figures.append((name, heading, caption))

    def lacking(key: str) -> str:
        without = _without(runs, key)
        return f" Not monitored in: {', '.join(without)}." if without else ""

    if any(
        len(_step_losses(r.steps)[1]) >= 2 or len(_series(r.epochs, "loss")[1]) >= 2 for r in runs
    ):
        emit(
            _plot_loss(plotter, runs, colors),
            "loss.png",
            "Training loss",
            "Each run's loss per optimizer step (light) and epoch mean (line). Losses of "
            "different objectives live on different scales: compare their shapes.",
        )
    else:
        missing.append(
            ("Training loss", "no run logged two losses or more; train for more than one step.")
        )
    if len(runs) - len(_without(runs, "knn_acc")) > 0:
        emit(
            _plot_knn(plotter, runs, colors),
            "knn.png",
            "kNN accuracy over epochs",
            "The monitor's kNN accuracy on a held-out subset; stars: the final model on the "
            "whole test set." + lacking("knn_acc"),
        )
    else:
        missing.append(("kNN accuracy over epochs", _missing_note(0)))
    geometry_keys = [f"{n}_{s}" for n, _ in _GEOMETRY for s, _, _ in SPACES]
    if any(len(_series(r.epochs, k)[1]) >= 2 for r in runs for k in geometry_keys):
        emit(
            _plot_geometry(plotter, runs, colors),
            "geometry.png",
            "Alignment, uniformity and tolerance over epochs: z and h",
            "Wang & Isola's alignment and uniformity and Wang & Liu's tolerance, top row on the "
            "normalised head output z (where the loss and the papers define them), bottom row on "
            "the encoder features h; lines: the monitor's held-out subset, stars: the final model "
            "on the test set." + lacking("alignment_z"),
        )
        emit(
            _plot_plane(plotter, runs, colors),
            "plane.png",
            "Alignment-uniformity plane",
            "Each run's monitored trajectory (one dot per epoch) in z and h; stars: the final "
            "model. Down and left is better on both axes.",
        )
    else:
        missing.append(("Alignment, uniformity and tolerance over epochs", _missing_note(0)))
    rows = _metric_rows(runs)
    emit(
        _plot_metrics_table(plotter, runs, rows),
        "metrics.png",
        "Final metrics (image)",
        "The table above, as an image.",
    )
    diffs = config_differences(runs)
    summary = {
        "runs": [
            {
                "name": run.name,
                "path": str(run.path.resolve()),
                "metrics": {k: _json_safe(v) for k, v in run.metrics.items()},
            }
            for run in runs
        ],
        "config_differences": diffs,
        "charts": [name for name, _, _ in figures],
        "not_drawn": [heading for heading, _ in missing],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    page = _html(runs, colors, rows, diffs, figures, missing, images)
    path = out_dir / COMPARE_FILE
    tmp = path.with_suffix(".html.tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(path)
    return path
