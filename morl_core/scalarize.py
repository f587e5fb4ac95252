"""Scalarisation of multi-objective rewards, and the per-objective normalisers it needs.

Convention: **maximisation**. Rewards are an (N, K) matrix, larger is better on every column,
and every scalarisation returns an (N,) vector in which larger is better too, so the trainer can
feed it to RL as the reward. Rewards must be on comparable scales first: either a fixed
[low, high] -> [0, 1] map (for scorers with known ranges, see
:mod:`morl_core.objectives.normalize`) or running statistics (:class:`RunningMeanStd`).

Kinds (``w`` on the simplex, see :mod:`morl_core.weights`):

* ``linear``: ``sum_i w_i r_i``. Its maximisers over a front are supporting points of the convex
  hull, so it can never select a point in a concave (non-convex) part of a front.
* ``logsum`` (EMORL): ``sum_i w_i log(max(r_i, eps))``. Concave in r, so it favours balanced
  rewards; expects rewards in (0, 1] (use the fixed map first).
* ``tchebycheff``: ``-max_i w_i |z*_i - r_i| - rho * sum_i w_i |z*_i - r_i|`` with a utopia point
  ``z*`` at least as good as any attainable reward. Every Pareto-optimal point, including those in
  concave regions, maximises it for some w; a small ``rho > 0`` (augmented form) rules out
  weakly Pareto-optimal maximisers.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_matrix, as_vector
from morl_core.weights import check_weights

LOGSUM_EPS = 1e-6  # floor applied before log, so zero rewards give a large finite penalty


def _check(rewards: ArrayLike, weights: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    r = as_matrix(rewards, "rewards", min_k=1)  # (N, K)
    w = check_weights(weights, k=r.shape[1])
    if w.ndim != 1:
        raise ValueError(
            f"weights: expected one preference of shape ({r.shape[1]},), got {w.shape}"
        )
    return r, w


def linear(rewards: ArrayLike, weights: ArrayLike) -> np.ndarray:
    """Weighted sum ``rewards (N, K) @ weights (K,)`` -> (N,)."""
    r, w = _check(rewards, weights)
    return r @ w


def logsum(rewards: ArrayLike, weights: ArrayLike, eps: float = LOGSUM_EPS) -> np.ndarray:
    """EMORL log-sum ``sum_i w_i log(max(r_i, eps))`` -> (N,), at most 0 for rewards in [0, 1]."""
    r, w = _check(rewards, weights)
    if not np.isfinite(eps) or eps <= 0:
        raise ValueError(f"eps: expected a finite number > 0, got {eps}")
    return np.log(np.maximum(r, eps)) @ w


def tchebycheff(
    rewards: ArrayLike, weights: ArrayLike, utopia: ArrayLike | None = None, rho: float = 0.0
) -> np.ndarray:
    """(Augmented) Tchebycheff, negated so larger is better -> (N,), at most 0.

    ``utopia`` (K,) is required, never inferred from the batch (that would make the reward
    batch-dependent); for rewards in [0, 1] use ``np.full(K, 1.0)``. ``rho >= 0`` (0: plain form).
    """
    r, w = _check(rewards, weights)
    if utopia is None:
        raise ValueError(f"utopia: expected a utopia point of shape ({r.shape[1]},), got None")
    z = as_vector(utopia, "utopia", k=r.shape[1])  # (K,)
    if not np.isfinite(rho) or rho < 0:
        raise ValueError(f"rho: expected a finite number >= 0, got {rho}")
    gaps = w * np.abs(z - r)  # (N, K)
    return -(gaps.max(axis=1) + rho * gaps.sum(axis=1))


SCALARIZATIONS: dict[str, Callable[..., np.ndarray]] = {
    "linear": linear,
    "logsum": logsum,
    "tchebycheff": tchebycheff,
}
_OPTIONS = {"linear": set(), "logsum": {"eps"}, "tchebycheff": {"utopia", "rho"}}


def scalarize(
    rewards: ArrayLike, weights: ArrayLike, kind: str = "linear", **kwargs: object
) -> np.ndarray:
    """Scalarise rewards (N, K) with one preference (K,) -> (N,), maximisation in and out.

    ``kind`` is a key of :data:`SCALARIZATIONS`; ``kwargs`` its options (``eps``; ``utopia``,
    ``rho``). ValueError on an unknown kind or option, bad shapes, NaN/inf or bad weights.

    Example:
        >>> scalarize([[1.0, 0.0], [0.4, 0.4]], [0.5, 0.5], "tchebycheff", utopia=[1, 1]).tolist()
        [-0.5, -0.3]
    """
    if kind not in SCALARIZATIONS:
        raise ValueError(f"kind: expected one of {sorted(SCALARIZATIONS)}, got {kind!r}")
    unknown = set(kwargs) - _OPTIONS[kind]
    if unknown:
        raise ValueError(
            f"{kind}: expected options {sorted(_OPTIONS[kind]) or 'none'}, got {sorted(unknown)}"
        )
    return SCALARIZATIONS[kind](rewards, weights, **kwargs)


def scalarize_available(
    rewards: ArrayLike,
    weights: ArrayLike,
    kind: str = "linear",
    group_size: int | None = None,
    **kwargs: object,
) -> np.ndarray:
    """``scalarize`` where NaN means "objective not applicable to this sample"; finite (N,).

    Each row is scalarised over its applicable objectives, the preference (and a ``utopia``)
    renormalised over them. A row with nothing applicable (or only weight-0 objectives) gets the
    mean of the other rows of its ``group_size`` group (so its group-baseline advantage is about
    0), of all rows when ``group_size`` is None, or 0 when nothing in reach applies.

    Example:
        >>> scalarize_available([[1.0, float("nan")], [0.2, 0.4]], [0.5, 0.5]).tolist()
        [1.0, 0.30000000000000004]
    """
    r = as_matrix(rewards, "rewards", min_k=1, allow_nan_rows=True)  # (N, K)
    w = check_weights(weights, k=r.shape[1])
    if not np.isnan(r).any():
        return scalarize(r, w, kind, **kwargs)
    out = np.full(r.shape[0], np.nan)  # (N,)
    applicable = ~np.isnan(r)  # (N, K)
    for pattern in np.unique(applicable, axis=0):
        rows = (applicable == pattern).all(axis=1)
        if not pattern.any() or w[pattern].sum() <= 0:
            continue
        options = dict(kwargs)
        if options.get("utopia") is not None:
            options["utopia"] = as_vector(options["utopia"], "utopia", k=r.shape[1])[pattern]
        sub_w = w[pattern] / w[pattern].sum()
        out[rows] = scalarize(r[rows][:, pattern], sub_w, kind, **options)
    return _fill_missing(out, group_size)


def _fill_missing(values: np.ndarray, group_size: int | None) -> np.ndarray:
    if not np.isnan(values).any():
        return values
    n = len(values)
    size = n if not group_size or n % group_size else group_size
    groups = values.reshape(-1, size).copy()  # (G, size)
    for g in groups:
        known = g[~np.isnan(g)]
        g[np.isnan(g)] = known.mean() if known.size else 0.0
    return groups.reshape(-1)


# --- normalisation ---
class RunningMeanStd:
    """Running per-objective mean and variance (Chan et al. parallel update), for normalising.

    ``normalize`` maps rewards to ``(r - mean) / sqrt(var + epsilon)``, clipped to
    ``[-clip, clip]`` when ``clip`` is given; before the first ``update`` it is the identity.
    :meth:`state_dict` is plain JSON-ready data, for checkpoints.
    """

    def __init__(self, k: int, epsilon: float = 1e-8, clip: float | None = None) -> None:
        if int(k) != k or k < 1:
            raise ValueError(f"k: expected an integer >= 1, got {k!r}")
        if not np.isfinite(epsilon) or epsilon <= 0:
            raise ValueError(f"epsilon: expected a finite number > 0, got {epsilon}")
        if clip is not None and (not np.isfinite(clip) or clip <= 0):
            raise ValueError(f"clip: expected None or a finite number > 0, got {clip}")
        self.k = int(k)
        self.epsilon = float(epsilon)
        self.clip = None if clip is None else float(clip)
        self.mean = np.zeros(self.k)  # (K,)
        self.var = np.ones(self.k)  # (K,) population variance
        self.count = 0

    def update(self, rewards: ArrayLike) -> None:
        """Fold a batch of rewards, shape (N, K), into the running statistics."""
        r = as_matrix(rewards, "rewards", k=self.k)  # (N, K)
        n = r.shape[0]
        if n == 0:
            return
        batch_mean, batch_var = r.mean(axis=0), r.var(axis=0)  # (K,), (K,)
        if self.count == 0:
            self.mean, self.var, self.count = batch_mean, batch_var, n
            return
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta**2 * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    def normalize(self, rewards: ArrayLike, center: bool = True) -> np.ndarray:
        """Normalise rewards (N, K) -> (N, K); ``center=False`` only rescales."""
        r = as_matrix(rewards, "rewards", k=self.k)  # (N, K)
        out = ((r - self.mean) if center else r) / np.sqrt(self.var + self.epsilon)
        return out if self.clip is None else np.clip(out, -self.clip, self.clip)

    def state_dict(self) -> dict:
        """The state as plain JSON-ready types."""
        return {
            "k": self.k,
            "epsilon": self.epsilon,
            "clip": self.clip,
            "count": int(self.count),
            "mean": self.mean.tolist(),
            "var": self.var.tolist(),
        }

    @classmethod
    def from_state_dict(cls, state: dict) -> RunningMeanStd:
        """Rebuild a normaliser from :meth:`state_dict` output (e.g. read back from JSON)."""
        expected = {"k", "epsilon", "clip", "count", "mean", "var"}
        if not isinstance(state, dict) or set(state) != expected:
            got = sorted(state) if isinstance(state, dict) else type(state).__name__
            raise ValueError(f"state: expected keys {sorted(expected)}, got {got}")
        norm = cls(state["k"], epsilon=state["epsilon"], clip=state["clip"])
        if int(state["count"]) != state["count"] or state["count"] < 0:
            raise ValueError(f"state['count']: expected an integer >= 0, got {state['count']!r}")
        norm.count = int(state["count"])
        norm.mean = as_vector(state["mean"], "state['mean']", k=norm.k).copy()
        norm.var = as_vector(state["var"], "state['var']", k=norm.k).copy()
        if (norm.var < 0).any():
            raise ValueError(f"state['var']: expected values >= 0, got {norm.var.tolist()}")
        return norm
