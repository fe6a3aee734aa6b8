"""Export the embeddings of a trained run for use elsewhere (``contrastkit embed``).

The file format follows the extension of the output path:

- ``.npz``: one numpy archive with the arrays ``features`` ``(N, F)`` float32 and ``labels``
  ``(N,)`` int64 (and ``split`` ``(N,)`` uint8, 0 = train, 1 = test, for ``split="all"``);
- ``.npy``: the features alone in ``FILE``; the labels go to ``STEM.labels.npy`` (and the split to
  ``STEM.split.npy``) next to it;
- ``.safetensors``: the same tensors as the ``.npz``, with string metadata (run, data, split,
  layer).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from contrastkit._validation import check_choice, check_device
from contrastkit.data import load_dataset
from contrastkit.eval.features import _as_features, _as_labels, _check_int, extract_features
from contrastkit.eval.probes import collect_features
from contrastkit.eval.two_tower import two_tower_embeddings
from contrastkit.runs import is_two_tower_run, load_run

__all__ = [
    "EMBED_FORMATS",
    "EMBED_LAYERS",
    "EMBED_SPLITS",
    "embed_run",
    "load_embeddings",
    "save_embeddings",
]

EMBED_FORMATS = (".npz", ".npy", ".safetensors")
EMBED_SPLITS = ("train", "test", "all")
#: ``"h"``: the encoder's features (what evaluation uses); ``"z"``: the projection head's output.
EMBED_LAYERS = ("h", "z")


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in EMBED_FORMATS:
        raise ValueError(
            f"cannot tell the format from the extension of {str(path)!r}; expected one of "
            f"{', '.join(EMBED_FORMATS)}"
        )
    return suffix


def _sidecar(path: Path, what: str) -> Path:
    return path.with_name(f"{path.stem}.{what}.npy")


def embedding_files(path: str | os.PathLike[str]) -> list[Path]:
    """The files :func:`save_embeddings` may write for ``path`` (``.npy`` adds label/split files)."""
    out = Path(path)
    if out.suffix.lower() == ".npy":
        return [out, _sidecar(out, "labels"), _sidecar(out, "split")]
    return [out]


def save_embeddings(
    path: str | os.PathLike[str],
    features: Tensor | np.ndarray,
    labels: Tensor | np.ndarray | None = None,
    *,
    split: Tensor | np.ndarray | None = None,
    metadata: Mapping[str, str] | None = None,
) -> list[Path]:
    """Write features (and labels) in the format named by ``path``'s extension.

    Args:
        path: Output file ending in ``.npz``, ``.npy`` or ``.safetensors``; parent folders are
            created.
        features: ``(N, F)`` features, stored as float32.
        labels: Optional ``(N,)`` integer labels, stored as int64.
        split: Optional ``(N,)`` integer split marks (0 train, 1 test), stored as uint8.
        metadata: String key/values kept in a ``.safetensors`` header (ignored by numpy formats).

    Returns:
        The files written (the main file first).

    Raises:
        ValueError: On an unknown extension or mismatched lengths.
    """
    out = Path(path)
    fmt = _format(out)
    feats = _as_features(features, "features").cpu().contiguous()
    arrays: dict[str, Tensor] = {"features": feats}
    if labels is not None:
        arrays["labels"] = _as_labels(labels, feats.shape[0], "labels").cpu().contiguous()
    if split is not None:
        arrays["split"] = _as_labels(split, feats.shape[0], "split").to(torch.uint8).contiguous()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = [out]
    if fmt == ".npz":
        with out.open("wb") as fh:
            np.savez(fh, **{k: v.numpy() for k, v in arrays.items()})  # type: ignore[arg-type]
    elif fmt == ".npy":
        with out.open("wb") as fh:
            np.save(fh, feats.numpy())
        for key in ("labels", "split"):
            if key in arrays:
                side = _sidecar(out, key)
                with side.open("wb") as fh:
                    np.save(fh, arrays[key].numpy())
                written.append(side)
    else:
        from safetensors.torch import save_file

        meta = {str(k): str(v) for k, v in (metadata or {}).items()}
        save_file(arrays, str(out), metadata=meta)
    return written


def load_embeddings(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read what :func:`save_embeddings` wrote: ``{"features", ["labels"], ["split"]}`` arrays."""
    src = Path(path)
    fmt = _format(src)
    if not src.is_file():
        raise FileNotFoundError(f"no embedding file at {src}")
    if fmt == ".npz":
        with np.load(src) as data:
            return {k: data[k] for k in data.files}
    if fmt == ".npy":
        out = {"features": np.load(src)}
        for key in ("labels", "split"):
            side = _sidecar(src, key)
            if side.is_file():
                out[key] = np.load(side)
        return out
    from safetensors.numpy import load_file

    return dict(load_file(str(src)))


