r"""ColloSSL: collaborative self-supervised learning across the devices of one recording.

Paper: Yash Jain, Chi Ian Tang, Chulhong Min, Fahim Kawsar, Akhil Mathur, "ColloSSL: Collaborative
Self-Supervised Learning for Human Activity Recognition" (Proc. ACM IMWUT 6(1), 2022).

What the system does: several sensors record the same activity at the same time, so their
time-synchronised windows are natural "views" of each other; no augmentation is needed. One encoder,
shared by every device, is pre-trained without labels:

1. *Device selection*: for each anchor device, the maximum mean discrepancy (MMD, Gaussian kernel,
   median bandwidth) between its training windows and every other device's is computed once; the
   ``k`` closest devices are its positive devices, the others its negative devices.
2. *Contrastive sampling*: a batch holds one random window of every training recording; positives of
   anchor window ``i`` are the same time window on the positive devices; negatives are windows of the
   negative devices taken at *other* times (a second random crop of each recording), plus every other
   recording's windows on the anchor and positive devices.
3. *Multi-view contrastive loss* (a multi-positive InfoNCE), for anchor row ``i`` with positives
   ``P(i)`` and all other batch rows ``A(i)``:

   .. math::
       \ell_i = -\frac{1}{|P(i)|}\sum_{p \in P(i)}
           \log \frac{e^{s_{ip}/\tau}}{\sum_{k \in A(i)} e^{s_{ik}/\tau}}

   i.e. :class:`contrastkit.losses.SupCon` with the window id as the label, the anchor device's rows
   as the only anchors (``anchor_mask``), averaged over every device taken as the anchor in turn.
   ColloSSL also weights the negative devices by their MMD; those weights are not verified and are
   left out here (every negative counts once).

The baseline is single-device SimCLR: the same shared encoder trained with NT-Xent
(:class:`contrastkit.losses.NTXent`) on two augmented views (:class:`contrastkit.views.SeriesAugment`:
segment permutation, scaling, jitter) of each device's own windows, one loss per device, with the
same windows, steps, encoder and learning rate. An ablation without device selection (every other
device a positive) and a randomly initialised encoder are further references. Evaluation follows
ColloSSL's per-device protocol (a classifier on one device's data): each test recording is cut into
three non-overlapping 32-step windows, a logistic-regression probe
(:func:`contrastkit.eval.linear_probe`) on one device's frozen features predicts each window's
activity, and the accuracy is averaged over the six devices. The primary metric uses one labelled
training recording per class (its three windows), averaged over 10 random draws of those recordings:
the low-label regime where ColloSSL reports its gains, and where this small, easy set is not at its
ceiling. The probe with all 40 labelled training recordings is reported too.

Data (real): the UEA BasicMotions set that ships inside the sktime 1.2 wheel (read offline by
:func:`contrastkit.data.series.load_ucr`): 40 + 40 recordings of 100 steps from a smartwatch's
3-axis accelerometer and 3-axis gyroscope, four activities (standing, walking, running, badminton).
There is one watch, not several body-worn devices, so each of the six axes stands in for a device
(a 1-channel stream); windows of 32 steps are cropped at random from each recording to make many
training samples from 40 recordings. Channels are standardised with the training statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.data.series import load_ucr
from contrastkit.eval import extract_features, linear_probe
from contrastkit.losses import NTXent, SupCon
from contrastkit.models import ContrastiveModel, Conv1dEncoder, MLPHead
from contrastkit.train.core import StepOutput
from contrastkit.train.custom import train_custom
from contrastkit.views import SeriesAugment

__all__ = ["APP", "device_mmd", "select_devices"]

TEMPERATURE = 0.1
POSITIVE_DEVICES = 2
LABELS_PER_CLASS = 1
DECAYS = (1e-4, 1e-3, 1e-2)  # the all-labels probe's candidate L2 strengths


@dataclass(frozen=True)
class _Config:
    window: int
    steps_per_epoch: int
    epochs: int
    lr: float
    widths: tuple[int, ...]
    label_draws: int


_FULL = _Config(
    window=32, steps_per_epoch=10, epochs=10, lr=2e-3, widths=(32, 64, 64), label_draws=10
)
_QUICK = _Config(
    window=32, steps_per_epoch=4, epochs=3, lr=3e-3, widths=(16, 32, 32), label_draws=2
)


def device_mmd(windows: Tensor) -> Tensor:
    """Pairwise squared MMD between the devices' window distributions.

    Args:
        windows: ``(N, D, T)``: N windows of D single-channel devices.

    Returns:
        ``(D, D)`` symmetric biased MMD² estimates with a Gaussian kernel whose bandwidth is the
        median pairwise distance over all windows of all devices (0 on the diagonal).
    """
    n, d, _ = windows.shape
    flat = windows.permute(1, 0, 2).reshape(d * n, -1)
    dist2 = torch.cdist(flat, flat).pow(2)
    bandwidth = dist2[dist2 > 0].median()
    k = torch.exp(-dist2 / bandwidth).view(d, n, d, n)
    means = k.mean(dim=(1, 3))  # (D, D): mean kernel between device a and device b
    diag = torch.diagonal(means)
    mmd = diag[:, None] + diag[None, :] - (means + means.T)
    return mmd.clamp(min=0).fill_diagonal_(0.0)


def select_devices(mmd: Tensor, k: int) -> list[tuple[list[int], list[int]]]:
    """ColloSSL's device selection: for each anchor, the ``k`` devices of lowest MMD are positives,
    the remaining others negatives. Returns ``[(positives, negatives)]`` per anchor device."""
    d = mmd.shape[0]
    if not 1 <= k < d:
        raise ValueError(f"k must be in 1..{d - 1}; got {k}")
    out = []
    for a in range(d):
        others = [j for j in torch.argsort(mmd[a]).tolist() if j != a]
        out.append((sorted(others[:k]), sorted(others[k:])))
    return out


def _crop(x: Tensor, window: int, g: torch.Generator) -> Tensor:
    """One random window of every recording: ``(N, C, window)``."""
    n, c, t = x.shape
    start = torch.randint(0, t - window + 1, (n,), generator=g)
    pos = (start[:, None] + torch.arange(window)[None]).unsqueeze(1).expand(n, c, window)
    return x.gather(2, pos)


def _collossl_loss(
    z: Tensor, z_other: Tensor, selection: list[tuple[list[int], list[int]]], loss: SupCon
) -> Tensor:
    """Mean over anchor devices of the multi-positive InfoNCE; ``z``/``z_other`` are ``(N, D, E)``
    embeddings of the synchronised windows and of windows at other times."""
    n = z.shape[0]
    ids = torch.arange(n)
    total = z.new_zeros(())
    for a, (pos, neg) in enumerate(selection):
        rows = [z[:, a]] + [z[:, p] for p in pos] + [z_other[:, j] for j in neg]
        labels = [ids] * (1 + len(pos)) + [n + ids + j * n for j in range(len(neg))]
        mask = torch.zeros(n * len(rows), dtype=torch.bool)
        mask[:n] = True
        total = total + loss(torch.cat(rows)[:, None], torch.cat(labels), anchor_mask=mask)
    return total / len(selection)


def _train(variant: str, x: Tensor, cfg: _Config, seed: int) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(seed)
    encoder = Conv1dEncoder(1, widths=cfg.widths, kernel_sizes=(7, 5, 3))
    model = ContrastiveModel(encoder, MLPHead(encoder.out_dim, hidden_dim=64, out_dim=32))
    n, d, _ = x.shape
    g = torch.Generator().manual_seed(seed + 1)
    supcon = SupCon(temperature=TEMPERATURE, base_temperature=TEMPERATURE)
    ntxent = NTXent(temperature=TEMPERATURE)
    augment = SeriesAugment(permute_p=0.5, scaling_sigma=0.2, jitter_sigma=0.1)
    k = POSITIVE_DEVICES if variant == "collossl" else d - 1
    selection = select_devices(device_mmd(_crop(x, cfg.window, g)), k)

    def embed(w: Tensor) -> Tensor:
        """``(N, D, T)`` single-device windows -> normalised ``(N, D, E)``."""
        z = model(w.reshape(-1, 1, w.shape[-1]))[1]
        return F.normalize(z, dim=-1).view(w.shape[0], w.shape[1], -1)

    def step(_: int) -> StepOutput:
        w = _crop(x, cfg.window, g)
        if variant == "simclr":
            views = augment.views(w.reshape(n * d, 1, -1), 2, generator=g)  # (N D, 2, 1, T)
            z = embed(views.reshape(n * d, 2, -1)).view(n, d, 2, -1)
            loss = torch.stack([ntxent(z[:, j]) for j in range(d)]).mean()
        else:
            z, z_other = embed(w), embed(_crop(x, cfg.window, g))
            loss = _collossl_loss(z, z_other, selection, supcon)
        return StepOutput(loss=loss, samples=n)

    history = train_custom(
        [model],
        step,
        lambda epoch: range(cfg.steps_per_epoch),
        epochs=cfg.epochs,
        lr=cfg.lr,
        weight_decay=1e-4,
        name=variant,
    )
    return encoder, [h.loss for h in history]


def _windows(x: Tensor, window: int) -> Tensor:
    """Non-overlapping windows, evenly spread over each recording: ``(N, W, D, window)``."""
    t = x.shape[-1]
    count = t // window
    starts = torch.linspace(0, t - window, count).round().long().tolist()
    return torch.stack([x[:, :, s : s + window] for s in starts], dim=1)


def _device_features(encoder: nn.Module, x: Tensor, window: int) -> Tensor:
    """Per-device features of every window of every recording: ``(N, W, D, F)``."""
    w = _windows(x, window)
    n, k, d, t = w.shape
    return extract_features(encoder, w.reshape(n * k * d, 1, t)).view(n, k, d, -1)


def _evaluate(
    encoder: nn.Module,
    x_tr: Tensor,
    y_tr: Tensor,
    x_te: Tensor,
    y_te: Tensor,
    cfg: _Config,
    seed: int,
) -> dict[str, float]:
    """Per-device probes (ColloSSL's protocol: a classifier on one device's data), averaged over
    the devices: with ``LABELS_PER_CLASS`` labelled training recordings per class (averaged over
    ``cfg.label_draws`` draws) and with all of them; test units are the test recordings' windows."""
    f_tr = _device_features(encoder, x_tr, cfg.window)
    f_te = _device_features(encoder, x_te, cfg.window)
    k, d = f_te.shape[1], f_te.shape[2]
    yw_tr, yw_te = y_tr.repeat_interleave(k), y_te.repeat_interleave(k)
    g = torch.Generator().manual_seed(seed + 11)
    draws = [
        torch.cat(
            [
                torch.nonzero(y_tr == c).flatten()[
                    torch.randperm(int((y_tr == c).sum()), generator=g)[:LABELS_PER_CLASS]
                ]
                for c in torch.unique(y_tr)
            ]
        )
        for _ in range(cfg.label_draws)
    ]
    few: list[float] = []
    full: list[float] = []
    for dev in range(d):
        test = f_te[:, :, dev].flatten(0, 1)
        for idx in draws:
            train = f_tr[idx, :, dev].flatten(0, 1)
            probe = linear_probe(
                train, y_tr[idx].repeat_interleave(k), test, yw_te, fallback_weight_decay=1e-2
            )
            few.append(probe.accuracy)
        train = f_tr[:, :, dev].flatten(0, 1)
        full.append(
            linear_probe(train, yw_tr, test, yw_te, seed=seed, weight_decays=DECAYS).accuracy
        )
    return {"accuracy": sum(few) / len(few), "accuracy_all_labels": sum(full) / len(full)}


