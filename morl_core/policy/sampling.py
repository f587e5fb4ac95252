"""Batched, seedable sampling with the KV cache, over any next-token function.

The loop is written once and reused: a plain policy passes its model's forward; MOD passes a
mix of several models' log-probabilities; EMORL passes a mix of hidden states through one LM
head. Each gets greedy, temperature and top-p decoding, EOS handling and left padding for free.

A plain float32 Llama model (SmolLM2) decodes through :class:`LlamaDecodeStep`: after the
prompt's pass through the model's own forward, each new token runs the same tensor operations
as that forward, op for op (its logits are bit-identical), without the per-call machinery of
``transformers`` (module calls, mask building, a ``torch.cat`` per layer to grow the KV cache).
At batch 1 on a CPU that machinery is about a sixth of a step; the rest is reading the weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

# forward(input_ids (B, T), attention_mask (B, S), position_ids (B, T), cache) -> (logits (B, V), cache)
NextToken = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]
# on_step(tokens (B,), live (B,)) after each step: a rollout's next column, as it is chosen
OnStep = Callable[[torch.Tensor, torch.Tensor], None]
# on_logprobs(tokens (B,), live (B,), logprobs (B,)): the column and log pi of each chosen token
OnLogprobs = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None]


@dataclass
class Rollout:
    """Prompts and the completions sampled for them (one row per completion)."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P) 1 = real token
    completion_ids: torch.Tensor  # (B, T) right-padded
    completion_mask: torch.Tensor  # (B, T) 1 = generated token (the EOS that ends it included)

    @property
    def input_ids(self) -> torch.Tensor:  # (B, P + T)
        return torch.cat([self.prompt_ids, self.completion_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:  # (B, P + T)
        return torch.cat([self.prompt_mask, self.completion_mask], dim=1)


def hf_next_token(model: torch.nn.Module) -> NextToken:
    """The next-token function of a Hugging Face causal LM (logits in fp32).

    A model :meth:`LlamaDecodeStep.applies` to decodes its one-token steps through it (same
    logits, bit for bit); any other model, and every multi-token call, goes through its forward.
    """
    decode_step = LlamaDecodeStep(model) if LlamaDecodeStep.applies(model) else None

    def forward(input_ids, attention_mask, position_ids, cache):
        if isinstance(cache, DecodeCache):
            return decode_step(input_ids, attention_mask, position_ids, cache), cache
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        )
        cache = out.cache
        if decode_step is not None and cache is not None and not torch.is_grad_enabled():
            cache = decode_step.adopt(cache) or cache
        return out.logits[:, -1, :].float(), cache

    return forward


# --- a lean decode step for Llama models ---


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


def filter_top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Mask (to -inf) the tokens outside the smallest set whose probability reaches ``top_p``."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
    probs = torch.softmax(sorted_logits, dim=-1)
    # drop a token when the mass before it already reaches top_p (the first token always stays)
    drop_sorted = (torch.cumsum(probs, dim=-1) - probs) >= top_p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def draw(weights: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One column index per row, drawn with probability proportional to ``weights`` (B, k).

    Inverse-CDF sampling (one uniform per row): on CPU it is several times faster than
    ``torch.multinomial`` over a large vocabulary, and zero-weight columns are never drawn.
    """
    cdf = torch.cumsum(weights, dim=-1, dtype=torch.float64)  # (B, k)
    total = cdf[:, -1:]
    if not bool(torch.all(torch.isfinite(total) & (total > 0))):
        raise ValueError("cannot sample: a row of logits has no finite, positive probability")
    uniform = torch.rand(total.shape, generator=generator, dtype=torch.float64, device=cdf.device)
    index = torch.searchsorted(cdf, uniform * total, right=True)
    return index.clamp_(max=weights.shape[-1] - 1).squeeze(-1)


def next_from_logits(
    logits: torch.Tensor,
    *,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Next token ids (B,) from logits (B, V): argmax, or a temperature / top-p sample.

    ``temperature == 0`` is greedy decoding.
    """
    if greedy or temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    if top_p >= 1.0:
        return draw(probs, generator)
    return sample_top_p(probs, top_p, generator)


def sample_top_p(
    probs: torch.Tensor, top_p: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One token id per row (B,) from the top-p nucleus of ``probs`` (B, V), without sorting.

    Rejection sampling: draw from the row, accept the token when the tokens more probable than
    it hold less than ``top_p`` of the mass (it is in the nucleus), else drop it and every token
    no more probable (none of them is in the nucleus either) and draw again. Accepted tokens
    follow the renormalised nucleus exactly, as after :func:`filter_top_p`; the first draw is
    accepted with probability about ``top_p``, so this costs a few passes over the vocabulary
    where a sort costs ~10x more on one CPU thread.
    """
    tokens = draw(probs, generator)  # (B,)
    # the rows still drawing: their index, probabilities, remaining weights and latest draw
    pending, rows, weights, drawn = None, probs, probs, tokens
    while True:
        more_probable = rows > rows.gather(-1, drawn[:, None])  # (b, V)
        rejected = (rows * more_probable).sum(-1) >= top_p  # (b,)
        if not bool(rejected.any()):
            return tokens
        pending = rejected.nonzero().squeeze(1) if pending is None else pending[rejected]
        rows, weights = rows[rejected], weights[rejected] * more_probable[rejected]
        drawn = draw(weights, generator)
        tokens[pending] = drawn


def check_sampling(max_new_tokens: int, temperature: float, top_p: float) -> None:
    """Raise ``ValueError`` for settings outside their ranges."""
    problems = []
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 0
    ):
        problems.append(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not (isinstance(temperature, int | float) and 0 <= temperature < float("inf")):
        problems.append(f"temperature must be a number >= 0 (0 = greedy), got {temperature!r}")
    if not (isinstance(top_p, int | float) and 0 < top_p <= 1):
        problems.append(f"top_p must be in (0, 1], got {top_p!r}")
    if problems:
        raise ValueError("; ".join(problems))


@torch.no_grad()
def sample(
    next_token: NextToken,
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    *,
    max_new_tokens: int,
    eos_id: int,
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    greedy: bool = False,
    generator: torch.Generator | None = None,
    on_step: OnStep | None = None,
    on_logprobs: OnLogprobs | None = None,
    forced: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> Rollout:
    """Decode up to ``max_new_tokens`` per row; a row stops at its first EOS.

    The completion mask is 1 where the row was still generating (its token counts; the EOS
    that ends a row included) and 0 where the row had already ended (its token is ``pad_id``).
    The loop stops when every row has ended, or after ``max_new_tokens`` steps. ``on_step``
    sees each column of the completion and its mask as it is chosen (what streams a reply to a
    page); it draws nothing from ``generator``, so the rollout is the same with or without it.
    ``on_logprobs`` sees the same column plus the log-probability of each chosen token under the
    untruncated, temperature-scaled distribution ``log_softmax(logits / temperature)`` of the
    ``next_token`` function (whatever it mixes or conditions on), 0 where the row had ended:
    what the evaluation's KL to the base model sums. It draws nothing either, and is never
    called when decoding greedily (a greedy reply has no finite log-probability).
    ``forced`` = (ids (B, T), mask (B, T), right-padded) teacher-forces given completions
    through the same loop instead of drawing (nothing is drawn; a row ends where its mask
    does): ``on_logprobs`` then scores replies written elsewhere under this distribution.
    ``ValueError`` on a setting out of range (:func:`check_sampling`).
    """
    check_sampling(max_new_tokens, temperature, top_p)
    batch, width = prompt_ids.shape
    device = prompt_ids.device
    # the attention mask of every step is a prefix (a view) of this one buffer
    full_mask = torch.ones((batch, width + max_new_tokens), dtype=prompt_mask.dtype, device=device)
    full_mask[:, :width] = prompt_mask
    positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, step_pos, cache = prompt_ids, positions, None
    alive = torch.ones(batch, dtype=torch.bool, device=device)
    tokens, live = [], []
    for step in range(max_new_tokens):
        mask = full_mask[:, : width + step]
        if forced is not None:  # a row ends where its given completion does
            if step == forced[0].shape[1]:
                break
            alive = alive & forced[1][:, step].bool()
            if not alive.any():
                break
        logits, cache = next_token(step_ids, mask, step_pos, cache)  # (B, V)
        if forced is None:
            nxt = next_from_logits(
                logits, temperature=temperature, top_p=top_p, greedy=greedy, generator=generator
            )
        else:
            nxt = forced[0][:, step]
        nxt = torch.where(alive, nxt, torch.full_like(nxt, pad_id))
        tokens.append(nxt)
        live.append(alive.long())
        if on_step is not None:
            on_step(nxt, live[-1])
        if on_logprobs is not None and not (greedy or temperature == 0):
            logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, V)
            chosen = logp.gather(-1, nxt[:, None]).squeeze(-1)  # (B,)
            on_logprobs(nxt, live[-1], torch.where(alive, chosen, torch.zeros_like(chosen)))
        alive = alive & (nxt != eos_id)
        step_ids = nxt[:, None]
        step_pos = step_pos[:, -1:] + 1
        if not alive.any():
            break
    if not tokens:
        empty = prompt_ids.new_zeros((batch, 0))
        return Rollout(prompt_ids, prompt_mask, empty, prompt_mask.new_zeros((batch, 0)))
    # (B, T) tokens and their mask
    return Rollout(prompt_ids, prompt_mask, torch.stack(tokens, 1), torch.stack(live, 1))
