"""Contrastive UCB app: the DeepSea environment, the chance level and the LSVI-UCB planner."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from contrastkit.apps import contrastive_ucb as cucb


def _rollout(env: cucb.DeepSea, rights: tuple[bool, ...]) -> tuple[int, float]:
    state, total = 0, 0.0
    for go_right in rights:
        row, col = divmod(state, env.size)
        action = (
            int(env.right_action[row, col]) if go_right else 1 - int(env.right_action[row, col])
        )
        state, r = env.step(state, action)
        total += r
    return state, total


def test_only_the_all_right_path_pays() -> None:
    env = cucb.DeepSea(5, np.random.default_rng(0))
    paying = [
        rights
        for rights in itertools.product([False, True], repeat=5)
        if _rollout(env, rights)[1] > 0.5
    ]
    assert paying == [(True,) * 5]
    final, ret = _rollout(env, (True,) * 5)
    assert final == 5 * 5 + 4 and ret == pytest.approx(1.0 - 0.01 * 5 / 5)


def test_action_meanings_vary_per_cell() -> None:
    env = cucb.DeepSea(10, np.random.default_rng(1))
    assert 0 < env.right_action.mean() < 1


def test_random_policy_episodes_is_the_capped_geometric_mean() -> None:
    p = 2.0**-3
    expected = sum((1 - p) ** k for k in range(20))  # E[min(G, cap)] = sum_{k<cap} P(G > k)
    assert cucb.random_policy_episodes(3, 20) == pytest.approx(expected)
    assert cucb.random_policy_episodes(10, 150) < 150


class _TabularModel(cucb._TransitionModel):
    """One-hot state-action features: LSVI-UCB becomes count-based tabular UCB."""

    def features(self, states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(states * 2 + actions, 2 * self.num_states).float()


def test_lsvi_ucb_with_exact_features_explores_deep_sea(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cucb, "_TransitionModel", _TabularModel)
    cfg = dataclasses.replace(cucb._config(True), size=8, cap=60)
    ucb, _ = cucb._episodes_to_goal(cfg, 0, learn=False, bonus=True, epsilon=0.0)
    greedy, _ = cucb._episodes_to_goal(cfg, 0, learn=False, bonus=False, epsilon=0.1)
    assert ucb < 40
    assert greedy == 60  # without a bonus the goal (probability 2^-8 per episode) is not found


def test_nce_refit_lowers_the_loss_on_a_fixed_replay() -> None:
    torch.manual_seed(0)
    env = cucb.DeepSea(4, np.random.default_rng(0))
    model = cucb._TransitionModel(env.num_states, 16)
    replay = cucb._Replay([], [], [], [])
    rng = np.random.default_rng(0)
    for _ in range(20):
        state = 0
        for _ in range(4):
            action = int(rng.integers(2))
            nxt, r = env.step(state, action)
            replay.states.append(state)
            replay.actions.append(action)
            replay.rewards.append(r)
            replay.next_states.append(nxt)
            state = nxt
    cfg = dataclasses.replace(cucb._config(True), steps=20)
    gen = torch.Generator().manual_seed(0)
    first = cucb._refit(model, replay, cfg, gen)
    for _ in range(5):
        last = cucb._refit(model, replay, cfg, gen)
    assert last < first
