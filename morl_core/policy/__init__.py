"""Base models as policies: the model registry, loading, chat prompts, sampling, LoRA, devices."""

from morl_core.policy.device import resolve_device, resolve_dtype, set_threads
from morl_core.policy.lora import attach_lora, load_adapter, save_adapter
from morl_core.policy.model import EMBEDDED, Policy, check_prompts, embedded_model_path, load_policy
from morl_core.policy.registry import MODELS, describe_models, resolve_model

__all__ = [
    "EMBEDDED",
    "MODELS",
    "Policy",
    "attach_lora",
    "check_prompts",
    "describe_models",
    "embedded_model_path",
    "load_adapter",
    "load_policy",
    "resolve_device",
    "resolve_dtype",
    "resolve_model",
    "save_adapter",
    "set_threads",
]
