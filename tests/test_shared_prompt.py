"""The prompt computed once per group of k completions: the same numbers as one pass per row.

Generation (``Policy.rollout`` with ``n > 1``, or given one prompt several times as the Steer
page does) prefills one row per distinct prompt and copies its cache to every row;
the update (``token_logprobs(..., group_size=k)``) runs each prompt once and its completions
against the repeated cache. Both are checked against the plain path, on the embedded GPT-2 and
on a tiny random Llama (the model whose decode steps go through ``DecodeCache``), with a LoRA
adapter whose output is not zero.
"""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import numpy as np
import pytest
import torch
from tiny_models import EOS, PAD, VOCAB, count_prompt_rows, tiny_llama

from morl_core.policy import attach_lora, load_policy
from morl_core.policy.llama_decode import DecodeCache
from morl_core.policy.model import Policy, is_transformers_model, rows_independent
from morl_core.policy.sampling import hf_next_token, sample, share_identical_prompts
from morl_core.rl.losses import token_logprobs

K = 4
PROMPTS = ["Write a haiku about", "Tell me"]


def perturb_lora(model, seed: int = 0) -> None:
    """Non-zero LoRA B matrices (a fresh adapter outputs zero), so the adapter matters."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)


@pytest.fixture(scope="module")
def embedded() -> Policy:
    policy = load_policy("embedded", device="cpu", threads=1)
    torch.manual_seed(0)
    attach_lora(policy)
    perturb_lora(policy.model)
    policy.model.eval()
    return policy


def sharp_llama():
    return tiny_llama(initializer_range=0.2)  # sharper attention: the cache must matter


@pytest.fixture(scope="module")
def llama_lora() -> Policy:
    policy = Policy(model=sharp_llama(), tokenizer=None, device="cpu", name="tiny-llama")
    attach_lora(policy)
    perturb_lora(policy.model, seed=1)
    policy.model.eval()
    return policy


def llama_batch(k: int = K, completion: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, mask) (3k, 7 + completion): three left-padded prompts, each with k right-padded
    random completions (some end early), rows prompt-major."""
    generator = torch.Generator().manual_seed(2)
    prompt = torch.randint(2, VOCAB, (3, 7), generator=generator)
    prompt_mask = torch.ones_like(prompt)
    for row, pad in enumerate((0, 3, 5)):
        prompt[row, :pad], prompt_mask[row, :pad] = PAD, 0
    rows = 3 * k
    tail = torch.randint(2, VOCAB, (rows, completion), generator=generator)
    tail_mask = torch.ones_like(tail)
    for row in range(0, rows, 3):  # every third completion stops after two tokens
        tail[row, 2:], tail_mask[row, 2:] = PAD, 0
    ids = torch.cat([prompt.repeat_interleave(k, 0), tail], 1)
    mask = torch.cat([prompt_mask.repeat_interleave(k, 0), tail_mask], 1)
    return ids, mask


def embedded_batch(policy: Policy) -> tuple[torch.Tensor, torch.Tensor, int]:
    rollout = policy.rollout(PROMPTS, n=K, max_new_tokens=12, seed=3)
    return rollout.input_ids, rollout.attention_mask, rollout.completion_mask.shape[1]


def logprobs_and_grads(model, ids, mask, n_completion, group_size):
    """Token log-probs (B, T) and the LoRA gradients of a weighted sum of them."""
    model.zero_grad(set_to_none=True)
    logp, entropy = token_logprobs(model, ids, mask, n_completion, group_size=group_size)
    weights = torch.linspace(-1.0, 1.0, logp.numel()).view_as(logp)
    (logp * weights * mask[:, -n_completion:]).sum().backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    return logp.detach(), entropy, grads


def batch_of(name, request):
    policy = request.getfixturevalue("embedded" if name == "embedded" else "llama_lora")
    if name == "embedded":
        return policy.model, *embedded_batch(policy)
    ids, mask = llama_batch()
    return policy.model, ids, mask, 6


@pytest.mark.parametrize("name", ["embedded", "llama"])
def test_grouped_logprobs_and_gradients_match_the_plain_pass(name, request):
    model, ids, mask, n_completion = batch_of(name, request)
    plain, plain_entropy, plain_grads = logprobs_and_grads(model, ids, mask, n_completion, 1)
    grouped, grouped_entropy, grouped_grads = logprobs_and_grads(model, ids, mask, n_completion, K)
    assert grouped.shape == plain.shape == (ids.shape[0], n_completion)
    real = mask[:, -n_completion:].bool()
    torch.testing.assert_close(grouped[real], plain[real], atol=1e-4, rtol=0)
    torch.testing.assert_close(grouped_entropy[real], plain_entropy[real], atol=1e-4, rtol=0)
    assert plain_grads and grouped_grads.keys() == plain_grads.keys()
    flat = torch.cat([g.flatten() for g in plain_grads.values()])
    diff = torch.cat([(grouped_grads[n] - g).flatten() for n, g in plain_grads.items()])
    assert float(flat.norm()) > 0
    assert float(diff.norm() / flat.norm()) < 1e-4


