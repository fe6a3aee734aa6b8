"""Two-tower run directories: zero-shot with user classes, embeddings, report, CLI commands."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.cli import main
from contrastkit.eval import (
    embed_run,
    evaluate_two_tower,
    load_embeddings,
    two_tower_embeddings,
    write_report,
    zero_shot_accuracy,
    zero_shot_classifier,
    zero_shot_run,
)
from contrastkit.eval.two_tower import embed_side
from contrastkit.models import TextTokenizer
from contrastkit.runs import (
    CONFIG_FILE,
    METRICS_FILE,
    TOKENIZER_FILE,
    WEIGHTS_FILE,
    FitConfig,
    build_two_tower,
    load_two_tower_run,
    save_weights,
    two_tower_header,
)

pytest.importorskip("tokenizers")

DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained two-tower run directory on digits-captions, written as training writes it."""
    out = tmp_path_factory.mktemp("tt") / "run"
    out.mkdir()
    config = FitConfig(
        loss="clip",
        data="digits-captions",
        out=str(out),
        head_out_dim=16,
        text_kwargs={"width": 16, "heads": 2, "layers": 1, "vocab_size": 200},
    )
    split = config.load_pairs()
    assert isinstance(split.train.b, list)
    tok = TextTokenizer.train(split.train.b, vocab_size=200)
    torch.manual_seed(0)
    model = build_two_tower(config, ("image", "text"), ((1, 8, 8), ()), tok)
    (out / CONFIG_FILE).write_text(json.dumps(config.to_dict()))
    tok.save(out / TOKENIZER_FILE)
    save_weights(
        out / WEIGHTS_FILE, model.state_dict(), metadata=two_tower_header(model, ((1, 8, 8), ()))
    )
    return out


def test_zero_shot_run_matches_the_library_parts(run_dir: Path) -> None:
    result = zero_shot_run(run_dir, DIGITS, k=3)
    assert result.indices.shape == (450, 3) and result.scores.shape == (450, 3)
    assert result.source == "digits-captions test"
    assert result.templates[0] == "a blurry photo of the {}."
    config, model = load_two_tower_run(run_dir)
    split = config.load_pairs()
    model.eval()
    with torch.no_grad():
        w = zero_shot_classifier(lambda t: model.encode_text(t), DIGITS, result.templates)
    emb = embed_side(model, "a", split.test.a)
    assert split.test.labels is not None
    ref = zero_shot_accuracy(emb, split.test.labels, w, topk=(1,))["zero_shot_top1"]
    assert result.accuracy == pytest.approx(ref)
    # Names in another order (and case) map to the right labels; a missing class: no accuracy.
    shuffled = list(reversed([n.upper() for n in DIGITS]))
    again = zero_shot_run(run_dir, shuffled)
    assert again.accuracy == pytest.approx(ref)
    assert again.targets is not None and again.targets[0] == 9 - int(split.test.labels[0])
    assert zero_shot_run(run_dir, ["one", "seven"], templates=["{}"]).accuracy is None


def test_zero_shot_run_on_other_images(run_dir: Path, tmp_path: Path) -> None:
    result = zero_shot_run(run_dir, DIGITS, data="digits", split="train")
    assert result.indices.shape[0] == 1347 and result.accuracy is not None
    big = tmp_path / "big.npz"
    np.savez(big, x=np.zeros((6, 28, 28), np.uint8), y=np.arange(6) % 2)
    with pytest.raises(ValueError, match=r"sample shape \(1,28,28\).*\(1,8,8\)"):
        zero_shot_run(run_dir, ["a", "b"], data=str(big))
    with pytest.raises(ValueError, match="non-empty list"):
        zero_shot_run(run_dir, "one,two")


def test_two_tower_embeddings_of_either_tower(run_dir: Path, tmp_path: Path) -> None:
    f, y, marks, meta = two_tower_embeddings(run_dir, tower="text", split="all")
    assert f.shape == (1797, 16) and y is not None and marks is not None
    assert int(marks.sum()) == 450 and meta["tower"] == "b (text)"
    h, _, _, _ = two_tower_embeddings(run_dir, tower="image", layer="h")
    assert h.shape[0] == 450 and h.shape[1] != 16
    texts = tmp_path / "texts.txt"
    texts.write_text("a small zero\n\nseven, dark\n", encoding="utf-8")
    f, y, _, _ = two_tower_embeddings(run_dir, tower="b", data=str(texts))
    assert f.shape == (2, 16) and y is None
    with pytest.raises(ValueError, match="no series tower"):
        two_tower_embeddings(run_dir, tower="series")
    files = embed_run(run_dir, tmp_path / "img.npz", tower="image", data="digits")
    saved = load_embeddings(files[0])
    assert saved["features"].shape == (450, 16) and saved["labels"].shape == (450,)


def test_cli_eval_embed_zeroshot(
    run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", str(run_dir)]) == 0
    out = capsys.readouterr().out
    assert "zero-shot accuracy:     top-1 " in out and ", top-5 " in out
    assert "image -> text:" in out and "text -> image:" in out and "median rank" in out
    assert "linear-probe accuracy:" in out
    out_file = tmp_path / "zs.csv"
    args = ["zeroshot", str(run_dir), "--classes", ",".join(DIGITS), "--top", "2"]
    assert main([*args, "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "classified 450 images" in out and "accuracy:" in out
    rows = list(csv.reader(out_file.open()))
    assert rows[0] == ["index", "class_1", "class_2", "score_1", "score_2", "true_class"]
    assert len(rows) == 451
    before = out_file.read_bytes()  # an existing file is replaced only with --overwrite
    assert main([*args, "--out", str(out_file)]) == 2
    assert "already exists" in capsys.readouterr().err and out_file.read_bytes() == before
    assert main([*args, "--out", str(out_file), "--overwrite"]) == 0
    capsys.readouterr()
    assert main(["zeroshot", str(run_dir), "--classes", "one, seven", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["predicted"].values()) == 450 and summary["accuracy"] is None
    assert main(["zeroshot", str(run_dir), "--classes", "one,,seven"]) == 2
    assert "--classes must be" in capsys.readouterr().err
    emb = tmp_path / "t.npy"
    assert main(["embed", str(run_dir), "--tower", "text", "--out", str(emb)]) == 0
    assert np.load(emb).shape == (450, 16)
    assert main(["embed", str(run_dir), "--tower", "audio", "--out", str(emb)]) == 2


def test_report_of_a_two_tower_run(run_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    # Final metrics as training writes them (without the probes, to keep the test short).
    config, model = load_two_tower_run(run)
    metrics = evaluate_two_tower(model, config.load_pairs(), probe=False)
    (run / METRICS_FILE).write_text(json.dumps(metrics))
    page = write_report(run)
    names = {p.name for p in page.parent.iterdir()}
    assert {
        "loss.png",
        "recall.png",
        "retrieval.png",
        "text_to_image.png",
        "zero_shot.png",
    } <= names
    html = page.read_text()
    assert 'id="metrics"' in html and "image_to_text_R@1" in html and "zero_shot_top1" in html
    summary = json.loads((page.parent / "summary.json").read_text())
    assert 0 <= summary["zero_shot_top1"] <= 1
