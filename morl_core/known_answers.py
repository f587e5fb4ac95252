"""Known answers: language-model MORL problems whose KL-regularised optimum is exact.

At an adjective slot ("The hotel was") a one-token completion is one word of the model's own
vocabulary. Two objectives reward that word's class: ``warm_word`` (1 for a warm adjective such
as "lovely") and ``cold_word`` (1 for a cold one such as "rude"); every other token scores 0 on
both. For any per-sample scalarisation ``s_w(y) = f_w(r(y))`` the maximiser of

    E_{y ~ pi}[ s_w(y) ] - beta * KL(pi || pi_ref)

is, prompt by prompt, ``pi*_w(y | x) proportional to pi_ref(y | x) exp(s_w(y) / beta)``. With one
token that is a softmax over the vocabulary, so the optimum, each objective's value under it
(the class rates) and the distance of a trained policy to it are exact numbers with no sampling
noise. Sweeping w over the simplex traces the exact KL-regularised front of linear scalarisation.

The token scores are computed by running the registered reward functions on every token's
decoded text, so the exact side and the trainer's side can never disagree on what is rewarded.

Power transforms of the rates (``rate ** p``) bend the same front: p < 1 makes it more convex,
p > 1 non-convex (a concave middle that linear scalarisation of the transformed values cannot
select). :func:`transformed` applies them to any set of front points.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from morl_core import objectives as registry
from morl_core.objectives.adjectives import (  # noqa: F401  (re-exported)
    COLD_WORDS,
    WARM_WORDS,
    cold_word,
    first_word,
    warm_word,
)
from morl_core.pareto import igd as pareto_igd
from morl_core.rl.trainer import scalarized

KNOWN_OBJECTIVES = ("warm_word", "cold_word")
PROMPT_SET = "adjectives"


def next_token_logprobs(policy, prompts: Sequence[str]) -> np.ndarray:
    """log pi(y | x) over the whole vocabulary, (P, V) in float64, with the active adapter."""
    ids, mask = policy.encode(list(prompts), max_new_tokens=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        logits = policy.model(
            input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1
        ).logits[:, -1, :]
    return torch.log_softmax(logits.double(), -1).cpu().numpy()


def reference_logprobs(policy, prompts: Sequence[str]) -> np.ndarray:
    """As :func:`next_token_logprobs` with every adapter switched off (the KL reference)."""
    model = policy.model
    if hasattr(model, "disable_adapter"):
        with model.disable_adapter():
            return next_token_logprobs(policy, prompts)
    return next_token_logprobs(policy, prompts)


def token_rewards(policy, objectives: Sequence[str] = KNOWN_OBJECTIVES) -> np.ndarray:
    """Each objective's reward for every one-token completion, (V, K).

    Every token is decoded exactly as the trainer decodes a one-token completion (EOS gives an
    empty reply) and scored by the registered reward functions.
    """
    vocab = policy.model.get_output_embeddings().weight.shape[0]
    texts = [
        "" if t == policy.eos_id else policy.tokenizer.decode([t], skip_special_tokens=True).strip()
        for t in range(vocab)
    ]
    return registry.score(tuple(objectives), [""] * vocab, texts)  # (V, K)


def scalarized_scores(rewards: np.ndarray, weights: Sequence[float], kind: str) -> np.ndarray:
    """Per-token scalarised reward s_w(y), (V,), exactly as the trainer computes it."""
    return scalarized(np.clip(rewards, 0.0, 1.0), np.asarray(weights, float), kind, None)


def optimal_logprobs(ref_logp: np.ndarray, scores: np.ndarray, beta: float) -> np.ndarray:
    """log pi* (P, V) of ``max E[s] - beta KL(pi || ref)``: ``ref * exp(s / beta)``, normalised."""
    if beta <= 0:
        raise ValueError(f"beta must be > 0 for a KL-regularised optimum, got {beta}")
    logits = ref_logp + scores[None, :] / beta
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def optimum(
    ref_logp: np.ndarray, rewards: np.ndarray, weights, beta: float, kind: str = "linear"
) -> np.ndarray:
    """log pi*_w (P, V) for preference ``weights`` under the trainer's ``kind`` scalarisation."""
    return optimal_logprobs(ref_logp, scalarized_scores(rewards, weights, kind), beta)


def rates(logp: np.ndarray, rewards: np.ndarray) -> np.ndarray:
    """Each objective's expected value under the policy, mean over prompts: (K,)."""
    return (np.exp(logp) @ rewards).mean(0)


def kl(logp: np.ndarray, other_logp: np.ndarray) -> float:
    """KL(p || q) per prompt (one token), mean over prompts."""
    p = np.exp(logp)
    return float((p * (logp - other_logp)).sum(-1).mean())


@dataclass(frozen=True)
class Comparison:
    """A policy against the exact optimum for one preference."""

    weights: tuple[float, ...]
    rates: tuple[float, ...]  # E_pi[r_k], mean over prompts
    optimal_rates: tuple[float, ...]  # E_pi*[r_k]
    kl_to_optimum: float  # KL(pi || pi*_w), mean over prompts
    kl_to_reference: float  # KL(pi || pi_ref)
    optimal_kl_to_reference: float  # KL(pi*_w || pi_ref)

    @property
    def rate_error(self) -> float:
        """Largest absolute error of an objective's rate against the optimum."""
        return float(np.max(np.abs(np.subtract(self.rates, self.optimal_rates))))

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()},
            "rate_error": self.rate_error,
        }


def compare(
    logp: np.ndarray,
    ref_logp: np.ndarray,
    rewards: np.ndarray,
    weights: Sequence[float],
    beta: float,
    kind: str = "linear",
) -> Comparison:
    """Compare a policy's next-token log-probs (P, V) with pi*_w for the same prompts."""
    star = optimum(ref_logp, rewards, weights, beta, kind)
    return Comparison(
        weights=tuple(float(x) for x in weights),
        rates=tuple(rates(logp, rewards).tolist()),
        optimal_rates=tuple(rates(star, rewards).tolist()),
        kl_to_optimum=kl(logp, star),
        kl_to_reference=kl(logp, ref_logp),
        optimal_kl_to_reference=kl(star, ref_logp),
    )


def exact_front(
    ref_logp: np.ndarray, rewards: np.ndarray, beta: float, n: int = 201, kind: str = "linear"
) -> np.ndarray:
    """The exact KL-regularised front of a two-objective problem: (n, 2) rates of pi*_w."""
    if rewards.shape[1] != 2:
        raise ValueError(f"exact_front sweeps two objectives, got {rewards.shape[1]}")
    points = []
    for a in np.linspace(0.0, 1.0, n):
        points.append(rates(optimum(ref_logp, rewards, (a, 1.0 - a), beta, kind), rewards))
    return np.asarray(points)


def transformed(points: np.ndarray, power: float) -> np.ndarray:
    """Front points with each rate raised to ``power`` (p > 1: a non-convex front)."""
    return np.clip(np.asarray(points, float), 0.0, 1.0) ** power


def igd(points: np.ndarray, front: np.ndarray) -> float:
    """Mean distance from each exact front point to the nearest achieved point (lower = closer)."""
    return float(pareto_igd(np.asarray(points, float), np.asarray(front, float)))
