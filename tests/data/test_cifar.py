"""CIFAR-10/100 python batches: tiny fake files in the original format, never the real data."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import pickle
import struct
import tarfile
import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import torch

import contrastkit.data.cifar as cifar_module
from contrastkit.data import DATA_DIR_ENV, DatasetNotFoundError, DataSplit
from contrastkit.data.cifar import (
    CIFAR_SPECS,
    CifarFormatError,
    UnsafePickleError,
    download_cifar,
    find_cifar,
    load_cifar,
    safe_pickle_load,
)
from contrastkit.data.download import DownloadError

CIFAR10_TRAIN_SIZES = (2, 1, 1, 1, 1)  # data_batch_1 .. data_batch_5: 6 train images
N_TEST = 3


# --------------------------------------------------------------------------------------------------
# writing batches the way the originals are written


# The pure-Python pickler, whose per-type dispatch table can be extended (the C one cannot).
_PY_PICKLER: Any = getattr(pickle, "_Pickler")  # noqa: B009


def _save_py2_str(pickler: Any, obj: str | bytes) -> None:
    data = obj if isinstance(obj, bytes) else obj.encode("latin-1")
    if len(data) < 256:
        pickler.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
    else:
        pickler.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
    pickler.memoize(obj)


class _Py2StylePickler(_PY_PICKLER):
    """Protocol 2 with every str/bytes as a Python 2 ``str`` (BINSTRING), as in the real files."""

    dispatch: ClassVar[dict[type, Any]] = {
        **_PY_PICKLER.dispatch,
        bytes: _save_py2_str,
        str: _save_py2_str,
    }


def py2_dumps(obj: object) -> bytes:
    """Pickle ``obj`` like Python 2's cPickle protocol 2 with numpy 1 did (numpy.core names)."""
    buf = io.BytesIO()
    _Py2StylePickler(buf, protocol=2).dump(obj)
    # GLOBAL opcodes are plain "c<module>\n<name>\n" lines: numpy 2 writes numpy._core.
    return buf.getvalue().replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")


def dumps(obj: object, protocol: int | None) -> bytes:
    """``protocol`` None: Python 2 style; else Python 3's pickle with that protocol."""
    return py2_dumps(obj) if protocol is None else pickle.dumps(obj, protocol=protocol)


