"""The Relations page's library calls: sample and score generations, correlate the objectives
(bootstrap intervals), label pairs, fit the dependency graph; gradient conflict on demand."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from morl_core import relations, settings
from morl_core.app.serving import (
    Progress,
    SharedSteerable,
    noop,
    score_texts,
)
from morl_core.evaluation import preference_grid
from morl_core.prompts import load_prompts
from morl_core.relations import classify_relations, dependency_graph


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
    """Generations from ``shared`` (a trained artifact's spread over preferences, so its whole
    front is represented), scored on every objective; ``ValueError`` on fewer than two
    objectives or an unknown prompt set."""
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
        out, _ = shared.generate_cached(prompts, w, seed=seed + s, **shared.decoding)
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
    """Correlate the objectives of ``data`` (Pearson or Spearman), label pairs, fit the graph;
    ``ValueError`` when an objective is constant over the samples."""
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
    objective_names: Sequence[str], *, seed: int = 0, progress: Progress | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`morl_core.relations.gradient_conflict_study` on the embedded model, with the UI's
    threads and import policy."""
    return relations.gradient_conflict_study(
        objective_names,
        seed=seed,
        threads=settings.ui_threads(),
        allow_import=settings.ui_allows_imports(),
        progress=progress,
    )
