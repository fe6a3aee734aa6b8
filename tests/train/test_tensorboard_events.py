"""TensorBoard: every scalar of steps.jsonl and epochs.jsonl is in the event file, read back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from contrastkit.train import FitConfig, fit

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="TensorBoard logging needs the tensorboard package (in the dev extra)",
)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def test_every_logged_scalar_is_a_tensorboard_scalar(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(
        FitConfig(
            data="digits",
            epochs=2,
            batch_size=256,
            encoder_widths=(8,),
            encoder_strides=(2,),
            head_hidden_dim=16,
            head_out_dim=8,
            threads=1,
            progress=False,
            evaluate=False,
            device="cpu",
            precision="fp32",
            grad_clip=10.0,  # grad_norm is logged too
            out=str(out),
        )
    )
    files = list((out / "tensorboard").glob("events.out.tfevents.*"))
    assert len(files) == 1
    acc = event_accumulator.EventAccumulator(str(files[0]), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    for prefix, log in (("step", "steps.jsonl"), ("epoch", "epochs.jsonl")):
        records = _lines(out / log)
        keys = {k for r in records for k, v in r.items() if _numeric(v)} - {prefix}
        expected = {f"{prefix}/{k}" for k in keys}
        assert expected <= tags, sorted(expected - tags)
        for key in keys:  # every value at its step, as in the JSON lines
            events = {e.step: e.value for e in acc.Scalars(f"{prefix}/{key}")}
            for r in records:
                value = r.get(key)
                if _numeric(value):
                    assert math.isclose(events[int(r[prefix])], value, rel_tol=1e-6, abs_tol=1e-7)
    assert {"step/loss", "step/lr", "step/grad_norm", "step/epoch"} <= tags
    assert {"epoch/loss", "epoch/knn_acc", "epoch/alignment_z", "epoch/tolerance_h"} <= tags
