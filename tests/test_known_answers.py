"""Behaviour with known answers: the trainer and every method move the language model where the
exact KL-regularised optimum says they should.

The problem (``morl_core.known_answers``): at adjective-slot prompts a one-token reply is scored
1 by ``warm_word`` when it is a warm adjective and by ``cold_word`` when it is a cold one. For a
preference w the maximiser of E[w . r] - beta KL(pi || ref) is pi*_w = ref exp(w . r / beta) / Z,
computed by enumerating the vocabulary, so each test compares against an exact number.

Each test was checked to fail when the code is broken on purpose: the reward's sign flipped in
``RLTrainer.step`` (rates move away from the optimum), the Exp3 update frozen (the bandit's
weights stay uniform), the meta-policy's update removed (its gain over its prior is exactly 0).
"""

from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
import torch
from known_support import BETA, KNOWN

from morl_core import known_answers as ka
from morl_core import objectives as objective_registry
from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.policy import attach_lora, load_policy, set_threads
from morl_core.prompts import load_prompts
from morl_core.rl.trainer import RLTrainer

set_threads(1)

EXTREMES = [(1.0, 0.0), (0.0, 1.0)]


@pytest.fixture(scope="module")
def prompts() -> list[str]:
    return load_prompts(ka.PROMPT_SET, "train")


@pytest.fixture(scope="module")
def base(prompts):
    """The base model's exact rates and the per-token rewards."""
    policy = load_policy("embedded", device="cpu", threads=1)
    rewards = ka.token_rewards(policy)  # (V, 2)
    ref = ka.reference_logprobs(policy, prompts)  # (P, V)
    return {"rewards": rewards, "ref": ref, "rates": ka.rates(ref, rewards)}


# --- the exact side ---------------------------------------------------------------------------


def test_token_rewards_agree_with_the_registered_objectives(base):
    policy = load_policy("embedded", device="cpu", threads=1)
    warm = [t for t in range(base["rewards"].shape[0]) if base["rewards"][t, 0] == 1.0]
    cold = [t for t in range(base["rewards"].shape[0]) if base["rewards"][t, 1] == 1.0]
    assert len(warm) >= 10 and len(cold) >= 10
    texts = [policy.tokenizer.decode([t]) for t in warm[:5] + cold[:5]]
    scores = objective_registry.score(ka.KNOWN_OBJECTIVES, [""] * 10, texts)
    np.testing.assert_array_equal(scores[:5], [[1.0, 0.0]] * 5)
    np.testing.assert_array_equal(scores[5:], [[0.0, 1.0]] * 5)


def test_the_exact_optimum_beats_every_perturbation_of_it(base):
    """pi* maximises E[s] - beta KL(pi || ref): random perturbations never do better."""
    rng = np.random.default_rng(0)
    ref = base["ref"][:1]
    scores = ka.scalarized_scores(base["rewards"], (0.7, 0.3), "linear")
    star = ka.optimal_logprobs(ref, scores, BETA)

    def value(logp):
        return float((np.exp(logp) * scores).sum() - BETA * ka.kl(logp, ref))

    best = value(star)
    for _ in range(20):
        noisy = star + rng.normal(0, 0.3, star.shape)
        noisy -= np.logaddexp.reduce(noisy, axis=-1, keepdims=True)
        assert value(noisy) < best
    # and the optimum moved mass towards the rewarded classes
    assert ka.rates(star, base["rewards"])[0] > base["rates"][0] + 0.3


# --- the trainer ------------------------------------------------------------------------------


