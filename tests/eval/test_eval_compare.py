"""Tests of contrastkit.eval.compare and ``contrastkit compare``.

Two tiny digits runs with different losses are trained once; other run directories are written by
hand (their files only: a comparison reads no model), e.g. a two-tower run and runs from before
monitoring was on by default.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from contrastkit.cli import main
from contrastkit.eval import write_comparison
from contrastkit.eval.compare import config_differences, read_run_record
from contrastkit.train import FitConfig, fit

CHROMIUM = Path("/usr/bin/chromium")
TINY: dict[str, Any] = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 256,
    "encoder_widths": (8,),
    "encoder_strides": (2,),
    "head_hidden_dim": 16,
    "head_out_dim": 8,
    "threads": 1,
    "progress": False,
    "tensorboard": False,
    "device": "cpu",
    "precision": "fp32",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two monitored 2-epoch digits runs: NT-Xent and DCL."""
    root = tmp_path_factory.mktemp("compare-runs")
    for loss in ("ntxent", "dcl"):
        fit(FitConfig(loss=loss, temperature=0.2, out=str(root / loss), **TINY))
    return root / "ntxent", root / "dcl"


def _write_run(path: Path, config: FitConfig, epochs: list[dict[str, Any]], metrics: dict) -> Path:
    """A run directory by hand: config.json, epochs.jsonl, steps.jsonl and metrics.json."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config.to_dict()))
    (path / "epochs.jsonl").write_text("".join(json.dumps(e) + "\n" for e in epochs))
    steps = [{"step": i + 1, "epoch": i // 2 + 1, "loss": 5.0 - 0.1 * i} for i in range(6)]
    (path / "steps.jsonl").write_text("".join(json.dumps(s) + "\n" for s in steps))
    (path / "metrics.json").write_text(json.dumps(metrics))
    return path


def _two_tower(path: Path) -> Path:
    return _write_run(
        path,
        FitConfig(loss="clip", data="digits-captions", epochs=3),
        [{"epoch": e, "step": 2 * e, "loss": 4.0 - e} for e in (1, 2, 3)],
        dict(zero_shot_top1=0.61, knn_acc=0.8, final_loss=1.0, image_to_text_median_rank=7.0)
        | {"image_to_text_R@1": 0.2, "text_to_image_R@1": 0.25},
    )


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def _table(text: str, table_id: str) -> list[list[str]]:
    match = re.search(rf'<table id="{table_id}">(.*?)</table>', text, re.S)
    assert match, f"no table {table_id}"
    body = match.group(1).split("<tbody>", 1)[1]
    return [
        [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)]
        for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body, re.S)
    ]


@pytest.fixture(scope="module")
def page(runs: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The comparison of the two runs, written through the command line."""
    out = tmp_path_factory.mktemp("compare") / "cmp"
    assert main(["compare", str(runs[0]), str(runs[1]), "--out", str(out)]) == 0
    return out / "compare.html"


def test_cli_compare_overlays_two_runs(runs: tuple[Path, Path], page: Path) -> None:
    out = page.parent
    text = page.read_text(encoding="utf-8")
    pngs = ["loss.png", "knn.png", "geometry.png", "plane.png", "metrics.png"]
    for name in pngs:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Self-contained: every image embedded, byte for byte, nothing fetched.
    parser = _Collect()
    parser.feed(text)
    imgs = [a for tag, a in parser.tags if tag == "img"]
    assert sorted(str(a["data-file"]) for a in imgs) == sorted(pngs)
    for attrs in imgs:
        data = base64.b64decode(str(attrs["src"]).split(",", 1)[1], validate=True)
        assert data == (out / str(attrs["data-file"])).read_bytes()
    assert not any(tag in ("link", "script", "iframe") for tag, _ in parser.tags)
    assert "Charts not drawn" not in text
    # Final metrics side by side, one column per run, from each metrics.json.
    rows = {r[0]: r[1:] for r in _table(text, "metrics")}
    for i, run in enumerate(runs):
        metrics = json.loads((run / "metrics.json").read_text())
        assert rows["knn_acc"][i] == f"{metrics['knn_acc']:.4f}"
        assert rows["tolerance_z"][i] == f"{metrics['tolerance_z']:.4f}"
        assert rows["alignment_h"][i] == f"{metrics['alignment_h']:.4f}"
    # The configurations' differences: the loss only (out is where each run was written).
    assert _table(text, "config") == [["loss", "ntxent", "dcl"]]
    assert '<tr class="diff"><td>loss</td>' in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config_differences"] == {"loss": ["ntxent", "dcl"]}
    assert [r["name"] for r in summary["runs"]] == ["ntxent", "dcl"]


def test_two_tower_and_image_runs_side_by_side(runs: tuple[Path, Path], tmp_path: Path) -> None:
    clip = _two_tower(tmp_path / "clip")
    page = write_comparison([runs[0], clip], tmp_path / "out")
    text = page.read_text(encoding="utf-8")
    rows = {r[0]: r[1:] for r in _table(text, "metrics")}
    assert rows["zero_shot_top1"] == ["", "0.6100"]  # the image run has no zero-shot number
    assert rows["image_to_text_R@1"] == ["", "0.2000"]
    assert rows["linear_acc"][1] == ""
    assert "Not monitored in: clip." in text  # its kNN curve is missing, the other one is drawn
    diffs = dict((r[0], r[1:]) for r in _table(text, "config"))
    assert diffs["loss"] == ["ntxent", "clip"] and diffs["data"] == ["digits", "digits-captions"]


