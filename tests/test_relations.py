"""Objective relations: correlations, classification on synthetic data, graph, gradient conflict."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import stats

from morl_core import relations as R
from morl_core.bench.runner import gradient_conflict_record
from morl_core.bench.suites import load_suite

NAMES = ["sentiment", "brevity", "readability", "nontoxic", "synth_a"]
# Known population correlations (Gaussian copula): sentiment conflicts with brevity, agrees
# with readability; nontoxic and synth_a are independent of everything.
TRUE_CORR = np.array(
    [
        [1.0, -0.6, 0.6, 0.0, 0.0],
        [-0.6, 1.0, -0.36, 0.0, 0.0],
        [0.6, -0.36, 1.0, 0.0, 0.0],
        [0.0, 0.0, 0.0, 1.0, 0.0],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ]
)
EXPECTED_LABELS = {
    ("sentiment", "brevity"): "conflicting",
    ("sentiment", "readability"): "correlated",
    ("brevity", "readability"): "conflicting",
}


def synthetic_rewards(n: int = 800, seed: int = 0) -> np.ndarray:
    z = np.random.default_rng(seed).multivariate_normal(np.zeros(5), TRUE_CORR, size=n)
    return stats.norm.cdf(z)  # rewards in (0, 1), same rank correlations


# --- correlation matrices --------------------------------------------------------------------


def test_matrices_match_scipy():
    r = synthetic_rewards(200)
    np.testing.assert_allclose(R.correlation_matrix(r, "pearson"), np.corrcoef(r, rowvar=False))
    np.testing.assert_allclose(R.correlation_matrix(r, "spearman"), stats.spearmanr(r).statistic)
    tau = R.correlation_matrix(r, "kendall")
    assert tau[0, 1] == pytest.approx(stats.kendalltau(r[:, 0], r[:, 1]).statistic)


@settings(max_examples=50, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(5, 30), st.integers(2, 4)), elements=st.floats(-9, 9)),
    st.sampled_from(R.METHODS),
)
def test_matrix_properties(r, method):
    if (r.std(axis=0) < 1e-3).any():
        return  # constant columns are rejected, tested below
    c = R.correlation_matrix(r, method)
    np.testing.assert_allclose(c, c.T)
    np.testing.assert_allclose(np.diag(c), 1.0)
    assert (np.abs(c) <= 1).all()
    flipped = r.copy()
    flipped[:, 0] *= -1  # reversing an objective flips the sign of its correlations
    np.testing.assert_allclose(R.correlation_matrix(flipped, method)[0, 1:], -c[0, 1:], atol=1e-9)


def test_rank_methods_ignore_monotone_transforms():
    r = synthetic_rewards(300)
    warped = np.column_stack([r[:, 0] ** 5, np.log(r[:, 1]), r[:, 2:]])
    for method in ("spearman", "kendall"):
        np.testing.assert_allclose(
            R.correlation_matrix(warped, method), R.correlation_matrix(r, method), atol=1e-12
        )


def test_bootstrap_is_seeded_and_brackets_truth():
    r = synthetic_rewards(600, seed=3)
    a = R.bootstrap_correlations(r, np.random.default_rng(1), "pearson", n_boot=300)
    b = R.bootstrap_correlations(r, np.random.default_rng(1), "pearson", n_boot=300)
    np.testing.assert_array_equal(a.lower, b.lower)
    assert (a.lower <= a.coefficient + 1e-12).all() and (a.coefficient <= a.upper + 1e-12).all()
    # Pearson of the copula-transformed data is close to (6/pi) asin(rho/2) for Gaussian rho.
    truth = 6 / np.pi * np.arcsin(TRUE_CORR / 2)
    assert ((a.lower - 0.03 <= truth) & (truth <= a.upper + 0.03)).all()
    assert a.n_samples == 600 and a.n_boot == 300 and a.confidence == 0.95
    narrow = R.bootstrap_correlations(np.vstack([r] * 4), np.random.default_rng(1), n_boot=100)
    wide = R.bootstrap_correlations(r[:100], np.random.default_rng(1), n_boot=100)
    assert (narrow.upper - narrow.lower)[0, 1] < (wide.upper - wide.lower)[0, 1]


# --- classification --------------------------------------------------------------------------


@pytest.mark.parametrize("method", R.METHODS)
@pytest.mark.parametrize("significance", ["ci", "pvalue", "bonferroni"])
def test_classification_recovers_known_relations(method, significance):
    rewards = synthetic_rewards(800)
    rule = R.RelationRule(significance=significance)
    _, pairs = R.classify_relations(
        rewards, np.random.default_rng(0), NAMES, method, rule, n_boot=100
    )
    assert len(pairs) == 10
    for pair in pairs:
        expected = EXPECTED_LABELS.get((pair.first, pair.second), "independent")
        assert pair.label == expected, pair


def fake_result(rho, lower, upper, p, confidence=0.95):
    def pair(x):
        return np.array([[1.0, x], [x, 1.0]])

    return R.CorrelationResult(
        "spearman", pair(rho), pair(lower), pair(upper), pair(p), confidence, 100, 100
    )


RULE_TABLE = [
    # (rho, lower, upper, p, rule, label, words in the reason)
    (-0.5, -0.6, -0.4, 1e-6, R.RelationRule(), "conflicting", "significant"),
    (0.5, 0.4, 0.6, 1e-6, R.RelationRule(), "correlated", "significant"),
    (0.1, 0.08, 0.12, 1e-9, R.RelationRule(), "independent", "< 0.2"),  # tiny but significant
    (0.1, 0.08, 0.12, 1e-9, R.RelationRule(threshold=0.05), "correlated", "significant"),
    (-0.4, -0.8, 0.1, 0.01, R.RelationRule(), "independent", "not significant"),  # CI spans 0
    (-0.4, -0.8, 0.1, 0.01, R.RelationRule(significance="pvalue"), "conflicting", "p = 0.01"),
    (
        -0.4,
        -0.8,
        0.1,
        0.04,
        R.RelationRule(significance="pvalue", alpha=0.01),
        "independent",
        "not significant",
    ),
]


@pytest.mark.parametrize(("rho", "lower", "upper", "p", "rule", "label", "reason"), RULE_TABLE)
def test_rule_table(rho, lower, upper, p, rule, label, reason):
    (pair,) = R.classify_pairs(fake_result(rho, lower, upper, p), ["a", "b"], rule)
    assert pair.label == label
    assert reason in pair.reason


def test_bonferroni_divides_alpha_by_pairs():
    result = R.CorrelationResult(
        "pearson",
        np.array([[1, 0.5, 0.5], [0.5, 1, 0.5], [0.5, 0.5, 1.0]]),
        np.zeros((3, 3)),
        np.ones((3, 3)),
        np.full((3, 3), 0.03),
        0.95,
        50,
        100,
    )
    plain = R.classify_pairs(result, rule=R.RelationRule(significance="pvalue"))
    strict = R.classify_pairs(result, rule=R.RelationRule(significance="bonferroni"))
    assert {p.label for p in plain} == {"correlated"}
    assert {p.label for p in strict} == {"independent"}  # 0.03 > 0.05 / 3
    assert plain[0].first == "objective_0"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: R.RelationRule(threshold=1.5), "threshold"),
        (lambda: R.RelationRule(significance="vibes"), "significance"),
        (lambda: R.correlation_matrix([[1, 2], [1, 3], [1, 4]]), r"constant columns \[0\]"),
        (lambda: R.correlation_matrix(np.eye(3), "distance"), "method: expected one of"),
        (lambda: R.correlation_matrix([[1, 2], [2, 1]]), "at least 3 rows"),
        (lambda: R.correlation_matrix([[1, np.nan]] * 3), "finite"),
        (lambda: R.bootstrap_correlations(np.eye(3), rng=None), "rng"),
        (lambda: R.bootstrap_correlations(np.eye(3), np.random.default_rng(), n_boot=2), "n_boot"),
        (lambda: R.classify_relations(np.eye(3), np.random.default_rng(), ["a"]), "3 names"),
        (lambda: R.dependency_graph(np.eye(3), ["a", "b"]), "3 names"),
        (lambda: R.partial_correlations(np.eye(3), alpha=-1), "alpha"),
        (lambda: R.gradient_conflict([[1.0, 2.0]]), "at least 2 rows"),
        (lambda: R.gradient_conflict([[1.0, np.inf], [0, 1]]), "finite"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# --- dependency graph ------------------------------------------------------------------------


def test_graph_keeps_direct_links_and_drops_indirect_ones():
    rng = np.random.default_rng(0)
    a = rng.normal(size=3000)
    b = 0.8 * a + 0.6 * rng.normal(size=3000)  # b follows a
    c = -0.8 * b + 0.6 * rng.normal(size=3000)  # c trades off against b; tied to a only via b
    d = rng.normal(size=3000)
    rewards = np.column_stack([a, b, c, d])
    assert abs(np.corrcoef(a, c)[0, 1]) > 0.5  # the marginal correlation is strong...
    edges = R.dependency_graph(rewards, ["a", "b", "c", "d"], alpha=0.05)
    pairs = {(e.source, e.target): e.partial_correlation for e in edges}
    assert set(pairs) == {("a", "b"), ("b", "c")}  # ...but a-c is not a direct link
    assert pairs[("a", "b")] > 0 > pairs[("b", "c")]
    assert edges[0].to_dict().keys() == {"source", "target", "partial_correlation"}
    partial = R.partial_correlations(rewards, alpha=0.0)
    np.testing.assert_allclose(partial, partial.T)
    assert abs(partial[0, 2]) < 0.05


# --- gradient conflict -----------------------------------------------------------------------


def test_gradient_conflict_hand_case():
    cos = R.gradient_conflict([[1, 0, 0], [0, 2, 0], [-3, -3, 0], [0, 0, 0]])
    s = 1 / np.sqrt(2)
    expected = np.array([[1, 0, -s], [0, 1, -s], [-s, -s, 1]])
    np.testing.assert_allclose(cos[:3, :3], expected)
    assert np.isnan(cos[3]).all() and np.isnan(cos[:, 3]).all()  # zero gradient: no direction


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(2, 5), st.integers(1, 8)), elements=st.floats(-1, 1)),
    st.sampled_from([1e-300, 1.0, 1e300]),
)
def test_gradient_conflict_properties(g, scale):
    cos = R.gradient_conflict(g * scale)
    ok = ~np.isnan(cos)
    np.testing.assert_allclose(cos[ok], cos.T[ok])
    assert (np.abs(cos[ok]) <= 1).all()
    nonzero = np.flatnonzero(np.abs(g * scale).max(axis=1) > 0)
    if len(nonzero):
        i = nonzero[0]
        back = R.gradient_conflict(np.vstack([g[i], -g[i]]) * scale)
        assert back[0, 1] == pytest.approx(-1.0)


def test_mean_cosine_skips_nan_and_keeps_all_nan_entries_without_warning():
    a = np.array([[1.0, -0.5], [-0.5, np.nan]])
    b = np.array([[1.0, np.nan], [np.nan, np.nan]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's "Mean of empty slice" would raise here
        mean = R.gradients.mean_cosine([a, b])
    assert mean[0, 0] == 1.0 and mean[0, 1] == -0.5 and np.isnan(mean[1, 1])


def test_gradient_conflict_record_of_zero_gradients_is_none(monkeypatch):
    # A reward that is the same for every sample has no advantage, so every gradient is zero.
    monkeypatch.setattr(
        R.gradients, "score", lambda names, prompts, texts, **kw: np.zeros((len(texts), len(names)))
    )
    suite = load_suite("synthetic_conflicting")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        record = gradient_conflict_record(suite, batches=2)
    k = len(suite.objectives)
    assert record["cosine"] == [[None] * k] * k
    assert record["gradient_norms"] == [0.0] * k
