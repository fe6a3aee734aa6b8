"""Probes of what a representation holds: per layer, and per attribute.

- :func:`collect_features`: the outputs of named layers of a model (forward hooks), e.g. the
  pre-projection features ``h`` (the encoder's output), the post-projection ``z`` (the head's
  output) and the intermediate layers of the projection head.
- :func:`layerwise_probe`: linear-probe accuracy of each of those layers. Xue et al., "Investigating
  the Benefits of Projection Head for Representation Learning" (ICLR 2024; docs/methods.md 2.8, 2.9)
  compare exactly these: features before the head are usually better for downstream tasks, because
  the head lets the loss down-weight features that the encoder keeps.
- :func:`attribute_probe`: linear-probe accuracy of each of several attributes of the same images
  from the same features, the generic form of the feature-suppression probe of "Learning the
  Unlearned: Mitigating Feature Suppression in Contrastive Learning" (MCL, 2024; docs/methods.md 2.8).
  An attribute whose accuracy stays near chance is one the representation suppressed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from contrastkit._validation import check_finite
from contrastkit.eval.features import (
    _as_features,
    _as_labels,
    _as_tensor,
    _check_int,
    _module_device,
)
from contrastkit.eval.linear import linear_probe

__all__ = [
    "LAYER_ALIASES",
    "attribute_probe",
    "collect_features",
    "layerwise_probe",
    "probe_layers",
]

#: Short names for the two standard layers of a :class:`~contrastkit.models.ContrastiveModel`.
LAYER_ALIASES = {"h": "encoder", "z": "head"}

Labelled = Any  # an ArrayDataset, or an (images, labels) pair


def _resolve(model: nn.Module, layers: Sequence[str]) -> list[tuple[str, nn.Module]]:
    if isinstance(layers, str) or not isinstance(layers, Sequence) or len(layers) == 0:
        raise ValueError(f"layers must be a non-empty list of module names; got {layers!r}")
    modules = dict(model.named_modules())
    out: list[tuple[str, nn.Module]] = []
    for name in layers:
        if not isinstance(name, str):
            raise TypeError(f"layer names must be str, got {type(name).__name__}: {name!r}")
        target = LAYER_ALIASES.get(name, name)
        if target not in modules or target == "":
            names = [n for n in modules if n]
            shown = ", ".join(names[:30]) + (", ..." if len(names) > 30 else "")
            raise ValueError(
                f"the model has no layer named {name!r}; expected one of: {shown} "
                f"(or the aliases {', '.join(LAYER_ALIASES)} for encoder/head)"
            )
        if name in (n for n, _ in out):
            raise ValueError(f"layer {name!r} is listed twice")
        out.append((name, modules[target]))
    return out


def probe_layers(model: nn.Module) -> list[str]:
    """The layers a projection-head study probes: ``h``, the head's inner layers, ``z``.

    For a model with ``encoder`` and ``head`` submodules (a
    :class:`~contrastkit.models.ContrastiveModel`) this is ``["h", <every leaf module of the head
    except the last, in order>, "z"]``; e.g. ``["h", "head.net.0", "head.net.1", "z"]`` for the
    SimCLR MLP head (hidden pre-activation, hidden post-ReLU). A parameter-free head (no inner
    layers) gives ``["h", "z"]``.

    Raises:
        ValueError: If the model has no ``encoder`` and ``head``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    head = getattr(model, "head", None)
    if not isinstance(getattr(model, "encoder", None), nn.Module) or not isinstance(
        head, nn.Module
    ):
        raise ValueError(
            "probe_layers needs a model with `encoder` and `head` submodules (a "
            f"ContrastiveModel); got {type(model).__name__}: name the layers yourself"
        )
    leaves = [f"head.{n}" for n, m in head.named_modules() if n and not list(m.children())]
    return ["h", *leaves[:-1], "z"]


