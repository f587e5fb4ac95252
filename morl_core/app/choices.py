"""Preferences from choices for the Steer page: replies written at spread-out preferences, the
Bradley-Terry posterior over the simplex (:mod:`morl_core.elicit`) and what to show next.

The page keeps one :class:`ChoiceSession` per (artifact, method, prompt) in its session state;
everything here is plain Python and numpy apart from the one batched generation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from morl_core import elicit
from morl_core.app.serving import Progress, SharedSteerable, noop, score_texts
from morl_core.weights import simplex_lattice

ENOUGH_CHOICES = 10  # after this many the page states the inferred weights
DIVISIONS = {2: 7, 3: 4}  # lattice steps: 8 replies for 2 objectives, 15 for 3; else 2


@dataclass(frozen=True)
class Replies:
    """Candidate replies: one per preference of a simplex lattice, with their scores."""

    preferences: np.ndarray  # (N, K) the preference each reply was written at
    texts: list[str]
    scores: np.ndarray  # (N, K) larger is better


def write_replies(
    shared: SharedSteerable, prompt: str, *, seed: int = 0, progress: Progress = noop
) -> Replies:
    """One reply to ``prompt`` at each preference of a small simplex lattice, scored;
    ``ValueError`` on an empty prompt."""
    if not prompt.strip():
        raise ValueError("prompt: type a prompt or pick an example")
    k = len(shared.objectives)
    prefs = simplex_lattice(k, DIVISIONS.get(k, 2))[: elicit.MAX_CANDIDATES]
    texts = []
    for i, w in enumerate(prefs):
        progress(f"writing reply {i + 1} of {len(prefs)}", i / len(prefs))
        out, _ = shared.generate_cached([prompt], w.tolist(), seed=seed, **shared.decoding)
        texts.append(out[0])
    scores = np.asarray(score_texts(shared.objectives, [prompt] * len(texts), texts), dtype=float)
    progress("replies ready", 1.0)
    return Replies(prefs, texts, scores)


@dataclass
class ChoiceSession:
    """The running elicitation: posterior, pairs asked, and the pair on screen."""

    replies: Replies
    posterior: elicit.PreferencePosterior
    asked: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def start(cls, replies: Replies, rng: np.random.Generator | None = None) -> ChoiceSession:
        """A fresh session with the uniform prior."""
        k = replies.scores.shape[1]
        return cls(replies, elicit.prior(k, rng=rng or np.random.default_rng(0)))

    def pair(self) -> tuple[int, int]:
        """The two replies to show now (the most informative pair not yet asked)."""
        return self.posterior.next_pair(self.replies.scores, self.asked)

    def choose(self, winner: int, loser: int) -> None:
        """Fold in that reply ``winner`` was preferred over ``loser``."""
        s = self.replies.scores
        self.posterior = self.posterior.update(s[winner], s[loser], chose_a=True)
        self.asked.append((min(winner, loser), max(winner, loser)))

    @property
    def done(self) -> bool:
        """Whether there are enough choices to state the inferred weights."""
        return self.posterior.choices >= ENOUGH_CHOICES

    def estimate(self) -> elicit.Estimate:
        """Posterior mean and 90% interval."""
        return self.posterior.estimate(0.9)

    def summary(self, names) -> str:
        """``sentiment 0.62 [0.48, 0.75], ...`` for the page."""
        e = self.estimate()
        return ", ".join(
            f"{n} {m:.2f} [{lo:.2f}, {hi:.2f}]"
            for n, m, lo, hi in zip(names, e.mean, e.lower, e.upper, strict=True)
        )