def batch_dict(data: np.ndarray, labels: list[int], label_key: bytes) -> dict[bytes, Any]:
    n = data.shape[0]
    batch: dict[bytes, Any] = {
        b"batch_label": b"fake batch",
        b"data": data,
        label_key: labels,
        b"filenames": [b"img_%d.png" % i for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [19 - (x % 20) for x in labels]
    return batch


def write_cifar10(
    folder: Path, *, seed: int = 0, protocol: int | None = None
) -> dict[str, np.ndarray]:
    """Write the six CIFAR-10 batch files; return the concatenated train/test data and labels."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, list[np.ndarray]] = {"x_train": [], "y_train": [], "x_test": [], "y_test": []}
    sizes = [(f"data_batch_{i + 1}", n, "train") for i, n in enumerate(CIFAR10_TRAIN_SIZES)]
    for name, n, part in [*sizes, ("test_batch", N_TEST, "test")]:
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        if name == "data_batch_1":
            data[0], data[1] = 255, 0  # 1.0 and 0.0 both occur
        (folder / name).write_bytes(dumps(batch_dict(data, labels, b"labels"), protocol))
        out[f"x_{part}"].append(data)
        out[f"y_{part}"].append(np.asarray(labels, dtype=np.int64))
    return {k: np.concatenate(v) for k, v in out.items()}


def write_cifar100(folder: Path, *, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out: dict[str, np.ndarray] = {}
    for name, n in (("train", 5), ("test", N_TEST)):
        data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 100, n)]
        labels[0] = 99
        (folder / name).write_bytes(py2_dumps(batch_dict(data, labels, b"fine_labels")))
        out[f"x_{name}"], out[f"y_{name}"] = data, np.asarray(labels, dtype=np.int64)
    return out


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def make_archive(
    path: Path, source: Path, top: str, extra: tuple[tarfile.TarInfo, ...] = ()
) -> Path:
    """Write ``source``'s files as ``top/<file>`` into the gzipped tar ``path``, then ``extra``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        folder = tarfile.TarInfo(top)
        folder.type, folder.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(folder)
        for f in sorted(source.iterdir()):
            add_bytes(tar, f"{top}/{f.name}", f.read_bytes())
        add_bytes(tar, f"{top}/readme.html", b"<html>fake</html>")
        for info in extra:
            if info.isfile():
                tar.addfile(info, io.BytesIO(b"x" * info.size))
            else:
                tar.addfile(info)
    return path


def cifar10_archive(tmp_path: Path, *, seed: int = 0, name: str = "mirror") -> tuple[Path, dict]:
    arrays = write_cifar10(tmp_path / f"{name}-src" / str(seed), seed=seed)
    archive = make_archive(
        tmp_path / name / "cifar-10-python.tar.gz",
        tmp_path / f"{name}-src" / str(seed),
        "cifar-10-batches-py",
    )
    return archive, arrays


def check_split(split: object, arrays: dict[str, np.ndarray], name: str, k: int) -> None:
    assert isinstance(split, DataSplit)
    for part in ("train", "test"):
        ds = getattr(split, part)
        x, y = arrays[f"x_{part}"], arrays[f"y_{part}"]
        assert ds.images.shape == (len(x), 3, 32, 32)
        assert ds.images.dtype == torch.float32 and ds.labels.dtype == torch.int64
        assert ds.name == name and ds.num_classes == k
        want = torch.from_numpy(x.reshape(-1, 3, 32, 32).astype(np.float32) / 255)
        assert torch.allclose(ds.images, want, atol=1e-7)
        assert torch.equal(ds.labels, torch.from_numpy(y))


@pytest.fixture(autouse=True)
def _no_user_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


# --------------------------------------------------------------------------------------------------
# loading


def test_load_cifar10(tmp_path: Path) -> None:
    arrays = write_cifar10(tmp_path / "cifar-10-batches-py")
    split = load_cifar("cifar10", root=tmp_path)
    check_split(split, arrays, "cifar10", 10)
    assert (len(split.train), len(split.test)) == (6, N_TEST)
    assert float(split.train.images.max()) == 1.0 and float(split.train.images.min()) == 0.0
    assert float(split.train.images[0].min()) == 1.0 and float(split.train.images[1].max()) == 0.0


def test_pixel_layout_is_rgb_planes_row_major(tmp_path: Path) -> None:
    folder = tmp_path / "b"
    write_cifar10(folder)
    row = np.zeros(3072, dtype=np.uint8)
    # (channel, y, x) -> value; offset = channel * 1024 + y * 32 + x in the stored row
    marks = {(0, 3, 5): 10, (1, 7, 1): 20, (2, 31, 30): 30, (0, 0, 31): 40, (2, 1, 0): 50}
    for (c, y, x), v in marks.items():
        row[c * 1024 + y * 32 + x] = v
    data = np.stack([row, np.full(3072, 7, dtype=np.uint8)])
    (folder / "data_batch_1").write_bytes(py2_dumps(batch_dict(data, [3, 4], b"labels")))
    img = load_cifar("cifar10", root=folder).train.images[0]
    for (c, y, x), v in marks.items():
        assert round(float(img[c, y, x]) * 255) == v, (c, y, x)
    assert round(float(img.sum()) * 255) == sum(marks.values())  # nothing else is set
    assert torch.equal(img[1].nonzero(), torch.tensor([[7, 1]]))


@pytest.mark.parametrize("protocol", [2, 4])
def test_python3_pickles_load_too(tmp_path: Path, protocol: int) -> None:
    # Python 3 protocol 2 writes bytes as _codecs.encode(text, "latin1") calls.
    arrays = write_cifar10(tmp_path, protocol=protocol)
    if protocol == 2:
        assert b"_codecs" in (tmp_path / "test_batch").read_bytes()
    check_split(load_cifar("cifar10", root=tmp_path), arrays, "cifar10", 10)


def test_numpy_core_names_load_without_warnings(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    raw = (tmp_path / "data_batch_1").read_bytes()
    assert b"cnumpy.core.multiarray\n_reconstruct" in raw and b"_codecs" not in raw
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_cifar("cifar10", root=tmp_path)


def test_load_cifar100_fine_labels(tmp_path: Path) -> None:
    arrays = write_cifar100(tmp_path / "cifar-100-python")
    split = load_cifar("cifar100", root=tmp_path)
    check_split(split, arrays, "cifar100", 100)
    assert int(split.train.labels[0]) == 99  # fine label, not the coarse 19 - 99 % 20 = 0
    for alias in ("CIFAR-100", "cifar_100", " Cifar100 "):
        assert torch.equal(load_cifar(alias, root=tmp_path).test.labels, split.test.labels)


def test_bad_names() -> None:
    with pytest.raises(ValueError, match=r"unknown CIFAR dataset 'cifar20'.*'cifar10' or"):
        find_cifar("cifar20")
    with pytest.raises(TypeError, match="name must be a str"):
        load_cifar(10)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# the restricted unpickler


class _SystemCall:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (self.command,))


class _EvalCall:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (eval, (self.code,))


class _ExecCall:
    def __init__(self, code: str) -> None:
        self.code = code

    def __reduce__(self) -> tuple[Any, ...]:
        return (exec, (self.code,))


def test_plain_pickle_would_run_the_payload(tmp_path: Path) -> None:
    """Control: the payload style used below does run under an ordinary unpickler."""
    marker = tmp_path / "ran"
    payload = pickle.dumps(_ExecCall(f"open({str(marker)!r}, 'w').close()"), protocol=2)
    pickle.loads(payload)
    assert marker.exists()
    marker.unlink()
    with pytest.raises(
        UnsafePickleError, match=r"refused to load global (__builtin__|builtins)\.exec"
    ):
        safe_pickle_load(io.BytesIO(payload))
    assert not marker.exists()


@pytest.mark.parametrize("where", ["top", "labels"])
def test_os_system_is_refused_and_not_run(tmp_path: Path, where: str) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    write_cifar10(folder)
    marker = tmp_path / "pwned"
    evil = _SystemCall(f"touch {marker}")
    data = np.zeros((1, 3072), dtype=np.uint8)
    obj = evil if where == "top" else {b"data": data, b"labels": evil}
    (folder / "data_batch_3").write_bytes(pickle.dumps(obj, protocol=2))
    with pytest.raises(UnsafePickleError, match=r"refused to load global (posix|nt|os)\.system"):
        load_cifar("cifar10", root=tmp_path)
    assert not marker.exists()
    try:
        load_cifar("cifar10", root=tmp_path)
    except pickle.UnpicklingError as exc:  # the documented base class
        assert "data_batch_3" in str(exc)


@pytest.mark.parametrize("protocol", [2, 4])
def test_eval_is_refused(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "evaluated"
    payload = pickle.dumps(_EvalCall(f"open({str(marker)!r}, 'w')"), protocol=protocol)
    with pytest.raises(
        UnsafePickleError, match=r"refused to load global (__builtin__|builtins)\.eval"
    ):
        safe_pickle_load(io.BytesIO(payload))
    assert not marker.exists()


def test_codecs_encode_only_for_latin1() -> None:
    def call(text: str, encoding: str) -> bytes:
        def unicode(s: str) -> bytes:
            raw = s.encode()
            return pickle.BINUNICODE + struct.pack("<I", len(raw)) + raw

        return (
            pickle.PROTO
            + b"\x02"
            + pickle.GLOBAL
            + b"_codecs\nencode\n"
            + unicode(text)
            + unicode(encoding)
            + pickle.TUPLE2
            + pickle.REDUCE
            + pickle.STOP
        )

    assert safe_pickle_load(io.BytesIO(call("\xff", "latin1"))) == b"\xff"
    with pytest.raises(UnsafePickleError, match=r"only _codecs\.encode"):
        safe_pickle_load(io.BytesIO(call("abc", "rot13")))


def test_numpy_arrays_and_plain_values_round_trip() -> None:
    obj = {b"a": np.arange(6, dtype=np.int32).reshape(2, 3), b"b": [1, 2.5, None, (True,)]}
    for payload in (py2_dumps(obj), pickle.dumps(obj, protocol=2), pickle.dumps(obj, 4)):
        back = safe_pickle_load(io.BytesIO(payload))
        assert (
            np.array_equal(back[b"a"], np.arange(6).reshape(2, 3)) and back[b"a"].dtype == np.int32
        )
        assert back[b"b"] == obj[b"b"]


# --------------------------------------------------------------------------------------------------
# corrupt contents


GOOD = np.zeros((2, 3072), dtype=np.uint8)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"this is not a pickle", "cannot decode it as a CIFAR batch pickle"),
        ("truncated", "cannot decode it as a CIFAR batch pickle"),
        ([1, 2], "expected a pickled dict"),
        ({b"labels": [1, 2]}, r"no 'data' entry in the batch; found keys b'labels'"),
        ({b"data": GOOD}, "no 'labels' entry"),
        ({b"data": GOOD, b"fine_labels": [1, 2]}, r"no 'labels' entry.*b'fine_labels'"),
        ({b"data": [[0] * 3072], b"labels": [1]}, "'data' must be a numpy array, got list"),
        ({b"data": GOOD.astype(np.float32), b"labels": [1, 2]}, r"uint8 of shape \(n, 3072\)"),
        ({b"data": GOOD[:, :3071], b"labels": [1, 2]}, r"got uint8 of shape \(2, 3071\)"),
        ({b"data": GOOD, b"labels": [1]}, "has 1 entries but 'data' has 2 images"),
        (
            {b"data": GOOD, b"labels": [1, 10]},
            r"must lie in 0\.\.9 \(CIFAR-10\), got min 1, max 10",
        ),
        ({b"data": GOOD, b"labels": [-1, 0]}, "must lie in 0..9"),
        ({b"data": GOOD, b"labels": [b"a", b"b"]}, "must be a flat list of ints"),
        ({b"data": GOOD, b"labels": [0.5, 1.0]}, "must be a flat list of ints"),
        ({b"data": GOOD, b"labels": 3}, "must be a list of ints, got int"),
    ],
)
def test_corrupt_batches_name_the_file(tmp_path: Path, content: object, match: str) -> None:
    write_cifar10(tmp_path)
    target = tmp_path / "data_batch_4"
    if isinstance(content, bytes):
        target.write_bytes(content)
    elif content == "truncated":
        target.write_bytes(target.read_bytes()[:1000])
    else:
        target.write_bytes(py2_dumps(content))
    with pytest.raises(CifarFormatError, match=match) as info:
        load_cifar("cifar10", root=tmp_path)
    assert isinstance(info.value, ValueError)
    assert str(target) in str(info.value)


