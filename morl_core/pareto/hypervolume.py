"""Hypervolume (moocore) and the per-task reference-point policy.

Convention: **maximisation**. The hypervolume of a set of points with respect to a reference
point ``ref`` is the Lebesgue measure of ``{y : ref < y <= p for some point p}``: the region that
the set dominates and that is bounded below by ``ref``. A point that does not strictly beat
``ref`` on every objective bounds no volume and contributes nothing; dominated points and
duplicates add nothing either. The computation is moocore's (HV3D+ for k = 3, HV4D+ for k = 4,
inclusion-exclusion or recursive HV for k >= 5); moocore minimises by default, so we call it with
``maximise=True``, which negates points and ``ref`` inside moocore.

Reference-point policy (fix ``ref`` per task, never per run)
------------------------------------------------------------
HV values are only comparable when they use the same ``ref``. A ``ref`` derived from the front
being measured (its own nadir) moves from run to run and silently changes the ranking, so every
front of a task (every method, seed and checkpoint) is measured against one ``ref`` chosen before
any run and stored with the task. Choose it as follows:

1. **Known bounds (the default).** The app's objectives are normalised to known ranges (most
   scorers return values in [0, 1]). Use :func:`reference_point_from_bounds`:
   ``ref = lower - margin * (upper - lower)`` with ``margin = 0.1``. A ref slightly worse than the
   worst attainable value keeps the extreme points of a front (the single-objective specialists,
   which the benchmark cares about) contributing volume; ``ref = lower`` would give them zero.
   This follows Ishibuchi et al. (2018), "How to specify a reference point in hypervolume
   calculation for fair performance comparison", who recommend ``1 + 1/H`` on normalised
   minimisation problems; ``margin = 0.1`` matches a lattice with H = 10 divisions.
2. **Unknown bounds.** Evaluate a fixed calibration set once (e.g. the base model and the
   per-objective policies), take :func:`reference_point_from_points` of it, and freeze the result
   into the task definition. Do not recompute it for each run.

Always report ``ref`` next to an HV number (:class:`~morl_core.pareto.FrontSummary` does), and
use :func:`dominates_reference` to warn when points fall outside the box and so count for nothing.
"""

from __future__ import annotations

import moocore
import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_float_array, as_matrix, as_vector

DEFAULT_MARGIN = 0.1  # fraction of each objective's range the ref sits below the worst value


def hypervolume(points: ArrayLike, ref: ArrayLike) -> float:
    """Hypervolume dominated by ``points`` and bounded by ``ref`` (maximisation).

    Args:
        points: Objective vectors, shape (n, k) with k >= 2; larger is better. May contain
            dominated points, duplicates, and points that do not strictly beat ``ref`` (all of
            these add nothing). An empty input (n = 0) gives 0.0.
        ref: Reference point, shape (k,), worse than every point of interest. Fix it per task
            (see the module docstring), not per run.

    Returns:
        The hypervolume, a float >= 0.

    Raises:
        ValueError: If ``points`` is not (n, k) with k >= 2, ``ref`` is not (k,), or either holds
            NaN or +-inf.

    Example:
        >>> hypervolume([[1, 2], [2, 1]], ref=[0, 0])  # 2 + 2 - 1
        3.0
    """
    pts = as_float_array(points, "points")
    if pts.ndim == 1 and pts.size == 0:  # a bare [] is an empty set of points
        as_vector(ref, "ref", min_k=2)
        return 0.0
    pts = as_matrix(pts, "points", min_k=2)  # (n, k)
    k = pts.shape[1]
    ref_vec = as_vector(ref, "ref", k=k)  # (k,)
    if pts.shape[0] == 0:
        return 0.0
    return float(moocore.hypervolume(pts, ref=ref_vec, maximise=True))


def dominates_reference(points: ArrayLike, ref: ArrayLike) -> np.ndarray:
    """Mask of the points that strictly beat ``ref`` on every objective (maximisation).

    Only these points can contribute hypervolume; the others lie outside the reference box.

    Args:
        points: Objective vectors, shape (n, k); larger is better.
        ref: Reference point, shape (k,).

    Returns:
        Boolean mask, shape (n,).

    Raises:
        ValueError: On wrong shapes, a k mismatch, or non-finite values.
    """
    pts = as_matrix(points, "points", min_k=2)  # (n, k)
    ref_vec = as_vector(ref, "ref", k=pts.shape[1])  # (k,)
    return (pts > ref_vec).all(axis=1)


def reference_point_from_bounds(
    lower: ArrayLike, upper: ArrayLike, margin: float = DEFAULT_MARGIN
) -> np.ndarray:
    """Task reference point from known objective bounds (maximisation): the default policy.

    Args:
        lower: Worst attainable value of each objective, shape (k,).
        upper: Best attainable value of each objective, shape (k,); ``upper > lower``.
        margin: How far below ``lower`` the ref sits, as a fraction of ``upper - lower``; >= 0.

    Returns:
        ``lower - margin * (upper - lower)``, shape (k,).

    Raises:
        ValueError: On shape mismatch, non-finite values, ``upper <= lower`` or negative margin.

    Example:
        >>> reference_point_from_bounds([0, 0], [1, 1]).tolist()
        [-0.1, -0.1]
    """
    lo = as_vector(lower, "lower", min_k=2)  # (k,)
    hi = as_vector(upper, "upper", k=lo.shape[0])  # (k,)
    if not (hi > lo).all():
        raise ValueError(f"upper: expected upper > lower on every objective, got {lo=} {hi=}")
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin: expected a finite number >= 0, got {margin}")
    return lo - margin * (hi - lo)


def reference_point_from_points(points: ArrayLike, margin: float = DEFAULT_MARGIN) -> np.ndarray:
    """Task reference point from a calibration set (maximisation), for unknown bounds.

    Computes the nadir (per-objective minimum) of ``points`` and moves it down by ``margin``
    times the per-objective range (or by ``margin`` itself where the range is zero). Call it once
    per task on a fixed calibration set and freeze the result; never per run.

    Args:
        points: Calibration objective vectors, shape (n, k) with n >= 1; larger is better.
        margin: Fraction of each objective's range to step below the nadir; >= 0.

    Returns:
        The reference point, shape (k,); every calibration point strictly beats it if margin > 0.

    Raises:
        ValueError: On wrong shapes, no rows, non-finite values or a negative margin.
    """
    pts = as_matrix(points, "points", min_k=2, min_rows=1)  # (n, k)
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin: expected a finite number >= 0, got {margin}")
    nadir = pts.min(axis=0)  # (k,)
    spread = pts.max(axis=0) - nadir  # (k,)
    spread = np.where(spread > 0, spread, 1.0)  # a flat objective still gets a margin
    return nadir - margin * spread
