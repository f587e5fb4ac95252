"""MOD and PMIX decode each expert through the lean Llama step: the same logits and tokens.

A tiny random Llama (tests/tiny_models.py) holds two LoRA experts on all seven projections (random
B, so each expert moves the logits). Each expert's one-token steps go through
:class:`~morl_core.policy.llama_decode.LlamaDecodeStep` with its own :class:`DecodeCache`, the
adapter switched before each expert's pass; ``lean=False`` forces the model's forward for every pass
(the path every model took before). Known answers: the two paths give equal logits (``torch.equal``;
one row, which reads packed weights, to float32 rounding) and equal seeded rollouts at two
preferences; both equal a cache-free oracle (each expert's full forward on the whole prefix, mixed
by hand); the lean step really runs (K steps per token, DecodeCache caches), and never where it does
not apply (grad enabled, the embedded GPT-2-style model).
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import pytest
import torch
from tiny_models import (
    EOS,
    PAD,
    assert_same_logits,
    count_prompt_rows,
    prompts,
    tiny_llama,
)

from morl_core.methods.mixture import ProbabilityMixture
from morl_core.methods.mod import Mod, quick_adapter_switch
from morl_core.policy import Policy, attach_lora, load_policy, set_threads
from morl_core.policy.llama_decode import DecodeCache, LlamaDecodeStep
from morl_core.policy.sampling import sample

set_threads(1)

OBJECTIVES = ("formality", "readability")
EXPERTS = ["expert_formality", "expert_readability"]
PREFERENCES = [(0.3, 0.7), (0.8, 0.2)]
STEERABLES = [Mod, ProbabilityMixture]


def with_experts(policy: Policy, seed: int = 3) -> Policy:
    """``policy`` with one LoRA expert per objective on every linear layer, B random."""
    generator = torch.Generator().manual_seed(seed)
    for name in EXPERTS:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            attach_lora(policy, r=4, alpha=8, adapter_name=name)
    with torch.no_grad():
        for name, param in policy.model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))
    policy.model.eval()
    return policy


@pytest.fixture(scope="module")
def llama() -> Policy:
    """The tiny Llama with two experts; nothing here reads its tokenizer."""
    return with_experts(Policy(tiny_llama(), tokenizer=None, device="cpu", name="tiny-llama"))


def teacher_forced(next_token, ids, mask, steps: int):
    """Logits (B, steps, V) of a loop feeding back each step's argmax, the tokens (B, steps)
    and the last caches."""
    width = ids.shape[1]
    full = torch.cat([mask, mask.new_ones((mask.shape[0], steps))], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, caches, logits_seen, tokens = ids, None, [], []
    for step in range(steps):
        logits, caches = next_token(step_ids, full[:, : width + step], positions, caches)
        logits_seen.append(logits)
        tokens.append(logits.argmax(-1))
        step_ids, positions = tokens[-1][:, None], positions[:, -1:] + 1
    return torch.stack(logits_seen, 1), torch.stack(tokens, 1), caches


def oracle(policy: Policy, steerable_class, weights, ids, mask, tokens) -> torch.Tensor:
    """The mixture's logits (B, T, V) without a cache: each expert's full forward on the whole
    prefix (prompt + ``tokens`` before the step), mixed by hand."""
    model, w = policy.model, torch.tensor(weights, dtype=torch.float32)
    out = []
    for step in range(tokens.shape[1]):
        seq = torch.cat([ids, tokens[:, :step]], dim=1)
        seq_mask = torch.cat([mask, mask.new_ones((mask.shape[0], step))], dim=1)
        positions = (seq_mask.cumsum(-1) - 1).clamp(min=0)
        logps = []
        for name in EXPERTS:
            model.set_adapter(name, inference_mode=True)
            with torch.no_grad():
                logits = model(input_ids=seq, attention_mask=seq_mask, position_ids=positions)
            logps.append(torch.log_softmax(logits.logits[:, -1].float(), -1))
        logps = torch.stack(logps, 1)  # (B, K, V)
        if steerable_class is Mod:  # geometric: sum_i w_i log pi_i
            out.append((w[None, :, None] * logps).sum(1))
        else:  # arithmetic: log sum_i w_i pi_i
            out.append(torch.logsumexp(logps + torch.log(w / w.sum())[None, :, None], dim=1))
    return torch.stack(out, 1)


@pytest.mark.parametrize("rows", [3, 1])  # one row reads the packed weights: to rounding
@pytest.mark.parametrize("steerable_class", STEERABLES)
@pytest.mark.parametrize("weights", PREFERENCES)
def test_lean_logits_equal_the_forward_path_and_the_oracle(llama, steerable_class, weights, rows):
    ids, mask = prompts(padded=True, rows=rows)
    steps = 70  # past the first capacity of a DecodeCache (prompt + 64): it grows once
    with torch.no_grad():
        lean, tokens, caches = teacher_forced(
            steerable_class(llama, OBJECTIVES, EXPERTS).next_token(weights), ids, mask, steps
        )
        assert all(isinstance(cache, DecodeCache) for cache in caches)
        forward, forward_tokens, caches = teacher_forced(
            steerable_class(llama, OBJECTIVES, EXPERTS, lean=False).next_token(weights),
            ids,
            mask,
            steps,
        )
        assert not any(isinstance(cache, DecodeCache) for cache in caches)
    assert_same_logits(lean, forward)  # bit for bit for several rows
    assert torch.equal(tokens, forward_tokens)
    expected = oracle(llama, steerable_class, weights, ids, mask, tokens[:, :12])
    assert torch.allclose(lean[:, :12], expected, atol=1e-5)
    # each expert counts: the other preference mixes other logits
    other = PREFERENCES[1 - PREFERENCES.index(weights)]
    with torch.no_grad():
        moved, _, _ = teacher_forced(
            steerable_class(llama, OBJECTIVES, EXPERTS).next_token(other), ids, mask, 12
        )
    assert not torch.allclose(moved, lean[:, :12], atol=1e-3)


@pytest.mark.parametrize("steerable_class", STEERABLES)
@pytest.mark.parametrize("weights", PREFERENCES)
@pytest.mark.parametrize("batch", ["padded", "two samples of one prompt"])
def test_seeded_rollouts_are_token_for_token_the_same(llama, steerable_class, weights, batch):
    ids, mask = prompts(padded=True)
    if batch != "padded":  # what the Steer page asks for: two replies to one prompt
        ids, mask = ids[:1].repeat(2, 1), mask[:1].repeat(2, 1)

    def rollout(lean: bool):
        steerable = steerable_class(llama, OBJECTIVES, EXPERTS, lean=lean)
        return sample(
            steerable.next_token(weights),
            ids,
            mask,
            max_new_tokens=32,
            eos_id=EOS,
            pad_id=PAD,
            temperature=1.0,
            top_p=0.9,
            generator=torch.Generator().manual_seed(5),
        )

    lean, forward = rollout(True), rollout(False)
    assert torch.equal(lean.completion_ids, forward.completion_ids)
    assert torch.equal(lean.completion_mask, forward.completion_mask)
    assert lean.completion_ids.shape[1] > 8  # a real reply, not one cut at its first token


@pytest.fixture
def step_calls(monkeypatch) -> list[int]:
    """Counts the calls of :class:`LlamaDecodeStep` (one per expert per one-token step)."""
    calls = []
    run = LlamaDecodeStep.__call__

    def counted(self, *args, **kwargs):
        calls.append(1)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(LlamaDecodeStep, "__call__", counted)
    return calls


def test_each_expert_steps_through_the_lean_step_unless_told_not_to(llama, step_calls):
    ids, mask = prompts(padded=True)
    steps = 10
    with torch.no_grad():
        teacher_forced(Mod(llama, OBJECTIVES, EXPERTS).next_token([0.5, 0.5]), ids, mask, steps)
    assert len(step_calls) == len(EXPERTS) * (steps - 1)  # the prompt pass is the forward's
    step_calls.clear()
    with torch.no_grad():  # a one-hot preference leaves the other expert out
        teacher_forced(Mod(llama, OBJECTIVES, EXPERTS).next_token([1.0, 0.0]), ids, mask, steps)
    assert len(step_calls) == steps - 1
    step_calls.clear()
    with torch.no_grad():
        teacher_forced(
            Mod(llama, OBJECTIVES, EXPERTS, lean=False).next_token([0.5, 0.5]), ids, mask, steps
        )
    with torch.enable_grad():  # grad enabled (as in training): the model's forward
        _, _, caches = teacher_forced(
            Mod(llama, OBJECTIVES, EXPERTS).next_token([0.5, 0.5]), ids, mask, 3
        )
    assert step_calls == []
    assert not any(isinstance(cache, DecodeCache) for cache in caches)


def adapter_state(model) -> tuple:
    """What ``set_adapter`` sets: the active adapter of the model, its tuner and each layer,
    and which parameters train."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    return (
        model.active_adapter,
        model.base_model.active_adapter,
        [layer.active_adapter for layer in layers],
        [name for name, param in model.named_parameters() if param.requires_grad],
    )


