"""Two-tower training through ``fit``: run directories, resume, recipes, CLI, torchrun gradients."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from contrastkit.cli import main as cli_main
from contrastkit.data import load_dataset
from contrastkit.data.paired import load_pairs_npz
from contrastkit.losses import get_loss
from contrastkit.models import TextTokenizer, TwoTowerModel, build_tower
from contrastkit.runs import (
    TOKENIZER_FILE,
    is_two_tower_run,
    load_run,
    load_two_tower_run,
    weights_metadata,
)
from contrastkit.train import FitConfig, fit, load_recipe, resume_run
from contrastkit.train.config import config_from_mapping
from contrastkit.train.core import StepOutput, TrainingCore
from contrastkit.train.recipes import recipe_text

pytest.importorskip("tokenizers")
sys.path.insert(0, str(Path(__file__).parent))

import two_tower_ddp_worker as ddp_worker

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
TWO_TOWER_RECIPES = ("clip", "cliprocket", "milnce", "sogclr_bimodal", "isogclr_bimodal")
#: a two-tower model small enough for many short runs on one CPU thread
TINY: dict[str, Any] = {
    "epochs": 2,
    "batch_size": 64,
    "encoder_widths": [8, 16],
    "encoder_strides": [1, 2],
    "head_out_dim": 16,
    "text_kwargs": {"width": 16, "layers": 1, "heads": 2, "context_length": 24, "vocab_size": 80},
    "threads": 1,
    "progress": False,
    "evaluate": False,
    "tensorboard": False,
    "checkpoint_every": 3,
    "precision": "fp32",
    "device": "cpu",
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits with captions "a photo of the digit three" (a few templates), 256 train pairs."""
    split = load_dataset("digits", seed=0)
    templates = ("a photo of the digit {}", "a small drawing of a {}", "the number {}")
    rng = np.random.default_rng(0)

    def captions(labels: torch.Tensor) -> np.ndarray:
        return np.array([templates[rng.integers(3)].format(NAMES[int(y)]) for y in labels])

    def pixels(images: torch.Tensor) -> np.ndarray:
        return (images.numpy() * 255).round().astype(np.uint8)

    path = tmp_path_factory.mktemp("pairs") / "digit-pairs.npz"
    tr, te = split.train, split.test
    np.savez(
        path,
        a_train=pixels(tr.images[:256]),
        b_train=captions(tr.labels[:256]),
        y_train=tr.labels[:256].numpy(),
        a_test=pixels(te.images[:100]),
        b_test=captions(te.labels[:100]),
        y_test=te.labels[:100].numpy(),
        class_names=np.array(NAMES),
        zero_shot_templates=np.array(["a picture of a {}"]),
    )
    return path


def config(pairs: Path, out: Path, **values: Any) -> FitConfig:
    return config_from_mapping({**TINY, "pairs": str(pairs), "out": str(out), **values})


def step_losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "steps.jsonl").read_text().splitlines()]


def test_fit_clip_writes_a_run_that_loads_back_without_pickle(pairs: Path, tmp_path: Path) -> None:
    run = tmp_path / "clip"
    result = fit(config(pairs, run, loss="clip", evaluate=True, knn_k=5))
    for name in ("config.json", "steps.jsonl", "epochs.jsonl", "metrics.json", "model.safetensors"):
        assert (run / name).is_file(), name
    assert (run / TOKENIZER_FILE).is_file() and list((run / "checkpoints").glob("*.safetensors"))
    header = weights_metadata(run / "model.safetensors")
    assert (header["model"], header["kind_a"], header["shape_a"], header["kind_b"]) == (
        "two-tower",
        "image",
        "1,8,8",
        "text",
    )
    m = result.metrics
    assert m["model"] == "two-tower" and m["steps"] == 8 and m["kinds"] == ["image", "text"]
    for key in ("image_to_text_R@1", "text_to_image_R@10", "zero_shot_top1", "linear_acc"):
        assert key in m, key
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert "logit_scale" in steps[0] and len(steps) == 8
    # the saved model is the trained one: same embeddings, same tokenizer, CLIP's learnt scale
    assert is_two_tower_run(run)
    saved_config, model = load_two_tower_run(run)
    assert saved_config.loss == "clip" and isinstance(model, TwoTowerModel)
    trained = result.model
    assert isinstance(trained, TwoTowerModel)
    trained.eval()
    model.eval()
    captions = ["a photo of the digit four", "the number nine"]
    images = load_pairs_npz(pairs).test.a[:5]
    with torch.no_grad():
        torch.testing.assert_close(model.encode_text(captions), trained.encode_text(captions))
        torch.testing.assert_close(model.encode_image(images), trained.encode_image(images))
    assert model.tokenizer is not None and trained.tokenizer is not None
    assert model.tokenizer.to_json() == trained.tokenizer.to_json()
    assert float(model.logit_scale_value()) == pytest.approx(m["logit_scale"])
    with pytest.raises(ValueError, match="two-tower run"):
        load_run(run)


