"""One rank of the two-tower 1-vs-2-process check (run by test_two_tower.py; not a test module).

Usage: python two_tower_ddp_worker.py OUT_DIR CASES_JSON, with RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT set as torchrun sets them. For every bimodal loss it trains a two-tower model of linear
towers under DDP with :class:`contrastkit.distributed.DistributedPairLoss` on this rank's share of
deterministic global batches, and writes the per-step global losses, the first step's gradients,
the final parameters and the loss's parameters and buffers to ``OUT_DIR/rank<R>.safetensors``.
:func:`single_process` is the reference the test compares them with.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from contrastkit.distributed import (
    DistributedPairLoss,
    all_reduce_mean,
    average_gradients,
    init_distributed,
)
from contrastkit.losses import get_loss
from contrastkit.models import TwoTowerModel

STEPS = 3
GLOBAL_N = 12  # pairs per global batch (6 per rank with 2 processes)
DIM_A, DIM_B, DIM = 6, 4, 5
VIEWS = 2
DATASET = 40
BAG = 3  # MIL-NCE: candidate b's per item

#: loss name -> constructor keyword arguments
CASES: dict[str, dict[str, object]] = {
    "clip": {"init_temperature": 0.2},
    "cliprocket": {"init_temperature": 0.2, "local_init_temperature": 0.3},
    "milnce": {"temperature": 0.3},
    "sogclr_bimodal": {"temperature": 0.3, "num_samples": DATASET},
    "isogclr_bimodal": {
        "temperature": 0.3,
        "num_samples": DATASET,
        "eta": 0.05,
        "tau_min": 0.05,
        "tau_max": 1.0,
    },
}


class LinearTower(nn.Linear):
    """A linear tower (no batch norm: its statistics would differ between 1 and 2 processes)."""

    def __init__(self, n_in: int) -> None:
        super().__init__(n_in, 7)
        self.out_dim = 7


def build_case(name: str, *, reduction: str) -> tuple[TwoTowerModel, nn.Module]:
    torch.manual_seed(1234)
    model = TwoTowerModel(
        LinearTower(DIM_A),
        LinearTower(DIM_B),
        dim=DIM,
        kinds=("vector", "vector"),
        local_projections=name == "cliprocket",
    )
    return model, get_loss(name, reduction=reduction, **CASES[name])


def case_batch(name: str, step: int) -> dict[str, Tensor | None]:
    """The global batch of ``step``: both sides, their augmented views (CLIP-rocket), indices."""
    g = torch.Generator().manual_seed(100 + step)
    rocket = name == "cliprocket"
    return {
        "a": torch.randn(GLOBAL_N, DIM_A, generator=g),
        "b": torch.randn(GLOBAL_N, *((BAG,) if name == "milnce" else ()), DIM_B, generator=g),
        "a_aug": torch.randn(GLOBAL_N, VIEWS, DIM_A, generator=g) if rocket else None,
        "b_aug": torch.randn(GLOBAL_N, VIEWS, DIM_B, generator=g) if rocket else None,
        "index": torch.randperm(DATASET, generator=g)[:GLOBAL_N],
    }


def _forward(model: nn.Module, batch: dict[str, Tensor | None]) -> tuple[Tensor, ...]:
    """The towers on a batch; MIL-NCE's bags go through as ``(n * BAG, D)`` rows and come back
    as ``(n, BAG, dim)``, as the trainer feeds them."""
    a, b = batch["a"], batch["b"]
    assert a is not None and b is not None
    bagged = b.dim() == 3
    z = model(a, b.reshape(-1, b.shape[-1]) if bagged else b, batch["a_aug"], batch["b_aug"])
    if bagged:
        z = (z[0], z[1].reshape(a.shape[0], BAG, -1), *z[2:])
    return tuple(z)


def _loss_inputs(outputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
    return outputs  # (z_a, z_b[, z_a_aug, z_b_aug]): CLIP-rocket takes the views as they are


def _index(name: str, batch: dict[str, Tensor | None]) -> dict[str, Tensor]:
    index = batch["index"]
    return {"index": index} if name.endswith("bimodal") and index is not None else {}


def single_process(name: str) -> dict[str, Tensor]:
    """The reference: the plain loss (reduction='mean') on every global batch, one process."""
    model, loss = build_case(name, reduction="mean")
    opt = torch.optim.SGD([*model.parameters(), *loss.parameters()], lr=0.5)
    losses = []
    out: dict[str, Tensor] = {}
    for step in range(STEPS):
        batch = case_batch(name, step)
        z = _forward(model, batch)
        value = loss(*_loss_inputs(z), **_index(name, batch))
        losses.append(float(value.detach()))
        opt.zero_grad()
        value.backward()
        if step == 0:
            for key, p in [*model.named_parameters(), *loss.named_parameters()]:
                assert p.grad is not None
                out[f"grad.{key}"] = p.grad.detach().clone()
        opt.step()
    out["losses"] = torch.tensor(losses, dtype=torch.float64)
    out.update({f"model.{k}": v.detach() for k, v in model.state_dict().items()})
    out.update({f"loss.{k}": v.detach() for k, v in loss.state_dict().items()})
    return out


def main() -> None:
    out_dir, cases = Path(sys.argv[1]), json.loads(sys.argv[2])
    torch.set_num_threads(1)
    ctx = init_distributed(use_cuda=False, timeout_s=60)
    rank, world = ctx.rank, ctx.world_size
    results: dict[str, Tensor] = {}
    for name in cases:
        model, loss = build_case(name, reduction="none")
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        criterion = DistributedPairLoss(loss)
        opt = torch.optim.SGD([*model.parameters(), *loss.parameters()], lr=0.5)
        losses = []
        for step in range(STEPS):
            batch = case_batch(name, step)
            n = GLOBAL_N // world
            mine = {
                k: (v[rank * n : (rank + 1) * n] if v is not None else None)
                for k, v in batch.items()
            }
            z = _forward(ddp, mine)
            value = criterion(*_loss_inputs(z), **_index(name, mine))
            losses.append(float(all_reduce_mean(value)))
            opt.zero_grad()
            value.backward()
            average_gradients(list(loss.parameters()))  # what TrainingCore does (hand_averaged)
            if step == 0:
                for key, p in [*model.named_parameters(), *loss.named_parameters()]:
                    assert p.grad is not None
                    results[f"{name}/grad.{key}"] = p.grad.detach().clone()
            opt.step()
        results[f"{name}/losses"] = torch.tensor(losses, dtype=torch.float64)
        for key, value in model.state_dict().items():
            results[f"{name}/model.{key}"] = value.detach().clone()
        for key, value in loss.state_dict().items():
            results[f"{name}/loss.{key}"] = value.detach().clone()
    save_file(results, str(out_dir / f"rank{rank}.safetensors"))
    ctx.close(synchronize=True)


if __name__ == "__main__":
    main()
