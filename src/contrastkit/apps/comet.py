r"""COMET: hierarchical contrast (observation, sample, trial, patient) for medical time series.

Paper: Yihe Wang, Yu Han, Haishuai Wang, Xiang Zhang, "Contrast Everything: A Hierarchical
Contrastive Framework for Medical Time-Series" (NeurIPS 2023).

What the system does: a 1-D convolutional encoder is pre-trained without labels on single-lead
ECG-like recordings organised as patients -> trials (recording sessions) -> samples (2-second
segments) -> observations (short random crops of a sample, each seen in two augmented views). COMET's
loss contrasts at all four levels: two rows are positives at a level when they share that level's
group id,

.. math::
    L = \sum_{l \in \{obs, sample, trial, patient\}} \lambda_l\, L_{SupCon}(g_l),
    \qquad \ell_i^{(l)} = -\frac{1}{|P_l(i)|} \sum_{p \in P_l(i)}
        \log \frac{e^{s_{ip}/\tau}}{\sum_{k \ne i} e^{s_{ik}/\tau}}

with ``P_l(i)`` the other rows of the batch in anchor ``i``'s level-``l`` group (cosine similarities
``s``), i.e. :class:`contrastkit.losses.MultiLevelSupCon` with equal level weights 1/4 (the paper's
weights are not verified). At the observation level the only positive is the other augmented view of
the same crop, so that level is NT-Xent. Batches are drawn along the hierarchy (patients, two trials
each, two samples per trial, two crops per sample) so every level has positives in every batch.

The baseline is observation-level contrast only: plain NT-Xent (:class:`contrastkit.losses.NTXent`)
on the same batches, encoder, augmentations, temperature, epochs and learning rate. A randomly
initialised encoder is a second reference. Evaluation is patient-independent, as in the paper:
patients are split into pre-training/probe patients and unseen test patients; a logistic-regression
probe (:func:`contrastkit.eval.linear_probe`) is fitted on the frozen features of 10 % of the
training samples (the paper's 10 % label fraction) and scored on every sample of the test patients
(the primary metric, sample-level disease accuracy); the same probe with 100 % of the labels is
reported too.

Data (simulated, honestly): no medical recordings ship offline, so a seeded simulator stands in for
an ECG myocardial-infarction cohort. Each patient has a beat morphology — the P, Q, R, S, T Gaussian
waves of :func:`contrastkit.data.biosignals.gaussian_beats` with patient-specific amplitudes, phase
positions, widths and resting heart rate; half of the patients are "diseased", which deepens the Q
wave, adds an ST-segment elevation and flattens the T wave (an infarction-like pattern, smaller than
the spread between patients). Each trial (recording) has its own gain, heart-rate offset, noise level
and baseline wander; its samples are consecutive 2-second windows at 100 Hz. The disease label is a
patient-level label, which is what the patient-level contrast is meant to help with.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.data.biosignals import ECG_WAVES, baseline_wander, gaussian_beats
from contrastkit.eval import extract_features, linear_probe
from contrastkit.losses import MultiLevelSupCon, NTXent
from contrastkit.models import ContrastiveModel, Conv1dEncoder, MLPHead
from contrastkit.train.core import StepOutput
from contrastkit.train.custom import train_custom
from contrastkit.views import SeriesAugment

__all__ = ["APP", "Cohort", "hierarchy_batches", "simulate_cohort"]

FS = 100.0
LEVEL_WEIGHTS = (0.25, 0.25, 0.25, 0.25)  # observation, sample, trial, patient
TEMPERATURE = 0.1


@dataclass(frozen=True)
class _Config:
    train_patients: int
    test_patients: int
    trials: int
    samples_per_trial: int
    sample_len: int
    crop_len: int
    patients_per_batch: int
    rounds: int  # hierarchical passes over the patients per epoch
    epochs: int
    lr: float
    widths: tuple[int, ...]


_FULL = _Config(
    train_patients=40,
    test_patients=40,
    trials=3,
    samples_per_trial=6,
    sample_len=200,
    crop_len=160,
    patients_per_batch=8,
    rounds=4,
    epochs=8,
    lr=2e-3,
    widths=(32, 64, 64),
)
_QUICK = _Config(
    train_patients=32,
    test_patients=16,
    trials=2,
    samples_per_trial=4,
    sample_len=200,
    crop_len=160,
    patients_per_batch=8,
    rounds=2,
    epochs=3,
    lr=3e-3,
    widths=(16, 32, 32),
)


@dataclass(frozen=True)
class Cohort:
    """Simulated recordings, one row per 2-second sample.

    Attributes:
        x: float32 ``(N, 1, T)`` samples.
        patient: ``(N,)`` patient ids.
        trial: ``(N,)`` trial ids (unique across patients).
        disease: ``(N,)`` the patient's 0/1 disease label.
    """

    x: Tensor
    patient: Tensor
    trial: Tensor
    disease: Tensor


def _patient_waves(disease: bool, g: torch.Generator) -> tuple[Tensor, float]:
    """One patient's ``(6, 3)`` waves (P, Q, R, S, T, ST) and resting heart rate."""
    base = torch.cat([ECG_WAVES, torch.tensor([[0.0, 0.43, 0.05]])])
    amp = base[:, 0] * torch.exp(0.2 * torch.randn(6, generator=g))
    centre = base[:, 1] + 0.015 * torch.randn(6, generator=g)
    width = base[:, 2] * torch.exp(0.15 * torch.randn(6, generator=g))
    if disease:
        amp[1] = amp[1] * 1.8  # deeper Q wave
        amp[5] = 0.10 + 0.03 * float(torch.rand((), generator=g))  # ST elevation
        amp[4] = amp[4] * 0.55  # flattened T wave
    heart_rate = 55.0 + 40.0 * float(torch.rand((), generator=g))
    return torch.stack([amp, centre, width], dim=1), heart_rate


