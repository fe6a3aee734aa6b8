"""The command line's error contract: a user's mistake is one line on stderr and exit code 2.

Every sub-command is run on a table of bad inputs (flags out of range, unknown names, damaged run
directories and checkpoints, hostile data files). Each case must exit with code 2, print exactly
one line on stderr, that line must name the flag or file at fault, no traceback may escape, and no
file in the directories involved may be created, changed or deleted.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from contrastkit.cli import build_parser, main
from contrastkit.train import CheckpointManager, FitConfig, fit
from contrastkit.train.checkpoint import load_checkpoint, save_checkpoint

Image = pytest.importorskip("PIL.Image")

TINY: dict[str, Any] = {
    "data": "digits",
    "epochs": 1,
    "batch_size": 256,
    "encoder_widths": (8, 16),
    "encoder_strides": (1, 2),
    "head_hidden_dim": 32,
    "head_out_dim": 16,
    "threads": 1,
    "progress": False,
    "evaluate": False,
    "tensorboard": False,
    "checkpoint_every": 0,
    "precision": "fp32",
    "device": "cpu",
}
CKPT = "checkpoints/step-00000005.safetensors"
#: A JSON document nested deeper than Python's parser can follow.
DEEP_JSON = "[" * 100_000 + "]" * 100_000


# --------------------------------------------------------------------------------------------------
# what the cases run on


def _png(path: Path, size: tuple[int, int], mode: str = "L") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size).save(path)


def _make_inputs(root: Path) -> None:
    """Hostile or unusable data files, shared by the cases (read-only for them)."""
    rng = np.random.default_rng(0)
    np.savez(root / "one.npz", x=rng.random((1, 8, 8), dtype=np.float32), y=np.array([0]))
    np.savez(root / "two.npz", x=rng.random((2, 8, 8), dtype=np.float32), y=np.array([0, 1]))
    np.savez(root / "objects.npz", x=np.array([object()] * 4), y=np.arange(4))
    (root / "empty.npz").write_bytes(b"")
    (root / "notzip.npz").write_bytes(b"this is not a zip archive")
    (root / "afile").write_text("a file, not a folder")
    for c in ("cat", "dog"):  # DIR/train/<class>/ without a test part
        for i in range(3):
            _png(root / "trainonly" / "train" / c / f"{i}.png", (8, 8))
    for c in ("cat", "dog"):  # a decompression bomb among small images (limit lowered below)
        for i in range(3):
            _png(root / "bomb" / c / f"{i}.png", (8, 8))
    _png(root / "bomb" / "cat" / "big.png", (200, 200), mode="1")
    for c in ("cat", "dog"):  # over Pillow's limit but under twice it: a warning, not an error
        for i in range(3):
            _png(root / "nearbomb" / c / f"{i}.png", (8, 8))
    _png(root / "nearbomb" / "dog" / "big.png", (150, 100), mode="1")
    cifar = root / "cifar" / "cifar-10-batches-py"
    cifar.mkdir(parents=True)
    evil = pickle.dumps(_Evil())
    for name in [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]:
        (cifar / name).write_bytes(evil)
    (root / "dup.yaml").write_text("loss: ntxent\nepochs: 1\nepochs: 3\n")
    (root / "deep.yaml").write_text("loss: " + "[" * 1_200 + "]" * 1_200 + "\n")


class _Evil:
    def __reduce__(self) -> Any:
        return (os.system, ("echo this must never run",))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    _make_inputs(root)
    return root


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run: config.json, logs, one checkpoint (step 5), model.safetensors."""
    out = tmp_path_factory.mktemp("template") / "run"
    fit(FitConfig(out=str(out), **TINY))
    assert (out / CKPT).is_file() and (out / "model.safetensors").is_file()
    return out


# --------------------------------------------------------------------------------------------------
# damage done to a copy of the finished run


def _edit_config(**changes: Any) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = json.loads((run / "config.json").read_text())
        data.update(changes)
        (run / "config.json").write_text(json.dumps(data))

    return damage


def _write(name: str, text: str | bytes) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        if isinstance(text, bytes):
            (run / name).write_bytes(text)
        else:
            (run / name).write_text(text)

    return damage


