"""Input checks shared by the numeric core (pareto, weights, scalarize, relations).

Every public function of the numeric core validates its arrays here, so that bad input fails early
with a ``ValueError`` that names the argument, what was expected and what was given. The checks
are O(n k) and cheap next to the work they guard.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike


def _describe_nonfinite(x: np.ndarray) -> str:
    """Say where the first non-finite value of ``x`` sits, for error messages."""
    bad = np.argwhere(~np.isfinite(x))[0]
    where = ", ".join(str(int(i)) for i in bad)
    return f"{x[tuple(bad)]} at index ({where})"


def as_float_array(x: ArrayLike, name: str) -> np.ndarray:
    """``x`` as float64 (a view when it already is); ``ValueError`` naming ``name`` if not numbers."""
    try:
        return np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name}: expected an array of numbers, got {type(x).__name__}") from error


def as_matrix(
    x: ArrayLike,
    name: str,
    *,
    k: int | None = None,
    min_k: int = 1,
    min_rows: int = 0,
    allow_nan_rows: bool = False,
) -> np.ndarray:
    """``x`` as a finite float64 (n, k) matrix: ``k`` columns (or at least ``min_k`` when None),
    at least ``min_rows`` rows. With ``allow_nan_rows`` NaN passes (the caller decides what it
    means); +-inf never does. ``ValueError`` naming ``name`` otherwise."""
    arr = as_float_array(x, name)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n, k), got shape {arr.shape}")
    n, cols = arr.shape
    if k is not None and cols != k:
        raise ValueError(f"{name}: expected {k} columns (k={k}), got shape {arr.shape}")
    if k is None and cols < min_k:
        raise ValueError(f"{name}: expected at least {min_k} columns, got shape {arr.shape}")
    if n < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} rows, got shape {arr.shape}")
    if np.isfinite(arr).all():
        return arr
    if not allow_nan_rows:
        raise ValueError(f"{name}: expected finite values, got {_describe_nonfinite(arr)}")
    if np.isinf(arr).any():
        inf_only = np.where(np.isnan(arr), 0.0, arr)  # report the inf, not an allowed NaN
        raise ValueError(
            f"{name}: expected finite or NaN values, got {_describe_nonfinite(inf_only)}"
        )
    return arr


def as_vector(x: ArrayLike, name: str, *, k: int | None = None, min_k: int = 1) -> np.ndarray:
    """``x`` as a finite float64 vector of length ``k`` (at least ``min_k`` when None);
    ``ValueError`` naming ``name`` otherwise."""
    arr = as_float_array(x, name)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D array of shape (k,), got shape {arr.shape}")
    if k is not None and arr.shape[0] != k:
        raise ValueError(f"{name}: expected shape ({k},) to match k={k}, got shape {arr.shape}")
    if k is None and arr.shape[0] < min_k:
        raise ValueError(f"{name}: expected at least {min_k} entries, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got {_describe_nonfinite(arr)}")
    return arr


def check_rng(rng: object, name: str = "rng") -> np.random.Generator:
    """``rng`` unchanged if it is a ``np.random.Generator`` (the numeric core never uses global
    RNG), else ``ValueError``."""
    if not isinstance(rng, np.random.Generator):
        raise ValueError(
            f"{name}: expected a np.random.Generator (e.g. np.random.default_rng(seed)), "
            f"got {type(rng).__name__}"
        )
    return rng


def check_int(value: object, name: str, low: int, high: int) -> int:
    """``value`` when it is an integer (not a bool) in [low, high]; otherwise ``ValueError``
    naming ``name`` and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return value
