"""Front quality indicators beyond hypervolume, and a one-record summary.

Convention: **maximisation** of every objective throughout. Definitions (see ``shared/MORL.md``):

* **Expected utility** (Zintgraf et al. 2015): ``EU = mean_w max_{p in front} w . p`` over a set
  of preferences ``w``; higher is better. Dominated points never change it.
* **Sparsity** (Xu et al. 2020, PGMORL; as in morl-baselines): for each objective sort the front's
  values and sum the squared gaps between neighbours; add over objectives and divide by
  ``m - 1`` (m = front size). Lower means a denser front. It rewards evenly spread points and
  says nothing about how good they are, so read it together with HV.
* **IGD** (moocore): mean over the true-front points of the Euclidean distance to the nearest
  point of ``front``; lower is better. Not Pareto-compliant.
* **IGD+** (Ishibuchi et al. 2015, moocore): as IGD but with the dominance-aware distance
  ``d+(t, p) = ||max(t - p, 0)||`` (only the shortfall of ``p`` below ``t`` counts); weakly
  Pareto-compliant, prefer it to IGD.
* **Bootstrap over prompts** (:func:`prompt_bootstrap`): a front's points are means over
  held-out prompts; resampling the prompts with replacement, recomputing the mean points and
  their HV / EU gives a percentile interval (Efron and Tibshirani 1993) that says how much of a
  difference between two fronts the prompt sample alone could produce.
"""

from __future__ import annotations

import dataclasses

import moocore
import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_matrix
from morl_core.pareto.dominance import NanPolicy, pareto_front
from morl_core.pareto.hypervolume import hypervolume
from morl_core.weights import check_weights

_EU_BLOCK = 4_000_000  # weights x points products per block, bounds memory at ~32 MB


