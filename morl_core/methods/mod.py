"""D2. MOD: mix the experts' next-token distributions at decoding time.

Reference: Shi et al., "Decoding-Time Language Model Alignment with Multiple Objectives"
(NeurIPS 2024, arXiv 2406.18853).

With experts pi_i trained on objective i (KL-regularised to one base), the policy for w is

    log pi_w(y_t | x, y_<t) = sum_i w_i log pi_i(y_t | x, y_<t) - log Z

which is the optimum of the w-weighted KL-regularised objective (the paper's closed form).
No training beyond the experts, any w at inference, but K forward passes (K KV caches) per token.

This is the *geometric* mixture (a token must be likely under every weighted expert); ``pmix``
(:mod:`~morl_core.methods.mixture`) takes the arithmetic one, and EMORL's default hidden-state
mixing is exactly this one at temperature 1 / sum(a) (:mod:`~morl_core.methods.hidden`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.experts import load_aggregation, train_aggregation
from morl_core.weights import check_weights


def expert_logprobs(model, experts: list[str], input_ids, attention_mask, position_ids, caches):
    """Each expert's next-token log-probabilities (B, K, V) in fp32, and the K new caches.

    The next-token functions of MOD (geometric mixture) and PMIX (arithmetic mixture) both
    start here: one forward pass per expert adapter, each with its own KV cache.
    """
    caches = caches or [None] * len(experts)
    logps, new_caches = [], []
    for name, cache in zip(experts, caches, strict=True):
        model.set_adapter(name, inference_mode=True)  # frozen: set_adapter would make it trainable
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        logps.append(torch.log_softmax(out.logits[:, -1, :].float(), dim=-1))
        new_caches.append(out.cache)
    return torch.stack(logps, dim=1), new_caches


def mixed_next_token(model, experts: list[str], weights: list[float]):
    """Next-token function: sum_i w_i log_softmax(logits_i), one cache per expert."""
    w = torch.tensor(weights, dtype=torch.float32)

    def forward(input_ids, attention_mask, position_ids, caches):
        logps, new_caches = expert_logprobs(
            model, experts, input_ids, attention_mask, position_ids, caches
        )  # (B, K, V)
        return (w.to(logps.device)[None, :, None] * logps).sum(1), new_caches

    return forward


class Mod:
    """Steerable that decodes with the weighted mixture of the experts' log-probabilities."""

    mix = staticmethod(mixed_next_token)  # (model, experts, weights) -> next-token function

    def __init__(self, policy, objectives: tuple[str, ...], experts: list[str]):
        self.policy = policy
        self.objectives = tuple(objectives)
        self.experts = experts
        self.models_kept = len(experts)
        self.passes_per_token = len(experts)

    def next_token(self, weights):
        """The next-token function for preference ``weights`` (zero-weight experts left out)."""
        w = check_weights(weights, k=len(self.objectives))
        used = [(name, float(x)) for name, x in zip(self.experts, w, strict=True) if x > 0]
        return self.mix(self.policy.model, [n for n, _ in used], [x for _, x in used])

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        return self.policy.generate(list(prompts), next_token=self.next_token(weights), **gen)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    train_aggregation(config, run_dir, callback, Mod)


def load(run_dir: Path, device: str = "auto") -> Mod:
    return load_aggregation(run_dir, device, Mod)
