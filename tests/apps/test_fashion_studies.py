"""The subtle pieces of the Fashion-MNIST studies (cmim, space2, sepclr, projection_head, selfie):
SPACE-2's tree targets, SepCLR's pattern simulator, Selfie's patch grid and the A-MIM loss. No
Fashion-MNIST files needed."""

from __future__ import annotations

import math

import numpy as np
import torch

from contrastkit.apps import get_app
from contrastkit.apps._fashion import _balanced, shuffled_batches
from contrastkit.apps.cmim import SIGMA_MIN, MIMAutoencoder, mim_loss
from contrastkit.apps.selfie import MASKED, PatchEncoder, _mask, patchify
from contrastkit.apps.sepclr import PATTERNS, _pattern, draw_patterns
from contrastkit.apps.space2 import BRANCH, _errors_in_branch, soft_targets, tree_scores
from contrastkit.losses import SupCon


def test_apps_are_registered_with_honest_data_lines() -> None:
    for name in ("cmim", "space2", "sepclr", "projection_head", "selfie"):
        app = get_app(name)
        assert app.needs_fashion_mnist
        assert app.data.startswith(("real:", "simulated:"))


def test_balanced_subset_is_even_and_distinct() -> None:
    labels = torch.arange(10).repeat(50)
    idx = _balanced(labels, 95, np.random.default_rng(0))
    assert len(set(idx.tolist())) == 95
    counts = torch.bincount(labels[idx], minlength=10)
    assert int(counts.max() - counts.min()) <= 1


def test_shuffled_batches_drop_the_short_batch_and_reshuffle() -> None:
    batches = shuffled_batches(10, 4, seed=0)
    first, second = batches(0), batches(1)
    assert [len(b) for b in first] == [4, 4]
    assert not torch.equal(torch.cat(first), torch.cat(second))
    assert torch.equal(torch.cat(first), torch.cat(batches(0)))  # seeded


def test_tree_scores_follow_the_fashion_tree() -> None:
    s = tree_scores(0.5)
    assert torch.equal(s, s.T)
    assert bool((s.diagonal() == 1).all())
    tops, footwear = (0, 2, 4, 6), (5, 7, 9)
    assert float(s[0, 6]) == 0.5 and float(s[5, 9]) == 0.5  # T-shirt~shirt, sandal~boot
    assert float(s[0, 5]) == 0.0 and float(s[1, 3]) == 0.0  # T-shirt/sandal, trouser/dress
    for group in (tops, footwear):
        assert all(BRANCH[a] == BRANCH[group[0]] for a in group)
    assert torch.equal(tree_scores(0.0), torch.eye(10, dtype=torch.float64))


def test_soft_targets_unlabelled_rows_are_instance_positives_only() -> None:
    labels = torch.tensor([0, 6, 5, -1, -1])
    t = soft_targets(labels, tree_scores(0.5))
    assert torch.equal(t[3], torch.tensor([0, 0, 0, 1, 0], dtype=torch.float64))
    assert torch.equal(t[:, 4], torch.tensor([0, 0, 0, 0, 1], dtype=torch.float64))
    assert float(t[0, 1]) == 0.5 and float(t[0, 2]) == 0.0 and float(t[0, 0]) == 1.0


def test_soft_supcon_with_hard_tree_equals_label_supcon_on_labelled_batches() -> None:
    # With branch score 0 the per-instance targets are same-label indicators: SupCon's own labels.
    g = torch.Generator().manual_seed(0)
    views = torch.randn(6, 2, 8, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 0, 6, 6, 5, 1])
    loss = SupCon(temperature=0.2, base_temperature=0.2)
    via_targets = loss(views, target_matrix=soft_targets(labels, tree_scores(0.0)))
    assert torch.allclose(via_targets, loss(views, labels))
    soft = loss(views, target_matrix=soft_targets(labels, tree_scores(0.5)))
    assert not torch.allclose(soft, via_targets)


def test_errors_in_branch_counts_only_mistakes() -> None:
    true = torch.tensor([0, 0, 5, 1])
    pred = torch.tensor([0, 6, 8, 1])  # one correct, T-shirt->shirt (same branch), sandal->bag
    assert _errors_in_branch(pred, true) == 0.5
    assert _errors_in_branch(true, true) == 1.0


def test_patterns_are_distinct_and_drawn_in_contrast() -> None:
    stamps = [_pattern(k, 12, 2) for k in range(len(PATTERNS))]
    for a in range(len(stamps)):
        assert stamps[a].sum() > 0
        for b in range(a + 1, len(stamps)):
            assert not np.array_equal(stamps[a], stamps[b])
    assert np.array_equal(_pattern(0, 12, 2).T, _pattern(1, 12, 2))
    images = torch.cat([torch.zeros(1, 1, 28, 28), torch.ones(1, 1, 28, 28)])
    out = draw_patterns(images, torch.tensor([3, 3]), np.random.default_rng(0))
    assert float(out[0].max()) >= 0.8  # bright stroke on black
    assert float(out[1].min()) <= 0.2  # dark stroke on white
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    changed = (out != images).flatten(1).sum(1)
    assert bool((changed > 0).all())


def test_patchify_is_the_row_major_grid() -> None:
    x = torch.arange(28 * 28, dtype=torch.float32).reshape(1, 1, 28, 28)
    p = patchify(x)
    assert p.shape == (1, 16, 1, 7, 7)
    assert torch.equal(p[0, 1, 0], x[0, 0, 0:7, 7:14])
    assert torch.equal(p[0, 4, 0], x[0, 0, 7:14, 0:7])


def test_mask_picks_distinct_positions() -> None:
    m = _mask(32, torch.Generator().manual_seed(0))
    assert m.shape == (32, MASKED)
    assert all(len(set(row.tolist())) == MASKED for row in m)
    assert int(m.min()) >= 0 and int(m.max()) < 16


def test_patch_encoder_quadrant_features() -> None:
    model = PatchEncoder().eval()
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        codes, feats = model.codes(x), model(x)
    assert feats.shape == (3, 4 * model.dim)
    # the first quadrant is the mean of patches 0, 1, 4, 5
    assert torch.allclose(feats[:, : model.dim], codes[:, [0, 1, 4, 5]].mean(1), atol=1e-6)


def test_mim_loss_matches_the_densities() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 1, 28, 28, generator=g).round()
    logits = torch.randn(2, 1, 28, 28, generator=g, dtype=torch.float64)
    mu = torch.randn(2, 4, generator=g, dtype=torch.float64)
    sigma = torch.rand(2, 4, generator=g, dtype=torch.float64) + 0.1
    z = mu + sigma * torch.randn(2, 4, generator=g, dtype=torch.float64)
    normal = torch.distributions.Normal
    log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x.double()).flatten(1).sum(1)
    log_pz = normal(0.0, 1.0).log_prob(z).sum(1)
    log_qz = normal(mu, sigma).log_prob(z).sum(1)
    expected = (-0.5 * (log_px + log_pz + log_qz)).mean() / 784
    assert torch.allclose(mim_loss(x.double(), logits, z, mu, sigma), expected)


def test_mim_autoencoder_shapes_and_sigma_floor() -> None:
    model = MIMAutoencoder().eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        mu, sigma = model.encode(x)
        assert model.decode(mu).shape == x.shape
        assert model.embedding(x).shape == (2, mu.shape[1] + 256)
    assert bool((sigma >= SIGMA_MIN).all())
    assert math.isfinite(float(sigma.sum()))
