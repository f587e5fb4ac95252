"""Pareto front and indicators against tables, brute-force oracles and Monte Carlo."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morl_core import pareto
from morl_core.weights import dirichlet, simplex_lattice

# --- oracles ---------------------------------------------------------------------------------


def brute_non_dominated(points: np.ndarray, keep_duplicates: bool = True) -> np.ndarray:
    """O(n^2) definition of non-dominance under maximisation."""
    n = len(points)
    mask = np.ones(n, dtype=bool)
    for i, j in itertools.product(range(n), range(n)):
        if i == j:
            continue
        if (points[j] >= points[i]).all() and (points[j] > points[i]).any():
            mask[i] = False
        if not keep_duplicates and j < i and (points[j] == points[i]).all():
            mask[i] = False
    return mask


def brute_hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Exact HV by inclusion-exclusion over subsets (fine for n <= 10)."""
    total = 0.0
    for size in range(1, len(points) + 1):
        for subset in itertools.combinations(points, size):
            corner = np.min(subset, axis=0)  # (k,) the subset's common dominated box
            total += (-1) ** (size + 1) * np.prod(np.clip(corner - ref, 0, None))
    return total


def monte_carlo_hypervolume(points, ref, rng, samples=200_000):
    upper = points.max(axis=0)
    u = rng.uniform(ref, upper, size=(samples, len(ref)))  # (S, k)
    hit = np.zeros(samples, dtype=bool)
    for p in points:
        hit |= (u <= p).all(axis=1)
    box = np.prod(upper - ref)
    frac = hit.mean()
    return box * frac, box * np.sqrt(frac * (1 - frac) / samples)


small_sets = st.integers(2, 4).flatmap(
    lambda k: arrays(
        np.float64, st.tuples(st.integers(0, 12), st.just(k)), elements=st.integers(0, 4)
    )
)  # small integer grids make ties and duplicates common

# --- non-dominance ---------------------------------------------------------------------------

ND_TABLE = [
    # (points, expected mask with duplicates kept)
    ([[1, 0], [0, 1], [0.5, 0.5], [0.2, 0.2]], [True, True, True, False]),
    ([[1, 1], [1, 1], [0, 2], [0, 0]], [True, True, True, False]),
    ([[1, 1], [1, 0]], [True, False]),  # weakly dominated: equal on one, worse on the other
    ([[3, 1, 2]], [True]),
    ([[1, 2, 3], [3, 2, 1], [2, 2, 2], [1, 1, 1], [3, 2, 0]], [True, True, True, False, False]),
]


@pytest.mark.parametrize(("points", "expected"), ND_TABLE)
def test_non_dominated_table(points, expected):
    assert pareto.non_dominated(points).tolist() == expected


def test_duplicates_policy():
    pts = [[1, 1], [0, 2], [1, 1], [2, 0]]
    assert pareto.non_dominated(pts).tolist() == [True, True, True, True]
    assert pareto.non_dominated(pts, keep_duplicates=False).tolist() == [True, True, False, True]
    np.testing.assert_array_equal(pareto.pareto_front(pts), [[1, 1], [0, 2], [2, 0]])
    assert pareto.cardinality(pts) == 3


def test_nan_rows():
    pts = [[1, 0], [np.nan, 5], [0, 1], [0, 0]]
    with pytest.raises(ValueError, match="points: expected finite values, got nan"):
        pareto.non_dominated(pts)
    assert pareto.non_dominated(pts, nan_policy="omit").tolist() == [True, False, True, False]
    np.testing.assert_array_equal(pareto.pareto_front(pts, nan_policy="omit"), [[1, 0], [0, 1]])
    all_nan = np.full((2, 2), np.nan)
    assert pareto.non_dominated(all_nan, nan_policy="omit").tolist() == [False, False]
    with pytest.raises(ValueError, match="finite or NaN"):
        pareto.non_dominated([[np.nan, 1], [np.inf, 0]], nan_policy="omit")


def test_empty_points():
    assert pareto.non_dominated(np.zeros((0, 3))).shape == (0,)
    assert pareto.pareto_front(np.zeros((0, 2))).shape == (0, 2)


@settings(max_examples=150, deadline=None)
@given(small_sets, st.booleans())
def test_non_dominated_matches_brute_force(points, keep):
    got = pareto.non_dominated(points, keep_duplicates=keep)
    np.testing.assert_array_equal(got, brute_non_dominated(points, keep))


# --- hypervolume -----------------------------------------------------------------------------

