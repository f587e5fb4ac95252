"""D2. MOD: mix the experts' next-token distributions at decoding time.

Reference: Shi et al., "Decoding-Time Language Model Alignment with Multiple Objectives"
(NeurIPS 2024, arXiv 2406.18853).

With experts pi_i trained on objective i (KL-regularised to one base), the policy for w is

    log pi_w(y_t | x, y_<t) = sum_i w_i log pi_i(y_t | x, y_<t) - log Z

which is the optimum of the w-weighted KL-regularised objective (the paper's closed form).
No training beyond the experts, any w at inference, but K forward passes (K KV caches) per token.
Identical prompts in one batch (the Steer page's samples of one prompt) share each expert's
prompt pass (:func:`~morl_core.policy.sampling.share_identical_prompts`): K prompt passes per
distinct prompt rather than per reply, the same tokens for the same seed.
On SmolLM2 each expert's one-token steps go through the lean Llama decode step, the adapter
switched before each expert's pass (:func:`expert_logprobs`): the same logits as the model's
forward, bit for bit for several rows (``tests/test_mod_lean.py``), and ``benchmarks/mod_decoding.py`` times both.

This is the *geometric* mixture (a token must be likely under every weighted expert); ``pmix``
(:mod:`~morl_core.methods.mixture`) takes the arithmetic one, and EMORL's default hidden-state
mixing is exactly this one at temperature 1 / sum(a) (:mod:`~morl_core.methods.hidden`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.experts import load_aggregation, train_aggregation
from morl_core.policy.sampling import hf_next_token, share_identical_prompts
from morl_core.weights import check_weights


def quick_adapter_switch(model, experts: list[str]):
    """A function ``name -> None`` that leaves ``model`` as ``model.set_adapter(name,
    inference_mode=True)`` would, for a peft model on which that was just done for every expert
    (all adapters frozen); None where the shortcut would not be exact.

    peft's ``set_adapter`` walks every module and freezes every adapter weight again: 17 ms of
    CPU on SmolLM2 with LoRA on its 210 linear layers, a third of a lean decode step, for each
    expert at each token. With every adapter already frozen, all it changes is which adapter the
    model, its tuner and each adapter layer call active, which this writes directly. Not exact
    (None) with a merged layer, an auxiliary wrapper (``modules_to_save``, trainable tokens), a
    prompt-learning adapter or an adapter weight left trainable.
    """
    from peft import PeftModel
    from peft.tuners.tuners_utils import BaseTunerLayer
    from peft.utils.other import AuxiliaryTrainingWrapper

    if not isinstance(model, PeftModel) or any(
        model.peft_config[name].is_prompt_learning for name in experts
    ):
        return None
    modules = list(model.modules())
    if any(isinstance(module, AuxiliaryTrainingWrapper) for module in modules):
        return None
    layers = [module for module in modules if isinstance(module, BaseTunerLayer)]
    for layer in layers:
        adapters = [getattr(layer, name) for name in layer.adapter_layer_names]
        if layer.merged or any(
            param.requires_grad
            for by_name in adapters
            for adapter in by_name.values()
            for param in adapter.parameters()
        ):
            return None

    def switch(name: str) -> None:
        model.active_adapter = name  # PeftModel.set_adapter
        model.base_model.active_adapter = name  # its tuner's set_adapter
        for layer in layers:
            layer._active_adapter = [name]  # each layer's set_adapter, less the freezing

    return switch


def expert_logprobs(model, experts: list[str], lean: bool = True):
    """The function ``(input_ids, attention_mask, position_ids, caches) -> (logps, caches)``
    giving each expert's next-token log-probabilities (B, K, V) in fp32 and the K new caches.

    The next-token functions of MOD (geometric mixture) and PMIX (arithmetic mixture) both
    start here: one pass per expert adapter, each with its own cache, through the policy's own
    next-token function (:func:`~morl_core.policy.sampling.hf_next_token`). With ``lean``, on a
    float32 Llama (SmolLM2) its one-token steps take the lean decode step, which reads the
    active adapter at every step, so switching the adapter before each expert's pass is all it
    needs (the same logits, bit for bit); after each reply's prompt passes the adapter switches
    take :func:`quick_adapter_switch` where it is exact. Any other model runs its forward;
    ``lean=False`` runs the forward and peft's ``set_adapter`` at every pass (the reference).
    """
    # one next-token function per expert: each remembers the lean step of its own reply
    next_tokens = [hf_next_token(model, lean=lean) for _ in experts]
    switch = None  # the quick adapter switch of the reply under way

    def set_adapter(name: str) -> None:
        model.set_adapter(name, inference_mode=True)  # frozen: set_adapter would train it

    def forward(input_ids, attention_mask, position_ids, caches):
        nonlocal switch
        if caches is None:  # a new reply: peft's own set_adapter for each prompt pass
            switch, caches = None, [None] * len(experts)
        logps, new_caches = [], []
        for name, next_token, cache in zip(experts, next_tokens, caches, strict=True):
            (switch or set_adapter)(name)
            logits, cache = next_token(input_ids, attention_mask, position_ids, cache)  # (B, V)
            logps.append(torch.log_softmax(logits, dim=-1))
            new_caches.append(cache)
        if lean and switch is None:
            switch = quick_adapter_switch(model, experts)
        return torch.stack(logps, dim=1), new_caches  # (B, K, V)

    return forward


def mixed_next_token(model, experts: list[str], weights: list[float], lean: bool = True):
    """Next-token function: sum_i w_i log_softmax(logits_i), one cache per expert."""
    w = torch.tensor(weights, dtype=torch.float32)
    per_expert = expert_logprobs(model, experts, lean)

    def forward(input_ids, attention_mask, position_ids, caches):
        logps, new_caches = per_expert(input_ids, attention_mask, position_ids, caches)  # (B, K, V)
        return (w.to(logps.device)[None, :, None] * logps).sum(1), new_caches

    return forward


class Mod:
    """Steerable that decodes with the weighted mixture of the experts' log-probabilities."""

    mix = staticmethod(mixed_next_token)  # (model, experts, weights, lean) -> next-token function

    def __init__(
        self,
        policy,
        objectives: tuple[str, ...],
        experts: list[str],
        lean: bool = True,
        share_prompts: bool = True,
    ):
        self.policy = policy
        self.objectives = tuple(objectives)
        self.experts = experts
        self.lean = lean  # False: every pass through the model's forward (the slower reference)
        # False: each row's own prompt passes, identical prompts too (the slower reference)
        self.share_prompts = share_prompts
        self.models_kept = len(experts)
        self.passes_per_token = len(experts)

    def next_token(self, weights):
        """The next-token function for preference ``weights`` (zero-weight experts left out);
        identical prompt rows share their prompt passes unless ``share_prompts`` is off."""
        w = check_weights(weights, k=len(self.objectives))
        used = [(name, float(x)) for name, x in zip(self.experts, w, strict=True) if x > 0]
        mixed = self.mix(
            self.policy.model, [n for n, _ in used], [x for _, x in used], lean=self.lean
        )
        return share_identical_prompts(mixed) if self.share_prompts else mixed

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        return self.policy.generate(list(prompts), next_token=self.next_token(weights), **gen)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    train_aggregation(config, run_dir, callback, Mod)


def load(run_dir: Path, device: str = "auto") -> Mod:
    return load_aggregation(run_dir, device, Mod)
