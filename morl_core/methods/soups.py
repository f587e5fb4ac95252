"""D1. Rewarded Soups: interpolate the weights of per-objective experts.

Reference: Rame et al., "Rewarded soups: towards Pareto-optimal alignment by interpolating
weights fine-tuned on diverse rewards" (NeurIPS 2023, arXiv 2306.04488).

Train one LoRA expert theta_i per objective (RL on r_i alone, same base, same seed scheme), then
serve a preference w with the soup

    theta(w) = theta_0 + sum_i w_i * Delta_i,      Delta_i = s_i * B_i A_i  (LoRA update of expert i)

held exactly as one LoRA adapter of rank sum_i r_i, the layout of peft's
``add_weighted_adapter(combination_type="cat")``:

    A(w) = [w_1 s_1 A_1; ...; w_K s_K A_K]  (rows stacked),   B = [B_1 ... B_K],   scaling 1

so B A(w) = sum_i w_i s_i B_i A_i. The adapter is built once, when the soup is made; a new w
rewrites only the rows of A(w) (the products w_i * s_i * A_i, in peft's order, so the adapter is
the one peft would build for w), which costs a fraction of a millisecond where building an
adapter per preference cost ~50 ms of CPU before the first token. One model and one forward
pass per token whatever K; the front is traced by sweeping w.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.common import AdapterPolicy
from morl_core.methods.experts import load_aggregation, train_aggregation

SOUP = "soup"  # the adapter that holds the mixture of the last preference chosen


class Soup(AdapterPolicy):
    """Serves w with the weight-space mixture of the experts.

    ``choose(w)`` returns the name of the adapter that computes the mixture, for
    ``model.set_adapter``: an expert's own name for a one-hot w (that expert exactly), else
    ``SOUP``, rewritten in place for w. The soup holds the mixture of the latest ``choose``
    only, so choose and generate as one step (``generate`` does).
    """

    def __init__(self, policy, objectives, adapters):
        super().__init__(policy, objectives, adapters)
        self.models_kept = 1  # the soup is one model; experts are its ingredients
        # per LoRA layer, the rows of the soup's A that each expert fills: (layer, expert, start, stop)
        self._blocks: list[tuple[torch.nn.Module, str, int, int]] = []
        if len(self.adapters) > 1:
            self._build()

    def _build(self) -> None:
        """Add the rank-sum adapter once, with peft's 'cat' layout (B blocks copied from the
        experts, A rows rewritten per preference by :meth:`_mix`)."""
        from peft.tuners.lora import LoraLayer

        model = self.policy.model
        experts = list(self.adapters)
        if SOUP in model.peft_config:  # a second Soup over the same policy: rebuild it
            model.delete_adapter(SOUP)
        model.add_weighted_adapter(experts, [1.0] * len(experts), SOUP, combination_type="cat")
        # peft builds the new adapter's modules in train mode; give them the model's mode, so
        # that a soup served in eval mode decodes through the lean step like any adapter
        model.train(model.training)
        for layer in model.modules():
            if not isinstance(layer, LoraLayer) or SOUP not in layer.lora_A:
                continue
            start = 0  # experts in order, skipping those without this layer, as peft stacks them
            for name in experts:
                if name in layer.lora_A:
                    stop = start + layer.lora_A[name].weight.shape[0]
                    self._blocks.append((layer, name, start, stop))
                    start = stop
        if not self._blocks:
            raise ValueError(f"soups: the experts {experts} have no LoRA layer to mix")

    def _mix(self, weights: dict[str, float]) -> None:
        """Rewrite the soup's A rows as w_i * s_i * A_i (peft's 'cat' arithmetic, same order)."""
        with torch.no_grad():
            for layer, name, start, stop in self._blocks:
                rows = layer.lora_A[SOUP].weight[start:stop]
                torch.mul(layer.lora_A[name].weight, weights[name], out=rows)
                rows.mul_(layer.scaling[name])

    def choose(self, weights: np.ndarray) -> str:
        experts = list(self.adapters)
        mixture = {name: float(w) for name, w in zip(experts, weights, strict=True)}
        used = [name for name, w in mixture.items() if w > 0]
        if len(used) == 1:  # a one-hot preference is exactly that expert
            return used[0]
        self._mix(mixture)
        return SOUP


def soup(policy, objectives: tuple[str, ...], experts: list[str]) -> Soup:
    return Soup(policy, objectives, dict.fromkeys(experts))


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    train_aggregation(config, run_dir, callback, soup)


def load(run_dir: Path, device: str = "auto") -> Soup:
    return load_aggregation(run_dir, device, soup)