def simulate_cohort(
    n_patients: int, trials: int, samples_per_trial: int, sample_len: int, g: torch.Generator
) -> Cohort:
    """Simulate ``n_patients`` patients (half of them diseased, in random order).

    Each trial is one continuous recording of ``samples_per_trial * sample_len`` steps at 100 Hz
    (its own gain, heart-rate offset, noise level and baseline wander), cut into samples.
    """
    disease = torch.randperm(n_patients, generator=g) < n_patients // 2
    xs, pats, trs, dis = [], [], [], []
    length = samples_per_trial * sample_len
    for p in range(n_patients):
        waves, hr = _patient_waves(bool(disease[p]), g)
        for t in range(trials):
            gain = float(torch.exp(0.15 * torch.randn((), generator=g)))
            rate = torch.tensor([hr + 4.0 * float(torch.randn((), generator=g))])
            w = waves.clone()
            w[:, 0] = w[:, 0] * gain
            sig = gaussian_beats(w, rate, length=length, fs=FS, variability=0.05, generator=g)
            sig = sig + baseline_wander(1, length=length, fs=FS, amplitude=0.15, generator=g)
            noise = 0.02 + 0.05 * float(torch.rand((), generator=g))
            sig = sig + noise * torch.randn(sig.shape, generator=g)
            xs.append(sig.view(samples_per_trial, 1, sample_len))
            pats.append(torch.full((samples_per_trial,), p))
            trs.append(torch.full((samples_per_trial,), p * trials + t))
            dis.append(torch.full((samples_per_trial,), int(disease[p])))
    return Cohort(torch.cat(xs), torch.cat(pats), torch.cat(trs), torch.cat(dis))


def hierarchy_batches(
    cohort: Cohort, patients_per_batch: int, rounds: int, g: torch.Generator
) -> list[Tensor]:
    """Batches of sample indices drawn along the hierarchy.

    Each round shuffles the patients into groups of ``patients_per_batch``; for each patient of a
    group, two of its trials (at random) and two samples of each are drawn, so a batch holds
    ``4 * patients_per_batch`` samples with positives at the sample (crops), trial and patient
    levels. Returns ``rounds * (n_patients // patients_per_batch)`` index tensors.
    """
    patients = torch.unique(cohort.patient)
    batches: list[Tensor] = []
    for _ in range(rounds):
        order = patients[torch.randperm(len(patients), generator=g)]
        for s in range(0, len(order) - patients_per_batch + 1, patients_per_batch):
            idx: list[Tensor] = []
            for p in order[s : s + patients_per_batch]:
                trials = torch.unique(cohort.trial[cohort.patient == p])
                for t in trials[torch.randperm(len(trials), generator=g)[:2]]:
                    members = torch.nonzero(cohort.trial == t).flatten()
                    idx.append(members[torch.randperm(len(members), generator=g)[:2]])
            batches.append(torch.cat(idx))
    return batches


def _crops(x: Tensor, crop_len: int, g: torch.Generator) -> Tensor:
    """Two random crops (observations) of every sample: ``(2B, 1, crop_len)``, sample-major."""
    b, _, t = x.shape
    start = torch.randint(0, t - crop_len + 1, (2 * b,), generator=g)
    pos = start[:, None] + torch.arange(crop_len)[None]
    return x.repeat_interleave(2, dim=0).gather(2, pos[:, None, :])


