"""Preferences: weight vectors on the probability simplex.

A preference over ``k`` objectives is a weight vector ``w`` with ``w_i >= 0`` and
``sum_i w_i = 1``; under the project's **maximisation** convention, a larger ``w_i`` asks for more
of objective ``i``. This module makes such vectors (a uniform lattice, Dirichlet samples, a
k-slider UI state) and validates them (:func:`check_weights`, the numeric core's one validator).
Sampling takes an explicit ``np.random.Generator``, never global state.
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
    """One preference (k,) or a batch (m, k), float64, each row divided by its sum.

    Entries must be finite and >= 0 and each row sum to 1 within ``SUM_ATOL``; ``k`` (None: any)
    is the required number of objectives; ValueError names ``name`` otherwise.
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

    ``divisions`` is H (10 gives a 0.1 grid). Returns (C(H + k - 1, k - 1), k) rows from
    (0, ..., 0, 1) to (1, 0, ..., 0), the k extremes included; at most MAX_LATTICE_POINTS.

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
    """``n`` preferences (n, k) from Dirichlet(alpha) with the explicit ``rng`` (k >= 2).

    ``alpha`` (a positive scalar or (k,)) = 1 is uniform; smaller favours corners, larger the centre.
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
    values: ArrayLike, locked: Iterable[int] = (), moved: int | None = None
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

    ``values`` (k,) are finite and >= 0 (any scale without locks); ValueError on bad values or
    indices, or locks that cannot sum to 1.

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
