"""EMORL (D3) as it really is, PMIX (the arithmetic mixture, D2) and EMORL's grid search.

Two tiny LoRA experts on the embedded model, fitted in a few supervised steps to put their
first-token mass on warm adjectives and on cold ones (the known-answer classes), stand in for
trained per-objective experts. On them we check, with exact next-token distributions:

- EMORL's default mixing (after the final layer norm, shared bias-free head) *is* MOD with
  weights a / sum(a) at temperature 1 / sum(a), to 1e-5, and decodes the same text;
- mixing before the final norm (``mix_at="pre_norm"``) is not, and ignores the scale of a;
- PMIX is the arithmetic mixture sum_i w_i pi_i, so its class rates are the w-weighted rates;
- the grid search runs on training prompts only, its samples are counted as training cost, and
  its coefficients beat a = w where they must: two disjoint experts, whose geometric mixture at
  w = (0.5, 0.5) puts far less mass on either class than one expert alone does;
- with the KL term (the default), on experts fitted to the exact optima pi*_(1,0) and pi*_(0,1),
  the search finds the known answer pi*_(0.5,0.5) where the reward-only search picks a corner.
  Checked to fail with the KL term dropped from the score (both searches then pick (1, 0));
- ``search_replies`` replies are drawn per prompt and candidate and counted as cost, and on a
  search seed where one reply per prompt picks a lucky candidate, 4 replies find the optimum;
- ``search_guard`` keeps a = w on that lucky draw with a single reply (a candidate must beat
  a = w by 2 paired standard errors) and still leaves a = w where an expert alone really beats
  it; mixed before the final norm, each direction of a is decoded once.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from morl_core import known_answers as ka
from morl_core.config import ConfigError, RunConfig
from morl_core.evaluation import EVAL_DECODING
from morl_core.methods import StepInfo, emorl_search, get
from morl_core.methods import emorl as emorl_module
from morl_core.methods.common import ARTIFACT, _train_only, adapter_dir, save_adapter_atomic
from morl_core.methods.emorl import Emorl, search_prompts
from morl_core.methods.emorl_search import SEARCH_SEED, search_table
from morl_core.methods.experts import expert_names
from morl_core.methods.mixture import ProbabilityMixture, mixture_next_token
from morl_core.methods.mod import Mod, mixed_next_token
from morl_core.objectives import score
from morl_core.policy import attach_lora, load_policy, set_threads
from morl_core.prompts import load_prompts
from morl_core.search import hierarchical_grid_search

set_threads(1)

NAMES = expert_names(ka.KNOWN_OBJECTIVES)
FIT_STEPS = 6  # supervised steps per expert: enough for ~0.98 of the mass on its class
BASE = {
    "objectives": list(ka.KNOWN_OBJECTIVES),
    "prompt_set": ka.PROMPT_SET,
    "steps": 1,
    "batch_prompts": 2,
    "k_samples": 2,
    "max_new_tokens": 1,
    "eval_prompts": 4,
    "n_preferences": 2,
    "eval_every": 0,
    "device": "cpu",
    "threads": 1,
}


def positions(mask: torch.Tensor) -> torch.Tensor:
    return (mask.cumsum(-1) - 1).clamp(min=0)


@pytest.fixture(scope="module")
def experts():
    """(policy with the two fitted experts, token rewards (V, 2), training prompts)."""
    policy = load_policy("embedded", device="cpu")
    rewards = ka.token_rewards(policy)  # (V, 2)
    prompts = load_prompts(ka.PROMPT_SET, "train")
    ids, mask = policy.encode(prompts, max_new_tokens=1)
    torch.manual_seed(0)
    for k, name in enumerate(NAMES):
        attach_lora(policy, r=4, alpha=8, adapter_name=name)
        _train_only(policy, name)
        params = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=5e-3)
        in_class = torch.as_tensor(rewards[:, k] > 0)
        for _ in range(FIT_STEPS):  # maximise log pi(class of objective k | x)
            logits = policy.model(
                input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=1
            ).logits[:, -1]
            logp = torch.log_softmax(logits.float(), -1)
            loss = -torch.logsumexp(logp[:, in_class], -1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        policy.model.set_adapter(name, inference_mode=True)
    return policy, rewards, prompts


def next_logprobs(policy, next_token, prompts) -> np.ndarray:
    """log-softmax (P, V) of a next-token function's logits at the end of each prompt."""
    ids, mask = policy.encode(prompts, max_new_tokens=1)
    with torch.no_grad():
        logits, _ = next_token(ids, mask, positions(mask), None)
    return torch.log_softmax(logits.double(), -1).numpy()


