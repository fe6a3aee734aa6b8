"""SCGC / SCGC* graph clustering and the ``contrastkit cluster`` command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from contrastkit.cli import main
from contrastkit.train.core import NonFiniteLossError
from contrastkit.train.strategies.graph_clustering import (
    CLUSTER_PRESETS,
    ScgcConfig,
    clustering_scores,
    format_scores,
    load_graph_data,
    scgc_cluster,
)


def _blobs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(30)
    centres = torch.eye(3, 12) * 8
    return centres[y] + 0.5 * torch.randn(90, 12, generator=g), y


SMALL: dict[str, Any] = {
    "hidden_dims": (16,),
    "embed_dim": 4,
    "pretrain_epochs": 3,
    "kmeans_n_init": 3,
}


def small(**settings: Any) -> ScgcConfig:
    """A tiny, fast configuration (16 hidden units, 4-d embeddings, 3 pretraining epochs)."""
    return ScgcConfig(**{**SMALL, **settings})


def test_scgc_star_reports_last_and_best_separately() -> None:
    x, y = _blobs()
    run = scgc_cluster(x, 3, small(epochs=6), labels=y)
    assert len(run.history) == 6 and run.predictions.shape == (90,)
    assert run.embeddings.shape == (90, 4)
    assert run.last == {k: run.history[-1][k] for k in ("acc", "nmi", "ari")}
    for key in ("acc", "nmi", "ari"):
        per_epoch = [h[key] for h in run.history]
        assert run.best[key] == max(per_epoch) >= run.last[key]
        assert per_epoch[int(run.best[f"{key}_epoch"]) - 1] == run.best[key]
    assert set(run.final_kmeans) == {"acc", "nmi", "ari"} and run.pretrain
    assert run.final_kmeans["nmi"] > 0.8  # well-separated blobs
    assert run.settings["variant"] == "scgc*" and run.settings["k"] == 3
    again = scgc_cluster(x, 3, small(epochs=6), labels=y)
    assert [h["loss"] for h in again.history] == [h["loss"] for h in run.history]


def test_scgc_variant_trains_the_decoder_and_uses_powers() -> None:
    x, y = _blobs(1)
    star = scgc_cluster(x, 3, small(epochs=2, order=2), labels=y)
    plain = scgc_cluster(x, 3, small(epochs=2, order=2, variant="scgc"), labels=y)
    assert "reconstruction" in plain.history[0] and "reconstruction" not in star.history[0]
    # cumulative targets (A + A^2) have at least the non-zeros of A^2
    assert star.settings["target_nonzeros"] >= plain.settings["target_nonzeros"]


def test_given_adjacency_and_unlabelled_data() -> None:
    x, _ = _blobs(2)
    edges = torch.tensor([[i, i + 1] for i in range(89) if (i + 1) % 30]).T
    adj = torch.sparse_coo_tensor(
        edges, torch.ones(edges.shape[1]), (90, 90), check_invariants=True
    )
    run = scgc_cluster(x, 3, small(epochs=2), adjacency=adj)
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
        ScgcConfig(variant="sdcn")
    with pytest.raises(ValueError, match=r"n_clusters must be an int in \[2, 90\], got 91"):
        scgc_cluster(x, 91)
    with pytest.raises(TypeError, match="config must be a ScgcConfig"):
        scgc_cluster(x, 3, {"epochs": 2})  # type: ignore[arg-type]
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
    base = scgc_cluster(x, 3, small(epochs=4), labels=y)
    normed = scgc_cluster(x, 3, small(epochs=4, normalize_embeddings=True), labels=y)
    assert torch.allclose(normed.embeddings.norm(dim=1), torch.ones(90), atol=1e-5)
    assert not torch.allclose(base.embeddings.norm(dim=1), torch.ones(90), atol=1e-3)
    fast = scgc_cluster(x, 3, small(epochs=4, center_lr=0.1), labels=y)
    refreshed = scgc_cluster(x, 3, small(epochs=4, center_refresh_every=2), labels=y)
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
    inside = scgc_cluster(x, 3, small(epochs=3, smooth_steps=2), labels=y, adjacency=adj)
    by_hand = scgc_cluster(smoothed, 3, small(epochs=3), labels=y, adjacency=adj)
    assert [h["loss"] for h in inside.history] == [h["loss"] for h in by_hand.history]
    assert inside.settings["smooth_steps"] == 2 and by_hand.settings["smooth_steps"] == 0
    plain = scgc_cluster(x, 3, small(epochs=3), labels=y, adjacency=adj)
    assert [h["loss"] for h in plain.history] != [h["loss"] for h in inside.history]
    for bad in (-1, 1.5, True):
        with pytest.raises((TypeError, ValueError), match="smooth_steps"):
            ScgcConfig(smooth_steps=bad)  # type: ignore[arg-type]


def test_modularity_selection_picks_the_best_scoring_epoch() -> None:
    from contrastkit.eval import modularity
    from contrastkit.losses.graph import knn_graph

    g = torch.Generator().manual_seed(1)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.eye(3, 12)[y] * 3 + torch.randn(90, 12, generator=g)  # overlapping blobs
    adj = knn_graph(x, 3)
    last = scgc_cluster(x, 3, small(epochs=6, lr=1e-2), labels=y, adjacency=adj)
    chosen_config = small(epochs=6, lr=1e-2, selection="modularity")
    chosen = scgc_cluster(x, 3, chosen_config, labels=y, adjacency=adj)
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
        ScgcConfig(selection="best")


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
    assert CLUSTER_PRESETS["reference"] == ScgcConfig()  # "reference" is the defaults
    tuned = CLUSTER_PRESETS["tuned"]
    assert (tuned.k, tuned.order, tuned.inverse_temperature, tuned.epochs) == (10, 2, 2.25, 120)
    assert (tuned.pretrain_epochs, tuned.lr, tuned.center_refresh_every) == (50, 2e-3, 10)
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


# -- the port onto the training core keeps the numbers of the hand-written loops ---------------

#: Recorded from the hand-written loops (before the training core), ``_blobs(0)``, ``small``:
#: per epoch ``(loss, kl, contrast)``; the losses carry the pretrained weights, so both loops
#: (autoencoder pretraining and the clustering epochs) are covered.
SCGC_STAR_6_EPOCHS = [
    (12.063507080078125, 0.044538162648677826, 3.014763355255127),
    (12.042418479919434, 0.0450337715446949, 3.009478807449341),
    (12.021354675292969, 0.04550378769636154, 3.0042011737823486),
    (12.000401496887207, 0.04591178894042969, 2.998952627182007),
    (11.979696273803711, 0.04625295475125313, 2.993767738342285),
    (11.959346771240234, 0.04652310907840729, 2.988673686981201),
]
#: ``variant="scgc", order=2``, 3 epochs: ``(loss, reconstruction)``.
SCGC_PLAIN_3_EPOCHS = [
    (23.361164093017578, 5.721938133239746),
    (23.331750869750977, 5.713237285614014),
    (23.302474975585938, 5.704511642456055),
]
#: A tuned-like run (smoothing, normalised embeddings, centre lr and refreshes): the losses.
SCGC_TUNED_LIKE_LOSSES = [
    13.120401382446289,
    12.97800350189209,
    12.812376976013184,
    12.6270112991333,
    12.431340217590332,
]


def test_scgc_star_numbers_match_the_hand_written_loops() -> None:
    x, y = _blobs(0)
    run = scgc_cluster(x, 3, small(epochs=6), labels=y)
    got = [(h["loss"], h["kl"], h["contrast"]) for h in run.history]
    assert np.allclose(got, SCGC_STAR_6_EPOCHS, rtol=0, atol=1e-6)
    assert run.selected["epoch"] == 6
    assert run.selected["modularity"] == pytest.approx(0.6367512988922654, abs=1e-6)
    assert float(run.embeddings.double().sum()) == pytest.approx(-63.59317784383893, abs=1e-3)


def test_scgc_numbers_match_the_hand_written_loops() -> None:
    x, y = _blobs(0)
    run = scgc_cluster(x, 3, small(epochs=3, order=2, variant="scgc"), labels=y)
    got = [(h["loss"], h["reconstruction"]) for h in run.history]
    assert np.allclose(got, SCGC_PLAIN_3_EPOCHS, rtol=0, atol=1e-6)
    tuned_like = small(
        epochs=5,
        k=5,
        order=2,
        inverse_temperature=2.25,
        lr=2e-3,
        normalize_embeddings=True,
        center_lr=0.05,
        center_refresh_every=2,
        smooth_steps=2,
        selection="modularity",
    )
    run = scgc_cluster(x, 3, tuned_like, labels=y)
    losses = [h["loss"] for h in run.history]
    assert np.allclose(losses, SCGC_TUNED_LIKE_LOSSES, rtol=0, atol=1e-6)


def test_progress_goes_to_log_and_nothing_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs(0)
    lines: list[str] = []
    config = small(epochs=10, pretrain_epochs=10, pretrain_batch_size=7, seed=3)
    scgc_cluster(x, 3, config, labels=y, log=lines.append)
    assert lines[0] == "pretrain epoch 10/10: mse 4.02486"  # recorded before the core
    assert lines[1] == "k-means on pretrained embeddings: ACC 1.0000, NMI 1.0000, ARI 1.0000"
    assert lines[2].startswith("epoch 10/10: loss 12.3360; ACC 1.0000")
    scgc_cluster(x, 3, small(epochs=2), labels=y)
    assert capsys.readouterr() == ("", "")


def test_diverging_pretraining_is_a_training_failure() -> None:
    x, _ = _blobs(0)
    with pytest.raises(NonFiniteLossError, match="SCGC autoencoder pretraining stopped") as info:
        scgc_cluster(x * 1e20, 3, small(epochs=2))  # finite input, squared error overflows
    assert "epoch 1, step 1" in str(info.value) and "learning rate" in str(info.value)


def test_diverging_clustering_is_a_training_failure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, y = _blobs(0)
    config = small(epochs=3, pretrain_epochs=0, lr=1e30, inverse_temperature=100.0)
    with pytest.raises(NonFiniteLossError, match="SCGC clustering stopped") as info:
        scgc_cluster(x, 3, config, labels=y)
    assert "epoch 2, step 1 (optimizer step 2)" in str(info.value)
    path = tmp_path / "g.npz"
    np.savez(path, x=x.numpy(), y=y.numpy())
    args = ["cluster", "--data", str(path), "--epochs", "2", "--pretrain-epochs", "0"]
    assert main([*args, "--hidden", "8", "--lr", "1e30", "--tau", "100", "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("contrastkit cluster: training failed: SCGC clustering stopped")


@pytest.mark.parametrize(
    ("settings", "error", "message"),
    [
        ({"variant": "sdcn"}, ValueError, "variant must be one of 'scgc\\*', 'scgc'"),
        ({"selection": "best"}, ValueError, "selection must be one of"),
        ({"k": 0}, ValueError, "k must be an int >= 1, got 0"),
        ({"order": 2.0}, TypeError, "order must be an int, got float"),
        ({"epochs": -1}, ValueError, "epochs must be an int >= 0, got -1"),
        ({"pretrain_epochs": True}, TypeError, "pretrain_epochs must be an int, got bool"),
        ({"embed_dim": 0}, ValueError, "embed_dim must be an int >= 1"),
        ({"pretrain_batch_size": 0}, ValueError, "pretrain_batch_size must be an int >= 1"),
        ({"kmeans_n_init": 0}, ValueError, "kmeans_n_init must be an int >= 1"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
        ({"center_refresh_every": 0}, ValueError, "center_refresh_every must be an int >= 1"),
        ({"alpha": -1.0}, ValueError, "alpha must be a finite number >= 0"),
        ({"beta": float("nan")}, ValueError, "beta must be a finite number >= 0"),
        ({"inverse_temperature": 0.0}, ValueError, "inverse_temperature must be a finite"),
        ({"lr": 0.0}, ValueError, "lr must be a finite number > 0, got 0.0"),
        ({"lr": "1e-3"}, TypeError, "lr must be a number, got str"),
        ({"center_lr": -0.1}, ValueError, "center_lr must be a finite number > 0"),
        ({"normalize_embeddings": 1}, TypeError, "normalize_embeddings must be a bool"),
        ({"hidden_dims": (16, 0)}, ValueError, r"hidden_dims\[1\] must be an int >= 1"),
        ({"hidden_dims": "16"}, TypeError, "hidden_dims must be a sequence of ints"),
        ({"device": "gpu0"}, ValueError, "device must name a torch device"),
    ],
)
def test_config_refuses_bad_settings(
    settings: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        ScgcConfig(**settings)


def test_config_is_frozen_and_normalises_widths() -> None:
    config = ScgcConfig(hidden_dims=[8, np.int64(4)])  # type: ignore[arg-type]
    assert config.hidden_dims == (8, 4) and all(type(w) is int for w in config.hidden_dims)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3  # type: ignore[misc]
    assert dataclasses.replace(config, epochs=3).epochs == 3
    assert config.torch_device == torch.device("cpu")
    assert config.settings(nodes=5, graph_given=True)["k"] is None


def test_cli_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    x, y = _blobs(3)
    path = tmp_path / "g.npz"
    np.savez(path, x=x.numpy(), y=y.numpy())
    base = ["cluster", "--data", str(path), "--pretrain-epochs", "1", "--hidden", "8"]
    assert main([*base, "--epochs", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "k-means on pretrained embeddings: " + format_scores(
        {"acc": 1.0, "nmi": 1.0, "ari": 1.0}
    )
    assert out[1].startswith("epoch 2/2: loss ")
    assert out[2] == "data g: 90 nodes, 3 clusters, scgc*, preset reference"
    heads = ["k-means, pretrained AE:  ", "last epoch (argmax q):   ", "best over epochs (max):  "]
    heads += ["max-modularity epoch ", "k-means, final embedding: ", "time "]
    assert [line[: len(h)] for line, h in zip(out[3:], heads, strict=True)] == heads
    np.savez(path, x=x.numpy())
    assert main([*base, "--epochs", "0", "--clusters", "3", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[1].startswith("cluster sizes: [") and out[2].startswith("modularity on the graph: ")
    assert main([*base, "--epochs", "1"]) == 2
    assert "--clusters is required" in capsys.readouterr().err
    assert main([*base, "--clusters", "3", "--hidden", "8,x"]) == 2
    assert "--hidden must be comma-separated integers" in capsys.readouterr().err