# --------------------------------------------------------------------------------------------------
# finding the files


def test_missing_files_message_lists_searched_folders(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "cifar10").mkdir(parents=True)
    (root / "cifar10" / "cifar-10-python.tar.gz").write_bytes(b"")
    with pytest.raises(DatasetNotFoundError) as info:
        find_cifar("cifar10", root)
    err = info.value
    assert isinstance(err, FileNotFoundError) and isinstance(err, ValueError)
    want = [
        root / "cifar-10-batches-py",
        root,
        root / "cifar10",
        root / "cifar10" / "cifar-10-batches-py",
    ]
    assert list(err.searched) == want
    msg = str(err)
    assert f"  {root}  (no batch files)" in msg
    assert f"  {root / 'cifar-10-batches-py'}  (no such folder)" in msg
    assert "cifar-10-python.tar.gz is here but not extracted" in msg
    assert "data_batch_1, data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch" in msg
    assert "download_cifar('cifar10', DIR)" in msg
    assert "root=DIR" in msg and "--data-root DIR" in msg and DATA_DIR_ENV in msg


def test_partial_folder_names_missing_batches(tmp_path: Path) -> None:
    write_cifar10(tmp_path)
    (tmp_path / "data_batch_3").unlink()
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DatasetNotFoundError, match="missing data_batch_3, test_batch"):
        load_cifar("cifar10", root=tmp_path)


