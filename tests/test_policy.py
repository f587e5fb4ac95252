"""Policy: offline loading, seeded sampling, an oracle test against HF generate, LoRA, bad input.

The embedded model loads once for the module; tests that change the model (LoRA) work on deep
copies. A second architecture (a tiny random Llama) is written to a temporary folder and loaded
through the same ``load_policy(folder)`` path.
"""

import copy
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import pytest
import torch

from morl_core.policy import (
    Policy,
    attach_lora,
    embedded_model_path,
    load_adapter,
    load_policy,
    save_adapter,
    set_threads,
)
from morl_core.policy.sampling import (
    check_sampling,
    draw,
    filter_top_p,
    next_from_logits,
    sample,
    sample_top_p,
)

PROMPTS = [
    "The hotel was",
    "Once upon a time, in a small village by the sea, there",
    "Tell me about",
    "In my opinion, the best thing about rainy days is",
]


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy("embedded", device="cpu", threads=1)


def copy_of(policy: Policy) -> Policy:
    """A policy with its own copy of the weights (safe to wrap in LoRA or train)."""
    return Policy(copy.deepcopy(policy.model), policy.tokenizer, policy.device, policy.name)


def logits_of(policy: Policy, prompts=PROMPTS) -> torch.Tensor:
    ids, mask = policy.encode(prompts)
    with torch.no_grad():
        return policy.model(input_ids=ids, attention_mask=mask).logits  # (B, P, V)


def hf_greedy(policy: Policy, prompts, max_new_tokens: int) -> torch.Tensor:
    """Completion ids from ``model.generate(do_sample=False)`` on the same left-padded batch."""
    ids, mask = policy.encode(prompts, max_new_tokens)
    out = policy.model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        pad_token_id=policy.pad_id,
        eos_token_id=policy.eos_id,
    )
    return out[:, ids.shape[1] :]


# --- loading ---


def test_embedded_model_loads_offline(policy):
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert policy.model.config.model_type == "gpt2"
    assert 6_000_000 < sum(p.numel() for p in policy.model.parameters()) < 8_000_000
    assert policy.device == "cpu"
    assert policy.model.dtype == torch.float32
    assert not policy.model.training  # dropout off
    assert policy.max_length == 256
    assert policy.eos_id == policy.pad_id == 0
    assert embedded_model_path().joinpath("model.safetensors").is_file()


def test_load_pins_threads():
    load_policy("embedded", device="cpu", threads=1)
    assert torch.get_num_threads() == 1
    try:
        assert set_threads(2) == 2
        assert torch.get_num_threads() == 2
    finally:
        set_threads(1)
    assert torch.get_num_threads() == 1


def test_encode_left_pads_and_truncates_from_the_left(policy):
    ids, mask = policy.encode(["one two three four", "one"])
    lengths = mask.sum(1).tolist()
    assert lengths[0] > lengths[1] >= 1
    assert mask[1, : ids.shape[1] - lengths[1]].eq(0).all()  # padding on the left
    assert ids[1, : ids.shape[1] - lengths[1]].eq(policy.pad_id).all()
    full = policy.tokenizer("word " * 300, add_special_tokens=False)["input_ids"]
    ids, mask = policy.encode(["word " * 300], max_new_tokens=56)
    assert ids.shape == (1, 200)  # 256 context - 56 new tokens
    assert ids[0].tolist() == full[-200:]


# --- sampling on the embedded model ---


def test_generate_returns_n_texts_prompt_major(policy):
    texts = policy.generate(PROMPTS[:2], n=3, seed=0, max_new_tokens=16, top_p=0.9)
    assert len(texts) == 6 and all(isinstance(t, str) for t in texts)
    assert sum(bool(t) for t in texts) >= 4  # the model writes text, not just EOS
    # prompt-major rows: rows 0-2 come from prompt 0 (same seed -> same rows in a longer batch)
    rollout = policy.rollout(PROMPTS[:2], n=3, seed=0, max_new_tokens=16, top_p=0.9)
    assert rollout.prompt_ids[0].tolist() == rollout.prompt_ids[2].tolist()
    assert rollout.prompt_ids[2].tolist() != rollout.prompt_ids[3].tolist()


