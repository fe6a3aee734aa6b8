"""TACO: temporal, action-driven contrastive representations of a pendulum seen in pixels.

Paper: Ruijie Zheng, Xiyao Wang, Yanchao Sun, Shuang Ma, Jieyu Zhao, Huazhe Xu, Hal Daumé III and
Furong Huang, "TACO: Temporal Latent Action-Driven Contrastive Loss for Visual Reinforcement
Learning", NeurIPS 2023.

What the system does: an agent sees small images of gymnasium's ``Pendulum-v1`` (two stacked frames,
so the angular velocity is visible) and takes continuous torques. TACO learns a state encoder and an
action encoder together: the representation of the state ``s_t`` and of the action sequence
``a_t .. a_{t+K-1}`` (K = 3) must pick out the representation of the state ``s_{t+K}`` that followed
among the other future states of the batch. With ``z = proj(enc(o))`` (``Linear -> LayerNorm ->
Tanh``, as in the reference code), the prediction ``y_hat_i = g([z(o_t), u(a_{t:t+K})])`` and the
target ``y_i = z(o_{t+K})`` (computed without gradient, by the same encoder), the loss is the InfoNCE
of a learned bilinear critic with no temperature,

    L = -1/B sum_i log( exp(y_hat_i^T W y_i) / sum_j exp(y_hat_i^T W y_j) ),

which is :class:`contrastkit.losses.BilinearInfoNCE`. TACO's CURL and reward terms are left out:
this app isolates the temporal action-driven term.

What is measured: how much of the true physical state (cos theta, sin theta, angular velocity) a
ridge regression reads linearly off the frozen encoder's features on held-out episodes when it is
fitted on only 256 labelled transitions (R^2, the primary metric ``state_r2``, averaged over the
three quantities; the velocity's R^2 alone, and both fitted on all training transitions, are
reported as well: with every label even random convolutional features reach R^2 ~ 0.98, so the
few-label probe is what separates the representations), and, for the contrastive variants,
future-state retrieval (R@1 of the true ``o_{t+K}`` among all held-out future frames under the
learned critic). The state probe is primary because it is defined
for every variant (the baselines have no critic to retrieve with) and it is what a control policy on
top of the representation needs. Variants, all with the same encoder, data, epochs and optimizer:
``taco`` (the method), ``temporal_no_action`` (the same loss with the action sequence withheld from
the predictor: an ablation of the action part), ``autoencoder`` (the encoder trained to
reconstruct both frames through a decoder, the reconstruction baseline) and ``untrained`` (the
randomly initialised encoder).

Data (simulated): transitions of gymnasium's ``Pendulum-v1`` dynamics (shipped with gymnasium, no
download) under random torques held for two simulator steps (action repeat 2), from the
environment's own random starts (any angle, slow spin), seeded by the run's seed. The observations
are 24x24 grey images drawn here from the state (a rod from the pivot with a bob, blurred by a
Gaussian profile), not gymnasium's renderer (which needs pygame); training and test transitions
come from different episodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.losses import BilinearInfoNCE
from contrastkit.models import SmallCNN
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP"]

_SIZE = 24
_ACTION_REPEAT = 2
_MAX_TORQUE = 2.0


@dataclass(frozen=True)
class _Config:
    train_episodes: int
    test_episodes: int
    length: int
    horizon: int
    epochs: int
    batch: int
    lr: float
    proj_dim: int
    labels: int


def _config(quick: bool) -> _Config:
    if quick:
        return _Config(16, 6, 40, 3, 3, 128, 2e-3, 32, 256)
    return _Config(60, 20, 60, 3, 8, 256, 1e-3, 50, 256)


# --------------------------------------------------------------------------------------------------
# Data: pendulum transitions and their pixel observations
# --------------------------------------------------------------------------------------------------


def _render(theta: np.ndarray, size: int = _SIZE) -> np.ndarray:
    """Grey ``(N, size, size)`` images of a pendulum at angles ``theta`` (0 = upright)."""
    c = (size - 1) / 2.0
    length = 0.4 * size
    coords = np.arange(size, dtype=np.float64)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    px, py = xx[None] - c, yy[None] - c  # pixel offsets from the pivot; image y grows downwards
    ex = (length * np.sin(theta))[:, None, None]
    ey = (-length * np.cos(theta))[:, None, None]
    t = np.clip((px * ex + py * ey) / (length**2), 0.0, 1.0)  # projection onto the rod
    dist2 = (px - t * ex) ** 2 + (py - t * ey) ** 2
    rod = np.exp(-dist2 / (2 * 0.8**2))
    bob = np.exp(-((px - ex) ** 2 + (py - ey) ** 2) / (2 * 1.5**2))
    return np.clip(rod + bob, 0.0, 1.0).astype(np.float32)


def _rollouts(seed: int, episodes: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """States ``(E, length + 2, 2)`` (angle, velocity) and torques ``(E, length + 1)``."""
    import gymnasium as gym

    env: Any = gym.make("Pendulum-v1").unwrapped
    rng = np.random.default_rng(seed)
    states = np.zeros((episodes, length + 2, 2))
    actions = rng.uniform(-_MAX_TORQUE, _MAX_TORQUE, size=(episodes, length + 1))
    for e in range(episodes):
        env.reset(seed=int(rng.integers(2**31)))
        states[e, 0] = env.state
        for t in range(length + 1):
            for _ in range(_ACTION_REPEAT):
                env.step(np.array([actions[e, t]], dtype=np.float32))
            states[e, t + 1] = env.state
    env.close()
    return states, actions


@dataclass(frozen=True)
class _Transitions:
    """``obs`` (N, 2, S, S) two stacked frames at t, ``future`` the same at t + K, ``actions``
    (N, K) the torques in between (scaled to [-1, 1]), ``state`` (N, 3) cos, sin, velocity at t."""

    obs: Tensor
    future: Tensor
    actions: Tensor
    state: Tensor


def _transitions(seed: int, episodes: int, length: int, horizon: int) -> _Transitions:
    states, actions = _rollouts(seed, episodes, length)
    frames = _render(states[..., 0].reshape(-1)).reshape(episodes, length + 2, _SIZE, _SIZE)
    starts = np.arange(1, length + 2 - horizon)  # frame t-1 exists and t + K <= length + 1
    obs = np.stack([frames[:, starts - 1], frames[:, starts]], axis=2)
    fut = np.stack([frames[:, starts + horizon - 1], frames[:, starts + horizon]], axis=2)
    acts = np.stack([actions[:, starts + k] for k in range(horizon)], axis=2) / _MAX_TORQUE
    theta, vel = states[:, starts, 0], states[:, starts, 1]
    state = np.stack([np.cos(theta), np.sin(theta), vel], axis=2)
    return _Transitions(
        obs=torch.from_numpy(obs.reshape(-1, 2, _SIZE, _SIZE)),
        future=torch.from_numpy(fut.reshape(-1, 2, _SIZE, _SIZE)),
        actions=torch.from_numpy(acts.reshape(-1, horizon)).float(),
        state=torch.from_numpy(state.reshape(-1, 3)).float(),
    )


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def _encoder() -> SmallCNN:
    return SmallCNN(in_channels=2, widths=(16, 32, 32), strides=(2, 2, 1), pool_size=3)


class _Taco(nn.Module):
    """Encoder, state projection, action encoder, predictor and bilinear critic of TACO."""

    def __init__(self, horizon: int, proj_dim: int, *, use_actions: bool = True) -> None:
        super().__init__()
        self.encoder = _encoder()
        self.proj = nn.Sequential(
            nn.Linear(self.encoder.out_dim, proj_dim), nn.LayerNorm(proj_dim), nn.Tanh()
        )
        act_dim = horizon * (int(1.25 * 1) + 1)  # the reference's latent size per action step
        self.action_encoder = nn.Sequential(
            nn.Linear(horizon, 64), nn.ReLU(), nn.Linear(64, act_dim)
        )
        self.use_actions = use_actions
        self.predictor = nn.Sequential(
            nn.Linear(proj_dim + act_dim, 128), nn.ReLU(), nn.Linear(128, proj_dim)
        )
        self.critic = BilinearInfoNCE(dim=proj_dim)

    def predict(self, obs: Tensor, actions: Tensor) -> Tensor:
        """``y_hat``: the predicted representation of the state ``K`` steps later."""
        u = self.action_encoder(actions)
        if not self.use_actions:
            u = torch.zeros_like(u)
        return self.predictor(torch.cat([self.proj(self.encoder(obs)), u], dim=1))

    def target(self, future: Tensor) -> Tensor:
        """``y``: the representation of the future observation."""
        return self.proj(self.encoder(future))

    def loss(self, obs: Tensor, actions: Tensor, future: Tensor) -> Tensor:
        """TACO's bilinear InfoNCE (the target without gradient, as in the reference code)."""
        with torch.no_grad():
            y = self.target(future)
        return self.critic(self.predict(obs, actions), y)


