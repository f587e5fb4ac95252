"""Preferences: weight vectors on the probability simplex.

A preference over ``k`` objectives is a weight vector ``w`` with ``w_i >= 0`` and
``sum_i w_i = 1``; under the project's **maximisation** convention, a larger ``w_i`` asks for more
of objective ``i``. This module makes such vectors: a uniform lattice (for evaluating a method
across the whole front), Dirichlet samples (for expected utility and preference-conditioned
training), and the conversion of a k-slider UI
state into a valid vector. :func:`check_weights` is the one validator the numeric core uses.

No function here touches global random state: sampling takes an explicit ``np.random.Generator``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable

import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_float_array, as_vector, check_rng

SUM_ATOL = 1e-6  # how far a row sum may stray from 1 and still count as a preference
MAX_LATTICE_POINTS = 1_000_000  # refuse lattices that would not fit comfortably in memory


def check_weights(weights: ArrayLike, k: int | None = None, name: str = "weights") -> np.ndarray:
    """Validate one preference (k,) or a batch (m, k) and return it renormalised to sum 1.

    Args:
        weights: Shape (k,) or (m, k); entries finite and >= 0; each row sums to 1 within
            ``SUM_ATOL`` (rows are divided by their sum to remove rounding drift).
        k: Required number of objectives, or None to accept any k >= 1.
        name: Argument name used in error messages.

    Returns:
        Float64 array of the same shape whose rows sum to 1.

    Raises:
        ValueError: On a wrong shape or k, NaN/inf, negative entries, an all-zero row, or a row
            whose sum is not 1.
    """
    w = as_float_array(weights, name)
    if w.ndim not in (1, 2):
        raise ValueError(f"{name}: expected shape (k,) or (m, k), got shape {w.shape}")
    if w.shape[-1] == 0 or (k is not None and w.shape[-1] != k):
        want = k if k is not None else ">= 1"
        raise ValueError(f"{name}: expected k={want} entries per preference, got shape {w.shape}")
    if not np.isfinite(w).all():
        raise ValueError(f"{name}: expected finite values, got {w[~np.isfinite(w)][0]}")
    if (w < 0).any():
        raise ValueError(f"{name}: expected non-negative weights, got minimum {w.min()}")
    sums = w.sum(axis=-1, keepdims=True)  # (1,) or (m, 1)
    if (sums == 0).any():
        raise ValueError(f"{name}: expected weights summing to 1, got an all-zero preference")
    worst = float(np.abs(sums - 1.0).max())
    if worst > SUM_ATOL:
        raise ValueError(
            f"{name}: expected each preference to sum to 1 (within {SUM_ATOL}), "
            f"got a sum of {float(sums.flat[np.abs(sums - 1.0).argmax()])}"
        )
    return w / sums


def lattice_size(k: int, divisions: int) -> int:
    """Number of points of the simplex lattice: C(divisions + k - 1, k - 1)."""
    return math.comb(divisions + k - 1, k - 1)


def simplex_lattice(k: int, divisions: int) -> np.ndarray:
    """Uniform simplex lattice (Das & Dennis 1998): all w with w_i in {0, 1/H, ..., 1}, sum 1.

    Args:
        k: Number of objectives, >= 1.
        divisions: H, the number of steps per axis, >= 1 (H = 10 gives a 0.1 grid).

    Returns:
        Array of shape (C(H + k - 1, k - 1), k); rows in lexicographic order of their counts,
        starting at (0, ..., 0, 1) and ending at (1, 0, ..., 0); includes the k extremes.

    Raises:
        ValueError: If k < 1, divisions < 1, or the lattice would exceed MAX_LATTICE_POINTS rows.

    Example:
        >>> simplex_lattice(2, 2).tolist()
        [[0.0, 1.0], [0.5, 0.5], [1.0, 0.0]]
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k: expected an integer >= 1, got {k!r}")
    if int(divisions) != divisions or divisions < 1:
        raise ValueError(f"divisions: expected an integer >= 1, got {divisions!r}")
    k, divisions = int(k), int(divisions)
    size = lattice_size(k, divisions)
    if size > MAX_LATTICE_POINTS:
        raise ValueError(
            f"simplex_lattice: expected at most {MAX_LATTICE_POINTS} points, got k={k} and "
            f"divisions={divisions} giving {size}; use dirichlet() sampling instead"
        )
    # Stars and bars: choose k-1 bar positions among H + k - 1 slots; gaps are the counts.
    slots = divisions + k - 1
    bars = np.fromiter(
        itertools.chain.from_iterable(itertools.combinations(range(slots), k - 1)),
        dtype=np.int64,
        count=size * (k - 1),
    ).reshape(size, k - 1)  # (M, k-1)
    edges = np.hstack([np.full((size, 1), -1), bars, np.full((size, 1), slots)])  # (M, k+1)
    counts = np.diff(edges, axis=1) - 1  # (M, k), each row sums to H
    return counts / divisions


