"""How fast an image folder loads, against the same images read from their IDX files.

Writes the Fashion-MNIST test set (10,000 28x28 PNGs; or ``--limit`` of them) as class folders in a
temporary directory, then times :func:`contrastkit.data.load_image_folder` (every file opened,
decoded and stacked) against ``load_dataset("fashion-mnist")`` (the IDX files, both splits) in the
same process, and checks that the folder gives back exactly the same pixels per class.

Usage::

    OMP_NUM_THREADS=1 python benchmarks/image_folder.py [--limit N] [--reps 3]
    python benchmarks/image_folder.py --export DIR   # all 70,000 images as DIR/{train,test}/classK/
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from contrastkit.data import load_dataset, load_image_folder


def _write_folder(images: torch.Tensor, labels: torch.Tensor, root: Path) -> None:
    from PIL import Image

    pixels = (images[:, 0] * 255).round().to(torch.uint8).numpy()
    for i, (a, y) in enumerate(zip(pixels, labels.tolist(), strict=True)):
        folder = root / f"class{y}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(a).save(folder / f"{i:05d}.png")


def _sorted_rows(images: torch.Tensor, labels: torch.Tensor, label: int) -> np.ndarray:
    rows = (images[labels == label].reshape(-1, 28 * 28) * 255).round().to(torch.uint8).numpy()
    return rows[np.lexsort(rows.T[::-1])]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--limit", type=int, default=None, help="first N test images only")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument(
        "--export",
        default=None,
        metavar="DIR",
        help="only write both splits as DIR/train/classK/*.png and DIR/test/classK/*.png",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.export is not None:
        split = load_dataset("fashion-mnist")
        for part in ("train", "test"):
            ds = getattr(split, part)
            _write_folder(ds.images, ds.labels, Path(args.export) / part)
        print(f"wrote {len(split.train)} + {len(split.test)} PNGs under {args.export}")
        return
    test = load_dataset("fashion-mnist").test
    images, labels = test.images, test.labels
    if args.limit is not None:
        images, labels = images[: args.limit], labels[: args.limit]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "fmnist-test"
        t0 = time.perf_counter()
        _write_folder(images, labels, root)
        print(f"wrote {len(labels)} PNGs in {time.perf_counter() - t0:.1f} s")
        folder_s, idx_s = [], []
        split = None
        for _ in range(args.reps):  # interleaved, so load changes hit both alike
            t0 = time.perf_counter()
            split = load_image_folder(root, seed=0, test_fraction=0.25)
            folder_s.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            load_dataset("fashion-mnist")
            idx_s.append(time.perf_counter() - t0)
        assert split is not None
        got_x = torch.cat([split.train.images, split.test.images])
        got_y = torch.cat([split.train.labels, split.test.labels])
        names = sorted(p.name for p in root.iterdir())  # class folders sort as class0 .. class9
        same = all(
            np.array_equal(
                _sorted_rows(got_x, got_y, k), _sorted_rows(images, labels, int(name[5:]))
            )
            for k, name in enumerate(names)
        )
    n = len(labels)
    f, i = statistics.median(folder_s), statistics.median(idx_s)
    print(f"image folder: {n} images in {f:.2f} s = {n / f:,.0f} images/s (median of {args.reps})")
    print(f"IDX files (train + test, 70,000 images): {i:.2f} s = {70_000 / i:,.0f} images/s")
    print(f"IDX / folder, images per second: {70_000 / i / (n / f):.1f}x")
    print(f"same pixels per class as the IDX test set: {same}")


if __name__ == "__main__":
    main()
