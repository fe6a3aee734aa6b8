"""Tests of contrastkit.eval.embed and ``contrastkit embed``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.cli import main
from contrastkit.data import load_dataset
from contrastkit.eval import embed_run, extract_features, load_embeddings, save_embeddings
from contrastkit.train import FitConfig, build_model
from contrastkit.train.checkpoint import save_weights


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run directory with an untrained small model (config.json + model.safetensors)."""
    out = tmp_path_factory.mktemp("embed-run")
    config = FitConfig(
        data="digits",
        out=str(out),
        encoder_widths=(8, 16),
        encoder_strides=(1, 2),
        head_hidden_dim=16,
        head_out_dim=8,
    )
    torch.manual_seed(0)
    model = build_model(config, 1)
    (out / "config.json").write_text(json.dumps(config.to_dict()))
    save_weights(out / "model.safetensors", model.state_dict())
    return out


@pytest.fixture(scope="module")
def expected(run_dir: Path) -> dict[str, torch.Tensor]:
    from contrastkit.train import load_run

    config, model = load_run(run_dir)
    split = load_dataset("digits", seed=config.seed)
    model.eval()
    with torch.no_grad():
        _, z = model(split.test.images)
    return {
        "h_test": extract_features(model.encoder, split.test.images),
        "h_train": extract_features(model.encoder, split.train.images),
        "z_test": z,
        "y_test": split.test.labels,
        "y_train": split.train.labels,
    }


@pytest.mark.parametrize("ext", [".npz", ".npy", ".safetensors"])
def test_each_format_round_trips(
    run_dir: Path, expected: dict[str, torch.Tensor], tmp_path: Path, ext: str
) -> None:
    files = embed_run(run_dir, tmp_path / f"emb{ext}")
    assert files[0] == tmp_path / f"emb{ext}" and all(f.is_file() for f in files)
    data = load_embeddings(files[0])
    assert data["features"].dtype == np.float32 and data["labels"].dtype == np.int64
    np.testing.assert_allclose(data["features"], expected["h_test"].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(data["labels"], expected["y_test"].numpy())
    assert "split" not in data
    if ext == ".npy":
        assert np.load(files[0]).shape == tuple(expected["h_test"].shape)  # plain features array
        assert files[1].name == "emb.labels.npy"


def test_split_all_marks_rows(
    run_dir: Path, expected: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    data = load_embeddings(embed_run(run_dir, tmp_path / "all.npz", split="all")[0])
    n_train = expected["h_train"].shape[0]
    both = torch.cat([expected["h_train"], expected["h_test"]]).numpy()
    np.testing.assert_allclose(data["features"], both, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(
        data["labels"], torch.cat([expected["y_train"], expected["y_test"]]).numpy()
    )
    assert data["split"].dtype == np.uint8
    assert data["split"][:n_train].sum() == 0 and data["split"][n_train:].min() == 1


def test_projection_layer_and_metadata(
    run_dir: Path, expected: dict[str, torch.Tensor], tmp_path: Path
) -> None:
    from safetensors import safe_open

    path = embed_run(run_dir, tmp_path / "z.safetensors", layer="z")[0]
    data = load_embeddings(path)
    np.testing.assert_allclose(data["features"], expected["z_test"].numpy(), rtol=1e-5, atol=1e-5)
    with safe_open(str(path), framework="numpy") as fh:
        meta = fh.metadata()
    assert meta["layer"] == "z" and meta["split"] == "test" and meta["data"] == "digits"


def test_cli_embed(
    run_dir: Path, expected: dict[str, torch.Tensor], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "sub" / "train.npz"
    rc = main(["embed", str(run_dir), "--data", "digits", "--split", "train", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert f"embedded {expected['h_train'].shape[0]} images into 16 dimensions" in printed
    data = load_embeddings(out)
    np.testing.assert_array_equal(data["labels"], expected["y_train"].numpy())
    before = out.read_bytes()  # an existing file is replaced only with --overwrite
    assert main(["embed", str(run_dir), "--split", "train", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    npy = tmp_path / "f.npy"
    (tmp_path / "f.labels.npy").write_bytes(b"mine")  # a sidecar the .npy format would write
    assert main(["embed", str(run_dir), "--out", str(npy)]) == 2
    assert (tmp_path / "f.labels.npy").read_bytes() == b"mine" and not npy.exists()
    assert main(["embed", str(run_dir), "--split", "train", "--out", str(out), "--overwrite"]) == 0


def test_cli_embed_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["embed", str(run_dir), "--out", str(tmp_path / "x.csv")]) == 2
    assert "expected one of .npz, .npy, .safetensors" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "missing"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "not a contrastkit run directory" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", str(run_dir), "--out", str(tmp_path / "x.npz"), "--split", "val"])


def test_save_embeddings_checks_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="extension"):
        save_embeddings(tmp_path / "a.pt", np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        save_embeddings(tmp_path / "a.npz", np.zeros((2, 3)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="NaN"):
        save_embeddings(tmp_path / "a.npz", np.full((2, 3), np.nan))
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "none.npz")


def test_save_without_labels_and_uppercase_extension(tmp_path: Path) -> None:
    feats = np.arange(6, dtype=np.float64).reshape(2, 3)
    files = save_embeddings(tmp_path / "A.NPY", feats)
    assert files == [tmp_path / "A.NPY"]
    data = load_embeddings(files[0])
    assert set(data) == {"features"}
    np.testing.assert_array_equal(data["features"], feats.astype(np.float32))


def test_bad_split_and_layer(run_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="split"):
        embed_run(run_dir, tmp_path / "x.npz", split="val")
    with pytest.raises(ValueError, match="layer"):
        embed_run(run_dir, tmp_path / "x.npz", layer="hidden")