def emorl_logprobs(emorl: Emorl, coefficients, prompts) -> np.ndarray:
    emorl.mixer.weights = torch.tensor(coefficients, dtype=torch.float32)
    model = emorl.fusion

    def next_token(ids, mask, pos, cache):
        out = model(input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1)
        return out.logits[:, -1].float(), None

    return next_logprobs(emorl.policy, next_token, prompts)


def mod_logprobs(policy, weights, temperature, prompts) -> np.ndarray:
    forward = mixed_next_token(policy.model, NAMES, list(weights))
    return next_logprobs(policy, lambda *a: (forward(*a)[0] / temperature, None), prompts)


def expert_logprobs(policy, name, prompts) -> np.ndarray:
    policy.model.set_adapter(name, inference_mode=True)
    return ka.next_token_logprobs(policy, prompts)


# --- D3 after the final norm is MOD up to temperature ---


@pytest.mark.parametrize("coefficients", [(0.6, 0.3), (1.0, 1.0), (0.2, 0.9)])
def test_emorl_final_mixing_is_mod_at_temperature_one_over_sum(experts, coefficients):
    policy, _, prompts = experts
    a = np.asarray(coefficients)
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    mixed = np.exp(emorl_logprobs(emorl, a, prompts))
    mod = np.exp(mod_logprobs(policy, a / a.sum(), 1.0 / a.sum(), prompts))
    assert np.abs(mixed - mod).max() < 1e-5
    at_temperature_one = np.exp(mod_logprobs(policy, a / a.sum(), 1.0, prompts))
    if a.sum() != 1.0:  # the comparison can fail: the temperature is what differs
        assert np.abs(mixed - at_temperature_one).max() > 1e-3


def test_emorl_and_mod_at_that_temperature_decode_the_same_text(experts):
    policy, _, prompts = experts
    a = np.asarray([0.7, 0.5])
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    mod = Mod(policy, ka.KNOWN_OBJECTIVES, NAMES)
    gen = {"seed": 3, "max_new_tokens": 8}
    texts = emorl.decode(prompts, a, temperature=1.0, **gen)
    assert texts == mod.generate(prompts, a / a.sum(), temperature=1.0 / a.sum(), **gen)
    assert texts != mod.generate(prompts, a / a.sum(), temperature=1.0, **gen)


# --- D3 before the final norm is a different method ---


def test_pre_norm_mixing_differs_from_mod_and_ignores_the_scale_of_a(experts):
    policy, _, prompts = experts
    final = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES, mix_at="final")
    pre = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES, mix_at="pre_norm")
    for name, one_hot in zip(NAMES, ([1.0, 0.0], [0.0, 1.0]), strict=True):
        alone = np.exp(expert_logprobs(policy, name, prompts))
        for emorl in (final, pre):  # one expert alone: both levels give that expert exactly
            assert np.abs(np.exp(emorl_logprobs(emorl, one_hot, prompts)) - alone).max() < 1e-5
    a = np.asarray([0.6, 0.3])
    mod = np.exp(mod_logprobs(policy, a / a.sum(), 1.0 / a.sum(), prompts))
    assert np.abs(np.exp(emorl_logprobs(final, a, prompts)) - mod).max() < 1e-5
    deeper = np.exp(emorl_logprobs(pre, a, prompts))
    assert np.abs(deeper - mod).max() > 1e-2  # not a mixture of logits
    doubled = np.exp(emorl_logprobs(pre, 2 * a, prompts))
    assert np.abs(doubled - deeper).max() < 1e-4  # the norm removes the scale of a


def test_mix_at_is_validated_by_name(experts):
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_dict({**BASE, "method": "emorl", "options": {"mix_at": "middle"}})
    assert "final, pre_norm" in refused.value.errors["options.mix_at"]
    with pytest.raises(ValueError, match="mix_at must be one of final, pre_norm"):
        Emorl(experts[0], ka.KNOWN_OBJECTIVES, NAMES, mix_at="middle")


# --- PMIX: the arithmetic mixture ---


