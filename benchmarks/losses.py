"""Speed and memory of contrastkit's exact blockwise losses against the plain dense way.

For each loss family, number of pairs N and views V (D = 128), a fresh worker process times forward +
backward of contrastkit's loss and of the dense reference (benchmarks/dense_reference.py) interleaved in
that process, and separate fresh processes measure the peak memory of each implementation above its
inputs. The matrix-product floor is the time the dense way's three (VN x D) @ (D x VN)-sized products take
at the rate this machine measures in the same worker; "of floor" is floor time / contrastkit time.

    .venv/bin/python benchmarks/losses.py                       # the full table (several minutes)
    .venv/bin/python benchmarks/losses.py --sizes 4096 --views 2 --losses ntxent,supcon,dcl

pytorch-metric-learning's SupConLoss is timed too when it is installed (`pip install
pytorch-metric-learning`). On CUDA (`--device cuda`) peak memory is torch's max_memory_allocated.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_reference import clip_dense, dcl_dense, ntxent_dense, supcon_dense

from contrastkit.losses import DCL, CLIPLoss, InfoNCE, SupCon

TEMPERATURE = 0.1
DIM = 128
N_CLASSES = 100


def _inputs(loss: str, n: int, v: int, device: str, dtype: torch.dtype) -> tuple[Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if loss == "clip":
        a = torch.randn(n, DIM, generator=g).to(device, dtype).requires_grad_()
        b = torch.randn(n, DIM, generator=g).to(device, dtype).requires_grad_()
        return a, b
    views = torch.randn(n, v, DIM, generator=g).to(device, dtype).requires_grad_()
    labels = torch.randint(0, N_CLASSES, (n,), generator=g).to(device)
    return views, labels


def _fn(loss: str, impl: str, inputs: tuple[Tensor, ...]) -> Callable[[], Tensor]:
    x, y = inputs
    if impl == "contrastkit":
        if loss == "ntxent":
            m = InfoNCE(temperature=TEMPERATURE)
            return lambda: m(x)
        if loss == "supcon":
            s = SupCon(temperature=TEMPERATURE, base_temperature=TEMPERATURE)
            return lambda: s(x, y)
        if loss == "dcl":
            d = DCL(temperature=TEMPERATURE)
            return lambda: d(x)
        c = CLIPLoss(init_temperature=TEMPERATURE, learnable=False).to(x.device)
        return lambda: c(x, y)
    if impl == "dense":
        if loss == "ntxent":
            return lambda: ntxent_dense(x, TEMPERATURE)
        if loss == "supcon":
            return lambda: supcon_dense(x, y, TEMPERATURE)
        if loss == "dcl":
            return lambda: dcl_dense(x, TEMPERATURE)
        return lambda: clip_dense(x, y, 1.0 / TEMPERATURE)
    if impl == "pml" and loss == "supcon":
        from pytorch_metric_learning.losses import SupConLoss

        p = SupConLoss(temperature=TEMPERATURE)
        return lambda: p(x.transpose(0, 1).reshape(-1, DIM), y.repeat(x.shape[1]))
    raise ValueError(f"no implementation {impl!r} for loss {loss!r}")


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _step(fn: Callable[[], Tensor], inputs: tuple[Tensor, ...], device: str) -> float:
    for t in inputs:
        t.grad = None
    _sync(device)
    start = time.perf_counter()
    fn().backward()
    _sync(device)
    return time.perf_counter() - start


def _matmul_rate(device: str, dtype: torch.dtype) -> float:
    """FLOP/s of a (4096 x D) @ (D x 8192) product, the shape of the losses' blocks."""
    a = torch.randn(4096, DIM, device=device, dtype=dtype)
    b = torch.randn(8192, DIM, device=device, dtype=dtype)
    times = []
    for _ in range(5):
        _sync(device)
        t0 = time.perf_counter()
        a @ b.T
        _sync(device)
        times.append(time.perf_counter() - t0)
    return 2 * 4096 * 8192 * DIM / min(times)


def _rss_kib() -> tuple[int, int]:
    """Current and peak resident set size (KiB) from /proc/self/status."""
    cur = peak = 0
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak


def worker_time(args: argparse.Namespace) -> dict[str, object]:
    dtype = getattr(torch, args.dtype)
    inputs = _inputs(args.loss, args.n, args.v, args.device, dtype)
    impls = ["contrastkit"] + (["dense"] if args.dense else []) + (["pml"] if args.pml else [])
    fns = {impl: _fn(args.loss, impl, inputs) for impl in impls}
    times: dict[str, list[float]] = {impl: [] for impl in impls}
    for impl in impls:  # warm-up
        _step(fns[impl], inputs, args.device)
    for _ in range(args.repeats):
        for impl in impls:  # interleaved
            times[impl].append(_step(fns[impl], inputs, args.device))
    rows = args.n * (1 if args.loss == "clip" else args.v)
    products = 6 if args.loss == "clip" else 3  # CLIP: two directions of the dense way
    floor = products * 2 * rows * rows * DIM / _matmul_rate(args.device, dtype)
    if args.loss == "clip":
        floor = 3 * 2 * rows * rows * DIM / _matmul_rate(args.device, dtype)
    return {
        "min": {k: min(v) for k, v in times.items()},
        "median": {k: statistics.median(v) for k, v in times.items()},
        "floor": floor,
    }


