"""Correlation matrices of per-sample rewards, with bootstrap confidence intervals.

Input is an (N, K) reward matrix: row n holds the K objective scores of one generated sample,
and every column follows the project's **maximisation** convention (larger is better). So a
negative correlation between two objectives means that samples good on one tend to be bad on the
other: the objectives *conflict* on these prompts.

Methods: ``pearson`` (linear association), ``spearman`` (Pearson on ranks; robust to the
monotone but non-linear scales reward models have; the default) and ``kendall`` (tau-b; robust to
ties and outliers, but the bootstrap is a Python loop over pairs and resamples, so it is the
slowest: about 0.2 ms per pair per resample at N = 1000).

Confidence intervals are percentile bootstrap intervals: resample the N rows with replacement
``n_boot`` times, recompute the matrix, and take the ``(1 - confidence) / 2`` and
``(1 + confidence) / 2`` quantiles. Resamples in which a column happens to be constant give NaN
for that column and are left out of the quantiles. P-values come from scipy's tests on the full
data (two-sided, null of zero association).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from morl_core.array_checks import as_matrix, check_rng

Method = Literal["pearson", "spearman", "kendall"]
METHODS: tuple[str, ...] = ("pearson", "spearman", "kendall")
_BOOT_BLOCK = 2_000_000  # resampled values held at once (~16 MB)


def _check_rewards(rewards: ArrayLike, method: str) -> np.ndarray:
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}")
    r = as_matrix(rewards, "rewards", min_k=2, min_rows=3)  # (N, K)
    flat = np.flatnonzero(r.std(axis=0) == 0)
    if flat.size:
        raise ValueError(
            f"rewards: expected every objective to vary across samples, got constant columns "
            f"{flat.tolist()} (correlation is undefined for them)"
        )
    return r


def _pearson_batch(x: np.ndarray) -> np.ndarray:
    """Pearson matrices of a batch of samples, (B, N, K) -> (B, K, K); NaN for flat columns."""
    centred = x - x.mean(axis=1, keepdims=True)
    cov = np.einsum("bnk,bnl->bkl", centred, centred)
    std = np.sqrt(np.einsum("bkk->bk", cov))  # (B, K)
    with np.errstate(divide="ignore", invalid="ignore"):
        return cov / (std[:, :, None] * std[:, None, :])


def _kendall(x: np.ndarray) -> np.ndarray:
    """Kendall tau-b matrix of one sample, (N, K) -> (K, K)."""
    k = x.shape[1]
    out = np.eye(k)
    with warnings.catch_warnings():  # a resample with a flat column gives NaN, handled later
        warnings.simplefilter("ignore", stats.ConstantInputWarning)
        for i in range(k):
            for j in range(i + 1, k):
                out[i, j] = out[j, i] = stats.kendalltau(x[:, i], x[:, j]).statistic
    return out


def correlation_matrix(rewards: ArrayLike, method: Method = "spearman") -> np.ndarray:
    """Correlation matrix (K, K) of rewards (N, K), N >= 3, K >= 2; ones on the diagonal.

    ``ValueError`` on an unknown method, a wrong shape, NaN/inf, or a constant column.
    """
    r = _check_rewards(rewards, method)
    if method == "kendall":
        return _kendall(r)
    if method == "spearman":
        r = stats.rankdata(r, axis=0)
    out = _pearson_batch(r[None])[0]
    np.fill_diagonal(out, 1.0)
    return np.clip(out, -1.0, 1.0)


def _p_values(r: np.ndarray, method: str) -> np.ndarray:
    test = {"pearson": stats.pearsonr, "spearman": stats.spearmanr, "kendall": stats.kendalltau}
    k = r.shape[1]
    out = np.zeros((k, k))
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = test[method](r[:, i], r[:, j]).pvalue
    return out


@dataclasses.dataclass(frozen=True)
class CorrelationResult:
    """A correlation matrix with bootstrap intervals and p-values (all (K, K))."""

    method: str
    coefficient: np.ndarray  # point estimate on the full data
    lower: np.ndarray  # bootstrap percentile interval
    upper: np.ndarray
    p_value: np.ndarray  # scipy's two-sided test of zero association (0 on the diagonal)
    confidence: float
    n_samples: int  # N reward rows
    n_boot: int


def bootstrap_correlations(
    rewards: ArrayLike,
    rng: np.random.Generator,
    method: Method = "spearman",
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> CorrelationResult:
    """:func:`correlation_matrix` with percentile-bootstrap intervals (``n_boot`` >= 10
    resamples drawn from ``rng``) and p-values; ``ValueError`` on bad rewards, a missing rng,
    ``n_boot < 10`` or a confidence outside (0, 1)."""
    r = _check_rewards(rewards, method)  # (N, K)
    check_rng(rng)
    if int(n_boot) != n_boot or n_boot < 10:
        raise ValueError(f"n_boot: expected an integer >= 10, got {n_boot!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence: expected a number in (0, 1), got {confidence}")
    n, k = r.shape
    point = correlation_matrix(r, method)
    index = rng.integers(0, n, size=(int(n_boot), n))  # (B, N) row indices
    if method == "kendall":
        boot = np.stack([_kendall(r[rows]) for rows in index])  # (B, K, K)
    else:
        block = max(1, _BOOT_BLOCK // (n * k))
        parts = []
        for start in range(0, len(index), block):
            sample = r[index[start : start + block]]  # (b, N, K)
            if method == "spearman":
                sample = stats.rankdata(sample, axis=1)
            parts.append(_pearson_batch(sample))
        boot = np.concatenate(parts)  # (B, K, K)
    tail = (1 - confidence) / 2
    lower, upper = np.nanquantile(boot, [tail, 1 - tail], axis=0)  # (K, K) each
    np.fill_diagonal(lower, 1.0)
    np.fill_diagonal(upper, 1.0)
    return CorrelationResult(
        method=method,
        coefficient=point,
        lower=np.clip(lower, -1.0, 1.0),
        upper=np.clip(upper, -1.0, 1.0),
        p_value=_p_values(r, method),
        confidence=float(confidence),
        n_samples=int(n),
        n_boot=int(n_boot),
    )
