"""RiC's tags: a preference's target rewards, and a pooled reply's achieved ones, as text.

Used by :mod:`morl_core.methods.ric` (training and inference) and the RiC probes under
``benchmarks/``.

**Conditioning.** The prompt x is prefixed with target-reward tags, then a newline. A tag is
written for every objective asked for *below its maximum*; an objective without a tag is asked
for at its maximum::

    <brevity=0.6>\\nThe hotel was          (sentiment at 1.0, brevity at 0.6)
    \\nThe hotel was                       (every objective at its maximum)

Targets are rounded to one decimal; no tokens are added (the tags are ordinary BPE pieces) and
the LoRA adapter learns to read them.

*Differs from the paper: only relaxed objectives are tagged.* With every objective written the
two ends (``<warm_word=1.0><cold_word=0.0>`` and its swap) are anagrams, which the small model
did not learn to tell apart; naming only the relaxed ones makes the ends differ in *which* name
is written. Artifacts without a ``tags`` field (older runs) are served with every tag written.

*Differs from the paper: tags in words (option ``tags="words"``), for chat models.* Base SmolLM2
does not tell the two ends' tags apart but does follow a request ("Make your reply very
formal." against "... very simple.": 5-6 standard errors apart on both objectives;
``benchmarks/ric_tag_wording.py``). So each target becomes a degree word before the objective's
registry adjective (0.9 and above "very", from 0.6 "fairly", from 0.3 "a little", below that
not asked), for inference and for the pool's labels alike; objectives without one are refused::

    Make your reply very formal and a little simple.\\nHow do I ...   (targets 1.0 and 0.4)

*Differs from the paper: tags rescale between the pool's 10th and 90th percentiles.* The ends of
the front ask for one objective at its best and another at 0.0. Rescaled from the pool's minimum
to its maximum (the paper's r_min and r_max), continuous rewards almost never give a sample those
tags: of SmolLM2's kept formality/readability pool, 0.2 % and 0.1 % carried the two ends' tags
(a pool minimum is an outlier, such as a reply of emoji), and the run never learned to read
them; from the 10th to the 90th percentile, clipped, 12 % and 8 % do (measured by
``benchmarks/ric_tag_reading.py``). On 0/1 rewards the two rules agree (the ends' tags are most
of the pool, and the known-answer tests read them).

**Preference-to-target map (the paper's, Section 3.3)**, rewards normalised to [0, 1]::

    target_i(w) = 1            if w_i >= 1/K
                = K * w_i      otherwise
"""

from __future__ import annotations

import numpy as np

from morl_core.objectives.registry import OBJECTIVES, base_name

TAG_STYLES = ("relaxed", "all", "words")  # "all": every objective tagged (older artifacts)
DEGREES = ((0.9, "very"), (0.6, "fairly"), (0.3, "a little"))  # words tags; below: not asked
# tags rescale each reward between these pool quantiles (see "Differs from the paper" above)
RELABEL_QUANTILES = (0.1, 0.9)
RELABEL_RULES = ("quantiles", "minmax")  # "minmax": artifacts without "relabel"


def targets(weights: np.ndarray) -> np.ndarray:
    """RiC's preference-to-target map for rewards in [0, 1], rounded to one decimal (K,)."""
    w = np.asarray(weights, dtype=float)
    k = len(w)
    raw = np.where(w >= 1.0 / k - 1e-9, 1.0, k * w)
    return np.round(raw, 1)


def tag_name(objective: str) -> str:
    """The tag of an objective: its registry name (the last part of a dotted path)."""
    return objective.replace(":", ".").rsplit(".", 1)[-1]


def adjective(objective: str) -> str:
    """The registry adjective of an objective (``formal``); ValueError when it has none."""
    found = OBJECTIVES.get(base_name(objective) or "")
    if found is None or not found.adjective:
        raise ValueError(f"tags 'words': objective {objective!r} has no adjective; use 'relaxed'")
    return found.adjective


def tag_text(objectives, values, style: str = "relaxed") -> str:
    """The tags for target (or relabelled) rewards ``values`` (K,) in [0, 1], e.g.
    ``'<brevity=0.6>\\n'`` or, in words, ``'Make your reply very formal.\\n'``; ``style`` is
    one of :data:`TAG_STYLES`."""
    if style not in TAG_STYLES:
        raise ValueError(f"tags must be one of {', '.join(TAG_STYLES)}, got {style!r}")
    if style == "words":
        asked = [
            f"{next(word for low, word in DEGREES if v >= low - 1e-9)} {adjective(o)}"
            for o, v in zip(objectives, (round(float(v), 1) for v in values), strict=True)
            if v >= DEGREES[-1][0] - 1e-9
        ]
        if not asked:
            return ""
        listed = ", ".join(asked[:-1]) + " and " + asked[-1] if len(asked) > 1 else asked[0]
        return f"Make your reply {listed}.\n"
    tags = "".join(
        f"<{tag_name(o)}={v:.1f}>"
        for o, v in zip(objectives, values, strict=True)
        if style == "all" or round(float(v), 1) < 1.0
    )
    return tags + "\n"


def prefix(objectives, weights: np.ndarray, style: str = "relaxed") -> str:
    """The prompt prefix for preference ``weights``, e.g. ``'<brevity=0.6>\\n'``."""
    return tag_text(objectives, targets(weights), style)


def relabel(norm: np.ndarray, rule: str = "quantiles") -> np.ndarray:
    """Achieved normalised rewards (N, K) -> tag values (N, K), rounded to 0.1: each objective
    rescaled from the pool's ``RELABEL_QUANTILES`` (rule ``"quantiles"``; clipped, so the pool's
    bottom and top tenth get 0.0 and 1.0) or from its minimum to maximum (``"minmax"``, runs
    trained before the quantiles). Where the quantiles meet (a 0/1 reward that fewer than a
    tenth of the pool reaches), that objective falls back to its minimum and maximum; an
    objective the pool never varies on is at 1.0; a not-applicable score (NaN) gets the
    objective's pool mean."""
    if rule not in RELABEL_RULES:
        raise ValueError(f"relabel rule must be one of {', '.join(RELABEL_RULES)}, got {rule!r}")
    low, high = np.nanmin(norm, axis=0), np.nanmax(norm, axis=0)
    if rule == "quantiles":
        q_low, q_high = np.nanquantile(norm, RELABEL_QUANTILES, axis=0)
        apart = q_high - q_low > 1e-12
        low, high = np.where(apart, q_low, low), np.where(apart, q_high, high)
    span = high - low
    scaled = np.where(span > 1e-12, (norm - low) / np.where(span > 1e-12, span, 1.0), 1.0)
    scaled = np.clip(scaled, 0.0, 1.0)
    scaled = np.where(np.isnan(scaled), np.nanmean(scaled, axis=0), scaled)
    return np.round(np.nan_to_num(scaled, nan=1.0), 1)
