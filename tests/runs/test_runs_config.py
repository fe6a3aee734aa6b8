"""FitConfig defaults and rules: the loss's own temperature, strategy keys, the default run folder."""

from __future__ import annotations

from typing import Any

import pytest
from torch import nn

from contrastkit.losses import DCL, InfoNCE, LossInfo, registry
from contrastkit.runs import FitConfig, config_from_mapping, default_out_dir
from contrastkit.runs.config import STRATEGY_KWARGS
from contrastkit.train import build_loss, load_recipe, recipe_names
from contrastkit.train.strategies.runner import strategy_arguments


class SpyLoss(nn.Module):
    """A views loss that records the keyword arguments it was built with."""

    built: list[dict[str, Any]] = []  # noqa: RUF012

    def __init__(self, *, temperature: float = 0.5, reduction: str = "mean") -> None:
        super().__init__()
        SpyLoss.built.append({"temperature": temperature, "reduction": reduction})


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> type[SpyLoss]:
    monkeypatch.setitem(registry._REGISTRY, "spy", LossInfo("spy", SpyLoss, "records its kwargs"))
    SpyLoss.built = []
    return SpyLoss


def test_temperature_defaults_to_the_loss_own() -> None:
    assert FitConfig().temperature is None
    assert config_from_mapping({"loss": "dcl"}).temperature is None


def test_build_loss_passes_no_temperature_when_the_config_has_none(spy: type[SpyLoss]) -> None:
    build_loss(FitConfig(loss="spy"), dataset_size=10)
    build_loss(FitConfig(loss="spy", temperature=0.3), dataset_size=10)
    assert spy.built == [
        {"temperature": 0.5, "reduction": "none"},  # the loss's own default
        {"temperature": 0.3, "reduction": "none"},
    ]


@pytest.mark.parametrize(("loss", "cls"), [("ntxent", InfoNCE), ("dcl", DCL)])
def test_each_loss_keeps_its_documented_default(loss: str, cls: type[nn.Module]) -> None:
    built = build_loss(FitConfig(loss=loss), dataset_size=10)
    assert built.temperature == cls().temperature  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", recipe_names())
def test_every_recipe_states_its_temperature(name: str) -> None:
    # null is a statement too: the loss has no temperature (CACR, GroCo) and takes its own.
    assert "temperature" in load_recipe(name).values


@pytest.mark.parametrize("strategy", sorted(STRATEGY_KWARGS))
def test_strategy_keys_match_the_strategy_functions(strategy: str) -> None:
    assert sorted(STRATEGY_KWARGS[strategy]) == strategy_arguments(strategy)


def test_unknown_strategy_key_lists_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown strategy_kwargs key\(s\) \['clusters'\].*"):
        FitConfig(strategy="gsimclr", strategy_kwargs={"clusters": 3})


@pytest.mark.parametrize(
    ("values", "recipe", "expected"),
    [
        ({}, None, "runs/ntxent-digits"),
        ({"loss": "dcl", "data": "fashion-mnist"}, None, "runs/dcl-fashion-mnist"),
        ({"data": "/tmp/arrays/points.npz"}, None, "runs/ntxent-points"),
        ({"loss": "dcl"}, "simclr", "runs/simclr-digits"),
    ],
)
def test_default_out_dir(values: dict[str, Any], recipe: str | None, expected: str) -> None:
    assert default_out_dir(values, recipe=recipe) == expected