@pytest.mark.parametrize("name", ["embedded", "llama"])
def test_grouped_reference_pass_matches_without_grad(name, request):
    model, ids, mask, n_completion = batch_of(name, request)
    with torch.no_grad(), model.disable_adapter():
        plain, _ = token_logprobs(model, ids, mask, n_completion)
        grouped, _ = token_logprobs(model, ids, mask, n_completion, group_size=K)
    real = mask[:, -n_completion:].bool()
    torch.testing.assert_close(grouped[real], plain[real], atol=1e-4, rtol=0)


def test_one_completion_token_uses_only_the_prompt_pass(llama_lora):
    ids, mask = llama_batch(completion=1)
    with torch.no_grad():
        plain, _ = token_logprobs(llama_lora.model, ids, mask, 1)
        grouped, _ = token_logprobs(llama_lora.model, ids, mask, 1, group_size=K)
    torch.testing.assert_close(grouped, plain, atol=1e-4, rtol=0)


def test_groups_that_do_not_share_their_prompt_fall_back_to_the_plain_pass(llama_lora):
    ids, mask = llama_batch()
    ids[1, 6] = (ids[0, 6] + 1) % VOCAB  # the second row of the first group: another prompt
    with torch.no_grad():
        plain, _ = token_logprobs(llama_lora.model, ids, mask, 6)
        grouped, _ = token_logprobs(llama_lora.model, ids, mask, 6, group_size=K)
        # rows not a multiple of the group size: also the plain pass
        odd, _ = token_logprobs(llama_lora.model, ids[:-1], mask[:-1], 6, group_size=K)
    torch.testing.assert_close(grouped, plain, atol=1e-4, rtol=0)
    torch.testing.assert_close(odd, plain[:-1], atol=1e-4, rtol=0)


@pytest.mark.parametrize("n", [1, K])
def test_rollout_completions_are_the_same_with_the_shared_prefill(embedded, n):
    plain_next = hf_next_token(embedded.model)  # an explicit next_token keeps one pass per row
    for seed in (0, 1):
        shared = embedded.rollout(PROMPTS, n=n, max_new_tokens=16, seed=seed)
        plain = embedded.rollout(PROMPTS, n=n, max_new_tokens=16, seed=seed, next_token=plain_next)
        assert shared.completion_ids.shape[0] == len(PROMPTS) * n
        assert torch.equal(shared.completion_ids, plain.completion_ids)
        assert torch.equal(shared.completion_mask, plain.completion_mask)


def forced_logits(next_token, ids, mask, completion) -> torch.Tensor:
    """Logits (B, T, V) of each step of a loop fed the given completion (B, T)."""
    width, steps = ids.shape[1], completion.shape[1]
    full = torch.cat([mask, mask.new_ones((mask.shape[0], steps))], dim=1)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, cache, out = ids, None, []
    with torch.no_grad():
        for step in range(steps):
            logits, cache = next_token(step_ids, full[:, : width + step], positions, cache)
            out.append(logits)
            step_ids, positions = completion[:, step : step + 1], positions[:, -1:] + 1
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("adapter", [False, True])
def test_llama_sampling_is_the_same_with_the_shared_prefill(llama_lora, adapter):
    """With or without a LoRA adapter the prompt's cache becomes a ``DecodeCache``, repeated
    after it."""
    model = llama_lora.model if adapter else sharp_llama()
    ids, mask = llama_batch()
    ids, mask = ids[:, :7], mask[:, :7]  # the prompts, each repeated K times
    caches = []

    def spy(input_ids, attention_mask, position_ids, cache):
        logits, cache = plain(input_ids, attention_mask, position_ids, cache)
        caches.append(cache)
        return logits, cache

    plain = hf_next_token(model)
    spy_shared = share_identical_prompts(spy)
    for top_p in (1.0, 0.8):
        out = []
        for next_token in (plain, spy_shared):
            generator = torch.Generator().manual_seed(5)
            settings = dict(max_new_tokens=12, eos_id=EOS, pad_id=PAD, top_p=top_p)
            out.append(sample(next_token, ids, mask, generator=generator, **settings))
        assert torch.equal(out[0].completion_ids, out[1].completion_ids)
        assert torch.equal(out[0].completion_mask, out[1].completion_mask)
    logits = [forced_logits(fn, ids, mask, out[0].completion_ids) for fn in (plain, spy_shared)]
    torch.testing.assert_close(logits[1], logits[0], atol=1e-5, rtol=0)
    assert caches and all(isinstance(c, DecodeCache) for c in caches)


