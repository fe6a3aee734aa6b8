"""Tests of contrastkit.eval.report and ``contrastkit report`` on a tiny digits run.

The Chromium test opens the report in Debian's headless ``chromium`` (``apt-get install -y
chromium``) and checks that every image loaded; it is skipped when ``/usr/bin/chromium`` is absent.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from contrastkit.cli import main
from contrastkit.eval import MissingExtraError, write_report
from contrastkit.eval.report import _plot_align_uniform, _plot_knn, _Plotter
from contrastkit.train import FitConfig, fit

CHROMIUM = Path("/usr/bin/chromium")
PNGS = (
    "loss.png",
    "knn.png",
    "align_uniform.png",
    "spectrum.png",
    "embedding.png",
    "views.png",
    "metrics.png",
)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-epoch digits run with monitoring, and its report written through the CLI."""
    out = tmp_path_factory.mktemp("report-run") / "run"
    fit(
        FitConfig(
            data="digits",
            epochs=2,
            batch_size=256,
            progress=False,
            out=str(out),
            device="cpu",
            monitor_every=1,
            tensorboard=False,
        )
    )
    assert main(["report", str(out), "--max-points", "300"]) == 0
    return out


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(path: Path) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser.tags


def test_pngs_exist_and_are_valid_images(run: Path) -> None:
    from PIL import Image

    for name in PNGS:
        path = run / "report" / name
        assert path.is_file(), name
        assert path.read_bytes()[:8] == PNG_SIGNATURE
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            assert img.format == "PNG" and img.width > 100 and img.height > 100


def test_html_is_self_contained_and_embeds_every_png(run: Path) -> None:
    page = run / "report" / "report.html"
    tags = _parse(page)
    urls = [
        (tag, key, value)
        for tag, attrs in tags
        for key, value in attrs.items()
        if key in ("src", "href", "srcset", "poster", "data", "action") and value is not None
    ]
    assert urls, "the page references no image at all"
    assert all(value.startswith("data:") for _, _, value in urls), urls
    assert not any(tag in ("link", "script", "iframe", "object", "embed") for tag, _ in tags)
    text = page.read_text(encoding="utf-8")
    assert "url(" not in text and "@import" not in text
    images = [attrs for tag, attrs in tags if tag == "img"]
    assert sorted(str(a["data-file"]) for a in images) == sorted(PNGS)
    for attrs in images:
        src = str(attrs["src"])
        assert src.startswith("data:image/png;base64,")
        data = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert data == (run / "report" / str(attrs["data-file"])).read_bytes()


def test_metrics_table(run: Path) -> None:
    text = (run / "report" / "report.html").read_text(encoding="utf-8")
    match = re.search(r'<table id="metrics">(.*?)</table>', text, re.S)
    assert match, "no metrics table"
    rows = dict(re.findall(r"<tr><td>([^<]+)</td><td class=\"num\">([^<]*)</td>", match.group(1)))
    metrics = json.loads((run / "metrics.json").read_text())
    assert rows["knn_acc"] == f"{metrics['knn_acc']:.4f}"
    assert rows["linear_acc"] == f"{metrics['linear_acc']:.4f}"
    for key in (
        "alignment_h",
        "alignment_z",
        "uniformity_h",
        "uniformity_z",
        "effective_rank_h",
        "effective_rank_z",
        "kmeans_nmi",
        "kmeans_ari",
        "tolerance_h",
        "tolerance_z",
    ):
        assert key in rows
        # The report's final geometry is the one fit wrote into metrics.json (same seed, CPU).
        assert key.startswith("kmeans") or rows[key] == f"{metrics[key]:.4f}"
    summary = json.loads((run / "report" / "summary.json").read_text())
    assert 0.0 <= summary["alignment_z"] <= 4.0
    assert summary["uniformity_z"] <= 0.0
    assert 1.0 <= summary["effective_rank_h"] <= 128.0
    assert 0.0 <= summary["kmeans_nmi"] <= 1.0


def test_trainer_monitor_entries_are_plotted(run: Path) -> None:
    epochs = [json.loads(line) for line in (run / "epochs.jsonl").read_text().splitlines()]
    assert {"knn_acc", "alignment_z", "uniformity_h", "effective_rank_h"} <= set(epochs[-1])
    text = (run / "report" / "report.html").read_text(encoding="utf-8")
    # Monitored at both epochs: every chart drawn, none listed as not drawn.
    assert "Charts not drawn" not in text and "not monitored" not in text


