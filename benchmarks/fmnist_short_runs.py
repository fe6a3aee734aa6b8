"""Short Fashion-MNIST pretraining runs (2 epochs, no final evaluation) for the issue-6 comparison table.

    .venv/bin/python benchmarks/fmnist_short_runs.py LOSS      # writes runs/fm2-LOSS
    .venv/bin/python benchmarks/eval_fmnist.py runs/fm2-ntxent runs/fm2-dcl runs/fm2-dclw runs/fm2-isogclr

Same encoder as benchmarks/fashion_mnist.py with a 1x1 pooling grid (256 features), batch 256, 2 views,
AdamW 2e-3, temperature 0.2 (iSogCLR: its own per-sample temperatures, initialised at 0.1), 1 thread.
"""

import sys

import torch

from contrastkit.train import FitConfig, fit

loss = sys.argv[1]
torch.set_num_threads(1)
config = FitConfig(
    loss=loss,
    data="fashion-mnist",
    epochs=2,
    batch_size=256,
    views=2,
    temperature=None if loss == "isogclr" else 0.2,
    lr=2e-3,
    seed=0,
    encoder_widths=(32, 64, 128, 256),
    encoder_strides=(2, 1, 2, 1),
    encoder_pool=1,
    out=f"runs/fm2-{loss}",
    threads=1,
    progress=False,
    evaluate=False,
)
fit(config)
