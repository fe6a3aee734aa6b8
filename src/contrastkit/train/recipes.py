"""Named training recipes: YAML files shipped in ``contrastkit/recipes``, validated on load.

A recipe is a flat YAML mapping of :class:`~contrastkit.train.config.FitConfig` keys plus an
optional ``description``; its comments state the defaults of the method's source (paper, reference
code) and how the recipe adapts them to the bundled data. ``contrastkit fit RECIPE --set key=value``
overrides single keys (``loss_kwargs.NAME=value`` sets one loss argument); every value is parsed
with ``yaml.safe_load`` and checked like the file's own values. An unknown recipe, an unknown key or
a value of the wrong type is a ``ValueError`` that lists what is allowed.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from contrastkit.train.config import FitConfig, check_value_type, config_from_mapping, config_keys

__all__ = [
    "Recipe",
    "apply_overrides",
    "load_recipe",
    "parse_overrides",
    "recipe_config",
    "recipe_names",
    "recipe_text",
]

RECIPE_SUFFIXES = (".yaml", ".yml")
#: Config keys holding keyword arguments; ``--set KEY.NAME=value`` sets one of them.
KWARGS_KEYS = ("loss_kwargs", "encoder_kwargs", "pretext_kwargs", "strategy_kwargs")
_EXTRA_KEYS = ("description",)


@dataclass(frozen=True)
class Recipe:
    """A loaded, validated recipe: its name, where it came from, and its config values."""

    name: str
    source: str
    description: str
    values: dict[str, Any]

    def config(self, overrides: Mapping[str, Any] | None = None) -> FitConfig:
        """The :class:`FitConfig` of this recipe with ``overrides`` applied."""
        merged = apply_overrides(self.values, overrides or {}, source=f"recipe {self.name!r}")
        return config_from_mapping(merged, source=f"recipe {self.name!r}")


def _recipe_dir() -> Any:
    return resources.files("contrastkit") / "recipes"


def recipe_names() -> list[str]:
    """Names of the recipes shipped with the package, sorted."""
    folder = _recipe_dir()
    if not folder.is_dir():
        return []
    return sorted(
        p.name.rsplit(".", 1)[0]
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(RECIPE_SUFFIXES)
    )


def _read(name_or_path: str) -> tuple[str, str, str]:
    """``(name, source description, text)`` of a recipe given by name or path."""
    looks_like_path = name_or_path.endswith(RECIPE_SUFFIXES) or "/" in name_or_path
    path = Path(name_or_path).expanduser()
    if looks_like_path or path.is_file():
        if not path.is_file():
            raise ValueError(f"recipe file {str(path)!r} does not exist")
        return path.stem, str(path), path.read_text()
    names = recipe_names()
    if name_or_path not in names:
        close = difflib.get_close_matches(name_or_path, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown recipe {name_or_path!r}; known recipes: {', '.join(names)} "
            f"(or give the path to a .yaml file).{hint}"
        )
    for suffix in RECIPE_SUFFIXES:
        entry = _recipe_dir() / f"{name_or_path}{suffix}"
        if entry.is_file():
            return name_or_path, f"recipe {name_or_path!r}", entry.read_text()
    raise ValueError(f"recipe {name_or_path!r} is listed but cannot be read")  # pragma: no cover


def load_recipe(name_or_path: str) -> Recipe:
    """Load a shipped recipe by name, or a YAML file by path, and validate every key and type."""
    name, source, text = _read(name_or_path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ValueError(f"{source} must be a mapping of keys to values, got {type(data).__name__}")
    allowed = [*config_keys(), *_EXTRA_KEYS]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str) or key not in allowed:
            raise ValueError(
                f"{source}: unknown key {key!r}; allowed keys: {', '.join(sorted(allowed))}"
            )
        if key in _EXTRA_KEYS:
            if not isinstance(value, str):
                raise ValueError(f"{source}: key {key!r} must be a str, got {value!r}")
            continue
        values[key] = check_value_type(key, value, source=source)
    description = str(data.get("description", ""))
    config_from_mapping(values, source=source)  # whole-config checks (loss, ranges, loss_kwargs)
    return Recipe(name=name, source=source, description=description, values=values)


def recipe_text(name_or_path: str) -> str:
    """The YAML text (comments included) of a recipe, after validating it."""
    load_recipe(name_or_path)
    return _read(name_or_path)[2]


def parse_overrides(items: Iterable[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings (values with ``yaml.safe_load``) into a dict.

    ``KEY.NAME=value`` for a keyword-argument key (:data:`KWARGS_KEYS`, e.g.
    ``loss_kwargs.sigma=0.5`` or ``encoder_kwargs.J=2``) sets one entry and is merged into the
    recipe's mapping by :func:`apply_overrides`; ``KEY={...}`` replaces the whole mapping. Keys
    are checked by :func:`apply_overrides`.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ValueError(
                f"--set expects key=value, got {item!r}; allowed keys: {', '.join(config_keys())}"
            )
        try:
            value = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError as exc:
            raise ValueError(f"--set {key}: cannot parse {text!r} as a YAML value ({exc})") from exc
        parent, dot, sub = key.partition(".")
        if dot and (parent not in KWARGS_KEYS or not sub):
            raise ValueError(
                f"--set {item!r}: only {', '.join(KWARGS_KEYS)} take KEY.NAME=value (one "
                "argument), e.g. loss_kwargs.sigma=0.5"
            )
        out[key] = value
    return out


def apply_overrides(
    base: Mapping[str, Any], overrides: Mapping[str, Any], *, source: str = "config"
) -> dict[str, Any]:
    """``base`` updated with ``overrides``, each checked by key and type.

    A ``KEY.NAME`` entry (see :func:`parse_overrides`) sets one argument inside ``base[KEY]``; a
    plain key replaces the value.
    """
    merged = dict(base)
    for key, value in overrides.items():
        parent, dot, sub = key.partition(".")
        if dot and parent in KWARGS_KEYS and sub:
            inner = {**dict(merged.get(parent) or {}), sub: value}
            merged[parent] = check_value_type(parent, inner, source=f"{source} --set")
        else:
            merged[key] = check_value_type(key, value, source=f"{source} --set")
    return merged


def recipe_config(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> FitConfig:
    """Load a recipe and build its :class:`FitConfig` with ``overrides``."""
    return load_recipe(name_or_path).config(overrides)
