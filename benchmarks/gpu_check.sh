#!/usr/bin/env bash
# One prepared GPU check for the device machine: correctness of the engine on CUDA (float32 and bf16
# inputs against float64 dense references) and the loss benchmark on CUDA tensors.
# Run from the repository root: bash benchmarks/gpu_check.sh OUT_DIR
set -uo pipefail
out=${1:-/tmp/gpu_out}
mkdir -p "$out"
export PYTHONPATH=src PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 - <<'PY' 2>&1 | tee "$out/correctness.txt"
import torch, sys
sys.path.insert(0, "benchmarks")
from dense_reference import ntxent_dense, supcon_dense, dcl_dense, clip_dense
from contrastkit.losses import InfoNCE, SupCon, DCL, CLIPLoss
print("torch", torch.__version__, torch.cuda.get_device_name())
g = torch.Generator().manual_seed(0)
for dtype in (torch.float32, torch.bfloat16, torch.float16):
    for t in (0.01, 0.1):
        x = torch.randn(4096, 2, 128, generator=g)
        c = x[:, :1] + 0.5 * x  # correlated views
        lab = torch.randint(0, 50, (4096,), generator=g)
        xc = c.cuda().to(dtype).requires_grad_()
        x64 = c.double().cuda().requires_grad_()
        cases = [("ntxent", lambda v: InfoNCE(temperature=t)(v), lambda v: ntxent_dense(v, t)),
                 ("supcon", lambda v: SupCon(temperature=t, base_temperature=t)(v, lab.cuda()), lambda v: supcon_dense(v, lab.cuda(), t)),
                 ("dcl", lambda v: DCL(temperature=t)(v), lambda v: dcl_dense(v, t)),
                 ("clip", lambda v: CLIPLoss(init_temperature=t, learnable=False).cuda()(v[:, 0], v[:, 1]), lambda v: clip_dense(v[:, 0], v[:, 1], 1 / t))]
        for name, ck, ref in cases:
            l = ck(xc); (gx,) = torch.autograd.grad(l, xc)
            r = ref(x64); (gr,) = torch.autograd.grad(r, x64)
            rel = ((gx.double() - gr).norm() / gr.norm()).item()
            print(f"{str(dtype):15s} t={t:<5} {name:7s} loss {l.item():.6f} ref64 {r.item():.6f} "
                  f"|dloss| {abs(l.item() - r.item()):.2e} grad rel err {rel:.2e} finite {bool(torch.isfinite(gx).all())}")
PY
python3 benchmarks/losses.py --device cuda --threads 1 --losses ntxent --views 2,4 \
  --sizes 4096,16384,65536 --repeats 5 --dense-max-rows 32768 --dense-mem-max-rows 32768 \
  --out "$out/gpu_ntxent.json" 2>&1 | tee "$out/gpu_ntxent.md"
python3 benchmarks/losses.py --device cuda --threads 1 --losses supcon,dcl,clip --views 2 \
  --sizes 4096,65536 --repeats 5 --dense-max-rows 32768 --dense-mem-max-rows 32768 \
  --out "$out/gpu_others.json" 2>&1 | tee "$out/gpu_others.md"
