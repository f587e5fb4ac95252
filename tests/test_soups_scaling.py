"""The soup served for w is peft's 'cat' soup for w, rewritten in place rather than rebuilt.

Known answers on the shipped demo experts (embedded model): for random w the logits equal those
of ``add_weighted_adapter(combination_type="cat")`` built for that w; a one-hot w is that expert;
moving w moves the logits; a new w leaves nothing of the last one behind; and with the adapters
switched off the model is the base, whatever soup was served before.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morl_core.app.catalog import DEMO_DIR
from morl_core.kl import base_model
from morl_core.methods import soups
from morl_core.policy import load_policy, set_threads
from morl_core.prompts import load_prompts

set_threads(1)

PROMPTS = load_prompts("default", "eval")[:2]
GREEDY = {"max_new_tokens": 8, "greedy": True}


@pytest.fixture(scope="module")
def soup():
    return soups.load(DEMO_DIR / "soups-sentiment-brevity", device="cpu")


@pytest.fixture(scope="module")
def batch(soup):
    encoded = soup.policy.tokenizer(PROMPTS, return_tensors="pt", padding=True)
    return encoded["input_ids"], encoded["attention_mask"]


def logits(model, batch) -> torch.Tensor:  # (B, T, V)
    ids, mask = batch
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask).logits.float()


def served(soup, weights, batch) -> torch.Tensor:
    """The logits of the soup's model once ``choose(w)`` is set, as ``generate`` sets it."""
    soup.policy.model.set_adapter(soup.choose(np.asarray(weights, float)))
    return logits(soup.policy.model, batch)


def peft_cat(soup, weights, batch) -> torch.Tensor:
    """The logits of peft's rank-sum soup built from scratch for ``weights`` (the reference)."""
    model = soup.policy.model
    used = [(name, float(w)) for name, w in zip(soup.adapters, weights, strict=True) if w > 0]
    model.add_weighted_adapter(
        [n for n, _ in used], [w for _, w in used], "reference", combination_type="cat"
    )
    try:
        model.set_adapter("reference")
        return logits(model, batch)
    finally:
        model.set_adapter(next(iter(soup.adapters)))
        model.delete_adapter("reference")


def test_soup_equals_peft_cat_soup_for_random_preferences(soup, batch):
    rng = np.random.default_rng(0)
    with base_model(soup.policy.model) as model:
        base = logits(model, batch)
    for weights in rng.dirichlet(np.ones(2), size=3):
        ours = served(soup, weights, batch)
        torch.testing.assert_close(ours, peft_cat(soup, weights, batch))
        assert (ours - base).abs().max() > 1e-3  # the experts moved the model: not trivial


def test_moving_the_preference_moves_the_logits(soup, batch):
    low, high = served(soup, [0.2, 0.8], batch), served(soup, [0.8, 0.2], batch)
    assert (low - high).abs().max() > 1e-3


def test_one_hot_preference_is_that_expert(soup, batch):
    model = soup.policy.model
    for index, expert in enumerate(soup.adapters):
        weights = np.eye(len(soup.adapters))[index]
        assert soup.choose(weights) == expert
        model.set_adapter(expert)
        alone = logits(model, batch)
        torch.testing.assert_close(served(soup, weights, batch), alone, rtol=0, atol=0)
        # the mixture is continuous into the corner: almost one-hot is almost that expert
        near = np.where(np.arange(len(weights)) == index, 1 - 1e-6, 1e-6)
        torch.testing.assert_close(served(soup, near, batch), alone, rtol=1e-4, atol=1e-4)


def test_adapters_off_after_a_soup_is_the_base_model(soup, batch):
    fresh = load_policy("embedded", device="cpu")
    expected = logits(fresh.model, batch)
    served(soup, [0.35, 0.65], batch)
    with soup.policy.model.disable_adapter():
        torch.testing.assert_close(logits(soup.policy.model, batch), expected)
    with base_model(soup.policy.model) as model:  # what the KL-to-base pass uses
        torch.testing.assert_close(logits(model, batch), expected)
    # and the soup is back once the context closes
    torch.testing.assert_close(
        logits(soup.policy.model, batch), peft_cat(soup, [0.35, 0.65], batch)
    )


def test_a_new_preference_leaves_nothing_of_the_last(soup, batch):
    first, second = [0.3, 0.7], [0.9, 0.1]
    at_first = served(soup, first, batch)
    at_second = served(soup, second, batch)
    assert (at_first - at_second).abs().max() > 1e-3
    torch.testing.assert_close(at_second, peft_cat(soup, second, batch))
    torch.testing.assert_close(served(soup, first, batch), at_first, rtol=0, atol=0)
    served(soup, [1.0, 0.0], batch)  # an expert served in between changes nothing either
    torch.testing.assert_close(served(soup, second, batch), at_second, rtol=0, atol=0)


def test_generate_serves_the_soup(soup):
    weights = [0.45, 0.55]
    texts = soup.generate(PROMPTS, weights, **GREEDY)
    model = soup.policy.model
    model.add_weighted_adapter(list(soup.adapters), weights, "reference", combination_type="cat")
    try:
        model.set_adapter("reference")
        assert soup.policy.generate(PROMPTS, **GREEDY) == texts
    finally:
        model.set_adapter(next(iter(soup.adapters)))
        model.delete_adapter("reference")


def test_three_experts_with_one_unused(batch):
    soup = soups.load(DEMO_DIR / "soups-sentiment-brevity-readability", device="cpu")
    for weights in ([0.5, 0.5, 0.0], [0.2, 0.3, 0.5]):
        torch.testing.assert_close(served(soup, weights, batch), peft_cat(soup, weights, batch))
    assert soup.models_kept == 1 and soup.passes_per_token == 1
