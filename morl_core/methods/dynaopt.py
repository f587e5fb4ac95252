"""B. DynaOpt: one policy whose objective weights an Exp3 bandit moves during training.

Reference: Min et al., "Dynamic Reward Adjustment in Multi-Reward Reinforcement Learning for
Counselor Reflection Generation" (LREC-COLING 2024, arXiv 2403.13578).

One LoRA policy maximises sum_i w_i(t) r_i - beta KL(pi || ref) with w(t) the Exp3 distribution
over the K objectives (arms). Every ``window`` steps the bandit plays an arm a ~ w(t) (seeded)
and is paid how far objective a lags behind the others in the last window's mean normalised
rewards rbar, g_a = clip(0.5 + LAG_SCALE * (mean_j rbar_j - rbar_a), 0, 1); Exp3 updates the
played arm with the importance-weighted gain::

    log_w_a += gamma * g_a / (K * p_a),      w = (1 - gamma) * softmax(log_w) + gamma / K

so training weight flows to the objective that is behind, and back as it catches up.

**Differs from the paper**: the gain. Paying the played objective's *improvement* gave a signal
far below the batch noise at our budgets (the weights stayed uniform); paying the lag makes the
bandit balance the objectives. The default window is 2 steps, so a short run makes many updates.

The result is one policy, not a steerable front: ``generate`` ignores the requested weights.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.methods.common import (
    AdapterPolicy,
    Stage,
    load_adapters,
    open_policy,
    snapshot,
    train_stages,
    write_artifact,
)

POLICY = "dynaopt"
LAG_SCALE = 2.0  # a 0.25 lag in [0, 1] rewards pays the arm 1.0 (the gain's ceiling)


class Exp3:
    """Exp3 over K objectives; ``probabilities`` are the scalarisation weights."""

    def __init__(self, k: int, gamma: float, rng: np.random.Generator):
        self.k, self.gamma, self.rng = k, gamma, rng
        self.log_weights = np.zeros(k)

    @property
    def probabilities(self) -> np.ndarray:  # (K,)
        soft = np.exp(self.log_weights - self.log_weights.max())
        return (1 - self.gamma) * soft / soft.sum() + self.gamma / self.k

    def update(self, gains: np.ndarray) -> int:
        """Play one arm and learn from its gain in [0, 1]; returns the arm."""
        p = self.probabilities
        arm = int(self.rng.choice(self.k, p=p))
        self.log_weights[arm] += self.gamma * float(gains[arm]) / (self.k * p[arm])
        return arm

    def state(self) -> dict[str, Any]:
        return {"log_weights": self.log_weights.tolist(), "rng": self.rng.bit_generator.state}

    def load(self, state: dict[str, Any]) -> None:
        self.log_weights = np.asarray(state["log_weights"], dtype=float)
        self.rng.bit_generator.state = state["rng"]


class SinglePolicy(AdapterPolicy):
    """One policy for every preference (the weights were spent during training)."""

    def choose(self, weights: np.ndarray) -> str:
        return POLICY


def train(config: RunConfig, run_dir: Path, callback) -> None:
    spec = METHODS["dynaopt"]
    gamma, window = spec.option(config.options, "gamma"), spec.option(config.options, "window")
    policy = open_policy(config)
    bandit = Exp3(len(config.objectives), gamma, np.random.default_rng(config.seed + 7))
    history: dict[str, Any] = {"rewards": [], "previous": None}

    def after_step(metrics: dict[str, float], raw: np.ndarray) -> None:
        history["rewards"].append(np.clip(raw, 0, 1).mean(0).tolist())
        if len(history["rewards"]) == window:
            current = np.mean(history["rewards"], axis=0)  # (K,)
            gains = np.clip(0.5 + LAG_SCALE * (current.mean() - current), 0.0, 1.0)
            metrics["bandit/arm"] = float(bandit.update(gains))
            history["previous"], history["rewards"] = current.tolist(), []

    def state() -> dict[str, Any]:
        return {"bandit": bandit.state(), "history": history}

    def load_state(saved: dict[str, Any]) -> None:
        bandit.load(saved["bandit"])
        history.update(saved["history"])

    stage = Stage(
        POLICY, config.steps, lambda step: bandit.probabilities, after_step, state, load_state
    )

    def front_fn(index: int, finished: bool):
        steerable = SinglePolicy(policy, config.objectives, {POLICY: None})
        return snapshot(
            steerable, config, np.full((1, len(config.objectives)), 1 / len(config.objectives))
        )

    if train_stages(config, run_dir, callback, policy, [stage], front_fn):
        write_artifact(run_dir, config, {POLICY: None}, final_weights=bandit.probabilities.tolist())


def load(run_dir: Path, device: str = "auto") -> SinglePolicy:
    policy, artifact = load_adapters(run_dir, device)
    return SinglePolicy(policy, tuple(artifact["objectives"]), artifact["adapters"])