def test_no_chart_from_fewer_than_two_points(tmp_path: Path) -> None:
    plotter = _Plotter(tmp_path)
    epochs: list[dict[str, Any]] = [{"epoch": 1, "loss": 5.0}, {"epoch": 2, "loss": 4.0}]
    final = {"alignment_h": 0.5, "uniformity_h": -2.0, "alignment_z": 0.4, "uniformity_z": -3.0}
    fig, note = _plot_knn(plotter, epochs, 0.9, 2.0)
    assert fig is None and note is not None and "monitor_every" in note
    fig, note = _plot_knn(plotter, [{"epoch": 1, "knn_acc": 0.5}], 0.9, 1.0)
    assert fig is None and note is not None and "one epoch only" in note  # a single point
    fig, note = _plot_knn(plotter, [{"epoch": e, "knn_acc": 0.5} for e in (1, 2)], 0.9, 2.0)
    assert fig is not None and note is None
    fig, note = _plot_align_uniform(plotter, epochs, final, 2.0)
    assert fig is None and note is not None and "monitor_every" in note
    one = [{"epoch": 1, "alignment_z": 0.1, "uniformity_z": -1.0}]
    assert _plot_align_uniform(plotter, one, final, 1.0)[0] is None
    # Older runs wrote "alignment"/"uniformity" (of h): still read, as h.
    monitored = [{"epoch": e, "alignment": 0.1 * e, "uniformity": -e} for e in (1, 2)]
    fig, note = _plot_align_uniform(plotter, monitored, final, 2.0)
    assert fig is not None and note is None


def test_missing_matplotlib_names_the_extra(
    run: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(MissingExtraError, match=r"contrastkit\[plot\]"):
        write_report(run)
    assert main(["report", str(run)]) == 2
    assert "pip install 'contrastkit[plot]'" in capsys.readouterr().err


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="not a contrastkit run directory"):
        write_report(tmp_path)
    with pytest.raises(ValueError, match="max_points"):
        write_report(tmp_path, max_points=1)
    assert main(["report", str(tmp_path / "none")]) == 2
    assert "not a contrastkit run directory" in capsys.readouterr().err


_CHECK_SCRIPT = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img[data-file]"));
  var res = {images: imgs.length, loaded: [], broken: []};
  imgs.forEach(function (im) {
    var ok = im.complete && im.naturalWidth > 0 && im.naturalHeight > 0;
    (ok ? res.loaded : res.broken).push(im.getAttribute("data-file"));
  });
  var control = document.getElementById("ck-control");
  res.control_loaded = control.complete && control.naturalWidth > 0;
  var table = document.getElementById("metrics");
  res.metrics_rows = table ? table.querySelectorAll("tbody tr").length : -1;
  res.metric_names = table ? Array.prototype.map.call(
    table.querySelectorAll("tbody tr td:first-child"), function (td) { return td.textContent; }
  ) : [];
  var out = document.createElement("pre");
  out.id = "ck-result";
  out.textContent = JSON.stringify(res);
  document.body.appendChild(out);
});
</script>"""

# A deliberately broken image: the check must see it fail, or it could not see a real failure.
_CONTROL = '<img id="ck-control" alt="control" src="data:image/png;base64,iVBORw0KGgoAAAAA">'


@pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="headless Chromium check needs Debian's chromium package (/usr/bin/chromium); "
    "install it with `apt-get install -y chromium`",
)
def test_report_opens_in_headless_chromium(run: Path, tmp_path: Path) -> None:
    page = (run / "report" / "report.html").read_text(encoding="utf-8")
    assert page.count("</body>") == 1
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", _CONTROL + _CHECK_SCRIPT + "</body>"), "utf-8")
    profile = tmp_path / "profile"
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--virtual-time-budget=5000",
        "--dump-dom",
        probe.as_uri(),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    match = re.search(r'<pre id="ck-result">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no result in the dumped DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["control_loaded"] is False
    assert result["images"] == len(PNGS)
    assert result["broken"] == []
    assert sorted(result["loaded"]) == sorted(PNGS)
    assert result["metrics_rows"] >= 10
    assert {"knn_acc", "linear_acc", "alignment_z", "uniformity_h"} <= set(result["metric_names"])


@pytest.mark.slow
def test_report_of_a_bare_run_recomputes_the_metrics(run: Path, tmp_path: Path) -> None:
    """Without logs and metrics.json (e.g. `evaluate=False`), kNN and linear are recomputed."""
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(run / name, bare / name)
    page = write_report(bare, max_points=100)
    summary = json.loads((bare / "report" / "summary.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert summary["knn_acc"] == pytest.approx(metrics["knn_acc"])
    # The probe's L-BFGS fit follows float rounding (the trained model runs channels_last, the
    # reloaded one does not): a few of 450 test images may flip.
    assert summary["linear_acc"] == pytest.approx(metrics["linear_acc"], abs=0.02)
    text = page.read_text(encoding="utf-8")
    assert "Charts not drawn" in text and text.count("not monitored during training") == 2
    assert "Training loss: fewer than two losses were logged" in text  # no logs copied
    left_out = ("loss.png", "knn.png", "align_uniform.png")
    assert all((bare / "report" / name).is_file() for name in PNGS if name not in left_out)
    assert not any((bare / "report" / name).exists() for name in left_out)