def test_unmonitored_runs_get_one_line_instead_of_a_chart(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "a", FitConfig(monitor_every=0), [{"epoch": 1, "loss": 3.0}], {})
    b = _write_run(tmp_path / "b", FitConfig(loss="dcl", monitor_every=0), [], {"knn_acc": 0.9})
    text = write_comparison([a, b], tmp_path / "out").read_text(encoding="utf-8")
    missing = re.findall(r'<ul id="missing">(.*?)</ul>', text, re.S)[0]
    assert "kNN accuracy over epochs: not drawn" in missing and "monitor_every=1" in missing
    assert "Alignment, uniformity and tolerance over epochs: not drawn" in missing
    assert not (tmp_path / "out" / "knn.png").exists()
    assert (tmp_path / "out" / "loss.png").exists()  # the steps of both runs make a curve


def test_older_runs_with_unlabelled_geometry_are_read_as_h(tmp_path: Path) -> None:
    old = [{"epoch": e, "loss": 3.0, "alignment": 0.1 * e, "uniformity": -e} for e in (1, 2, 3)]
    a = _write_run(tmp_path / "old", FitConfig(), old, {"knn_acc": 0.9})
    b = _write_run(tmp_path / "new", FitConfig(seed=1), [{"epoch": 1, "loss": 2.0}], {})
    write_comparison([a, b], tmp_path / "out", names=["before", "after"])
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert "geometry.png" in summary["charts"] and "knn.png" not in summary["charts"]
    assert [r["name"] for r in summary["runs"]] == ["before", "after"]
    assert config_differences([read_run_record(a), read_run_record(b)]) == {"seed": [0, 1]}


def test_same_folder_names_are_told_apart(tmp_path: Path) -> None:
    a = _write_run(tmp_path / "x" / "run", FitConfig(), [], {})
    b = _write_run(tmp_path / "y" / "run", FitConfig(), [], {})
    write_comparison([a, b], tmp_path / "out")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == ["x/run", "y/run"]


def test_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a = _write_run(tmp_path / "a", FitConfig(), [], {})
    b = _write_run(tmp_path / "b", FitConfig(), [], {})
    with pytest.raises(ValueError, match="between 2 and 20"):
        write_comparison([a], tmp_path / "out")
    with pytest.raises(ValueError, match="named once"):
        write_comparison([a, tmp_path / "a" / "."], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="not a contrastkit run directory"):
        write_comparison([a, tmp_path / "none"], tmp_path / "out")
    with pytest.raises(ValueError, match="one label per run"):
        write_comparison([a, b], tmp_path / "out", names=["only"])
    with pytest.raises(ValueError, match="distinct"):
        write_comparison([a, b], tmp_path / "out", names=["same", "same"])
    with pytest.raises(ValueError, match="folder of its own"):
        write_comparison([a, b], a)
    with pytest.raises(ValueError, match="holds files and no earlier comparison"):
        write_comparison([a, b], tmp_path)  # the folder holding the runs
    with pytest.raises(TypeError, match="list of run directories"):
        write_comparison(str(a), tmp_path / "out")  # type: ignore[arg-type]
    (b / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a mapping of metrics"):
        write_comparison([a, b], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing written for a refused comparison
    capsys.readouterr()
    assert main(["compare", str(a)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("contrastkit compare: error:") and err.count("\n") == 1


_CHECK = """<script>
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.querySelectorAll("img[data-file]"));
  var res = {loaded: [], broken: [], cols: document.querySelectorAll("#metrics thead th").length};
  imgs.forEach(function (im) {
    (im.complete && im.naturalWidth > 0 ? res.loaded : res.broken).push(im.getAttribute("data-file"));
  });
  var out = document.createElement("pre"); out.id = "ck-result";
  out.textContent = JSON.stringify(res); document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(
    not CHROMIUM.is_file(),
    reason="headless Chromium check needs Debian's chromium package (/usr/bin/chromium); "
    "install it with `apt-get install -y chromium`",
)
def test_page_renders_in_headless_chromium(page: Path, tmp_path: Path) -> None:
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.read_text(encoding="utf-8").replace("</body>", _CHECK + "</body>"), "utf-8"
    )
    profile = tmp_path / "profile"
    cmd = [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           "--no-first-run", f"--user-data-dir={profile}", "--virtual-time-budget=5000",
           "--dump-dom", probe.as_uri()]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    match = re.search(r'<pre id="ck-result">(.*?)</pre>', done.stdout, re.S)
    assert match, f"no result in the dumped DOM (exit {done.returncode}): {done.stderr[-2000:]}"
    result = json.loads(match.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["broken"] == [] and len(result["loaded"]) == 5
    assert result["cols"] == 3  # metric + one column per run
