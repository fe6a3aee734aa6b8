"""The optional UMAP map beside t-SNE in the run report (the ``umap`` extra)."""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch

from contrastkit.cli import build_parser
from contrastkit.eval import MissingExtraError, write_report
from contrastkit.eval.report import _plot_embedding, _Plotter, _umap
from contrastkit.train import FitConfig, fit


class _FakeUMAP:
    """Records its arguments; maps to the first two coordinates."""

    calls: ClassVar[list[dict[str, object]]] = []

    def __init__(self, **kwargs: object) -> None:
        _FakeUMAP.calls.append(kwargs)

    def fit_transform(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x[:, :2])


def test_umap_map_uses_normalised_features_and_the_seed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", types.SimpleNamespace(UMAP=_FakeUMAP))
    feats = torch.tensor([[3.0, 4.0, 0.0], [0.0, 2.0, 0.0], [1.0, 0.0, 0.0]])
    out = _umap(feats, seed=7)
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    assert _FakeUMAP.calls[-1] == {"n_components": 2, "n_neighbors": 2, "random_state": 7}


def test_missing_umap_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "umap", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'contrastkit\[umap\]'"):
        _umap(torch.ones(4, 2), seed=0)


def test_two_maps_side_by_side(tmp_path: Path) -> None:
    pts = np.random.default_rng(0).normal(size=(30, 2))
    labels = np.arange(30) % 3
    fig = _plot_embedding(_Plotter(tmp_path), [("t-SNE", pts), ("UMAP", pts)], labels, 30, 3)
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["t-SNE of the test features h (30 of 30 points)",
                      "UMAP of the test features h (30 of 30 points)"]  # fmt: skip
    one = _plot_embedding(_Plotter(tmp_path), [("t-SNE", None)], labels, 3, 3)
    assert len(one.axes) == 1


def test_report_command_has_a_umap_flag() -> None:
    parser = build_parser()
    assert parser.parse_args(["report", "runs/x", "--umap"]).umap is True
    assert parser.parse_args(["report", "runs/x"]).umap is False
    with pytest.raises(TypeError, match="umap"):
        write_report("runs/none", umap="yes")  # type: ignore[arg-type]


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("umap") is None,
    reason="the UMAP map needs umap-learn: pip install 'contrastkit[umap]'",
)
def test_report_with_a_real_umap_map(tmp_path: Path) -> None:
    """umap-learn compiles its numba code on first use: about 20 s on the 2-core CPU."""
    out = tmp_path / "run"
    fit(FitConfig(data="digits", epochs=2, encoder_widths=(8,), encoder_strides=(2,),
                  head_hidden_dim=16, head_out_dim=8, progress=False, tensorboard=False,
                  device="cpu", precision="fp32", out=str(out)))  # fmt: skip
    page = write_report(out, max_points=200, umap=True).read_text(encoding="utf-8")
    assert "2-D embedding maps (t-SNE and UMAP)" in page
