"""Hidden-state fusion of frozen experts, shared by EMORL (D3) and the meta-policy (E).

Both methods run K per-objective experts (LoRA adapters of one base model) side by side and mix
their hidden states before the base model's shared LM head. Two levels are offered:

- ``"final"`` (the default, as in the EMORL authors' code): the *last* hidden states, after the
  final layer norm::

      h_t = sum_i a_{t,i} h_{t,i}          logits_t = lm_head(h_t)

  The LM head is linear and bias-free (LoRA never adapts it), so
  ``logits_t = sum_i a_{t,i} lm_head(h_{t,i})``: a weighted sum of the experts' own logits, i.e.
  the geometric mixture ``prod_i pi_i^{a_i}`` renormalised. With coefficients fixed per
  preference that is exactly MOD (D2) with weights ``a / sum(a)`` at temperature ``1 / sum(a)``.
- ``"pre_norm"``: the residual streams *before* the final layer norm, normalised after mixing::

      g_t = sum_i a_{t,i} g_{t,i}          logits_t = lm_head(final_norm(g_t))

  The layer norm divides by the mixed vector's own scale, so this is not a mixture of the
  experts' logits (and the overall scale of a no longer acts as a temperature): a genuinely
  non-linear aggregation level.

EMORL fixes a per preference (grid search); the meta-policy computes it per token with a small
network. :class:`HiddenFusion` is a model with the interface the sampler and
:class:`~morl_core.rl.trainer.RLTrainer` use (``forward`` with a cache, ``config``,
``disable_adapter``); its cache is the K experts' caches, its cost K passes per token.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from types import SimpleNamespace

import torch
from torch import nn

from morl_core.policy import Policy
from morl_core.policy.sampling import distinct_rows, select_cache_rows

MIX_LEVELS = ("final", "pre_norm")  # after the final layer norm, or before it
# Attribute names of the final layer norm on a decoder (GPT-2, Llama/Qwen/SmolLM, OPT, Mamba).
FINAL_NORMS = ("ln_f", "norm", "final_layer_norm", "norm_f")


def final_norm(model) -> nn.Module:
    """The final layer norm of a (peft-wrapped) causal LM: the module ``pre_norm`` mixing skips.

    Raises:
        ValueError: the decoder has none of the usual names (:data:`FINAL_NORMS`).
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    decoder = getattr(base, "base_model", base)
    for attribute in FINAL_NORMS:
        module = getattr(decoder, attribute, None)
        if isinstance(module, nn.Module):
            return module
    raise ValueError(
        f"mix_at='pre_norm': cannot find the final layer norm of {type(base).__name__} "
        f"(looked for {', '.join(FINAL_NORMS)}); use mix_at='final'"
    )


def expert_hidden(
    model,
    name: str,
    input_ids,
    attention_mask,
    position_ids,
    cache,
    use_cache,
    norm: nn.Module | None = None,
):
    """Hidden states (B, T, D) of adapter ``name`` of a peft model, and its new cache: the last
    ones (after the final layer norm), or with ``norm`` (that module) the input of that norm."""
    model.set_adapter(name, inference_mode=True)  # frozen: set_adapter would make it trainable
    captured = []
    hook = (
        norm.register_forward_hook(lambda m, args, out: captured.append(args[0]))
        if norm is not None
        else None
    )
    try:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=use_cache,
            output_hidden_states=norm is None,
            logits_to_keep=1,  # the experts' own logits are not needed
        )
    finally:
        if hook is not None:
            hook.remove()
    if norm is None:
        return out.hidden_states[-1], out.cache
    if len(captured) != 1:
        raise RuntimeError(f"the final layer norm ran {len(captured)} times in one forward pass")
    return captured[0], out.cache


class FixedMixer(nn.Module):
    """EMORL's mixer: coefficients a (K,) for every row, or (B, K) one row each (batched search)."""

    def __init__(self, k: int):
        super().__init__()
        self.weights = torch.full((k,), 1.0 / k)

    def active(self) -> list[int]:
        """Experts with a non-zero coefficient in some row (the others are not run)."""
        w = self.weights.reshape(-1, self.weights.shape[-1])
        used = [i for i in range(w.shape[-1]) if bool((w[:, i] != 0).any())]
        return used or [0]  # all zero: h = 0 either way, but one pass keeps the shapes

    def forward(self, hidden: torch.Tensor, experts: list[int]) -> torch.Tensor:
        # hidden (B, T, K', D) for the experts in ``experts``
        w = self.weights.to(hidden.device, hidden.dtype)[..., experts]  # (K',) or (B, K')
        w = w[None, None, :] if w.ndim == 1 else w[:, None, :]  # (1|B, 1, K')
        return (w[..., None] * hidden).sum(-2)  # (B, T, D)