def test_pmix_is_the_arithmetic_mixture_of_the_experts(experts):
    policy, rewards, prompts = experts
    w = np.asarray([0.3, 0.7])
    mixed = next_logprobs(policy, mixture_next_token(policy.model, NAMES, list(w)), prompts)
    alone = [np.exp(expert_logprobs(policy, n, prompts)) for n in NAMES]  # oracle: no cache
    assert np.abs(np.exp(mixed) - (w[0] * alone[0] + w[1] * alone[1])).max() < 1e-5
    # so the class rates are the weighted rates exactly, where MOD's geometric mixture is not
    weighted = w[0] * ka.rates(np.log(alone[0]), rewards) + w[1] * ka.rates(
        np.log(alone[1]), rewards
    )
    np.testing.assert_allclose(ka.rates(mixed, rewards), weighted, atol=1e-5)
    geometric = ka.rates(mod_logprobs(policy, w, 1.0, prompts), rewards)
    assert np.abs(geometric - weighted).max() > 0.05
    steerable = ProbabilityMixture(policy, ka.KNOWN_OBJECTIVES, NAMES)
    one_hot = next_logprobs(policy, steerable.next_token([1.0, 0.0]), prompts)
    assert np.abs(np.exp(one_hot) - alone[0]).max() < 1e-5


# --- training with reused experts: pmix, and emorl's search as training cost ---


@pytest.fixture(scope="module")
def experts_run(experts, tmp_path_factory) -> Path:
    """A finished-looking run folder holding the two fitted experts."""
    policy, _, _ = experts
    run_dir = tmp_path_factory.mktemp("known-experts")
    config = RunConfig.from_dict({**BASE, "method": "soups"})
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    for name in NAMES:
        save_adapter_atomic(policy, adapter_dir(run_dir, name), name)
    return run_dir