def test_nowhere_to_look_without_root_or_env() -> None:
    with pytest.raises(DatasetNotFoundError, match=f"{DATA_DIR_ENV} is not set") as info:
        load_cifar("cifar100")
    assert info.value.searched == ()
    assert "download_cifar('cifar100', DIR)" in str(info.value)


@pytest.mark.parametrize(
    "sub", [".", "cifar-10-batches-py", "cifar10", "cifar10/cifar-10-batches-py"]
)
def test_env_var_layouts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sub: str) -> None:
    env = tmp_path / "env"
    arrays = write_cifar10(env / sub)
    monkeypatch.setenv(DATA_DIR_ENV, str(env))
    assert find_cifar("cifar10") == (env / sub if sub != "." else env)
    check_split(load_cifar("cifar10"), arrays, "cifar10", 10)


def test_root_is_searched_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_cifar10(tmp_path / "env")
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_cifar("cifar10", root=tmp_path / "elsewhere")
    assert str(tmp_path / "env") not in str(info.value)


def test_cifar10_and_cifar100_side_by_side(tmp_path: Path) -> None:
    a10 = write_cifar10(tmp_path / "cifar-10-batches-py")
    a100 = write_cifar100(tmp_path / "cifar-100-python")
    check_split(load_cifar("cifar10", tmp_path), a10, "cifar10", 10)
    check_split(load_cifar("cifar100", tmp_path), a100, "cifar100", 100)


