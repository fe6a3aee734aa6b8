"""The training core: the one place that steps an optimizer, and its non-finite-loss policy."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from contrastkit.cli import main
from contrastkit.train.core import (
    NonFiniteLossError,
    StepOutput,
    TrainingCore,
    progress_bar,
    require_finite,
)
from contrastkit.train.state import Progress

SRC = Path(__file__).resolve().parents[2] / "src" / "contrastkit"


def regression(seed: int = 0) -> tuple[nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(seed)
    return nn.Linear(3, 1), torch.randn(40, 3), torch.randn(40, 1)


def mse_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Any:
    def step(idx: torch.Tensor) -> StepOutput:
        return StepOutput(loss=nn.functional.mse_loss(model(x[idx]), y[idx]), samples=len(idx))

    return step


def test_epoch_matches_a_hand_written_loop() -> None:
    model, x, y = regression()
    reference = nn.Linear(3, 1)
    reference.load_state_dict(model.state_dict())
    core = TrainingCore(torch.optim.SGD(model.parameters(), lr=0.1))
    summary = core.run_epoch(0, torch.arange(40).split(16), mse_step(model, x, y))
    opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    losses = []
    for idx in torch.arange(40).split(16):
        loss = nn.functional.mse_loss(reference(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append((float(loss.detach()), len(idx)))
    for a, b in zip(model.parameters(), reference.parameters(), strict=True):
        assert torch.equal(a, b)
    assert summary.steps == 3 and summary.samples == 40
    assert summary.loss == pytest.approx(sum(v * n for v, n in losses) / 40)
    assert core.progress == Progress(epoch=1, global_step=3)


def test_schedule_hooks_and_callbacks_run_in_order() -> None:
    model, x, y = regression()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5**s)
    events: list[str] = []
    core = TrainingCore(
        opt,
        schedule=schedule,
        after_step=[lambda: events.append("after")],
        on_step=[lambda r: events.append(f"on{r['step']}")],
    )
    records = [core.step(mse_step(model, x, y)(torch.arange(8)), epoch=0) for _ in range(3)]
    assert [r["lr"] for r in records] == [1.0, 0.5, 0.25]  # the lr the step used
    assert events == ["after", "on1", "after", "on2", "after", "on3"]
    assert core.lr == 0.125


def test_gradient_clipping_is_applied_and_logged() -> None:
    model, x, _y = regression()
    core = TrainingCore(torch.optim.SGD(model.parameters(), lr=0.0), grad_clip=1e-3)
    record = core.step(StepOutput(loss=1e3 * model(x).sum()), epoch=0)
    total = torch.cat([p.grad.flatten() for p in model.parameters()]).norm()  # type: ignore[union-attr]
    assert record["grad_norm"] > 1.0 and float(total) == pytest.approx(1e-3, rel=1e-4)


def test_logs_and_value_go_into_the_record() -> None:
    model, x, _y = regression()
    core = TrainingCore(torch.optim.SGD(model.parameters(), lr=0.1))
    out = StepOutput(
        loss=model(x).pow(2).mean(), value=torch.tensor(7.0), logs={"acc": torch.tensor(0.25)}
    )
    record = core.step(out, epoch=2)
    assert record == {"step": 1, "epoch": 3, "loss": 7.0, "lr": 0.1, "acc": 0.25}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_loss_stops_before_any_update(bad: float) -> None:
    model, x, y = regression()
    before = [p.detach().clone() for p in model.parameters()]
    core = TrainingCore(torch.optim.SGD(model.parameters(), lr=0.1), name="fine-tuning")
    core.step(mse_step(model, x, y)(torch.arange(8)), epoch=0)
    after_one = [p.detach().clone() for p in model.parameters()]
    assert not all(torch.equal(a, b) for a, b in zip(before, after_one, strict=True))
    with pytest.raises(NonFiniteLossError) as info:
        core.step(StepOutput(loss=model(x).sum() * bad), epoch=1)
    message = str(info.value)
    assert message.startswith("fine-tuning stopped") and str(abs(bad)) in message
    assert "epoch 2, step 2 (optimizer step 2)" in message
    assert "learning rate" in message and "fp32" in message
    assert isinstance(info.value, FloatingPointError) and not isinstance(info.value, ValueError)
    for a, b in zip(after_one, model.parameters(), strict=True):
        assert torch.equal(a, b)  # the bad step changed nothing
    assert core.progress.global_step == 1


def test_resumed_progress_continues_mid_epoch() -> None:
    model, x, y = regression()
    core = TrainingCore(
        torch.optim.SGD(model.parameters(), lr=0.1),
        progress=Progress(epoch=1, step_in_epoch=2, global_step=7, loss_sum=4.0, samples=2),
    )
    summary = core.run_epoch(1, [torch.arange(8)], mse_step(model, x, y))
    assert summary.steps == 3 and summary.samples == 10
    assert core.progress == Progress(epoch=2, global_step=8)


def test_bad_grad_clip_is_refused() -> None:
    model, _, _ = regression()
    with pytest.raises(ValueError, match="grad_clip"):
        TrainingCore(torch.optim.SGD(model.parameters(), lr=0.1), grad_clip=0.0)


def test_progress_bar_can_be_silent() -> None:
    bar = progress_bar(10, enabled=False)
    bar.update(1)
    bar.set_postfix(loss=1.0)
    bar.close()


def test_a_diverging_cli_run_is_a_training_failure_not_bad_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [
        "fit",
        "--data",
        "digits",
        "--epochs",
        "1",
        "--lr",
        "1e30",
        "--out",
        str(tmp_path / "r"),
    ]
    code = main([*argv, "--threads", "1", "--no-progress", "--precision", "fp32"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and len(err) == 1
    assert err[0].startswith("contrastkit fit: training failed:") and "step" in err[0]


def test_only_the_core_steps_an_optimizer() -> None:
    """Every gradient-training path goes through TrainingCore (the L-BFGS probe aside)."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        text = path.read_text()
        if path.name == "core.py" and path.parent.name == "train":
            assert text.count("self.optimizer.step()") == 1
            continue
        for lineno, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if code.strip().startswith((">>>", "...")):
                continue  # a docstring example: the user's own loop
            if ".backward(" in code or "opt.step(" in code or "optimizer.step(" in code:
                offenders.append(f"{path.relative_to(SRC)}:{lineno}: {line.strip()}")
    allowed = [o for o in offenders if o.startswith("eval/linear.py")]  # L-BFGS probe
    assert offenders == allowed, "\n".join(offenders)


def test_diverged_embeddings_are_reported_with_their_step() -> None:
    """A step that checks its outputs with require_finite stops as a diverged run, with its place."""
    model, x, _y = regression()

    def step(idx: torch.Tensor) -> StepOutput:
        out = require_finite(model(x[idx]))
        return StepOutput(loss=out.pow(2).mean() * 1e30)

    core = TrainingCore(torch.optim.SGD(model.parameters(), lr=1e30))
    with pytest.raises(NonFiniteLossError) as info:
        core.run_epoch(0, torch.arange(40).split(8), step)
    message = str(info.value)
    assert message.startswith("training stopped: the embeddings became NaN or infinite at epoch 1")
    assert "(after optimizer step" in message and "learning rate" in message


def test_a_genuine_input_error_is_not_rewritten() -> None:
    model, _x, _ = regression()

    def step(idx: torch.Tensor) -> StepOutput:
        raise ValueError("labels must have 8 entries")

    core = TrainingCore(torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="labels must have 8 entries") as info:
        core.run_epoch(0, [torch.arange(8)], step)
    assert not isinstance(info.value, NonFiniteLossError)