def _train(variant: str, cohort: Cohort, cfg: _Config, seed: int) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(seed)
    encoder = Conv1dEncoder(1, widths=cfg.widths, kernel_sizes=(7, 5, 3), strides=(2, 2, 1))
    model = ContrastiveModel(encoder, MLPHead(encoder.out_dim, hidden_dim=64, out_dim=32))
    augment = SeriesAugment(permute_p=0.0, scaling_sigma=0.2, jitter_sigma=0.05)
    g = torch.Generator().manual_seed(seed + 1)
    multi = MultiLevelSupCon(
        level_weights=LEVEL_WEIGHTS, temperature=TEMPERATURE, base_temperature=TEMPERATURE
    )
    ntxent = NTXent(temperature=TEMPERATURE)

    def step(idx: Tensor) -> StepOutput:
        obs = _crops(cohort.x[idx], cfg.crop_len, g)  # (2B, 1, L): 2 crops per sample
        views = augment.views(obs, 2, generator=g)  # (2B, 2, 1, L)
        n = views.shape[0]
        z = model(views.flatten(0, 1))[1].view(n, 2, -1)
        if variant == "comet":
            sample_idx = idx.repeat_interleave(2)
            levels = torch.stack(
                [
                    torch.arange(n),
                    sample_idx,
                    cohort.trial[sample_idx],
                    cohort.patient[sample_idx],
                ],
                dim=1,
            )
            loss = multi(F.normalize(z, dim=-1), levels)
        else:
            loss = ntxent(F.normalize(z, dim=-1))
        return StepOutput(loss=loss, samples=n)

    def batches(epoch: int) -> list[Tensor]:
        gb = torch.Generator().manual_seed(seed * 1000 + epoch)
        return hierarchy_batches(cohort, cfg.patients_per_batch, cfg.rounds, gb)

    history = train_custom(
        [model], step, batches, epochs=cfg.epochs, lr=cfg.lr, weight_decay=1e-4, name=variant
    )
    return encoder, [h.loss for h in history]


def _label_subset(labels: Tensor, fraction: float, g: torch.Generator) -> Tensor:
    """A stratified random ``fraction`` of the indices (at least two per class)."""
    keep: list[Tensor] = []
    for c in torch.unique(labels):
        members = torch.nonzero(labels == c).flatten()
        k = max(2, round(fraction * len(members)))
        keep.append(members[torch.randperm(len(members), generator=g)[:k]])
    return torch.cat(keep)


def _evaluate(encoder: nn.Module, train: Cohort, test: Cohort, seed: int) -> dict[str, float]:
    f_train = extract_features(encoder, train.x)
    f_test = extract_features(encoder, test.x)
    few = _label_subset(train.disease, 0.1, torch.Generator().manual_seed(seed + 7))
    acc10 = linear_probe(
        f_train[few],
        train.disease[few],
        f_test,
        test.disease,
        seed=seed,
        fallback_weight_decay=1e-3,
    ).accuracy
    acc100 = linear_probe(f_train, train.disease, f_test, test.disease, seed=seed).accuracy
    return {"accuracy": acc10, "accuracy_full_labels": acc100}


def run(settings: AppSettings) -> dict[str, Measured]:
    """Simulate a cohort, pre-train COMET and the NT-Xent baseline, probe both (and a random
    encoder) on unseen patients."""
    cfg = _QUICK if settings.quick else _FULL
    g = torch.Generator().manual_seed(settings.seed)
    per = (cfg.trials, cfg.samples_per_trial, cfg.sample_len)
    train = simulate_cohort(cfg.train_patients, *per, g)
    test = simulate_cohort(cfg.test_patients, *per, g)
    out: dict[str, Measured] = {}
    for variant in ("comet", "ntxent"):
        encoder, losses = _train(variant, train, cfg, settings.seed)
        out[variant] = Measured(_evaluate(encoder, train, test, settings.seed), losses)
    torch.manual_seed(settings.seed)
    random = Conv1dEncoder(1, widths=cfg.widths, kernel_sizes=(7, 5, 3), strides=(2, 2, 1))
    out["random_encoder"] = Measured(_evaluate(random, train, test, settings.seed))
    return out


APP = App(
    name="comet",
    title="COMET: observation/sample/trial/patient contrast for ECG-like series, 10 % labels",
    paper=(
        "Wang, Han, Wang & Zhang, Contrast Everything: A Hierarchical Contrastive Framework for "
        "Medical Time-Series, NeurIPS 2023"
    ),
    data=(
        "simulated: seeded ECG-like cohort (patients with their own P/QRS/T morphology and heart "
        "rate, half with an infarction-like Q/ST/T change; trials with their own gain, rate, noise "
        "and baseline wander; 2-s samples at 100 Hz); patient-independent split"
    ),
    claim=(
        "Contrasting at the observation, sample, trial and patient levels gives better "
        "patient-independent disease classification with 10 % labels than observation-level "
        "contrast alone."
    ),
    method="comet",
    baselines=("ntxent", "random_encoder"),
    metric="accuracy",
    chance=0.5,
    run=run,
)
