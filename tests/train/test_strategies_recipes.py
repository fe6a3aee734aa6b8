"""G-SimCLR, MCL and continual-SupCon recipes on a tiny image set; the pluggable-order loop."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from contrastkit.data import ArrayDataset
from contrastkit.models import ContrastiveModel, MLPHead, SmallCNN
from contrastkit.train.config import FitConfig
from contrastkit.train.core import NonFiniteLossError
from contrastkit.train.strategies import (
    _common,
    batch_label_purity,
    continual,
    fit_continual_supcon,
    fit_gsimclr,
    fit_mcl,
    random_batches,
    train_contrastive,
)


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """160 8x8 images of 4 classes (a bright quadrant per class, plus noise)."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(4), 40)
    x = rng.uniform(0, 0.3, size=(160, 8, 8))
    for i, c in enumerate(y):
        r, q = divmod(int(c), 2)
        x[i, 4 * r : 4 * r + 4, 4 * q : 4 * q + 4] += 0.6
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x=(x.clip(0, 1) * 255).astype(np.uint8), y=y)
    return path


def _config(path: Path, **kw: object) -> FitConfig:
    base: dict[str, object] = {
        "data": str(path),
        "epochs": 2,
        "batch_size": 16,
        "encoder_widths": (8, 8),
        "encoder_strides": (1, 2),
        "head_hidden_dim": 16,
        "head_out_dim": 8,
        "warmup_epochs": 0,
        "device": "cpu",
        "threads": 1,
        "progress": False,
        "tensorboard": False,
    }
    base.update(kw)
    return FitConfig(**base)  # type: ignore[arg-type]


def test_train_contrastive_uses_the_given_order() -> None:
    data = ArrayDataset(torch.rand(32, 1, 8, 8), torch.arange(32) % 4, "toy", 4)
    calls: list[int] = []
    fixed = [torch.arange(0, 8), torch.arange(8, 16)]

    def order(epoch: int) -> list[torch.Tensor]:
        calls.append(epoch)
        return fixed

    cfg = FitConfig(epochs=2, batch_size=8, warmup_epochs=0, device="cpu", progress=False)
    torch.manual_seed(0)
    model = ContrastiveModel(
        SmallCNN(in_channels=1, widths=(8,), strides=(1,)), MLPHead(8, hidden_dim=16, out_dim=8)
    )
    hist = train_contrastive(model, data, cfg, order, tag="x")
    assert [h["steps"] for h in hist] == [2, 2] and hist[0]["stage"] == "x"
    assert 0 in calls and 1 in calls
    torch.manual_seed(0)
    again = ContrastiveModel(
        SmallCNN(in_channels=1, widths=(8,), strides=(1,)), MLPHead(8, hidden_dim=16, out_dim=8)
    )
    assert [h["loss"] for h in train_contrastive(again, data, cfg, order)] == [
        h["loss"] for h in hist
    ]
    with pytest.raises(ValueError, match="no batch"):
        train_contrastive(again, data, cfg, lambda e: [])


class NaNFrom(nn.Module):
    """A loss that is finite until its ``call``-th call, then NaN (one term per anchor or mean)."""

    def __init__(self, call: int, reduction: str = "none", **_: object) -> None:
        super().__init__()
        self.call, self.calls, self.reduction = call, 0, reduction

    def forward(self, z: torch.Tensor, *_: object, **__: object) -> torch.Tensor:
        self.calls += 1
        terms = z.pow(2).sum(dim=(1, 2))
        if self.calls >= self.call:
            terms = terms * float("nan")
        return terms if self.reduction == "none" else terms.mean()


def _tiny_model() -> ContrastiveModel:
    torch.manual_seed(0)
    return ContrastiveModel(
        SmallCNN(in_channels=1, widths=(8,), strides=(1,)), MLPHead(8, hidden_dim=16, out_dim=8)
    )


def test_train_contrastive_matches_a_hand_written_loop() -> None:
    """The core runs the same steps as the loop it replaced: same losses, same weights (bitwise)."""
    from contrastkit.distributed import view_generator
    from contrastkit.losses import InfoNCE
    from contrastkit.train.optim import build_optimizer, build_schedule
    from contrastkit.views import ViewAugment, preset_for_dataset

    data = ArrayDataset(torch.rand(32, 1, 8, 8), torch.arange(32) % 4, "toy", 4)
    cfg = FitConfig(epochs=2, batch_size=8, warmup_epochs=1, device="cpu", progress=False)
    order = random_batches(32, 8, seed=3)
    model, reference = _tiny_model(), _tiny_model()
    hist = train_contrastive(model, data, cfg, order, loss_fn=InfoNCE(reduction="none"))
    augment = ViewAugment(preset_for_dataset("toy", channels=1, image_size=8))
    opt = build_optimizer(cfg, list(reference.parameters()))
    schedule = build_schedule(cfg, opt, 4)
    loss_fn = InfoNCE(reduction="none")
    for epoch in range(2):
        losses = []
        for step, idx in enumerate(order(epoch)):
            gen = view_generator(seed=cfg.seed, epoch=epoch, step=step, rank=0)
            views = augment.views(data.images[idx], cfg.views, generator=gen)
            _, z = reference(views.reshape(-1, 1, 8, 8))
            loss = loss_fn(z.reshape(8, 2, -1)).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            losses.append(float(loss.detach()))
        assert hist[epoch]["loss"] == sum(losses) / len(losses)
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)


