"""The trainer's encoder choice (``encoder``, ``encoder_kwargs``) and pretext regulariser."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from contrastkit.models import ScatNetEncoder, SmallCNN, build_encoder, count_parameters
from contrastkit.models.resnet import ResNet
from contrastkit.train import FitConfig, fit, load_run, resume_run
from contrastkit.train.config import config_from_mapping

BASE: dict[str, Any] = {
    "data": "digits",
    "epochs": 2,
    "batch_size": 128,
    "head_hidden_dim": 32,
    "head_out_dim": 16,
    "threads": 1,
    "progress": False,
    "tensorboard": False,
    "evaluate": False,
    "precision": "fp32",
    "device": "cpu",
    "checkpoint_every": 3,
}
SCAT: dict[str, Any] = {
    "encoder": "scatnet",
    "encoder_kwargs": {"J": 1, "L": 4, "stages": [[8, 1]], "pool_size": 2},
}


def records(run: Path, name: str = "steps.jsonl") -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / name).read_text().splitlines()]


# ------------------------------------------------------------------ configuration errors


@pytest.mark.parametrize(
    ("values", "match"),
    [
        ({"encoder": "vit"}, "encoder"),
        ({"encoder": "scatnet", "encoder_kwargs": {"depth": 3}}, r"unknown encoder_kwargs.*depth"),
        ({"encoder": "scatnet", "encoder_kwargs": {"in_channels": 3}}, "come from the data"),
        ({"encoder": "resnet18", "encoder_kwargs": {"image_size": 8}}, "come from the data"),
        ({"encoder": "smallcnn", "encoder_kwargs": {"widths": [8]}}, "own config keys"),
        ({"pretext": "colorize"}, "pretext"),
        ({"pretext": "none", "pretext_kwargs": {"dropout": 0.1}}, "pretext is 'none'"),
        ({"pretext": "rotation", "pretext_kwargs": {"weight": 1.0}}, "pretext_weight"),
        ({"pretext": "rotation", "pretext_kwargs": {"tile_size": 4}}, "tile_size"),
        ({"pretext": "rotation", "pretext_weight": -1.0}, "pretext_weight"),
        ({"pretext": "rotation", "pretext_start_epoch": -1}, "pretext_start_epoch"),
    ],
)
def test_bad_encoder_or_pretext_config_names_the_key(values: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config_from_mapping(values)


def test_build_encoder_needs_image_size_for_scatnet() -> None:
    with pytest.raises(ValueError, match="image_size"):
        build_encoder("scatnet", in_channels=1, J=1, L=4, stages=[[8, 1]])
    enc = build_encoder("scatnet", in_channels=1, image_size=8, J=1, L=4, stages=[[8, 1]])
    assert isinstance(enc, ScatNetEncoder)
    assert enc(torch.rand(2, 1, 8, 8)).shape == (2, enc.out_dim)


def test_scatnet_counts_only_the_adapter_as_trainable() -> None:
    enc = build_encoder("scatnet", in_channels=1, image_size=28, J=2, L=8, stages=[[60, 2]])
    trainable = count_parameters(enc)
    assert trainable == count_parameters(enc, trainable_only=False)  # filters are buffers
    adapter = sum(p.numel() for m in (enc.input_norm, enc.stem, enc.stages) for p in m.parameters())
    assert trainable == adapter
    assert trainable <= 388_320 // 2  # the ScatSimCLR benchmark's budget: half the CNN's


# ------------------------------------------------------------------ training


@pytest.mark.parametrize(
    ("encoder", "kwargs", "cls"),
    [
        ("scatnet", SCAT["encoder_kwargs"], ScatNetEncoder),
        ("resnet18", {"width": 4}, ResNet),
        ("smallcnn", {}, SmallCNN),
    ],
)
def test_fit_with_each_encoder_and_load_run_rebuilds_it(
    tmp_path: Path, encoder: str, kwargs: dict[str, Any], cls: type
) -> None:
    out = tmp_path / encoder
    values = {**BASE, "epochs": 1, "evaluate": True, "encoder": encoder, "encoder_kwargs": kwargs}
    if encoder == "smallcnn":
        values.update(encoder_widths=(8, 16), encoder_strides=(1, 2))
    result = fit(FitConfig(out=str(out), **values))
    assert isinstance(result.model.encoder, cls)
    assert result.metrics["encoder_parameters"] == count_parameters(result.model.encoder)
    assert 0.0 <= result.metrics["linear_acc"] <= 1.0
    config, model = load_run(out)
    assert config.encoder == encoder and isinstance(model.encoder, cls)
    x = torch.rand(3, 1, 8, 8)
    result.model.eval()
    model.eval()
    torch.testing.assert_close(model.encoder(x), result.model.encoder(x))


def test_rotation_pretext_is_logged_and_trains_its_head(tmp_path: Path) -> None:
    out = tmp_path / "rot"
    config = FitConfig(out=str(out), pretext="rotation", pretext_weight=0.5, **{**BASE, **SCAT})
    result = fit(config)
    steps = records(out)
    assert all("pretext_loss" in r and 0.0 <= r["pretext_acc"] <= 1.0 for r in steps)
    assert all(r["pretext_loss"] > 0 for r in steps)
    head_params = result.metrics["trainable_parameters"] - count_parameters(result.model)
    assert head_params > 0  # the pretext head is trained and counted
    # the checkpoint holds the pretext head, the model file does not
    ckpt = sorted((out / "checkpoints").glob("step-*.safetensors"))[-1]
    assert any(k.startswith("module.pretext.head.") for k in load_file(str(ckpt)))
    assert not any("pretext" in k for k in load_file(str(out / "model.safetensors")))


def test_pretext_start_epoch_turns_the_term_on_later(tmp_path: Path) -> None:
    out = tmp_path / "late"
    fit(
        FitConfig(
            out=str(out),
            pretext="rotation",
            pretext_start_epoch=1,
            pretext_kwargs={"rotations_per_image": 1},
            **{**BASE, **SCAT},
        )
    )
    steps = records(out)
    assert [("pretext_loss" in r) for r in steps] == [r["epoch"] == 2 for r in steps]


def test_pretext_changes_the_encoder_and_weight_zero_does_not(tmp_path: Path) -> None:
    def weights(name: str, **kw: Any) -> dict[str, torch.Tensor]:
        out = tmp_path / name
        fit(FitConfig(out=str(out), **{**BASE, **SCAT, "epochs": 1}, **kw))
        return load_file(str(out / "model.safetensors"))

    plain = weights("plain")
    zero = weights("zero", pretext="rotation", pretext_weight=0.0)
    rot = weights("rot", pretext="rotation", pretext_weight=1.0)
    key = "encoder.stem.0.weight"
    assert torch.equal(plain[key], zero[key])
    assert not torch.allclose(plain[key], rot[key])


def test_jigsaw_pretext_runs_in_the_trainer(tmp_path: Path) -> None:
    out = tmp_path / "jig"
    fit(
        FitConfig(
            out=str(out),
            pretext="jigsaw",
            pretext_kwargs={"n_permutations": 5},
            **{**BASE, **SCAT, "epochs": 1, "batch_size": 256},
        )
    )
    assert all("pretext_acc" in r for r in records(out))


class CrashError(Exception):
    pass


def test_resume_with_pretext_equals_the_uninterrupted_run(tmp_path: Path) -> None:
    values = {**BASE, **SCAT, "pretext": "rotation", "pretext_kwargs": {"rotations_per_image": 1}}
    ref = tmp_path / "ref"
    fit(FitConfig(out=str(ref), **values))
    run = tmp_path / "crash"

    def crash(record: dict[str, Any]) -> None:
        if record["step"] == 8:
            raise CrashError

    with pytest.raises(CrashError):
        fit(FitConfig(out=str(run), **values), on_step=crash)
    resume_run(run, progress=False)
    assert records(ref) == records(run)
    wa, wb = load_file(str(ref / "model.safetensors")), load_file(str(run / "model.safetensors"))
    for key in wa:
        assert torch.equal(wa[key], wb[key]), key


def test_load_run_without_input_shape_header(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    small = tmp_path / "small"
    fit(
        FitConfig(
            out=str(small), **{**BASE, "epochs": 1, "encoder_widths": (8,), "encoder_strides": (2,)}
        )
    )
    weights = load_file(str(small / "model.safetensors"))
    save_file(weights, str(small / "model.safetensors"))  # as runs saved before the header
    _, model = load_run(small)  # SmallCNN: the first conv gives the channels
    assert isinstance(model.encoder, SmallCNN)
    scat = tmp_path / "scat"
    fit(FitConfig(out=str(scat), **{**BASE, **SCAT, "epochs": 1}))
    save_file(load_file(str(scat / "model.safetensors")), str(scat / "model.safetensors"))
    with pytest.raises(ValueError, match="no input shape in its header"):
        load_run(scat)
