"""Views per second: batched ``ViewAugment`` against per-sample pipelines, in one process.

For each setting (Fashion-MNIST preset at 28x28x1, CIFAR preset at 32x32x3, SimCLR preset with
blur at 32x32x3) a batch of 256 uint8 images gets 2 views per image by:

- ``batched``: contrastkit's ``ViewAugment.views`` on the whole batch (uint8 -> float included);
- ``loop-torch``: the same ``ViewAugment`` called on one image at a time (batches of 1), the
  way a per-sample transform runs in data-loader workers, with the same ops and parameters;
- ``loop-pil``: a torchvision-style per-sample PIL pipeline with the same ops (random resized crop
  with torchvision's box sampling, flip, colour jitter in random order with PIL's ImageEnhance and
  an HSV hue shift as torchvision's PIL backend, grayscale, PIL Gaussian blur, noise in numpy),
  then ``ToTensor`` and stacking, as a DataLoader worker + collate would;
- ``kornia``: kornia's equivalent augmentations on the batch (if kornia is installed), built by
  ``contrastkit.views.kornia_backend.kornia_pipeline`` (its Gaussian noise has a fixed std, so the
  Fashion-MNIST noise uses the middle of the range).

Methods are timed in interleaved repetitions (every rep runs every method once, in turn) after a
warm-up, on 1 thread by default. The first table gives the median views per second and the ratio
of ``batched`` to each method; the second the same from the fastest repetition, which is less
affected by other processes on a shared machine.

Command (the numbers in BENCHMARKS.md)::

    nice -n 10 env OMP_NUM_THREADS=1 .venv/bin/python benchmarks/views.py
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from contrastkit.views import ViewAugment, ViewConfig, preset
from contrastkit.views.kornia_backend import kornia_pipeline

SETTINGS = [("fashion-mnist", 1, 28), ("cifar", 3, 32), ("simclr", 3, 32)]


# --------------------------------------------------------------------------------------------------
# per-sample PIL pipeline (torchvision-style), same ops as the ViewConfig


def _pil_pipeline(cfg: ViewConfig, rng: random.Random) -> Callable[[object], Tensor]:
    from PIL import Image, ImageEnhance, ImageFilter

    def crop_box(w: int, h: int) -> tuple[int, int, int, int]:
        # torchvision RandomResizedCrop.get_params
        assert cfg.crop_scale is not None
        area = w * h
        log_r = (math.log(cfg.crop_ratio[0]), math.log(cfg.crop_ratio[1]))
        for _ in range(10):
            target = area * rng.uniform(*cfg.crop_scale)
            ar = math.exp(rng.uniform(*log_r))
            cw = round(math.sqrt(target * ar))
            ch = round(math.sqrt(target / ar))
            if 0 < cw <= w and 0 < ch <= h:
                i = rng.randint(0, h - ch)
                j = rng.randint(0, w - cw)
                return j, i, j + cw, i + ch
        return 0, 0, w, h

    def hue(img: Image.Image, shift: float) -> Image.Image:
        # torchvision's PIL adjust_hue: shift the H channel of the HSV image.
        h, s, v = img.convert("HSV").split()
        arr = np.asarray(h, dtype=np.uint8).copy()
        arr += np.uint8(round(shift * 255) % 256)
        return Image.merge("HSV", (Image.fromarray(arr, "L"), s, v)).convert(img.mode)

    def enhance(img: Image.Image, kind: str, factor: float) -> Image.Image:
        if kind == "hue":
            return hue(img, factor)
        enhancer = {
            "brightness": ImageEnhance.Brightness,
            "contrast": ImageEnhance.Contrast,
            "saturation": ImageEnhance.Color,
        }[kind]
        return enhancer(img).enhance(factor)

    def jitter(img: Image.Image) -> Image.Image:
        steps: list[tuple[str, float]] = []
        for kind, strength in (
            ("brightness", cfg.brightness),
            ("contrast", cfg.contrast),
            ("saturation", cfg.saturation),
        ):
            if strength > 0 and (kind != "saturation" or img.mode == "RGB"):
                steps.append((kind, rng.uniform(max(0.0, 1 - strength), 1 + strength)))
        if cfg.hue > 0 and img.mode == "RGB":
            steps.append(("hue", rng.uniform(-cfg.hue, cfg.hue)))
        rng.shuffle(steps)  # torchvision: a random order per image
        for kind, factor in steps:
            img = enhance(img, kind, factor)
        return img

    def transform(img: object) -> Tensor:
        assert isinstance(img, Image.Image)
        w, h = img.size
        if cfg.crop_scale is not None:
            img = img.resize((w, h), Image.Resampling.BILINEAR, box=crop_box(w, h))
        if rng.random() < cfg.hflip_p:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if rng.random() < cfg.jitter_p:
            img = jitter(img)
        if img.mode == "RGB" and rng.random() < cfg.grayscale_p:
            img = img.convert("L").convert("RGB")
        if cfg.blur_p > 0 and rng.random() < cfg.blur_p:
            img = img.filter(ImageFilter.GaussianBlur(radius=rng.uniform(*cfg.blur_sigma)))
        arr = np.asarray(img, dtype=np.float32) / 255.0  # ToTensor
        if cfg.noise_p > 0 and rng.random() < cfg.noise_p:
            std = rng.uniform(*cfg.noise_std)
            arr = np.clip(
                arr
                + np.random.default_rng(rng.getrandbits(32))
                .normal(0.0, std, arr.shape)
                .astype(np.float32),
                0.0,
                1.0,
            )
        t = torch.from_numpy(arr)
        return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1)

    return transform


# --------------------------------------------------------------------------------------------------


def _methods(
    name: str, channels: int, size: int, batch: int, views: int, with_pil: bool, with_kornia: bool
) -> dict[str, Callable[[], object]]:
    cfg = preset(name, channels=channels, image_size=size)
    aug = ViewAugment(cfg)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 256, (batch, channels, size, size), generator=g, dtype=torch.uint8)

    def batched() -> Tensor:
        return aug.views(data.float().div_(255.0), views, generator=g)

    def loop_torch() -> Tensor:
        out = []
        for i in range(batch):
            img = data[i : i + 1].float().div_(255.0)
            out.append(torch.stack([aug(img, g)[0] for _ in range(views)]))
        return torch.stack(out)

    methods: dict[str, Callable[[], object]] = {"batched": batched, "loop-torch": loop_torch}
    if with_pil:
        from PIL import Image

        mode = "L" if channels == 1 else "RGB"
        arrays = data.permute(0, 2, 3, 1).numpy()
        pil_images = [Image.fromarray(a[..., 0] if channels == 1 else a, mode) for a in arrays]
        transform = _pil_pipeline(cfg, random.Random(0))

        def loop_pil() -> Tensor:
            return torch.stack(
                [torch.stack([transform(im) for _ in range(views)]) for im in pil_images]
            )

        methods["loop-pil"] = loop_pil
    if with_kornia:
        pipe = kornia_pipeline(cfg, channels=channels, image_size=size)

        def kornia_batched() -> Tensor:
            x = data.float().div_(255.0)
            rep = x.unsqueeze(1).expand(batch, views, channels, size, size)
            out: Tensor = pipe(rep.reshape(batch * views, channels, size, size))
            return out.view(batch, views, channels, size, size)

        methods["kornia"] = kornia_batched
    return methods


def _time(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--views", type=int, default=2)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-pil", action="store_true", help="skip the PIL per-sample loop")
    parser.add_argument("--no-kornia", action="store_true", help="skip kornia even if installed")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with_pil = not args.no_pil
    if with_pil:
        try:
            import PIL  # noqa: F401
        except ImportError:
            with_pil = False
    with_kornia = not args.no_kornia
    kornia_version = None
    if with_kornia:
        try:
            import kornia

            kornia_version = kornia.__version__
        except ImportError:
            with_kornia = False

    print("command: " + " ".join([sys.executable, *sys.argv]))
    print(
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"kornia {kornia_version or 'absent'}, python {platform.python_version()}, "
        f"{platform.machine()}"
    )
    print(f"batch {args.batch}, {args.views} views, {args.reps} interleaved reps (median)\n")
    names = (
        ["batched", "loop-torch"]
        + (["loop-pil"] if with_pil else [])
        + (["kornia"] if with_kornia else [])
    )
    header = (
        "| preset | image | "
        + " | ".join(f"{n} views/s" for n in names)
        + " | "
        + " | ".join(f"batched / {n}" for n in names[1:])
        + " |"
    )
    rows: dict[str, list[str]] = {"median": [], "best": []}
    for name, channels, size in SETTINGS:
        methods = _methods(name, channels, size, args.batch, args.views, with_pil, with_kornia)
        for fn in methods.values():  # warm-up
            fn()
        times: dict[str, list[float]] = {n: [] for n in methods}
        for _ in range(args.reps):
            for n, fn in methods.items():
                times[n].append(_time(fn))
        for stat, pick in (("median", statistics.median), ("best", min)):
            rate = {n: args.batch * args.views / pick(t) for n, t in times.items()}
            cells = [f"{rate[n]:,.0f}" for n in names]
            ratios = [f"{rate['batched'] / rate[n]:.1f}x" for n in names[1:]]
            rows[stat].append(
                f"| {name} | {size}x{size}x{channels} | "
                + " | ".join(cells)
                + " | "
                + " | ".join(ratios)
                + " |"
            )
            if stat == "median":
                print(f"{name}: " + ", ".join(f"{n} {rate[n]:,.0f}/s" for n in names), flush=True)
    for stat in ("median", "best"):
        print(f"\n{stat} of {args.reps} repetitions:\n")
        print(header)
        print("|" + "---|" * (2 + len(names) + len(names) - 1))
        print("\n".join(rows[stat]))


if __name__ == "__main__":
    main()