def test_the_quick_adapter_switch_leaves_what_set_adapter_leaves(llama):
    model = llama.model
    for name in EXPERTS:
        model.set_adapter(name, inference_mode=True)
    switch = quick_adapter_switch(model, EXPERTS)
    for name in (EXPERTS[0], EXPERTS[1], EXPERTS[0]):
        switch(name)
        quick = adapter_state(model)
        model.set_adapter(name, inference_mode=True)
        assert adapter_state(model) == quick and quick[0] == name
    model.set_adapter(EXPERTS[0])  # trainable again: only peft's set_adapter freezes it
    try:
        assert quick_adapter_switch(model, EXPERTS) is None
    finally:
        model.set_adapter(EXPERTS[0], inference_mode=True)


def test_the_embedded_gpt2_model_keeps_its_forward_and_its_texts(step_calls):
    policy = with_experts(load_policy("embedded", device="cpu"))
    prompts = ["Write a note to a colleague.", "Describe the weather."]
    gen = {"seed": 3, "max_new_tokens": 12, "temperature": 1.0, "top_p": 0.9}
    for steerable_class in STEERABLES:
        lean = steerable_class(policy, OBJECTIVES, EXPERTS)
        forward = steerable_class(policy, OBJECTIVES, EXPERTS, lean=False)
        texts = lean.generate(prompts, [0.4, 0.6], n=2, **gen)
        assert texts == forward.generate(prompts, [0.4, 0.6], n=2, **gen)
        assert len(texts) == 4 and any(texts)
    assert step_calls == []


