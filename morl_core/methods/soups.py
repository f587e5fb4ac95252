"""D1. Rewarded Soups: interpolate the weights of per-objective experts.

Reference: Rame et al., "Rewarded soups: towards Pareto-optimal alignment by interpolating
weights fine-tuned on diverse rewards" (NeurIPS 2023, arXiv 2306.04488).

Train one LoRA expert theta_i per objective (RL on r_i alone, same base, same seed scheme), then
serve a preference w with the soup

    theta(w) = theta_0 + sum_i w_i * Delta_i,      Delta_i = s_i * B_i A_i  (LoRA update of expert i)

built exactly with peft's ``add_weighted_adapter(combination_type="cat")`` (rank sum_i r_i).
One model and one forward pass per token whatever K; the front is traced by sweeping w.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.common import AdapterPolicy
from morl_core.methods.experts import load_aggregation, train_aggregation

SOUP = "soup"
CACHED_SOUPS = 16


class Soup(AdapterPolicy):
    """Serves w with the weight-space mixture of the experts.

    The last ``CACHED_SOUPS`` mixtures stay loaded (a few MB each for a small model), so moving
    a slider back and forth over the same positions costs no adapter rebuild.
    """

    def __init__(self, policy, objectives, adapters):
        super().__init__(policy, objectives, adapters)
        self.models_kept = 1  # the soup is one model; experts are its ingredients
        self._soups: OrderedDict[tuple[float, ...], str] = OrderedDict()  # weights -> adapter name
        self._next = 0

    def choose(self, weights: np.ndarray) -> str:
        experts = list(self.adapters)
        used = [(name, float(w)) for name, w in zip(experts, weights, strict=True) if w > 0]
        if len(used) == 1:  # a one-hot preference is exactly that expert
            return used[0][0]
        key = tuple(round(float(w), 6) for w in weights)
        if key in self._soups:
            self._soups.move_to_end(key)
            return self._soups[key]
        model = self.policy.model
        if len(self._soups) >= CACHED_SOUPS:
            _, oldest = self._soups.popitem(last=False)
            model.delete_adapter(oldest)
        name = f"{SOUP}{self._next}"
        self._next += 1
        model.add_weighted_adapter(
            [n for n, _ in used], [w for _, w in used], name, combination_type="cat"
        )
        self._soups[key] = name
        return name


def soup(policy, objectives: tuple[str, ...], experts: list[str]) -> Soup:
    return Soup(policy, objectives, dict.fromkeys(experts))


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    train_aggregation(config, run_dir, callback, soup)


def load(run_dir: Path, device: str = "auto") -> Soup:
    return load_aggregation(run_dir, device, soup)
