"""How objectives relate: correlations, conflict classes, dependency graph, gradient conflict.

Every function takes an (N, K) matrix of per-sample rewards (or a (K, D) matrix of gradients)
under the project's **maximisation** convention and returns numpy arrays or small frozen
records, without I/O or global random state (the bootstrap takes an explicit
``np.random.Generator``); the one exception is ``gradient_conflict_study``, which loads a model
to measure the gradients. The classification rule is written down in ``classify``'s docstring.
"""

from morl_core.relations.classify import (
    LABELS,
    PairRelation,
    RelationRule,
    classify_pairs,
    classify_relations,
)
from morl_core.relations.correlations import (
    METHODS,
    CorrelationResult,
    bootstrap_correlations,
    correlation_matrix,
)
from morl_core.relations.gradients import gradient_conflict, gradient_conflict_study
from morl_core.relations.graph import Edge, dependency_graph, partial_correlations

__all__ = [
    "LABELS",
    "METHODS",
    "CorrelationResult",
    "Edge",
    "PairRelation",
    "RelationRule",
    "bootstrap_correlations",
    "classify_pairs",
    "classify_relations",
    "correlation_matrix",
    "dependency_graph",
    "gradient_conflict",
    "gradient_conflict_study",
    "partial_correlations",
]