def test_same_seed_same_text_different_seed_differs(policy):
    kw = dict(n=4, max_new_tokens=24, temperature=1.0, top_p=0.95)
    first = policy.generate(PROMPTS, seed=7, **kw)
    assert policy.generate(PROMPTS, seed=7, **kw) == first
    assert policy.generate(PROMPTS, seed=8, **kw) != first
    generator = torch.Generator().manual_seed(7)
    assert policy.generate(PROMPTS, generator=generator, **kw) == first


def test_unseeded_generation_leaves_global_rng_alone(policy):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first = policy.generate(PROMPTS[:1], n=4, max_new_tokens=8)
    second = policy.generate(PROMPTS[:1], n=4, max_new_tokens=8)
    assert torch.equal(torch.rand(3), expected)
    assert first != second  # unseeded calls draw fresh seeds


def test_greedy_equals_hf_generate_with_left_padding(policy):
    ids, mask = policy.encode(PROMPTS)
    assert len(set(mask.sum(1).tolist())) == len(PROMPTS)  # all lengths differ: real padding
    ours = policy.rollout(PROMPTS, greedy=True, max_new_tokens=24)
    reference = hf_greedy(policy, PROMPTS, 24)
    assert ours.completion_ids.shape == reference.shape
    assert ours.completion_ids.tolist() == reference.tolist()
    # deterministic, and each row alone (no padding) gives the same tokens as in the batch
    again = policy.rollout(PROMPTS, greedy=True, max_new_tokens=24, seed=99)
    assert torch.equal(again.completion_ids, ours.completion_ids)
    for row, prompt in enumerate(PROMPTS):
        alone = policy.rollout([prompt], greedy=True, max_new_tokens=24)
        length = int(alone.completion_mask.sum())
        assert (
            alone.completion_ids[0, :length].tolist() == ours.completion_ids[row, :length].tolist()
        )
        assert alone.completion_ids[0].tolist() == hf_greedy(policy, [prompt], 24)[0].tolist()


def test_temperature_zero_is_greedy(policy):
    greedy = policy.generate(PROMPTS, greedy=True, max_new_tokens=16)
    assert policy.generate(PROMPTS, temperature=0.0, max_new_tokens=16, seed=3) == greedy


def test_eos_ends_rows_and_masks_what_follows(policy):
    rollout = policy.rollout(PROMPTS * 4, max_new_tokens=64, seed=1, top_p=0.9)
    ids, mask = rollout.completion_ids, rollout.completion_mask
    ended = 0
    for row_ids, row_mask in zip(ids.tolist(), mask.tolist(), strict=True):
        if policy.eos_id in row_ids:
            ended += 1
            stop = row_ids.index(policy.eos_id)
            assert row_mask[: stop + 1] == [1] * (stop + 1)  # the EOS itself counts
            assert row_mask[stop + 1 :] == [0] * (len(row_mask) - stop - 1)
            assert all(t == policy.pad_id for t in row_ids[stop + 1 :])
        else:
            assert row_mask == [1] * len(row_mask)
    assert ended >= 8  # the embedded model ends most replies within 64 tokens
    assert rollout.input_ids.shape == rollout.attention_mask.shape


# --- the sampling loop on scripted logits ---


def scripted(tokens_per_row: list[list[int]], vocab: int = 6, seen: list | None = None):
    """A next-token function that emits the given tokens, row by row (cache = step counter)."""

    def next_token(input_ids, attention_mask, position_ids, cache):
        step = cache or 0
        if seen is not None:
            seen.append((input_ids.clone(), attention_mask.clone(), position_ids.clone()))
        logits = torch.full((len(tokens_per_row), vocab), -10.0)
        for row, tokens in enumerate(tokens_per_row):
            logits[row, tokens[min(step, len(tokens) - 1)]] = 10.0
        return logits, step + 1

    return next_token


def test_sample_stops_rows_at_eos_and_pads_after():
    eos, pad = 1, 5
    prompt = torch.tensor([[pad, 3], [2, 3]])
    prompt_mask = torch.tensor([[0, 1], [1, 1]])
    seen = []
    rollout = sample(
        scripted([[2, 3, eos, 4], [4, 4, 4, 4]], seen=seen),
        prompt,
        prompt_mask,
        max_new_tokens=5,
        eos_id=eos,
        pad_id=pad,
        greedy=True,
    )
    assert rollout.completion_ids.tolist() == [[2, 3, eos, pad, pad], [4, 4, 4, 4, 4]]
    assert rollout.completion_mask.tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    # positions follow the real tokens of each row; the mask grows one column per step
    assert seen[0][2].tolist() == [[0, 0], [0, 1]]
    assert [s[2].tolist() for s in seen[1:3]] == [[[1], [2]], [[2], [3]]]
    assert [s[1].shape[1] for s in seen] == [2, 3, 4, 5, 6]
    assert seen[1][1].tolist() == [[0, 1, 1], [1, 1, 1]]


