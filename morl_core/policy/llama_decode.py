"""A lean decode step for float32 Llama models (SmolLM2), plain or with LoRA adapters.

After the prompt's pass through the model's own forward, each new token runs the same tensor
operations as that forward, op for op (its logits are bit-identical), without the per-call
machinery of ``transformers`` and ``peft`` (module calls, mask building, a ``torch.cat`` per layer
to grow the KV cache). At batch 1 on a CPU that machinery is about a sixth of a step; the rest is
reading the weights, which a one-row reply does from an input-major copy of them, faster
(:class:`PackedWeights`; its logits then equal the forward's to float32 rounding, not bit for
bit). ``benchmarks/smollm2_generation.py`` measures both.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
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

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        """Keep the rows ``indices`` (B,) in place, in that order, repeats allowed (as
        ``transformers``' caches do)."""
        self.keys = self.keys.index_select(1, indices)
        self.values = self.values.index_select(1, indices)


# one LoRA term of a projection: (lora_A weight (r, in), lora_B weight (out, r), scaling)
LoraTerm = tuple[torch.Tensor, torch.Tensor, float]
PROJECTIONS = (
    ("self_attn", "q_proj"),
    ("self_attn", "k_proj"),
    ("self_attn", "v_proj"),
    ("self_attn", "o_proj"),
    ("mlp", "gate_proj"),
    ("mlp", "up_proj"),
    ("mlp", "down_proj"),
)


def unwrap_llama(model: torch.nn.Module) -> torch.nn.Module | None:
    """The ``LlamaForCausalLM`` that ``model`` is, or that a peft LoRA model wraps, else None."""
    from transformers.models.llama.modeling_llama import LlamaForCausalLM

    if type(model) is LlamaForCausalLM:
        return model
    try:
        from peft import LoraConfig, PeftModel, PeftModelForCausalLM
        from peft.tuners.lora import LoraModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return None
    if type(model) not in (PeftModel, PeftModelForCausalLM):
        return None
    if type(model.base_model) is not LoraModel or not all(
        type(config) is LoraConfig for config in model.peft_config.values()
    ):
        return None
    inner = model.base_model.model
    return inner if type(inner) is LlamaForCausalLM else None


def plain_lora(module: torch.nn.Module) -> bool:
    """Whether ``module`` is a peft LoRA ``Linear`` whose forward is ``base(x)`` plus, for each
    active adapter in order, ``lora_B(lora_A(dropout(x))) * scaling``: float32 adapters, no
    bias, no variant (DoRA, aLoRA), not merged into the base weight. Every adapter it holds is
    checked, not only the active ones, so switching adapters between steps stays exact."""
    from peft.tuners.lora.layer import Linear as LoraLinear

    if type(module) is not LoraLinear or module.merged or module.fan_in_fan_out:
        return False
    base = module.base_layer
    if type(base) is not torch.nn.Linear or base.bias is not None:
        return False
    for name, lora_a in module.lora_A.items():
        lora_b = module.lora_B[name]
        if (
            name in module.lora_variant
            or type(lora_a) is not torch.nn.Linear
            or type(lora_b) is not torch.nn.Linear
            or lora_a.bias is not None
            or lora_b.bias is not None
            or type(module.lora_dropout[name]) not in (torch.nn.Identity, torch.nn.Dropout)
        ):
            return False
    return True


def base_weight(linear: torch.nn.Module) -> torch.Tensor:
    """The weight (out, in) of a plain ``nn.Linear``, or of the base layer a LoRA layer wraps."""
    return linear.weight if type(linear) is torch.nn.Linear else linear.base_layer.weight


# a LoRA layer as the step reads it: (the layer, its lora_A and lora_B modules by adapter name,
# its scaling by adapter name); peft adds and removes adapters in these same dicts
LoraLayerView = tuple[torch.nn.Module, dict, dict, dict]


def lora_view(module: torch.nn.Module) -> LoraLayerView | None:
    """What :func:`lora_terms` reads of a LoRA layer (None for a plain ``nn.Linear``)."""
    if type(module) is torch.nn.Linear:
        return None
    return module, module.lora_A._modules, module.lora_B._modules, module.scaling


def lora_terms(view: LoraLayerView | None) -> tuple[LoraTerm, ...]:
    """The terms a LoRA layer adds to its base output now: none for a plain ``nn.Linear`` or
    adapters switched off, else (A, B, scaling) of each active adapter it holds, in order.

    Reads the dicts directly rather than through module attributes: with LoRA on all 210
    linear layers of SmolLM2 that costs a fifth of the time (0.3 ms a token instead of 1.6 on
    a loaded core).
    """
    if view is None:
        return ()
    module, lora_a, lora_b, scaling = view
    if module.disable_adapters:
        return ()
    active = module.active_adapter
    names = (active,) if isinstance(active, str) else active
    return tuple(
        (lora_a[name]._parameters["weight"], lora_b[name]._parameters["weight"], scaling[name])
        for name in names
        if name in lora_a
    )


def add_lora(result: torch.Tensor, x: torch.Tensor, terms: tuple[LoraTerm, ...]) -> torch.Tensor:
    """``result`` plus each term's ``lora_B(lora_A(x)) * scaling``, in order, in place: the
    arithmetic of peft's ``lora.Linear.forward`` (eval mode, so dropout is the identity)."""
    for lora_a, lora_b, scaling in terms:
        result.add_(F.linear(F.linear(x, lora_a), lora_b) * scaling)
    return result


@contextlib.contextmanager
def lean_lora_forwards(layers: list[torch.nn.Module]) -> Iterator[None]:
    """Within: each of ``layers`` (:func:`plain_lora` layers, e.g. from
    :meth:`LlamaDecodeStep.lora_layers`) computes ``base(x)`` plus its active adapters' terms
    through :func:`add_lora` (peft's arithmetic, bit for bit) without peft's per-call
    bookkeeping. For a no-grad prompt pass: with LoRA on SmolLM2's 210 projections, a 43-token
    pass took 203-209 ms instead of 218-227 on a shared core. The layers' own forwards come back
    on leaving, even after an error."""
    patched = [layer for layer in layers if "forward" not in layer.__dict__]
    try:
        for layer in patched:  # the instance's dict, not setattr: nn.Module's costs ~10 us
            layer.__dict__["forward"] = _lean_lora_forward(layer)
        yield
    finally:
        for layer in patched:
            layer.__dict__.pop("forward", None)


def _lean_lora_forward(module: torch.nn.Module):
    view, weight = lora_view(module), module.base_layer.weight

    def forward(x: torch.Tensor) -> torch.Tensor:
        return add_lora(F.linear(x, weight), x, lora_terms(view))

    return forward


class PackedWeights:
    """The base projection weights of a Llama model, input-major, for one-row decode steps.

    Each weight of the model is ``(out, in)``; the copy holds its transpose made contiguous, so
    that a step computes ``x @ W_t``. At batch 1 on a CPU that reads the weights faster than
    ``F.linear(x, W)`` (SmolLM2's matmuls took 43 ms a token instead of 48); at 2 or 3 rows it
    was slower (51 ms against 44), so steps of several rows read the model's own weights.

    It is a copy, made at the first one-row reply: it costs the projections' memory once more
    (538 MB for SmolLM2 in float32) for as long as the model lives, so a model whose projections
    pass ``PACK_LIMIT_BYTES`` (2 GiB) decodes one row on its own weights too. :func:`packed_weights` keeps one
    per model and packs it again when a weight changed (another tensor, or one written in place).
    """

    def __init__(self, sources: list[torch.Tensor]):
        self.sources = [(weight, weight._version, weight.data_ptr()) for weight in sources]
        with torch.no_grad():
            self.matrices = [weight.t().contiguous() for weight in sources]

    def fresh(self, sources: list[torch.Tensor]) -> bool:
        """Whether these are the weights packed, none written or moved since."""
        return len(sources) == len(self.sources) and all(
            weight is packed and weight._version == version and weight.data_ptr() == pointer
            for weight, (packed, version, pointer) in zip(sources, self.sources, strict=True)
        )


PACK_LIMIT_BYTES = 2 * 1024**3  # a larger model's one-row steps read its own weights, no copy
_PACKED: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # Llama model -> PackedWeights


def packed_weights(llama: torch.nn.Module, sources: list[torch.Tensor]) -> PackedWeights:
    """The :class:`PackedWeights` of ``llama`` (its base weights ``sources``: each layer's
    projections in :data:`PROJECTIONS` order, then the head), packed now if none is kept or the
    kept one is stale. Dropped with the model."""
    packed = _PACKED.get(llama)
    if packed is None or not packed.fresh(sources):
        _PACKED[llama] = packed = PackedWeights(sources)
    return packed


class LlamaDecodeStep:
    """One decode step (one new token per row) of a ``transformers`` Llama model, plain or
    wrapped by peft with LoRA adapters on its linear layers.

    The operations are those of ``LlamaForCausalLM.forward`` with SDPA attention, in the same order
    on the same weights (so the logits are bit-identical, which tests check; a one-row reply reads
    them from :class:`PackedWeights`, equal to float32 rounding), with layout shortcuts that move no
    arithmetic: hidden states are (B, D) rather than (B, 1, D); queries and keys are rotated
    together, with ``roll(x) * [-sin, sin]`` for ``rotate_half(x) * sin`` (a sign flip is exact);
    keys and values are written into a :class:`DecodeCache`. A LoRA layer adds each active adapter's
    ``lora_B(lora_A(x)) * scaling`` to its base output as peft's ``lora.Linear.forward`` does
    (:func:`add_lora`). The adapters' weights, scalings and which of them are active (or switched
    off) are read at every step, so a soup that rewrites its weights in place, or ``set_adapter``
    between replies, decodes as the peft forward would. Only models :meth:`applies` accepts qualify:
    float32, SDPA, SiLU, no biases, no hooks, eval mode, plain or :func:`plain_lora` linear layers,
    and nothing else wrapped (``modules_to_save``, trainable tokens); anything else keeps the
    model's forward.
    """

    @staticmethod
    def applies(model: torch.nn.Module) -> bool:
        """Whether ``model`` is a float32 Llama (or a peft LoRA model of one) this step
        reproduces."""
        return LlamaDecodeStep.lora_layers(model) is not None

    @staticmethod
    def lora_layers(model: torch.nn.Module) -> list[torch.nn.Module] | None:
        """The :func:`plain_lora` layers of ``model`` (none for a bare Llama) when the step
        :meth:`applies` to it, else None. One walk over the modules: it runs before every
        prompt pass, and on SmolLM2 with 210 LoRA layers each walk costs milliseconds."""
        try:
            from transformers.models.llama import modeling_llama as llama_modules
        except ImportError:  # pragma: no cover - transformers is a dependency
            return None
        llama = unwrap_llama(model)
        if llama is None:
            return None
        config = llama.config
        if (
            config._attn_implementation != "sdpa"
            or config.hidden_act != "silu"
            or config.attention_bias
            or config.mlp_bias
            or getattr(config, "pretraining_tp", 1) != 1
        ):
            return None
        from torch.nn.modules import module as nn_module

        if nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks:
            return None
        for sub in model.modules():  # one walk for the mode, the hooks and the dtypes
            if sub.training or sub._forward_hooks or sub._forward_pre_hooks:
                return None
            if any(p is not None and p.dtype != torch.float32 for p in sub._parameters.values()):
                return None
        inner, layers = llama.model, llama.model.layers
        if (
            type(inner) is not llama_modules.LlamaModel
            or type(inner.embed_tokens) is not torch.nn.Embedding
            or type(inner.norm) is not llama_modules.LlamaRMSNorm
            or type(inner.rotary_emb) is not llama_modules.LlamaRotaryEmbedding
            or len(layers) != config.num_hidden_layers
        ):
            return None
        for layer in layers:
            if (
                type(layer) is not llama_modules.LlamaDecoderLayer
                or type(layer.self_attn) is not llama_modules.LlamaAttention
                or type(layer.mlp) is not llama_modules.LlamaMLP
                or type(layer.input_layernorm) is not llama_modules.LlamaRMSNorm
                or type(layer.post_attention_layernorm) is not llama_modules.LlamaRMSNorm
            ):
                return None
        linears = [
            getattr(layer, part).get_submodule(name)
            for layer in layers
            for part, name in PROJECTIONS
        ]
        # a wrapper other than peft's plain LoRA (or a subclass of nn.Linear) keeps the forward
        adapted = [
            linear for linear in [*linears, llama.lm_head] if type(linear) is not torch.nn.Linear
        ]
        if llama is model and adapted or not all(plain_lora(linear) for linear in adapted):
            return None
        return adapted

    def __init__(self, model: torch.nn.Module):
        llama = unwrap_llama(model)
        config = llama.config
        self.heads = config.num_attention_heads
        self.kv_heads = config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.rotary = llama.model.rotary_emb
        projections = [
            [getattr(layer, part).get_submodule(name) for part, name in PROJECTIONS]
            for layer in llama.model.layers
        ]
        self.llama = llama
        self.sources = [base_weight(linear) for linears in projections for linear in linears]
        self.sources.append(base_weight(llama.lm_head))
        self.matrices: tuple[list, torch.Tensor] | None = None  # chosen at the first step
        self.layers = [
            (
                layer.input_layernorm.weight,
                layer.input_layernorm.variance_epsilon,
                layer.self_attn.scaling,
                layer.post_attention_layernorm.weight,
                layer.post_attention_layernorm.variance_epsilon,
            )
            for layer in llama.model.layers
        ]
        self.norm = (llama.model.norm.weight, llama.model.norm.variance_epsilon)
        self.embed = llama.model.embed_tokens.weight
        # the LoRA layers of each decoder layer (None where a projection is a plain nn.Linear)
        self.adapted = [tuple(lora_view(linear) for linear in linears) for linears in projections]
        self.adapted_head = lora_view(llama.lm_head)
        if all(view is None for layer in self.adapted for view in layer) and (
            self.adapted_head is None
        ):
            self.adapted = None  # a plain model: no terms to read at each step
        self.no_terms = [((),) * len(PROJECTIONS)] * len(self.layers)

    def weights_for(self, batch: int) -> tuple[list, torch.Tensor]:
        """Per layer the matrices (in, out) of its projections in :data:`PROJECTIONS` order,
        and the head's: at batch 1 from :class:`PackedWeights` (unless the copy would pass
        ``PACK_LIMIT_BYTES``), else views of the model's own weights (``W.t()``, what
        ``F.linear`` multiplies by: the forward's logits bit for bit)."""
        if batch == 1 and sum(weight.nbytes for weight in self.sources) <= PACK_LIMIT_BYTES:
            matrices = packed_weights(self.llama, self.sources).matrices
        else:
            matrices = [weight.t() for weight in self.sources]
        *weights, head = matrices
        size = len(PROJECTIONS)
        return [weights[at : at + size] for at in range(0, len(weights), size)], head

    def adapter_terms(self) -> list[tuple[tuple[LoraTerm, ...], ...]]:
        """Per decoder layer, the LoRA terms of each projection (q, k, v, o, gate, up, down),
        read from the adapters now (their current weights, scalings, active set)."""
        if self.adapted is None:
            return self.no_terms
        return [tuple(lora_terms(view) for view in layer) for layer in self.adapted]

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
        if self.matrices is None:
            self.matrices = self.weights_for(batch)
        layer_weights, head = self.matrices
        cache.make_room()
        at, seen = cache.length, cache.length + 1
        hidden = F.embedding(input_ids[:, 0], self.embed)  # (B, D)
        cos, sin = self.rotary(hidden, position_ids)  # (B, 1, head dim)
        sin = torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)
        # what transformers' mask building gives one query: none without padding, else the row
        mask = None if bool(attention_mask.all()) else attention_mask[:, None, None, :].bool()
        rotated = hidden.new_empty((batch, queries + kv_heads * head_dim))
        for index, (
            (norm1, eps1, scale, norm2, eps2),
            (w_q, w_k, w_v, w_o, w_gate, w_up, w_down),  # (in, out) each
            (t_q, t_k, t_v, t_o, t_gate, t_up, t_down),
        ) in enumerate(zip(self.layers, layer_weights, self.adapter_terms(), strict=True)):
            x = norm1 * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps1))
            torch.mm(x, w_q, out=rotated[:, :queries])
            torch.mm(x, w_k, out=rotated[:, queries:])
            add_lora(rotated[:, :queries], x, t_q)
            add_lora(rotated[:, queries:], x, t_k)
            value = add_lora(torch.mm(x, w_v), x, t_v)  # (B, kv heads * head dim)
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
            attended = attended.reshape(batch, queries)
            hidden = hidden + add_lora(torch.mm(attended, w_o), attended, t_o)
            x = norm2 * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps2))
            gated = F.silu(add_lora(torch.mm(x, w_gate), x, t_gate))
            inner = gated * add_lora(torch.mm(x, w_up), x, t_up)  # (B, intermediate)
            hidden = hidden + add_lora(torch.mm(inner, w_down), inner, t_down)
        cache.length = seen
        norm, eps = self.norm
        x = norm * (hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps))
        return add_lora(torch.mm(x, head), x, lora_terms(self.adapted_head))  # (B, V)
