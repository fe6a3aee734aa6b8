"""``contrastkit losses`` and ``contrastkit recipes``: what can be trained, and how."""

from __future__ import annotations

import argparse

from contrastkit.losses import loss_info, loss_names
from contrastkit.train.recipes import load_recipe, recipe_names, recipe_text

__all__ = ["add_parsers"]


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Add the ``losses`` and ``recipes`` sub-commands to ``sub``."""
    sub.add_parser("losses", help="list the available losses").set_defaults(handler=run_losses)
    p = sub.add_parser("recipes", help="list the training recipes, or print one")
    p.add_argument("name", nargs="?", default=None, help="print this recipe's YAML")
    p.set_defaults(handler=run_recipes)


def run_losses(args: argparse.Namespace) -> int:
    """One line per registered loss: its name, how it is fed, and what it is (aligned columns)."""
    infos = [loss_info(name) for name in loss_names()]
    name_width = max((len(info.name) for info in infos), default=0)
    kind_width = max((len(info.input_kind) for info in infos), default=0)
    for info in infos:
        print(f"{info.name:<{name_width}}  {info.input_kind:<{kind_width}}  {info.summary}")
    return 0


def run_recipes(args: argparse.Namespace) -> int:
    """One line per shipped recipe, or the YAML text of the one named."""
    if args.name is not None:
        print(recipe_text(args.name), end="")
        return 0
    recipes = [load_recipe(name) for name in recipe_names()]
    name_width = max((len(recipe.name) for recipe in recipes), default=0)
    loss_width = max((len(str(recipe.values.get("loss", ""))) for recipe in recipes), default=0)
    for recipe in recipes:
        loss = str(recipe.values.get("loss", ""))
        print(f"{recipe.name:<{name_width}}  {loss:<{loss_width}}  {recipe.description}")
    return 0