def expected_utility(front: ArrayLike, weights: ArrayLike) -> float:
    """``mean_j max_i weights[j] . front[i]`` (maximisation).

    ``front`` is (n, k) with n >= 1 (dominated points do not change the result); ``weights`` is
    (m, k) or (k,), rows on the simplex. Raises ``ValueError`` on bad shapes or values.
    """
    pts = as_matrix(front, "front", min_k=2, min_rows=1)  # (n, k)
    w = np.atleast_2d(check_weights(weights, k=pts.shape[1]))  # (m, k)
    block = max(1, _EU_BLOCK // pts.shape[0])
    best = np.concatenate(
        [(w[s : s + block] @ pts.T).max(axis=1) for s in range(0, w.shape[0], block)]
    )  # (m,)
    return float(best.mean())


def sparsity(front: ArrayLike) -> float:
    """Summed squared neighbour gaps per objective over ``m - 1`` of a front (m, k); lower is
    denser, 0.0 when m < 2. Computed on the points as given: pass a front."""
    pts = as_matrix(front, "front", min_k=2)  # (m, k)
    m = pts.shape[0]
    if m < 2:
        return 0.0
    gaps = np.diff(np.sort(pts, axis=0), axis=0)  # (m-1, k)
    return float((gaps**2).sum() / (m - 1))


def _check_pair(front: ArrayLike, true_front: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    pts = as_matrix(front, "front", min_k=2, min_rows=1)  # (n, k)
    true = as_matrix(true_front, "true_front", k=pts.shape[1], min_rows=1)  # (t, k)
    return pts, true


def igd(front: ArrayLike, true_front: ArrayLike) -> float:
    """IGD ``mean_t min_p ||t - p||`` from ``true_front`` (t, k) to ``front`` (n, k); lower is
    better."""
    pts, true = _check_pair(front, true_front)
    return float(moocore.igd(pts, ref=true, maximise=True))


def igd_plus(front: ArrayLike, true_front: ArrayLike) -> float:
    """IGD+ ``mean_t min_p ||max(t - p, 0)||`` from ``true_front`` to ``front`` (maximisation);
    lower is better, 0 when ``front`` weakly dominates every true point."""
    pts, true = _check_pair(front, true_front)
    return float(moocore.igd_plus(pts, ref=true, maximise=True))


@dataclasses.dataclass(frozen=True)
class FrontSummary:
    """All front indicators of one set of evaluated points (maximisation).

    Attributes:
        n_points: Number of evaluated points given (rows, NaN rows included).
        cardinality: Number of distinct non-dominated points.
        hypervolume: HV of the points with respect to ``ref``.
        ref: The reference point used, kept so the HV can be compared and reproduced.
        sparsity: Sparsity of the non-dominated points (lower is denser).
        expected_utility: EU over the given preferences, or None if none were given.
        igd: IGD to the true front, or None if no true front was given.
        igd_plus: IGD+ to the true front, or None if no true front was given.
    """

    n_points: int
    cardinality: int
    hypervolume: float
    ref: tuple[float, ...]
    sparsity: float
    expected_utility: float | None = None
    igd: float | None = None
    igd_plus: float | None = None

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready) of the fields."""
        return dataclasses.asdict(self) | {"ref": list(self.ref)}


def summary(
    points: ArrayLike,
    ref: ArrayLike,
    *,
    weights: ArrayLike | None = None,
    true_front: ArrayLike | None = None,
    nan_policy: NanPolicy = "raise",
) -> FrontSummary:
    """Compute every indicator for one set of evaluated points (maximisation).

    The points are first reduced to their distinct non-dominated subset, on which all indicators
    are computed (HV, EU and IGD+ are unchanged by this; sparsity and IGD are defined on a front).

    ``weights`` None skips EU, ``true_front`` None skips IGD and IGD+; ``nan_policy="omit"``
    drops NaN rows (failed evaluations).
    """
    pts = as_matrix(points, "points", min_k=2, allow_nan_rows=nan_policy == "omit")  # (n, k)
    front = pareto_front(pts, nan_policy=nan_policy)  # (c, k)
    hv = hypervolume(front, ref)  # also validates ref against k
    eu = igd_value = igd_plus_value = None
    if weights is not None:
        eu = expected_utility(front, weights)
    if true_front is not None:
        igd_value = igd(front, true_front)
        igd_plus_value = igd_plus(front, true_front)
    return FrontSummary(
        n_points=int(pts.shape[0]),
        cardinality=int(front.shape[0]),
        hypervolume=hv,
        ref=tuple(float(r) for r in np.asarray(ref, dtype=float)),
        sparsity=sparsity(front),
        expected_utility=eu,
        igd=igd_value,
        igd_plus=igd_plus_value,
    )


MAX_BOOTSTRAP = 5000  # resamples; each costs one HV and one EU of a small front


def prompt_bootstrap(
    sums: ArrayLike,
    counts: ArrayLike,
    ref: ArrayLike,
    weights: ArrayLike | None,
    *,
    draws: int,
    level: float,
    rng: np.random.Generator,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of HV and EU of mean points, resampling prompts (maximisation).

    Each resample draws N prompt indices with replacement (the same indices at every
    preference: the preferences were evaluated on the same prompts), forms each preference's
    mean point ``sum_i sums[p, i] / sum_i counts[p, i]`` over the drawn prompts, and computes
    the HV and EU of those P points. With every prompt drawn once, the mean points are exactly
    the front's points.

    Args:
        sums: Per preference and prompt, the sum of each objective over that prompt's samples,
            shape (P, N, K); NaN-free (a not-applicable score adds 0 and is not counted).
        counts: Scored samples behind each sum, shape (P, N, K), >= 0.
        ref: Reference point, shape (K,).
        weights: EU preferences (M, K), or None to skip EU.
        draws: Number of resamples, in [1, ``MAX_BOOTSTRAP``].
        level: Interval coverage in (0, 1), e.g. 0.95.
        rng: Draws the prompt indices.

    Returns:
        ``{"hypervolume": (low, high)}`` plus ``"expected_utility"`` when ``weights`` is given;
        empty when fewer than two prompts were evaluated.
    """
    total = np.asarray(sums, dtype=float)  # (P, N, K)
    n = np.asarray(counts, dtype=float)  # (P, N, K)
    if total.ndim != 3 or n.shape != total.shape:
        raise ValueError(f"sums/counts: expected two (P, N, K) arrays, got {total.shape} {n.shape}")
    if isinstance(draws, bool) or not isinstance(draws, int) or not 1 <= draws <= MAX_BOOTSTRAP:
        raise ValueError(f"draws: expected an integer in [1, {MAX_BOOTSTRAP}], got {draws!r}")
    if not 0 < level < 1:
        raise ValueError(f"level: expected a number in (0, 1), got {level!r}")
    prompts = total.shape[1]
    if prompts < 2:
        return {}
    hv, eu = [], []
    for _ in range(draws):
        pick = rng.integers(0, prompts, size=prompts)  # (N,)
        seen = n[:, pick].sum(axis=1)  # (P, K)
        with np.errstate(invalid="ignore", divide="ignore"):
            points = total[:, pick].sum(axis=1) / seen  # (P, K)
        points = points[np.isfinite(points).all(axis=1)]  # a preference with no scored sample
        if not len(points):
            continue
        hv.append(hypervolume(points, ref))
        if weights is not None:
            eu.append(expected_utility(points, weights))
    if not hv:
        return {}
    tail = 100 * (1 - level) / 2
    out = {"hypervolume": tuple(float(x) for x in np.percentile(hv, [tail, 100 - tail]))}
    if eu:
        out["expected_utility"] = tuple(float(x) for x in np.percentile(eu, [tail, 100 - tail]))
    return out
