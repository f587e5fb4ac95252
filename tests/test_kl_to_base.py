"""KL to the base model, measured while sampling, for every kind of steerable.

The sampler reports log pi of each token it draws under the steerable's own next-token
distribution; one teacher-forced pass of the base model on the plain prompt gives the base's.
Known answers: an untrained adapter is the base (KL 0); a one-hot MOD / EMORL is that expert
(the same KL); a larger perturbation moves further (more KL); RiC's tags alone change the reply
distribution given the user's prompt (KL > 0 with an untrained adapter).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morl_core import evaluation
from morl_core import kl as base_kl
from morl_core.evaluation import EvalProtocol
from morl_core.kl import generate_with_kl
from morl_core.methods.metapolicy import MetaMixer, MetaPolicy
from morl_core.methods.mod import Mod
from morl_core.methods.morlhf import NearestPreference
from morl_core.policy import attach_lora, load_policy, set_threads
from morl_core.policy.sampling import sample
from morl_core.prompts import load_prompts

set_threads(1)

OBJECTIVES = ("brevity", "formality")
PROMPTS = load_prompts("default", "eval")[:4]
DECODING = {"max_new_tokens": 12, "temperature": 1.0, "top_p": 0.9}
EXPERTS = ["expert_a", "expert_b"]


def perturbed(policy, adapter: str, scale: float, seed: int):
    """Add a LoRA adapter whose B matrices are N(0, scale^2) (B = 0 is the base model)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attach_lora(policy, r=4, alpha=8, adapter_name=adapter)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name and f".{adapter}." in name:
                param.add_(scale * torch.randn(param.shape, generator=generator))
                param.requires_grad_(False)
    return policy


def per_token(steerable, weights, seeds=(0, 1), **decoding) -> float | None:
    """Pooled KL per token over the replies of ``seeds`` (each one batch over PROMPTS)."""
    sums, tokens = 0.0, 0.0
    for seed in seeds:
        texts, kl = generate_with_kl(
            steerable, PROMPTS, weights, seed=seed, **(decoding or DECODING)
        )
        assert len(texts) == len(PROMPTS)
        if kl is None:
            return None
        assert kl[0].shape == kl[1].shape == (len(PROMPTS),) and np.isfinite(kl[0]).all()
        sums, tokens = sums + kl[0].sum(), tokens + kl[1].sum()
    return sums / tokens


@pytest.fixture(scope="module")
def experts():
    """The embedded model with two perturbed LoRA experts (the shared lower level)."""
    policy = load_policy("embedded", device="cpu")
    for i, name in enumerate(EXPERTS):
        perturbed(policy, name, 0.1, seed=i)
    return policy


# --- the sampler's log-probabilities ---------------------------------------------------------


def test_sampler_reports_log_softmax_at_the_temperature_without_changing_the_rollout():
    policy = load_policy("embedded", device="cpu")
    seen = base_kl.StepLogprobs()
    plain = policy.rollout(PROMPTS, seed=3, max_new_tokens=10, temperature=0.7, top_p=0.9)
    watched = policy.rollout(
        PROMPTS, seed=3, max_new_tokens=10, temperature=0.7, top_p=0.9, on_logprobs=seen
    )
    assert torch.equal(plain.completion_ids, watched.completion_ids)  # no RNG drawn
    ids, live, logprobs = seen.rollout(len(PROMPTS))
    assert torch.equal(ids, watched.completion_ids) and torch.equal(live, plain.completion_mask)
    # oracle: a teacher-forced pass of the same model over the same ids, at the same temperature
    forced = base_kl.teacher_forced_logprobs(
        policy.model, plain.prompt_ids, plain.prompt_mask, ids, live, temperature=0.7
    )
    torch.testing.assert_close(logprobs, forced, atol=1e-4, rtol=1e-4)
    assert bool((logprobs[live == 0] == 0).all()) and bool((logprobs[live == 1] < 0).all())
    # the same completions teacher-forced through the loop (the first one cut after 3 tokens):
    # the same rows and log-probs, nothing drawn, each row ending where its mask does
    cut = live.clone()
    cut[0, 3:] = 0
    again = base_kl.StepLogprobs()
    replayed = policy.rollout(
        PROMPTS, max_new_tokens=10, temperature=0.7, forced=(ids, cut), on_logprobs=again
    )
    assert torch.equal(replayed.completion_mask, cut)
    assert torch.equal(replayed.completion_ids[cut == 1], ids[cut == 1])
    expected = torch.where(cut == 1, logprobs, torch.zeros_like(logprobs))
    torch.testing.assert_close(again.rollout(len(PROMPTS))[2], expected, atol=1e-5, rtol=1e-5)
    greedy = base_kl.StepLogprobs()
    sample(
        lambda *a: (torch.zeros(1, 5), None),
        torch.zeros((1, 1), dtype=torch.long),
        torch.ones((1, 1), dtype=torch.long),
        max_new_tokens=3,
        eos_id=9,
        pad_id=0,
        temperature=0,
        on_logprobs=greedy,
    )
    assert greedy.columns == []  # greedy decoding: no finite log-probability, never called


