"""Preferences from choices: a Bradley-Terry posterior over the preference simplex.

A person is shown two replies ``a`` and ``b`` with objective score vectors ``s_a`` and ``s_b``
(each in [0, 1]^K, larger is better) and says which one is better. We model the choice with a
Bradley-Terry (logistic) likelihood on the linear utility of the preference ``w``:

    P(a over b | w) = sigma(beta * w . (s_a - s_b)),     w on the simplex (w_i >= 0, sum w_i = 1)

(Bradley & Terry 1952; the same link as reward modelling from pairwise comparisons, e.g.
Christiano et al. 2017, arXiv 1706.03741). ``beta`` is how sharply the person separates replies
whose utilities differ: a gap of 0.1 in utility is chosen ~88% of the time at beta = 20.

The posterior over ``w`` is kept on particles: a uniform simplex lattice for K <= 3 (exact up
to the grid) and uniform Dirichlet samples for more objectives; the prior is uniform on the
simplex. After each choice the particle log-weights add the choice's log-likelihood. The
estimate is the posterior mean with per-objective equal-tailed credible intervals, and the next
pair is the one with the largest expected information gain about ``w`` (the mutual
information between the choice and ``w``, "BALD", Houlsby et al. 2011, arXiv 1112.5745):

    IG(a, b) = H(E_w[p]) - E_w[H(p)],   p = P(a over b | w),  H the binary entropy

Pure numpy; no I/O, no global RNG.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from morl_core.weights import dirichlet, simplex_lattice

DEFAULT_BETA = 20.0
MAX_BETA = 1000.0
MAX_OBJECTIVES = 10
MAX_CANDIDATES = 64  # pairs grow as N^2 / 2: 64 replies x 1891 particles -> 30 MB per step
MAX_PARTICLES = 20_000
LATTICE_DIVISIONS = {2: 200, 3: 40}  # 201 and 861 particles: a 0.005 / 0.025 grid
SAMPLED_PARTICLES = 6000  # K >= 4: uniform Dirichlet samples


def _log_sigmoid(x: np.ndarray) -> np.ndarray:
    return -np.logaddexp(0.0, -x)


def _binary_entropy(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-12, 1 - 1e-12)
    return -(p * np.log(p) + (1 - p) * np.log1p(-p))


def _scores(values: Sequence[float] | np.ndarray, k: int, name: str) -> np.ndarray:
    s = np.asarray(values, dtype=float)
    if s.shape != (k,) or not np.all(np.isfinite(s)):
        raise ValueError(f"{name}: expected {k} finite scores, got {np.asarray(values).tolist()}")
    return s


@dataclass(frozen=True)
class Estimate:
    """The inferred preference: posterior mean of w and equal-tailed credible intervals."""

    mean: np.ndarray  # (K,) on the simplex
    lower: np.ndarray  # (K,)
    upper: np.ndarray  # (K,)
    level: float  # the intervals' probability, e.g. 0.9
    choices: int  # how many choices it rests on

    @property
    def width(self) -> float:
        """The widest of the per-objective intervals."""
        return float(np.max(self.upper - self.lower))


@dataclass(frozen=True)
class PreferencePosterior:
    """Particles on the simplex and their normalised log-weights (immutable: updates return a
    new posterior, so the app can keep one per session and step back)."""

    particles: np.ndarray  # (M, K) on the simplex
    log_weights: np.ndarray  # (M,) normalised (logsumexp = 0)
    beta: float  # Bradley-Terry sharpness
    choices: int = 0  # folded in so far

    @property
    def k(self) -> int:
        """Number of objectives."""
        return int(self.particles.shape[1])

    @property
    def probabilities(self) -> np.ndarray:
        """(M,) posterior probability of each particle."""
        return np.exp(self.log_weights)

    def update(self, s_a, s_b, chose_a: bool) -> PreferencePosterior:
        """The posterior after the person preferred reply a (scores ``s_a`` (K,)) over b
        (``chose_a``) or b over a."""
        d = _scores(s_a, self.k, "s_a") - _scores(s_b, self.k, "s_b")
        sign = 1.0 if chose_a else -1.0
        log_w = self.log_weights + _log_sigmoid(sign * self.beta * (self.particles @ d))
        log_w = log_w - np.logaddexp.reduce(log_w)
        return PreferencePosterior(self.particles, log_w, self.beta, self.choices + 1)

    def estimate(self, level: float = 0.9) -> Estimate:
        """Posterior mean and equal-tailed ``level`` credible interval per objective."""
        if not 0.0 < level < 1.0:
            raise ValueError(f"level: expected a probability in (0, 1), got {level!r}")
        p = self.probabilities
        mean = p @ self.particles
        mean = mean / mean.sum()
        tail = (1.0 - level) / 2.0
        lower, upper = np.empty(self.k), np.empty(self.k)
        for i in range(self.k):
            order = np.argsort(self.particles[:, i], kind="stable")
            cdf = np.cumsum(p[order])
            values = self.particles[order, i]
            lower[i] = values[min(np.searchsorted(cdf, tail), len(values) - 1)]
            upper[i] = values[min(np.searchsorted(cdf, 1.0 - tail), len(values) - 1)]
        return Estimate(mean, lower, upper, float(level), self.choices)

    def information_gain(self, scores) -> np.ndarray:
        """(N, N) expected information gain (nats) of asking about each pair of replies with
        ``scores`` (N, K)."""
        s = _candidates(scores, self.k)
        utility = self.particles @ s.T  # (M, N)
        rows, cols = np.triu_indices(len(s), k=1)  # every unordered pair once
        prob = 1.0 / (1.0 + np.exp(-self.beta * (utility[:, rows] - utility[:, cols])))  # (M, P)
        p = self.probabilities
        pair_gain = _binary_entropy(p @ prob) - p @ _binary_entropy(prob)  # (P,)
        gain = np.zeros((len(s), len(s)))
        gain[rows, cols] = gain[cols, rows] = pair_gain
        return gain

    def next_pair(self, scores, asked: Iterable[tuple[int, int]] = ()) -> tuple[int, int]:
        """The pair ``(i, j)``, ``i < j``, of candidates (``scores`` (N, K), N >= 2) whose answer
        tells the most about w; pairs in ``asked`` (either order) only when nothing else is left.
        ``ValueError`` on malformed scores."""
        gain = self.information_gain(scores)
        n = len(gain)
        upper = np.triu(np.ones((n, n), dtype=bool), k=1)
        fresh = upper.copy()
        for a, b in asked:
            if 0 <= a < n and 0 <= b < n:
                fresh[min(a, b), max(a, b)] = False
        allowed = fresh if fresh.any() else upper
        masked = np.where(allowed, gain, -np.inf)
        i, j = np.unravel_index(int(np.argmax(masked)), masked.shape)
        return int(i), int(j)


def _candidates(scores, k: int) -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.ndim != 2 or s.shape[1] != k or not np.all(np.isfinite(s)):
        raise ValueError(f"scores: expected an (N, {k}) array of finite scores, got {s.shape}")
    if not 2 <= len(s) <= MAX_CANDIDATES:
        raise ValueError(f"scores: expected between 2 and {MAX_CANDIDATES} replies, got {len(s)}")
    return s


def prior(
    k: int,
    *,
    beta: float = DEFAULT_BETA,
    particles: int | None = None,
    rng: np.random.Generator | None = None,
) -> PreferencePosterior:
    """The uniform prior on the k-simplex (k in 2..MAX_OBJECTIVES), no choices yet.

    K <= 3: a lattice; K >= 4: ``particles`` Dirichlet samples drawn from ``rng`` (required).
    ``ValueError`` on k, beta (in (0, MAX_BETA]) or particles out of range, or a missing rng.
    """
    if int(k) != k or not 2 <= k <= MAX_OBJECTIVES:
        raise ValueError(f"k: expected an integer in 2..{MAX_OBJECTIVES}, got {k!r}")
    if not (np.isfinite(beta) and 0.0 < beta <= MAX_BETA):
        raise ValueError(f"beta: expected a number in (0, {MAX_BETA}], got {beta!r}")
    k = int(k)
    if k in LATTICE_DIVISIONS:
        points = simplex_lattice(k, LATTICE_DIVISIONS[k])
    else:
        n = SAMPLED_PARTICLES if particles is None else int(particles)
        if not 100 <= n <= MAX_PARTICLES:
            raise ValueError(f"particles: expected 100..{MAX_PARTICLES}, got {particles!r}")
        if rng is None:
            raise ValueError("rng: a numpy Generator is needed to sample particles for K >= 4")
        points = dirichlet(k, n, rng)
    log_w = np.full(len(points), -np.log(len(points)))
    return PreferencePosterior(points, log_w, float(beta))