def run(settings: AppSettings) -> dict[str, Measured]:
    """Pre-train ColloSSL, its no-selection ablation and single-device SimCLR on BasicMotions;
    probe each (and a random encoder) on the test recordings."""
    cfg = _QUICK if settings.quick else _FULL
    data = load_ucr("BasicMotions")
    std, mean = torch.std_mean(data.x_train, dim=(0, 2), keepdim=True)
    x_tr, x_te = (data.x_train - mean) / std, (data.x_test - mean) / std
    out: dict[str, Measured] = {}
    for variant in ("collossl", "simclr", "all_devices"):
        encoder, losses = _train(variant, x_tr, cfg, settings.seed)
        metrics = _evaluate(encoder, x_tr, data.y_train, x_te, data.y_test, cfg, settings.seed)
        out[variant] = Measured(metrics, losses)
    torch.manual_seed(settings.seed)
    random = Conv1dEncoder(1, widths=cfg.widths, kernel_sizes=(7, 5, 3))
    out["random_encoder"] = Measured(
        _evaluate(random, x_tr, data.y_train, x_te, data.y_test, cfg, settings.seed)
    )
    return out


APP = App(
    name="collossl",
    title="ColloSSL: time-synchronised windows of other devices as positives, for activity HAR",
    paper=(
        "Jain, Tang, Min, Kawsar & Mathur, ColloSSL: Collaborative Self-Supervised Learning for "
        "Human Activity Recognition, Proc. ACM IMWUT 2022"
    ),
    data=(
        "real: UEA BasicMotions (smartwatch accelerometer + gyroscope, 4 activities, 40/40 "
        "recordings) from the sktime 1.2 wheel; each of the 6 axes stands in for a device; random "
        "32-step windows"
    ),
    claim=(
        "Contrasting time-synchronised windows across selected devices learns better "
        "activity features for few-label recognition than single-device SimCLR."
    ),
    method="collossl",
    baselines=("simclr", "all_devices", "random_encoder"),
    metric="accuracy",
    chance=0.25,
    run=run,
    needs=("sktime",),
)
