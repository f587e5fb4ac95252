"""Preferences from choices: a simulated person with known weights answers "which reply is
better?" and the Bradley-Terry posterior must find their weights (pure numpy, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from morl_core import elicit


def simulated_choice(
    true_weights, s_a, s_b, rng: np.random.Generator, beta: float = elicit.DEFAULT_BETA
) -> bool:
    """A simulated person with known weights: True when they pick ``a`` (Bradley-Terry draw)."""
    w = np.asarray(true_weights, dtype=float)
    d = np.asarray(s_a, dtype=float) - np.asarray(s_b, dtype=float)
    return bool(rng.random() < 1.0 / (1.0 + np.exp(-beta * float(w @ d))))


def elicit_weights(k: int, seed: int, candidates: int, choices: int = 15):
    """(truth, estimate) after ``choices`` answers of a simulated person on random replies."""
    rng = np.random.default_rng(seed)
    truth = rng.dirichlet(np.ones(k))
    scores = rng.random((candidates, k))  # (N, K) the replies' objective scores
    posterior = elicit.prior(k, rng=rng)
    asked: list[tuple[int, int]] = []
    for _ in range(choices):
        i, j = posterior.next_pair(scores, asked)
        asked.append((i, j))
        chose_a = simulated_choice(truth, scores[i], scores[j], rng)
        posterior = posterior.update(scores[i], scores[j], chose_a)
    return truth, posterior.estimate(0.9)


@pytest.mark.parametrize(("k", "candidates"), [(2, 20), (3, 30)])
def test_simulated_person_is_found_within_0_1_after_15_choices(k, candidates):
    errors = []
    for seed in range(10):
        truth, estimate = elicit_weights(k, seed, candidates)
        errors.append(float(np.abs(estimate.mean - truth).max()))
        assert estimate.choices == 15
        assert estimate.mean.sum() == pytest.approx(1.0)
    assert sum(e <= 0.1 for e in errors) >= 9, errors


def test_interval_shrinks_and_covers_the_truth():
    truth, estimate = elicit_weights(2, seed=3, candidates=20)
    wide = elicit.prior(2).estimate(0.9)
    assert wide.width > 0.8  # the uniform prior: almost the whole simplex
    assert estimate.width < 0.3
    assert np.all(estimate.lower <= truth + 0.02) and np.all(truth - 0.02 <= estimate.upper)


def test_one_choice_moves_the_mean_towards_the_chosen_reply():
    posterior = elicit.prior(2)
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])  # a is all objective 0
    after = posterior.update(a, b, chose_a=True).estimate()
    assert after.mean[0] > 0.6  # uniform prior: mean 0.5; choosing a favours objective 0
    back = posterior.update(a, b, chose_a=False).estimate()
    assert back.mean[0] == pytest.approx(1 - after.mean[0])


def test_next_pair_prefers_informative_pairs_and_skips_asked_ones():
    posterior = elicit.prior(2)
    scores = np.array([[0.5, 0.5], [0.5, 0.5001], [1.0, 0.0], [0.0, 1.0]])
    assert posterior.next_pair(scores) == (2, 3)  # the two extremes split the prior in half
    assert posterior.next_pair(scores, asked=[(3, 2)]) != (2, 3)
    gain = posterior.information_gain(scores)
    assert gain[2, 3] > gain[0, 1] >= 0.0


def test_bad_input_names_the_field():
    with pytest.raises(ValueError, match="k:"):
        elicit.prior(1)
    with pytest.raises(ValueError, match="beta:"):
        elicit.prior(2, beta=0.0)
    with pytest.raises(ValueError, match="rng:"):
        elicit.prior(4)
    with pytest.raises(ValueError, match="scores:"):
        elicit.prior(2).next_pair([[0.1, 0.2]])
    with pytest.raises(ValueError, match="s_a:"):
        elicit.prior(2).update([0.1], [0.1, 0.2], True)


def test_four_objectives_use_sampled_particles():
    posterior = elicit.prior(4, rng=np.random.default_rng(0), particles=500)
    assert posterior.particles.shape == (500, 4)
    assert np.allclose(posterior.particles.sum(1), 1.0)
