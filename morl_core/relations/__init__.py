"""How objectives relate: correlations, conflict classes, dependency graph, gradient conflict.

Every function takes an (N, K) matrix of per-sample rewards (or a (K, D) matrix of gradients)
under the project's **maximisation** convention and returns numpy arrays or small frozen
records; nothing here does I/O or uses global random state (the bootstrap takes an explicit
``np.random.Generator``).

Modules:
    correlations: ``correlation_matrix``, ``bootstrap_correlations`` (Pearson, Spearman, Kendall).
    classify: ``RelationRule``, ``classify_pairs``, ``classify_relations`` (the rule is written
        down in that module's docstring).
    graph: ``partial_correlations``, ``dependency_graph`` (graphical lasso -> edge list).
    gradients: ``gradient_conflict`` (cosine matrix, with notes on how to read it).
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