# --- one model per preference ----------------------------------------------------------------


def test_an_untrained_adapter_is_the_base_model_and_a_larger_perturbation_moves_further():
    policy = load_policy("embedded", device="cpu")
    adapters = {"zero": [1.0, 0.0], "small": [0.5, 0.5], "large": [0.0, 1.0]}
    for name, scale in (("zero", 0.0), ("small", 0.03), ("large", 0.15)):
        perturbed(policy, name, scale, seed=7)
    steerable = NearestPreference(policy, OBJECTIVES, adapters)
    zero, small, large = (per_token(steerable, w) for w in adapters.values())
    assert abs(zero) < 1e-5  # B = 0: the adapter is the base, to rounding
    assert 1e-3 < small < large  # both moved; the larger step further
    assert np.isfinite(large) and large < 20


def adapter_minus_base(policy, adapter: str, prompts, texts) -> tuple[float, float]:
    """The estimate one-model methods had before: on the decoded, re-tokenised replies, one
    teacher-forced pass with the adapter and one without (KL sum, tokens)."""
    from morl_core.rl.losses import token_logprobs

    encode = lambda text: policy.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    total, tokens = 0.0, 0.0
    policy.model.set_adapter(adapter)
    for prompt, text in zip(prompts, texts, strict=True):
        reply = encode(" " + text)
        ids = torch.tensor([encode(prompt) + reply])
        mask = torch.ones_like(ids)
        with torch.no_grad():
            logp, _ = token_logprobs(policy.model, ids, mask, len(reply))
            with policy.model.disable_adapter():
                ref, _ = token_logprobs(policy.model, ids, mask, len(reply))
        total, tokens = total + float((logp - ref).sum()), tokens + len(reply)
    return total, tokens


def test_one_adapter_families_match_the_estimate_they_had(experts):
    """MORLHF's adapter: the sampler's KL against the two-pass estimate on re-tokenised texts
    that one-model methods always reported, on the same replies; they differ only by
    re-tokenisation and the EOS a reply may end with. The app's re-tokenised ``kl_to_base``
    (teacher-forced through ``generate``) agrees with both."""
    steerable = NearestPreference(experts, OBJECTIVES, {EXPERTS[0]: [1.0, 0.0]})
    sampled, before, retokenised = [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]
    for seed in range(4):
        texts, kl = generate_with_kl(steerable, PROMPTS, [1.0, 0.0], seed=seed, **DECODING)
        forced = base_kl.kl_to_base(steerable, PROMPTS, texts, [1.0, 0.0])
        old = adapter_minus_base(experts, EXPERTS[0], PROMPTS, texts)
        for total, found in ((sampled, kl), (retokenised, forced)):
            total[0], total[1] = total[0] + found[0].sum(), total[1] + found[1].sum()
        before = [before[0] + old[0], before[1] + old[1]]
    new, old = sampled[0] / sampled[1], before[0] / before[1]
    assert new > 1e-3 and old > 1e-3
    assert abs(new - old) <= 0.25 * old
    assert retokenised[0] / retokenised[1] == pytest.approx(old, rel=1e-3)


# --- mixtures, fusions and conditioned policies ----------------------------------------------


