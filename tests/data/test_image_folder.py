"""Datasets from folders of class folders of images (Pillow), and training on one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import DatasetNotFoundError, load_dataset, load_image_folder

Image = pytest.importorskip("PIL.Image")


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _gray_tree(root: Path, per_class: int = 4, size: tuple[int, int] = (6, 5)) -> dict[str, list]:
    """Class folders 'cat' and 'dog' of grayscale PNGs whose pixels encode (class, index)."""
    made: dict[str, list] = {}
    for c, name in enumerate(("cat", "dog")):
        made[name] = []
        for i in range(per_class):
            a = np.full(size, 40 * c + 5 * i, dtype=np.uint8)
            a[0, 0] = 255  # one known pixel: (row 0, col 0)
            _save(root / name / f"{i}.png", a)
            made[name].append(a)
    return made


def test_flat_layout_gray_labels_values_and_split(tmp_path: Path) -> None:
    made = _gray_tree(tmp_path / "pets")
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")  # skipped
    split = load_image_folder(tmp_path / "pets", seed=0, test_fraction=0.25)
    assert split.train.image_shape == (1, 6, 5) and split.train.num_classes == 2
    assert len(split.train) + len(split.test) == 8
    assert split.train.name == "pets"
    assert sorted(split.test.labels.tolist()) == [0, 1]  # stratified: one of each class
    for part in (split.train, split.test):
        for image, label in zip(part.images, part.labels, strict=True):
            assert image[0, 0, 0] == 1.0  # 255 / 255 at (row 0, col 0)
            value = round(float(image[0, 1, 1]) * 255)
            c, i = divmod(value, 40)
            assert c == int(label) and np.array_equal(
                (image[0] * 255).round().to(torch.uint8).numpy(), made[("cat", "dog")[c]][i // 5]
            )
    again = load_dataset(str(tmp_path / "pets"), seed=0, test_fraction=0.25)
    assert torch.equal(again.test.images, split.test.images)
    other = load_dataset(str(tmp_path / "pets"), seed=1, test_fraction=0.25)
    assert not torch.equal(other.test.images, split.test.images)


def test_presplit_layout_rgb_and_channel_order(tmp_path: Path) -> None:
    root = tmp_path / "set"
    rgb = np.zeros((4, 3, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 10, 20, 30
    for part, n in (("train", 3), ("val", 1)):
        for c in ("a", "b"):
            for i in range(n):
                _save(root / part / c / f"{i}.png", rgb)
    _save(root / "train" / "a" / "gray.png", np.full((4, 3), 7, dtype=np.uint8))  # mixed modes
    split = load_dataset(str(root))
    assert split.train.image_shape == (3, 4, 3)  # RGB because not every image is gray
    assert len(split.train) == 7 and len(split.test) == 2
    assert split.test.labels.tolist() == [0, 1]
    pixel = (split.test.images[0, :, 2, 1] * 255).round().tolist()
    assert pixel == [10.0, 20.0, 30.0]  # (C, H, W): red, green, blue planes
    gray = (split.train.images[0] * 255).round()  # a/0.png ... sorted: a/0, a/1, a/2, a/gray
    assert (split.train.images[3] * 255).round().unique().tolist() == [7.0]
    assert gray[:, 0, 0].tolist() == [10.0, 20.0, 30.0]


def test_sizes_must_agree_unless_resized(tmp_path: Path) -> None:
    root = tmp_path / "mixed"
    _save(root / "a" / "0.png", np.zeros((8, 12), dtype=np.uint8))
    _save(root / "a" / "1.png", np.zeros((8, 8), dtype=np.uint8))
    _save(root / "b" / "0.png", np.zeros((10, 6), dtype=np.uint8))
    _save(root / "b" / "1.png", np.zeros((10, 6), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"differ in size.*12x8.*8x8.*image_size"):
        load_image_folder(root)
    split = load_image_folder(root, image_size=4)
    assert split.train.image_shape == (1, 4, 4)
    # shorter side to 4, centre crop: a bright centre column survives, the borders go
    wide = np.zeros((8, 16), dtype=np.uint8)
    wide[:, 6:10] = 200
    _save(root / "c" / "0.png", wide)
    _save(root / "c" / "1.png", wide)
    crop = load_image_folder(root, image_size=4, test_fraction=0.5)
    images = torch.cat([crop.train.images, crop.test.images])
    labels = torch.cat([crop.train.labels, crop.test.labels])
    c_images = images[labels == 2]
    assert c_images.shape == (2, 1, 4, 4)
    assert float(c_images[0, 0, :, 1:3].mean()) > 0.6 and float(c_images[0, 0, :, 0].max()) < 0.3


def test_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="holds no class folders"):
        (tmp_path / "empty").mkdir()
        load_image_folder(tmp_path / "empty")
    (tmp_path / "noimg" / "a").mkdir(parents=True)
    (tmp_path / "noimg" / "a" / "x.txt").write_text("x")
    _save(tmp_path / "noimg" / "b" / "0.png", np.zeros((3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"without images.*\['a'\]"):
        load_image_folder(tmp_path / "noimg")
    bad = tmp_path / "bad"
    _save(bad / "a" / "0.png", np.zeros((3, 3), dtype=np.uint8))
    (bad / "b").mkdir()
    (bad / "b" / "0.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"0\.png: cannot read it as an image"):
        load_image_folder(bad)
    pre = tmp_path / "pre"
    _save(pre / "train" / "a" / "0.png", np.zeros((3, 3), dtype=np.uint8))
    _save(pre / "test" / "z" / "0.png", np.zeros((3, 3), dtype=np.uint8))
    with pytest.raises(ValueError, match=r"classes that .* lacks: \['z'\]"):
        load_image_folder(pre)
    with pytest.raises(ValueError, match="image_size must be a positive int"):
        load_image_folder(pre, image_size=0)
    with pytest.raises(ValueError, match="image_size applies to image folders only"):
        load_dataset("digits", image_size=8)


def test_fit_trains_on_an_image_folder(tmp_path: Path) -> None:
    from contrastkit.train import FitConfig, fit

    root = tmp_path / "shapes"
    rng = np.random.default_rng(0)
    for c in range(2):
        for i in range(12):
            a = rng.integers(0, 60, (10, 14), dtype=np.uint8)
            a[:, :7] += 150 if c == 0 else 0  # class 0 bright on the left
            a[:, 7:] += 150 if c == 1 else 0
            _save(root / f"class{c}" / f"{i}.png", a)
    config = FitConfig(
        loss="ntxent",
        data=str(root),
        data_image_size=8,
        epochs=1,
        batch_size=8,
        out=str(tmp_path / "run"),
        progress=False,
        threads=1,
        encoder_widths=(8, 8),
        encoder_strides=(1, 2),
    )
    result = fit(config)
    assert 0.0 <= result.metrics["knn_acc"] <= 1.0
    assert result.metrics["knn_k"] == 18  # fewer training images (18) than knn_k (20)
    saved = (tmp_path / "run" / "config.json").read_text()
    assert '"data_image_size": 8' in saved
    from contrastkit.eval import embed_run, load_embeddings

    # embed reloads the folder resized as in training (8 x 8), or it could not run the encoder
    embed_run(tmp_path / "run", tmp_path / "e.npz", split="all")
    embedded = load_embeddings(tmp_path / "e.npz")
    assert embedded["features"].shape[0] == 24 and embedded["labels"].shape == (24,)
    with pytest.raises(ValueError, match="data_image_size must be a positive integer"):
        FitConfig(data=str(root), data_image_size=-1)


def test_sixteen_bit_gray_is_rescaled_not_clipped(tmp_path: Path) -> None:
    root = tmp_path / "deep"
    wide = np.array([[0, 257, 32896, 65535]], dtype=np.uint16).repeat(2, axis=0)
    for c in ("a", "b"):
        for i in range(2):
            path = root / c / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(wide).save(path)
            with Image.open(path) as check:
                assert check.mode.startswith("I;16")  # really a 16-bit file
    split = load_image_folder(root, test_fraction=0.5)
    assert split.train.image_shape == (1, 2, 4)
    row = (split.train.images[0, 0, 0] * 255).round().tolist()
    assert row == [
        0.0,
        1.0,
        128.0,
        255.0,
    ]  # v * 255 / 65535; Pillow's convert("L") gives 0, 255, 255, 255
    float_root = tmp_path / "float"
    for c in ("a", "b"):
        (float_root / c).mkdir(parents=True)
        Image.fromarray(np.ones((2, 2), dtype=np.float32)).save(float_root / c / "0.tif")
    with pytest.raises(ValueError, match="32-bit float images have no fixed range"):
        load_image_folder(float_root, test_fraction=0.5)