def _truncate(name: str, keep: int) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[:keep])

    return damage


def _weights_header(**changes: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "model.safetensors"
        with safe_open(str(path), framework="pt") as fh:
            header = dict(fh.metadata() or {})
        save_file(load_file(str(path)), str(path), metadata={**header, **changes})

    return damage


def _weights_tensor(key: str, value: torch.Tensor) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "model.safetensors"
        with safe_open(str(path), framework="pt") as fh:
            header = dict(fh.metadata() or {})
        tensors = load_file(str(path))
        tensors[key] = value
        save_file(tensors, str(path), metadata=header)

    return damage


def _checkpoint(edit: Callable[[dict[str, torch.Tensor], dict[str, Any]], None]) -> Any:
    """Rewrite the run's only checkpoint with ``edit`` applied (its pointer then agrees)."""

    def damage(run: Path) -> None:
        tensors, meta = load_checkpoint(run / CKPT)
        edit(tensors, meta)
        save_checkpoint(run / CKPT, tensors, meta)
        (run / "checkpoints" / "latest").unlink()  # the step files are used as they are

    return damage


def _raw_checkpoint_meta(text: str) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / CKPT
        tensors = load_file(str(path))
        save_file(
            tensors, str(path), metadata={"format": "contrastkit-train/1", "contrastkit": text}
        )
        (run / "checkpoints" / "latest").unlink()

    return damage


def _set_progress(**changes: Any) -> Any:
    return _checkpoint(lambda t, m: m["progress"].update(changes))


def _set_tensor(key: str, value: torch.Tensor) -> Any:
    return _checkpoint(lambda t, m: t.__setitem__(key, value))


def _optimizer_moment_shape(t: dict[str, torch.Tensor], m: dict[str, Any]) -> None:
    key = next(k for k in t if k.startswith("optim.") and k.endswith(".exp_avg"))
    t[key] = torch.zeros(3)


def _pointer_and_checkpoint_damaged(run: Path) -> None:
    (run / "checkpoints" / "latest").write_text(DEEP_JSON)
    (run / CKPT).write_bytes((run / CKPT).read_bytes()[:1000])


def _huge_safetensors_header(run: Path) -> None:
    (run / CKPT).write_bytes((2**62).to_bytes(8, "little") + b"{}")
    (run / "checkpoints" / "latest").unlink()


# --------------------------------------------------------------------------------------------------
# the table


@dataclass(frozen=True)
class Case:
    """One bad input: ``argv`` (``{run}``, ``{in}`` and ``{tmp}`` are filled in), the words the
    error line must hold, and the damage done to ``{run}`` (a copy of a finished run) first."""

    id: str
    argv: tuple[str, ...]
    says: tuple[str, ...]
    damage: Callable[[Path], None] | None = None


def case(id: str, argv: str, *says: str, damage: Callable[[Path], None] | None = None) -> Case:
    return Case(id, tuple(argv.split()), says, damage)


FIT = "fit --epochs 1 --threads 1 --no-progress --device cpu --out {tmp}/out"
RESUME = "fit --resume {run} --no-progress"

CASES = [
    # apps: the seed papers' applications
    case("apps-no-verb", "apps", "verb"),
    case("apps-unknown-app", "apps run nope --quick", "unknown app", "nope", "cvrl"),
    case("apps-show-unknown-app", "apps show nope", "unknown app", "nope"),
    case("apps-negative-seed", "apps run cvrl --quick --seeds -1", "seeds", "-1"),
    case("apps-threads-zero", "apps run cvrl --quick --threads 0", "--threads", "0"),
    # the command line itself (argparse errors are one line too)
    case("no-command", "", "command"),
    case("unknown-command", "frobnicate", "frobnicate"),
    case("losses-extra-argument", "losses extra", "extra"),
    case("fit-epochs-not-an-int", "fit --epochs abc", "--epochs", "abc"),
    case("fit-device-unknown", "fit --device tpu", "--device", "tpu"),
    case("download-unknown-dataset", "download imagenet --root {tmp}/d", "imagenet"),
    case("embed-split-unknown", "embed {run} --out {tmp}/e.npz --split val", "--split"),
    # fit: values out of range, unknown names
    case("fit-unknown-loss", FIT + " --loss nope", "nope", "loss"),
    case("fit-epochs-zero", FIT + " --epochs 0", "epochs", "0"),
    case("fit-batch-size-one", FIT + " --batch-size 1", "batch_size", ">= 2"),
    case("fit-seed-beyond-64-bits", FIT + " --seed 1180591620717411303424", "seed", "2**32"),
    case("fit-seed-negative", FIT + " --seed -1", "seed", "2**32"),
    case("fit-threads-zero", FIT + " --threads 0", "threads", "0"),
    case("fit-threads-negative", FIT + " --threads -2", "threads", "-2"),
    case("fit-augment-unknown", FIT + " --augment nonsense", "augment", "nonsense", "cifar"),
    case("fit-set-unknown-key", FIT + " --set nope=1", "nope"),
    case("fit-set-wrong-type", FIT + " --set epochs=abc", "epochs", "abc"),
    Case(
        "fit-set-duplicate-key",
        (*FIT.split(), "--set", "loss_kwargs={a: 1, a: 2}"),
        ("duplicate", "'a'", "--set"),
    ),
    case("fit-unknown-recipe", FIT.replace("fit", "fit nope", 1), "nope", "recipe"),
    case("fit-recipe-duplicate-key", "fit {in}/dup.yaml --out {tmp}/o", "dup.yaml", "epochs"),
    case("fit-recipe-nested-too-deep", "fit {in}/deep.yaml --out {tmp}/o", "deep.yaml", "nested"),
    case("fit-out-is-a-file", "fit --epochs 1 --out {in}/afile", "afile"),
    case("fit-out-holds-a-run", "fit --epochs 1 --out {run}", "--resume", "--overwrite"),
    case("fit-resume-and-overwrite", RESUME + " --overwrite", "--resume", "--overwrite"),
    case("fit-resume-not-a-run", "fit --resume {tmp}/nothing", "nothing", "config.json"),
    # fit: data that cannot be trained on
    case("fit-unknown-data", FIT + " --data nope", "nope"),
    case("fit-npz-missing", FIT + " --data {tmp}/missing.npz", "missing.npz"),
    case("fit-npz-empty", FIT + " --data {in}/empty.npz", "empty.npz", "empty"),
    case("fit-npz-not-a-zip", FIT + " --data {in}/notzip.npz", "notzip.npz", "zip"),
    case("fit-npz-object-arrays", FIT + " --data {in}/objects.npz", "objects.npz", "object"),
    case("fit-npz-one-sample", FIT + " --data {in}/one.npz", "one.npz", "1 sample"),
    case("fit-npz-one-training-sample", FIT + " --data {in}/two.npz", "two.npz", "1 training"),
    case("fit-images-train-only", FIT + " --data {in}/trainonly", "trainonly", "test"),
    case("fit-images-decompression-bomb", FIT + " --data {in}/bomb", "big.png", "pixels"),
    case("fit-images-near-bomb", FIT + " --data {in}/nearbomb", "big.png", "pixels"),
    case(
        "fit-cifar-unsafe-pickle",
        FIT + " --data cifar10 --data-root {in}/cifar",
        "data_batch_1",
        "posix.system",
    ),
    case(
        "fit-fashion-mnist-missing",
        FIT + " --data fashion-mnist --data-root {tmp}/none",
        "Fashion-MNIST",
        "--data-root",
    ),
    # fit --resume: a damaged run directory
    case("resume-config-not-json", RESUME, "config.json", damage=_write("config.json", "{oops")),
    case("resume-config-nested", RESUME, "config.json", "nested", damage=_write("config.json", DEEP_JSON)),
    case("resume-config-a-list", RESUME, "config.json", "mapping", damage=_write("config.json", "[1]")),
    case(
        "resume-config-huge-number",
        RESUME,
        "config.json",
        damage=_write("config.json", '{"epochs": 1' + "0" * 5000 + "}"),
    ),
    case(
        "resume-checkpoint-truncated",
        RESUME,
        "step-00000005.safetensors",
        damage=_truncate(CKPT, 1000),
    ),
    case(
        "resume-pointer-and-checkpoint-damaged",
        RESUME,
        "latest is damaged",
        "step-00000005.safetensors",
        damage=_pointer_and_checkpoint_damaged,
    ),
    case(
        "resume-checkpoint-header-size-huge",
        RESUME,
        "step-00000005.safetensors",
        damage=_huge_safetensors_header,
    ),
    case(
        "resume-checkpoint-meta-nested",
        RESUME,
        "step-00000005.safetensors",
        "nested",
        damage=_raw_checkpoint_meta(DEEP_JSON),
    ),
    case(
        "resume-checkpoint-meta-not-json",
        RESUME,
        "step-00000005.safetensors",
        damage=_raw_checkpoint_meta("{oops"),
    ),
    case(
        "resume-progress-negative",
        RESUME,
        "step-00000005.safetensors",
        "epoch",
        damage=_set_progress(epoch=-4),
    ),
    case(
        "resume-progress-huge",
        RESUME,
        "step-00000005.safetensors",
        "epoch",
        damage=_set_progress(epoch=10**30),
    ),
    case(
        "resume-progress-step-beyond-epoch",
        RESUME,
        "step-00000005.safetensors",
        "step_in_epoch",
        damage=_set_progress(epoch=0, step_in_epoch=10**12),
    ),
    case(
        "resume-progress-not-a-mapping",
        RESUME,
        "step-00000005.safetensors",
        "progress",
        damage=_checkpoint(lambda t, m: m.update(progress="x")),
    ),
    case(
        "resume-log-offset-negative",
        RESUME,
        "step-00000005.safetensors",
        "steps.jsonl",
        damage=_checkpoint(lambda t, m: m["logs"].update({"steps.jsonl": -5})),
    ),
    case(
        "resume-python-rng-wrong-size",
        RESUME,
        "step-00000005.safetensors",
        "python",
        damage=_checkpoint(lambda t, m: m["rng"]["python"].update(state=[1, 2, 3])),
    ),
    case(
        "resume-numpy-rng-position-huge",
        RESUME,
        "step-00000005.safetensors",
        "numpy",
        damage=_checkpoint(lambda t, m: m["rng"]["numpy"].update(pos=10**20)),
    ),
    case(
        "resume-torch-rng-wrong-size",
        RESUME,
        "step-00000005.safetensors",
        "rng.torch",
        damage=_set_tensor("rng.torch", torch.zeros(3, dtype=torch.uint8)),
    ),
    case(
        "resume-numpy-rng-tensor-wrong-size",
        RESUME,
        "step-00000005.safetensors",
        "rng.numpy",
        damage=_set_tensor("rng.numpy", torch.zeros(3, dtype=torch.int64)),
    ),
    case(
        "resume-learning-rate-nan",
        RESUME,
        "step-00000005.safetensors",
        "lr",
        damage=_checkpoint(lambda t, m: m["optimizer"]["param_groups"][0].update(lr=float("nan"))),
    ),
    case(
        "resume-scheduler-not-a-number",
        RESUME,
        "step-00000005.safetensors",
        "last_epoch",
        damage=_checkpoint(lambda t, m: m["scheduler"].update(last_epoch="x")),
    ),
    case(
        "resume-optimizer-moment-wrong-shape",
        RESUME,
        "step-00000005.safetensors",
        "shape",
        damage=_checkpoint(_optimizer_moment_shape),
    ),
    case(
        "resume-model-tensor-wrong-shape",
        RESUME,
        "step-00000005.safetensors",
        "encoder.features.0.0.weight",
        damage=_set_tensor("model.encoder.features.0.0.weight", torch.zeros(2, 2)),
    ),
    # eval / report / embed: a damaged run directory
    case("eval-not-a-run", "eval {tmp}/nothing", "nothing", "config.json"),
    case("eval-config-nested", "eval {run}", "config.json", "nested", damage=_write("config.json", DEEP_JSON)),
    case("eval-config-not-json", "eval {run}", "config.json", damage=_write("config.json", "{oops")),
    case(
        "eval-config-invalid-value",
        "eval {run}",
        "config.json",
        "epochs",
        damage=_edit_config(epochs="many"),
    ),
    case(
        "eval-config-does-not-match-weights",
        "eval {run}",
        "model.safetensors",
        "config.json",
        damage=_edit_config(head_out_dim=64),
    ),
    case(
        "eval-config-huge-widths",
        "eval {run}",
        "model.safetensors",
        "config.json",
        damage=_edit_config(encoder_widths=[1_000_000, 1_000_000]),
    ),
    case(
        "eval-weights-truncated",
        "eval {run}",
        "model.safetensors",
        damage=_truncate("model.safetensors", 1000),
    ),
    case("eval-weights-empty", "eval {run}", "model.safetensors", damage=_write("model.safetensors", b"")),
    case(
        "eval-weights-a-pickle",
        "eval {run}",
        "model.safetensors",
        "unpickle",
        damage=_write("model.safetensors", pickle.dumps({"w": [1, 2, 3]})),
    ),
    case(
        "eval-header-in-channels-huge",
        "eval {run}",
        "model.safetensors",
        "in_channels",
        damage=_weights_header(in_channels="100000000"),
    ),
    case(
        "eval-header-in-channels-disagrees",
        "eval {run}",
        "model.safetensors",
        "in_channels",
        damage=_weights_header(in_channels="3"),
    ),
    case(
        "eval-header-image-size-not-a-number",
        "eval {run}",
        "model.safetensors",
        "image_size",
        damage=_weights_header(image_size="abc"),
    ),
    case(
        "eval-weights-tensor-wrong-shape",
        "eval {run}",
        "model.safetensors",
        "head.net.2.weight",
        damage=_weights_tensor("head.net.2.weight", torch.zeros(4, 4)),
    ),
    case("report-device-unknown", "report {run} --device tpu", "device", "tpu"),
    case(
        "report-metrics-nested",
        "report {run}",
        "metrics.json",
        "nested",
        damage=_write("metrics.json", DEEP_JSON),
    ),
    case("embed-device-unknown", "embed {run} --out {tmp}/e.npz --device nope", "device", "nope"),
    case("embed-unknown-extension", "embed {run} --out {tmp}/e.txt", "e.txt"),
    case("embed-batch-size-zero", "embed {run} --out {tmp}/e.npz --batch-size 0", "batch_size"),
    case("compare-one-run", "compare {run} --out {tmp}/c", "between 2 and"),
    case("compare-not-a-run", "compare {run} {tmp}/nothing --out {tmp}/c", "nothing", "config.json"),
    case("compare-run-twice", "compare {run} {run} --out {tmp}/c", "named once"),
    case("compare-out-is-a-run", "compare {run} {tmp}/x --out {run}", "folder of its own"),
    case("compare-out-holds-other-files", "compare {run} {tmp}/x --out {in}", "holds files"),
    case(
        "compare-metrics-nested",
        "compare {run} {tmp}/nothing --out {tmp}/c",
        "metrics.json",
        "nested",
        damage=_write("metrics.json", DEEP_JSON),
    ),
    # the other sub-commands
    case("zeroshot-empty-class-name", "zeroshot {run} --classes cat,,dog", "--classes"),
    case("zeroshot-not-a-run", "zeroshot {tmp}/nothing --classes cat,dog", "nothing"),
    case("recipes-unknown", "recipes nope", "nope"),
    case("cluster-zero-width-layer", "cluster --hidden 0,16 --epochs 1", "hidden_dims", "0"),
    case("cluster-hidden-not-ints", "cluster --hidden a,b", "--hidden"),
    case("cluster-threads-zero", "cluster --threads 0 --epochs 1", "threads", "0"),
    case("cluster-seed-beyond-64-bits", "cluster --seed 1180591620717411303424", "seed", "2**32"),
    case("cluster-k-zero", "cluster --k 0", "k"),
    case("cluster-data-missing", "cluster --data {tmp}/missing.npz", "missing.npz"),
    case("fit-arrays-unknown-data", "fit-arrays nope --epochs 1", "nope"),
    case("fit-arrays-epochs-zero", "fit-arrays wine --epochs 0", "--epochs"),
    case("fit-arrays-threads-zero", "fit-arrays wine --threads 0", "threads", "0"),
    case("fit-arrays-seed-beyond-64-bits", "fit-arrays wine --seed 1180591620717411303424", "seed", "2**32"),
    case("download-root-is-a-file", "download cifar10 --root {in}/afile", "afile", "folder"),
    case("download-root-is-a-file-fmnist", "download fashion-mnist --root {in}/afile", "afile", "folder"),
    case("download-url-without-scheme", "download cifar10 --root {tmp}/d --url nowhere", "nowhere", "url"),
]  # fmt: skip


def snapshot(*roots: Path) -> dict[str, str]:
    """Every file (its SHA-256) and folder under ``roots``."""
    out: dict[str, str] = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


@pytest.fixture
def small_pillow_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pillow's decompression-bomb limit lowered, so that the test's 'bombs' stay small files."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 12_000)


def test_the_table_covers_every_sub_command() -> None:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    commands = set(sub.choices)  # type: ignore[arg-type]
    covered = {c.argv[0] for c in CASES if c.argv} & commands
    assert covered == commands
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.usefixtures("small_pillow_limit")
@pytest.mark.parametrize("bad", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_exit_code_2(
    bad: Case,
    inputs: Path,
    finished_run: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    if bad.damage is not None:
        bad.damage(run)
    work = tmp_path / "work"
    work.mkdir()
    places = {"{run}": str(run), "{tmp}": str(work), "{in}": str(inputs)}
    argv = list(bad.argv)
    for key, value in places.items():
        argv = [a.replace(key, value) for a in argv]
    before = snapshot(tmp_path, inputs)
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = exc.code  # type: ignore[assignment]
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    assert lines[0].startswith("contrastkit"), lines[0]
    for word in bad.says:
        assert word in lines[0], (word, lines[0])
    assert snapshot(tmp_path, inputs) == before, "the failed command changed files"


def test_a_real_process_prints_no_traceback(finished_run: Path, tmp_path: Path) -> None:
    """The same contract seen from outside: ``python -m contrastkit`` on a nested config.json."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    (run / "config.json").write_text(DEEP_JSON)
    done = subprocess.run(
        [sys.executable, "-m", "contrastkit", "eval", str(run)],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1 and "config.json" in done.stderr


# --------------------------------------------------------------------------------------------------
# a disk that fills up while a checkpoint is written


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second checkpoint's write fails half-way (ENOSPC): the run stops with one line and
    exit code 1 (an environment failure, not bad input), the first checkpoint is untouched and
    the run resumes from it once there is space again."""
    import contrastkit.runs.weights as weights_module

    out = tmp_path / "run"
    real_save = weights_module.save_file
    calls = {"n": 0}

    def failing_save(tensors: Any, filename: str, metadata: Any = None) -> None:
        if "step-" in Path(filename).name or ".step-" in Path(filename).name:
            calls["n"] += 1
            if calls["n"] == 2:
                Path(filename).write_bytes(b"\0" * 1000)  # part of the file got out
                raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, filename, metadata=metadata)

    monkeypatch.setattr(weights_module, "save_file", failing_save)
    argv = ["fit", "--data", "digits", "--epochs", "2", "--batch-size", "256", "--threads", "1",
            "--no-progress", "--device", "cpu", "--precision", "fp32", "--out", str(out),
            "--checkpoint-every", "3",
            "--set", "encoder_widths=[8, 16]", "--set", "encoder_strides=[1, 2]",
            "--set", "head_hidden_dim=32", "--set", "head_out_dim=16",
            "--set", "evaluate=false", "--set", "tensorboard=false"]  # fmt: skip
    capsys.readouterr()
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "No space left on device" in err and "step-00000005.safetensors" in err
    assert "--resume" in err
    ckpts = CheckpointManager(out / "checkpoints")
    assert [e["file"] for e in ckpts.entries()] == ["step-00000003.safetensors"]
    assert sorted(p.name for p in ckpts.directory.iterdir()) == [
        "latest",
        "step-00000003.safetensors",
    ]
    _, meta, path = ckpts.load_latest()  # type: ignore[misc]
    assert path.name == "step-00000003.safetensors" and meta["progress"]["global_step"] == 3
    assert not (out / "model.safetensors").exists()

    monkeypatch.setattr(weights_module, "save_file", real_save)  # space again
    assert main(["fit", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "model.safetensors").is_file()
    assert len((out / "steps.jsonl").read_text().splitlines()) == 10
