"""The seed papers' systems, runnable end to end: ``contrastkit apps run NAME [--quick]``.

Each public module of this package is one system (video, control, sensors, segmentation,
image–text...): it defines ``APP``, an :class:`App` that names the paper, says what its data is
(real, from a package that ships it offline, or simulated by a seeded generator it describes), trains
the paper's method and a baseline on the training core (:func:`contrastkit.train.train_custom`) and
measures both. :func:`run_app` runs it over seeds and gives an :class:`AppReport` whose verdict on
the paper's claim is computed from the means and spreads, never typed. The full forms' results are
in ``benchmarks/results/apps/`` and ``docs/examples.md``.

Example:
    >>> from contrastkit.apps import app_names, get_app
    >>> "cvrl" in app_names()  # doctest: +SKIP
    True
"""

from contrastkit.apps._app import (
    App,
    AppReport,
    AppSettings,
    Measured,
    VariantStats,
    app_names,
    get_app,
    run_app,
)

__all__ = [
    "App",
    "AppReport",
    "AppSettings",
    "Measured",
    "VariantStats",
    "app_names",
    "get_app",
    "run_app",
]
