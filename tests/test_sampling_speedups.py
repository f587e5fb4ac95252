"""The lean Llama decode step: the same logits as the model's own forward (one row: to rounding).

A tiny random Llama (GQA: 4 query heads over 2 key/value heads) is built in memory. Its decode
loop through ``hf_next_token`` (which takes :class:`LlamaDecodeStep` for such a model) is
compared with the plain loop (the model's forward and ``transformers``' cache) on left-padded
and unpadded batches, past the cache's first capacity, and through ``sample`` for greedy and
seeded top-p rollouts.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import weakref

import pytest
import torch
from tiny_models import EOS, PAD, assert_same_logits, prompts, teacher_forced_logits, tiny_llama

from morl_core.policy.llama_decode import DecodeCache, LlamaDecodeStep
from morl_core.policy.sampling import hf_next_token, sample


@pytest.fixture(scope="module")
def llama():
    return tiny_llama()


def plain_next_token(model):
    """The model's forward with transformers' own cache: what the lean step must reproduce."""
    return hf_next_token(model, lean=False)


def test_plain_llama_qualifies_and_adapted_or_hooked_ones_do_not(llama):
    assert LlamaDecodeStep.applies(llama)
    handle = llama.model.layers[0].mlp.register_forward_hook(lambda *args: None)
    try:
        assert not LlamaDecodeStep.applies(llama)  # a hook must see every call
    finally:
        handle.remove()
    llama.train()
    try:
        assert not LlamaDecodeStep.applies(llama)
    finally:
        llama.eval()
    original = llama.model.layers[1].self_attn.v_proj

    class Adapted(torch.nn.Linear):  # what a LoRA wrapper looks like from outside
        pass

    adapted = Adapted(original.in_features, original.out_features, bias=False)
    llama.model.layers[1].self_attn.v_proj = adapted
    try:
        assert not LlamaDecodeStep.applies(llama)
    finally:
        llama.model.layers[1].self_attn.v_proj = original
    assert LlamaDecodeStep.applies(llama)


@pytest.mark.parametrize("rows", [1, 3])  # one row decodes through the packed weights
@pytest.mark.parametrize("padded", [False, True])
def test_lean_steps_give_the_forwards_logits(llama, padded, rows):
    ids, mask = prompts(padded, rows)
    steps = 80  # past the cache's first capacity (prompt + 64), so it grows once
    lean, _ = teacher_forced_logits(hf_next_token(llama), ids, mask, steps)
    plain, _ = teacher_forced_logits(plain_next_token(llama), ids, mask, steps)
    assert_same_logits(lean, plain)


def test_decode_steps_use_the_lean_cache(llama):
    ids, mask = prompts(padded=True)
    next_token = hf_next_token(llama)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        _, cache = next_token(ids, mask, positions, None)
        assert isinstance(cache, DecodeCache) and cache.length == ids.shape[1]
        full = torch.cat([mask, mask.new_ones((3, 1))], dim=1)
        _, cache = next_token(ids[:, -1:], full, positions[:, -1:] + 1, cache)
        assert isinstance(cache, DecodeCache) and cache.length == ids.shape[1] + 1
        with pytest.raises(ValueError, match="one new token per row"):
            next_token(ids[:, -2:], full, positions[:, -2:], cache)


@pytest.mark.parametrize(
    "setting", [dict(greedy=True), dict(temperature=1.0, top_p=0.9), dict(temperature=0.7)]
)
@pytest.mark.parametrize("rows", [1, 3])
def test_rollouts_are_token_for_token_the_same(llama, setting, rows):
    ids, mask = prompts(padded=True, rows=rows)

    def rollout(next_token):
        return sample(
            next_token,
            ids,
            mask,
            max_new_tokens=24,
            eos_id=EOS,
            pad_id=PAD,
            generator=torch.Generator().manual_seed(5),
            **setting,
        )

    lean, plain = rollout(hf_next_token(llama)), rollout(plain_next_token(llama))
    assert torch.equal(lean.completion_ids, plain.completion_ids)
    assert torch.equal(lean.completion_mask, plain.completion_mask)


def test_the_packed_weights_are_kept_between_replies_and_follow_a_changed_weight():
    """The packed copy is made for one-row replies, once per model, and made again when a base
    weight is written in place or replaced: the next reply decodes with the new weights, as
    the forward does."""
    import gc

    from morl_core.policy import llama_decode

    model = tiny_llama()
    ids, mask = prompts(padded=False, rows=1)  # one row: the packed weights
    lean_next, plain_next = hf_next_token(model), hf_next_token(model, lean=False)
    teacher_forced_logits(lean_next, *prompts(padded=False), 3)
    assert model not in llama_decode._PACKED  # several rows read the model's own weights
    teacher_forced_logits(lean_next, ids, mask, 3)
    packed = llama_decode._PACKED[model]
    teacher_forced_logits(lean_next, ids, mask, 3)
    assert llama_decode._PACKED[model] is packed  # not packed again for the next reply

    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.mul_(-2.0)  # in place
    lean, _ = teacher_forced_logits(lean_next, ids, mask, 6)
    plain, _ = teacher_forced_logits(plain_next, ids, mask, 6)
    assert_same_logits(lean, plain)
    assert llama_decode._PACKED[model] is not packed

    head = model.lm_head
    head.weight = torch.nn.Parameter(head.weight.detach() * 0.5)  # another tensor (untied)
    lean, _ = teacher_forced_logits(lean_next, ids, mask, 6)
    plain, _ = teacher_forced_logits(plain_next, ids, mask, 6)
    assert_same_logits(lean, plain)

    gone = weakref.ref(llama_decode._PACKED[model])
    del model, lean_next, plain_next, head
    gc.collect()
    assert gone() is None  # the copy goes with the model


def test_a_model_too_large_to_copy_decodes_one_row_on_its_own_weights(llama, monkeypatch):
    """The packed weights are a copy: past the size limit a one-row reply still takes the lean
    step, on the model's own weights (bit for bit), and nothing is copied."""
    from morl_core.policy import llama_decode

    total = sum(
        weight.nbytes
        for name, weight in llama.named_parameters()
        if name.endswith("proj.weight") or name == "lm_head.weight"
    )
    monkeypatch.setattr(llama_decode, "PACK_LIMIT_BYTES", total - 1)
    monkeypatch.setattr(llama_decode, "_PACKED", weakref.WeakKeyDictionary())
    ids, mask = prompts(padded=False, rows=1)
    lean, cache = teacher_forced_logits(hf_next_token(llama), ids, mask, 6)
    plain, _ = teacher_forced_logits(hf_next_token(llama, lean=False), ids, mask, 6)
    assert isinstance(cache, DecodeCache) and torch.equal(lean, plain)
    assert llama not in llama_decode._PACKED
    monkeypatch.setattr(llama_decode, "PACK_LIMIT_BYTES", total)
    teacher_forced_logits(hf_next_token(llama), ids, mask, 2)
    assert llama in llama_decode._PACKED