def test_train_contrastive_stops_on_a_non_finite_loss() -> None:
    data = ArrayDataset(torch.rand(32, 1, 8, 8), torch.arange(32) % 4, "toy", 4)
    cfg = FitConfig(epochs=2, batch_size=8, warmup_epochs=0, device="cpu", progress=False)
    order = random_batches(32, 16, seed=0)  # 2 steps per epoch: call 3 is epoch 2, step 1
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 \(optimizer step 3\)") as info:
        train_contrastive(_tiny_model(), data, cfg, order, loss_fn=NaNFrom(3), tag="x")
    assert str(info.value).startswith("contrastive training (x) stopped: the loss became nan")


def test_random_batches_and_purity() -> None:
    order = random_batches(10, 4, seed=0)
    assert [b.numel() for b in order(0)] == [4, 4]
    assert not torch.equal(order(0)[0], order(1)[0])
    y = torch.tensor([0, 0, 1, 1])
    assert batch_label_purity([torch.arange(4)], y) == pytest.approx(4 / 12)
    assert batch_label_purity([torch.tensor([0, 1])], y) == 1.0
    with pytest.raises(ValueError, match="larger"):
        random_batches(3, 4, seed=0)


def test_gsimclr_recipe(tiny_npz: Path) -> None:
    res = fit_gsimclr(_config(tiny_npz), dae_epochs=1, dae_latent_dim=8)
    m = res.metrics
    assert m["n_clusters"] == 16 and res.extras["pseudo_labels"].labels.max() < 16
    for key in ("gsimclr_knn_acc", "gsimclr_linear_acc", "simclr_knn_acc", "simclr_linear_acc"):
        assert 0.0 <= m[key] <= 1.0
    assert [h["stage"] for h in res.history] == ["gsimclr"] * 2 + ["simclr"] * 2


def test_mcl_recipe(tiny_npz: Path) -> None:
    res = fit_mcl(_config(tiny_npz, batch_size=8), stages=2, k=2)
    m = res.metrics
    assert m["mcl_feature_dim"] == 2 * m["mcl_last_feature_dim"]
    assert m["stage1_cells"] == 2 and len(res.extras["stage_models"]) == 2
    # cell batches hold more same-label pairs than random ones (negatives share stage-0 clusters)
    assert m["stage1_same_label_pairs"] > m["stage0_same_label_pairs"]
    assert [h["stage"] for h in res.history] == ["stage0", "stage1", "simclr", "simclr"]
    with pytest.raises(ValueError, match="epoch"):
        fit_mcl(_config(tiny_npz), stages=3)
    with pytest.raises(TypeError, match="stages must be an int"):
        fit_mcl(_config(tiny_npz), stages=2.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="epochs_per_stage must be an int"):
        fit_mcl(_config(tiny_npz), epochs_per_stage=True)