HV_TABLE = [
    # (points, ref, hand-computed HV)
    ([[1, 2], [2, 1]], [0, 0], 3.0),  # 2 + 2 - overlap 1
    ([[1, 3], [2, 2], [3, 1]], [0, 0], 6.0),  # staircase 3 + 2 + 1
    ([[1, 3], [2, 2], [3, 1], [1, 1]], [0, 0], 6.0),  # dominated point adds nothing
    ([[1, 1], [5, 0]], [0, 0], 1.0),  # (5, 0) is not strictly above ref: contributes nothing
    ([[0, 0]], [-1, -2], 2.0),  # negative reference
    ([[2, 2], [2, 2]], [1, 1], 1.0),  # duplicates count once
    ([[-1, 5]], [0, 0], 0.0),  # below ref on one objective
    ([[1, 2, 3]], [0, 0, 0], 6.0),
    ([[2, 1, 1], [1, 2, 1]], [0, 0, 0], 3.0),  # 2 + 2 - 1
    ([[1, 1, 2], [2, 2, 1]], [0, 0, 0], 5.0),  # 2 + 4 - 1
    ([[1, 0, 0], [0, 1, 0], [0, 0, 1]], [-1, -1, -1], 4.0),  # 3 * 2 - 3 * 1 + 1
    ([[1, 1, 1, 1]], [0, 0, 0, 0], 1.0),
    ([[2, 1, 1, 1, 1], [1, 2, 1, 1, 1]], [0] * 5, 3.0),
]


@pytest.mark.parametrize(("points", "ref", "expected"), HV_TABLE)
def test_hypervolume_table(points, ref, expected):
    assert pareto.hypervolume(points, ref) == pytest.approx(expected)


def test_hypervolume_empty():
    assert pareto.hypervolume(np.zeros((0, 3)), [0, 0, 0]) == 0.0
    assert pareto.hypervolume([], [0, 0]) == 0.0


@pytest.mark.parametrize(("k", "seed"), [(2, 0), (3, 1), (4, 2), (5, 3)])
def test_hypervolume_monte_carlo(k, seed):
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, size=(12, k))
    ref = np.full(k, -0.05)
    estimate, stderr = monte_carlo_hypervolume(points, ref, rng)
    assert pareto.hypervolume(points, ref) == pytest.approx(estimate, abs=5 * stderr + 1e-9)


@settings(max_examples=100, deadline=None)
@given(small_sets)
def test_hypervolume_matches_inclusion_exclusion(points):
    ref = np.full(points.shape[1], 0.5)  # some points sit below ref and must add nothing
    points = points[:8]
    assert pareto.hypervolume(points, ref) == pytest.approx(brute_hypervolume(points, ref))


@settings(max_examples=100, deadline=None)
@given(small_sets, st.data())
def test_hypervolume_properties(points, data):
    ref = np.full(points.shape[1], -1.0)
    hv = pareto.hypervolume(points, ref)
    perm = np.random.default_rng(0).permutation(len(points))
    assert pareto.hypervolume(points[perm], ref) == pytest.approx(hv)
    if len(points):
        assert pareto.hypervolume(pareto.pareto_front(points), ref) == pytest.approx(hv)
    extra = np.array(
        data.draw(st.lists(st.integers(0, 4), min_size=points.shape[1], max_size=points.shape[1])),
        dtype=float,
    )
    assert pareto.hypervolume(np.vstack([points, extra]), ref) >= hv - 1e-12  # monotone


BAD_HV = [
    ([1, 2, 3], [0, 0], "points: expected a 2-D array"),
    ([[1, 2]], [0, 0, 0], r"ref: expected shape \(2,\) to match k=2, got shape \(3,\)"),
    ([[1, 2]], [[0, 0]], r"ref: expected a 1-D array"),
    ([[1]], [0], "points: expected at least 2 columns"),
    ([[np.nan, 1]], [0, 0], "points: expected finite values, got nan"),
    ([[np.inf, 1]], [0, 0], "points: expected finite values, got inf"),
    ([[1, 1]], [0, np.nan], "ref: expected finite values"),
    ([["a", "b"]], [0, 0], "points: expected an array of numbers"),
]


@pytest.mark.parametrize(("points", "ref", "message"), BAD_HV)
def test_hypervolume_bad_input(points, ref, message):
    with pytest.raises(ValueError, match=message):
        pareto.hypervolume(points, ref)


# --- reference point policy ------------------------------------------------------------------