# --------------------------------------------------------------------------------------------------
# downloading


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def test_download_from_file_url_then_load(tmp_path: Path) -> None:
    archive, arrays = cifar10_archive(tmp_path)
    dest = tmp_path / "dl" / "data"
    out = download_cifar("cifar10", dest, url=archive.as_uri())
    assert out == dest / "cifar-10-batches-py"
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]  # no archive, no temp
    assert (out / "readme.html").is_file()
    assert find_cifar("cifar10", dest) == out
    check_split(load_cifar("cifar10", root=dest), arrays, "cifar10", 10)


def test_download_cifar100(tmp_path: Path) -> None:
    arrays = write_cifar100(tmp_path / "src")
    archive = make_archive(tmp_path / "m" / "c.tar.gz", tmp_path / "src", "cifar-100-python")
    out = download_cifar("CIFAR-100", tmp_path / "dl", url=archive.as_uri())
    assert out == tmp_path / "dl" / "cifar-100-python"
    check_split(load_cifar("cifar100", tmp_path / "dl"), arrays, "cifar100", 100)


def test_md5_checked_for_the_official_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    archive, arrays = cifar10_archive(tmp_path)
    official = dataclasses.replace(CIFAR_SPECS["cifar10"], url=archive.as_uri(), md5="0" * 32)
    monkeypatch.setitem(cifar_module.CIFAR_SPECS, "cifar10", official)
    dest = tmp_path / "dl"
    with pytest.raises(DownloadError, match="MD5 checksum mismatch") as info:
        download_cifar("cifar10", dest)
    assert "0" * 32 in str(info.value)
    assert list(dest.iterdir()) == []
    # the same URL passed explicitly is the official one too
    with pytest.raises(DownloadError, match="MD5 checksum mismatch"):
        download_cifar("cifar10", dest, url=archive.as_uri())
    good = hashlib.md5(archive.read_bytes(), usedforsecurity=False).hexdigest()
    monkeypatch.setitem(
        cifar_module.CIFAR_SPECS, "cifar10", dataclasses.replace(official, md5=good)
    )
    download_cifar("cifar10", dest)
    check_split(load_cifar("cifar10", dest), arrays, "cifar10", 10)


def test_official_constants() -> None:
    c10, c100 = CIFAR_SPECS["cifar10"], CIFAR_SPECS["cifar100"]
    assert c10.url == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert c100.url == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert (c10.md5, c100.md5) == (
        "c58f30108f718f92721af3b95e74349a",
        "eb9058c3a382ffc7106e4002c42a8d85",
    )
    assert (c10.folder, c100.folder) == ("cifar-10-batches-py", "cifar-100-python")
    assert c10.files[-1] == "test_batch" and c100.files == ("train", "test")


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, link, 0o644
    info.size = 4 if kind == tarfile.REGTYPE else 0
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info


