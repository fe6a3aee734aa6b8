"""The application framework: seeds, statistics, the computed verdict, the registry and the CLI."""

from __future__ import annotations

import json

import pytest

from contrastkit.apps import App, AppSettings, Measured, app_names, get_app, run_app
from contrastkit.cli import main


def _toy(
    method_scores: dict[int, float], baseline_scores: dict[int, float], higher: bool = True
) -> App:
    def run(settings: AppSettings) -> dict[str, Measured]:
        return {
            "ours": Measured({"acc": method_scores[settings.seed]}, losses=[2.0, 1.0]),
            "plain": Measured({"acc": baseline_scores[settings.seed]}),
        }

    return App(
        name="toy",
        title="a toy",
        paper="nobody",
        data="none",
        claim="ours beats plain",
        method="ours",
        baselines=("plain",),
        metric="acc",
        higher_is_better=higher,
        chance=0.1,
        run=run,
    )


def test_mean_std_and_verdicts() -> None:
    report = run_app(_toy({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.5, 1: 0.5, 2: 0.5}), seeds=[0, 1, 2])
    assert report.variants["ours"].mean("acc") == pytest.approx(0.8)
    assert report.variants["ours"].std("acc") == pytest.approx(0.1)
    assert report.verdict("plain") == "held"
    assert report.variants["ours"].final_losses == [1.0, 1.0, 1.0]
    record = report.to_json()
    assert record["variants"]["plain"]["acc"]["values"] == [0.5, 0.5, 0.5]
    assert record["command"] == "contrastkit apps run toy --seeds 0 1 2"


def test_verdict_within_spread_is_unclear_and_worse_did_not_hold() -> None:
    close = run_app(_toy({0: 0.9, 1: 0.5}, {0: 0.6, 1: 0.7}), seeds=[0, 1])
    assert close.verdict("plain").startswith("unclear")
    worse = run_app(_toy({0: 0.4, 1: 0.41}, {0: 0.6, 1: 0.61}), seeds=[0, 1])
    assert worse.verdict("plain") == "did not hold"
    lower = run_app(_toy({0: 0.4, 1: 0.41}, {0: 0.6, 1: 0.61}, higher=False), seeds=[0, 1])
    assert lower.verdict("plain") == "held"
    assert run_app(_toy({0: 0.9}, {0: 0.1}), seeds=[0]).verdict("plain") == "unclear (one seed)"


def test_bad_seeds_and_unknown_names() -> None:
    with pytest.raises(ValueError, match="at least one seed"):
        run_app(_toy({}, {}), seeds=[])
    with pytest.raises(ValueError, match="integers >= 0"):
        run_app(_toy({}, {}), seeds=[-1])
    with pytest.raises(ValueError, match="unknown app 'nope'; expected one of"):
        get_app("nope")


def test_every_app_is_described() -> None:
    for name in app_names():
        app = get_app(name)
        assert app.name == name
        assert app.data.startswith(("real", "simulated")), f"{name}: say whether the data is real"
        assert app.paper and app.claim and app.baselines and app.method not in app.baselines


def test_cli_unknown_app_is_one_line_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apps", "run", "nope", "--quick"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown app 'nope'" in err


def test_cli_list_and_refuses_existing_out(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["apps", "list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert len(listed) == len(app_names())
    out = tmp_path / "r.json"
    out.write_text("precious")
    if app_names():
        assert main(["apps", "run", app_names()[0], "--quick", "--out", str(out)]) == 2
        assert out.read_text() == "precious"
        assert "--overwrite" in capsys.readouterr().err
    json.dumps({})


def test_examples_page_is_written_from_the_results() -> None:
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("bench_apps", root / "benchmarks" / "apps.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    expected = module.examples_markdown(module.load_records())
    assert (root / "docs" / "examples.md").read_text() == expected, (
        "docs/examples.md is out of date: run `python benchmarks/apps.py docs`"
    )
