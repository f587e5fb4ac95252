"""Gradient conflict: cosine similarity between per-objective policy gradients.

The trainer computes, for the same batch and the same parameters, the gradient of each
objective's (**maximisation**) RL loss, flattens each to a vector (e.g. all LoRA parameters), and
stacks them into a (K, D) matrix. This module turns that into a (K, K) cosine matrix.

How to read it:

* ``cos_ij < 0`` (**conflict**): to first order, a step that improves objective i makes
  objective j worse. This is the local, parameter-space version of a trade-off, and the quantity
  that gradient-surgery methods such as PCGrad (Yu et al. 2020) act on.
* ``cos_ij ~ 0``: the objectives pull in unrelated directions; one step can improve both.
* ``cos_ij > 0``: the objectives are aligned here; training on one helps the other.

Caveats: a cosine is local (it describes the current parameters, unlike reward correlations,
which describe the samples) and noisy (one batch is one estimate: average the matrix over several
steps or batches before drawing conclusions). It ignores gradient size, so a strongly negative
cosine against a tiny gradient matters little; look at the norms too. A zero gradient has no
direction: its row and column are NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_matrix


def gradient_conflict(gradients: ArrayLike) -> np.ndarray:
    """Cosine similarity matrix of per-objective gradient vectors.

    Args:
        gradients: One flattened gradient per objective, shape (K, D) with K >= 2.

    Returns:
        Symmetric matrix, shape (K, K), entries in [-1, 1] and ones on the diagonal; the row and
        column of an all-zero gradient are NaN (its direction is undefined).

    Raises:
        ValueError: On a wrong shape or NaN/inf.
    """
    g = as_matrix(gradients, "gradients", min_k=1)  # (K, D)
    if g.shape[0] < 2:
        raise ValueError(f"gradients: expected at least 2 rows (one per objective), got {g.shape}")
    # Scale each row by its largest entry first so the norms neither overflow nor underflow.
    peak = np.abs(g).max(axis=1, keepdims=True)  # (K, 1)
    safe = np.divide(g, peak, out=np.zeros_like(g), where=peak > 0)
    norms = np.linalg.norm(safe, axis=1)  # (K,)
    unit = np.divide(safe, norms[:, None], out=np.zeros_like(safe), where=norms[:, None] > 0)
    cosine = np.clip(unit @ unit.T, -1.0, 1.0)  # (K, K)
    np.fill_diagonal(cosine, 1.0)
    zero = norms == 0
    cosine[zero, :] = np.nan
    cosine[:, zero] = np.nan
    return cosine