@pytest.fixture
def prompt_passes(monkeypatch) -> list[int]:
    """The rows of each multi-token (prompt) pass through the Llama's forward. The class's
    forward is patched, not hooked: a hook would keep the lean step from applying."""
    from transformers import LlamaForCausalLM

    return count_prompt_rows(monkeypatch, LlamaForCausalLM)


@pytest.mark.parametrize("steerable_class", STEERABLES)
@pytest.mark.parametrize("lean", [True, False])
@pytest.mark.parametrize(
    "layout",
    [
        (0, 0),  # the Steer page: samples 2 of one prompt
        (1, 1, 1, 1),  # samples 4 of a padded prompt
        (2, 0, 2, 1, 0, 2),  # repeats that are not adjacent, rows of three lengths
    ],
)
def test_identical_prompts_share_each_experts_prompt_pass(
    llama, prompt_passes, steerable_class, lean, layout
):
    ids, mask = prompts(padded=True)
    ids, mask = ids[list(layout)], mask[list(layout)]
    distinct = len(set(layout))

    def rollout(share_prompts: bool):
        steerable = steerable_class(
            llama, OBJECTIVES, EXPERTS, lean=lean, share_prompts=share_prompts
        )
        return sample(
            steerable.next_token([0.3, 0.7]),
            ids,
            mask,
            max_new_tokens=24,
            eos_id=EOS,
            pad_id=PAD,
            temperature=1.0,
            top_p=0.9,
            generator=torch.Generator().manual_seed(7),
        )

    per_row = rollout(share_prompts=False)
    assert prompt_passes == [len(layout)] * len(EXPERTS)  # the reference: every row, each expert
    prompt_passes.clear()
    shared = rollout(share_prompts=True)
    assert prompt_passes == [distinct] * len(EXPERTS)  # once per distinct prompt and expert
    assert torch.equal(shared.completion_ids, per_row.completion_ids)
    assert torch.equal(shared.completion_mask, per_row.completion_mask)
    assert shared.completion_ids.shape[1] > 8
    # the copies of one prompt are sampled apart: not all the same reply
    first = [row for row, prompt in enumerate(layout) if prompt == layout[0]]
    assert len({tuple(shared.completion_ids[row].tolist()) for row in first}) > 1


def test_shared_prompt_passes_give_the_same_logits_bit_for_bit(llama):
    ids, mask = prompts(padded=True)
    ids, mask = ids[[1, 1, 1, 0]], mask[[1, 1, 1, 0]]
    with torch.no_grad():
        shared, tokens, caches = teacher_forced(
            Mod(llama, OBJECTIVES, EXPERTS).next_token([0.6, 0.4]), ids, mask, 70
        )
        per_row, per_row_tokens, _ = teacher_forced(
            Mod(llama, OBJECTIVES, EXPERTS, share_prompts=False).next_token([0.6, 0.4]),
            ids,
            mask,
            70,
        )
    assert all(isinstance(cache, DecodeCache) and cache.keys.shape[1] == 4 for cache in caches)
    assert torch.equal(shared, per_row) and torch.equal(tokens, per_row_tokens)


def test_steer_samples_of_one_prompt_are_the_replies_they_were():
    """Through ``generate`` on the embedded model (its own forward, not the Llama's): the same
    texts with and without sharing, for a fixed seed."""
    policy = with_experts(load_policy("embedded", device="cpu"))
    gen = {"seed": 4, "max_new_tokens": 12, "temperature": 1.0, "top_p": 0.9}
    for steerable_class in STEERABLES:
        shared = steerable_class(policy, OBJECTIVES, EXPERTS)
        per_row = steerable_class(policy, OBJECTIVES, EXPERTS, share_prompts=False)
        prompts = ["Write a note to a colleague."] * 3
        texts = shared.generate(prompts, [0.4, 0.6], **gen)
        assert texts == per_row.generate(prompts, [0.4, 0.6], **gen)
        assert len(texts) == 3 and len(set(texts)) > 1
