"""One evaluation protocol for every method: a Steerable -> front points with standard errors.

For each preference w: generate one completion per held-out prompt (``samples`` times, seeded),
score all of them, and report the mean objective vector and its standard error. The same
prompts, seeds and decoding settings for every method make fronts comparable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from morl_core import objectives as objective_registry
from morl_core.weights import check_weights, simplex_lattice

EVAL_DECODING = {"max_new_tokens": 24, "temperature": 1.0, "top_p": 0.9}


def preference_grid(k: int, n: int) -> np.ndarray:
    """About ``n`` preferences on the k-simplex: n evenly spaced points for k=2, a lattice above."""
    if k == 2:
        t = np.linspace(0.0, 1.0, n)
        return np.stack([t, 1.0 - t], axis=1)[::-1]
    divisions = 1
    while len(simplex_lattice(k, divisions + 1)) <= n:
        divisions += 1
    return simplex_lattice(k, divisions)


def evaluate_front(
    steerable,
    prompts: Sequence[str],
    preferences: np.ndarray,
    objectives: Sequence[str],
    *,
    seed: int = 0,
    samples: int = 1,
    max_new_tokens: int = EVAL_DECODING["max_new_tokens"],
    prompt_columns: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Front points of ``steerable`` at each preference.

    ``prompt_columns`` are the prompt set's extra fields for imported reward functions (see
    :func:`morl_core.prompts.load_prompt_columns`). Points are means over the samples an
    objective applies to (a reward function's ``None`` is left out, not counted as 0).

    Returns:
        {"objectives": [...], "preferences": (P, K), "points": (P, K) mean rewards,
         "stderr": (P, K), "examples": one (prompt, completion) per preference,
         "distinct1"/"distinct2": (P,) lexical diversity of each preference's replies} as lists.
    """
    preferences = np.atleast_2d(np.asarray(preferences, dtype=float))
    from morl_core.rl.trainer import distinct_n

    points, errors, examples, distinct1, distinct2 = [], [], [], [], []
    for p_index, w in enumerate(preferences):
        check_weights(w, k=len(objectives))
        texts, asked = [], []
        for s in range(samples):
            texts += steerable.generate(
                list(prompts),
                list(w),
                seed=seed + 1000 * s + p_index,
                max_new_tokens=max_new_tokens,
                temperature=EVAL_DECODING["temperature"],
                top_p=EVAL_DECODING["top_p"],
            )
            asked += list(prompts)
        rewards = objective_registry.score(
            list(objectives), asked, texts, prompt_columns=prompt_columns
        )  # (n, K), NaN = not applicable
        points.append(objective_registry.mean_applicable_columns(rewards))
        errors.append(objective_registry.stderr_applicable_columns(rewards))
        examples.append([asked[0], texts[0]])
        distinct1.append(distinct_n(texts, 1))
        distinct2.append(distinct_n(texts, 2))
    return {
        "objectives": list(objectives),
        "preferences": preferences.tolist(),
        "points": np.asarray(points).tolist(),
        "stderr": np.asarray(errors).tolist(),
        "examples": examples,
        "distinct1": distinct1,
        "distinct2": distinct2,
    }