def worker_memory(args: argparse.Namespace) -> dict[str, object]:
    dtype = getattr(torch, args.dtype)
    inputs = _inputs(args.loss, args.n, args.v, args.device, dtype)
    fn = _fn(args.loss, args.impl, inputs)
    if args.device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn().backward()
        torch.cuda.synchronize()
        return {"peak_above_inputs_bytes": torch.cuda.max_memory_allocated() - base}
    with open("/proc/self/clear_refs", "w") as fh:  # reset the peak RSS counter
        fh.write("5")
    base, _ = _rss_kib()
    start = time.perf_counter()
    fn().backward()
    seconds = time.perf_counter() - start
    _, peak = _rss_kib()
    return {"peak_above_inputs_bytes": (peak - base) * 1024, "seconds": seconds}


def _run_worker(extra: list[str], args: argparse.Namespace) -> dict[str, object] | None:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        *extra,
        "--device",
        args.device,
        "--threads",
        str(args.threads),
        "--dtype",
        args.dtype,
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
    if proc.returncode != 0:
        print(
            f"  worker failed ({' '.join(extra)}): {proc.stderr.strip().splitlines()[-1:]}",
            flush=True,
        )
        return None
    result: dict[str, object] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def _gib(x: object) -> str:
    return "-" if x is None else f"{float(x) / 2**30:.2f}"  # type: ignore[arg-type]


def driver(args: argparse.Namespace) -> None:
    try:
        import pytorch_metric_learning  # noqa: F401

        have_pml = True
    except ImportError:
        have_pml = False
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else _cpu_name()
    print(
        f"# device: {device_name}; torch {torch.__version__}; threads {args.threads}; "
        f"dtype {args.dtype}; D = {DIM}; temperature {TEMPERATURE}"
    )
    print(f"# command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    header = (
        "| loss | V | N pairs | contrastkit s | dense s | dense / ck | of floor | ck peak GiB | "
        "dense peak GiB |" + (" PML s |" if have_pml else "")
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    results = []
    for loss in args.losses.split(","):
        for v in [int(x) for x in args.views.split(",")]:
            if loss == "clip" and v != 2:
                continue
            for n in [int(x) for x in args.sizes.split(",")]:
                rows = n * (1 if loss == "clip" else v)
                if rows > args.max_rows:
                    continue
                dense = rows <= args.dense_max_rows
                pml = have_pml and loss == "supcon" and dense
                base = ["--loss", loss, "--n", str(n), "--v", str(v)]
                reps = args.repeats if rows <= 16384 else 1
                timing = _run_worker(
                    ["--mode", "time", *base, "--repeats", str(reps)]
                    + (["--dense"] if dense else [])
                    + (["--pml"] if pml else []),
                    args,
                )
                mem_ck = _run_worker(["--mode", "memory", "--impl", "contrastkit", *base], args)
                mem_dense = (
                    _run_worker(["--mode", "memory", "--impl", "dense", *base], args)
                    if dense and rows <= args.dense_mem_max_rows
                    else None
                )
                row = {
                    "loss": loss,
                    "v": v,
                    "n": n,
                    "timing": timing,
                    "memory_contrastkit": mem_ck,
                    "memory_dense": mem_dense,
                }
                results.append(row)
                print(_format_row(row, have_pml), flush=True)
    if args.out:
        Path(args.out).write_text(
            json.dumps(
                {
                    "device": device_name,
                    "threads": args.threads,
                    "dtype": args.dtype,
                    "results": results,
                },
                indent=2,
            )
        )


def _format_row(row: dict, have_pml: bool) -> str:  # type: ignore[type-arg]
    t = row["timing"] or {}
    mins = t.get("min", {})
    ck, dense = mins.get("contrastkit"), mins.get("dense")
    ratio = f"{dense / ck:.2f}" if ck and dense else "-"
    floor = f"{t['floor'] / ck:.2f}" if ck and t.get("floor") else "-"
    mem_ck = (row["memory_contrastkit"] or {}).get("peak_above_inputs_bytes")
    mem_d = (row["memory_dense"] or {}).get("peak_above_inputs_bytes")
    out = (
        (
            f"| {row['loss']} | {row['v']} | {row['n']} | {ck:.4f} | "
            f"{'-' if dense is None else f'{dense:.4f}'} | {ratio} | {floor} | {_gib(mem_ck)} | "
            f"{_gib(mem_d)} |"
        )
        if ck
        else f"| {row['loss']} | {row['v']} | {row['n']} | failed |"
    )
    if have_pml:
        pml = mins.get("pml")
        out += f" {'-' if pml is None else f'{pml:.4f}'} |"
    return out


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--losses", default="ntxent,supcon,dcl,clip")
    p.add_argument("--sizes", default="256,1024,4096,16384,65536")
    p.add_argument("--views", default="2,4")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--max-rows", type=int, default=131072, help="skip configurations with more rows"
    )
    p.add_argument(
        "--dense-max-rows", type=int, default=16384, help="largest V*N the dense way is timed at"
    )
    p.add_argument("--dense-mem-max-rows", type=int, default=16384)
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--out", default=None, help="write the results as JSON here")
    # worker arguments
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=["time", "memory"], help=argparse.SUPPRESS)
    p.add_argument("--impl", default="contrastkit", help=argparse.SUPPRESS)
    p.add_argument("--loss", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--v", type=int, help=argparse.SUPPRESS)
    p.add_argument("--dense", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--pml", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.worker:
        out = worker_time(args) if args.mode == "time" else worker_memory(args)
        print(json.dumps(out))
    else:
        driver(args)


if __name__ == "__main__":
    main()
