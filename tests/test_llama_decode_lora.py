"""The lean Llama decode step on peft LoRA models: peft's logits (bit for bit; one row: to rounding).

A tiny random Llama (GQA: 4 query heads over 2 key/value heads) is wrapped by peft with LoRA
adapters whose B matrices are random (peft's default starts B at zero, which would hide a
missing term). Its decode loop through ``hf_next_token`` (which takes :class:`LlamaDecodeStep`
for such a model) is compared with the plain loop (peft's forward and ``transformers``' cache):
logits over many steps, seeded rollouts, adapter weights rewritten in place mid-reply and
between replies (what a soup does when the preference changes), adapters switched or turned off,
and the kinds of adapter the step does not reproduce, which must keep peft's forward.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import warnings

import pytest
import torch
from tiny_models import EOS, PAD, assert_same_logits, prompts, teacher_forced_logits, tiny_llama

from morl_core.policy.llama_decode import DecodeCache, LlamaDecodeStep
from morl_core.policy.sampling import hf_next_token, sample

QV = ["q_proj", "v_proj"]  # the shipped SmolLM2 demos' minimal targets
ALL = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def lora_llama(targets=QV, names=("default",), task_type="CAUSAL_LM", seed=3, **lora):
    """The tiny Llama wrapped by peft with one LoRA adapter per name (random A and B), eval mode;
    the first name active."""
    from peft import LoraConfig, get_peft_model

    model = tiny_llama()
    torch.manual_seed(seed)
    settings = dict(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False)
    settings.update(lora)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # peft's deprecation and "no effect" notices
        peft_model = get_peft_model(
            model, LoraConfig(task_type=task_type, **settings), adapter_name=names[0]
        )
        for name in names[1:]:
            peft_model.add_adapter(name, LoraConfig(task_type=task_type, **settings))
    return peft_model.eval()


def lean_and_peft(model, steps=12, padded=True, before_step=None, rows=3):
    """Teacher-forced logits of the lean loop and of peft's forward; checks the lean loop
    really decoded through :class:`DecodeCache`. One row decodes through the packed weights,
    more through the model's own."""
    ids, mask = prompts(padded, rows)
    lean, cache = teacher_forced_logits(hf_next_token(model), ids, mask, steps, before_step)
    assert isinstance(cache, DecodeCache)  # the lean step ran
    plain, _ = teacher_forced_logits(
        hf_next_token(model, lean=False), ids, mask, steps, before_step
    )
    return lean, plain


def lora_layers(model, adapter="default"):
    """Every LoRA layer of ``model`` holding ``adapter``."""
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer) and adapter in m.lora_A]


@pytest.mark.parametrize(
    "targets, task_type, padded, rows",
    [
        (QV, "CAUSAL_LM", True, 3),
        (ALL, "CAUSAL_LM", False, 3),
        (ALL, None, True, 3),
        (QV, "CAUSAL_LM", True, 1),
        (ALL, "CAUSAL_LM", False, 1),
    ],
)
def test_lean_steps_give_the_peft_logits(targets, task_type, padded, rows):
    model = lora_llama(targets, task_type=task_type)
    assert LlamaDecodeStep.applies(model)
    steps = 80  # past the cache's first capacity (prompt + 64), so it grows once
    lean, plain = lean_and_peft(model, steps, padded, rows=rows)
    assert_same_logits(lean, plain)
    # the adapters matter: the same loop without them gives other logits
    with model.disable_adapter():
        base, _ = lean_and_peft(model, steps, padded, rows=rows)
    assert not torch.allclose(base, plain, atol=1e-3)


def test_several_active_adapters_and_a_lora_head_add_up_in_peft_order():
    model = lora_llama([*ALL, "lm_head"], names=("first", "second"))
    model.base_model.set_adapter(["first", "second"])  # both on every LoRA layer, in order
    assert all(layer.active_adapters == ["first", "second"] for layer in lora_layers(model))
    assert LlamaDecodeStep.applies(model)
    lean, plain = lean_and_peft(model)
    assert_same_logits(lean, plain)
    model.base_model.set_adapter("first")
    first, _ = lean_and_peft(model)
    assert not torch.allclose(first, plain, atol=1e-3)


@pytest.mark.parametrize(
    "setting", [dict(greedy=True), dict(temperature=1.0, top_p=0.9), dict(temperature=0.7)]
)
def test_rollouts_are_token_for_token_the_same(setting):
    model = lora_llama(ALL)
    ids, mask = prompts(padded=True)

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

    lean, plain = rollout(hf_next_token(model)), rollout(hf_next_token(model, lean=False))
    assert torch.equal(lean.completion_ids, plain.completion_ids)
    assert torch.equal(lean.completion_mask, plain.completion_mask)


