"""Contrastive UCB: exploration with an elliptical bonus on contrastively learned transition features.

Paper: Shuang Qiu, Lingxiao Wang, Chenjia Bai, Zhuoran Yang and Zhaoran Wang, "Contrastive UCB:
Provably Efficient Contrastive Self-Supervised Learning in Online Reinforcement Learning", ICML 2022.

What the system does: an online agent on a hard-exploration grid learns the features of a low-rank
transition model ``P(s' | s, a) ∝ exp(phi(s, a)^T psi(s'))`` by noise contrast, and acts by
least-squares value iteration with an upper-confidence bonus on those features (LSVI-UCB), the
algorithm family the paper builds on: over the horizon,

    w = Lambda^{-1} sum_i phi(s_i, a_i) (r_i + V(s'_i)),
    Q(s, a) = min(1, phi(s, a)^T w + beta * sqrt(phi(s, a)^T Lambda^{-1} phi(s, a))),
    V(s) = max_a Q(s, a),   Lambda = lambda I + sum_i phi(s_i, a_i) phi(s_i, a_i)^T,

over the replay's transitions ``i`` (features L2-normalised; 1 is the largest return). The
contrastive loss is binary noise-contrastive estimation of the density ratio
(:class:`contrastkit.losses.BinaryNCE`): for each observed transition ``(s, a, s')`` the critic
``f = phi(s, a)^T psi(s')`` is pushed up on the true next state and down on ``K`` states drawn
uniformly,

    L = softplus(-f(s, a, s')) + sum_k softplus(f(s, a, s_k^-)),

so ``f`` estimates ``log P(s' | s, a) / q(s')`` up to a constant. ``phi`` and ``psi`` are tables of
one learned vector per state-action pair and per state (a rank-``d`` factorisation, ``d = 256``).
After every episode the model is refitted on the replay with one epoch of a few batches through
:func:`contrastkit.train.train_custom`. The paper's exact loss form, feature dimension and
confidence radius are not reproduced (``beta``, ``lambda`` were set here by hand).

Variants (same environment, horizon, episode cap and planner): ``contrastive_ucb`` (the method),
``random_feature_ucb`` (the same LSVI-UCB on the same feature tables left at their random
initialisation: is the contrastive learning what makes the bonus work?) and ``epsilon_greedy`` (the
same learned features, no bonus, 10 % random actions). Metric: the number of episodes until the goal
is first reached, lower is better; a run that never reaches it within the cap counts as the cap.
Each seed's number is the mean over independent deep seas (3 inner repeats; the quick form runs
one, with 2 instead of 4 NCE batches per refit). The loss curve a variant reports is the NCE loss
of its first inner repeat's refits, averaged over five consecutive stretches of episodes.
``App.chance`` is what a uniformly random policy needs in expectation under the same cap,
``(1 - (1 - 2^-N)^cap) 2^N``. The table in ``docs/examples.md`` comes from ``benchmarks/apps.py run
contrastive_ucb --seeds 0 1 2 3 4``.

Data (simulated): a DeepSea environment (Osband et al., "Behaviour Suite for Reinforcement
Learning", ICLR 2020) written here: an ``N x N`` grid (N = 10) descended one row per step from the
top-left corner; at each cell one action moves right (costing ``0.01 / N``) and the other left, which
of the two is which drawn per cell from the seed; moving right from the bottom-right cell pays 1, so
the goal takes ``N`` right moves in a row and a random policy finds it with probability ``2^-N`` per
episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from contrastkit.apps._app import App, AppSettings, Measured
from contrastkit.losses import BinaryNCE
from contrastkit.train import StepOutput, train_custom

__all__ = ["APP"]

_SIZE = 10
_CAP = 150


@dataclass(frozen=True)
class _Config:
    size: int
    cap: int
    repeats: int
    feature_dim: int
    negatives: int
    batch: int
    steps: int
    lr: float
    beta: float
    ridge: float
    epsilon: float


def _config(quick: bool) -> _Config:
    return _Config(
        size=_SIZE,
        cap=_CAP,
        repeats=1 if quick else 3,
        feature_dim=256,
        negatives=8,
        batch=64,
        steps=2 if quick else 4,
        lr=3e-3,
        beta=0.1,
        ridge=0.01,
        epsilon=0.1,
    )


def random_policy_episodes(size: int, cap: int) -> float:
    """Expected episodes to the goal of a uniformly random policy, a failure counted as ``cap``."""
    p = 2.0**-size
    return (1.0 - (1.0 - p) ** cap) / p


# --------------------------------------------------------------------------------------------------
# The environment
# --------------------------------------------------------------------------------------------------


class DeepSea:
    """An ``N x N`` DeepSea: state ``row * N + col``; the terminal row ``N`` holds ``N`` states.

    Args:
        size: ``N`` (the horizon as well).
        rng: Draws which action moves right at each cell.
    """

    def __init__(self, size: int, rng: np.random.Generator) -> None:
        self.size = size
        self.num_states = (size + 1) * size
        self.right_action = rng.integers(0, 2, size=(size, size))

    def step(self, state: int, action: int) -> tuple[int, float]:
        """Next state and reward of ``action`` in ``state`` (a non-terminal state)."""
        row, col = divmod(state, self.size)
        right = action == self.right_action[row, col]
        reward = -0.01 / self.size if right else 0.0
        if right and col == self.size - 1:  # only reachable in the last row
            reward += 1.0
        col = min(col + 1, self.size - 1) if right else max(col - 1, 0)
        return (row + 1) * self.size + col, reward


# --------------------------------------------------------------------------------------------------
# The contrastive transition model
# --------------------------------------------------------------------------------------------------


class _TransitionModel(nn.Module):
    """The low-rank factorisation ``f(s, a, s') = phi(s, a)^T psi(s')``: one learned vector per
    state-action pair and one per next state (embedding tables of ``dim`` columns), initialised so
    that the initial scores are of order one."""

    def __init__(self, num_states: int, dim: int) -> None:
        super().__init__()
        self.num_states = num_states
        self.phi = nn.Embedding(2 * num_states, dim)
        self.psi = nn.Embedding(num_states, dim)
        for table in (self.phi, self.psi):
            nn.init.normal_(table.weight, std=dim**-0.25)

    def features(self, states: Tensor, actions: Tensor) -> Tensor:
        """``phi(s, a)``, ``(B, dim)``."""
        out: Tensor = self.phi(states * 2 + actions)
        return out

    def next_features(self, states: Tensor) -> Tensor:
        """``psi(s')``, ``(B, dim)``."""
        out: Tensor = self.psi(states)
        return out


@dataclass
class _Replay:
    states: list[int]
    actions: list[int]
    rewards: list[float]
    next_states: list[int]


def _refit(model: _TransitionModel, replay: _Replay, cfg: _Config, gen: torch.Generator) -> float:
    """One epoch of binary NCE on batches drawn from the replay; returns its mean loss."""
    s, a, s2 = (torch.tensor(v) for v in (replay.states, replay.actions, replay.next_states))
    loss_fn = BinaryNCE()

    def step(idx: Tensor) -> StepOutput:
        phi = model.features(s[idx], a[idx])
        pos = (phi * model.next_features(s2[idx])).sum(dim=1)
        neg_states = torch.randint(0, model.num_states, (len(idx), cfg.negatives), generator=gen)
        psi_neg = model.next_features(neg_states.reshape(-1)).reshape(len(idx), cfg.negatives, -1)
        neg = torch.einsum("bd,bkd->bk", phi, psi_neg)
        return StepOutput(loss=loss_fn(pos, neg), samples=len(idx))

    def batches(epoch: int) -> list[Tensor]:
        return [torch.randint(0, len(s), (cfg.batch,), generator=gen) for _ in range(cfg.steps)]

    (summary,) = train_custom([model], step, batches, epochs=1, lr=cfg.lr, name="contrastive UCB")
    return summary.loss


# --------------------------------------------------------------------------------------------------
# Planning and acting
# --------------------------------------------------------------------------------------------------


@torch.no_grad()
def _plan(
    model: _TransitionModel, env: DeepSea, replay: _Replay, cfg: _Config, *, bonus: bool
) -> np.ndarray:
    """Q-values ``(num_states, 2)`` of least-squares value iteration on the features (LSVI-UCB).

    ``Q(s, a) = phi(s, a)^T w + beta * sqrt(phi^T Lambda^{-1} phi)`` with ``w`` the ridge
    regression of ``r_i + V(s'_i)`` on ``phi(s_i, a_i)`` over the replay, iterated over the horizon.
    """
    model.eval()
    n = env.num_states
    phi = nn.functional.normalize(
        model.features(torch.arange(n).repeat_interleave(2), torch.arange(2).repeat(n)), dim=1
    ).double()
    seen = torch.tensor(replay.states, dtype=torch.long) * 2 + torch.tensor(
        replay.actions, dtype=torch.long
    )
    x = phi[seen]
    lam = cfg.ridge * torch.eye(phi.shape[1], dtype=torch.float64) + x.T @ x
    lam_inv = torch.linalg.inv(lam)
    b = cfg.beta * torch.sqrt((phi @ lam_inv * phi).sum(dim=1)) if bonus else torch.zeros(2 * n)
    rewards = torch.tensor(replay.rewards, dtype=torch.float64)
    nxt = torch.tensor(replay.next_states, dtype=torch.long)
    v = torch.zeros(n, dtype=torch.float64)
    q = b.clone()
    for _ in range(env.size):
        w = lam_inv @ (x.T @ (rewards + v[nxt]))
        q = torch.clamp(phi @ w + b, max=1.0)  # the largest return
        v = q.reshape(n, 2).max(dim=1).values
        v[env.size * env.size :] = 0.0  # the terminal row
    return q.reshape(n, 2).numpy()


def _act(q: np.ndarray, state: int, epsilon: float, rng: np.random.Generator) -> int:
    if rng.random() < epsilon:
        return int(rng.integers(2))
    best = np.flatnonzero(q[state] >= q[state].max() - 1e-9)
    return int(rng.choice(best))


def _episodes_to_goal(
    cfg: _Config, seed: int, *, learn: bool, bonus: bool, epsilon: float
) -> tuple[int, list[float]]:
    """Run one agent on one deep sea until it first reaches the goal (or the cap)."""
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    env = DeepSea(cfg.size, rng)
    model = _TransitionModel(env.num_states, cfg.feature_dim)
    replay = _Replay([], [], [], [])
    losses: list[float] = []
    for episode in range(1, cfg.cap + 1):
        q = _plan(model, env, replay, cfg, bonus=bonus)
        state, reached = 0, False
        for _ in range(env.size):
            action = _act(q, state, epsilon, rng)
            nxt, r = env.step(state, action)
            replay.states.append(state)
            replay.actions.append(action)
            replay.rewards.append(r)
            replay.next_states.append(nxt)
            reached = reached or r > 0.5
            state = nxt
        if reached:
            return episode, losses
        if learn:
            losses.append(_refit(model, replay, cfg, gen))
    return cfg.cap, losses


def _chunked(losses: list[float], chunks: int = 5) -> list[float]:
    """The loss curve as the means of ``chunks`` consecutive stretches of refits."""
    if len(losses) < chunks:
        return losses
    return [float(np.mean(part)) for part in np.array_split(np.asarray(losses), chunks)]


def _variant(cfg: _Config, seed: int, *, learn: bool, bonus: bool, epsilon: float) -> Measured:
    counts: list[int] = []
    curves: list[list[float]] = []
    for repeat in range(cfg.repeats):
        n, losses = _episodes_to_goal(
            cfg, seed * 100 + repeat, learn=learn, bonus=bonus, epsilon=epsilon
        )
        counts.append(n)
        curves.append(_chunked(losses))
    metrics = {
        "episodes_to_goal": float(np.mean(counts)),
        "reached_within_cap": float(np.mean([c < cfg.cap for c in counts])),
    }
    losses = curves[0] if curves and len(curves[0]) >= 2 else []
    return Measured(metrics=metrics, losses=losses)


def _run(settings: AppSettings) -> dict[str, Measured]:
    cfg = _config(settings.quick)
    return {
        "contrastive_ucb": _variant(cfg, settings.seed, learn=True, bonus=True, epsilon=0.0),
        "random_feature_ucb": _variant(cfg, settings.seed, learn=False, bonus=True, epsilon=0.0),
        "epsilon_greedy": _variant(
            cfg, settings.seed, learn=True, bonus=False, epsilon=cfg.epsilon
        ),
    }


APP = App(
    name="contrastive_ucb",
    title="Contrastive UCB: NCE transition features give a UCB exploration bonus on DeepSea",
    paper=(
        "Qiu, Wang, Bai, Yang and Wang, Contrastive UCB: Provably Efficient Contrastive "
        "Self-Supervised Learning in Online Reinforcement Learning, ICML 2022"
    ),
    data=(
        f"simulated: a {_SIZE}x{_SIZE} DeepSea (bsuite-style hard-exploration grid, action "
        "meanings drawn per cell from the seed), episodes capped at "
        f"{_CAP}; docs table over seeds 0-4"
    ),
    claim=(
        "A UCB bonus on features learned by a contrastive transition model makes online "
        "exploration efficient: the goal of a hard-exploration task is reached in far fewer "
        "episodes than with epsilon-greedy exploration."
    ),
    method="contrastive_ucb",
    baselines=("epsilon_greedy", "random_feature_ucb"),
    metric="episodes_to_goal",
    higher_is_better=False,
    chance=random_policy_episodes(_SIZE, _CAP),
    run=_run,
)
