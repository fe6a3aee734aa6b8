"""`torchrun --nproc-per-node 2 -m contrastkit fit` on CPU (gloo): rank 0 writes, one log."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from contrastkit.train import CheckpointManager, resume_run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # about 25 s on a loaded 2-core machine (torchrun agent + 2 workers)
def test_torchrun_two_processes(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(free_port()),
           "-m", "contrastkit", "fit", "simclr", "--data", "digits", "--epochs", "2",
           "--batch-size", "128", "--device", "cpu", "--precision", "fp32", "--threads", "1",
           "--no-progress", "--out", str(run),
           "--set", "encoder_widths=[8, 16]", "--set", "encoder_strides=[1, 2]",
           "--set", "head_hidden_dim=32", "--set", "head_out_dim=16", "--set", "evaluate=false",
           "--set", "tensorboard=false", "--set", "checkpoint_every=4"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("contrastkit fit: done") == 1  # rank 0 only
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 20
    steps = [json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 21))  # one line per step, not per rank
    entries = CheckpointManager(run / "checkpoints").entries()
    assert [e["step"] for e in entries] == [16, 20]
    # a 2-process checkpoint resumes in one process (the data order does not depend on P)
    final = load_file(str(run / "model.safetensors"))
    resume_run(run, progress=False)
    again = load_file(str(run / "model.safetensors"))
    assert all(torch.equal(final[k], again[k]) for k in final)