def rewrite_in_place(model, adapter="default", factor=-1.5):
    """Scale every lora_A of ``adapter`` in place, as a soup rewrites its rows for a new w."""
    with torch.no_grad():
        for layer in lora_layers(model, adapter):
            weight = layer.lora_A[adapter].weight
            torch.mul(weight, factor, out=weight)


def test_weights_rewritten_in_place_mid_reply_change_lean_and_peft_alike():
    model = lora_llama(ALL)
    untouched, _ = lean_and_peft(model)
    originals = [(w, w.detach().clone()) for w in model.parameters() if w.dim() == 2]

    def rewrite_at_step_5(step):  # each loop starts from the original weights
        if step == 0:
            with torch.no_grad():
                for weight, original in originals:
                    weight.copy_(original)
        if step == 5:
            rewrite_in_place(model)

    lean, plain = lean_and_peft(model, before_step=rewrite_at_step_5)
    assert_same_logits(lean, plain)
    assert_same_logits(lean[:, :5], untouched[:, :5])
    assert not torch.allclose(lean[:, 5:], untouched[:, 5:], atol=1e-3)  # the rewrite is seen


def test_a_rewrite_between_replies_changes_lean_and_peft_alike():
    model = lora_llama(ALL)
    ids, mask = prompts(padded=True)
    lean_next, plain_next = hf_next_token(model), hf_next_token(model, lean=False)
    before_lean, _ = teacher_forced_logits(lean_next, ids, mask, 10)
    before_plain, _ = teacher_forced_logits(plain_next, ids, mask, 10)
    rewrite_in_place(model)  # the same next-token functions decode the next reply
    after_lean, cache = teacher_forced_logits(lean_next, ids, mask, 10)
    after_plain, _ = teacher_forced_logits(plain_next, ids, mask, 10)
    assert isinstance(cache, DecodeCache)
    assert_same_logits(before_lean, before_plain)
    assert_same_logits(after_lean, after_plain)
    assert not torch.allclose(after_lean, before_lean, atol=1e-3)


def test_a_soup_rewrite_between_generations_matches_peft():
    """The soups' layout (peft's 'cat' adapter, its A rows rewritten for each w) end to end."""
    model = lora_llama(ALL, names=("expert_a", "expert_b"))
    model.add_weighted_adapter(["expert_a", "expert_b"], [1.0, 1.0], "soup", "cat")
    model.set_adapter("soup")
    model.eval()
    ids, mask = prompts(padded=True)

    def set_preference(w_a: float) -> None:  # A(w) = [w_a s_a A_a; w_b s_b A_b], in place
        with torch.no_grad():
            for layer in lora_layers(model, "soup"):
                rows, start = layer.lora_A["soup"].weight, 0
                for name, w in (("expert_a", w_a), ("expert_b", 1 - w_a)):
                    stop = start + layer.lora_A[name].weight.shape[0]
                    scale = w * layer.scaling[name]
                    torch.mul(layer.lora_A[name].weight, scale, out=rows[start:stop])
                    start = stop

    replies = {}
    for w_a in (0.2, 0.9):
        set_preference(w_a)
        assert LlamaDecodeStep.applies(model)
        replies[w_a] = [
            sample(
                next_token,
                ids,
                mask,
                max_new_tokens=16,
                eos_id=EOS,
                pad_id=PAD,
                generator=torch.Generator().manual_seed(7),
                temperature=1.0,
            ).completion_ids
            for next_token in (hf_next_token(model), hf_next_token(model, lean=False))
        ]
        assert torch.equal(*replies[w_a])
    assert not torch.equal(replies[0.2][0], replies[0.9][0])


def test_switching_adapters_or_turning_them_off_between_replies():
    model = lora_llama(ALL, names=("first", "second"))
    lean_next, plain_next = hf_next_token(model), hf_next_token(model, lean=False)
    ids, mask = prompts(padded=True)
    results = []
    for state in ("first", "second", "off"):
        if state == "off":
            context = model.disable_adapter()
        else:
            model.set_adapter(state)
            context = torch.no_grad()
        with context:
            lean, cache = teacher_forced_logits(lean_next, ids, mask, 10)
            plain, _ = teacher_forced_logits(plain_next, ids, mask, 10)
        assert isinstance(cache, DecodeCache)
        assert_same_logits(lean, plain)
        results.append(lean)
    # each state decodes its own logits: the step follows the switch, not the first state
    assert not torch.allclose(results[0], results[1], atol=1e-3)
    assert not torch.allclose(results[0], results[2], atol=1e-3)
    assert not torch.allclose(results[1], results[2], atol=1e-3)


