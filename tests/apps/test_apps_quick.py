"""Every application's ``--quick`` form: it trains (each trained variant's loss falls) and the
method beats chance on its primary metric. The full forms are benchmark commands
(``benchmarks/apps.py``), not tests."""

from __future__ import annotations

import importlib.util
import math

import pytest

from contrastkit.apps import app_names, get_app, run_app
from contrastkit.data import find_fashion_mnist
from contrastkit.data.arrays import DatasetNotFoundError


def _fashion_mnist_present() -> bool:
    try:
        find_fashion_mnist()
    except (DatasetNotFoundError, FileNotFoundError):
        return False
    return True


@pytest.mark.parametrize("name", app_names())
def test_quick_form_trains_and_beats_chance(name: str) -> None:
    app = get_app(name)
    for package in app.needs:
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{name} needs {package}")
    if app.needs_fashion_mnist and not _fashion_mnist_present():
        pytest.skip("Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
    report = run_app(app, seeds=[0], quick=True)
    (measured,) = report.per_seed
    assert set(app.variants) <= set(measured)
    for variant, m in measured.items():
        assert all(math.isfinite(v) for v in m.metrics.values()), (variant, m.metrics)
        if len(m.losses) >= 2:
            assert m.losses[-1] < m.losses[0], f"{variant}: the loss did not fall: {m.losses}"
    value = measured[app.method].metrics[app.metric]
    assert app.better(value, app.chance), f"{app.metric} {value} does not beat chance {app.chance}"
    assert report.to_json()["verdicts"].keys() == set(app.baselines)