@pytest.mark.parametrize(
    ("member", "match"),
    [
        (_member("cifar-10-batches-py/../../evil"), r"contains '\.\.'"),
        (_member("../evil"), r"contains '\.\.'"),
        (_member("ABSOLUTE"), "is an absolute path"),
        (_member("other-folder/evil"), "lies outside the folder cifar-10-batches-py/"),
        (_member("cifar-10-batches-py/evil", tarfile.SYMTYPE, "../../evil-target"), "is a link"),
        (_member("cifar-10-batches-py/evil", tarfile.LNKTYPE, "/etc/passwd"), "is a link"),
        (_member("cifar-10-batches-py/evil", tarfile.CHRTYPE), "not a regular file or folder"),
        (_member("cifar-10-batches-py/evil", tarfile.FIFOTYPE), "not a regular file or folder"),
    ],
)
def test_unsafe_archives_are_refused(tmp_path: Path, member: tarfile.TarInfo, match: str) -> None:
    if member.name == "ABSOLUTE":
        member = _member(str(tmp_path / "evil"))
    write_cifar10(tmp_path / "src")
    archive = make_archive(
        tmp_path / "m" / "a.tar.gz", tmp_path / "src", "cifar-10-batches-py", (member,)
    )
    dest = tmp_path / "box" / "root"
    with pytest.raises(DownloadError, match=f"refusing to extract the archive: .*{match}"):
        download_cifar("cifar10", dest, url=archive.as_uri())
    assert list(dest.iterdir()) == []  # no staging folder, no archive, nothing extracted
    assert not [p for p in tmp_path.rglob("*evil*")]  # nothing written anywhere


def test_archive_without_all_batches_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "src")
    (tmp_path / "src" / "data_batch_5").unlink()
    archive = make_archive(tmp_path / "m" / "a.tar.gz", tmp_path / "src", "cifar-10-batches-py")
    with pytest.raises(DownloadError, match="cifar-10-batches-py/ lacks data_batch_5"):
        download_cifar("cifar10", tmp_path / "dl", url=archive.as_uri())
    assert list((tmp_path / "dl").iterdir()) == []


def test_archive_with_a_malicious_batch_is_refused(tmp_path: Path) -> None:
    write_cifar10(tmp_path / "src")
    marker = tmp_path / "pwned"
    (tmp_path / "src" / "test_batch").write_bytes(
        pickle.dumps(_SystemCall(f"touch {marker}"), protocol=2)
    )
    archive = make_archive(tmp_path / "m" / "a.tar.gz", tmp_path / "src", "cifar-10-batches-py")
    with pytest.raises(DownloadError, match=r"refused to load global .*system"):
        download_cifar("cifar10", tmp_path / "dl", url=archive.as_uri())
    assert not marker.exists()
    assert list((tmp_path / "dl").iterdir()) == []


