"""Dependency graph between objectives from partial correlations (graphical lasso).

A plain correlation between objectives A and C can be produced entirely through a third
objective B (A and C both follow B). The *partial* correlation of A and C given all the other
objectives removes such indirect paths, so the graph of non-zero partial correlations shows
which objectives depend on each other *directly*. Rewards follow the **maximisation**
convention, so a negative edge is a direct trade-off.

Estimation: the columns are standardised (we work on the correlation matrix so that objectives
on different scales are penalised alike), scikit-learn's ``GraphicalLasso`` fits a sparse
precision matrix ``P`` with L1 penalty ``alpha``, and the partial correlations are
``rho_ij = -P_ij / sqrt(P_ii P_jj)``. The penalty sets weak links exactly to zero and shrinks the
rest towards zero, so read edge weights as conservative. ``alpha = 0`` is the unpenalised
estimate (needs many more samples than objectives).
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from sklearn.covariance import GraphicalLasso
from sklearn.exceptions import ConvergenceWarning

from morl_core.array_checks import as_matrix


@dataclasses.dataclass(frozen=True)
class Edge:
    """An undirected edge (``source`` first in objective order) and its partial correlation
    given all other objectives, in [-1, 1]: negative is a direct trade-off."""

    source: str
    target: str
    partial_correlation: float

    def to_dict(self) -> dict:
        """Plain dict, e.g. for a JSON record or a networkx ``add_edges_from`` call."""
        return dataclasses.asdict(self)


def partial_correlations(rewards: ArrayLike, alpha: float = 0.05) -> np.ndarray:
    """Partial correlations (K, K) of rewards (N, K), N >= 3, K >= 2, by graphical lasso with L1
    penalty ``alpha`` >= 0 on the correlation scale. Symmetric, ones on the diagonal.

    Raises ``ValueError`` on a wrong shape, NaN/inf, a constant column, a negative alpha, or a
    fit that fails numerically (typically collinear objectives: raise alpha).
    """
    r = as_matrix(rewards, "rewards", min_k=2, min_rows=3)  # (N, K)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"alpha: expected a finite number >= 0, got {alpha}")
    flat = np.flatnonzero(r.std(axis=0) == 0)
    if flat.size:
        raise ValueError(
            f"rewards: expected every objective to vary across samples, got constant columns "
            f"{flat.tolist()}"
        )
    corr = np.corrcoef(r, rowvar=False)  # (K, K)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = GraphicalLasso(alpha=alpha, covariance="precomputed", max_iter=200)
            precision = model.fit(corr).precision_  # (K, K)
    except FloatingPointError as error:
        raise ValueError(
            f"rewards: graphical lasso failed with alpha={alpha} ({error}); objectives may be "
            f"(nearly) collinear, try a larger alpha"
        ) from error
    scale = np.sqrt(np.diag(precision))  # (K,)
    partial = -precision / np.outer(scale, scale)
    np.fill_diagonal(partial, 1.0)
    return np.clip((partial + partial.T) / 2, -1.0, 1.0)


def dependency_graph(
    rewards: ArrayLike,
    names: Sequence[str] | None = None,
    alpha: float = 0.05,
    min_abs: float = 0.1,
) -> list[Edge]:
    """Direct dependencies (i < j, strongest first) with ``|partial correlation| >= min_abs``;
    ``names`` default to ``objective_0``, ... ``ValueError`` on bad rewards, a names mismatch
    or ``min_abs`` outside [0, 1]."""
    partial = partial_correlations(rewards, alpha)
    k = partial.shape[0]
    if names is None:
        names = [f"objective_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"names: expected {k} names (one per objective), got {len(names)}")
    if not 0 <= min_abs <= 1:
        raise ValueError(f"min_abs: expected a number in [0, 1], got {min_abs}")
    edges = [
        Edge(str(names[i]), str(names[j]), float(partial[i, j]))
        for i in range(k)
        for j in range(i + 1, k)
        if abs(partial[i, j]) >= min_abs and partial[i, j] != 0
    ]
    return sorted(edges, key=lambda edge: -abs(edge.partial_correlation))