def test_sample_stops_early_when_every_row_ended():
    rollout = sample(
        scripted([[2, 1], [1]]),
        torch.tensor([[3], [3]]),
        torch.ones(2, 1, dtype=torch.long),
        max_new_tokens=10,
        eos_id=1,
        pad_id=0,
        greedy=True,
    )
    assert rollout.completion_ids.tolist() == [[2, 1], [1, 0]]
    assert rollout.completion_mask.tolist() == [[1, 1], [1, 0]]


def test_decode_drops_eos_and_masked_tokens(policy):
    words = policy.tokenizer(" sunny day", add_special_tokens=False)["input_ids"]
    ids = torch.tensor([[*words, policy.eos_id, 7], [*words, 7, 7]])
    mask = torch.tensor([[1] * len(words) + [1, 0], [1] * len(words) + [0, 0]])
    assert policy.decode(ids, mask) == ["sunny day", "sunny day"]


# --- top-p on hand cases ---


def test_top_p_hand_case():
    logits = torch.tensor([[0.50, 0.30, 0.15, 0.05], [0.05, 0.15, 0.30, 0.50]]).log()
    kept = torch.isfinite(filter_top_p(logits, 0.7))
    # 0.5 is below 0.7, so the second token joins; 0.5 + 0.3 reaches it, so the rest go
    assert kept.tolist() == [[True, True, False, False], [False, False, True, True]]
    assert torch.isfinite(filter_top_p(logits, 0.9)).sum(1).tolist() == [3, 3]
    assert torch.isfinite(filter_top_p(logits, 0.01)).sum(1).tolist() == [1, 1]  # top one stays
    assert torch.equal(filter_top_p(logits, 1.0), logits)
    survivors = filter_top_p(logits, 0.7)
    assert torch.equal(survivors[kept], logits[kept])  # kept logits untouched


@pytest.mark.parametrize("scale", [0.3, 1.0, 4.0])
@pytest.mark.parametrize("top_p", [0.1, 0.5, 0.9, 0.99])
def test_top_p_sampler_draws_only_from_the_nucleus(scale, top_p):
    # scale 0.3 gives nuclei of thousands of tokens, 4.0 of a few: the rejection loop runs often
    logits = torch.randn(64, 8192, generator=torch.Generator().manual_seed(0)) * scale
    kept = torch.isfinite(filter_top_p(logits, top_p))
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        tokens = next_from_logits(logits, top_p=top_p, generator=generator)
        assert kept.gather(-1, tokens[:, None]).all()


def test_top_p_sampler_matches_the_filtered_distribution():
    # 40 tokens, 30,000 draws: empirical frequencies vs softmax(filter_top_p(logits))
    logits = torch.randn(40, generator=torch.Generator().manual_seed(3)) * 1.5
    expected = torch.softmax(filter_top_p(logits, 0.8), -1)
    probs = torch.softmax(logits, -1).expand(30_000, 40)
    tokens = sample_top_p(probs, 0.8, torch.Generator().manual_seed(4))
    observed = torch.bincount(tokens, minlength=40) / 30_000
    assert observed[expected == 0].sum() == 0
    assert (observed - expected).abs().max() < 0.012
    assert 3 <= int((expected > 0).sum()) < 40  # a real cut


def test_top_p_sampling_follows_the_renormalised_nucleus():
    logits = torch.tensor([0.50, 0.30, 0.15, 0.05]).log().expand(20_000, 4)
    generator = torch.Generator().manual_seed(0)
    tokens = next_from_logits(logits, top_p=0.7, generator=generator)
    counts = torch.bincount(tokens, minlength=4).tolist()
    assert counts[2] == counts[3] == 0
    assert abs(counts[0] / 20_000 - 0.625) < 0.015  # 0.5 / 0.8
    # temperature 0.5 squares the odds: 0.5^2 : 0.3^2 -> 0.735 : 0.265 (nucleus at 0.7 is 2 tokens)
    tokens = next_from_logits(logits, temperature=0.5, top_p=0.7, generator=generator)
    assert abs((tokens == 0).float().mean().item() - 0.25 / 0.34) < 0.015


