"""A lean decode step for plain float32 Llama models (SmolLM2), used by the sampler.

After the prompt's pass through the model's own forward, each new token runs the same tensor
operations as that forward, op for op (its logits are bit-identical), without the per-call
machinery of ``transformers`` (module calls, mask building, a ``torch.cat`` per layer to grow
the KV cache). At batch 1 on a CPU that machinery is about a sixth of a step; the rest is
reading the weights (``benchmarks/smollm2_generation.py``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


class DecodeCache:
    """Keys and values of every layer in buffers (L, B, kv heads, capacity, head dim).

    ``length`` positions are filled; a step writes the next one in place (the buffers double
    when full), where ``transformers``' dynamic cache concatenates a new tensor per layer.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, length: int):
        self.keys, self.values, self.length = keys, values, length

    def make_room(self) -> None:
        """Double the capacity when every position is filled."""
        if self.length < self.keys.shape[3]:
            return
        grown = list(self.keys.shape)
        grown[3] *= 2
        keys, values = self.keys.new_empty(grown), self.values.new_empty(grown)
        keys[:, :, :, : self.length] = self.keys
        values[:, :, :, : self.length] = self.values
        self.keys, self.values = keys, values

    def batch_repeat_interleave(self, repeats: int) -> None:
        """Repeat each row ``repeats`` times in place (as ``transformers``' caches do)."""
        self.keys = self.keys.repeat_interleave(repeats, dim=1)
        self.values = self.values.repeat_interleave(repeats, dim=1)


