"""Hierarchical grid search over a box: EMORL's search for aggregation weights (maximisation).

Reference: Kong et al., "EMORL: Ensemble Multi-Objective Reinforcement Learning for Efficient
and Flexible LLM Fine-Tuning" (SIGDIAL 2025, arXiv 2505.02579), Section 3.

Round r evaluates the 3^d grid of the current box (its corners, edge midpoints and centre). The
grid splits the box into 2^d sub-boxes of half the width; the search keeps the sub-box that
contains the best grid point (ties between the sub-boxes sharing that point are broken by the
mean value of their 2^d corners) and repeats. After R rounds the box is 2^-R of the original
width, so the cost is O(3^d log(1/eps)) evaluations against O((1/eps)^d) for a flat grid of the
same resolution. Points already evaluated (the kept box's corners) are not evaluated again.

Pure: the function to maximise is passed in; no I/O, no random state.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SearchResult:
    """Outcome of :func:`hierarchical_grid_search`."""

    best: np.ndarray  # (d,) the best point evaluated
    value: float
    boxes: list[tuple[list[float], list[float]]] = field(default_factory=list)  # (low, high)/round
    points: list[tuple[float, ...]] = field(default_factory=list)  # every distinct point evaluated

    @property
    def evaluations(self) -> int:
        """Distinct points evaluated (rows passed to f)."""
        return len(self.points)


def hierarchical_grid_search(
    f: Callable[[np.ndarray], np.ndarray],
    dim: int,
    *,
    rounds: int = 5,
    low: float = 0.0,
    high: float = 1.0,
    decimals: int = 9,
) -> SearchResult:
    """Maximise ``f`` over the box [low, high]^dim by ``rounds`` shrinking 3^d grids (EMORL: 5).

    ``f`` maps points (n, dim) to values (n,), larger is better, and is called once per round
    with only the points not seen before (repeats recognised after rounding to ``decimals``).
    ``ValueError`` on a bad ``dim``, ``rounds`` or box, or when ``f`` returns the wrong shape
    or non-finite values.

    Example:
        >>> result = hierarchical_grid_search(lambda x: -((x - 0.3) ** 2).sum(1), 2)
        >>> np.round(result.best, 2).tolist()
        [0.31, 0.31]
    """
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim: expected an integer >= 1, got {dim!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds: expected an integer >= 1, got {rounds!r}")
    if not (np.isfinite(low) and np.isfinite(high) and high > low):
        raise ValueError(f"box: expected finite low < high, got low={low}, high={high}")
    cache: dict[tuple[float, ...], float] = {}
    lo, hi = np.full(dim, float(low)), np.full(dim, float(high))
    boxes = []
    offsets = np.asarray(list(itertools.product((0, 1), repeat=dim)))  # (2^d, d) sub-box corners
    for _ in range(rounds):
        boxes.append((lo.tolist(), hi.tolist()))
        axes = np.linspace(lo, hi, 3)  # (3, d): low, middle, high of each coordinate
        index = np.asarray(list(itertools.product(range(3), repeat=dim)))  # (3^d, d)
        grid = np.round(axes[index, np.arange(dim)], decimals)  # (3^d, d)
        keys = [tuple(p) for p in grid]
        new = [i for i, key in enumerate(keys) if key not in cache]
        if new:
            values = np.asarray(f(grid[new]), dtype=float)
            if values.shape != (len(new),) or not np.isfinite(values).all():
                raise ValueError(
                    f"f: expected {len(new)} finite values for {len(new)} points, "
                    f"got shape {values.shape}"
                )
            cache.update(zip((keys[i] for i in new), values.tolist(), strict=True))
        value_of = {tuple(i): cache[key] for i, key in zip(map(tuple, index), keys, strict=True)}
        best_index = np.asarray(max(value_of, key=value_of.get))  # (d,) in {0, 1, 2}^d
        # sub-box s (in {0, 1}^d) spans grid indices s..s+1 per coordinate; keep those holding best
        candidates = [s for s in offsets if np.all((best_index >= s) & (best_index <= s + 1))]
        corner_mean = [np.mean([value_of[tuple(s + o)] for o in offsets]) for s in candidates]
        chosen = candidates[int(np.argmax(corner_mean))]
        half = (hi - lo) / 2
        lo, hi = lo + chosen * half, lo + (chosen + 1) * half
    best_key = max(cache, key=cache.get)
    return SearchResult(np.asarray(best_key), float(cache[best_key]), boxes, list(cache))
