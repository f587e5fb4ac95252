"""Base models as policies: loading (embedded or any HF causal LM), sampling, LoRA, devices."""

from morl_core.policy.device import resolve_device, resolve_dtype, set_threads
from morl_core.policy.lora import attach_lora, load_adapter, save_adapter
from morl_core.policy.model import EMBEDDED, Policy, check_prompts, embedded_model_path, load_policy

__all__ = [
    "EMBEDDED",
    "Policy",
    "attach_lora",
    "check_prompts",
    "embedded_model_path",
    "load_adapter",
    "load_policy",
    "resolve_device",
    "resolve_dtype",
    "save_adapter",
    "set_threads",
]