@pytest.mark.parametrize("loss", ["cliprocket", "isogclr_bimodal"])
def test_crash_then_resume_equals_the_uninterrupted_run(
    loss: str, pairs: Path, tmp_path: Path
) -> None:
    """Bitwise on a CPU: augmented image and text views (CLIP-rocket), per-sample state (iSogCLR)."""
    reference = tmp_path / "reference"
    fit(config(pairs, reference, loss=loss))

    class CrashError(Exception):
        pass

    def crash_at_7(record: dict[str, Any]) -> None:
        if record["step"] == 7:
            raise CrashError

    run = tmp_path / "crashed"
    with pytest.raises(CrashError):  # 4 steps per epoch: the newest checkpoint is mid-epoch, step 6
        fit(config(pairs, run, loss=loss), on_step=crash_at_7)
    assert len(step_losses(run)) == 7 and not (run / "model.safetensors").exists()
    result = resume_run(run, progress=False)
    assert result.metrics["resumed_from"].endswith("step-00000006.safetensors")
    assert step_losses(run) == step_losses(reference)
    wa, wb = (
        load_file(str(reference / "model.safetensors")),
        load_file(str(run / "model.safetensors")),
    )
    assert wa.keys() == wb.keys()
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key
    assert (run / TOKENIZER_FILE).read_text() == (reference / TOKENIZER_FILE).read_text()


def test_separable_toy_pairs_reach_near_zero_loss() -> None:
    """Eight one-hot vectors and eight distinct captions: CLIP's loss goes to ~0 on the core."""
    torch.manual_seed(0)
    captions = [f"a photo of the digit {n}" for n in NAMES[:8]]
    tokenizer = TextTokenizer.train(captions, vocab_size=60)
    text = build_tower("text", tokenizer=tokenizer, text_kwargs={"width": 16, "heads": 2})
    model = TwoTowerModel(build_tower("vector", shape=(8,)), text, dim=8, kinds=("vector", "text"))
    loss_fn = get_loss("clip")
    x, tokens = torch.eye(8), text.tokenize(captions)  # type: ignore[operator]
    optimizer = torch.optim.AdamW([*model.parameters(), *loss_fn.parameters()], lr=1e-2)
    core = TrainingCore(optimizer)

    def step(_: int) -> StepOutput:
        za, zb = model(x, tokens)
        return StepOutput(loss=loss_fn(za, zb))

    first = core.run_epoch(0, [0], step).loss
    last = core.run_epoch(1, range(150), step)
    model.eval()
    with torch.no_grad():
        final = float(loss_fn(*model(x, tokens)))
    assert first > 1.5 and final < 0.02, (first, last.loss, final)


@pytest.mark.parametrize("name", TWO_TOWER_RECIPES)
def test_two_tower_recipe_is_documented_and_trains(name: str, pairs: Path, tmp_path: Path) -> None:
    recipe = load_recipe(name)
    text = recipe_text(name)
    assert recipe.description and "Source defaults" in text and "Paper:" in text
    assert "fashion-mnist-captions" in text  # the Fashion-MNIST settings are given
    base = recipe.config()
    assert base.two_tower and base.loss == name and base.data == "digits-captions"
    run = tmp_path / name
    # a file of pairs has one caption per image (MIL-NCE's bags are then bags of one)
    one_caption = {"captions_per_image": 1} if name == "milnce" else {}
    result = fit(
        recipe.config({**TINY, "epochs": 1, "pairs": str(pairs), "out": str(run), **one_caption})
    )
    assert result.metrics["steps"] == 4 and np.isfinite(result.metrics["final_loss"])
    first = json.loads((run / "steps.jsonl").read_text().splitlines()[0])
    assert ("objective" in first) == name.endswith("sogclr_bimodal")
    assert json.loads((run / "config.json").read_text())["loss_kwargs"] == base.loss_kwargs


