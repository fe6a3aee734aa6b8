"""The training loop: views -> encoder -> head -> loss, then evaluation of the frozen encoder."""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from contrastkit.data import ArrayDataset, load_dataset
from contrastkit.eval import extract_features, knn_accuracy, linear_probe
from contrastkit.losses import get_loss, loss_info
from contrastkit.models import ContrastiveModel, MLPHead, SmallCNN, count_parameters
from contrastkit.train.checkpoint import atomic_write_json, load_weights, save_weights
from contrastkit.train.config import FitConfig
from contrastkit.train.optim import build_optimizer, build_schedule
from contrastkit.views import ViewAugment, preset_for_dataset

__all__ = ["FitResult", "build_model", "evaluate_encoder", "fit", "load_run"]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.json"
EPOCH_LOG = "epochs.jsonl"


@dataclass(frozen=True)
class FitResult:
    """What a finished run produced."""

    run_dir: Path
    metrics: dict[str, Any]
    model: ContrastiveModel


def resolve_device(name: str) -> torch.device:
    """``"auto"`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available; use 'cpu' or 'auto'")
    return torch.device(name)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is expected to speed up convolutions on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None else False


def build_model(config: FitConfig, in_channels: int) -> ContrastiveModel:
    """The encoder and projection head a config describes."""
    encoder = SmallCNN(
        in_channels=in_channels, widths=config.encoder_widths, strides=config.encoder_strides
    )
    head = MLPHead(encoder.out_dim, hidden_dim=config.head_hidden_dim, out_dim=config.head_out_dim)
    return ContrastiveModel(encoder, head)


def _loss_module(config: FitConfig) -> nn.Module:
    kwargs = dict(config.loss_kwargs)
    if config.temperature is not None:
        kwargs.setdefault("temperature", config.temperature)
    return get_loss(config.loss, **kwargs)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Shuffled index batches; the last incomplete batch is dropped (contrastive losses want full ones)."""
    order = torch.randperm(n, generator=generator)
    usable = (n // batch_size) * batch_size if n >= batch_size else n
    for start in range(0, usable, batch_size):
        yield order[start : start + batch_size]


def evaluate_encoder(
    encoder: nn.Module,
    train: ArrayDataset,
    test: ArrayDataset,
    *,
    k: int = 20,
    knn_temperature: float = 0.07,
    device: torch.device | None = None,
) -> dict[str, float]:
    """kNN and linear-probe accuracy of frozen ``encoder`` features (train set fits, test set scores)."""
    train_f = extract_features(encoder, train.images, device=device)
    test_f = extract_features(encoder, test.images, device=device)
    knn = knn_accuracy(
        train_f, train.labels, test_f, test.labels, k=k, temperature=knn_temperature
    )
    probe = linear_probe(train_f, train.labels, test_f, test.labels)
    return {"knn_acc": float(knn), "linear_acc": float(probe.accuracy), "feature_dim": train_f.shape[1]}


def _autocast(device: torch.device, enabled: bool) -> contextlib.AbstractContextManager[Any]:
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def fit(config: FitConfig) -> FitResult:
    """Train a model as ``config`` says, evaluate it, and write the run directory.

    The run directory holds ``config.json``, ``epochs.jsonl`` (one JSON line per epoch),
    ``model.safetensors`` (encoder and head weights) and ``metrics.json`` (``knn_acc``, ``linear_acc``,
    timings).
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    device = resolve_device(config.device)
    use_bf16 = config.precision == "bf16" or (config.precision == "auto" and bf16_is_fast(device))
    split = load_dataset(config.data, root=config.data_root, seed=config.seed)
    train, test = split.train, split.test
    channels, height, _ = train.image_shape
    info = loss_info(config.loss)
    augment_name = config.augment or config.data
    augment = ViewAugment(preset_for_dataset(augment_name, channels=channels, image_size=height))
    model = build_model(config, channels).to(device)
    if device.type == "cpu" or use_bf16:
        model = model.to(memory_format=torch.channels_last)
    loss_fn = _loss_module(config).to(device)
    batch_size = min(config.batch_size, len(train))
    steps_per_epoch = max(len(train) // batch_size, 1)
    optimizer = build_optimizer(config, list(model.parameters()) + list(loss_fn.parameters()))
    schedule = build_schedule(config, optimizer, steps_per_epoch)

    run_dir = Path(config.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(run_dir / CONFIG_FILE, config.to_dict())
    log_path = run_dir / EPOCH_LOG
    log_path.write_text("")
    generator = torch.Generator().manual_seed(config.seed)
    images, labels = train.images, train.labels
    start_time = time.perf_counter()
    progress = _progress(config, steps_per_epoch)
    for epoch in range(config.epochs):
        model.train()
        epoch_start = time.perf_counter()
        total, count = 0.0, 0
        for idx in _batches(len(train), batch_size, generator):
            x = images[idx].to(device, non_blocking=True)
            views = augment.views(x, config.views, generator=generator)  # (B, V, C, H, W)
            b, v = views.shape[:2]
            flat = views.reshape(b * v, *views.shape[2:]).contiguous(memory_format=torch.channels_last)
            with _autocast(device, use_bf16):
                _, z = model(flat)
            z = z.float().reshape(b, v, -1)
            batch_labels = labels[idx].to(device) if info.needs_labels else None
            loss = loss_fn(z, batch_labels) if batch_labels is not None else loss_fn(z)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"loss became {loss.item()} at epoch {epoch}; lower the learning rate or raise "
                    "the temperature"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * b
            count += b
            progress.update(1)
            elapsed = max(time.perf_counter() - epoch_start, 1e-9)
            progress.set_postfix(epoch=epoch + 1, loss=f"{total / count:.4f}", samples_s=f"{count / elapsed:.0f}")
        epoch_time = time.perf_counter() - epoch_start
        record = {
            "epoch": epoch + 1,
            "loss": total / max(count, 1),
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": epoch_time,
            "samples_per_s": count / max(epoch_time, 1e-9),
        }
        with log_path.open("a") as fh:
            fh.write(json.dumps(record) + "\n")
    progress.close()
    train_seconds = time.perf_counter() - start_time

    save_weights(run_dir / WEIGHTS_FILE, model.state_dict(), metadata={"format": "contrastkit/1"})
    metrics = evaluate_encoder(
        model.encoder, train, test, k=config.knn_k, knn_temperature=config.knn_temperature, device=device
    )
    metrics.update(
        {
            "train_seconds": train_seconds,
            "epochs": config.epochs,
            "final_loss": record["loss"] if config.epochs else math.nan,
            "encoder_parameters": count_parameters(model.encoder),
            "precision": "bf16" if use_bf16 else "fp32",
            "device": str(device),
        }
    )
    atomic_write_json(run_dir / METRICS_FILE, metrics)
    return FitResult(run_dir=run_dir, metrics=metrics, model=model)


class _NullProgress:
    def update(self, n: int) -> None:
        pass

    def set_postfix(self, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(config: FitConfig, steps_per_epoch: int) -> Any:
    if not config.progress:
        return _NullProgress()
    from tqdm.auto import tqdm

    return tqdm(total=config.epochs * steps_per_epoch, unit="step", dynamic_ncols=True, mininterval=0.5)


def load_run(run_dir: str | Path) -> tuple[FitConfig, ContrastiveModel]:
    """Rebuild a run's configuration and model from its directory (no pickled code is executed)."""
    path = Path(run_dir)
    cfg_path = path / CONFIG_FILE
    if not cfg_path.is_file():
        raise FileNotFoundError(f"{path} is not a contrastkit run directory: {cfg_path} is missing")
    data = json.loads(cfg_path.read_text())
    for key in ("encoder_widths", "encoder_strides"):
        if key in data:
            data[key] = tuple(data[key])
    config = FitConfig.from_dict(data)
    weights = load_weights(path / WEIGHTS_FILE)
    first_conv = weights.get("encoder.features.0.0.weight")
    if first_conv is None:
        raise ValueError(f"{path / WEIGHTS_FILE} does not hold a contrastkit SmallCNN encoder")
    model = build_model(config, int(first_conv.shape[1]))
    model.load_state_dict(weights)
    return config, model