def embed_run(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    data: str | None = None,
    split: str = "test",
    layer: str | None = None,
    data_root: str | None = None,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    tower: str | None = None,
) -> list[Path]:
    """Embed a dataset with a trained run's model and write the features and labels to ``out``.

    A two-tower run exports one tower (``tower``): by default of its own paired data, or of other
    images (``data``, an image tower) or texts (``data``, a text file with one text per line, a
    text tower); see :func:`~contrastkit.eval.two_tower.two_tower_embeddings`.

    Args:
        run_dir: A run directory of ``contrastkit fit`` (``config.json`` and
            ``model.safetensors``).
        out: Output file; its extension picks the format (see :func:`save_embeddings`).
        data: Dataset name or ``.npz`` path (``None``: the run's own dataset). The images must
            have the channels the encoder expects.
        split: ``"train"``, ``"test"`` or ``"all"`` (train rows, then test rows, with a ``split``
            array marking them).
        layer: ``"h"`` (encoder features) or ``"z"`` (projection-head output; for a two-tower
            run the shared-space embedding). None: ``"h"``, or ``"z"`` for a two-tower run.
        data_root: Folder of the dataset files (``None``: the run's ``data_root``).
        batch_size: Rows per forward pass.
        device: Where to run the model (``None``: the CPU).
        tower: For a two-tower run: ``"image"``, ``"text"`` (or another modality kind), or the
            side ``"a"`` / ``"b"`` (None: side A). Other runs take None.

    Returns:
        The files written.

    Raises:
        ValueError: For bad arguments, or ``tower`` given for a run with one encoder.
    """
    split = check_choice(split, "split", EMBED_SPLITS)
    batch_size = _check_int(batch_size, "batch_size")
    target = Path(out)
    _format(target)  # fail before the work
    if is_two_tower_run(Path(run_dir)):
        feats2, labels2, marks2, meta2 = two_tower_embeddings(
            run_dir,
            tower=tower,
            data=data,
            split=split,
            layer=check_choice(layer or "z", "layer", EMBED_LAYERS),
            data_root=data_root,
            batch_size=batch_size,
            device=device,
        )
        return save_embeddings(target, feats2, labels2, split=marks2, metadata=meta2)
    if tower is not None:
        raise ValueError(
            f"tower={tower!r} applies to two-tower runs; {run_dir} holds one encoder (leave it out)"
        )
    layer = check_choice(layer or "h", "layer", EMBED_LAYERS)
    if device is not None:
        device = check_device(device)
    config, model = load_run(Path(run_dir))
    if device is not None:
        model = model.to(device)
    if data is None:  # the run's own data, loaded (and resized) as in training
        parts = config.load_data(root=data_root)
    else:
        parts = load_dataset(data, root=data_root, seed=config.seed)
    chosen = [parts.train, parts.test] if split == "all" else [getattr(parts, split)]
    feats, labels, marks = [], [], []
    for mark, part in enumerate(chosen):
        if layer == "h":
            f = extract_features(model.encoder, part.images, batch_size=batch_size)
        else:
            f = collect_features(model, part.images, ["z"], batch_size=batch_size)["z"]
        feats.append(f)
        labels.append(part.labels)
        marks.append(torch.full((len(part),), mark if split == "all" else 0, dtype=torch.int64))
    metadata = {
        "run_dir": str(Path(run_dir)),
        "data": str(data if data is not None else config.data),
        "split": split,
        "layer": layer,
        "loss": str(config.loss),
    }
    return save_embeddings(
        target,
        torch.cat(feats),
        torch.cat(labels),
        split=torch.cat(marks) if split == "all" else None,
        metadata=metadata,
    )