def train_one(weights, steps: int, seed: int = 0, **changes):
    config = RunConfig.from_dict({**KNOWN, "weights": list(weights), **changes})
    policy = load_policy("embedded", device="cpu", threads=1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attach_lora(policy, r=config.lora_r, alpha=config.lora_alpha, adapter_name="policy")
    for name, param in policy.model.named_parameters():
        param.requires_grad_("lora_" in name)
    trainer = RLTrainer(policy, config, load_prompts(ka.PROMPT_SET, "train"), seed=seed)
    for _ in range(steps):
        trainer.step(weights)
    return policy


def test_trainer_reaches_the_exact_kl_regularised_optimum(prompts, base):
    weights = (1.0, 0.0)
    policy = train_one(weights, steps=45, k_samples=8, lr=1e-3)
    logp = ka.next_token_logprobs(policy, prompts)
    result = ka.compare(logp, base["ref"], base["rewards"], weights, BETA)
    start = ka.compare(base["ref"], base["ref"], base["rewards"], weights, BETA)
    target = int(np.argmax(weights))
    # the rewarded class moved from the base rate to the exact optimum, within 0.03
    assert result.rates[target] > base["rates"][target] + 0.3
    assert abs(result.rates[target] - result.optimal_rates[target]) < 0.03, result.to_dict()
    # and the whole distribution is close to pi*: KL(pi || pi*) fell at least five-fold
    assert result.kl_to_optimum < start.kl_to_optimum / 5, (result.kl_to_optimum, start)


@pytest.mark.slow
def test_trainer_matches_the_optimum_within_0_02_after_150_steps(prompts, base):
    """The issue's acceptance case: beta 0.3, 150 steps of 8 prompts x 8 samples."""
    policy = train_one((1.0, 0.0), steps=150, k_samples=8, lr=1e-3)
    logp = ka.next_token_logprobs(policy, prompts)
    result = ka.compare(logp, base["ref"], base["rewards"], (1.0, 0.0), BETA)
    assert abs(result.rates[0] - result.optimal_rates[0]) < 0.02, result.to_dict()


# --- every method -----------------------------------------------------------------------------


def sampled_rates(steerable, weights, prompts, n: int = 32, seed: int = 0) -> np.ndarray:
    """Class rates (2,) of ``n`` sampled one-token replies per prompt (common random numbers)."""
    texts = steerable.generate(prompts, weights, n=n, max_new_tokens=1, seed=seed)
    repeated = [p for p in prompts for _ in range(n)]
    return objective_registry.score(ka.KNOWN_OBJECTIVES, repeated, texts).mean(0)


@pytest.fixture(scope="module")
def expert_run(tmp_path_factory):
    """Soups run on the known-answer pair: its experts serve soups, MOD, EMORL, meta-policy."""
    run = tmp_path_factory.mktemp("known-experts")
    config = RunConfig.from_dict({**KNOWN, "method": "soups", "steps": 15})
    (run / "config.json").write_text(json.dumps(config.to_dict()))
    METHODS["soups"].train(config, run)
    return run


AGGREGATIONS = {
    "soups": {},
    "mod": {},
    "emorl": {"search_rounds": 1},
    "metapolicy": {"meta_steps": 20},
}
SINGLE = {"morlhf": 15, "ric": 20, "panacea": 30}
# RiC trains by supervised steps (cross-entropy on tagged samples), not by RL: at the RL rate of
# 2e-3 its class preference swung from step to step and which end held at step 20 depended on
# the seed (seed 1: ends (0.66, 0.33) and (0.53, 0.45)); at 1e-3 seeds 0, 1 and 2 all passed,
# warm end / cold end (0.63, 0.35) / (0.14, 0.83), (0.94, 0.05) / (0.26, 0.71), (0.91, 0.07) /
# (0.30, 0.66), from (0.11, 0.07) / (0.12, 0.06) for the tagged base model.
LR = {"ric": 1e-3}
# How far each extreme must move its objective.
MARGIN: dict[str, float] = {}


@pytest.fixture(scope="module")
def trained_methods(expert_run, tmp_path_factory):
    """Each family trained on the known-answer pair, on first use (aggregations reuse one set
    of experts), so a selection of these tests trains only what it needs."""
    cache = {}

    def get(name: str):
        if name not in cache:
            run = tmp_path_factory.mktemp(name)
            if name in AGGREGATIONS:
                config = {**KNOWN, "method": name, "steps": 15}
                config["options"] = {"experts_from": str(expert_run), **AGGREGATIONS[name]}
            else:
                config = {**KNOWN, "method": name, "steps": SINGLE[name]}
                config["lr"] = LR.get(name, KNOWN["lr"])
            METHODS[name].train(RunConfig.from_dict(config), run)
            cache[name] = METHODS[name].load(run, device="cpu")
        return cache[name]

    return get


def reference_rates(method, steerable, weights, prompts, base):
    """What the method starts from at ``weights``: the base model's rates, except for RiC,
    whose prompt carries the target tags (the base model reads a different prompt there)."""
    if method != "ric":
        return base["rates"]
    with steerable.policy.model.disable_adapter():
        return sampled_rates(steerable, weights, prompts)


@pytest.mark.parametrize("method", [*AGGREGATIONS, "morlhf", "panacea", "ric"])
def test_each_extreme_preference_moves_its_objective_the_right_way(
    method, trained_methods, prompts, base
):
    steerable = trained_methods(method)
    warm_end = sampled_rates(steerable, EXTREMES[0], prompts)
    cold_end = sampled_rates(steerable, EXTREMES[1], prompts)
    warm_start = reference_rates(method, steerable, EXTREMES[0], prompts, base)
    cold_start = reference_rates(method, steerable, EXTREMES[1], prompts, base)
    # w = (1, 0): more warm words than the base model; w = (0, 1): more cold words
    margin = MARGIN.get(method, 0.15)
    assert warm_end[0] > warm_start[0] + margin, (warm_end, warm_start)
    assert cold_end[1] > cold_start[1] + margin, (cold_end, cold_start)
    # and the two ends are measurably different policies
    assert warm_end[0] - cold_end[0] > margin and cold_end[1] - warm_end[1] > margin


def test_panacea_reaches_both_ends_at_a_small_learning_rate(tmp_path, prompts, base):
    """At SmolLM2's rate (3e-4) Panacea must still learn to steer: 60 steps bring the exact
    first-token distribution at each end near pi*_w. With the paper's start (singular values
    and lambda at 0, so U and V get no gradient until they move) the ends stayed 0.19 apart in
    the warm rate and 0.34 / 0.96 nats from the optimum (seed 0); with U at 0 and the singular
    values at 1, 0.82 apart and 0.04 / 0.13 nats."""
    config = {**KNOWN, "method": "panacea", "steps": 60, "lr": 3e-4}
    METHODS["panacea"].train(RunConfig.from_dict(config), tmp_path)
    panacea = METHODS["panacea"].load(tmp_path, device="cpu")
    results = {}
    for weights in EXTREMES:
        panacea.policy.model.set_preference(np.asarray(weights))
        logp = ka.next_token_logprobs(panacea.policy, prompts)
        results[weights] = ka.compare(logp, base["ref"], base["rewards"], weights, BETA)
    warm, cold = results[EXTREMES[0]], results[EXTREMES[1]]
    assert warm.rates[0] - cold.rates[0] > 0.5 and cold.rates[1] - warm.rates[1] > 0.4
    assert warm.kl_to_optimum < 0.2 and cold.kl_to_optimum < 0.3, (warm, cold)


def test_panacea_concentrated_preferences_tell_the_ends_apart_sooner(tmp_path, prompts, base):
    """Sampling training preferences near the simplex's corners (Dirichlet(0.3), option
    ``preference_concentration``) gives Panacea's preference columns 1.9 times the contrast of the
    uniform draw (see its module docstring): after 20 steps the exact rates at the two ends
    lie further apart on both objectives, seed for seed (0 and 1: sums of the two gaps 0.19 and
    0.23 at 1, 0.41 and 0.68 at 0.3). Its draws are more extreme too."""

    def trained(concentration: float, seed: int):
        drawn = []

        def record(info):
            drawn.append(info.metrics["weight/warm_word"])
            return True

        config = {**KNOWN, "method": "panacea", "steps": 20, "lr": 3e-4, "seed": seed}
        config["options"] = {"preference_concentration": concentration}
        run = tmp_path / f"c{concentration}-s{seed}"
        METHODS["panacea"].train(RunConfig.from_dict(config), run, record)
        panacea = METHODS["panacea"].load(run, device="cpu")
        rates = []
        for weights in EXTREMES:
            panacea.policy.model.set_preference(np.asarray(weights))
            rates.append(ka.rates(ka.next_token_logprobs(panacea.policy, prompts), base["rewards"]))
        (warm_end, cold_end), spread = rates, np.mean(np.abs(np.asarray(drawn) - 0.5))
        return (warm_end[0] - cold_end[0]) + (cold_end[1] - warm_end[1]), spread

    for seed in (0, 1):
        uniform, uniform_spread = trained(1.0, seed)
        cornered, cornered_spread = trained(0.3, seed)
        assert cornered > uniform + 0.1, (seed, cornered, uniform)
        assert cornered_spread > uniform_spread, (seed, cornered_spread, uniform_spread)


def test_ric_several_supervised_steps_per_round_tell_the_ends_apart_at_a_small_rate(
    tmp_path, prompts
):
    """At SmolLM2's rate (3e-4) one supervised step per round left RiC's ends where the tagged
    base model is after 10 rounds (sampled warm/cold gap sums -0.008 and -0.016, seeds 0 and 1),
    as on SmolLM2, where 100 rounds did not separate its ends; four steps per round on the same
    pool (option ``sft_updates``, no new samples) separated them (0.32 and 0.56)."""

    def gap(updates: int, seed: int) -> float:
        config = {**KNOWN, "method": "ric", "steps": 10, "lr": 3e-4, "seed": seed}
        config["options"] = {"sft_updates": updates}
        run = tmp_path / f"u{updates}-s{seed}"
        METHODS["ric"].train(RunConfig.from_dict(config), run)
        ric = METHODS["ric"].load(run, device="cpu")
        warm_end, cold_end = (sampled_rates(ric, w, prompts) for w in EXTREMES)
        return (warm_end[0] - cold_end[0]) + (cold_end[1] - warm_end[1])

    for seed in (0, 1):
        once, four = gap(1, seed), gap(4, seed)
        assert four > 0.2 and four > once + 0.2, (seed, four, once)


def test_ric_tags_in_words_are_written_as_trained_and_read(tmp_path, prompts):
    """Option ``tags="words"``: the run trains on requests in words ("Make your reply very
    warm."), saves the style in its artifact and is served with it, so each end asks for its
    objective in words and gets it: both ends move their objective past where the same request
    leaves the base model (the embedded model does not read English requests), and apart. The
    two requests differ in one word, which takes longer to learn than the relaxed tags: at 20
    rounds seed 0's cold end was still warm (rates 0.78 / 0.20), at 40 seeds 0 and 1 gave warm
    ends (1.00, 0.00) and cold ends (0.26, 0.71) and (0.01, 0.94)."""
    for seed in (0, 1):  # trained on relaxed tags and asked in words: gaps 0.17 and -0.97
        config = {**KNOWN, "method": "ric", "steps": 40, "lr": LR["ric"], "seed": seed}
        config["options"] = {"tags": "words"}
        METHODS["ric"].train(RunConfig.from_dict(config), tmp_path / str(seed))
        ric = METHODS["ric"].load(tmp_path / str(seed), device="cpu")
        assert ric.prompt_prefix(EXTREMES[0]) == "Make your reply very warm.\n"
        assert ric.prompt_prefix((0.7, 0.3)) == "Make your reply very warm and fairly cold.\n"
        warm_end, cold_end = (sampled_rates(ric, w, prompts) for w in EXTREMES)
        with ric.policy.model.disable_adapter():
            warm_start, cold_start = (sampled_rates(ric, w, prompts) for w in EXTREMES)
        assert warm_end[0] > warm_start[0] + 0.3, (seed, warm_end, warm_start)
        assert cold_end[1] > cold_start[1] + 0.3, (seed, cold_end, cold_start)
        assert warm_end[0] - cold_end[0] > 0.4 and cold_end[1] - warm_end[1] > 0.4, seed


# --- DynaOpt's bandit -------------------------------------------------------------------------


def test_dynaopt_moves_weight_to_the_lagging_objective(tmp_path, prompts, base):
    """The base model says more warm than cold words, so cold lags; Exp3 must shift the
    training weights towards it (window 2: 15 updates in 30 steps), and back as it catches up."""
    assert base["rates"][1] < base["rates"][0]  # the premise: cold_word is the lagging one
    weights = []

    def record(info):
        weights.append(info.metrics["weight/cold_word"])
        return True

    config = RunConfig.from_dict({**KNOWN, "method": "dynaopt", "steps": 30})
    METHODS["dynaopt"].train(config, tmp_path, record)
    assert weights[0] == pytest.approx(0.5)
    # the lagging objective gets more than half the weight on average, and clearly so at times
    # (a frozen bandit stays at exactly 0.5; paying the leader would push it below 0.5)
    assert np.mean(weights) > 0.52 and max(weights) > 0.55, weights
    steerable = METHODS["dynaopt"].load(tmp_path, device="cpu")
    rates = sampled_rates(steerable, (0.5, 0.5), prompts)
    # one policy trained on moving weights: both objectives above the base model
    assert rates[0] > base["rates"][0] + 0.1 and rates[1] > base["rates"][1] + 0.03, rates


# --- the meta-policy against its own prior ----------------------------------------------------


def meta_logprobs(meta, weights, prompts, prior: bool = False) -> np.ndarray:
    """The mixed policy's exact first-token log-probs (P, V): trained, or mixed by the prior."""
    meta.mixer.set_preference(weights)
    with meta.mixer.reference() if prior else contextlib.nullcontext():
        return ka.next_token_logprobs(meta.policy, prompts)


def test_trained_meta_policy_beats_its_untrained_prior(trained_methods, prompts, base):
    """The upper level must add something: on exact first-token distributions (no sampling
    noise), at the middle preference the trained mixer earns more of the objective it is trained
    on, E[w . r] - beta KL(pi || pi_0), than the same experts mixed by the prior alone (pi_0,
    alpha = w; its own KL term is 0). A frozen upper level gives a gain of exactly 0; so did
    the uncentred bounded scores, whose tanh saturated and stopped the mixer's gradient.

    What it does not do is approach pi*_w: its KL reference is pi_0, not the base model, so it
    pushes the mixture beyond the experts' trade-off; the distances to pi*_w are in the message.
    """
    meta = trained_methods("metapolicy")
    weights = np.array([0.5, 0.5])
    trained = meta_logprobs(meta, weights, prompts)
    prior = meta_logprobs(meta, weights, prompts, prior=True)

    def objective(logp):
        return float(ka.rates(logp, base["rewards"]) @ weights) - BETA * ka.kl(logp, prior)

    gain = objective(trained) - objective(prior)
    to_optimum = [
        ka.compare(lp, base["ref"], base["rewards"], weights, BETA).to_dict()
        for lp in (trained, prior)
    ]
    assert gain > 0.005, (gain, to_optimum)