def test_reference_points():
    np.testing.assert_allclose(pareto.reference_point_from_bounds([0, 0], [1, 1]), [-0.1, -0.1])
    np.testing.assert_allclose(pareto.reference_point_from_bounds([0, -2], [1, 2], 0.5), [-0.5, -4])
    ref = pareto.reference_point_from_points([[0.2, 0.9], [0.6, 0.5], [0.4, 0.5]])
    np.testing.assert_allclose(ref, [0.16, 0.46])
    assert pareto.dominates_reference([[0.2, 0.9], [0.1, 1.0]], ref).tolist() == [True, False]
    with pytest.raises(ValueError, match="upper > lower"):
        pareto.reference_point_from_bounds([0, 1], [1, 1])
    with pytest.raises(ValueError, match="margin"):
        pareto.reference_point_from_bounds([0, 0], [1, 1], margin=-0.1)


# --- other indicators ------------------------------------------------------------------------


def brute_expected_utility(front, weights):
    return np.mean([max(float(np.dot(w, p)) for p in front) for w in weights])


def test_expected_utility_hand_case():
    front = [[1, 0], [0, 1]]
    # Over w = (0,1), (.5,.5), (1,0): utilities 1, .5, 1.
    assert pareto.expected_utility(front, simplex_lattice(2, 2)) == pytest.approx(2.5 / 3)
    assert pareto.expected_utility(front, [0.3, 0.7]) == pytest.approx(0.7)


@settings(max_examples=60, deadline=None)
@given(small_sets.filter(lambda p: len(p) > 0), st.integers(0, 2**32 - 1))
def test_expected_utility_matches_brute_force(front, seed):
    weights = dirichlet(front.shape[1], 25, np.random.default_rng(seed))
    got = pareto.expected_utility(front, weights)
    assert got == pytest.approx(brute_expected_utility(front, weights))


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([[0.5, 0.6]], "sum to 1"),
        ([[-0.5, 1.5]], "non-negative"),
        ([[0.0, 0.0]], "all-zero"),
        ([[0.5, 0.25, 0.25]], "k=2"),
        ([[np.nan, 1.0]], "finite"),
    ],
)
def test_expected_utility_bad_weights(weights, message):
    with pytest.raises(ValueError, match=message):
        pareto.expected_utility([[1, 0], [0, 1]], weights)


def test_sparsity_hand_cases():
    # Objective 1 sorted 0, 1, 3 -> gaps 1, 2; objective 2 sorted 0, 2, 3 -> gaps 2, 1.
    assert pareto.sparsity([[0, 3], [1, 2], [3, 0]]) == pytest.approx((1 + 4 + 4 + 1) / 2)
    assert pareto.sparsity([[1, 1]]) == 0.0
    assert pareto.sparsity(np.zeros((0, 2))) == 0.0


@settings(max_examples=60, deadline=None)
@given(small_sets.filter(lambda p: len(p) > 0), st.data())
def test_igd_and_igd_plus_match_brute_force(front, data):
    shape = st.tuples(st.integers(1, 8), st.just(front.shape[1]))
    true_front = data.draw(arrays(np.float64, shape, elements=st.integers(0, 4)))
    diff = true_front[:, None, :] - front[None, :, :]  # (t, n, k)
    expected_igd = np.linalg.norm(diff, axis=2).min(axis=1).mean()
    expected_plus = np.linalg.norm(np.clip(diff, 0, None), axis=2).min(axis=1).mean()
    assert pareto.igd(front, true_front) == pytest.approx(expected_igd)
    assert pareto.igd_plus(front, true_front) == pytest.approx(expected_plus)


def test_igd_plus_rewards_dominating_fronts():
    true_front = [[0, 1], [0.5, 0.5], [1, 0]]
    assert pareto.igd_plus([[1, 1]], true_front) == 0.0
    assert pareto.igd([[1, 1]], true_front) > 0.0  # plain IGD penalises a better point
    with pytest.raises(ValueError, match="true_front: expected 2 columns"):
        pareto.igd([[1, 1]], [[1, 1, 1]])


def test_summary_record():
    points = [[1, 0], [0, 1], [0.5, 0.5], [0.2, 0.2], [1, 0]]
    true_front = [[1, 0], [0, 1], [0.5, 0.5]]
    result = pareto.summary(points, [0, 0], weights=simplex_lattice(2, 4), true_front=true_front)
    assert result.n_points == 5
    assert result.cardinality == 3
    assert result.hypervolume == pytest.approx(0.25)
    assert result.ref == (0.0, 0.0)
    assert result.igd == 0.0 and result.igd_plus == 0.0
    assert result.sparsity == pytest.approx(4 * 0.25 / 2)
    assert result.expected_utility == pytest.approx(
        brute_expected_utility(np.array(true_front), simplex_lattice(2, 4))
    )
    record = result.to_dict()
    assert record["ref"] == [0.0, 0.0] and set(record) >= {"hypervolume", "igd_plus"}
    bare = pareto.summary(points, [0, 0])
    assert bare.expected_utility is None and bare.igd is None