class _AutoEncoder(nn.Module):
    """The same encoder with a decoder that reconstructs both frames."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = _encoder()
        self.decoder = nn.Sequential(
            nn.Linear(self.encoder.out_dim, 256), nn.ReLU(), nn.Linear(256, 2 * _SIZE * _SIZE)
        )

    def loss(self, obs: Tensor) -> Tensor:
        recon = torch.sigmoid(self.decoder(self.encoder(obs))).reshape(obs.shape)
        return nn.functional.mse_loss(recon, obs) * 100.0


# --------------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def _features(encoder: nn.Module, obs: Tensor, batch: int = 512) -> Tensor:
    encoder.eval()
    return torch.cat([encoder(obs[i : i + batch]) for i in range(0, len(obs), batch)])


def _ridge_r2(
    train_x: Tensor, train_y: Tensor, test_x: Tensor, test_y: Tensor, alpha: float
) -> Tensor:
    """Per-target R^2 on the test set of a ridge regression fitted on standardised features."""
    mu, sd = train_x.mean(0), train_x.std(0).clamp_min(1e-6)
    a, b = ((train_x - mu) / sd).double(), ((test_x - mu) / sd).double()
    ym = train_y.mean(0).double()
    gram = a.T @ a + alpha * len(a) * torch.eye(a.shape[1], dtype=torch.float64)
    coef = torch.linalg.solve(gram, a.T @ (train_y.double() - ym))
    pred = b @ coef + ym
    resid = ((test_y.double() - pred) ** 2).sum(0)
    total = ((test_y.double() - test_y.double().mean(0)) ** 2).sum(0)
    return (1.0 - resid / total).float()


def _fit_probe(ftr: Tensor, ytr: Tensor, fte: Tensor, yte: Tensor) -> Tensor:
    """Per-target test R^2 of a ridge probe whose strength is chosen on a 20 % split of the
    training rows, then refitted on all of them."""
    cut = int(0.8 * len(ftr))
    alphas = (1e-3, 1e-2, 1e-1, 1.0)
    scores = [
        float(_ridge_r2(ftr[:cut], ytr[:cut], ftr[cut:], ytr[cut:], a).mean()) for a in alphas
    ]
    return _ridge_r2(ftr, ytr, fte, yte, alphas[int(np.argmax(scores))])


def _state_probe(
    encoder: nn.Module, train: _Transitions, test: _Transitions, labels: int, seed: int
) -> dict[str, float]:
    """R^2 of the physical state from the frozen features: with ``labels`` labelled training
    transitions (the primary, data-efficiency reading) and with all of them."""
    ftr, fte = _features(encoder, train.obs), _features(encoder, test.obs)
    g = torch.Generator().manual_seed(seed)
    few = torch.randperm(len(ftr), generator=g)[:labels]
    r2 = _fit_probe(ftr[few], train.state[few], fte, test.state)
    r2_all = _fit_probe(ftr, train.state, fte, test.state)
    return {
        "state_r2": float(r2.mean()),
        "velocity_r2": float(r2[2]),
        "angle_r2": float(r2[:2].mean()),
        "state_r2_all_labels": float(r2_all.mean()),
        "velocity_r2_all_labels": float(r2_all[2]),
    }


@torch.no_grad()
def _retrieval_at_1(model: _Taco, test: _Transitions) -> float:
    """Share of held-out ``(o_t, a)`` whose critic ranks the true ``o_{t+K}`` first of all."""
    model.eval()
    pred = torch.cat(
        [
            model.predict(test.obs[i : i + 512], test.actions[i : i + 512])
            for i in range(0, len(test.obs), 512)
        ]
    )
    target = torch.cat(
        [model.target(test.future[i : i + 512]) for i in range(0, len(test.obs), 512)]
    )
    logits = model.critic.logits(pred, target)
    return float((logits.argmax(dim=1) == torch.arange(len(pred))).float().mean())


def _batches(n: int, batch: int, seed: int):  # type: ignore[no-untyped-def]
    def make(epoch: int) -> list[Tensor]:
        g = torch.Generator().manual_seed(seed * 1000 + epoch)
        perm = torch.randperm(n, generator=g)
        return list(perm[: n - n % batch].split(batch))

    return make


def _train_taco(
    cfg: _Config, train: _Transitions, seed: int, *, use_actions: bool
) -> tuple[_Taco, list[float]]:
    torch.manual_seed(seed)
    model = _Taco(cfg.horizon, cfg.proj_dim, use_actions=use_actions)

    def step(idx: Tensor) -> StepOutput:
        loss = model.loss(train.obs[idx], train.actions[idx], train.future[idx])
        return StepOutput(loss=loss, samples=len(idx))

    history = train_custom(
        [model], step, _batches(len(train.obs), cfg.batch, seed), epochs=cfg.epochs, lr=cfg.lr
    )
    return model, [h.loss for h in history]


def _train_autoencoder(
    cfg: _Config, train: _Transitions, seed: int
) -> tuple[_AutoEncoder, list[float]]:
    torch.manual_seed(seed)
    model = _AutoEncoder()

    def step(idx: Tensor) -> StepOutput:
        return StepOutput(loss=model.loss(train.obs[idx]), samples=len(idx))

    history = train_custom(
        [model], step, _batches(len(train.obs), cfg.batch, seed), epochs=cfg.epochs, lr=cfg.lr
    )
    return model, [h.loss for h in history]


def _run(settings: AppSettings) -> dict[str, Measured]:
    cfg = _config(settings.quick)
    train = _transitions(2 * settings.seed, cfg.train_episodes, cfg.length, cfg.horizon)
    test = _transitions(2 * settings.seed + 1, cfg.test_episodes, cfg.length, cfg.horizon)
    out: dict[str, Measured] = {}
    for name, use_actions in (("taco", True), ("temporal_no_action", False)):
        model, losses = _train_taco(cfg, train, settings.seed, use_actions=use_actions)
        metrics = _state_probe(model.encoder, train, test, cfg.labels, settings.seed)
        metrics["future_R@1"] = _retrieval_at_1(model, test)
        out[name] = Measured(metrics=metrics, losses=losses)
    ae, losses = _train_autoencoder(cfg, train, settings.seed)
    out["autoencoder"] = Measured(
        metrics=_state_probe(ae.encoder, train, test, cfg.labels, settings.seed), losses=losses
    )
    torch.manual_seed(settings.seed)
    out["untrained"] = Measured(
        metrics=_state_probe(_encoder(), train, test, cfg.labels, settings.seed)
    )
    return out


APP = App(
    name="taco",
    title="TACO: action-driven temporal contrast on pixel observations of a pendulum",
    paper=(
        "Zheng, Wang, Sun, Ma, Zhao, Xu, Daumé III and Huang, TACO: Temporal Latent Action-Driven "
        "Contrastive Loss for Visual Reinforcement Learning, NeurIPS 2023"
    ),
    data=(
        "simulated: gymnasium Pendulum-v1 dynamics under random torques (action repeat 2), "
        "observed as two stacked 24x24 frames drawn here from the angle; seeded"
    ),
    claim=(
        "Contrasting the representation of a state and its action sequence against the future "
        "state's representation learns state features that encode the control-relevant physical "
        "state better than a reconstruction objective at the same budget."
    ),
    method="taco",
    baselines=("autoencoder", "untrained", "temporal_no_action"),
    metric="state_r2",
    higher_is_better=True,
    chance=0.0,
    run=_run,
    needs=("gymnasium",),
)