class HiddenFusion(nn.Module):
    """A causal LM whose hidden state mixes K frozen experts (adapters of ``model``, in
    objective order) at ``level`` (:data:`MIX_LEVELS`).

    ``mixer(hidden (B, T, K', D), experts) -> (B, T, D)`` may be trainable and may define
    ``active() -> list[int]`` to skip experts.
    """

    def __init__(self, model, experts: Sequence[str], mixer: nn.Module, level: str = "final"):
        super().__init__()
        if level not in MIX_LEVELS:
            raise ValueError(f"mix_at must be one of {', '.join(MIX_LEVELS)}, got {level!r}")
        self.model = model
        self.experts = list(experts)
        self.mixer = mixer
        self.level = level
        # kept out of the module tree: the norm belongs to ``model`` (no duplicate parameters)
        self._norm = (final_norm(model),) if level == "pre_norm" else ()
        self._reference = False
        self.eval()  # never dropout: rollouts restore the mode they found, so it must start off

    @property
    def config(self):
        return self.model.config

    @contextlib.contextmanager
    def disable_adapter(self):
        """The KL reference of RL: the mixer's own reference when it has one (the meta-policy's
        untrained mixing), else the plain base model."""
        if hasattr(self.mixer, "reference"):
            with self.mixer.reference():
                yield
            return
        self._reference = True
        try:
            with self.model.disable_adapter():
                yield
        finally:
            self._reference = False

    def hidden_states(
        self, input_ids, attention_mask, position_ids=None, cache=None, use_cache=False
    ):
        """The active experts' hidden states (B, T, K', D) at ``level``, indices, new caches.

        A prompt pass (no cache yet, one wanted) runs each expert once per distinct prompt row
        (Steer's samples of one prompt share it) and copies the states and caches back to every
        row; the mixer still sees every row, so per-row coefficients stay per row.
        """
        if position_ids is None:
            position_ids = (attention_mask.cumsum(-1) - 1).clamp(min=0)[:, -input_ids.shape[1] :]
        prompt_pass = cache is None and use_cache
        groups = distinct_rows(input_ids, attention_mask, position_ids) if prompt_pass else None
        if groups is not None:
            first, inverse = (torch.tensor(g, device=input_ids.device) for g in groups)
            hidden, active, caches = self.expert_states(
                input_ids[first], attention_mask[first], position_ids[first], None, True
            )
            if all(select_cache_rows(caches[i], inverse) for i in active):
                return hidden[inverse], active, caches
        return self.expert_states(input_ids, attention_mask, position_ids, cache, use_cache)

    def expert_states(self, input_ids, attention_mask, position_ids, cache, use_cache):
        """:meth:`hidden_states` with one pass per row, whatever the rows."""
        active = list(getattr(self.mixer, "active", lambda: range(len(self.experts)))())
        caches = list(cache) if cache is not None else [None] * len(self.experts)
        states = []
        with torch.no_grad():  # the experts are frozen: no graph through K transformer passes
            for i in active:
                inputs = (input_ids, attention_mask, position_ids, caches[i], use_cache)
                norm = self._norm[0] if self._norm else None
                h, caches[i] = expert_hidden(self.model, self.experts[i], *inputs, norm=norm)
                states.append(h)
        return torch.stack(states, dim=-2), active, caches  # (B, T, K', D)

    def forward(
        self,
        input_ids,
        attention_mask,
        position_ids=None,
        cache=None,
        use_cache: bool = False,
        logits_to_keep: int = 0,
        **kw,
    ):
        if self._reference:
            return self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=use_cache,
                logits_to_keep=logits_to_keep,
                **kw,
            )
        hidden, active, caches = self.hidden_states(
            input_ids, attention_mask, position_ids, cache, use_cache
        )
        mixed = self.mixer(hidden, active)  # (B, T, D)
        if logits_to_keep:
            mixed = mixed[:, -logits_to_keep:]
        if self._norm:  # pre_norm: the shared final norm sees the mixed residual stream
            mixed = self._norm[0](mixed)
        logits = self.model.get_output_embeddings()(mixed)  # (B, T, V), the shared LM head
        return SimpleNamespace(logits=logits, cache=caches if use_cache else None)


def fused_policy(policy: Policy, fusion: HiddenFusion) -> Policy:
    """A :class:`Policy` that decodes with ``fusion`` (same tokenizer and device)."""
    return dataclasses.replace(policy, model=fusion)