def test_any_two_modalities_train_with_the_same_command(tmp_path: Path) -> None:
    """Two sensors: series (N, 3, 24) paired with vectors (N, 5) of the same events."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(160, 4, generator=g)
    series = torch.einsum("nk,ktc->nct", z, torch.randn(4, 24, 3, generator=g))
    vectors = z @ torch.randn(4, 5, generator=g)
    path = tmp_path / "sensors.npz"
    np.savez(
        path,
        a_train=series[:128].numpy(),
        b_train=vectors[:128].numpy(),
        a_test=series[128:].numpy(),
        b_test=vectors[128:].numpy(),
    )
    run = tmp_path / "sensors"
    result = fit(config(path, run, loss="clip", evaluate=True, epochs=1))
    assert result.metrics["kinds"] == ["series", "vector"]
    assert "series_to_vector_R@1" in result.metrics
    assert not (run / TOKENIZER_FILE).exists()
    _, model = load_two_tower_run(run)
    assert model.kinds == ("series", "vector") and model.tokenizer is None


def test_cli_fit_with_a_csv_of_pairs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = pytest.importorskip("PIL.Image")
    digits = load_dataset("digits", seed=0).train
    rows = ["image;caption"]
    (tmp_path / "img").mkdir()
    for i in range(80):
        pixels = (digits.images[i, 0].numpy() * 255).astype(np.uint8)
        image.fromarray(pixels, mode="L").save(tmp_path / "img" / f"{i}.png")
        rows.append(f"img/{i}.png;a photo of the digit {NAMES[int(digits.labels[i])]}")
    (tmp_path / "pairs.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    argv = ["fit", "clip", "--pairs", str(tmp_path / "pairs.csv"), "--csv-img-key", "image",
            "--csv-caption-key", "caption", "--csv-separator", ";", "--epochs", "1",
            "--batch-size", "32", "--out", str(run), "--no-progress", "--threads", "1",
            "--set", "encoder_widths=[8]", "--set", "encoder_strides=[2]",
            "--set", "text_kwargs={width: 16, layers: 1, heads: 2}",
            "--set", "evaluate=false", "--set", "tensorboard=false"]  # fmt: skip
    assert cli_main(argv) == 0
    assert "contrastkit fit: done" in capsys.readouterr().out
    saved = json.loads((run / "config.json").read_text())
    assert (saved["pairs"], saved["csv_img_key"], saved["csv_separator"]) == (
        str(tmp_path / "pairs.csv"),
        "image",
        ";",
    )
    assert cli_main(["fit", "--resume", str(run), "--no-progress"]) == 0  # a finished run resumes
    (tmp_path / "bad.csv").write_text("image;caption\nimg/0.png;\n")
    bad = ["fit", "clip", "--pairs", str(tmp_path / "bad.csv"), "--csv-img-key", "image",
           "--csv-caption-key", "caption", "--csv-separator", ";", "--out", str(tmp_path / "x")]  # fmt: skip
    assert cli_main(bad) == 2
    err = capsys.readouterr().err
    assert "bad.csv line 2: empty caption in column 'caption'" in err


@pytest.mark.parametrize(
    ("values", "expect"),
    [
        ({"loss": "clip", "data": "digits"}, "trains two towers on paired data"),
        ({"loss": "ntxent", "data": "digits-captions"}, "train two towers with a bimodal loss"),
        ({"loss": "clip", "pairs": "x.csv", "text_kwargs": {"depth": 2}}, r"unknown text_kwargs"),
        ({"loss": "clip", "pairs": "x.csv", "pretext": "rotation"}, "no pretext term"),
        ({"loss": "ntxent", "text_kwargs": {"width": 8}}, "the data are not paired"),
        ({"loss": "clip", "pairs": "x.csv", "csv_separator": "||"}, "one character"),
        ({"loss": "milnce", "pairs": "x.csv", "captions_per_image": 3}, "pairs from a file"),
        ({"loss": "ntxent", "captions_per_image": 2}, "unpaired data"),
        ({"loss": "milnce", "data": "digits-captions", "captions_per_image": 0}, ">= 1"),
    ],
)
def test_two_tower_config_errors(values: dict[str, Any], expect: str) -> None:
    with pytest.raises(ValueError, match=expect):
        config_from_mapping(values)


# -------------------------------------------------------------------------------------------------
# 1 process vs 2 gloo processes: DistributedPairLoss gives the single-process gradients


def run_ranks(world: int, out_dir: Path, cases: list[str], timeout: float = 120) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
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
                [sys.executable, ddp_worker.__file__, str(out_dir), json.dumps(cases)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = []
    try:
        for p in procs:
            outputs.append(p.communicate(timeout=timeout)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for rank, (p, out) in enumerate(zip(procs, outputs, strict=True)):
        assert p.returncode == 0, f"rank {rank} failed:\n{out}"


@pytest.fixture(scope="module")
def two_rank_results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[int, dict[str, torch.Tensor]]:
    out_dir = tmp_path_factory.mktemp("ddp-two-tower")
    run_ranks(2, out_dir, list(ddp_worker.CASES))
    return {r: load_file(str(out_dir / f"rank{r}.safetensors")) for r in range(2)}


@pytest.mark.parametrize("name", list(ddp_worker.CASES))
def test_two_processes_give_the_single_process_gradients(
    name: str, two_rank_results: dict[int, dict[str, torch.Tensor]]
) -> None:
    ref = ddp_worker.single_process(name)
    grads = [k for k in ref if k.startswith("grad.")]
    assert any(k.startswith("grad.tower_b") for k in grads)
    if name.startswith("clip"):
        assert "grad.logit_scale" in grads  # the loss's learnable scale, averaged by hand
    for rank, res in two_rank_results.items():
        for key in ref:
            # loss state such as b = max_k h_ik / tau amplifies float rounding by 1 / tau
            atol = 1e-4 if key.startswith("loss.") else 1e-6
            torch.testing.assert_close(
                res[f"{name}/{key}"], ref[key], rtol=1e-5, atol=atol, msg=f"rank {rank} {key}"
            )
    # the parameters moved: not two untouched initialisations compared
    first, _ = ddp_worker.build_case(name, reduction="mean")
    assert not torch.allclose(first.proj_a.weight, ref["model.proj_a.weight"], atol=1e-3)


@pytest.mark.slow  # about 30 s on a loaded 2-core machine (torchrun agent + 2 workers)
def test_torchrun_two_processes_train_two_towers(pairs: Path, tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2",
           "--master-addr", "127.0.0.1", "--master-port", str(port),
           "-m", "contrastkit", "fit", "cliprocket", "--pairs", str(pairs), "--epochs", "2",
           "--batch-size", "64", "--device", "cpu", "--precision", "fp32", "--threads", "1",
           "--no-progress", "--out", str(run),
           "--set", "encoder_widths=[8, 16]", "--set", "encoder_strides=[1, 2]",
           "--set", "head_out_dim=16", "--set", "text_kwargs={width: 16, layers: 1, heads: 2}",
           "--set", "tensorboard=false", "--set", "knn_k=5"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("contrastkit fit: done") == 1  # rank 0 only
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["steps"] == 8 and "zero_shot_top1" in metrics
    steps = [json.loads(x) for x in (run / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(1, 9))  # one line per step, not per rank
    _, model = load_two_tower_run(run)
    assert model.kinds == ("image", "text") and model.local_projections


def test_milnce_trains_on_bags_of_generated_captions(tmp_path: Path) -> None:
    """Three captions per digit image: the text tower sees (B * 3) captions, the loss (B, 3, D)."""
    values = {**TINY, "loss": "milnce", "data": "digits-captions", "captions_per_image": 3}
    values.update({"epochs": 2, "batch_size": 128, "temperature": 0.1, "out": str(tmp_path / "m")})
    values["text_kwargs"] = {**TINY["text_kwargs"], "context_length": 72}
    result = fit(config_from_mapping(values))
    losses = step_losses(tmp_path / "m")
    assert len(losses) == 2 * (1347 // 128) and all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    assert result.metrics["final_loss"] == pytest.approx(
        np.mean(losses[-(1347 // 128) :]), rel=1e-6
    )
