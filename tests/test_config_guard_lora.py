"""RunConfig's fluency guard, LoRA target modules and the experts' ``retrain`` option: each is
validated by name with its allowed values, and reaches the code it configures."""

import json
from pathlib import Path

import pytest
import torch

from morl_core.config import ConfigError, RunConfig
from morl_core.methods import get
from morl_core.methods.common import adapter_dir
from morl_core.methods.experts import expert_names
from morl_core.policy import attach_lora, load_policy, set_threads
from morl_core.policy.lora import target_module_names

set_threads(1)


def refused(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        RunConfig.from_dict(data)
    return caught.value.errors


# --- fluency_guard ---


def test_fluency_guard_defaults_to_the_lexical_gate_and_names_its_choices():
    assert RunConfig().fluency_guard == "lexical"
    assert RunConfig.from_dict({"fluency_guard": "wordlist"}).fluency_guard == "wordlist"
    errors = refused({"fluency_guard": "words"})
    assert list(errors) == ["fluency_guard"]
    assert "lexical, wordlist" in errors["fluency_guard"]


# --- lora_target_modules ---


@pytest.mark.parametrize("value", ["all-linear", "c_attn", "q_proj,v_proj"])
def test_lora_target_modules_accepts_all_linear_or_module_names(value):
    assert RunConfig.from_dict({"lora_target_modules": value}).lora_target_modules == value
    assert RunConfig().lora_target_modules == "all-linear"


@pytest.mark.parametrize(
    "value", ["", "q_proj, v_proj", "q_proj,", "model.layers", "q_proj\n", None, ["q_proj"], 3]
)
def test_lora_target_modules_refuses_other_text_by_name(value):
    errors = refused({"lora_target_modules": value})
    assert list(errors) == ["lora_target_modules"]
    assert "'all-linear' or up to 64 comma-separated module names" in errors["lora_target_modules"]


def test_panacea_needs_all_linear():
    errors = refused({"method": "panacea", "lora_target_modules": "c_attn"})
    assert "must be 'all-linear' for panacea" in errors["lora_target_modules"]


@pytest.fixture(scope="module")
def embedded():
    return load_policy("embedded", device="cpu", threads=1)


def lora_layers(policy) -> set[str]:
    return {
        n.split(".lora_A.")[0].rsplit(".", 1)[-1]
        for n, _ in policy.model.named_parameters()
        if ".lora_A." in n
    }


def test_named_modules_are_checked_against_the_model_when_it_loads(embedded):
    assert target_module_names(embedded.model) == ["c_attn", "c_fc", "c_proj"]  # no lm_head
    policy = load_policy("embedded", device="cpu", threads=1)
    with pytest.raises(ValueError) as caught:
        attach_lora(policy, target_modules="q_proj,c_attn")
    assert str(caught.value) == (
        "lora_target_modules: q_proj is no linear layer of this model; allowed: 'all-linear' "
        "or comma-separated names among c_attn, c_fc, c_proj"
    )
    assert lora_layers(attach_lora(policy, target_modules="c_attn")) == {"c_attn"}
    # a second adapter: the wrapped layers keep their names, the adapters' own are no targets
    assert target_module_names(policy.model) == ["c_attn", "c_fc", "c_proj"]
    everything = attach_lora(load_policy("embedded", device="cpu", threads=1))
    assert lora_layers(everything) == {"c_attn", "c_fc", "c_proj"}


# --- a run: target modules reach the adapters, retrain trains only the named experts ---

TINY = {
    "method": "soups",
    "objectives": ["sentiment", "brevity"],
    "steps": 1,
    "batch_prompts": 1,
    "k_samples": 2,
    "max_new_tokens": 4,
    "eval_prompts": 1,
    "n_preferences": 2,
    "eval_every": 0,
    "device": "cpu",
}


def train(run_dir: Path, **changes) -> list[str]:
    """Train soups into ``run_dir``; the stages that took RL steps."""
    config = RunConfig.from_dict({**TINY, **changes}, check_files=False)
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps(config.to_dict()))
    stages = []
    with torch.random.fork_rng(devices=[]):
        get("soups").train(config, run_dir, lambda info: stages.append(info.stage) or True)
    return stages


def test_retrain_copies_the_other_experts_and_trains_the_named_one(tmp_path):
    source = tmp_path / "source"
    assert train(source) == expert_names(TINY["objectives"])
    run = tmp_path / "run"
    options = {"experts_from": str(source), "retrain": "brevity"}
    assert train(run, options=options, lora_target_modules="c_attn") == ["expert_brevity"]
    copied, retrained = (adapter_dir(run, name) for name in expert_names(TINY["objectives"]))
    for file in ("adapter_config.json", "adapter_model.safetensors"):
        assert (copied / file).read_bytes() == (
            adapter_dir(source, copied.name) / file
        ).read_bytes()
    adapter = json.loads((retrained / "adapter_config.json").read_text())
    assert adapter["target_modules"] == ["c_attn"]
    source_adapter = json.loads(
        (adapter_dir(source, retrained.name) / "adapter_config.json").read_text()
    )
    assert sorted(source_adapter["target_modules"]) == ["c_attn", "c_fc", "c_proj"]


def test_retrain_names_objectives_of_the_run_beside_experts_from(tmp_path):
    errors = refused({**TINY, "options": {"retrain": "formality"}})
    assert errors["options.retrain"] == (
        "'formality' is not an objective of this run; allowed: comma-separated names among "
        "sentiment, brevity"
    )
    errors = refused({**TINY, "options": {"retrain": "brevity"}})
    assert "needs options.experts_from" in errors["options.retrain"]
    errors = refused({**TINY, "method": "morlhf", "options": {"retrain": "brevity"}})
    assert "unknown option for morlhf" in errors["options.retrain"]