@torch.no_grad()
def collect_features(
    model: nn.Module,
    images: Tensor | np.ndarray,
    layers: Sequence[str] = ("h", "z"),
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    pool: bool = False,
) -> dict[str, Tensor]:
    """Run ``model`` over ``images`` and collect the outputs of the named layers (forward hooks).

    The model runs in eval mode without grad; every submodule gets its train/eval flag back
    afterwards, and the hooks are removed (also when the model raises). Each hooked output is
    copied when the hook fires, so an in-place op after it (e.g. ``ReLU(inplace=True)``) does not
    change what is collected. If a layer returns a tuple, its first element is used.

    Args:
        model: The network, e.g. a :class:`~contrastkit.models.ContrastiveModel`.
        images: Inputs ``(N, ...)``, sent to ``device`` one batch at a time.
        layers: Module names as in ``model.named_modules()`` (e.g. ``"head.net.1"``), or the
            aliases ``"h"`` (``"encoder"``) and ``"z"`` (``"head"``). :func:`probe_layers` lists
            the projection-head layers.
        batch_size: Rows per forward pass.
        device: Where to run; ``None`` uses the device of the model's first parameter.
        pool: Average outputs with more than two dimensions over their trailing (spatial) axes,
            giving ``(N, C)``; otherwise they are flattened to ``(N, -1)``.

    Returns:
        ``{name: (N, F_name) float32 CPU tensor}`` in the order of ``layers`` (keys as given).

    Raises:
        ValueError: On an unknown or repeated layer name, a layer that the forward pass never
            calls, empty input, or a non-finite output.
        TypeError: If ``model`` is not an ``nn.Module``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    targets = _resolve(model, layers)
    x = _as_tensor(images, "images")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"images must have shape (N, ...) with N >= 1; got shape {tuple(x.shape)}")
    if x.is_floating_point():
        check_finite(x, "images")
    batch_size = _check_int(batch_size, "batch_size")
    dev = torch.device(device) if device is not None else _module_device(model)

    current: dict[str, Tensor] = {}

    def make_hook(name: str) -> Any:
        def hook(module: nn.Module, inputs: Any, output: Any) -> None:
            while isinstance(output, tuple | list) and output:
                output = output[0]
            if not isinstance(output, Tensor):
                raise TypeError(
                    f"layer {name!r} returned {type(output).__name__}; expected a tensor"
                )
            out = output.detach()
            if out.dim() > 2 and pool:
                out = out.float().mean(dim=tuple(range(2, out.dim())))
            current[name] = out.reshape(out.shape[0], -1).to("cpu", torch.float32, copy=True)

        return hook

    collected: dict[str, list[Tensor]] = {name: [] for name, _ in targets}
    modes = [(m, m.training) for m in model.modules()]
    handles: list[RemovableHandle] = []
    try:
        for name, module in targets:
            handles.append(module.register_forward_hook(make_hook(name)))
        model.eval()
        for start in range(0, x.shape[0], batch_size):
            batch = x[start : start + batch_size].to(dev, non_blocking=True)
            current.clear()
            model(batch)
            for name, _ in targets:
                if name not in current:
                    raise ValueError(
                        f"layer {name!r} was not called by the model's forward pass; "
                        "choose a layer that the forward pass uses"
                    )
                out = current[name]
                if out.shape[0] != batch.shape[0]:
                    raise ValueError(
                        f"layer {name!r} returned {out.shape[0]} rows for a batch of "
                        f"{batch.shape[0]}; expected one row per input"
                    )
                collected[name].append(out)
    finally:
        for handle in handles:
            handle.remove()
        for module, mode in modes:
            module.training = mode
    return {
        name: check_finite(torch.cat(parts).contiguous(), f"output of layer {name!r}")
        for name, parts in collected.items()
    }


def _images_labels(data: Labelled, name: str) -> tuple[Tensor, Tensor]:
    images = getattr(data, "images", None)
    labels = getattr(data, "labels", None)
    if images is None or labels is None:
        if isinstance(data, tuple | list) and len(data) == 2:
            images, labels = data
        else:
            raise TypeError(
                f"{name} must be an ArrayDataset or an (images, labels) pair; "
                f"got {type(data).__name__}"
            )
    x = _as_tensor(images, f"{name} images")
    if x.dim() < 1 or x.shape[0] < 1:
        raise ValueError(f"{name} images must have shape (N, ...), N >= 1; got {tuple(x.shape)}")
    return x, _as_labels(labels, x.shape[0], f"{name} labels")


def layerwise_probe(
    model: nn.Module,
    train: Labelled,
    test: Labelled,
    layers: Sequence[str] | None = None,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    pool: bool = False,
    **probe_kwargs: Any,
) -> dict[str, float]:
    """Linear-probe test accuracy of the features of each layer (the projection-head study).

    For each layer, :func:`~contrastkit.eval.linear_probe` (L2 chosen on a held-out split of the
    training set) is fitted on the training images' layer outputs and tested on the test images'.

    Args:
        model: The network (e.g. a trained :class:`~contrastkit.models.ContrastiveModel`).
        train: Labelled training images: an :class:`~contrastkit.data.ArrayDataset` or an
            ``(images, labels)`` pair.
        test: Labelled test images, in the same form.
        layers: Layers to probe (see :func:`collect_features`); ``None`` uses
            :func:`probe_layers` (``h``, the head's inner layers, ``z``).
        batch_size: Rows per forward pass.
        device: Where to run the model.
        pool: Average the spatial axes of convolutional outputs (see :func:`collect_features`).
        **probe_kwargs: Passed to :func:`~contrastkit.eval.linear_probe` (e.g. ``weight_decays``).

    Returns:
        ``{layer: test accuracy}`` in the order of ``layers``.
    """
    names = probe_layers(model) if layers is None else list(layers)
    x_train, y_train = _images_labels(train, "train")
    x_test, y_test = _images_labels(test, "test")
    f_train = collect_features(
        model, x_train, names, batch_size=batch_size, device=device, pool=pool
    )
    f_test = collect_features(model, x_test, names, batch_size=batch_size, device=device, pool=pool)
    return {
        name: float(
            linear_probe(f_train[name], y_train, f_test[name], y_test, **probe_kwargs).accuracy
        )
        for name in names
    }


def attribute_probe(
    features: Tensor | np.ndarray,
    attributes: Mapping[str, Tensor | np.ndarray],
    *,
    test_features: Tensor | np.ndarray | None = None,
    test_attributes: Mapping[str, Tensor | np.ndarray] | None = None,
    test_fraction: float = 0.3,
    seed: int = 0,
    **probe_kwargs: Any,
) -> dict[str, float]:
    """Linear-probe accuracy of each attribute from the same features (feature suppression).

    Every attribute (an integer label per sample: a class, a colour, a position bin, ...) gets its
    own :func:`~contrastkit.eval.linear_probe` on the same features. Either pass a separate test set
    (``test_features`` and ``test_attributes`` with the same keys), or one set that is split once,
    at random with ``seed``, into a training part and a test part of ``test_fraction`` (the same
    split for every attribute, so the accuracies are comparable).

    Compare each accuracy with its chance level (the frequency of the most common value): an
    attribute near chance is suppressed by the representation (MCL, 2024).

    Args:
        features: ``(N, D)`` features.
        attributes: ``{name: (N,) integer labels}``, at least one.
        test_features: Optional ``(M, D)`` test features.
        test_attributes: ``{name: (M,) integer labels}`` with the keys of ``attributes`` (required
            with ``test_features``).
        test_fraction: Share of the samples held out when no test set is given, in ``(0, 1)``.
        seed: Seed of that split and of the probe's validation split.
        **probe_kwargs: Passed to :func:`~contrastkit.eval.linear_probe`.

    Returns:
        ``{attribute: test accuracy}`` in the order of ``attributes``.

    Raises:
        ValueError: On mismatched lengths or keys, a bad ``test_fraction``, or an attribute with a
            single value in the training part (named in the message).
    """
    x = _as_features(features, "features", min_rows=2)
    if not isinstance(attributes, Mapping) or not attributes:
        raise ValueError(
            "attributes must be a non-empty mapping {name: (N,) integer labels}; "
            f"got {attributes!r}"
        )
    labels = {
        str(k): _as_labels(v, x.shape[0], f"attributes[{k!r}]") for k, v in attributes.items()
    }
    seed = _check_int(seed, "seed", minimum=0)
    if (test_features is None) != (test_attributes is None):
        raise ValueError("give test_features and test_attributes together, or neither")
    if test_features is not None and test_attributes is not None:
        x_test = _as_features(test_features, "test_features")
        if not isinstance(test_attributes, Mapping) or set(map(str, test_attributes)) != set(
            labels
        ):
            got = sorted(map(str, test_attributes)) if isinstance(test_attributes, Mapping) else []
            raise ValueError(
                f"test_attributes must have the keys of attributes {sorted(labels)}; got {got}"
            )
        test_labels = {
            str(k): _as_labels(v, x_test.shape[0], f"test_attributes[{k!r}]")
            for k, v in test_attributes.items()
        }
        x_train, train_labels = x, labels
    else:
        if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float):
            raise TypeError(f"test_fraction must be a number, got {type(test_fraction).__name__}")
        if not 0.0 < float(test_fraction) < 1.0:
            raise ValueError(f"test_fraction must lie in (0, 1); got {test_fraction!r}")
        n = x.shape[0]
        n_test = min(max(1, round(float(test_fraction) * n)), n - 1)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        test_idx, train_idx = perm[:n_test].sort().values, perm[n_test:].sort().values
        x_train, x_test = x[train_idx.to(x.device)], x[test_idx.to(x.device)]
        train_labels = {k: v[train_idx.to(v.device)] for k, v in labels.items()}
        test_labels = {k: v[test_idx.to(v.device)] for k, v in labels.items()}

    probe_kwargs.setdefault("seed", seed)
    out: dict[str, float] = {}
    for name in labels:
        try:
            result = linear_probe(
                x_train, train_labels[name], x_test, test_labels[name], **probe_kwargs
            )
        except ValueError as exc:
            raise ValueError(f"attribute {name!r}: {exc}") from exc
        out[name] = float(result.accuracy)
    return out