def dirichlet(k: int, n: int, rng: np.random.Generator, alpha: float | ArrayLike = 1.0):
    """Sample ``n`` preferences from a Dirichlet(alpha) distribution on the k-simplex.

    ``alpha = 1`` is uniform on the simplex; smaller alpha favours corners, larger alpha the
    centre.

    Args:
        k: Number of objectives, >= 2.
        n: Number of samples, >= 0.
        rng: Explicit generator, e.g. ``np.random.default_rng(seed)``.
        alpha: Concentration, a positive scalar or shape (k,).

    Returns:
        Array of shape (n, k) whose rows are on the simplex.

    Raises:
        ValueError: On k < 2, n < 0, a non-positive or wrongly shaped alpha, or a missing rng.
    """
    if int(k) != k or k < 2:
        raise ValueError(f"k: expected an integer >= 2, got {k!r}")
    if int(n) != n or n < 0:
        raise ValueError(f"n: expected an integer >= 0, got {n!r}")
    check_rng(rng)
    conc = np.full(int(k), float(alpha)) if np.ndim(alpha) == 0 else as_vector(alpha, "alpha", k=k)
    if not (conc > 0).all():
        raise ValueError(f"alpha: expected positive concentration, got {conc.tolist()}")
    samples = rng.dirichlet(conc, size=int(n))  # (n, k)
    return samples / samples.sum(axis=1, keepdims=True)


def sliders_to_weights(
    values: ArrayLike,
    locked: Iterable[int] = (),
    moved: int | None = None,
) -> np.ndarray:
    """Turn a k-slider UI state into a valid preference (sums to 1, all >= 0).

    Rules, in order:

    1. A **locked** slider keeps its value as its final weight (so locked values must be in
       [0, 1] and sum to at most 1).
    2. The slider the user just **moved** (if given) is treated as locked for this update, so
       the others make room for it; its value is capped at what the locked sliders leave free.
       If it is the only slider not locked, it takes exactly what the locks leave.
    3. The **free** sliders share the remainder ``1 - sum(fixed)`` in proportion to their
       values; if they are all zero they share it equally.
    4. With no locks and every slider at zero the result is uniform (1/k each): "no stated
       preference" is read as "all objectives matter equally".

    Args:
        values: Slider positions, shape (k,), finite and >= 0 (any scale without locks).
        locked: Indices of locked sliders.
        moved: Index of the slider the user just moved, or None.

    Returns:
        Weights, shape (k,), on the simplex.

    Raises:
        ValueError: On NaN/inf or negative values, bad indices, locked weights outside [0, 1]
            or summing above 1, or every slider locked with a sum other than 1.

    Example:
        >>> sliders_to_weights([0.5, 0.2, 0.2], locked=[0]).tolist()
        [0.5, 0.25, 0.25]
    """
    vals = as_vector(values, "values", min_k=1)  # (k,)
    k = vals.shape[0]
    if (vals < 0).any():
        raise ValueError(f"values: expected slider values >= 0, got {vals.tolist()}")
    locked_set = {int(i) for i in locked}
    fixed = sorted(locked_set)
    for i in [*fixed, *([] if moved is None else [moved])]:
        if not 0 <= i < k:
            raise ValueError(f"locked/moved: expected indices in [0, {k - 1}], got {i}")
    if (vals[fixed] > 1).any():
        raise ValueError(f"values: expected locked sliders in [0, 1], got {vals[fixed].tolist()}")
    locked_sum = float(vals[fixed].sum())
    if locked_sum > 1 + SUM_ATOL:
        raise ValueError(f"locked: expected locked weights summing to <= 1, got {locked_sum}")
    weights = vals.copy()
    if moved is not None and moved not in locked_set:
        weights[moved] = min(float(vals[moved]), max(0.0, 1.0 - locked_sum))
        fixed = [*fixed, moved]
    if not fixed:
        total = vals.sum()
        return np.full(k, 1.0 / k) if total == 0 else vals / total
    free = np.setdiff1d(np.arange(k), fixed)  # indices of free sliders
    remainder = max(0.0, 1.0 - float(weights[fixed].sum()))
    if free.size == 0 and moved is not None and moved not in locked_set:
        weights[moved] += remainder  # the moved slider is the only one not locked: it absorbs
        return weights
    if free.size == 0:
        if remainder > SUM_ATOL or float(weights.sum()) > 1 + SUM_ATOL:
            raise ValueError(
                f"locked: every slider is locked, expected them to sum to 1, got {weights.sum()}"
            )
        return weights / weights.sum()
    free_total = float(vals[free].sum())
    if free_total == 0:
        weights[free] = remainder / free.size
    else:
        weights[free] = (vals[free] / free_total) * remainder  # divide first: no underflow
    return weights
