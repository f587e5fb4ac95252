"""LoRA adapters through peft, saved and loaded as standard adapter folders."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from morl_core.policy.model import Policy

DEFAULT_ADAPTER = "default"
LORA_ALL_LINEAR = "all-linear"  # peft's name for every linear layer but the output head


@contextlib.contextmanager
def _quiet_peft():
    """Silence peft's use of a deprecated transformers name (gradient checkpointing query)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield


def target_module_names(model) -> list[str]:
    """Names a LoRA adapter can target in ``model``: the last part of the name of each linear
    layer (``torch.nn.Linear``, GPT-2's ``Conv1D``) but the output head, sorted, e.g.
    ``['down_proj', 'gate_proj', 'k_proj', ...]``; a layer an adapter already wraps counts
    once, under its own name (not ``base_layer``), and the adapters' layers not at all."""
    import torch
    from transformers.pytorch_utils import Conv1D

    head = model.get_output_embeddings()
    names = set()
    for name, module in model.named_modules():
        parts = name.split(".")
        if module is head or any(part.startswith("lora_") for part in parts):
            continue
        if isinstance(module, torch.nn.Linear | Conv1D):
            names.add(parts[-2] if parts[-1] == "base_layer" else parts[-1])
    return sorted(names)


def _target_modules(model, target_modules: str | list[str]) -> str | list[str]:
    """``"all-linear"``, or the named modules as a list after checking ``model`` has them
    (peft reads a plain string as a pattern on full names, so comma text becomes a list)."""
    if target_modules == LORA_ALL_LINEAR:
        return target_modules
    names = target_modules.split(",") if isinstance(target_modules, str) else target_modules
    allowed = target_module_names(model)
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise ValueError(
            f"lora_target_modules: {', '.join(unknown) or 'no name'} is no linear layer of this "
            f"model; allowed: '{LORA_ALL_LINEAR}' or comma-separated names among "
            f"{', '.join(allowed)}"
        )
    return list(names)


def attach_lora(
    policy: Policy,
    r: int = 8,
    alpha: int = 32,
    dropout: float = 0.0,
    adapter_name: str = DEFAULT_ADAPTER,
    target_modules: str | list[str] = LORA_ALL_LINEAR,
) -> Policy:
    """Wrap the policy's model with a fresh LoRA adapter on ``target_modules``: every linear
    layer but the head (``"all-linear"``), or module names (a list or comma-separated text, as
    ``RunConfig.lora_target_modules``; ``ValueError`` naming the allowed ones if the model has
    no such layer).

    The base weights are frozen; only the adapter trains. A second call adds another adapter
    under ``adapter_name`` to the same model.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=_target_modules(policy.model, target_modules),
        task_type="CAUSAL_LM",
        fan_in_fan_out=_is_conv1d_model(policy.model),
    )
    was_training = policy.model.training
    with _quiet_peft():
        if isinstance(policy.model, PeftModel):
            policy.model.add_adapter(adapter_name, config)
            policy.model.set_adapter(adapter_name)
        else:
            policy.model = get_peft_model(policy.model, config, adapter_name=adapter_name)
    policy.model.train(was_training)  # peft switches to train mode (dropout on); keep the caller's
    return policy


def _is_conv1d_model(model) -> bool:
    # GPT-2 stores its linear layers as Conv1D with transposed weights; peft needs to know.
    return getattr(model.config, "model_type", "") == "gpt2"


def save_adapter(policy: Policy, folder: Path, adapter_name: str = DEFAULT_ADAPTER) -> Path:
    """Save one adapter as a standard peft folder (adapter_config.json + safetensors)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    policy.model.save_pretrained(folder, selected_adapters=[adapter_name], safe_serialization=True)
    # peft writes non-default adapters into a subfolder named after them; flatten it.
    nested = folder / adapter_name
    if adapter_name != DEFAULT_ADAPTER and nested.is_dir():
        for item in nested.iterdir():
            item.replace(folder / item.name)
        nested.rmdir()
    return folder


def load_adapter(
    policy: Policy, folder: Path, adapter_name: str = DEFAULT_ADAPTER, trainable: bool = False
) -> Policy:
    """Load a saved adapter folder onto the policy (frozen unless ``trainable``)."""
    from peft import PeftModel

    folder = Path(folder)
    if not (folder / "adapter_config.json").exists():
        raise ValueError(f"not an adapter folder (no adapter_config.json): {folder}")
    with _quiet_peft():
        if isinstance(policy.model, PeftModel):
            policy.model.load_adapter(
                str(folder), adapter_name=adapter_name, is_trainable=trainable
            )
        else:
            policy.model = PeftModel.from_pretrained(
                policy.model, str(folder), adapter_name=adapter_name, is_trainable=trainable
            )
    # set_adapter makes the adapter trainable unless told otherwise
    policy.model.set_adapter(adapter_name, inference_mode=not trainable)
    policy.model.to(policy.device)
    return policy