def test_mcl_stops_on_a_non_finite_loss(tiny_npz: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    losses = iter([NaNFrom(10**9), NaNFrom(2)])  # stage 0 trains; stage 1 diverges at step 2
    monkeypatch.setattr(_common, "build_loss", lambda config, n: next(losses))
    with pytest.raises(
        NonFiniteLossError, match=r"^contrastive training \(stage1\) stopped"
    ) as info:
        fit_mcl(_config(tiny_npz), stages=2, k=2)
    assert "epoch 1, step 2 (optimizer step 2)" in str(info.value)


def test_continual_recipe_with_and_without_replay(tiny_npz: Path) -> None:
    cfg = _config(tiny_npz, loss="supcon", temperature=0.2)
    res = fit_continual_supcon(cfg, tasks=[[0, 1], [2, 3]], epochs_per_task=1, buffer_capacity=12)
    m = res.metrics
    assert len(m["accuracy_matrix"]) == 2 and len(m["accuracy_matrix"][1]) == 2
    assert sum(m["buffer_class_counts"].values()) == 12
    assert set(m["buffer_class_counts"]) == {0, 1, 2, 3}
    none = fit_continual_supcon(cfg, tasks=[[0, 1], [2, 3]], epochs_per_task=1, buffer_capacity=0)
    assert none.metrics["replay_per_batch"] == 0 and none.metrics["buffer_class_counts"] == {}
    with pytest.raises(ValueError, match="disjoint"):
        fit_continual_supcon(cfg, tasks=[[0, 1], [1, 2]])
    with pytest.raises(ValueError, match="buffer_capacity must be an int >= 0"):
        fit_continual_supcon(cfg, buffer_capacity=-1)
    with pytest.raises(TypeError, match="buffer_capacity must be an int"):
        fit_continual_supcon(cfg, buffer_capacity=1.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("capacity", [0, 12])
def test_continual_stops_on_a_non_finite_loss(
    tiny_npz: Path, monkeypatch: pytest.MonkeyPatch, capacity: int
) -> None:
    # 3 steps per epoch; SupCon's 7th call is the 2nd task's first step without replay (one call
    # per step; epochs count on across tasks) and epoch 2, step 1 with it (two calls from step 2)
    monkeypatch.setattr(continual, "SupCon", lambda **kw: NaNFrom(7, **kw))
    cfg = _config(tiny_npz, loss="supcon", temperature=0.2)
    where = (
        "epoch 3, step 1 (optimizer step 7)"
        if capacity == 0
        else "epoch 2, step 1 (optimizer step 4)"
    )
    with pytest.raises(NonFiniteLossError, match="continual SupCon stopped") as info:
        fit_continual_supcon(
            cfg, tasks=[[0, 1], [2, 3]], epochs_per_task=2, buffer_capacity=capacity
        )
    assert where in str(info.value)


# --- strategy runs through `fit` / `contrastkit fit` ------------------------------------------------


def test_fit_with_strategy_writes_a_run_directory_that_evaluates(
    tiny_npz: Path, tmp_path: Path
) -> None:
    import json

    from contrastkit.cli import main as cli_main
    from contrastkit.train import fit, load_run

    out = tmp_path / "gs"
    config = _config(
        tiny_npz,
        out=str(out),
        strategy="gsimclr",
        strategy_kwargs={"dae_epochs": 1, "dae_latent_dim": 8},
    )
    result = fit(config)
    m = result.metrics
    assert m["strategy"] == "gsimclr"
    assert m["knn_acc"] == m["gsimclr_knn_acc"] and m["linear_acc"] == m["gsimclr_linear_acc"]
    assert "simclr_knn_acc" in m
    stages = [json.loads(line)["stage"] for line in (out / "epochs.jsonl").read_text().splitlines()]
    assert stages == ["gsimclr"] * 2 + ["simclr"] * 2
    loaded_config, model = load_run(out)
    assert loaded_config.strategy == "gsimclr"
    x = torch.rand(2, 1, 8, 8)
    model.eval()
    result.model.eval()
    torch.testing.assert_close(model.encoder(x), result.model.encoder(x))
    assert cli_main(["eval", str(out)]) == 0


def test_mcl_strategy_reports_the_concatenated_features(tiny_npz: Path, tmp_path: Path) -> None:
    from contrastkit.train import fit

    config = _config(
        tiny_npz,
        out=str(tmp_path / "mcl"),
        batch_size=8,
        strategy="mcl",
        strategy_kwargs={"stages": 2, "k": 2, "baseline": False},
    )
    m = fit(config).metrics
    assert m["knn_acc"] == m["mcl_knn_acc"] and m["feature_dim"] == 2 * m["mcl_last_feature_dim"]
    assert "simclr_knn_acc" not in m


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"strategy": "swav"}, "strategy"),
        ({"strategy": "gsimclr", "strategy_kwargs": {"clusters": 3}}, "allowed: .*dae_epochs"),
        ({"strategy": "mcl", "strategy_kwargs": {"config": {}}}, "unknown strategy_kwargs"),
        ({"strategy_kwargs": {"stages": 2}}, "strategy is 'standard'"),
        ({"strategy": "mcl", "pretext": "rotation"}, "pretext"),
    ],
)
def test_bad_strategy_config_is_refused(
    tiny_npz: Path, values: dict[str, object], match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        _config(tiny_npz, **values)


def test_strategy_runs_refuse_resume_and_torchrun(
    tiny_npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from contrastkit.train import fit

    config = _config(tiny_npz, out=str(tmp_path / "x"), strategy="mcl")
    with pytest.raises(ValueError, match="cannot be resumed"):
        fit(config, resume=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="without torchrun"):
        fit(config)
