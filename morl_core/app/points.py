"""Choosing and judging front points (pure): nearest preference, degeneration flags, knee
point, pseudo-weight pick and nearest neighbour, each with the reason in words.

Maximisation convention: every objective maps to [0, 1], larger is better.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from morl_core.objectives.degeneration import UNKNOWN_WORD_RAMP, unknown_word_ratio
from morl_core.pareto import non_dominated


def nearest_preference(preferences: Sequence[Sequence[float]], weights: Sequence[float]) -> int:
    """Index of the evaluated preference closest (Euclidean) to ``weights``."""
    prefs = np.asarray(preferences, dtype=float)  # (P, K)
    return int(np.argmin(((prefs - np.asarray(weights, dtype=float)) ** 2).sum(-1)))


# --- degeneration and picks ------------------------------------------------------------------


@dataclass(frozen=True)
class Degeneration:
    """Signs that a policy games its rewards instead of writing well (means over its texts)."""

    words: float  # per completion
    repetition: float  # share of word 3-grams repeating an earlier one of the same text
    distinct1: float  # distinct words / words, over all texts together
    distinct2: float  # distinct word bigrams / bigrams
    garbled: float  # share of words with a run of 3+ punctuation marks (gamed-reward debris)
    kl: float | None  # mean per-token KL(policy || base) in nats; None if not cheap
    flags: tuple[str, ...]  # human-readable warnings, empty when nothing looks wrong


# Thresholds for the flags; chosen on the embedded model's base outputs, which pass all of them.
SHORT_WORDS, LONG_WORDS = 2.0, 40.0
MAX_REPETITION, MIN_DISTINCT2, MAX_KL, MAX_GARBLED = 0.25, 0.5, 1.0, 0.1
_PUNCTUATION_RUN = re.compile(r"[^\w\s]{3,}")


def _ngrams(words: list[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


def degeneration(texts: Sequence[str], kl: float | None = None) -> Degeneration:
    """Length, repetition, distinct-n, debris, made-up words (the word-list guard of
    :mod:`morl_core.objectives.degeneration`) of ``texts`` (and a given KL), with flags."""
    tokenized = [t.lower().split() for t in texts]
    words = float(np.mean([len(w) for w in tokenized])) if tokenized else 0.0
    repeats, total = 0, 0
    for w in tokenized:
        grams = _ngrams(w, 3)
        repeats += len(grams) - len(set(grams))
        total += len(grams)
    repetition = repeats / total if total else 0.0
    unigrams = [g for w in tokenized for g in w]
    bigrams = [g for w in tokenized for g in _ngrams(w, 2)]
    distinct1 = len(set(unigrams)) / len(unigrams) if unigrams else 0.0
    distinct2 = len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    garbled = sum(bool(_PUNCTUATION_RUN.search(g)) for g in unigrams) / max(1, len(unigrams))
    flags = []
    if words < SHORT_WORDS:
        flags.append(f"very short: {words:.1f} words on average (brevity gamed?)")
    if words > LONG_WORDS:
        flags.append(f"very long: {words:.0f} words on average")
    if repetition > MAX_REPETITION:
        flags.append(f"repetitive: {repetition:.0%} of 3-grams repeat")
    if bigrams and distinct2 < MIN_DISTINCT2:
        flags.append(f"low diversity: distinct-2 = {distinct2:.2f}")
    if garbled > MAX_GARBLED:
        flags.append(f"garbled: {garbled:.0%} of words hold runs of punctuation")
    # the word-list guard's own part (its lexical part is the flags above): a share of
    # non-English words past the start of its ramp
    made_up = [r for r in map(unknown_word_ratio, texts) if r > UNKNOWN_WORD_RAMP[0]]
    if len(texts) == 1 and made_up:
        flags.append(f"made-up words: {made_up[0]:.0%} of its words are not English")
    elif made_up:
        flags.append(f"made-up words in {len(made_up)} of {len(texts)} texts")
    if kl is not None and kl > MAX_KL:
        flags.append(f"far from the base model: KL = {kl:.2f} nats/token")
    return Degeneration(words, repetition, distinct1, distinct2, garbled, kl, tuple(flags))


@dataclass(frozen=True)
class Pick:
    """A front point chosen for the user, with the reason in words."""

    index: int
    rule: str
    reason: str


def _front_scaled(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    on_front = np.flatnonzero(non_dominated(points))
    front = points[on_front]
    low, high = front.min(0), front.max(0)
    span = np.where(high - low > 0, high - low, 1.0)
    return on_front, (front - low) / span  # (m,), (m, K) in [0, 1] per objective


def knee_point(points: Sequence[Sequence[float]]) -> Pick:
    """The knee: the front point farthest beyond the hyperplane through the front's extremes.

    Objectives are scaled to [0, 1] over the front; the hyperplane ``sum_i x_i = 1`` then passes
    through the single-objective extremes, and the knee maximises ``sum_i x_i - 1``: moving
    away from it costs more of one objective than it gains of the others (Das 1999; Branke et
    al. 2004). With fewer than three front points there is no bend, so the best balanced point
    (largest minimum objective) is taken and the reason says so.
    """
    pts = np.asarray(points, dtype=float)  # (P, K)
    on_front, scaled = _front_scaled(pts)
    if len(on_front) < 3:
        best = int(np.argmax(pts[on_front].min(1)))
        return Pick(
            int(on_front[best]),
            "knee",
            f"only {len(on_front)} front point(s): no bend to find, so the most balanced one "
            "(the largest worst objective) is shown",
        )
    bulge = scaled.sum(1) - 1.0  # (m,) distance beyond the extremes' hyperplane (unnormalised)
    best = int(np.argmax(bulge))
    distance = bulge[best] / math.sqrt(scaled.shape[1])
    return Pick(
        int(on_front[best]),
        "knee",
        f"largest bulge of the front: {distance:.2f} (scaled units) beyond the plane through "
        "the single-objective extremes; leaving it in any direction gives up more than it gains",
    )


def pseudo_weight_pick(points: Sequence[Sequence[float]], preference: Sequence[float]) -> Pick:
    """The front point whose pseudo-weights are closest to ``preference`` (Deb 2001, pymoo).

    Pseudo-weight of objective i at a point: its scaled position ``(f_i - min_i) / (max_i -
    min_i)`` over the front, normalised to sum 1 (maximisation), i.e. how far along each
    objective's range the point sits relative to the others.
    """
    pts = np.asarray(points, dtype=float)
    w = np.asarray(preference, dtype=float)
    w = w / w.sum()
    on_front, scaled = _front_scaled(pts)
    sums = scaled.sum(1, keepdims=True)
    pseudo = np.where(sums > 0, scaled / np.where(sums > 0, sums, 1.0), 1.0 / scaled.shape[1])
    best = int(np.argmin(np.abs(pseudo - w).sum(1)))
    shown = ", ".join(f"{x:.2f}" for x in pseudo[best])
    wanted = ", ".join(f"{x:.2f}" for x in w)
    return Pick(
        int(on_front[best]),
        "pseudo-weights",
        f"its pseudo-weights ({shown}) are the closest on the front to your preference ({wanted})",
    )


def neighbour_index(points: Sequence[Sequence[float]], index: int) -> int | None:
    """The closest other point (Euclidean in objective space), or None for a single point."""
    pts = np.asarray(points, dtype=float)
    if len(pts) < 2:
        return None
    d = ((pts - pts[index]) ** 2).sum(1)
    d[index] = np.inf
    return int(np.argmin(d))
