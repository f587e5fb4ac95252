"""LoRA adapters through peft, saved and loaded as standard adapter folders."""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path

from morl_core.policy.model import Policy

DEFAULT_ADAPTER = "default"


@contextlib.contextmanager
def _quiet_peft():
    """Silence peft's use of a deprecated transformers name (gradient checkpointing query)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning
        )
        yield


def attach_lora(
    policy: Policy,
    r: int = 8,
    alpha: int = 32,
    dropout: float = 0.0,
    adapter_name: str = DEFAULT_ADAPTER,
    target_modules: str | list[str] = "all-linear",
) -> Policy:
    """Wrap the policy's model with a fresh LoRA adapter (on all linear layers by default).

    The base weights are frozen; only the adapter trains. A second call adds another adapter
    under ``adapter_name`` to the same model.
    """
    from peft import LoraConfig, PeftModel, get_peft_model

    config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=target_modules,
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
