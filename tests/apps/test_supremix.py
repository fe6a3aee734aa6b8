"""The rotated-digits regression data of the supremix app."""

from __future__ import annotations

import torch

from contrastkit.apps.supremix import MAX_ANGLE, rotate, rotated_digits


def test_rotate_by_zero_is_identity_and_by_ninety_turns_a_bar() -> None:
    x = torch.zeros(1, 1, 9, 9)
    x[0, 0, 4, :] = 1.0  # a horizontal bar
    assert torch.allclose(rotate(x, torch.zeros(1)), x, atol=1e-5)
    turned = rotate(x, torch.tensor([90.0]))
    assert float(turned[0, 0, :, 4].sum()) > 7 and float(turned[0, 0, 1, :].sum()) < 1.5


def test_rotated_digits_are_seeded_and_in_range() -> None:
    x_tr, y_tr, _x_te, y_te = rotated_digits(0)
    assert x_tr.shape[1:] == (1, 20, 20) and len(x_tr) == len(y_tr)
    assert float(y_tr.abs().max()) <= MAX_ANGLE and float(y_te.abs().max()) <= MAX_ANGLE
    again = rotated_digits(0)
    assert torch.equal(again[1], y_tr) and torch.equal(again[0], x_tr)
    assert not torch.equal(rotated_digits(1)[1][: len(y_tr)], y_tr)