def merged(model):
    from peft.tuners.lora import LoraLayer

    for layer in model.modules():
        if isinstance(layer, LoraLayer):
            layer.merge()
    return model


def trained(model):
    return model.train()


@pytest.mark.parametrize(
    "make, why",
    [
        (lambda: lora_llama(ALL, use_dora=True), "DoRA"),
        (lambda: lora_llama(ALL, lora_bias=True), "a bias in lora_B"),
        (lambda: lora_llama(QV, modules_to_save=["lm_head"]), "a wrapped head"),
        (lambda: lora_llama(QV, target_modules=["embed_tokens", "q_proj"]), "a LoRA embedding"),
        (lambda: merged(lora_llama(QV)), "merged adapters"),
        (lambda: trained(lora_llama(QV, lora_dropout=0.5)), "training mode (dropout on)"),
        (lambda: lora_llama(QV).half(), "float16"),
    ],
)
def test_what_the_step_does_not_reproduce_keeps_peft_forward(make, why):
    model = make()
    assert not LlamaDecodeStep.applies(model), why
    ids, mask = prompts(padded=True)
    next_token = hf_next_token(model)
    if why != "float16":  # (no half-precision CPU kernels needed: applies() said no)
        _, cache = teacher_forced_logits(next_token, ids, mask, 3)
        assert not isinstance(cache, DecodeCache), why


def test_grad_enabled_keeps_peft_forward():
    model = lora_llama(QV)
    assert LlamaDecodeStep.applies(model)
    ids, mask = prompts(padded=False)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.enable_grad():
        _, cache = hf_next_token(model)(ids, mask, positions, None)
    assert not isinstance(cache, DecodeCache)


def test_a_model_in_train_mode_when_the_function_is_made_is_judged_at_each_reply():
    model = lora_llama(ALL).train()  # the RL trainer's state between updates
    next_token = hf_next_token(model)
    ids, mask = prompts(padded=True)
    with torch.no_grad():
        _, cache = teacher_forced_logits(next_token, ids, mask, 3)
    assert not isinstance(cache, DecodeCache)  # training mode: peft's forward
    model.eval()  # a rollout samples in eval mode
    lean, cache = teacher_forced_logits(next_token, ids, mask, 10)
    plain, _ = teacher_forced_logits(hf_next_token(model, lean=False), ids, mask, 10)
    assert isinstance(cache, DecodeCache)
    assert_same_logits(lean, plain)


def test_the_prompt_pass_skips_peft_bookkeeping_and_gives_the_layers_back(monkeypatch):
    """The lean prompt pass runs no peft ``lora.Linear.forward`` (the same logits come from
    :func:`add_lora`, bit for bit), and every layer has its own forward again
    afterwards, also when the pass fails."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    from morl_core.policy.llama_decode import lean_lora_forwards

    model = lora_llama(ALL)
    calls = []
    peft_forward = LoraLinear.forward
    monkeypatch.setattr(
        LoraLinear,
        "forward",
        lambda self, x, *a, **k: calls.append(1) or peft_forward(self, x, *a, **k),
    )
    ids, mask = prompts(padded=True)
    lean, _ = teacher_forced_logits(hf_next_token(model), ids, mask, 1)
    assert calls == []
    plain, _ = teacher_forced_logits(hf_next_token(model, lean=False), ids, mask, 1)
    assert len(calls) == len(lora_layers(model)) and torch.equal(lean, plain)
    layers = LlamaDecodeStep.lora_layers(model)
    assert len(layers) == len(lora_layers(model))
    with pytest.raises(RuntimeError, match="mid-pass"), lean_lora_forwards(layers):
        assert all("forward" in layer.__dict__ for layer in lora_layers(model))
        raise RuntimeError("mid-pass")
    assert not any("forward" in layer.__dict__ for layer in lora_layers(model))


def test_a_soup_served_in_eval_mode_decodes_through_the_lean_step():
    """peft builds the soup's adapter in train mode; the soup gives it the model's mode, so a
    served soup is decoded by the lean step (it was not, and Steer lost both speed-ups)."""
    from types import SimpleNamespace

    import numpy as np

    from morl_core.methods.soups import SOUP, Soup

    model = lora_llama(ALL, names=("expert_a", "expert_b"))  # in eval mode
    soup = Soup(SimpleNamespace(model=model), ("a", "b"), {"expert_a": None, "expert_b": None})
    model.set_adapter(soup.choose(np.array([0.3, 0.7])))
    assert model.active_adapter == SOUP
    assert not any(module.training for module in model.modules())
    assert LlamaDecodeStep.applies(model)
