"""Two gloo processes on CPU train exactly as one process on the concatenated batch."""

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

sys.path.insert(0, str(Path(__file__).parent))

from ddp_cases import STEPS, available_cases, build_case, case_batch, make_optimizer

from contrastkit.distributed import (
    DistributedLoss,
    ShardedBatchSampler,
    call_loss,
    derive_seed,
    epoch_permutation,
    gather_with_grad,
)

WORKER = Path(__file__).with_name("ddp_equivalence_worker.py")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_ranks(world: int, out_dir: Path, cases: list[str], timeout: float = 120) -> None:
    port = free_port()
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(out_dir), json.dumps(cases)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=timeout)
            outputs.append(out)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out}"


def single_process(name: str) -> dict[str, torch.Tensor]:
    """The reference: the plain loss (reduction='mean') on the whole global batch, one process."""
    model, loss = build_case(name, reduction="mean")
    opt = make_optimizer(model)
    losses = []
    for step in range(STEPS):
        x, labels, index = case_batch(name, step)
        value = call_loss(loss, model(x), labels, index)
        losses.append(float(value.detach()))
        opt.zero_grad()
        value.backward()
        opt.step()
    out = {"losses": torch.tensor(losses, dtype=torch.float64)}
    out.update({f"model.{k}": v.detach() for k, v in model.state_dict().items()})
    out.update({f"loss.{k}": v.detach() for k, v in loss.state_dict().items()})
    return out


@pytest.fixture(scope="module")
def two_rank_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[int, dict[str, torch.Tensor]]:
    out_dir = tmp_path_factory.mktemp("ddp")
    cases = [*available_cases(), "ntxent:naive"]
    run_ranks(2, out_dir, cases)
    return {r: load_file(str(out_dir / f"rank{r}.safetensors")) for r in range(2)}


@pytest.mark.parametrize("name", available_cases())
def test_two_processes_equal_one_process(
    name: str, two_rank_results: dict[int, dict[str, torch.Tensor]]
) -> None:
    ref = single_process(name)
    for rank, res in two_rank_results.items():
        losses = res[f"{name}/losses"]
        torch.testing.assert_close(
            losses, ref["losses"], rtol=1e-5, atol=1e-6, msg=f"rank {rank} losses"
        )
        keys = [k for k in ref if k != "losses"]
        assert keys and all(f"{name}/{k}" in res for k in keys)
        for key in keys:
            torch.testing.assert_close(
                res[f"{name}/{key}"], ref[key], rtol=1e-5, atol=1e-6, msg=f"rank {rank} {key}"
            )
    # the parameters moved: the comparison is not between two untouched initialisations
    first, _ = build_case(name, reduction="mean")
    assert not torch.allclose(first.weight, ref["model.weight"], atol=1e-3)


def test_naive_gather_without_gradient_sum_differs(
    two_rank_results: dict[int, dict[str, torch.Tensor]],
) -> None:
    """The check above can fail: a gather whose backward keeps only the local gradient
    (lightly#1528) gives other weights than the single-process run."""
    ref = single_process("ntxent")
    naive = two_rank_results[0]["ntxent:naive/model.weight"]
    assert not torch.allclose(naive, ref["model.weight"], rtol=1e-3, atol=1e-4)


def test_single_process_wrapper_is_the_mean_reduction() -> None:
    for name in available_cases():
        model, mean_loss = build_case(name, reduction="mean")
        _, none_loss = build_case(name, reduction="none")
        x, labels, index = case_batch(name, 0)
        z = model(x).detach()
        torch.manual_seed(5)  # the same random draws (MoCHi) for both calls
        expected = call_loss(mean_loss, z, labels, index)
        torch.manual_seed(5)
        got = DistributedLoss(none_loss)(z, labels, index)
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)


def test_wrapper_refuses_a_reduced_loss() -> None:
    _, loss = build_case("ntxent", reduction="mean")
    with pytest.raises(ValueError, match="reduction='none'"):
        DistributedLoss(loss)


def test_gather_is_identity_without_process_group() -> None:
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x


def test_sharding_is_a_pure_function_and_concatenates_to_the_global_batch() -> None:
    n, batch = 103, 20
    one = ShardedBatchSampler(n, batch, seed=7)
    two = [ShardedBatchSampler(n, batch, seed=7, rank=r, world_size=2) for r in range(2)]
    assert len(one) == len(two[0]) == 5
    for epoch in range(3):
        ref = list(one.batches(epoch))
        parts = [list(s.batches(epoch)) for s in two]
        for k, (step, idx) in enumerate(ref):
            assert step == k
            torch.testing.assert_close(torch.cat([parts[0][k][1], parts[1][k][1]]), idx)
        # mid-epoch resume: the same batches from step 3 on
        later = list(one.batches(epoch, start=3))
        assert [s for s, _ in later] == [3, 4]
        torch.testing.assert_close(later[0][1], ref[3][1])
    assert not torch.equal(
        epoch_permutation(n, seed=7, epoch=0), epoch_permutation(n, seed=7, epoch=1)
    )
    assert not torch.equal(
        epoch_permutation(n, seed=7, epoch=0), epoch_permutation(n, seed=8, epoch=0)
    )
    torch.testing.assert_close(
        epoch_permutation(n, seed=7, epoch=2), epoch_permutation(n, seed=7, epoch=2)
    )
    assert derive_seed(1, 2, 3) == derive_seed(1, 2, 3) != derive_seed(1, 2, 4)


def test_sharding_errors() -> None:
    with pytest.raises(ValueError, match="rank"):
        ShardedBatchSampler(10, 4, seed=0, rank=2, world_size=2)
    with pytest.raises(ValueError, match="cannot be shared"):
        ShardedBatchSampler(10, 2, seed=0, rank=0, world_size=4)


@pytest.mark.parametrize(
    ("synchronize", "world", "expected"),
    [
        (True, 2, ["barrier", "destroy"]),  # wait for every rank, then tear down
        (False, 2, ["destroy"]),  # after a failure: no barrier the others could hang on
        (True, 1, ["destroy"]),  # one process: nothing to wait for
    ],
)
def test_close_waits_at_a_barrier_only_when_asked(
    monkeypatch: pytest.MonkeyPatch, synchronize: bool, world: int, expected: list[str]
) -> None:
    import torch.distributed as dist

    from contrastkit.distributed import DistContext

    calls: list[str] = []
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(dist, "destroy_process_group", lambda: calls.append("destroy"))
    DistContext(world_size=world, owns_group=True).close(synchronize=synchronize)
    assert calls == expected
    calls.clear()
    DistContext(world_size=world, owns_group=False).close(synchronize=True)
    assert calls == []  # a group this context did not create is left alone
