"""Preferences: lattice, Dirichlet, extremes, slider state and the shared weight validator."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from morl_core import weights as W

# --- simplex lattice -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("k", "divisions", "expected"),
    [
        (2, 1, [[0, 1], [1, 0]]),
        (2, 4, [[0, 1], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1, 0]]),
        (3, 1, [[0, 0, 1], [0, 1, 0], [1, 0, 0]]),
        (1, 3, [[1]]),
    ],
)
def test_lattice_table(k, divisions, expected):
    np.testing.assert_allclose(W.simplex_lattice(k, divisions), expected)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 8))
def test_lattice_properties(k, divisions):
    lattice = W.simplex_lattice(k, divisions)
    assert lattice.shape == (math.comb(divisions + k - 1, k - 1), k)
    assert lattice.shape[0] == W.lattice_size(k, divisions)
    np.testing.assert_allclose(lattice.sum(axis=1), 1.0)
    assert (lattice >= 0).all()
    steps = lattice * divisions
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)  # on the 1/H grid
    assert len(np.unique(lattice, axis=0)) == len(lattice)  # no duplicates
    for corner in np.eye(k):  # the corners are always included
        assert (np.abs(lattice - corner).sum(axis=1) < 1e-12).any()


@pytest.mark.parametrize(
    ("k", "divisions", "message"),
    [
        (0, 3, "k: expected an integer >= 1"),
        (3, 0, "divisions"),
        (2.5, 3, "k"),
        (30, 40, "at most"),
    ],
)
def test_lattice_bad_input(k, divisions, message):
    with pytest.raises(ValueError, match=message):
        W.simplex_lattice(k, divisions)


# --- dirichlet and extremes ------------------------------------------------------------------


def test_dirichlet_is_seeded_and_on_simplex():
    a = W.dirichlet(4, 500, np.random.default_rng(7))
    b = W.dirichlet(4, 500, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (500, 4)
    np.testing.assert_allclose(a.sum(axis=1), 1.0)
    assert (a >= 0).all()
    np.testing.assert_allclose(a.mean(axis=0), 0.25, atol=0.03)  # alpha = 1: symmetric
    skewed = W.dirichlet(2, 2000, np.random.default_rng(0), alpha=[8.0, 2.0])
    assert skewed.mean(axis=0)[0] == pytest.approx(0.8, abs=0.02)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 3, "n": 5, "rng": None}, "rng: expected a np.random.Generator"),
        ({"k": 3, "n": 5, "rng": 42}, "rng: expected a np.random.Generator"),
        ({"k": 1, "n": 5, "rng": np.random.default_rng(0)}, "k: expected an integer >= 2"),
        ({"k": 3, "n": -1, "rng": np.random.default_rng(0)}, "n: expected"),
        ({"k": 3, "n": 5, "rng": np.random.default_rng(0), "alpha": 0.0}, "alpha"),
        ({"k": 3, "n": 5, "rng": np.random.default_rng(0), "alpha": [1, 1]}, "alpha"),
    ],
)
def test_dirichlet_bad_input(kwargs, message):
    with pytest.raises(ValueError, match=message):
        W.dirichlet(**kwargs)


# --- check_weights ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "k", "message"),
    [
        ([0.5, 0.6], 2, r"sum to 1 .* got a sum of 1.1"),
        ([-0.1, 1.1], 2, "non-negative weights, got minimum -0.1"),
        ([0, 0], 2, "all-zero"),
        ([0.5, 0.5], 3, r"k=3 entries per preference, got shape \(2,\)"),
        ([np.inf, 0], 2, "finite"),
        ([[[1.0]]], None, r"shape \(k,\) or \(m, k\)"),
    ],
)
def test_check_weights_bad_input(weights, k, message):
    with pytest.raises(ValueError, match=message):
        W.check_weights(weights, k=k)


def test_check_weights_removes_rounding_drift():
    w = W.check_weights([[1 / 3, 1 / 3, 1 / 3 + 1e-9]])
    np.testing.assert_allclose(w.sum(axis=1), 1.0, rtol=0, atol=1e-15)


# --- sliders ---------------------------------------------------------------------------------

SLIDER_TABLE = [
    # (values, locked, moved, expected)
    ([1, 1], (), None, [0.5, 0.5]),
    ([3, 1], (), None, [0.75, 0.25]),  # any scale without locks
    ([0, 0, 0], (), None, [1 / 3, 1 / 3, 1 / 3]),  # all zero -> uniform
    ([0.5, 0.2, 0.2], (0,), None, [0.5, 0.25, 0.25]),  # free sliders share the remainder
    ([0.5, 0.0, 0.0], (0,), None, [0.5, 0.25, 0.25]),  # free all zero -> equal share
    ([1.0, 0.3, 0.7], (0,), None, [1.0, 0.0, 0.0]),  # nothing left for free sliders
    ([0.9, 0.5, 0.5], (2,), 0, [0.5, 0.0, 0.5]),  # moved slider capped by the lock
    ([0.6, 0.1, 0.3], (), 0, [0.6, 0.1, 0.3]),  # others rescale around the moved one
    ([0.6, 0.3, 0.3], (), 0, [0.6, 0.2, 0.2]),
    ([0.2, 0.8], (0, 1), None, [0.2, 0.8]),  # all locked and summing to 1
    ([0.3, 0.1], (0,), 1, [0.3, 0.7]),  # moved slider is the only unlocked one: it absorbs
]


@pytest.mark.parametrize(("values", "locked", "moved", "expected"), SLIDER_TABLE)
def test_sliders_table(values, locked, moved, expected):
    got = W.sliders_to_weights(values, locked=locked, moved=moved)
    np.testing.assert_allclose(got, expected, atol=1e-12)


@pytest.mark.parametrize(
    ("values", "locked", "moved", "message"),
    [
        ([0.7, 0.6, 0.1], (0, 1), None, "locked weights summing to <= 1"),
        ([0.2, 0.3], (0, 1), None, "every slider is locked"),
        ([1.5, 0.3], (0,), None, r"locked sliders in \[0, 1\]"),
        ([-0.1, 0.3], (), None, "values: expected slider values >= 0"),
        ([np.nan, 0.3], (), None, "finite"),
        ([0.1, 0.3], (2,), None, r"indices in \[0, 1\], got 2"),
        ([0.1, 0.3], (), -1, r"indices in \[0, 1\], got -1"),
    ],
)
def test_sliders_bad_input(values, locked, moved, message):
    with pytest.raises(ValueError, match=message):
        W.sliders_to_weights(values, locked=locked, moved=moved)


@settings(max_examples=200, deadline=None)
@given(st.data(), st.integers(2, 6))
def test_sliders_always_valid(data, k):
    values = data.draw(st.lists(st.floats(0, 1), min_size=k, max_size=k))
    locked = data.draw(st.sets(st.integers(0, k - 1), max_size=k - 1))
    moved = data.draw(st.none() | st.integers(0, k - 1))
    if sum(values[i] for i in locked) > 1:
        return
    w = W.sliders_to_weights(values, locked=locked, moved=moved)
    assert w.shape == (k,)
    assert (w >= 0).all()
    assert w.sum() == pytest.approx(1.0)
    for i in locked:  # locks hold
        assert w[i] == pytest.approx(values[i], abs=1e-9)