def train(method: str, run_dir: Path, source: Path, **options) -> list[StepInfo]:
    config = RunConfig.from_dict(
        {**BASE, "method": method, "options": {"experts_from": str(source), **options}}
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    infos: list[StepInfo] = []
    get(method).train(config, run_dir, lambda info: infos.append(info) or True)
    return infos


def test_pmix_trains_on_reused_experts_and_serves_preferences(experts, experts_run, tmp_path):
    _, _, prompts = experts
    assert train("pmix", tmp_path, experts_run) == []  # copied experts: nothing trained
    artifact = json.loads((tmp_path / ARTIFACT).read_text())
    assert artifact["method"] == "pmix" and artifact["experts"] == NAMES
    steerable = get("pmix").load(tmp_path, device="cpu")
    assert steerable.passes_per_token == 2
    warm = steerable.generate(prompts, [1.0, 0.0], seed=0, max_new_tokens=1)
    cold = steerable.generate(prompts, [0.0, 1.0], seed=0, max_new_tokens=1)
    assert ka.warm_word(prompts, warm) != ka.warm_word(prompts, cold)


def test_emorl_searches_training_prompts_and_counts_them_as_samples(
    experts_run, tmp_path, monkeypatch
):
    searched: list[str] = []
    decode = Emorl.decode

    def recording(self, prompts, coefficients, **gen):
        if gen.get("seed") == SEARCH_SEED:
            searched.extend(prompts)
        return decode(self, prompts, coefficients, **gen)

    monkeypatch.setattr(Emorl, "decode", recording)
    options = {"search_rounds": 1, "search_prompts": 3, "search_replies": 2}
    infos = train("emorl", tmp_path, experts_run, **options)
    artifact = json.loads((tmp_path / ARTIFACT).read_text())
    search = artifact["search"]
    train_split = load_prompts(ka.PROMPT_SET, "train")
    assert searched and set(searched) == set(train_split[:3])
    assert len(searched) == search["samples"]  # every reply decoded is counted
    assert not set(searched) & set(load_prompts(ka.PROMPT_SET, "eval"))
    assert search["split"] == "train" and search["overlaps_eval_prompts"] is False
    assert search["replies"] == 2  # one 3x3 round, 3 prompts, 2 replies each
    assert search["samples"] == search["evaluations"] * 3 * 2 == 9 * 3 * 2
    # experts were copied: the search is this run's whole training cost, reported once
    assert len(infos) == 1 and infos[0].stage == "search" and infos[0].front is not None
    assert infos[0].samples == search["samples"]
    assert infos[0].metrics["search/samples"] == search["samples"]
    assert artifact["mix_at"] == "final"
    assert get("emorl").load(tmp_path, device="cpu").mix_at == "final"
    # the default search is KL-regularised, at the run's kl_coef and reply length
    assert search["objective"] == "reward_kl" and search["kl_coef"] == RunConfig.kl_coef
    assert search["decoding"]["max_new_tokens"] == BASE["max_new_tokens"]
    assert all(np.isfinite(row["kl"]) for row in artifact["aggregation"])


class Killed(Exception):
    """The worker's process ending mid-search (a session's end, a kill)."""


def test_a_search_cut_short_resumes_from_its_scored_candidates(experts_run, tmp_path, monkeypatch):
    """A search killed after some candidates scores only the missing ones when the run resumes,
    and its table and cost are an uninterrupted search's."""
    decoded: list[tuple[float, ...]] = []
    decode = Emorl.decode
    kill_after: list[int | None] = [None]

    def recording(self, prompts, coefficients, **gen):
        if gen.get("seed") == SEARCH_SEED:
            if kill_after[0] is not None and len(decoded) == kill_after[0]:
                raise Killed
            decoded.append(tuple(np.atleast_2d(coefficients)[0].tolist()))
        return decode(self, prompts, coefficients, **gen)

    monkeypatch.setattr(Emorl, "decode", recording)
    options = {"search_rounds": 2, "search_prompts": 3, "search_replies": 2}
    train("emorl", tmp_path / "whole", experts_run, **options)
    whole = decoded.copy()
    decoded.clear()
    kill_after[0] = 7
    with pytest.raises(Killed):
        train("emorl", tmp_path / "cut", experts_run, **options)
    saved = json.loads((tmp_path / "cut" / emorl_module.SEARCH_CANDIDATES).read_text())
    assert len(saved["rows"]) == 7 and saved["seconds"] > 0
    kill_after[0] = None
    decoded.clear()
    train("emorl", tmp_path / "cut", experts_run, **options)
    assert decoded == whole[7:]  # only the candidates the cut search had not scored
    artifacts = [json.loads((tmp_path / f / ARTIFACT).read_text()) for f in ("whole", "cut")]
    assert artifacts[1]["aggregation"] == artifacts[0]["aggregation"]
    assert artifacts[1]["search"] == artifacts[0]["search"]
    assert artifacts[0]["search"]["evaluations"] == len(whole)


def test_a_stop_request_ends_the_search_between_candidates_and_the_resume_goes_on(
    experts_run, tmp_path, monkeypatch
):
    """The worker's STOP (a cancel, a SIGTERM) ends a search at the next candidate, not hours
    later: the run returns without an artifact, and a resumed run scores only the candidates
    the stopped one had not."""
    from morl_core.methods.base import STOP

    decoded: list[tuple[float, ...]] = []
    decode = Emorl.decode

    def recording(self, prompts, coefficients, **gen):
        if gen.get("seed") == SEARCH_SEED:
            decoded.append(tuple(np.atleast_2d(coefficients)[0].tolist()))
            if stop_at[0] is not None and len(decoded) == stop_at[0]:
                STOP.set()  # what the worker's heartbeat does when it sees the cancel marker
        return decode(self, prompts, coefficients, **gen)

    stop_at: list[int | None] = [4]
    monkeypatch.setattr(Emorl, "decode", recording)
    options = {"search_rounds": 2, "search_prompts": 3, "search_replies": 2}
    try:
        train("emorl", tmp_path / "run", experts_run, **options)
    finally:
        STOP.clear()
    saved = json.loads((tmp_path / "run" / emorl_module.SEARCH_CANDIDATES).read_text())
    assert len(decoded) == len(saved["rows"]) == 4  # stopped before the fifth candidate
    assert not (tmp_path / "run" / ARTIFACT).exists()
    first, stop_at[0] = decoded.copy(), None
    decoded.clear()
    train("emorl", tmp_path / "run", experts_run, **options)
    artifact = json.loads((tmp_path / "run" / ARTIFACT).read_text())
    assert set(decoded).isdisjoint(first) and decoded
    assert artifact["search"]["evaluations"] == len(first) + len(decoded)


def test_a_search_does_not_resume_from_candidates_scored_under_other_settings(
    experts, tmp_path, monkeypatch
):
    """Saved candidates count only for the settings they were scored under (here: replies)."""
    policy, _, prompts = experts
    calls: list[bool] = []
    decode = Emorl.decode

    def counting(self, asked, coefficients, **gen):
        calls.append(gen.get("seed") == SEARCH_SEED)
        return decode(self, asked, coefficients, **gen)

    monkeypatch.setattr(Emorl, "decode", counting)
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    saved, w = tmp_path / emorl_module.SEARCH_CANDIDATES, np.asarray([[0.5, 0.5]])
    search_table(emorl, config, w, prompts[:3], 1, replies=1, saved=saved)
    calls.clear()
    again, _ = search_table(emorl, config, w, prompts[:3], 1, replies=1, saved=saved)
    assert sum(calls) == 0  # the same settings: every candidate read back
    search_table(emorl, config, w, prompts[:3], 1, replies=2, saved=saved)
    assert sum(calls) == 9  # other settings: every candidate of the 3x3 grid decoded again
    found = json.loads(saved.read_text())
    assert found["settings"]["replies"] == 2 and len(found["rows"]) == 9


# --- the search finds coefficients that beat a = w ---


def exact_value(emorl: Emorl, coefficients, w, rewards, prompts) -> float:
    """w . (class rates) of pi_a on ``prompts``, by enumerating the vocabulary."""
    return float(np.dot(w, ka.rates(emorl_logprobs(emorl, coefficients, prompts), rewards)))


def test_searched_coefficients_beat_a_equals_w_where_they_must(experts):
    """Disjoint experts: their geometric mixture at a = w = (0.5, 0.5) spreads its mass off
    both classes, while one expert alone (a corner of the box) keeps ~0.98 on its class. The
    value is measured exactly on the held-out prompts, not on the search's own samples."""
    policy, rewards, _ = experts
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    prompts, overlap = search_prompts(config, 8)
    assert not overlap
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    w = np.asarray([0.5, 0.5])
    table, cost = search_table(
        emorl, config, w[None], prompts, rounds=1, objective="reward", replies=1
    )
    searched = np.asarray(table[0]["coefficients"])
    held_out = load_prompts(ka.PROMPT_SET, "eval")
    at_w = exact_value(emorl, w, w, rewards, held_out)
    found = exact_value(emorl, searched, w, rewards, held_out)
    assert found > at_w + 0.05, (searched.tolist(), found, at_w)
    assert cost["evaluations"] == 9 and cost["samples"] == cost["evaluations"] * 8
    assert cost["objective"] == "reward" and cost["kl_coef"] == 0.0 and "kl" not in table[0]


def test_reward_only_search_is_the_papers_search(experts):
    """``search_objective="reward"`` with one reply is the paper's search: every candidate
    decoded at the evaluation's settings (each on its own, with the same seed), scored by the
    mean of w . r (an oracle written out)."""
    policy, _, _ = experts
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    prompts, _ = search_prompts(config, 8)
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    w = np.asarray([0.3, 0.7])
    table, _ = search_table(emorl, config, w[None], prompts, 2, "reward", replies=1)

    def old_score(points: np.ndarray) -> np.ndarray:
        texts = [
            text
            for a in points
            for text in emorl.decode(prompts, a, seed=SEARCH_SEED, **EVAL_DECODING)
        ]
        asked = [q for _ in points for q in prompts]
        rewards = score(list(config.objectives), asked, texts)  # (R, K)
        return rewards.reshape(len(points), len(prompts), -1).mean(1) @ w

    old = hierarchical_grid_search(old_score, 2, rounds=2)
    assert table[0]["coefficients"] == old.best.tolist() and table[0]["value"] == old.value


@pytest.mark.parametrize("objective", ["reward", "reward_kl"])
def test_the_search_prices_replies_the_fluency_guard_fails_as_training_does(objective):
    """A mixture that writes a made-up word ("Zomhool!": short, so brevity 1) wins the brevity
    end unless the run's fluency penalty counts in the search as it does in training; with it,
    the fluent candidate wins and the table records the chosen candidate's fluent share."""

    def decode(prompts, coefficients, **gen):  # a[0] >= 0.75 writes the made-up word
        fluent = "The library opens at nine in the morning and closes at six in the evening."
        return ["Zomhool!" if a[0] >= 0.75 else fluent for a in coefficients]

    steerable = SimpleNamespace(decode=decode)
    if objective == "reward_kl":  # no model to measure KL against: every reply's KL is 0

        def sample(steerable, prompts, coefficients, decoding, with_kl):
            return steerable.decode(prompts, coefficients), np.zeros(len(prompts))

    chosen = {}
    for penalty in (0.0, 1.0):
        config = RunConfig.from_dict(
            {
                **BASE,
                "method": "emorl",
                "objectives": ["brevity", "readability"],
                "fluency_guard": "wordlist",
                "fluency_penalty": penalty,
            }  # fmt: skip
        )
        with pytest.MonkeyPatch.context() as patch:
            if objective == "reward_kl":
                patch.setattr(emorl_search, "sample_replies", sample)
            table, cost = search_table(
                steerable, config, np.asarray([[1.0, 0.0]]), ["When does it open?"], 1, objective
            )
        chosen[penalty] = table[0]["coefficients"][0], table[0]["fluency"]
        assert cost["fluency_penalty"] == penalty and cost["fluency_guard"] == "wordlist"
    assert chosen[0.0] == (1.0, 0.0)  # unpriced: the made-up word wins brevity
    assert chosen[1.0][0] < 0.75 and chosen[1.0][1] == 1.0


def test_search_objective_is_validated_by_name(experts):
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_dict({**BASE, "method": "emorl", "options": {"search_objective": "kl"}})
    assert "one of reward_kl, reward" in refused.value.errors["options.search_objective"]
    with pytest.raises(ConfigError) as refused:  # a JSON boolean is no objective either
        RunConfig.from_dict({**BASE, "method": "emorl", "options": {"search_objective": False}})
    assert "reward_kl, reward" in refused.value.errors["options.search_objective"]
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    emorl = Emorl(experts[0], ka.KNOWN_OBJECTIVES, NAMES)
    with pytest.raises(ValueError, match="objective must be one of reward_kl, reward"):
        search_table(emorl, config, np.asarray([[0.5, 0.5]]), ["x"], rounds=1, objective="kl")


@pytest.mark.parametrize("bad", [0, 65, 2.5, "4", True, None])
def test_search_replies_is_validated_by_name(experts, bad):
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_dict({**BASE, "method": "emorl", "options": {"search_replies": bad}})
    assert "must be an integer in [1, 64]" in refused.value.errors["options.search_replies"]
    config = RunConfig.from_dict({**BASE, "method": "emorl", "options": {"search_replies": 64}})
    assert config.options["search_replies"] == 64
    if bad is not None:  # None is search_table's "the option's default"
        emorl = Emorl(experts[0], ka.KNOWN_OBJECTIVES, NAMES)
        with pytest.raises(ValueError, match=r"search_replies\) must be an integer in \[1, 64\]"):
            search_table(emorl, config, np.asarray([[0.5, 0.5]]), ["x"], rounds=1, replies=bad)


@pytest.mark.parametrize("objective", ["reward_kl", "reward"])
def test_search_replies_are_drawn_per_prompt_and_candidate_and_counted(
    experts, monkeypatch, objective
):
    """``replies`` replies per prompt for every candidate, counted in ``samples``; each
    candidate is decoded on the same rows with the same seed (common random numbers), and a
    prompt's replies are distinct draws, not one draw repeated."""
    policy, _, prompts = experts
    calls: list[tuple[list[str], np.ndarray]] = []
    decode = Emorl.decode

    def recording(self, asked, coefficients, **gen):
        assert gen["seed"] == SEARCH_SEED
        texts = decode(self, asked, coefficients, **gen)
        calls.append((list(asked), np.atleast_2d(coefficients), texts))
        return texts

    monkeypatch.setattr(Emorl, "decode", recording)
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    w = np.asarray([[0.5, 0.5]])
    counted = {}
    for replies in (1, 3):
        calls.clear()
        _, cost = search_table(emorl, config, w, prompts[:3], 1, objective, replies)
        counted[replies] = cost["samples"]
        assert cost["replies"] == replies and cost["evaluations"] == 9
        assert sum(len(asked) for asked, _, _ in calls) == cost["samples"] == 9 * 3 * replies
        one_candidate = [q for q in prompts[:3] for _ in range(replies)]  # prompt-major
        # one decode per candidate, all on the same rows
        assert len(calls) == 9 and all(asked == one_candidate for asked, _, _ in calls)
        assert all(len(np.unique(rows, axis=0)) == 1 for _, rows, _ in calls)
    assert counted[3] == 3 * counted[1]
    texts = [text for _, _, drawn in calls for text in drawn]  # replies=3: (9 x 3 prompts x 3)
    by_prompt = np.asarray(texts, dtype=object).reshape(-1, 3)  # one row per (candidate, prompt)
    assert any(len(set(row)) > 1 for row in by_prompt)


@pytest.mark.parametrize("objective", ["reward", "reward_kl"])
def test_a_candidate_with_many_replies_is_decoded_in_bounded_batches(
    experts, monkeypatch, objective
):
    """However many replies a candidate asks for, no decode holds more than ``SEARCH_ROWS``
    rows (a round's candidates in one batch outgrew the machine on SmolLM2's triple), every
    reply is still drawn and scored once, and a candidate's replies (hence its score) do not
    depend on the candidates decoded before it."""
    policy, _, prompts = experts
    monkeypatch.setattr(emorl_search, "SEARCH_ROWS", 4)
    sizes: list[int] = []
    decode = Emorl.decode

    def recording(self, asked, coefficients, **gen):
        sizes.append(len(asked))
        return decode(self, asked, coefficients, **gen)

    monkeypatch.setattr(Emorl, "decode", recording)
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    w = np.asarray([[0.5, 0.5]])
    alone, cost = search_table(emorl, config, w, prompts[:3], 2, objective, replies=3)
    assert max(sizes) <= 4 and sum(sizes) == cost["samples"] == cost["evaluations"] * 9
    # the same preference searched after another one, whose candidates were decoded first
    both = np.asarray([[0.9, 0.1], [0.5, 0.5]])
    after, _ = search_table(emorl, config, both, prompts[:3], 2, objective, replies=3)
    assert after[1] == alone[0]


# --- with the KL term the search finds the known answer ---

BETA = 0.3  # the known-answer benchmark's kl_coef
OPTIMUM_FIT_STEPS = 10  # cross-entropy steps per expert: KL(pi* || expert) ~0.06 nats


@pytest.fixture(scope="module")
def optimal_experts():
    """(policy whose two experts are fitted to pi*_(1,0) and pi*_(0,1) at BETA, token rewards,
    reference log-probs (P, V), training prompts): the KL-regularised experts an RL run aims
    at, for which the mixture at a = w is pi*_w itself (MOD of optimal experts is exact)."""
    policy = load_policy("embedded", device="cpu")
    rewards = ka.token_rewards(policy)  # (V, 2)
    prompts = load_prompts(ka.PROMPT_SET, "train")
    ref = ka.reference_logprobs(policy, prompts)  # (P, V)
    ids, mask = policy.encode(prompts, max_new_tokens=1)
    torch.manual_seed(0)
    for name, one_hot in zip(NAMES, ((1.0, 0.0), (0.0, 1.0)), strict=True):
        target = torch.as_tensor(np.exp(ka.optimum(ref, rewards, one_hot, BETA)))  # (P, V)
        attach_lora(policy, r=4, alpha=8, adapter_name=name)
        _train_only(policy, name)
        params = [p for p in policy.model.parameters() if p.requires_grad]
        optimizer = torch.optim.Adam(params, lr=5e-3)
        for _ in range(OPTIMUM_FIT_STEPS):  # minimise KL(pi* || expert) = cross-entropy + c
            logits = policy.model(
                input_ids=ids, attention_mask=mask, position_ids=positions(mask), logits_to_keep=1
            ).logits[:, -1]
            loss = -(target * torch.log_softmax(logits.double(), -1)).sum(-1).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        policy.model.set_adapter(name, inference_mode=True)
    return policy, rewards, ref, prompts


def test_kl_regularised_search_finds_the_known_optimum(optimal_experts):
    """At w = (0.5, 0.5) the KL-regularised search picks coefficients whose exact rates are
    within 0.06 of pi*_w's (a = w is in the grid); the reward-only search, blind to the KL,
    picks an expert alone and misses by over 0.3, and drifts further from the base model."""
    policy, rewards, ref, prompts = optimal_experts
    config = RunConfig.from_dict({**BASE, "method": "emorl", "kl_coef": BETA})
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    w = np.asarray([0.5, 0.5])
    found, rows = {}, {}
    # the default search against the paper's as it was (one reply per prompt: 16 of its
    # 24-token replies per prompt take minutes on a CPU)
    for objective, replies in (("reward_kl", None), ("reward", 1)):
        table, cost = search_table(emorl, config, w[None], prompts, 1, objective, replies)
        rows[objective], a = table[0], table[0]["coefficients"]
        found[objective] = ka.compare(emorl_logprobs(emorl, a, prompts), ref, rewards, w, BETA)
        assert cost["objective"] == objective
    regularised, reward_only = found["reward_kl"], found["reward"]
    summary = {k: (c.rates, c.optimal_rates, c.kl_to_reference) for k, c in found.items()}
    assert regularised.rate_error < 0.06, summary
    assert reward_only.rate_error > 0.3, summary
    assert regularised.kl_to_reference < reward_only.kl_to_reference - 0.2, summary
    # the recorded value is the regularised score of the chosen candidate's replies
    row = rows["reward_kl"]
    assert row["value"] == pytest.approx(np.dot(w, row["objectives"]) - BETA * row["kl"])


def test_more_search_replies_stop_the_search_chasing_a_lucky_draw(optimal_experts, monkeypatch):
    """Search seed 2 is a draw where one reply per prompt misleads the KL-regularised search:
    with 8 replies per candidate the best score of the 9 candidates is a lucky one, and at
    w = (0, 1) it picks a = (0.5, 0.5), rates 0.5 off pi*_w's. With 4 replies per prompt the
    same search finds the known answer at w = (1, 0), (0.5, 0.5) and (0, 1)."""
    policy, rewards, ref, prompts = optimal_experts
    monkeypatch.setattr(emorl_search, "SEARCH_SEED", 2)
    config = RunConfig.from_dict({**BASE, "method": "emorl", "kl_coef": BETA})
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    preferences = np.asarray([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    errors, chosen = {}, {}
    for replies in (1, 4):
        table, _ = search_table(emorl, config, preferences, prompts, rounds=1, replies=replies)
        chosen[replies] = [row["coefficients"] for row in table]
        errors[replies] = [
            ka.compare(emorl_logprobs(emorl, a, prompts), ref, rewards, w, BETA).rate_error
            for a, w in zip(chosen[replies], preferences, strict=True)
        ]
    assert errors[1][2] > 0.3, (chosen, errors)  # the lucky draw: a hard seed for one reply
    assert max(errors[4]) < 0.06, (chosen, errors)


def test_a_guarded_search_keeps_a_equals_w_against_a_lucky_draw(optimal_experts, monkeypatch):
    """On the draw where one reply per prompt misleads the search (seed 2: at w = (0, 1) it
    picks a = (0.5, 0.5), rates 0.5 off pi*_w), a search that keeps a = w unless the best
    beats it by 2 paired standard errors finds the known answer at every preference with the
    same single reply, and records why it kept a = w."""
    policy, rewards, ref, prompts = optimal_experts
    monkeypatch.setattr(emorl_search, "SEARCH_SEED", 2)
    config = RunConfig.from_dict({**BASE, "method": "emorl", "kl_coef": BETA})
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    preferences = np.asarray([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    table, cost = search_table(emorl, config, preferences, prompts, 1, replies=1, guard=2.0)
    errors = [
        ka.compare(emorl_logprobs(emorl, row["coefficients"], prompts), ref, rewards, w, BETA)
        for row, w in zip(table, preferences, strict=True)
    ]
    assert max(e.rate_error for e in errors) < 0.06, [row["coefficients"] for row in table]
    lucky = table[2]
    assert lucky["kept_w"] and lucky["coefficients"] == [0.0, 1.0]
    assert 0 < lucky["gain_over_w"] <= 2.0 * lucky["gain_se"]
    assert cost["guard"] == 2.0


def test_a_guarded_search_still_takes_a_real_gain(experts):
    """Disjoint experts: one expert alone beats their mixture at a = w = (0.5, 0.5) by far more
    than the noise on 4 replies per prompt (about 2.7 standard errors), so the guard lets the
    search leave a = w."""
    policy, rewards, _ = experts
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    prompts, _ = search_prompts(config, 8)
    emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES)
    w = np.asarray([0.5, 0.5])
    table, _ = search_table(emorl, config, w[None], prompts, 1, "reward", replies=4, guard=2.0)
    row = table[0]
    assert not row["kept_w"] and row["gain_over_w"] > 2.0 * row["gain_se"] > 0
    held_out = load_prompts(ka.PROMPT_SET, "eval")
    found = exact_value(emorl, row["coefficients"], w, rewards, held_out)
    assert found > exact_value(emorl, w, w, rewards, held_out) + 0.05


@pytest.mark.parametrize("bad", [-1.0, 10.5, "2", None])
def test_search_guard_is_validated_by_name(bad):
    with pytest.raises(ConfigError) as refused:
        RunConfig.from_dict({**BASE, "method": "emorl", "options": {"search_guard": bad}})
    assert "must be a number in [0, 10]" in refused.value.errors["options.search_guard"]


def test_a_pre_norm_search_decodes_each_direction_once(experts, monkeypatch):
    """Before the final norm a and 2a decode the same text, so the search scores each
    direction once: of a round's 3 x 3 grid, (0, .5) ~ (0, 1), (.5, 0) ~ (1, 0) and
    (.5, .5) ~ (1, 1) leave 6 candidates; the table names the direction it decoded. Mixed
    after the norm (where a's scale is the temperature) all 9 are decoded."""
    policy, _, prompts = experts
    decoded: list[tuple[float, ...]] = []
    decode = Emorl.decode

    def recording(self, asked, coefficients, **gen):
        decoded.append(tuple(np.atleast_2d(coefficients)[0].tolist()))
        return decode(self, asked, coefficients, **gen)

    monkeypatch.setattr(Emorl, "decode", recording)
    config = RunConfig.from_dict({**BASE, "method": "emorl"})
    w = np.asarray([[0.5, 0.5]])
    for mix_at, expected in (("pre_norm", 6), ("final", 9)):
        decoded.clear()
        emorl = Emorl(policy, ka.KNOWN_OBJECTIVES, NAMES, mix_at=mix_at)
        table, cost = search_table(emorl, config, w, prompts[:3], 1, "reward", replies=1)
        assert len(decoded) == cost["evaluations"] == expected, decoded
        if mix_at == "pre_norm":
            assert all(max(a) in (0.0, 1.0) for a in decoded)
            assert max(table[0]["coefficients"]) == 1.0
