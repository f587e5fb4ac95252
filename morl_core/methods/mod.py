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
from morl_core.policy.sampling import hf_next_token
from morl_core.weights import check_weights


def expert_logprobs(model, experts: list[str], lean: bool = True):
    """The function ``(input_ids, attention_mask, position_ids, caches) -> (logps, caches)``
    giving each expert's next-token log-probabilities (B, K, V) in fp32 and the K new caches.

    The next-token functions of MOD (geometric mixture) and PMIX (arithmetic mixture) both
    start here: one pass per expert adapter, each with its own cache, through the policy's own
    next-token function (:func:`~morl_core.policy.sampling.hf_next_token`). On a float32 Llama
    (SmolLM2) its one-token steps take the lean decode step, which reads the active adapter at
    every step, so switching the adapter before each expert's pass is all it needs (the same
    logits, bit for bit); any other model, or ``lean=False``, runs the model's forward.
    """
    # one next-token function per expert: each remembers the lean step of its own reply
    next_tokens = [hf_next_token(model, lean=lean) for _ in experts]

    def forward(input_ids, attention_mask, position_ids, caches):
        caches = caches or [None] * len(experts)
        logps, new_caches = [], []
        for name, next_token, cache in zip(experts, next_tokens, caches, strict=True):
            model.set_adapter(name, inference_mode=True)  # frozen: set_adapter would train it
            logits, cache = next_token(input_ids, attention_mask, position_ids, cache)  # (B, V)
            logps.append(torch.log_softmax(logits, dim=-1))
            new_caches.append(cache)
        return torch.stack(logps, dim=1), new_caches  # (B, K, V)

    return forward


def mixed_next_token(model, experts: list[str], weights: list[float], lean: bool = True):
    """Next-token function: sum_i w_i log_softmax(logits_i), one cache per expert."""
    w = torch.tensor(weights, dtype=torch.float32)
    per_expert = expert_logprobs(model, experts, lean)

    def forward(input_ids, attention_mask, position_ids, caches):
        logps, new_caches = per_expert(input_ids, attention_mask, position_ids, caches)  # (B, K, V)
        return (w.to(logps.device)[None, :, None] * logps).sum(1), new_caches

    return forward


class Mod:
    """Steerable that decodes with the weighted mixture of the experts' log-probabilities."""

    mix = staticmethod(mixed_next_token)  # (model, experts, weights, lean) -> next-token function

    def __init__(self, policy, objectives: tuple[str, ...], experts: list[str], lean: bool = True):
        self.policy = policy
        self.objectives = tuple(objectives)
        self.experts = experts
        self.lean = lean  # False: every pass through the model's forward (the slower reference)
        self.models_kept = len(experts)
        self.passes_per_token = len(experts)

    def next_token(self, weights):
        """The next-token function for preference ``weights`` (zero-weight experts left out)."""
        w = check_weights(weights, k=len(self.objectives))
        used = [(name, float(x)) for name, x in zip(self.experts, w, strict=True) if x > 0]
        return self.mix(
            self.policy.model, [n for n, _ in used], [x for _, x in used], lean=self.lean
        )

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        return self.policy.generate(list(prompts), next_token=self.next_token(weights), **gen)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    train_aggregation(config, run_dir, callback, Mod)


def load(run_dir: Path, device: str = "auto") -> Mod:
    return load_aggregation(run_dir, device, Mod)
