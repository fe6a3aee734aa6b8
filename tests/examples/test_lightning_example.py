"""examples/lightning_simclr.py: contrastkit's views, loss and distributed gather in Lightning's loop.

The quick form (1 epoch of 2 batches, a small encoder) runs in the default suite; two processes
under Lightning's DDP strategy (gloo on the CPU) are a slow test. Both skip, saying why, where
PyTorch Lightning is not installed (it is pinned in the dev extra).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "lightning_simclr.py"
HAVE_LIGHTNING = any(importlib.util.find_spec(n) for n in ("lightning", "pytorch_lightning"))
pytestmark = pytest.mark.skipif(
    not HAVE_LIGHTNING,
    reason="the Lightning example needs PyTorch Lightning: pip install lightning "
    "(pinned in contrastkit's dev extra)",
)


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lightning_simclr", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_quick_run_trains_and_scores_the_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = _load()
    before = {k: v.clone() for k, v in example.SimCLRModule(widths=(16, 32)).state_dict().items()}
    metrics = example.main(["--quick", "--accelerator", "cpu", "--out", str(tmp_path)])
    assert metrics["steps"] == 2.0  # Lightning ran two optimizer steps
    assert 0.2 < metrics["knn_acc"] <= 1.0 and 0.2 < metrics["linear_acc"] <= 1.0  # chance: 0.1
    weights = load_file(tmp_path / "encoder.safetensors")
    trained = {
        k[len("model.encoder.") :]: v for k, v in before.items() if k.startswith("model.encoder.")
    }
    assert weights.keys() == trained.keys()
    assert any(not torch.equal(weights[k], trained[k]) for k in weights)  # the encoder moved
    assert "kNN" in capsys.readouterr().out
    logs = list(tmp_path.glob("lightning_logs/version_*"))
    assert logs, "Lightning wrote no logs"


def test_the_module_uses_contrastkits_loss_and_gather() -> None:
    example = _load()
    from contrastkit.distributed import DistributedLoss
    from contrastkit.losses import DCL, InfoNCE

    module = example.SimCLRModule(loss="dcl", temperature=0.1, widths=(8,))
    assert isinstance(module.criterion, DistributedLoss)
    assert isinstance(module.criterion.loss, DCL) and module.criterion.loss.reduction == "none"
    z = torch.randn(6, 2, 4)  # a single process: the wrapper is the loss's mean
    expected = InfoNCE(temperature=0.2)(z)
    got = example.SimCLRModule(loss="ntxent", temperature=0.2, widths=(8,)).criterion(z)
    torch.testing.assert_close(got, expected)
    with pytest.raises(ValueError, match="plain views loss"):
        example.SimCLRModule(loss="clip")
    with pytest.raises(ValueError, match="views must be >= 2"):
        example.SimCLRModule(views=1)


@pytest.mark.slow
def test_two_processes_under_lightning_ddp(tmp_path: Path) -> None:
    """Lightning starts the second process; DistributedLoss gathers across both (gloo)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(EXAMPLE), "--quick", "--accelerator", "cpu", "--devices", "2",
           "--strategy", "ddp", "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Starting with 2 processes" in done.stdout + done.stderr
    assert "lightning + contrastkit: ntxent, 2 steps" in done.stdout
    assert (tmp_path / "encoder.safetensors").is_file()
