"""Pareto dominance: which evaluated points are on the front.

Convention: **maximisation** of every objective. Point ``a`` dominates point ``b`` when
``a_i >= b_i`` for all objectives ``i`` and ``a_i > b_i`` for at least one. A point is
non-dominated when no other point dominates it.

The work is done by moocore's ``is_nondominated`` (Kung-Luccio-Preparata dimension sweep,
O(n log n) for k <= 3); this module adds input checks and two deliberate policies:

* **Duplicates.** Two identical rows do not dominate each other (neither is strictly better
  anywhere), so :func:`non_dominated` marks every copy of a non-dominated point ``True`` by
  default: in the app each row is a policy, and two policies that score the same are both on the
  front. :func:`pareto_front` returns each distinct front point once (first occurrence kept),
  because it describes the *shape* of the front; :func:`cardinality` counts distinct points.
* **NaN rows.** A NaN usually means an evaluation failed. ``nan_policy="raise"`` (default) rejects
  it; ``nan_policy="omit"`` treats every row containing a NaN as "not on the front": such rows get
  ``False`` and take no part in any comparison. ``+-inf`` is always rejected.
"""

from __future__ import annotations

from typing import Literal

import moocore
import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_matrix

NanPolicy = Literal["raise", "omit"]


def _check_points(points: ArrayLike, nan_policy: NanPolicy, name: str = "points") -> np.ndarray:
    """Validate an (n, k) point matrix with k >= 2 under the given NaN policy."""
    if nan_policy not in ("raise", "omit"):
        raise ValueError(f"nan_policy: expected 'raise' or 'omit', got {nan_policy!r}")
    return as_matrix(points, name, min_k=2, allow_nan_rows=nan_policy == "omit")


def non_dominated(
    points: ArrayLike,
    *,
    keep_duplicates: bool = True,
    nan_policy: NanPolicy = "raise",
) -> np.ndarray:
    """Mask of the non-dominated rows of ``points`` (maximisation).

    ``points`` is (n, k) with k >= 2; returns a boolean (n,) mask. ``keep_duplicates=False``
    marks only the first copy of a repeated front point; ``nan_policy`` as in the module
    docstring. Raises ``ValueError`` on a bad shape, +-inf, or NaN under ``"raise"``.

        >>> non_dominated([[1, 0], [0, 1], [0.5, 0.5], [0.2, 0.2]]).tolist()
        [True, True, True, False]
    """
    pts = _check_points(points, nan_policy)  # (n, k)
    n = pts.shape[0]
    if n == 0:
        return np.zeros(0, dtype=bool)
    if nan_policy == "omit":
        valid = ~np.isnan(pts).any(axis=1)  # (n,)
        if not valid.all():
            mask = np.zeros(n, dtype=bool)
            if valid.any():
                mask[valid] = non_dominated(pts[valid], keep_duplicates=keep_duplicates)
            return mask
    return moocore.is_nondominated(pts, maximise=True, keep_weakly=keep_duplicates)


def pareto_front(points: ArrayLike, *, nan_policy: NanPolicy = "raise") -> np.ndarray:
    """The distinct non-dominated points (m, k) of ``points`` (maximisation), in input order
    (sort them yourself to draw a line); each duplicate appears once."""
    pts = _check_points(points, nan_policy)  # (n, k)
    return pts[non_dominated(pts, keep_duplicates=False, nan_policy=nan_policy)]


def cardinality(points: ArrayLike, *, nan_policy: NanPolicy = "raise") -> int:
    """Number of distinct non-dominated points among ``points`` (maximisation)."""
    return int(pareto_front(points, nan_policy=nan_policy).shape[0])
