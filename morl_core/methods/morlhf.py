"""A. MORLHF: one policy per preference, each trained by RL on a fixed scalarisation.

Reference: Wu et al., "Fine-Grained Human Feedback Gives Better Rewards for Language Model
Training" (arXiv 2306.01693) and the "uniform weighted" baselines of EMORL (arXiv 2505.02579);
the multi-objective RLHF recipe that Rewarded Soups (arXiv 2306.04488) compares against.

For each preference w_p on a grid of the simplex, train a LoRA policy pi_p to maximise

    J_p(theta) = E_{x, y ~ pi_theta} [ f_{w_p}(r_1(x, y), ..., r_K(x, y)) ] - beta KL(pi_theta || pi_ref)

with f one of: linear sum_i w_i r_i, log-sum sum_i w_i log r_i (EMORL), or Tchebycheff
-max_i w_i |z*_i - r_i|. The front is the set of the P policies; serving a preference means
picking the policy trained nearest to it. Cost: P trainings and P adapters kept.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.common import (
    AdapterPolicy,
    Stage,
    eval_preferences,
    load_adapters,
    open_policy,
    snapshot,
    train_stages,
    write_artifact,
)


def preferences(config: RunConfig) -> np.ndarray:
    """The training preferences: the run's ``weights`` alone, or the evaluation grid."""
    if config.weights is not None:
        return np.asarray([config.weights], dtype=float)
    return eval_preferences(config)


def adapter_name(index: int) -> str:
    return f"pref{index:02d}"


class NearestPreference(AdapterPolicy):
    """Serves w with the policy whose training preference is closest (Euclidean)."""

    def choose(self, weights: np.ndarray) -> str:
        names = list(self.adapters)
        prefs = np.asarray([self.adapters[n] for n in names])
        return names[int(np.argmin(((prefs - weights) ** 2).sum(-1)))]


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    policy = open_policy(config)
    prefs = preferences(config)
    adapters = {adapter_name(i): w.tolist() for i, w in enumerate(prefs)}
    stages = [
        Stage(name, config.steps, (lambda step, w=w: w))
        for name, w in zip(adapters, prefs, strict=True)
    ]

    def front_fn(index: int, finished: bool):
        # The front grows one point per finished policy: evaluate that policy at its preference.
        trained = dict(list(adapters.items())[: index + 1])
        steerable = NearestPreference(policy, config.objectives, trained)
        return {
            **snapshot(steerable, config, prefs[: index + 1]),
            "partial": index + 1 < len(prefs),
        }

    if train_stages(config, run_dir, callback, policy, stages, front_fn):
        write_artifact(run_dir, config, adapters)


def load(run_dir: Path, device: str = "auto") -> NearestPreference:
    policy, artifact = load_adapters(run_dir, device)
    return NearestPreference(policy, tuple(artifact["objectives"]), artifact["adapters"])
