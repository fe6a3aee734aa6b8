"""One rank of the 2-process equivalence check (run by test_train_ddp.py; not a test module).

Usage: python ddp_equivalence_worker.py OUT_DIR CASES_JSON, with RANK, WORLD_SIZE, MASTER_ADDR and
MASTER_PORT set as torchrun sets them. For every case it trains ``ddp_case_model`` under DDP with
:class:`contrastkit.distributed.DistributedLoss` for a few steps on this rank's share of
deterministic batches, and writes the per-step global losses, the final parameters and the loss
buffers to ``OUT_DIR/rank<R>.safetensors``. A ``naive`` case also trains with a gather whose
backward keeps only the local gradient (the bug of lightly#1528) so the test can show it differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).parent))

from ddp_cases import STEPS, build_case, case_batch, make_optimizer

from contrastkit.distributed import (
    DistributedLoss,
    all_reduce_mean,
    init_distributed,
)


class _LocalOnlyGather(torch.autograd.Function):
    """The naive gather: other ranks' rows are constants, the gradient is not summed."""

    @staticmethod
    def forward(ctx, x):  # type: ignore[no-untyped-def]
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.n = dist.get_rank(), x.shape[0]
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad):  # type: ignore[no-untyped-def]
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def main() -> None:
    out_dir, cases = Path(sys.argv[1]), json.loads(sys.argv[2])
    torch.set_num_threads(1)
    ctx = init_distributed(use_cuda=False, timeout_s=60)
    rank, world = ctx.rank, ctx.world_size
    results: dict[str, torch.Tensor] = {}
    for name in cases:
        naive = name.endswith(":naive")
        model, loss = build_case(name.removesuffix(":naive"), reduction="none")
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        criterion = DistributedLoss(loss)
        if naive:
            import contrastkit.distributed as cd

            cd_gather = cd.gather_with_grad
            cd.gather_with_grad = lambda x: _LocalOnlyGather.apply(x)  # type: ignore[assignment]
        opt = make_optimizer(model)
        losses = []
        for step in range(STEPS):
            x, labels, index = case_batch(name.removesuffix(":naive"), step)
            n = x.shape[0] // world
            sl = slice(rank * n, (rank + 1) * n)
            z = ddp(x[sl])
            value = criterion(
                z,
                labels[sl] if labels is not None else None,
                index[sl] if index is not None else None,
            )
            losses.append(float(all_reduce_mean(value)))
            opt.zero_grad()
            value.backward()
            opt.step()
        if naive:
            cd.gather_with_grad = cd_gather  # type: ignore[assignment]
        results[f"{name}/losses"] = torch.tensor(losses, dtype=torch.float64)
        for key, value in model.state_dict().items():
            results[f"{name}/model.{key}"] = value.detach().clone()
        for key, value in loss.state_dict().items():
            results[f"{name}/loss.{key}"] = value.detach().clone()
    save_file(results, str(out_dir / f"rank{rank}.safetensors"))
    ctx.close(synchronize=True)


if __name__ == "__main__":
    main()
