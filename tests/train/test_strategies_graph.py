"""SCGC / SCGC* graph clustering (METHODS.md 3.6) and the ``contrastkit cluster`` command."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from contrastkit.cli import main
from contrastkit.train.strategies.graph_clustering import (
    clustering_scores,
    load_graph_data,
    scgc_cluster,
)


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(30)
    centres = torch.eye(3, 12) * 8
    return centres[y] + 0.5 * torch.randn(90, 12, generator=g), y


SMALL = {"hidden_dims": (16,), "embed_dim": 4, "pretrain_epochs": 3, "kmeans_n_init": 3}


def test_scgc_star_reports_last_and_best_separately() -> None:
    x, y = _blobs()
    run = scgc_cluster(x, 3, labels=y, epochs=6, **SMALL)  # type: ignore[arg-type]
    assert len(run.history) == 6 and run.predictions.shape == (90,)
    assert run.embeddings.shape == (90, 4)
    assert run.last == {k: run.history[-1][k] for k in ("acc", "nmi", "ari")}
    for key in ("acc", "nmi", "ari"):
        per_epoch = [h[key] for h in run.history]
        assert run.best[key] == max(per_epoch) >= run.last[key]
        assert per_epoch[run.best[f"{key}_epoch"] - 1] == run.best[key]
    assert set(run.final_kmeans) == {"acc", "nmi", "ari"} and run.pretrain
    assert run.final_kmeans["nmi"] > 0.8  # well-separated blobs
    assert run.settings["variant"] == "scgc*" and run.settings["k"] == 3
    again = scgc_cluster(x, 3, labels=y, epochs=6, **SMALL)  # type: ignore[arg-type]
    assert [h["loss"] for h in again.history] == [h["loss"] for h in run.history]


def test_scgc_variant_trains_the_decoder_and_uses_powers() -> None:
    x, y = _blobs(1)
    star = scgc_cluster(x, 3, labels=y, epochs=2, order=2, **SMALL)  # type: ignore[arg-type]
    plain = scgc_cluster(x, 3, labels=y, epochs=2, order=2, variant="scgc", **SMALL)  # type: ignore[arg-type]
    assert "reconstruction" in plain.history[0] and "reconstruction" not in star.history[0]
    # cumulative targets (A + A^2) have at least the non-zeros of A^2
    assert star.settings["target_nonzeros"] >= plain.settings["target_nonzeros"]


def test_given_adjacency_and_unlabelled_data() -> None:
    x, _ = _blobs(2)
    edges = torch.tensor([[i, i + 1] for i in range(89) if (i + 1) % 30]).T
    adj = torch.sparse_coo_tensor(
        edges, torch.ones(edges.shape[1]), (90, 90), check_invariants=True
    )
    run = scgc_cluster(x, 3, adjacency=adj, epochs=2, **SMALL)  # type: ignore[arg-type]
    assert run.last == {} and run.best == {} and run.final_kmeans == {}
    assert run.settings["k"] is None and int(run.predictions.max()) < 3


def test_clustering_scores_by_hand() -> None:
    s = clustering_scores(np.array([0, 0, 1, 1]), np.array([1, 1, 0, 0]))
    assert s == {"acc": 1.0, "nmi": pytest.approx(1.0), "ari": pytest.approx(1.0)}
    s = clustering_scores(np.array([0, 0, 1, 1]), np.array([0, 1, 0, 1]))
    assert s["acc"] == 0.5 and s["nmi"] == pytest.approx(0.0, abs=1e-12)


def test_errors() -> None:
    x, y = _blobs()
    with pytest.raises(ValueError, match="variant"):
        scgc_cluster(x, 3, variant="sdcn")
    with pytest.raises(ValueError, match="n_clusters"):
        scgc_cluster(x, 91)
    with pytest.raises(ValueError, match="labels must have shape"):
        scgc_cluster(x, 3, labels=y[:5])
    with pytest.raises(ValueError, match="finite"):
        scgc_cluster(torch.full((4, 2), float("nan")), 2)
    with pytest.raises(ValueError, match="unknown clustering data"):
        load_graph_data("mnist")


def test_digits_loader() -> None:
    d = load_graph_data("digits")
    assert d.features.shape == (1797, 64) and float(d.features.max()) <= 1.0
    assert d.labels is not None and int(d.labels.max()) == 9 and d.adjacency is None


def test_npz_loader_and_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs(3)
    edges = np.array([[i, (i + 1) % 90] for i in range(90)]).T
    path = tmp_path / "g.npz"
    np.savez(path, x=x.numpy(), y=y.numpy(), edge_index=edges)
    d = load_graph_data(str(path))
    assert d.adjacency is not None and d.adjacency.is_sparse and d.name == "g"
    code = main(
        [
            "cluster",
            "--data",
            str(path),
            "--epochs",
            "2",
            "--pretrain-epochs",
            "1",
            "--hidden",
            "8",
            "--json",
        ]
    )
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["last"]) == {"acc", "nmi", "ari"} and "best_over_epochs" in out
    assert set(out["modularity_selected"]) == {"epoch", "modularity", "acc", "nmi", "ari"}
    assert out["settings"]["epochs"] == 2 and out["settings"]["k"] is None
    np.savez(tmp_path / "bad.npz", x=x.numpy(), edge_index=np.array([[0], [95]]))
    assert main(["cluster", "--data", str(tmp_path / "bad.npz"), "--clusters", "3"]) == 2
    assert "outside" in capsys.readouterr().err


def test_departure_flags() -> None:
    x, y = _blobs(4)
    base = scgc_cluster(x, 3, labels=y, epochs=4, **SMALL)  # type: ignore[arg-type]
    normed = scgc_cluster(x, 3, labels=y, epochs=4, normalize_embeddings=True, **SMALL)  # type: ignore[arg-type]
    assert torch.allclose(normed.embeddings.norm(dim=1), torch.ones(90), atol=1e-5)
    assert not torch.allclose(base.embeddings.norm(dim=1), torch.ones(90), atol=1e-3)
    fast = scgc_cluster(x, 3, labels=y, epochs=4, center_lr=0.1, **SMALL)  # type: ignore[arg-type]
    refreshed = scgc_cluster(x, 3, labels=y, epochs=4, center_refresh_every=2, **SMALL)  # type: ignore[arg-type]
    kl = [h["kl"] for h in base.history]
    kl_fast = [h["kl"] for h in fast.history]
    kl_refreshed = [h["kl"] for h in refreshed.history]
    assert kl_fast[0] == kl[0] and kl_fast[1:] != kl[1:]  # same start, other centre steps
    assert kl_refreshed[:2] == kl[:2] and kl_refreshed[2] != kl[2]  # identical until the refresh
    assert refreshed.settings["center_refresh_every"] == 2


def test_smooth_steps_filter_the_features_on_the_graph() -> None:
    from contrastkit.losses.graph import knn_graph, normalized_adjacency

    x, y = _blobs(5)
    adj = knn_graph(x, 3)
    a_hat = normalized_adjacency(adj)
    smoothed = torch.sparse.mm(a_hat, torch.sparse.mm(a_hat, x))
    # t = 2 inside equals training on Â² X by hand, same graph and seed
    inside = scgc_cluster(x, 3, labels=y, adjacency=adj, epochs=3, smooth_steps=2, **SMALL)  # type: ignore[arg-type]
    by_hand = scgc_cluster(smoothed, 3, labels=y, adjacency=adj, epochs=3, **SMALL)  # type: ignore[arg-type]
    assert [h["loss"] for h in inside.history] == [h["loss"] for h in by_hand.history]
    assert inside.settings["smooth_steps"] == 2 and by_hand.settings["smooth_steps"] == 0
    plain = scgc_cluster(x, 3, labels=y, adjacency=adj, epochs=3, **SMALL)  # type: ignore[arg-type]
    assert [h["loss"] for h in plain.history] != [h["loss"] for h in inside.history]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="smooth_steps"):
            scgc_cluster(x, 3, smooth_steps=bad)  # type: ignore[arg-type]


def test_modularity_selection_picks_the_best_scoring_epoch() -> None:
    from contrastkit.eval import modularity
    from contrastkit.losses.graph import knn_graph

    g = torch.Generator().manual_seed(1)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.eye(3, 12)[y] * 3 + torch.randn(90, 12, generator=g)  # overlapping blobs
    adj = knn_graph(x, 3)
    kwargs = {"labels": y, "adjacency": adj, "epochs": 6, "lr": 1e-2, **SMALL}
    last = scgc_cluster(x, 3, **kwargs)  # type: ignore[arg-type]
    chosen = scgc_cluster(x, 3, selection="modularity", **kwargs)  # type: ignore[arg-type]
    scores = [h["modularity"] for h in last.history]
    assert [h["modularity"] for h in chosen.history] == scores  # selection changes no training
    epoch = int(chosen.selected["epoch"])
    assert epoch < 6 and scores[-1] < max(scores)  # this case: the last epoch is not the best
    assert chosen.selected["modularity"] == max(scores) == scores[epoch - 1]
    assert chosen.selected["nmi"] == last.history[epoch - 1]["nmi"]
    assert modularity(adj, chosen.predictions) == pytest.approx(max(scores))
    assert modularity(adj, last.predictions) == pytest.approx(scores[-1])
    assert last.selected == chosen.selected and chosen.settings["selection"] == "modularity"
    with pytest.raises(ValueError, match="selection"):
        scgc_cluster(x, 3, selection="best")


def test_image_folders_and_dataset_test_splits(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image = pytest.importorskip("PIL.Image")
    from contrastkit.train import FitConfig, fit

    rng = np.random.default_rng(0)
    for c in range(3):
        for i in range(10):
            a = rng.integers(0, 40, (9, 9), dtype=np.uint8)
            a[3 * c : 3 * c + 3, :] += 200  # class c: a bright band in rows 3c .. 3c + 2
            (tmp_path / "bands" / f"c{c}").mkdir(parents=True, exist_ok=True)
            image.fromarray(a).save(tmp_path / "bands" / f"c{c}" / f"{i}.png")
    folder = str(tmp_path / "bands")
    d = load_graph_data(folder, image_size=8)
    assert d.features.shape == (30, 64) and d.image_shape == (1, 8, 8) and d.name == "bands"
    assert sorted(d.labels.tolist()) == sorted([0, 1, 2] * 10)  # type: ignore[union-attr]
    digits_test = load_graph_data("digits-test")
    assert digits_test.features.shape[1] == 64 and digits_test.image_shape == (1, 8, 8)
    assert digits_test.features.shape[0] < 1797  # the held-out part only
    with pytest.raises(ValueError, match="image_size applies to image folders only"):
        load_graph_data("digits", image_size=8)
    with pytest.raises(ValueError, match="<dataset>-test"):
        load_graph_data("nonsense-test")
    run = tmp_path / "run"
    fit(
        FitConfig(
            data=folder,
            data_image_size=8,
            epochs=1,
            batch_size=8,
            out=str(run),
            progress=False,
            threads=1,
            encoder_widths=(4,),
            encoder_strides=(2,),
            evaluate=False,
        )
    )
    capsys.readouterr()  # drop what training printed
    args = ["cluster", "--data", folder, "--image-size", "8", "--epochs", "2"]
    args += ["--pretrain-epochs", "1", "--hidden", "8", "--json", "--run-dir", str(run)]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"] == "bands" and out["settings"]["nodes"] == 30
    npz = tmp_path / "vectors.npz"
    np.savez(npz, x=np.random.default_rng(1).random((12, 5)).astype(np.float32))
    assert main(["cluster", "--data", str(npz), "--clusters", "2", "--run-dir", str(run)]) == 2
    assert "holds feature vectors" in capsys.readouterr().err


def test_cluster_presets_and_flag_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import inspect

    from contrastkit.train.strategies.graph_clustering import CLUSTER_PRESETS

    defaults = inspect.signature(scgc_cluster).parameters
    for key, value in CLUSTER_PRESETS["reference"].items():
        name = "inverse_temperature" if key == "tau" else key
        assert defaults[name].default == value, key  # "reference" is the function's defaults
    x, y = _blobs(7)
    path = tmp_path / "b.npz"
    np.savez(path, x=x.numpy(), y=y.numpy())
    base = ["cluster", "--data", str(path), "--hidden", "8", "--json"]
    assert main([*base, "--epochs", "2", "--pretrain-epochs", "1", "--preset", "tuned"]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["preset"] == "tuned"
    got = tuned["settings"]
    assert (got["k"], got["order"], got["smooth_steps"], got["selection"]) == (
        10,
        2,
        3,
        "modularity",
    )
    assert got["epochs"] == 2 and got["normalize_embeddings"] is True  # the flag wins over preset
    assert got["center_refresh_every"] == 10
    args = [*base, "--epochs", "2", "--pretrain-epochs", "1", "--preset", "tuned"]
    args += ["--no-normalize-embeddings", "--center-refresh-every", "0", "--k", "4"]
    assert main(args) == 0
    got = json.loads(capsys.readouterr().out)["settings"]
    assert got["normalize_embeddings"] is False and got["center_refresh_every"] is None
    assert got["k"] == 4
    assert main([*base, "--epochs", "1", "--pretrain-epochs", "1"]) == 0
    ref = json.loads(capsys.readouterr().out)
    assert ref["preset"] == "reference" and ref["settings"]["k"] == 3
    assert ref["settings"]["inverse_temperature"] == 0.25 and ref["settings"]["smooth_steps"] == 0