class LlamaDecodeStep:
    """One decode step (one new token per row) of a ``transformers`` Llama model.

    The operations are those of ``LlamaForCausalLM.forward`` with SDPA attention, in the same
    order on the same weights (so the logits are bit-identical, which a test checks), with
    three layout shortcuts that move no arithmetic: hidden states are (B, D) rather than
    (B, 1, D); queries and keys are rotated together, with ``roll(x) * [-sin, sin]`` for
    ``rotate_half(x) * sin`` (a sign flip is exact); keys and values are written into a
    :class:`DecodeCache`. Only plain models qualify (:meth:`applies`): float32, SDPA, SiLU,
    no biases, no adapters or hooks, eval mode; anything else keeps the model's forward.
    """

    @staticmethod
    def applies(model: torch.nn.Module) -> bool:
        """Whether ``model`` is a plain float32 Llama this step reproduces exactly."""
        try:
            from transformers.models.llama.modeling_llama import LlamaForCausalLM
        except ImportError:  # pragma: no cover - transformers is a dependency
            return False
        if type(model) is not LlamaForCausalLM or model.training:
            return False
        config = model.config
        if (
            config._attn_implementation != "sdpa"
            or config.hidden_act != "silu"
            or config.attention_bias
            or config.mlp_bias
            or getattr(config, "pretraining_tp", 1) != 1
            or model.dtype != torch.float32
        ):
            return False
        from torch.nn.modules import module as nn_module

        if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
            return False
        if any(sub._forward_hooks or sub._forward_pre_hooks for sub in model.modules()):
            return False
        layers = model.model.layers
        linears = [
            getattr(layer, part).get_submodule(name)
            for layer in layers
            for part, names in (
                ("self_attn", ("q_proj", "k_proj", "v_proj", "o_proj")),
                ("mlp", ("gate_proj", "up_proj", "down_proj")),
            )
            for name in names
        ]
        # a LoRA (or any other) adapter replaces an nn.Linear with its own module
        return len(layers) == config.num_hidden_layers and all(
            type(linear) is torch.nn.Linear for linear in [*linears, model.lm_head]
        )

    def __init__(self, model: torch.nn.Module):
        config = model.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.rotary = model.model.rotary_emb
        self.layers = [
            (
                layer.input_layernorm.weight,
                layer.input_layernorm.variance_epsilon,
                layer.self_attn.q_proj.weight,
                layer.self_attn.k_proj.weight,
                layer.self_attn.v_proj.weight,
                layer.self_attn.o_proj.weight,
                layer.self_attn.scaling,
                layer.post_attention_layernorm.weight,
                layer.post_attention_layernorm.variance_epsilon,
                layer.mlp.gate_proj.weight,
                layer.mlp.up_proj.weight,
                layer.mlp.down_proj.weight,
            )
            for layer in model.model.layers
        ]
        self.norm = (model.model.norm.weight, model.model.norm.variance_epsilon)
        self.embed = model.model.embed_tokens.weight
        self.lm_head = model.lm_head.weight

    def adopt(self, cache: Any, spare: int = 64) -> DecodeCache | None:
        """The prompt's ``transformers`` cache copied into a :class:`DecodeCache`, or None."""
        layers = getattr(cache, "layers", None)
        if layers is None or len(layers) != len(self.layers):
            return None
        keys = [getattr(layer, "keys", None) for layer in layers]
        values = [getattr(layer, "values", None) for layer in layers]
        if any(k is None or k.dim() != 4 for k in keys + values):
            return None
        batch, kv_heads, length, head_dim = keys[0].shape
        shape = (len(layers), batch, kv_heads, length + spare, head_dim)
        stacked = keys[0].new_empty(shape), values[0].new_empty(shape)
        for buffer, tensors in zip(stacked, (keys, values), strict=True):
            for index, tensor in enumerate(tensors):
                if tensor.shape != keys[0].shape:
                    return None
                buffer[index, :, :, :length] = tensor
        return DecodeCache(*stacked, length)

    def __call__(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        position_ids: torch.Tensor,
        cache: DecodeCache,
    ) -> torch.Tensor:
        """Logits (B, V) of the next token after ``input_ids`` (B, 1); fills one cache slot."""
        batch, width = input_ids.shape
        if width != 1 or attention_mask.shape[1] != cache.length + 1:
            raise ValueError(
                "LlamaDecodeStep takes one new token per row and a mask one longer than the "
                f"cache ({cache.length}); got input_ids {tuple(input_ids.shape)}, "
                f"attention_mask {tuple(attention_mask.shape)}"
            )
        heads, kv_heads, head_dim = self.heads, self.kv_heads, self.head_dim
        half, queries = head_dim // 2, heads * head_dim
        cache.make_room()
        at, seen = cache.length, cache.length + 1
        hidden = F.embedding(input_ids[:, 0], self.embed)  # (B, D)
        cos, sin = self.rotary(hidden, position_ids)  # (B, 1, head dim)
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        # what transformers' mask building gives one query: none without padding, else the row
        mask = None if bool(attention_mask.all()) else attention_mask[:, None, None, :].bool()
        rotated = hidden.new_empty((batch, queries + kv_heads * head_dim))
        for index, (
            norm1,
            eps1,
            w_q,
            w_k,
            w_v,
            w_o,
            scale,
            norm2,
            eps2,
            w_gate,
            w_up,
            w_down,
        ) in enumerate(self.layers):
            x = norm1 * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps1))
            torch.mm(x, w_q.t(), out=rotated[:, :queries])
            torch.mm(x, w_k.t(), out=rotated[:, queries:])
            value = F.linear(x, w_v)  # (B, kv heads * head dim)
            qk = rotated.view(batch, heads + kv_heads, head_dim)
            qk = qk * cos + qk.roll(half, -1) * sin
            keys, values = cache.keys[index], cache.values[index]  # (B, kv heads, capacity, hd)
            keys[:, :, at] = qk[:, heads:]
            values[:, :, at] = value.view(batch, kv_heads, head_dim)
            keys, values = keys[:, :, :seen], values[:, :, :seen]
            if mask is None:
                query = qk[:, :heads, None]  # (B, heads, 1, head dim)
                attended = F.scaled_dot_product_attention(
                    query, keys, values, scale=scale, enable_gqa=True
                )
            else:  # heads sharing a key/value head as its queries, as transformers packs them
                query = qk[:, :heads].reshape(batch, kv_heads, heads // kv_heads, head_dim)
                attended = F.scaled_dot_product_attention(
                    query, keys, values, attn_mask=mask, scale=scale
                )
            hidden = hidden + F.linear(attended.reshape(batch, queries), w_o)
            x = norm2 * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps2))
            hidden = hidden + F.linear(F.silu(F.linear(x, w_gate)) * F.linear(x, w_up), w_down)
        cache.length = seen
        norm, eps = self.norm
        x = norm * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps))
        return F.linear(x, self.lm_head)  # (B, V)
