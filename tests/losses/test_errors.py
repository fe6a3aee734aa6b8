"""Bad input fails at the boundary with a ValueError/TypeError that says what was expected
(DESIGN.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor

from contrastkit import losses
from contrastkit.losses import DCL, DCLW, CLIPLoss, InfoNCE, SupCon

VIEW_LOSSES: dict[str, Callable[..., torch.nn.Module]] = {
    "InfoNCE": InfoNCE,
    "SupCon": SupCon,
    "DCL": DCL,
    "DCLW": DCLW,
}
NAMES = list(VIEW_LOSSES)


def good_views(n: int = 4, v: int = 2, d: int = 3) -> Tensor:
    return torch.randn(n, v, d, generator=torch.Generator().manual_seed(0))


def run(name: str, views: object, labels: object = None) -> Tensor:
    loss = VIEW_LOSSES[name]()
    if name == "SupCon" and labels is None:
        labels = torch.arange(4)
    return loss(views, labels) if labels is not None else loss(views)


# --------------------------------------------------------------------------------------------------
# views
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(8, 3), (8,), (2, 4, 2, 3)])
@pytest.mark.parametrize("name", NAMES)
def test_views_of_wrong_rank(name: str, shape: tuple[int, ...]) -> None:
    x = torch.randn(*shape)
    with pytest.raises(ValueError, match=r"\(N, V, D\)") as info:
        run(name, x)
    assert str(tuple(shape)) in str(info.value)  # says what came


@pytest.mark.parametrize("name", NAMES)
def test_views_not_a_tensor(name: str) -> None:
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        run(name, [[[0.0, 1.0], [1.0, 0.0]]])


@pytest.mark.parametrize("name", NAMES)
def test_integer_views(name: str) -> None:
    with pytest.raises(TypeError, match="floating-point"):
        run(name, torch.ones(4, 2, 3, dtype=torch.int64))


@pytest.mark.parametrize("name", ["InfoNCE", "DCL", "DCLW"])
def test_single_view_without_labels(name: str) -> None:
    with pytest.raises(ValueError, match=r"at least 2 views.*V = 1"):
        run(name, good_views(v=1))


def test_supcon_without_labels() -> None:
    with pytest.raises(ValueError, match=r"labels of shape \(N,\)"):
        SupCon()(good_views(), None)


def test_empty_batch() -> None:
    with pytest.raises(ValueError, match="N >= 1"):
        InfoNCE()(torch.randn(0, 2, 3))


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
@pytest.mark.parametrize("name", NAMES)
def test_non_finite_views(name: str, bad: float) -> None:
    x = good_views()
    x[1, 0, 2] = bad
    with pytest.raises(ValueError, match="must be finite") as info:
        run(name, x)
    msg = str(info.value)
    assert ("1 NaN" in msg) if bad != bad else ("1 inf" in msg)


# --------------------------------------------------------------------------------------------------
# constructor arguments
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 0.0, -0.1, float("inf"), float("nan")])
@pytest.mark.parametrize("name", NAMES)
def test_temperature_must_be_positive(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=r"temperature must be a finite number > 0"):
        VIEW_LOSSES[name](temperature=value)


@pytest.mark.parametrize("value", ["0.1", None, True, torch.tensor(0.1)])
def test_temperature_must_be_a_number(value: object) -> None:
    with pytest.raises(TypeError, match="temperature must be a number"):
        InfoNCE(temperature=value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("factory", "kwarg"),
    [
        (SupCon, "base_temperature"),
        (DCLW, "sigma"),
        (CLIPLoss, "init_temperature"),
        (CLIPLoss, "max_logit_scale"),
    ],
)
@pytest.mark.parametrize("value", [0.0, -1.0])
def test_other_positive_arguments(
    factory: Callable[..., torch.nn.Module], kwarg: str, value: float
) -> None:
    with pytest.raises(ValueError, match=rf"{kwarg} must be a finite number > 0"):
        factory(**{kwarg: value})


@pytest.mark.parametrize("name", [*NAMES, "CLIPLoss"])
@pytest.mark.parametrize("reduction", ["avg", "MEAN", "", None])
def test_unknown_reduction(name: str, reduction: object) -> None:
    factory: Callable[..., torch.nn.Module] = CLIPLoss if name == "CLIPLoss" else VIEW_LOSSES[name]
    with pytest.raises(ValueError, match=r"reduction must be one of 'mean', 'sum', 'none'"):
        factory(reduction=reduction)


@pytest.mark.parametrize(
    ("chunk", "exc", "match"),
    # one rule for integer arguments (check_int): a non-integer is a TypeError, an integer out of
    # range a ValueError
    [
        (0, ValueError, r"chunk_size must be an int >= 1 or None, got 0"),
        (-3, ValueError, r"chunk_size must be an int >= 1 or None, got -3"),
        (2.5, TypeError, r"chunk_size must be an int or None, got float"),
        (True, TypeError, r"chunk_size must be an int or None, got bool"),
        ("8", TypeError, r"chunk_size must be an int or None, got str"),
        (torch.tensor(8), TypeError, r"chunk_size must be an int or None, got Tensor"),
    ],
)
@pytest.mark.parametrize("name", [*NAMES, "CLIPLoss"])
def test_bad_chunk_size(name: str, chunk: object, exc: type[Exception], match: str) -> None:
    factory: Callable[..., torch.nn.Module] = CLIPLoss if name == "CLIPLoss" else VIEW_LOSSES[name]
    with pytest.raises(exc, match=match):
        factory(chunk_size=chunk)


def test_supcon_bad_choices() -> None:
    with pytest.raises(ValueError, match=r"variant must be one of 'out', 'in'; got 'both'"):
        SupCon(variant="both")
    with pytest.raises(
        ValueError, match=r"anchors_without_positives must be one of 'zero', 'drop'"
    ):
        SupCon(anchors_without_positives="skip")


def test_clip_bad_arguments() -> None:
    with pytest.raises(ValueError, match="label_smoothing must be < 1"):
        CLIPLoss(label_smoothing=1.0)
    with pytest.raises(ValueError, match=r"label_smoothing must lie in \[0, 1\]"):
        CLIPLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="max_logit_scale must be >= 1"):
        CLIPLoss(max_logit_scale=0.5)


# --------------------------------------------------------------------------------------------------
# labels
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "labels", [torch.arange(3), torch.arange(5), torch.zeros(4, 1, dtype=torch.long)]
)
@pytest.mark.parametrize("name", ["InfoNCE", "SupCon", "DCL"])
def test_labels_of_wrong_length(name: str, labels: Tensor) -> None:
    with pytest.raises(
        ValueError, match=r"labels must have shape \(4,\), one per instance"
    ) as info:
        run(name, good_views(), labels)
    assert str(tuple(labels.shape)) in str(info.value)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bool])
@pytest.mark.parametrize("name", ["InfoNCE", "SupCon", "DCL"])
def test_labels_must_be_integers(name: str, dtype: torch.dtype) -> None:
    labels = torch.tensor([0, 1, 0, 1]).to(dtype)
    with pytest.raises(TypeError, match="labels must be an integer tensor") as info:
        run(name, good_views(), labels)
    assert str(dtype) in str(info.value)


@pytest.mark.parametrize("name", ["InfoNCE", "SupCon", "DCL"])
def test_labels_not_a_tensor(name: str) -> None:
    with pytest.raises(TypeError, match=r"labels must be a torch\.Tensor"):
        run(name, good_views(), [0, 1, 0, 1])


def test_dclw_rejects_labels() -> None:
    with pytest.raises(ValueError, match="takes no labels"):
        DCLW()(good_views(), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("dtype", [torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8])
def test_any_integer_label_dtype_is_accepted(dtype: torch.dtype) -> None:
    """docs/methods.md, section 2.3(e): accept labels of any integer type (same result as int64)."""
    x = good_views()
    labels = torch.tensor([3, 1, 3, 2])
    expected = SupCon()(x, labels)
    torch.testing.assert_close(SupCon()(x, labels.to(dtype)), expected)


# --------------------------------------------------------------------------------------------------
# CLIP inputs
# --------------------------------------------------------------------------------------------------


def test_clip_wrong_rank() -> None:
    with pytest.raises(ValueError, match=r"image must have shape \(N, D\); got shape \(4, 2, 3\)"):
        CLIPLoss()(torch.randn(4, 2, 3), torch.randn(4, 3))
    with pytest.raises(ValueError, match=r"text must have shape \(N, D\)"):
        CLIPLoss()(torch.randn(4, 3), torch.randn(4))


def test_clip_mismatched_pairs_and_dims() -> None:
    with pytest.raises(ValueError, match="same number of pairs; got 4 and 5"):
        CLIPLoss()(torch.randn(4, 3), torch.randn(5, 3))
    with pytest.raises(ValueError, match=r"text must have embedding dim 3; got shape \(4, 6\)"):
        CLIPLoss()(torch.randn(4, 3), torch.randn(4, 6))


@pytest.mark.parametrize("which", ["image", "text"])
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_clip_non_finite(which: str, bad: float) -> None:
    img, txt = torch.randn(4, 3), torch.randn(4, 3)
    (img if which == "image" else txt)[2, 1] = bad
    with pytest.raises(ValueError, match=rf"{which} must be finite"):
        CLIPLoss()(img, txt)


def test_clip_integer_input() -> None:
    with pytest.raises(TypeError, match="floating-point"):
        CLIPLoss()(torch.ones(4, 3, dtype=torch.long), torch.randn(4, 3))


# --------------------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------------------


def test_get_loss_unknown_name_lists_known_names() -> None:
    with pytest.raises(ValueError, match="unknown loss 'nope'") as info:
        losses.get_loss("nope")
    msg = str(info.value)
    for name in ("ntxent", "supcon", "dcl", "dclw", "clip"):
        assert name in msg


def test_get_loss_known_names_and_aliases() -> None:
    assert isinstance(losses.get_loss("ntxent", temperature=0.2), InfoNCE)
    assert isinstance(losses.get_loss("simclr"), InfoNCE)
    assert isinstance(losses.get_loss("supcon"), SupCon)
    assert isinstance(losses.get_loss("dcl"), DCL)
    assert isinstance(losses.get_loss("dclw"), DCLW)
    assert isinstance(losses.get_loss("clip"), CLIPLoss)
    with pytest.raises(ValueError, match="temperature must be a finite number > 0"):
        losses.get_loss("ntxent", temperature=-1.0)


# --------------------------------------------------------------------------------------------------
# silent failures that should be boundary errors
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("factory", "views", "labels"),
    [
        (DCL, torch.randn(1, 2, 3), None),
        (DCLW, torch.randn(1, 2, 3), None),
        (DCL, torch.randn(3, 2, 3), torch.tensor([5, 5, 5])),
    ],
)
def test_dcl_without_negatives_raises(
    factory: Callable[..., torch.nn.Module], views: Tensor, labels: Tensor | None
) -> None:
    loss = factory()
    with pytest.raises(ValueError, match="negative"):
        loss(views) if labels is None else loss(views, labels)