def test_a_one_hot_mixture_is_its_expert_and_a_mixed_one_is_finite(experts):
    expert = per_token(NearestPreference(experts, OBJECTIVES, {EXPERTS[0]: [1.0, 0.0]}), [1, 0])
    mod = Mod(experts, OBJECTIVES, EXPERTS)
    assert per_token(mod, [1.0, 0.0]) == pytest.approx(expert, abs=1e-5)
    mixed = per_token(mod, [0.5, 0.5])
    assert mixed is not None and 1e-3 < mixed < 20
    # replies written elsewhere, teacher-forced through the mixture: the same estimate
    texts, kl = generate_with_kl(mod, PROMPTS, [0.5, 0.5], seed=5, **DECODING)
    again = base_kl.kl_to_base(mod, PROMPTS, texts, [0.5, 0.5])
    assert again is not None
    assert again[0].sum() / again[1].sum() == pytest.approx(kl[0].sum() / kl[1].sum(), rel=0.25)


def test_hidden_state_fusions_measure_against_the_base_not_their_training_reference(experts):
    from morl_core.methods.emorl import Emorl

    expert = per_token(NearestPreference(experts, OBJECTIVES, {EXPERTS[1]: [0.0, 1.0]}), [0, 1])
    emorl = Emorl(experts, OBJECTIVES, EXPERTS)  # no search table: coefficients a = w
    assert per_token(emorl, [0.0, 1.0]) == pytest.approx(expert, abs=1e-4)
    dim = experts.model.get_output_embeddings().in_features
    meta = MetaPolicy(experts, OBJECTIVES, EXPERTS, MetaMixer(dim, 2, hidden=8, seed=1))
    # an untrained upper level *is* its RL reference pi_0 (prior mixing): measured against it
    # the KL would be 0; against the base model the experts' own shift remains
    found = per_token(meta, [0.5, 0.5])
    assert found is not None and 1e-3 < found < 20


def test_conditioned_policies_measure_the_reply_given_the_plain_prompt():
    from morl_core.methods.panacea import Panacea, attach_panacea
    from morl_core.methods.ric import RewardsInContext, prefixed

    ric_policy = prefixed(load_policy("embedded", device="cpu"))
    perturbed(ric_policy, "ric", 0.0, seed=3)  # untrained: the base model reading the tags
    ric = RewardsInContext(ric_policy, OBJECTIVES)
    assert ric.prompt_prefix([0.8, 0.2]) != ""
    # the tags alone change the reply distribution given the user's prompt
    tagged = per_token(ric, [0.8, 0.2])
    assert tagged is not None and 1e-3 < tagged < 20

    policy = load_policy("embedded", device="cpu")
    model = attach_panacea(policy, r=4, k=2, alpha=8.0, seed=0)
    panacea = Panacea(policy, OBJECTIVES)
    assert abs(per_token(panacea, [0.5, 0.5])) < 1e-5  # U = 0: the base model
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for layer in model.layers:  # U with columns of norm 2: the update is no longer zero
            u = torch.randn(layer.lora_B.shape, generator=generator)
            layer.lora_B.copy_(2 * u / u.norm(dim=0, keepdim=True))
    moved = per_token(panacea, [0.5, 0.5])
    assert moved is not None and 1e-3 < moved < 20


# --- the protocol ----------------------------------------------------------------------------


def test_the_evaluation_reports_kl_for_a_mixture_and_none_when_greedy(experts):
    protocol = EvalProtocol(max_prompts=4, samples=2, max_new_tokens=12, bootstrap=0)
    mod = Mod(experts, OBJECTIVES, EXPERTS)
    front = evaluation.evaluate_front(
        mod, PROMPTS, np.array([[1.0, 0.0], [0.5, 0.5]]), OBJECTIVES, protocol=protocol
    )
    token, sequence = front["kl_per_token"], front["kl_per_sequence"]
    assert all(t is not None and t > 1e-3 for t in token)
    assert all(s >= t for s, t in zip(sequence, token, strict=True))  # >= 1 token per reply
    greedy = dict(DECODING, temperature=0.0)
    texts, kl = generate_with_kl(mod, PROMPTS, [0.5, 0.5], seed=0, **greedy)
    assert kl is None and len(texts) == len(PROMPTS)

    class Elsewhere:  # generates without Policy.rollout: nothing to measure
        objectives = OBJECTIVES

        def generate(self, prompts, weights, **gen):
            return ["x" for _ in prompts]

    assert generate_with_kl(Elsewhere(), PROMPTS, [0.5, 0.5], seed=0, **DECODING)[1] is None