def test_only_transformers_models_share_the_prompt_pass(embedded):
    class Wrapper(torch.nn.Module):  # a method's own module may hold per-row state
        def __init__(self, model):
            super().__init__()
            self.model = model

    assert is_transformers_model(embedded.model)  # peft-wrapped
    assert is_transformers_model(sharp_llama())
    assert not is_transformers_model(Wrapper(embedded.model))
    assert not rows_independent(Wrapper(embedded.model))


def test_repeated_prompts_share_the_prompt_pass_through_rollout(embedded, monkeypatch):
    """``[prompt] * n`` at ``n=1`` (the Steer page's samples, for every family that decodes with
    the policy's own forward): one prompt pass over the distinct rows, the same completions."""
    base = type(embedded.model.base_model.model)  # the GPT-2 under the LoRA wrapper
    rows = count_prompt_rows(monkeypatch, base)
    plain_next = hf_next_token(embedded.model)  # an explicit next_token keeps one pass per row
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1], PROMPTS[0]]
    for seed in (0, 1):
        rows.clear()
        shared = embedded.rollout(prompts, max_new_tokens=16, seed=seed)
        assert rows == [2]  # two distinct prompts
        plain = embedded.rollout(prompts, max_new_tokens=16, seed=seed, next_token=plain_next)
        assert rows == [2, 5]
        assert torch.equal(shared.completion_ids, plain.completion_ids)
        assert torch.equal(shared.completion_mask, plain.completion_mask)
    rows.clear()
    embedded.rollout(PROMPTS, n=K, max_new_tokens=4, seed=0)
    assert rows == [len(PROMPTS)]


def test_distinct_prompts_keep_the_plain_pass_and_odd_caches_fall_back():
    calls = []

    def fake(input_ids, attention_mask, position_ids, cache):
        calls.append(input_ids.shape[0])
        return input_ids.float(), cache if cache is not None else object()  # no row selection

    ids = torch.tensor([[3, 4], [3, 4], [5, 6]])
    mask = torch.ones_like(ids)
    shared = share_identical_prompts(fake)
    logits, _ = shared(ids, mask, mask.cumsum(-1) - 1, None)
    assert calls == [2, 3] and torch.equal(logits, ids.float())  # fell back to every row
    calls.clear()
    logits, _ = shared(ids[1:], mask[1:], mask[1:].cumsum(-1) - 1, None)
    assert calls == [2] and torch.equal(logits, ids[1:].float())  # nothing to share


def test_panacea_samples_of_one_prompt_share_the_prompt_pass(monkeypatch):
    """Panacea's module is not a ``transformers`` model but says its rows are independent."""
    from morl_core.methods.panacea import Panacea, attach_panacea

    policy = load_policy("embedded", device="cpu", threads=1)
    base = type(policy.model)
    model = attach_panacea(policy, r=4, k=2, alpha=8.0, seed=0)
    assert rows_independent(model) and not is_transformers_model(model)
    rows = count_prompt_rows(monkeypatch, base)
    gen = {"seed": 2, "max_new_tokens": 12, "top_p": 0.9}
    texts = Panacea(policy, ("a", "b")).generate([PROMPTS[0]] * 3, [0.3, 0.7], **gen)
    assert rows == [1]
    plain = policy.generate([PROMPTS[0]] * 3, next_token=hf_next_token(model), **gen)
    assert rows == [1, 3] and texts == plain and len(set(texts)) > 1


@pytest.mark.parametrize("mix_at", ["final", "pre_norm"])
def test_emorl_experts_share_the_prompt_pass_and_mix_every_row(monkeypatch, mix_at):
    """EMORL's fusion runs each expert's prompt pass once per distinct prompt, then mixes every
    row with its own coefficients: the same texts as one pass per row, for a fixed seed."""
    from morl_core.methods import hidden
    from morl_core.methods.emorl import Emorl

    policy = load_policy("embedded", device="cpu", threads=1)
    base = type(policy.model)
    names = ["expert_a", "expert_b"]
    torch.manual_seed(0)
    for name in names:
        attach_lora(policy, r=4, alpha=8, adapter_name=name)
    perturb_lora(policy.model, seed=4)
    policy.model.eval()
    rows = count_prompt_rows(monkeypatch, base)
    emorl = Emorl(policy, ("a", "b"), names, mix_at=mix_at)
    prompts = [PROMPTS[0]] * 3 + [PROMPTS[1]]
    coefficients = np.array([[0.3, 0.7], [0.3, 0.7], [0.9, 0.4], [0.5, 0.5]])  # per row
    gen = {"seed": 6, "max_new_tokens": 12, "top_p": 0.9}
    shared = emorl.decode(prompts, coefficients, **gen)
    assert rows == [2, 2]  # each expert once per distinct prompt
    rows.clear()
    monkeypatch.setattr(hidden, "distinct_rows", lambda *tensors: None)  # one pass per row
    per_row = emorl.decode(prompts, coefficients, **gen)
    assert rows == [4, 4]
    assert shared == per_row and len(set(shared[:3])) > 1
