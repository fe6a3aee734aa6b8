"""Every loss documents itself with a runnable example.

The examples themselves run as doctests: ``pyproject.toml`` collects ``src/contrastkit/losses`` with
``--doctest-modules``. This file checks that each loss *has* one, so that a new loss without an
example fails here, and that each docstring cites its formula and paper.
"""

from __future__ import annotations

import doctest
import inspect

import pytest
from torch import nn

import contrastkit.losses as losses
from contrastkit.losses import loss_info, loss_names


def _own_doc(cls: type) -> str:
    """The class's own docstring (not one inherited from a base class)."""
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def _loss_classes() -> dict[str, type]:
    """Registered losses defined in contrastkit.losses, and every public nn.Module class there."""
    classes: dict[str, type] = {}
    for name in loss_names():
        factory = loss_info(name).factory
        if isinstance(factory, type) and factory.__module__.startswith("contrastkit.losses"):
            classes[factory.__qualname__] = factory
    for name in losses.__all__:
        obj = getattr(losses, name)
        if isinstance(obj, type) and issubclass(obj, nn.Module):
            classes[obj.__qualname__] = obj
    return dict(sorted(classes.items()))


LOSS_CLASSES = _loss_classes()


def test_every_registered_loss_is_covered() -> None:
    assert len(LOSS_CLASSES) >= 36
    for name in loss_names():
        factory = loss_info(name).factory
        if factory.__module__.startswith("contrastkit.losses"):
            assert factory in LOSS_CLASSES.values(), name


@pytest.mark.parametrize("cls", LOSS_CLASSES.values(), ids=list(LOSS_CLASSES))
def test_loss_docstring_has_a_runnable_example(cls: type) -> None:
    doc = _own_doc(cls)
    assert doc, f"{cls.__qualname__} has no docstring of its own"
    assert "\nExample:\n" in doc or "\nExamples:\n" in doc, (
        f"{cls.__qualname__}'s docstring needs an 'Example:' section (Google style) with a `>>>` "
        "example that builds the loss and calls it"
    )
    examples = doctest.DocTestParser().get_examples(doc)
    assert examples, f"{cls.__qualname__}'s docstring has no `>>>` example"
    source = "".join(e.source for e in examples)
    assert cls.__name__ in source, f"the example of {cls.__qualname__} does not use the class"


@pytest.mark.parametrize("cls", LOSS_CLASSES.values(), ids=list(LOSS_CLASSES))
def test_loss_docstring_cites_a_paper(cls: type) -> None:
    doc = _own_doc(cls)
    assert "Paper" in doc or "paper" in doc or ":class:" in doc, (
        f"{cls.__qualname__}'s docstring should cite its paper (title, year) or its base class"
    )


def test_no_reference_to_files_outside_the_repository() -> None:
    for module in {inspect.getmodule(cls) for cls in LOSS_CLASSES.values()}:
        assert module is not None
        text = inspect.getsource(module)
        assert "METHODS.md" not in text, module.__name__
        assert "/work/" not in text, module.__name__
