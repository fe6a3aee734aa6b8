"""Series and tabular contrastive recipes against the raw-input and random-init baselines."""

from __future__ import annotations

import pytest
import torch

from contrastkit.data.series import SeriesSplit
from contrastkit.train.strategies.modalities import fit_modality
from contrastkit.views import SeriesAugment


def _series(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2).repeat(n // 2)
    t = torch.linspace(0, 6.28, 32)
    x = torch.where(y[:, None] == 0, torch.sin(t), torch.sign(torch.sin(t)))[:, None, :]
    return x + 0.1 * torch.randn(n, 1, 32, generator=g), y


def test_series_recipe_reports_baselines_and_is_seeded() -> None:
    (xtr, ytr), (xte, yte) = _series(24, 0), _series(16, 1)
    split = SeriesSplit(xtr, ytr, xte, yte, "toy", 2)
    kw = {"epochs": 2, "batch_size": 8, "width": 8, "series_augment": SeriesAugment(permute_p=0)}
    res = fit_modality(split, **kw)  # type: ignore[arg-type]
    m = res.metrics
    assert m["kind"] == "series" and m["feature_dim"] == 4 and m["train_size"] == 24
    for key in ("linear_acc", "knn_acc", "raw_linear_acc", "random_init_linear_acc"):
        assert 0.0 <= m[key] <= 1.0
    assert m["raw_linear_acc"] == 1.0  # sine vs square wave: linearly separable raw
    assert len(res.history) == 2
    again = fit_modality(split, **kw)  # type: ignore[arg-type]
    assert again.metrics["final_loss"] == m["final_loss"]


def test_tabular_recipe_uses_scarf_and_small_sets() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 5, generator=g)
    y = torch.tensor([0, 1] * 20)
    split = SeriesSplit(x, y, x[:4].clone(), y[:4].clone(), "tiny", 2)
    res = fit_modality(split, epochs=1, batch_size=64, width=8)  # batch clipped to the 40 rows
    assert res.metrics["kind"] == "tabular" and res.metrics["batch_size"] == 40
    with pytest.raises(ValueError, match="at least 2"):
        fit_modality(SeriesSplit(x[:1], y[:1], x[:1], y[:1], "one", 2), epochs=1)


def test_named_tabular_set() -> None:
    res = fit_modality("wine", epochs=2, width=16)
    assert res.metrics["data"] == "wine" and res.metrics["raw_linear_acc"] > 0.9


def test_cli_fit_arrays_on_a_user_npz(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import json

    import numpy as np

    from contrastkit.cli import main as cli_main

    (xtr, ytr), (xte, yte) = _series(24, 0), _series(16, 1)
    path = tmp_path / "waves.npz"
    np.savez(path, x_train=xtr.numpy(), y_train=ytr.numpy(), x_test=xte.numpy(), y_test=yte.numpy())
    out = tmp_path / "run"
    args = ["fit-arrays", str(path), "--epochs", "2", "--batch-size", "8", "--width", "8"]
    assert cli_main([*args, "--out", str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("waves (series, 24 train / 16 test, 2 classes): linear probe")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["raw_linear_acc"] == 1.0 and metrics["arguments"]["epochs"] == 2
    assert len((out / "epochs.jsonl").read_text().splitlines()) == 2
    assert (out / "model.safetensors").is_file()
    before = (out / "metrics.json").read_bytes()  # a second run refuses the folder unasked
    assert cli_main([*args, "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "metrics.json").read_bytes() == before
    assert cli_main([*args, "--out", str(out), "--overwrite"]) == 0
    capsys.readouterr()
    assert cli_main([*args, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["kind"] == "series"


def test_cli_fit_arrays_bad_input_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from contrastkit.cli import main as cli_main

    assert cli_main(["fit-arrays", "wine", "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err
    bad = tmp_path / "bad.npz"
    import numpy as np

    np.savez(bad, x_train=np.zeros((4, 3)))
    assert cli_main(["fit-arrays", str(bad)]) == 2
    assert "lacks arrays" in capsys.readouterr().err


class _NaNFrom(torch.nn.Module):
    """NT-Xent's stand-in: finite until its ``call``-th call, then NaN."""

    def __init__(self, call: int, **_: object) -> None:
        super().__init__()
        self.call, self.calls = call, 0

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        loss = z.pow(2).mean()
        return loss * float("nan") if self.calls >= self.call else loss


def test_a_non_finite_loss_stops_training(monkeypatch: pytest.MonkeyPatch) -> None:
    from contrastkit.train.core import NonFiniteLossError
    from contrastkit.train.strategies import modalities

    monkeypatch.setattr(modalities, "InfoNCE", lambda **kw: _NaNFrom(5, **kw))
    (xtr, ytr), (xte, yte) = _series(24, 0), _series(16, 1)
    split = SeriesSplit(xtr, ytr, xte, yte, "toy", 2)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 2 \\(optimizer step 5\\)"):
        fit_modality(split, epochs=3, batch_size=8, width=8)  # 3 steps per epoch


def test_cli_fit_arrays_divergence_is_a_training_failure(  # type: ignore[no-untyped-def]
    monkeypatch, capsys
) -> None:
    from contrastkit.cli import main as cli_main
    from contrastkit.train.strategies import modalities

    monkeypatch.setattr(modalities, "InfoNCE", lambda **kw: _NaNFrom(1, **kw))
    assert cli_main(["fit-arrays", "wine", "--epochs", "1", "--width", "8"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("contrastkit fit-arrays: training failed:")
    assert "step 1" in err[0]
