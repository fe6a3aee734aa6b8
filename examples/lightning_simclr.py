"""SimCLR on digits in PyTorch Lightning: contrastkit's views, losses and distributed gather in
Lightning's loop.

contrastkit trains its own runs on one training core (``contrastkit fit``); this example is the
other way round: your loop is Lightning's, and contrastkit supplies the parts. A
:class:`SimCLRModule` (a ``LightningModule``) draws the views with
:class:`contrastkit.views.ViewAugment` (batched, on the batch's device, from a per-rank seeded
generator), embeds them with a small CNN and an MLP head, and computes any registered views loss
(``ntxent``, ``dcl``, ``dhel``, ``supcon``, ...) through :class:`contrastkit.distributed.DistributedLoss`.
Under Lightning's DDP strategy (``--devices 2 --strategy ddp``) that wrapper gathers every
process's embeddings with an autograd-aware all-gather, so the negatives come from the global
batch and, with DDP's gradient averaging, the gradient equals the single-process gradient on the
concatenated batch (``contrastkit/distributed.py`` proves it). After training, the frozen encoder
is scored with contrastkit's kNN and linear probes.

Usage::

    pip install 'contrastkit[plot]' lightning
    python examples/lightning_simclr.py                        # 15 epochs on the CPU or a GPU
    python examples/lightning_simclr.py --loss dcl --temperature 0.1
    python examples/lightning_simclr.py --accelerator cpu --devices 2 --strategy ddp
    python examples/lightning_simclr.py --quick                # 1 epoch of 2 batches (CI)

It prints the kNN and linear-probe accuracy and writes Lightning's logs and checkpoints and the
encoder's weights (``encoder.safetensors``) under ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from contrastkit.data import load_dataset
from contrastkit.distributed import DistributedLoss, view_generator
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import get_loss, loss_info
from contrastkit.models import ContrastiveModel, MLPHead, SmallCNN
from contrastkit.views import ViewAugment, preset_for_dataset

L: Any
try:  # Lightning 2.x ships as `lightning`; the older name is `pytorch_lightning`
    import lightning as L
except ImportError:  # pragma: no cover - depends on the environment
    try:
        import pytorch_lightning as L
    except ImportError:
        L = None


def require_lightning() -> Any:
    """The Lightning package, or an ImportError that says how to install it."""
    if L is None:
        raise ImportError(
            "this example needs PyTorch Lightning: pip install lightning (or pytorch-lightning)"
        )
    return L


_Base: Any = L.LightningModule if L is not None else torch.nn.Module


class SimCLRModule(_Base):
    """A contrastive LightningModule: views -> encoder -> head -> contrastkit loss.

    Args:
        loss: A registered views loss (``contrastkit losses``); losses that need labels (SupCon)
            get the batch's labels.
        temperature: The loss's temperature (``None``: the loss's own default).
        views: Views per image (V >= 2).
        lr: AdamW learning rate (cosine schedule over ``max_epochs``).
        weight_decay: AdamW weight decay.
        max_epochs: Length of the cosine schedule.
        channels: Image channels.
        image_size: Image side in pixels.
        augment: The view preset (a dataset name of :func:`contrastkit.views.preset_for_dataset`).
        seed: Seed of the views: step ``s`` of epoch ``e`` on rank ``r`` uses its own generator.
        widths: Channel widths of the small CNN encoder.
    """

    def __init__(
        self,
        *,
        loss: str = "ntxent",
        temperature: float | None = 0.2,
        views: int = 2,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        max_epochs: int = 15,
        channels: int = 1,
        image_size: int = 8,
        augment: str = "digits",
        seed: int = 0,
        widths: Sequence[int] = (32, 32, 64, 64, 128, 128),
    ) -> None:
        require_lightning()
        super().__init__()
        info = loss_info(loss)
        if info.input_kind != "views" or info.momentum_encoder or info.needs_index:
            raise ValueError(
                f"loss {loss!r} is not a plain views loss (it is fed as {info.input_kind!r}, or "
                "keeps a momentum encoder or per-sample state); use e.g. ntxent, dcl, dhel, supcon"
            )
        if views < 2:
            raise ValueError(f"views must be >= 2 for contrastive training, got {views}")
        self.save_hyperparameters()
        encoder = SmallCNN(in_channels=channels, widths=tuple(widths))
        head = MLPHead(int(encoder.out_dim), hidden_dim=512, out_dim=128)
        self.model = ContrastiveModel(encoder, head)
        self.augment = ViewAugment(
            preset_for_dataset(augment, channels=channels, image_size=image_size)
        )
        kwargs = {} if temperature is None else {"temperature": temperature}
        # reduction="none": DistributedLoss averages this rank's anchors against the global batch.
        self.criterion = DistributedLoss(get_loss(loss, reduction="none", **kwargs))
        self.needs_labels = bool(info.needs_labels)

    @property
    def encoder(self) -> torch.nn.Module:
        """The encoder (features ``h``), what downstream tasks use."""
        return self.model.encoder

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        images, labels = batch
        gen = view_generator(
            seed=self.hparams.seed, epoch=self.current_epoch, step=batch_idx, rank=self.global_rank
        )
        views = self.augment.views(images, self.hparams.views, generator=gen)  # (b, V, C, H, W)
        b, v = views.shape[:2]
        _, z = self.model(views.flatten(0, 1))
        loss = self.criterion(z.reshape(b, v, -1), labels if self.needs_labels else None)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, sync_dist=True)
        return loss

    def configure_optimizers(self) -> Any:
        opt = torch.optim.AdamW(
            self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay
        )
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=self.hparams.max_epochs)
        return {"optimizer": opt, "lr_scheduler": schedule}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="digits", help="a contrastkit dataset (default: digits)")
    p.add_argument("--loss", default="ntxent", help="a registered views loss")
    p.add_argument("--temperature", type=float, default=0.2)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=256, help="per process (Lightning's DDP)")
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--accelerator", default="auto", help="Lightning's accelerator (cpu, gpu, auto)")
    p.add_argument("--devices", default="1", help="Lightning's devices (e.g. 2)")
    p.add_argument("--strategy", default="auto", help="Lightning's strategy (e.g. ddp)")
    p.add_argument(
        "--limit-batches", type=int, default=None, help="batches per epoch (a smoke test)"
    )
    p.add_argument("--out", default="runs/lightning-simclr", help="logs, checkpoints, weights")
    p.add_argument("--quick", action="store_true", help="1 epoch of 2 batches, a small encoder")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """Train with Lightning, then score the frozen encoder; returns the metrics (rank 0)."""
    args = parse_args(argv)
    lightning = require_lightning()
    lightning.seed_everything(args.seed, workers=True, verbose=False)
    split = load_dataset(args.data, seed=args.seed)
    channels, size, _ = split.train.image_shape
    epochs, limit = (1, 2) if args.quick else (args.epochs, args.limit_batches)
    module = SimCLRModule(
        loss=args.loss,
        temperature=args.temperature,
        lr=args.lr,
        max_epochs=epochs,
        channels=channels,
        image_size=size,
        augment=args.data,
        seed=args.seed,
        widths=(16, 32) if args.quick else (32, 32, 64, 64, 128, 128),
    )
    loader = DataLoader(
        TensorDataset(split.train.images, split.train.labels),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,  # every rank contrasts the same number of instances
    )
    devices: int | str = int(args.devices) if args.devices.isdigit() else args.devices
    trainer = lightning.Trainer(
        max_epochs=epochs,
        limit_train_batches=limit,
        accelerator=args.accelerator,
        devices=devices,
        strategy=args.strategy,
        default_root_dir=args.out,
        enable_progress_bar=not args.quick,
        enable_model_summary=False,
        log_every_n_steps=1,
        deterministic=True,
    )
    trainer.fit(module, loader)
    if not trainer.is_global_zero:
        return {}
    encoder = module.encoder.cpu()
    train_h = extract_features(encoder, split.train.images)
    test_h = extract_features(encoder, split.test.images)
    metrics = {
        "knn_acc": knn_accuracy(train_h, split.train.labels, test_h, split.test.labels, k=20),
        "linear_acc": linear_probe(train_h, split.train.labels, test_h, split.test.labels).accuracy,
        "steps": float(trainer.global_step),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous() for k, v in encoder.state_dict().items()}, out / "encoder.safetensors"
    )
    print(
        f"lightning + contrastkit: {args.loss}, {trainer.global_step} steps; "
        f"kNN {metrics['knn_acc']:.4f}, linear {metrics['linear_acc']:.4f}; weights {out}"
    )
    return metrics


if __name__ == "__main__":
    try:
        main()
    except ImportError as exc:
        print(f"lightning_simclr: {exc}", file=sys.stderr)
        sys.exit(2)