def test_draw_follows_weights_and_never_draws_zero_weight():
    weights = torch.tensor([0.0, 1.0, 0.0, 3.0, 0.0]).expand(40_000, 5)
    tokens = draw(weights, torch.Generator().manual_seed(0))
    counts = torch.bincount(tokens, minlength=5)
    assert counts[0] == counts[2] == counts[4] == 0
    assert abs(counts[3].item() / 40_000 - 0.75) < 0.01
    with pytest.raises(ValueError, match="no finite, positive probability"):
        draw(torch.zeros(2, 3))


# --- LoRA ---


def test_fresh_lora_keeps_logits_and_one_step_changes_them(policy, tmp_path):
    base_logits = logits_of(policy)
    tuned = attach_lora(copy_of(policy), r=4)
    assert torch.equal(logits_of(tuned), base_logits)  # LoRA B starts at zero
    trainable = {n for n, p in tuned.model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    frozen_before = {
        n: p.detach().clone() for n, p in tuned.model.named_parameters() if "lora_" not in n
    }
    train_one_step(tuned)
    after = logits_of(tuned)
    assert (after - base_logits).abs().max() > 1e-4
    assert all(
        torch.equal(p, frozen_before[n])
        for n, p in tuned.model.named_parameters()
        if n in frozen_before
    )

    folder = save_adapter(tuned, tmp_path / "adapter")
    assert (folder / "adapter_config.json").is_file()
    assert (folder / "adapter_model.safetensors").is_file()
    reloaded = load_adapter(copy_of(policy), folder)
    assert torch.equal(logits_of(reloaded), after)
    assert not any(p.requires_grad for p in reloaded.model.parameters())
    texts = reloaded.generate(PROMPTS[:2], seed=5, max_new_tokens=12)
    assert texts == tuned.generate(PROMPTS[:2], seed=5, max_new_tokens=12)


def test_named_adapter_saves_flat_and_reloads_trainable(policy, tmp_path):
    tuned = attach_lora(copy_of(policy), r=2, adapter_name="style")
    train_one_step(tuned)
    folder = save_adapter(tuned, tmp_path / "style", adapter_name="style")
    assert (folder / "adapter_config.json").is_file() and not (folder / "style").exists()
    reloaded = load_adapter(copy_of(policy), folder, adapter_name="style", trainable=True)
    assert torch.equal(logits_of(reloaded), logits_of(tuned))
    assert any(p.requires_grad for p in reloaded.model.parameters())


def test_load_adapter_rejects_a_folder_without_config(policy, tmp_path):
    with pytest.raises(ValueError, match="adapter_config.json"):
        load_adapter(copy_of(policy), tmp_path)


def train_one_step(policy: Policy, lr: float = 1e-2) -> None:
    ids, mask = policy.encode(PROMPTS)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    policy.model.train()
    loss = policy.model(input_ids=ids, attention_mask=mask, labels=ids).loss
    loss.backward()
    optimizer.step()
    policy.model.eval()


# --- a second architecture, made locally ---


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory, policy):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(policy.tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=policy.eos_id,
        eos_token_id=policy.eos_id,
        pad_token_id=policy.pad_id,
    )
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    policy.tokenizer.save_pretrained(folder)
    return folder


def test_second_architecture_loads_generates_and_takes_lora(llama_folder, tmp_path):
    llama = load_policy(llama_folder, device="cpu", threads=1)
    assert llama.model.config.model_type == "llama"
    assert llama.max_length == 128
    texts = llama.generate(PROMPTS, n=2, seed=3, max_new_tokens=10)
    assert len(texts) == 8 and texts == llama.generate(PROMPTS, n=2, seed=3, max_new_tokens=10)
    assert any(texts)  # random weights rarely pick EOS first out of 8k tokens
    ours = llama.rollout(PROMPTS, greedy=True, max_new_tokens=10).completion_ids
    assert ours.tolist() == hf_greedy(llama, PROMPTS, 10).tolist()

    base_logits = logits_of(llama)
    attach_lora(llama, r=2)
    assert torch.equal(logits_of(llama), base_logits)
    assert any("q_proj.lora_A" in n for n, _ in llama.model.named_parameters())
    train_one_step(llama, lr=5e-2)
    after = logits_of(llama)
    assert (after - base_logits).abs().max() > 1e-5
    folder = save_adapter(llama, tmp_path / "llama-adapter")
    reloaded = load_adapter(load_policy(str(llama_folder), device="cpu", threads=1), folder)
    assert torch.equal(logits_of(reloaded), after)