@pytest.mark.parametrize("content", [b"<html>not found</html>", b"truncated"])
def test_not_a_tar_gz(tmp_path: Path, content: bytes) -> None:
    archive, _ = cifar10_archive(tmp_path)
    if content == b"truncated":
        content = archive.read_bytes()[: archive.stat().st_size // 2]
    archive.write_bytes(content)
    with pytest.raises(DownloadError, match="did not give a valid gzipped tar archive"):
        download_cifar("cifar10", tmp_path / "dl", url=archive.as_uri())
    assert list((tmp_path / "dl").iterdir()) == []


def test_missing_remote_file_has_offline_hint(tmp_path: Path) -> None:
    url = (tmp_path / "nothing-here.tar.gz").as_uri()
    with pytest.raises(DownloadError, match="could not download") as info:
        download_cifar("cifar10", tmp_path / "dl", url=url)
    assert isinstance(info.value, OSError)
    assert "url='file:///path/to/cifar-10-python.tar.gz'" in str(info.value)
    assert list((tmp_path / "dl").iterdir()) == []


def test_existing_download_is_kept_unless_forced(tmp_path: Path) -> None:
    archive, first = cifar10_archive(tmp_path, seed=0)
    dest = tmp_path / "dl"
    out = download_cifar("cifar10", dest, url=archive.as_uri())
    archive2, second = cifar10_archive(tmp_path, seed=1, name="mirror2")
    assert not np.array_equal(first["y_train"], second["y_train"])
    # present: nothing is fetched (the URL does not even exist)
    missing = (tmp_path / "gone.tar.gz").as_uri()
    assert download_cifar("cifar10", dest, url=missing) == out
    check_split(load_cifar("cifar10", dest), first, "cifar10", 10)
    # a failed forced download leaves the old files in place
    with pytest.raises(DownloadError):
        download_cifar("cifar10", dest, url=missing, force=True)
    check_split(load_cifar("cifar10", dest), first, "cifar10", 10)
    # a forced download replaces them
    assert download_cifar("cifar10", dest, url=archive2.as_uri(), force=True) == out
    check_split(load_cifar("cifar10", dest), second, "cifar10", 10)
    assert sorted(p.name for p in dest.iterdir()) == ["cifar-10-batches-py"]


def test_files_already_in_root_count_as_present(tmp_path: Path) -> None:
    flat = write_cifar10(tmp_path / "flat", seed=0)
    missing = (tmp_path / "gone.tar.gz").as_uri()
    assert download_cifar("cifar10", tmp_path / "flat", url=missing) == tmp_path / "flat"
    # a forced download goes to the archive's folder, which is then found first
    archive, fresh = cifar10_archive(tmp_path, seed=1)
    out = download_cifar("cifar10", tmp_path / "flat", url=archive.as_uri(), force=True)
    assert out == tmp_path / "flat" / "cifar-10-batches-py"
    check_split(load_cifar("cifar10", tmp_path / "flat"), fresh, "cifar10", 10)
    assert not np.array_equal(flat["y_train"], fresh["y_train"])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"timeout": 0}, ValueError, "timeout must be > 0"),
        ({"timeout": float("nan")}, ValueError, "timeout must be > 0"),
        ({"timeout": "60"}, TypeError, "timeout must be a number"),
        ({"force": "yes"}, TypeError, "force must be a bool"),
        ({"url": b"file:///x"}, TypeError, "url must be a str"),
    ],
)
def test_bad_download_arguments(
    tmp_path: Path, kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        download_cifar("cifar10", tmp_path, **kwargs)


# --------------------------------------------------------------------------------------------------
# wiring: load_dataset, the trainer and `contrastkit download`


def test_load_dataset_names_and_the_trainer(tmp_path: Path) -> None:
    from contrastkit.data import load_dataset
    from contrastkit.train import FitConfig, fit

    arrays = write_cifar10(tmp_path / "cifar-10-batches-py")
    for name in ("cifar10", "CIFAR-10", "cifar_10"):
        check_split(load_dataset(name, root=tmp_path), arrays, "cifar10", 10)
    with pytest.raises(DatasetNotFoundError, match="cifar-100-python"):
        load_dataset("cifar100", root=tmp_path)
    config = FitConfig(
        data="cifar10",
        data_root=str(tmp_path),
        epochs=1,
        batch_size=4,
        out=str(tmp_path / "run"),
        progress=False,
        threads=1,
        encoder_widths=(4, 4),
        encoder_strides=(2, 2),
    )
    result = fit(config)
    # six training images: every one votes, and the probe has no validation split to search on
    assert result.metrics["knn_k"] == 6 and 0.0 <= result.metrics["linear_acc"] <= 1.0


def test_cli_download_then_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from contrastkit.cli import main
    from contrastkit.data import load_dataset

    archive, arrays = cifar10_archive(tmp_path)
    dest = tmp_path / "data"
    assert main(["download", "cifar10", "--root", str(dest), "--url", archive.as_uri()]) == 0
    assert "--data cifar10 --data-root" in capsys.readouterr().out
    check_split(load_dataset("cifar10", root=dest), arrays, "cifar10", 10)
    missing = (tmp_path / "nowhere.tar.gz").as_uri()
    assert main(["download", "cifar100", "--root", str(dest), "--url", missing]) == 1
    assert "could not download" in capsys.readouterr().err
