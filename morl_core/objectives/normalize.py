"""Reward normalisation for training: each objective's raw values -> comparable [0, 1] scales.

``fixed``: each objective's range [low, high] maps linearly to [0, 1], clipped. Built-in
objectives already lie in [0, 1]; an imported one uses the range its spec gives, the range its
function declares, or, when neither says, a range **learned from the base model's samples**:
the first batch a trainer scores is sampled before its first update, while the fresh LoRA
adapter is still the identity, so it is the base model's. The learned range is
``[min, max]`` of that batch widened by ``LEARNED_MARGIN`` of its spread on each side (so a
policy that beats the base model's best still gets a signal until it saturates); a batch with
no spread gives ``[v - 0.5, v + 0.5]``. The range and where it came from are printed once
(stderr: the terminal for ``morl train``, ``worker.log`` for a job), kept in the trainer's
checkpoint (a resumed run keeps the same map) and reported in every step's metrics.

``running``: z-score by running mean/std, squashed by a sigmoid into (0, 1) so every
scalarisation (log-sum included) stays defined.

NaN ("not applicable to this sample") passes through both as NaN and never updates statistics.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from morl_core.objectives.registry import resolve
from morl_core.scalarize import RunningMeanStd

SOURCE_WORDS = {
    "given": "given after @ in the spec",
    "declared": "declared by the function or TRL's documentation",
}
_ANNOUNCED: set[tuple[str, Any]] = set()
LEARNED_MARGIN = 0.25  # of the base samples' spread, added below the min and above the max
CONSTANT_HALF_WIDTH = 0.5  # half-width of the range learned from a batch with no spread


def learn_range(values: np.ndarray) -> tuple[float, float] | None:
    """A [low, high] map learned from base-model samples (NaN ignored); None if all are NaN.

    Example:
        >>> learn_range(np.array([-0.4, 0.0, np.nan]))
        (-0.5, 0.1)
    """
    values = np.asarray(values, dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    low, high = float(values.min()), float(values.max())
    if high - low <= 1e-12:
        return low - CONSTANT_HALF_WIDTH, high + CONSTANT_HALF_WIDTH
    margin = LEARNED_MARGIN * (high - low)
    return low - margin, high + margin


class RewardNormalizer:
    """Maps raw rewards (B, K) to [0, 1] per objective (module docstring); ``objectives`` are K
    names or specs, or just K (all taken as [0, 1])."""

    def __init__(self, kind: str, objectives: int | Sequence[str], allow_import: bool = True):
        if kind not in ("fixed", "running"):
            raise ValueError(f"normalization must be 'fixed' or 'running', got {kind!r}")
        if isinstance(objectives, int):
            names: list[str] = [f"objective {i}" for i in range(objectives)]
            bounds: list[tuple[float, float] | None] = [(0.0, 1.0)] * objectives
            sources = ["fixed"] * objectives
        else:
            names = list(objectives)
            resolved = [resolve(name, allow_import) for name in names]
            bounds = [o.known_bounds for o in resolved]
            sources = ["fixed" if o.bounded else o.bounds_source for o in resolved]
        self.kind = kind
        self.names = names
        self.bounds = bounds
        self.sources = sources
        self.stats = RunningMeanStd(len(names)) if kind == "running" else None
        if kind == "fixed":
            for name, bound, source in zip(names, bounds, sources, strict=True):
                if source in ("given", "declared") and (name, bound) not in _ANNOUNCED:
                    _ANNOUNCED.add((name, bound))  # once per process, not once per stage
                    print(
                        f"objective {name!r}: range [{bound[0]:.4g}, {bound[1]:.4g}] -> [0, 1] "
                        f"({SOURCE_WORDS[source]})",
                        file=sys.stderr,
                        flush=True,
                    )

    def __call__(self, raw: np.ndarray) -> np.ndarray:  # (B, K) -> (B, K), NaN kept
        raw = np.asarray(raw, dtype=np.float64)
        missing = np.isnan(raw)
        if self.stats is None:
            self._learn(raw)
            low = np.array([b[0] if b else np.nan for b in self.bounds])  # (K,)
            high = np.array([b[1] if b else np.nan for b in self.bounds])  # (K,)
            return np.clip((raw - low) / (high - low), 0.0, 1.0)  # NaN stays NaN
        complete = raw[~missing.any(axis=1)]
        if len(complete):
            self.stats.update(complete)
        z = self.stats.normalize(np.where(missing, self.stats.mean, raw))
        return np.where(missing, np.nan, 1.0 / (1.0 + np.exp(-z)))

    def _learn(self, raw: np.ndarray) -> None:
        for i, bound in enumerate(self.bounds):
            if bound is not None:
                continue
            learned = learn_range(raw[:, i])
            if learned is None:  # nothing applicable yet: learn from the next batch
                continue
            self.bounds[i] = learned
            print(
                f"objective {self.names[i]!r}: range [{learned[0]:.4g}, {learned[1]:.4g}] learned "
                f"from {int(np.isfinite(raw[:, i]).sum())} base-model samples "
                f"(no range given with @[low, high] or declared by the function)",
                file=sys.stderr,
                flush=True,
            )

    def metrics(self) -> dict[str, float]:
        """``range_low/NAME`` and ``range_high/NAME`` of the objectives not fixed to [0, 1]."""
        out: dict[str, float] = {}
        for name, bound, source in zip(self.names, self.bounds, self.sources, strict=True):
            if source != "fixed" and bound is not None:
                out[f"range_low/{name}"], out[f"range_high/{name}"] = bound
        return out

    def describe(self) -> list[str]:
        """One line per objective: its map to [0, 1] and where the range came from."""
        lines = []
        for name, bound, source in zip(self.names, self.bounds, self.sources, strict=True):
            if self.kind == "running":
                lines.append(f"{name}: running mean/std -> sigmoid")
            elif bound is None:
                lines.append(f"{name}: range to be learned from the base model's samples")
            else:
                lines.append(f"{name}: [{bound[0]:.4g}, {bound[1]:.4g}] -> [0, 1] ({source})")
        return lines

    def state(self) -> dict[str, Any]:
        """JSON-ready state for checkpoints; ranges only when some objective is not [0, 1]."""
        state: dict[str, Any] = {
            "kind": self.kind,
            "stats": self.stats.state_dict() if self.stats else None,
        }
        if any(source != "fixed" for source in self.sources):
            state["bounds"] = [list(b) if b is not None else None for b in self.bounds]
        return state

    def load(self, state: dict[str, Any]) -> None:
        if state.get("stats") is not None:
            self.stats = RunningMeanStd.from_state_dict(state["stats"])
        saved = state.get("bounds")
        if saved is not None and len(saved) == len(self.bounds):
            for i, bound in enumerate(saved):
                if bound is not None and all(math.isfinite(v) for v in bound):
                    self.bounds[i] = (float(bound[0]), float(bound[1]))


def front_bounds(
    names: Sequence[str], records: Sequence[Mapping[str, Any]] = (), allow_import: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Per-objective ``(low (K,), high (K,))`` of raw values, for a front's HV reference point.

    Built-in objectives: [0, 1]; imported ones: their given or declared range, or the widest
    range the run learned (``range_low/NAME``, ``range_high/NAME`` of its metric ``records``),
    [0, 1] before it has recorded one.
    """
    low, high = [], []
    for name in names:
        bound = resolve(name, allow_import).known_bounds
        if bound is None:
            lows = [r[f"range_low/{name}"] for r in records if f"range_low/{name}" in r]
            highs = [r[f"range_high/{name}"] for r in records if f"range_high/{name}" in r]
            bound = (min(lows), max(highs)) if lows and highs else (0.0, 1.0)
        low.append(bound[0])
        high.append(bound[1])
    return np.asarray(low, dtype=np.float64), np.asarray(high, dtype=np.float64)
