"""D2. PMIX: the arithmetic mixture of the experts' next-token probabilities.

Reference: Kong et al., "EMORL: Ensemble Multi-Objective Reinforcement Learning for Efficient and
Flexible LLM Fine-Tuning" (SIGDIAL 2025, arXiv 2505.02579): the "logits aggregation" baseline
that the paper compares hidden-state aggregation (D3) against. In the authors' code it is

    pi_w(y_t | x, y_<t) = sum_i w_i pi_i(y_t | x, y_<t)        (arithmetic mixture)

where MOD (:mod:`~morl_core.methods.mod`) takes the geometric mixture prod_i pi_i^{w_i}. Where
the experts disagree, the arithmetic mixture keeps every token some weighted expert likes, the
geometric one only those all accept. EMORL's default mixing equals MOD up to temperature, so the
paper's D2-vs-D3 comparison is this method against ``emorl``, on the same experts.

Same experts as soups/MOD/EMORL; any w at inference; K forward passes per token (w_i = 0
skipped). The sampler gets logits ``log sum_i w_i pi_i`` (logsumexp in fp32), so temperature
and top-p apply to the mixed distribution.

Differs from the authors' code: there each expert first decodes its own reply and the per-step
probabilities of those *different* prefixes are averaged and read out greedily; here every
expert scores the one shared prefix, which is the token-level mixture the paper describes.
"""

from __future__ import annotations

from pathlib import Path

import torch

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.experts import load_aggregation, train_aggregation
from morl_core.methods.mod import Mod, expert_logprobs


def mixture_next_token(model, experts: list[str], weights: list[float], lean: bool = True):
    """Next-token function: logits log(sum_i w_i softmax(logits_i)), one cache per expert.

    Args:
        model: a peft model holding the experts as named adapters.
        experts: adapter names of the experts to mix.
        weights: their weights, > 0 (normalised here, so any positive scale gives the same mix).
        lean: decode each expert through the lean step where it applies (as MOD does).
    """
    w = torch.tensor(weights, dtype=torch.float32)
    log_w = torch.log(w / w.sum())  # (K,)
    per_expert = expert_logprobs(model, experts, lean)

    def forward(input_ids, attention_mask, position_ids, caches):
        logps, new_caches = per_expert(input_ids, attention_mask, position_ids, caches)  # (B, K, V)
        mixed = torch.logsumexp(logps + log_w.to(logps.device)[None, :, None], dim=1)  # (B, V)
        return mixed, new_caches

    return forward


class ProbabilityMixture(Mod):
    """Steerable that samples from sum_i w_i pi_i over the experts."""

    mix = staticmethod(mixture_next_token)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    train_aggregation(config, run_dir, callback, ProbabilityMixture)


def load(run_dir: Path, device: str = "auto") -> ProbabilityMixture:
    return load_aggregation(run_dir, device, ProbabilityMixture)
