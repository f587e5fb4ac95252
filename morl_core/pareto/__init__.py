"""Pareto fronts and their quality indicators (maximisation convention throughout).

Every function takes objective vectors as an (n, k) numpy array in which **larger is better on
every column**, and returns numpy values; nothing here does I/O or uses global random state.
Hypervolume, non-dominance and IGD/IGD+ are computed by moocore; this package adds the
maximisation convention, input checks with field-named ``ValueError`` messages, the duplicate and
NaN policies (see :mod:`.dominance`) and the per-task reference-point policy (see
:mod:`.hypervolume`).

Modules:
    dominance: ``non_dominated``, ``pareto_front``, ``cardinality``.
    hypervolume: ``hypervolume``, ``dominates_reference`` and the reference-point policy.
    indicators: ``expected_utility``, ``sparsity``, ``igd``, ``igd_plus``, ``summary``,
        ``prompt_bootstrap``.
"""

from morl_core.pareto.dominance import cardinality, non_dominated, pareto_front
from morl_core.pareto.hypervolume import (
    DEFAULT_MARGIN,
    dominates_reference,
    hypervolume,
    reference_point_from_bounds,
    reference_point_from_points,
)
from morl_core.pareto.indicators import (
    FrontSummary,
    expected_utility,
    igd,
    igd_plus,
    prompt_bootstrap,
    sparsity,
    summary,
)

__all__ = [
    "DEFAULT_MARGIN",
    "FrontSummary",
    "cardinality",
    "dominates_reference",
    "expected_utility",
    "hypervolume",
    "igd",
    "igd_plus",
    "non_dominated",
    "pareto_front",
    "prompt_bootstrap",
    "reference_point_from_bounds",
    "reference_point_from_points",
    "sparsity",
    "summary",
]