# --- bad input ---


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("no-such-org/no-such-model", "cannot load model 'no-such-org/no-such-model'"),
        ("/no/such/folder", "no model folder at '/no/such/folder'"),
        ("./missing-model", "no model folder at './missing-model'"),
        ("", "model must be 'embedded', a model folder or a hub name"),
    ],
)
def test_unknown_model_is_a_value_error(name, message):
    with pytest.raises(ValueError, match=message):
        load_policy(name, device="cpu")


def test_folder_without_config_is_a_value_error(tmp_path):
    with pytest.raises(ValueError, match="not a model folder"):
        load_policy(tmp_path, device="cpu")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(device="tpu"), "device must be 'auto', 'cpu' or 'cuda'"),
        (dict(dtype="int8"), "dtype must be 'auto' or one of"),
        (dict(threads=0), r"threads must be in \[1, 1024\]"),
        (dict(threads=1025), r"threads must be in \[1, 1024\], got 1025"),
    ],
)
def test_bad_device_dtype_threads(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_policy("embedded", **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_cuda_without_gpu_is_a_value_error():
    with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
        load_policy("embedded", device="cuda")


@pytest.mark.parametrize(
    ("prompts", "kwargs", "message"),
    [
        ([], {}, "prompts is empty"),
        ("a string", {}, "prompts must be a list of strings"),
        (["ok", 3], {}, r"items \[1\] are not"),
        (["ok"], dict(n=0), "n .* must be an integer >= 1"),
        (["ok"], dict(top_p=0.0), r"top_p must be in \(0, 1\]"),
        (["ok"], dict(top_p=1.5), r"top_p must be in \(0, 1\]"),
        (["ok"], dict(temperature=-1.0), "temperature must be a number >= 0"),
        (["ok"], dict(max_new_tokens=-1), "max_new_tokens must be an integer >= 0"),
        (["ok"], dict(max_new_tokens=256), "below the model's context length 256"),
    ],
)
def test_bad_generation_input_is_a_value_error(policy, prompts, kwargs, message):
    with pytest.raises(ValueError, match=message):
        policy.generate(prompts, **kwargs)


def test_check_sampling_reports_every_bad_field():
    with pytest.raises(ValueError) as error:
        check_sampling(-1, float("nan"), 0)
    assert "max_new_tokens" in str(error.value)
    assert "temperature" in str(error.value)
    assert "top_p" in str(error.value)


def test_prefix_survives_truncation_of_a_long_prompt(policy):
    prefix = "<sentiment=1.0><brevity=0.6>\n"
    short_ids, _ = policy.encode(["The hotel was"], prefix=prefix)
    joint_ids, _ = policy.encode([prefix + "The hotel was"])
    assert short_ids.tolist() == joint_ids.tolist()  # a prompt that fits: same as writing it in
    ids, mask = policy.encode(["word " * 400 + "The hotel was"], max_new_tokens=24, prefix=prefix)
    assert ids.shape[1] == policy.max_length - 24 and int(mask.sum()) == ids.shape[1]
    head = policy.tokenizer(prefix, add_special_tokens=False)["input_ids"]
    assert ids[0, : len(head)].tolist() == head  # the tags are kept whole
    assert policy.tokenizer.decode(ids[0, -4:]).strip().endswith("hotel was")


def test_sampling_runs_in_eval_mode_and_leaves_an_eval_model_alone(policy, monkeypatch):
    trained = copy_of(policy)
    trained.model.train()
    seen = []
    original = trained.model.forward

    def forward(*args, **kwargs):
        seen.append(trained.model.training)
        return original(*args, **kwargs)

    monkeypatch.setattr(trained.model, "forward", forward)
    trained.generate(["The food"], max_new_tokens=3, seed=0)
    assert seen and not any(seen)  # dropout off while sampling
    assert trained.model.training  # the caller's mode again

    switches = []
    monkeypatch.setattr(type(policy.model), "train", lambda self, mode=True: switches.append(mode))
    policy.model.training = False
    policy.generate(["The food"], max_new_tokens=3, seed=0)
    assert switches == []  # an eval model is not walked twice per reply
