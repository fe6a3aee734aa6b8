"""COMET app: the simulated cohort's hierarchy and the hierarchical batches."""

from __future__ import annotations

import torch

from contrastkit.apps.comet import _patient_waves, hierarchy_batches, simulate_cohort


def _cohort():  # type: ignore[no-untyped-def]
    return simulate_cohort(8, 3, 4, 200, torch.Generator().manual_seed(0))


def test_cohort_layout_and_labels() -> None:
    c = _cohort()
    assert c.x.shape == (8 * 3 * 4, 1, 200) and c.x.dtype == torch.float32
    assert bool(torch.isfinite(c.x).all())
    assert int(c.disease.view(8, -1)[:, 0].sum()) == 4  # half of the patients are diseased
    for p in range(8):  # the disease label and the trials belong to one patient
        rows = c.patient == p
        assert c.disease[rows].unique().numel() == 1
        assert c.trial[rows].unique().numel() == 3
    assert c.trial.unique().numel() == 24


def test_cohort_is_seeded() -> None:
    a, b = _cohort(), _cohort()
    assert torch.equal(a.x, b.x) and torch.equal(a.disease, b.disease)


def test_disease_deepens_q_adds_st_elevation_and_flattens_t() -> None:
    g = torch.Generator().manual_seed(1)
    sick = torch.stack([_patient_waves(True, g)[0] for _ in range(200)])
    well = torch.stack([_patient_waves(False, g)[0] for _ in range(200)])
    q, t, st = 1, 4, 5  # rows: P, Q, R, S, T, ST; column 0 is the amplitude
    assert sick[:, q, 0].mean() < 1.5 * well[:, q, 0].mean()  # deeper (more negative) Q
    assert sick[:, t, 0].mean() < 0.7 * well[:, t, 0].mean()
    assert bool((sick[:, st, 0] >= 0.1).all()) and bool((well[:, st, 0] == 0).all())


def test_hierarchy_batches_have_positives_at_every_level() -> None:
    c = _cohort()
    batches = hierarchy_batches(
        c, patients_per_batch=4, rounds=3, g=torch.Generator().manual_seed(2)
    )
    assert len(batches) == 3 * 2
    for idx in batches:
        assert idx.numel() == 4 * 4 and idx.unique().numel() == idx.numel()
        patients = c.patient[idx]
        assert patients.unique().numel() == 4
        for p in patients.unique():
            rows = idx[patients == p]
            trials = c.trial[rows]
            assert trials.unique().numel() == 2  # two trials of each patient
            assert all(int((trials == t).sum()) == 2 for t in trials.unique())  # two samples each
    # every round covers every patient once
    first_round = torch.cat(batches[:2])
    assert c.patient[first_round].unique().numel() == 8
