"""The Relations page's library calls: sample generations and score them, correlate the
objectives (with bootstrap intervals), label pairs and fit the dependency graph; gradient
conflict computed on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from morl_core import settings
from morl_core.app.serving import (
    STEER_DECODING,
    Progress,
    SharedSteerable,
    noop,
    score_texts,
)
from morl_core.evaluation import preference_grid
from morl_core.prompts import load_prompts
from morl_core.relations import classify_relations, dependency_graph, gradient_conflict


@dataclass(frozen=True)
class RelationSamples:
    """Generations on a prompt set and their per-sample rewards (the input of every relation)."""

    objectives: tuple[str, ...]
    prompts: list[str]
    texts: list[str]
    rewards: np.ndarray  # (N, K)
    source: str


def relation_samples(
    shared: SharedSteerable,
    objective_names: Sequence[str],
    *,
    prompt_set: str = "default",
    n_prompts: int = 16,
    samples: int = 4,
    seed: int = 0,
    progress: Progress | None = None,
) -> RelationSamples:
    """Sample generations and score them on every objective.

    Generations come from ``shared``: the base model, or a trained artifact, whose samples are
    then spread over preferences so its whole front is represented.

    Raises:
        ValueError: fewer than two objectives, or an unknown prompt set.
    """
    progress = progress or noop
    names = list(objective_names)
    if len(names) < 2:
        raise ValueError("objectives: pick at least two")
    prompts = load_prompts(prompt_set, "eval")[:n_prompts]
    k_art = len(shared.objectives)
    prefs = preference_grid(k_art, max(samples, k_art)) if k_art >= 2 else np.zeros((1, 0))
    texts, asked = [], []
    for s in range(samples):
        progress(f"generating sample {s + 1} of {samples} for {len(prompts)} prompts", s / samples)
        w = prefs[s % len(prefs)].tolist()
        out, _ = shared.generate_cached(prompts, w, seed=seed + s, **STEER_DECODING)
        texts += out
        asked += prompts
    progress("scoring every objective", 0.9)
    rewards = score_texts(names, asked, texts)  # (N, K)
    progress("done", 1.0)
    source = "base model" if shared.run_dir is None else f"{shared.method} ({shared.run_dir.name})"
    return RelationSamples(tuple(names), asked, texts, rewards, source)


@dataclass(frozen=True)
class Relations:
    """Correlations with bootstrap intervals, labelled pairs and the dependency graph."""

    correlations: Any  # relations.CorrelationResult
    pairs: list  # relations.PairRelation
    edges: list  # relations.Edge
    graph_note: str

    def pair_rows(self) -> list[dict[str, Any]]:
        """One row per pair: names, coefficient, interval, label and why."""
        return [
            {
                "pair": f"{p.first} - {p.second}",
                "relation": p.label,
                "rho": round(p.coefficient, 3),
                "CI": f"[{p.lower:.2f}, {p.upper:.2f}]",
                "why": p.reason,
            }
            for p in self.pairs
        ]


def whose_samples_note(source: str) -> str:
    """Why the same pair can be "independent" here and "conflicting" elsewhere."""
    return (
        f"These relations are measured on samples from **{source}**. They describe those "
        "samples, not the objectives in general: a trained policy moves its samples along the "
        "trade-off, so a pair that looks independent on the base model's replies can conflict "
        "on a trained model's (and the README's classes are measured on the base model). "
        "Pick another source above to compare."
    )


def relate(
    data: RelationSamples, method: str = "spearman", seed: int = 0, n_boot: int = 500
) -> Relations:
    """Correlate the objectives of ``data`` (Pearson or Spearman), label pairs, fit the graph.

    Raises:
        ValueError: an objective is constant over the samples (its correlation is undefined).
    """
    flat = [n for n, col in zip(data.objectives, data.rewards.T, strict=True) if np.ptp(col) == 0]
    if flat:
        raise ValueError(
            f"{', '.join(flat)} scored the same on every sample, so its correlation is undefined;"
            " use more prompts or samples, or drop it"
        )
    rng = np.random.default_rng(seed)
    result, pairs = classify_relations(
        data.rewards, rng, list(data.objectives), method=method, n_boot=n_boot
    )
    try:
        edges, note = dependency_graph(data.rewards, list(data.objectives)), ""
    except ValueError as exc:
        edges, note = [], f"no dependency graph: {exc}"
    return Relations(result, pairs, edges, note)


def gradient_conflict_study(
    objective_names: Sequence[str],
    *,
    prompt_set: str = "default",
    batches: int = 3,
    batch_prompts: int = 4,
    k_samples: int = 4,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine matrix of per-objective policy gradients at the base model, averaged over batches.

    A fresh LoRA adapter (rank 8, all linear layers) sits on the embedded model; for each batch
    one rollout is scored on every objective and the REINFORCE gradient of each objective alone
    (RLOO baseline, as in training) is taken with respect to the adapter. Cheap on the embedded
    model: one rollout and K backward passes per batch.

    Returns:
        ``(cosine (K, K), mean gradient norms (K,))``.
    """
    import torch  # heavy: loaded only when someone asks for the gradient conflict

    from morl_core.policy import attach_lora, load_policy, set_threads
    from morl_core.rl.losses import group_advantages, token_logprobs

    progress = progress or noop
    names = list(objective_names)
    set_threads(settings.ui_threads())
    torch.manual_seed(seed)
    policy = attach_lora(load_policy("embedded", device="cpu"), r=8, alpha=32)
    params = [p for n, p in policy.model.named_parameters() if p.requires_grad]
    prompts = load_prompts(prompt_set, "train")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    cosines, norms = [], []
    for b in range(batches):
        progress(f"batch {b + 1} of {batches}: rollout and {len(names)} gradients", b / batches)
        batch = list(rng.choice(prompts, size=batch_prompts, replace=False))
        rollout = policy.rollout(
            batch, n=k_samples, max_new_tokens=24, temperature=1.0, generator=generator
        )
        texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
        rewards = score_texts(names, [p for p in batch for _ in range(k_samples)], texts)
        n_tok = rollout.completion_mask.shape[1]
        grads = []
        for i in range(len(names)):
            adv = group_advantages(torch.as_tensor(rewards[:, i], dtype=torch.float32), k_samples)
            logp, _ = token_logprobs(policy.model, rollout.input_ids, rollout.attention_mask, n_tok)
            mask = rollout.completion_mask.float()
            loss = -(adv * (logp * mask).sum(-1)).mean()
            policy.model.zero_grad(set_to_none=True)
            loss.backward()
            grads.append(
                torch.cat(
                    [
                        p.grad.flatten() if p.grad is not None else torch.zeros(p.numel())
                        for p in params
                    ]
                ).numpy()
            )
        g = np.stack(grads)  # (K, D)
        cosines.append(gradient_conflict(g))
        norms.append(np.linalg.norm(g, axis=1))
    progress("done", 1.0)
    return np.nanmean(np.stack(cosines), axis=0), np.mean(np.stack(norms), axis=0)
