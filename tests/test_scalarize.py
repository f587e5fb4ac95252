"""Scalarisations on hand cases, the non-convex-front case, and the reward normalisers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from morl_core.scalarize import RunningMeanStd, scalarize
from morl_core.weights import simplex_lattice

# --- hand cases ------------------------------------------------------------------------------

HAND = [
    # (rewards, weights, kind, options, expected)
    ([[1.0, 0.0], [0.5, 0.5]], [0.5, 0.5], "linear", {}, [0.5, 0.5]),
    ([[1.0, 2.0, 3.0]], [0.2, 0.3, 0.5], "linear", {}, [2.3]),
    ([[1.0, 1.0]], [0.5, 0.5], "logsum", {}, [0.0]),
    ([[np.e**-1, np.e**-2]], [0.5, 0.5], "logsum", {}, [-1.5]),
    ([[0.0, 1.0]], [0.5, 0.5], "logsum", {"eps": 1e-4}, [0.5 * np.log(1e-4)]),  # clipped at eps
    ([[1.0, 0.0], [0.4, 0.4]], [0.5, 0.5], "tchebycheff", {"utopia": [1, 1]}, [-0.5, -0.3]),
    ([[0.2, 0.6]], [0.25, 0.75], "tchebycheff", {"utopia": [1, 1]}, [-0.3]),  # max(.2, .3)
    # augmented: -(0.3 + 0.1 * (0.2 + 0.3))
    ([[0.2, 0.6]], [0.25, 0.75], "tchebycheff", {"utopia": [1, 1], "rho": 0.1}, [-0.35]),
]


@pytest.mark.parametrize(("rewards", "weights", "kind", "options", "expected"), HAND)
def test_hand_cases(rewards, weights, kind, options, expected):
    np.testing.assert_allclose(scalarize(rewards, weights, kind, **options), expected)


def test_output_shape_and_default_kind():
    rewards = np.random.default_rng(0).uniform(size=(7, 3))
    out = scalarize(rewards, [0.2, 0.3, 0.5])
    assert out.shape == (7,)
    np.testing.assert_allclose(out, rewards @ [0.2, 0.3, 0.5])


# --- the non-convex front --------------------------------------------------------------------


def concave_front(n: int = 11) -> np.ndarray:
    """Points on a quarter circle bulging towards the origin: every interior point is Pareto
    optimal but lies below the chord between the extremes, i.e. in a non-convex region."""
    t = np.linspace(0, np.pi / 2, n)
    return np.column_stack([1 - np.cos(t), 1 - np.sin(t)])  # (n, 2)


def test_linear_never_selects_interior_of_non_convex_front():
    front = concave_front()
    chosen = {int(np.argmax(scalarize(front, w, "linear"))) for w in simplex_lattice(2, 200)}
    assert chosen <= {0, len(front) - 1}


def test_tchebycheff_selects_every_point_of_non_convex_front():
    front = concave_front()
    utopia = np.ones(2)
    chosen = {
        int(np.argmax(scalarize(front, w, "tchebycheff", utopia=utopia)))
        for w in simplex_lattice(2, 200)
    }
    assert chosen == set(range(len(front)))
    for i in range(1, len(front) - 1):  # the weights equalising the gaps pick exactly point i
        w = 1 / (utopia - front[i])
        assert np.argmax(scalarize(front, w / w.sum(), "tchebycheff", utopia=utopia)) == i


# --- properties ------------------------------------------------------------------------------

reward_batches = st.integers(1, 4).flatmap(
    lambda k: st.tuples(
        arrays(np.float64, st.tuples(st.integers(1, 6), st.just(k)), elements=st.floats(0, 1)),
        arrays(np.float64, st.just(k), elements=st.floats(0, 1)),
        arrays(np.float64, st.just(k), elements=st.floats(0.001, 1)),
    )
)


@settings(max_examples=100, deadline=None)
@given(reward_batches, st.sampled_from(["linear", "logsum", "tchebycheff"]))
def test_monotone_in_each_reward(batch, kind):
    rewards, bump, raw_w = batch
    w = raw_w / raw_w.sum()
    options = {"utopia": np.full(len(w), 2.0)} if kind == "tchebycheff" else {}
    better = rewards + bump  # weakly better on every objective
    assert (
        scalarize(better, w, kind, **options) >= scalarize(rewards, w, kind, **options) - 1e-12
    ).all()


# --- bad input -------------------------------------------------------------------------------

BAD = [
    ([1.0, 2.0], [0.5, 0.5], "linear", {}, r"rewards: expected a 2-D array .* got shape \(2,\)"),
    ([[1.0, 2.0]], [1.0], "linear", {}, r"weights: expected k=2 .* got shape \(1,\)"),
    ([[np.nan, 2.0]], [0.5, 0.5], "linear", {}, "rewards: expected finite values, got nan"),
    ([[1.0, 2.0]], [-0.5, 1.5], "linear", {}, "non-negative"),
    ([[1.0, 2.0]], [0.0, 0.0], "linear", {}, "all-zero"),
    ([[1.0, 2.0]], [[0.5, 0.5]], "linear", {}, "one preference"),
    ([[1.0, 2.0]], [0.5, 0.5], "pareto", {}, "kind: expected one of"),
    ([[1.0, 2.0]], [0.5, 0.5], "linear", {"eps": 1.0}, "linear: expected options none"),
    ([[1.0, 2.0]], [0.5, 0.5], "tchebycheff", {}, "utopia: expected a utopia point"),
    ([[1.0, 2.0]], [0.5, 0.5], "tchebycheff", {"utopia": [1.0]}, r"utopia: expected shape \(2,\)"),
    ([[1.0, 2.0]], [0.5, 0.5], "tchebycheff", {"utopia": [1, 1], "rho": -1}, "rho"),
    ([[1.0, 2.0]], [0.5, 0.5], "logsum", {"eps": 0.0}, "eps"),
]


@pytest.mark.parametrize(("rewards", "weights", "kind", "options", "message"), BAD)
def test_bad_input(rewards, weights, kind, options, message):
    with pytest.raises(ValueError, match=message):
        scalarize(rewards, weights, kind, **options)


# --- normalisation ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    arrays(np.float64, st.tuples(st.integers(2, 40), st.just(3)), elements=st.floats(-50, 50)),
    st.lists(st.integers(1, 39), max_size=4),
)
def test_running_mean_std_matches_full_batch(data, cuts):
    norm = RunningMeanStd(3)
    for chunk in np.split(data, sorted(set(c for c in cuts if c < len(data)))):
        norm.update(chunk)
    assert norm.count == len(data)
    np.testing.assert_allclose(norm.mean, data.mean(axis=0), atol=1e-9)
    np.testing.assert_allclose(norm.var, data.var(axis=0), atol=1e-7)


def test_running_mean_std_normalize_and_state():
    norm = RunningMeanStd(2, clip=3.0)
    np.testing.assert_allclose(norm.normalize([[2.0, -1.0]]), [[2.0, -1.0]])  # identity
    norm.update([[0.0, 10.0], [2.0, 30.0]])  # mean (1, 20), std (1, 10)
    np.testing.assert_allclose(norm.normalize([[2.0, 40.0]]), [[1.0, 2.0]], rtol=1e-6)
    np.testing.assert_allclose(norm.normalize([[2.0, 20.0]], center=False), [[2.0, 2.0]], rtol=1e-6)
    np.testing.assert_allclose(norm.normalize([[100.0, 20.0]]), [[3.0, 0.0]])  # clipped
    restored = RunningMeanStd.from_state_dict(json.loads(json.dumps(norm.state_dict())))
    np.testing.assert_array_equal(restored.normalize([[1.5, 7.0]]), norm.normalize([[1.5, 7.0]]))
    assert restored.state_dict() == norm.state_dict()
    with pytest.raises(ValueError, match=r"rewards: expected 2 columns \(k=2\)"):
        norm.update([[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="state: expected keys"):
        RunningMeanStd.from_state_dict({"mean": [0, 0]})
    with pytest.raises(ValueError, match="var"):
        RunningMeanStd.from_state_dict(norm.state_dict() | {"var": [-1.0, 1.0]})
    with pytest.raises(ValueError, match="k: expected an integer >= 1"):
        RunningMeanStd(0)
