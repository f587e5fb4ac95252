"""Classify each pair of objectives as conflicting, independent or correlated.

Rewards follow the **maximisation** convention (larger is better), so a negative correlation
means "samples good on one objective tend to be bad on the other".

The rule (all of it configurable through :class:`RelationRule`)
----------------------------------------------------------------
For a pair with correlation coefficient ``rho`` (from :mod:`.correlations`):

* **conflicting** if ``rho <= -threshold`` *and* the association is significantly negative;
* **correlated** if ``rho >= +threshold`` *and* the association is significantly positive;
* **independent** otherwise: either ``|rho| < threshold`` (too weak to matter, however
  significant: with thousands of samples tiny correlations are significant) or the sign is not
  established (the evidence does not exclude zero). The ``reason`` field says which.

Significance (``significance=``):

* ``"ci"`` (default): the bootstrap confidence interval lies entirely on one side of zero.
* ``"pvalue"``: the test's two-sided p-value is below ``alpha``.
* ``"bonferroni"``: the p-value is below ``alpha / m`` with m = K(K-1)/2 pairs, so the chance of
  any false "relationship" among all pairs stays below ``alpha``.

The default ``threshold = 0.2`` sits between Cohen's "small" (0.1) and "medium" (0.3) effects:
a pair below it is reported as independent because its trade-off is too weak to shape a front.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from morl_core.relations.correlations import CorrelationResult, Method, bootstrap_correlations

Label = Literal["conflicting", "independent", "correlated"]
LABELS: tuple[str, ...] = ("conflicting", "independent", "correlated")


@dataclasses.dataclass(frozen=True)
class RelationRule:
    """How a pair of objectives is classified (the rule: module docstring)."""

    threshold: float = 0.2  # smallest |rho| that counts as a relationship, in (0, 1)
    significance: Literal["ci", "pvalue", "bonferroni"] = "ci"
    alpha: float = 0.05  # level of the p-value rules; "ci" uses the correlations' interval level

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold: expected a number in (0, 1), got {self.threshold}")
        if self.significance not in ("ci", "pvalue", "bonferroni"):
            raise ValueError(
                f"significance: expected 'ci', 'pvalue' or 'bonferroni', got {self.significance!r}"
            )
        if not 0 < self.alpha < 1:
            raise ValueError(f"alpha: expected a number in (0, 1), got {self.alpha}")


@dataclasses.dataclass(frozen=True)
class PairRelation:
    """The relationship of objectives i < j (names ``first``, ``second``)."""

    i: int
    j: int
    first: str
    second: str
    coefficient: float  # correlation estimate
    lower: float  # its confidence interval
    upper: float
    p_value: float  # two-sided
    label: Label
    reason: str  # one line saying why, for tooltips and tables


def _names(names: Sequence[str] | None, k: int) -> list[str]:
    if names is None:
        return [f"objective_{i}" for i in range(k)]
    if len(names) != k:
        raise ValueError(f"names: expected {k} names (one per objective), got {len(names)}")
    return [str(name) for name in names]


def classify_pairs(
    result: CorrelationResult,
    names: Sequence[str] | None = None,
    rule: RelationRule | None = None,
) -> list[PairRelation]:
    """One :class:`PairRelation` per pair (i < j, row-major) of a :func:`bootstrap_correlations`
    result; ``names`` default to ``objective_0``, ...; ``ValueError`` unless K names."""
    rule = rule or RelationRule()
    k = result.coefficient.shape[0]
    labels = _names(names, k)
    n_pairs = k * (k - 1) // 2
    level = rule.alpha / n_pairs if rule.significance == "bonferroni" else rule.alpha
    pairs = []
    for i in range(k):
        for j in range(i + 1, k):
            rho = float(result.coefficient[i, j])
            lo, hi = float(result.lower[i, j]), float(result.upper[i, j])
            p = float(result.p_value[i, j])
            if rule.significance == "ci":
                sign = 1 if lo > 0 else (-1 if hi < 0 else 0)
                evidence = f"{result.confidence:.0%} CI [{lo:.2f}, {hi:.2f}]"
            else:
                sign = int(np.sign(rho)) if p < level else 0
                evidence = f"p = {p:.2g} vs {level:.2g}"
            if abs(rho) < rule.threshold:
                label, why = "independent", f"|rho| = {abs(rho):.2f} < {rule.threshold}"
            elif sign == 0 or sign != np.sign(rho):
                label, why = "independent", f"not significant ({evidence})"
            elif rho < 0:
                label, why = "conflicting", f"rho = {rho:.2f}, significant ({evidence})"
            else:
                label, why = "correlated", f"rho = {rho:.2f}, significant ({evidence})"
            pairs.append(PairRelation(i, j, labels[i], labels[j], rho, lo, hi, p, label, why))
    return pairs


def classify_relations(
    rewards: ArrayLike,
    rng: np.random.Generator,
    names: Sequence[str] | None = None,
    method: Method = "spearman",
    rule: RelationRule | None = None,
    n_boot: int = 1000,
    confidence: float = 0.95,
) -> tuple[CorrelationResult, list[PairRelation]]:
    """``(correlations, pairs)`` of rewards (N, K): :func:`bootstrap_correlations` then
    :func:`classify_pairs`; ``ValueError`` on bad input to either."""
    k = np.shape(rewards)[-1] if np.ndim(rewards) == 2 else None
    if k is not None:
        _names(names, k)  # fail on a names mismatch before the (slow) bootstrap
    result = bootstrap_correlations(rewards, rng, method, n_boot, confidence)
    return result, classify_pairs(result, names, rule)
