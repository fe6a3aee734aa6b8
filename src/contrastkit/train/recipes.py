"""Named training recipes: YAML files shipped in ``contrastkit/recipes``, validated on load.

A recipe is a flat YAML mapping of :class:`~contrastkit.train.config.FitConfig` keys plus an
optional ``description``; its comments state the defaults of the method's source (paper, reference
code) and how the recipe adapts them to the bundled data. ``contrastkit fit RECIPE --set key=value``
overrides single keys (``loss_kwargs.NAME=value`` sets one loss argument); every value is parsed
with :func:`load_yaml` (safe YAML) and checked like the file's own values. An unknown recipe, an
unknown key, a key given twice (PyYAML alone would keep the last value silently) or a value of the
wrong type is a ``ValueError`` that names the file and lists what is allowed.
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
    "UniqueKeyLoader",
    "apply_overrides",
    "load_recipe",
    "load_yaml",
    "parse_overrides",
    "recipe_config",
    "recipe_names",
    "recipe_text",
]

RECIPE_SUFFIXES = (".yaml", ".yml")
#: Config keys holding keyword arguments; ``--set KEY.NAME=value`` sets one of them.
KWARGS_KEYS = ("loss_kwargs", "encoder_kwargs", "pretext_kwargs", "strategy_kwargs")
_EXTRA_KEYS = ("description",)


class UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML's ``SafeLoader`` that refuses a mapping with a repeated key.

    YAML requires the keys of a mapping to be unique, but PyYAML keeps the last of two equal keys
    without a word, so ``epochs: 1`` followed later by ``epochs: 3`` would train for 3 epochs.
    Merge keys (``<<: *base``) may still be overridden by the mapping's own keys.
    """


def _construct_unique_mapping(
    loader: UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False
) -> dict[Any, Any]:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        line = key_node.start_mark.line + 1
        try:
            first = seen.get(key)
        except TypeError:  # an unhashable key: the base constructor reports it
            continue
        if first is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (line {first} and line {line}); each key may appear once",
                key_node.start_mark,
            )
        seen[key] = line
    return loader.construct_mapping(node, deep=deep)


UniqueKeyLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_unique_mapping,
)


def load_yaml(text: str, source: str) -> Any:
    """Parse YAML ``text`` safely (no Python objects), refusing repeated keys.

    Args:
        text: The document.
        source: Where it comes from (a file, ``--set KEY``), for the message.

    Returns:
        The parsed value.

    Raises:
        ValueError: Invalid YAML, a repeated key (its name and lines), or nesting too deep to
            parse; the message starts with ``source``.
    """
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # a SafeLoader: no Python objects
    except yaml.constructor.ConstructorError as exc:
        if exc.problem and exc.problem.startswith("duplicate key"):
            raise ValueError(f"{source}: {exc.problem}") from None
        raise ValueError(f"{source} is not valid YAML: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ValueError(f"{source} is not valid YAML: {exc}") from exc
    except RecursionError:
        raise ValueError(f"{source}: YAML nested too deeply to read") from None


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
    data = load_yaml(text, source)
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
        value = load_yaml(text, f"--set {key}") if text.strip() else None
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
