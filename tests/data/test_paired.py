"""Paired data: the CSV/TSV reader (open_clip's convention) and the .npz reader, with their errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.data import DatasetNotFoundError
from contrastkit.data.paired import (
    PairedDataset,
    load_pairs,
    load_pairs_csv,
    load_pairs_npz,
    modality_kind,
)

Image = pytest.importorskip("PIL.Image")


def write_images(folder: Path, n: int, size: int = 8) -> list[str]:
    (folder / "img").mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        name = f"img/{i}.png"
        Image.new("L", (size, size), 20 * i).save(folder / name)
        names.append(name)
    return names


def write_table(path: Path, header: list[str], rows: list[list[str]], sep: str = "\t") -> Path:
    lines = [sep.join(header), *(sep.join(r) for r in rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def tsv(tmp_path: Path) -> Path:
    names = write_images(tmp_path, 10)
    rows = [
        [n, f"a grey square number {i}", "dark" if i < 5 else "light"] for i, n in enumerate(names)
    ]
    return write_table(tmp_path / "pairs.tsv", ["filepath", "title", "tone"], rows)


def test_csv_reads_images_relative_to_the_file_and_splits_by_seed(tsv: Path) -> None:
    split = load_pairs_csv(tsv, test_fraction=0.2, seed=3)
    assert len(split.train) == 8 and len(split.test) == 2
    assert split.train.a.shape == (8, 1, 8, 8) and split.train.a.dtype == torch.float32
    assert isinstance(split.train.b, list) and split.train.b[0].startswith("a grey square")
    assert split.train.labels is None and tuple(split.class_names) == ()
    # an image and its caption stay together: image i has grey value 20 i
    for image, caption in zip(split.train.a, split.train.b, strict=True):
        i = int(caption.rsplit(" ", 1)[1])
        assert float(image.mean()) == pytest.approx(20 * i / 255, abs=1e-6)
    again = load_pairs_csv(tsv, test_fraction=0.2, seed=3)
    assert again.test.b == split.test.b
    assert load_pairs_csv(tsv, test_fraction=0.2, seed=4).test.b != split.test.b
    labelled = load_pairs_csv(tsv, label_key="tone", test_fraction=0.2)
    assert tuple(labelled.class_names) == ("dark", "light")
    assert labelled.test.labels is not None and sorted(labelled.test.labels.tolist()) == [0, 1]


def test_csv_keys_separator_and_suffix_default(tmp_path: Path) -> None:
    names = write_images(tmp_path, 4)
    rows = [[f"caption {i}", n] for i, n in enumerate(names)]
    path = write_table(tmp_path / "pairs.csv", ["text", "image"], rows, sep=",")
    split = load_pairs(path, img_key="image", caption_key="text", test_fraction=0.25)
    assert len(split.train) == 3 and modality_kind(split.train.a) == "image"
    semi = write_table(tmp_path / "pairs.txt", ["text", "image"], rows, sep=";")
    split = load_pairs_csv(semi, img_key="image", caption_key="text", separator=";")
    assert len(split.train) + len(split.test) == 4


@pytest.mark.parametrize(
    ("header", "rows", "expect"),
    [
        (["path", "title"], [["img/0.png", "x"]], r"line 1: no column 'filepath' \(csv_img_key\)"),
        (["filepath", "caption"], [["img/0.png", "x"]], r"line 1: no column 'title'"),
        (
            ["filepath", "title"],
            [["img/0.png", "one"], ["img/1.png", "  "], ["img/2.png", "three"]],
            r"pairs.tsv line 3: empty caption in column 'title'$",
        ),
        (
            ["filepath", "title"],
            [["img/0.png", ""], ["img/1.png", "b"], ["img/2.png", ""], ["img/3.png", ""]],
            r"line 2: empty caption in column 'title' \(3 bad rows in all, at lines 2, 4, 5\)",
        ),
        (
            ["filepath", "title"],
            [["img/0.png", "a"], ["img/nope.png", "b"]],
            r"line 3: image 'img/nope.png' not found \(looked at .*img/nope.png\)",
        ),
        (
            ["filepath", "title"],
            [["img/0.png"]],
            r"line 2: missing value in column\(s\) \['title'\]",
        ),
        (["filepath", "title"], [["", "a caption"]], r"line 2: empty image path"),
    ],
)
def test_csv_bad_rows_are_one_line_with_the_line_number(
    tmp_path: Path, header: list[str], rows: list[list[str]], expect: str
) -> None:
    write_images(tmp_path, 4)
    path = write_table(tmp_path / "pairs.tsv", header, rows)
    with pytest.raises(ValueError, match=expect) as info:
        load_pairs_csv(path)
    assert "\n" not in str(info.value)


def test_csv_unreadable_image_and_sizes_name_their_line(tmp_path: Path) -> None:
    names = write_images(tmp_path, 3)
    (tmp_path / "img" / "bad.png").write_bytes(b"not a png at all")
    rows = [[names[0], "a"], [names[1], "b"], ["img/bad.png", "c"]]
    path = write_table(tmp_path / "pairs.tsv", ["filepath", "title"], rows)
    with pytest.raises(
        ValueError, match=r"pairs.tsv line 4: .*bad.png: cannot read it as an image"
    ):
        load_pairs_csv(path)
    Image.new("L", (12, 10), 9).save(tmp_path / "img" / "big.png")
    rows = [[names[0], "a"], [names[1], "b"], ["img/big.png", "c"]]
    path = write_table(tmp_path / "sizes.tsv", ["filepath", "title"], rows)
    with pytest.raises(
        ValueError, match=r"sizes.tsv line 4: images differ in size.*data_image_size"
    ):
        load_pairs_csv(path)
    split = load_pairs_csv(path, image_size=6, test_fraction=0.34)
    assert split.train.a.shape[1:] == (1, 6, 6)


def test_csv_argument_errors(tsv: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match="no CSV/TSV file of pairs"):
        load_pairs_csv(tsv.with_name("missing.tsv"))
    with pytest.raises(ValueError, match="separator must be one character"):
        load_pairs_csv(tsv, separator="::")
    with pytest.raises(TypeError, match="img_key must be a non-empty str"):
        load_pairs_csv(tsv, img_key="")
    with pytest.raises(ValueError, match="test_fraction"):
        load_pairs_csv(tsv, test_fraction=1.5)


def npz_arrays(n_train: int = 6, n_test: int = 3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "a_train": rng.integers(0, 255, (n_train, 1, 8, 8), dtype=np.uint8),
        "b_train": np.array([f"caption {i}" for i in range(n_train)]),
        "y_train": np.arange(n_train) % 2,
        "a_test": rng.integers(0, 255, (n_test, 1, 8, 8), dtype=np.uint8),
        "b_test": np.array([f"caption {i}" for i in range(n_test)]),
        "y_test": np.arange(n_test) % 2,
        "class_names": np.array(["even", "odd"]),
        "zero_shot_templates": np.array(["a photo of an {} thing"]),
    }


def test_npz_image_text_and_two_sensors(tmp_path: Path) -> None:
    path = tmp_path / "pairs.npz"
    np.savez(path, **npz_arrays())
    split = load_pairs_npz(path)
    assert (modality_kind(split.train.a), modality_kind(split.train.b)) == ("image", "text")
    assert float(split.train.a.max()) <= 1.0 and split.train.a.dtype == torch.float32
    assert split.test.labels is not None and split.test.labels.dtype == torch.int64
    assert tuple(split.class_names) == ("even", "odd")
    assert tuple(split.zero_shot_templates) == ("a photo of an {} thing",)
    sensors = tmp_path / "sensors.npz"
    np.savez(
        sensors,
        a_train=np.ones((5, 3, 20)),
        b_train=np.zeros((5, 4)),
        a_test=np.ones((2, 3, 20)),
        b_test=np.zeros((2, 4)),
    )
    split = load_pairs(sensors)
    assert (modality_kind(split.train.a), modality_kind(split.train.b)) == ("series", "vector")
    assert split.train.labels is None and split.train.name == "sensors"


@pytest.mark.parametrize(
    ("change", "expect"),
    [
        ({"b_train": np.array(["x"] * 5)}, r"a_train has 6 rows but b_train has 5"),
        ({"a_test": np.zeros((4, 1, 8, 8), np.uint8)}, r"a_test has 4 rows but b_test has 3"),
        ({"y_train": np.arange(4)}, r"\[y_train\]: has 4 labels but the pairs number 6"),
        ({"a_test": np.zeros((3, 1, 6, 6), np.uint8)}, r"a_train and a_test hold different things"),
        (
            {"b_train": np.array(["a", "", "c", "d", "e", "f"])},
            r"1 empty text\(s\), first at row 1",
        ),
        ({"a_train": np.full((6, 4), np.nan)}, r"NaN or infinite"),
    ],
)
def test_npz_errors_are_clear(tmp_path: Path, change: dict[str, np.ndarray], expect: str) -> None:
    path = tmp_path / "pairs.npz"
    np.savez(path, **{**npz_arrays(), **change})
    with pytest.raises(ValueError, match=expect):
        load_pairs_npz(path)


def test_npz_missing_keys_and_pickles_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "pairs.npz"
    arrays = npz_arrays()
    del arrays["b_test"]
    np.savez(path, **arrays)
    with pytest.raises(ValueError, match=r"missing array\(s\) \['b_test'\].*found \["):
        load_pairs_npz(path)
    objects = tmp_path / "objects.npz"
    np.savez(objects, **{**npz_arrays(), "b_train": np.array(["a"] * 6, dtype=object)})
    with pytest.raises(ValueError, match="without pickle"):
        load_pairs_npz(objects)
    with pytest.raises(DatasetNotFoundError):
        load_pairs_npz(tmp_path / "none.npz")


def test_paired_dataset_checks_and_kinds() -> None:
    with pytest.raises(ValueError, match="same number of samples"):
        PairedDataset(torch.rand(3, 2), ["a", "b"])
    with pytest.raises(ValueError, match="empty text"):
        PairedDataset(torch.rand(2, 2), ["a", " "])
    assert modality_kind(torch.rand(2, 3, 4)) == "series"
    with pytest.raises(ValueError, match="a side of a pair"):
        modality_kind(torch.rand(2, 3, 4, 5, 6))
