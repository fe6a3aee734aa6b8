"""``contrastkit zeroshot``: classify images with a two-tower run and user-given class names."""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

from contrastkit.cli._output import add_overwrite_flag, refuse_existing
from contrastkit.eval import zero_shot_run

__all__ = ["add_parser"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Add the ``zeroshot`` sub-command to ``sub``."""
    p = sub.add_parser(
        "zeroshot",
        help="classify a two-tower run's test images (or --data images) into --classes",
        description="Zero-shot classification: each class name is put into every prompt template, "
        "the text tower embeds the prompts, their normalised mean is the class embedding, and "
        "each image goes to the most cosine-similar class. An accuracy is printed when the "
        "data's own class names are known (built-in sets) and all are among --classes.",
    )
    p.add_argument("run_dir")
    p.add_argument(
        "--classes",
        required=True,
        help='comma-separated class names, e.g. "sneaker,bag,coat"',
    )
    p.add_argument(
        "--templates",
        nargs="+",
        default=None,
        metavar="TEMPLATE",
        help='prompt templates with {} for the class, e.g. "a photo of a {}." (default: the '
        "held-out templates of a built-in caption run, else {})",
    )
    p.add_argument("--data", default=None, help="images to classify (default: the run's own)")
    p.add_argument("--split", default="test", choices=["train", "test"])
    p.add_argument("--data-root", default=None, help="folder holding the dataset files")
    p.add_argument("--top", type=int, default=1, help="classes listed per image in --out")
    p.add_argument("--out", default=None, help="write one CSV row per image to this file")
    add_overwrite_flag(p, "the --out file")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--device", default=None, help="where to run the model (default: cpu)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run_zeroshot)


def _classes(text: str) -> list[str]:
    names = [c.strip() for c in text.split(",")]
    if not all(names):
        raise ValueError(f"--classes must be comma-separated non-empty names, got {text!r}")
    return names


def run_zeroshot(args: argparse.Namespace) -> int:
    """Classify, print a summary (counts per class, accuracy when known), optionally a CSV."""
    names = _classes(args.classes)
    if args.out is not None:
        refuse_existing([Path(args.out)], overwrite=args.overwrite)
    result = zero_shot_run(
        args.run_dir,
        names,
        templates=args.templates,
        data=args.data,
        split=args.split,
        data_root=args.data_root,
        k=args.top,
        batch_size=args.batch_size,
        device=args.device,
    )
    counts = Counter(result.predictions.tolist())
    predicted = {name: counts.get(i, 0) for i, name in enumerate(result.class_names)}
    summary: dict[str, object] = {
        "source": result.source,
        "images": int(result.indices.shape[0]),
        "templates": list(result.templates),
        "predicted": predicted,
        "accuracy": result.accuracy,
    }
    if args.out is not None:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with out.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            k = result.indices.shape[1]
            header = ["index"] + [f"class_{r + 1}" for r in range(k)]
            header += [f"score_{r + 1}" for r in range(k)]
            if result.targets is not None:
                header.append("true_class")
            writer.writerow(header)
            for i in range(result.indices.shape[0]):
                row: list[object] = [i]
                row += [result.class_names[j] for j in result.indices[i].tolist()]
                row += [f"{s:.4f}" for s in result.scores[i].tolist()]
                if result.targets is not None:
                    row.append(result.class_names[int(result.targets[i])])
                writer.writerow(row)
        summary["out"] = str(out.resolve())
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"classified {summary['images']} images of {result.source} into {len(names)} classes")
    print(f"templates: {' | '.join(result.templates)}")
    width = max(len(n) for n in result.class_names)
    for name, n in predicted.items():
        print(f"  {name:<{width}}  {n}")
    if result.accuracy is not None:
        print(f"accuracy: {result.accuracy:.4f} (against the data's own labels)")
    if args.out is not None:
        print(f"predictions written: {summary['out']}")
    return 0
