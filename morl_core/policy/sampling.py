"""Batched, seedable sampling with the KV cache, over any next-token function.

The loop is written once and reused: a plain policy passes its model's forward; MOD passes a
mix of several models' log-probabilities; EMORL passes a mix of hidden states through one LM
head. Each gets greedy, temperature and top-p decoding, EOS handling and left padding for free.

A float32 Llama model (SmolLM2), plain or with peft LoRA adapters, decodes its one-token steps
through :class:`~morl_core.policy.llama_decode.LlamaDecodeStep` (the same logits, bit for bit,
except a one-row reply's, which reads input-major copies of the weights: equal to float32
rounding, and faster), with less overhead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from morl_core.policy.llama_decode import DecodeCache, LlamaDecodeStep, lean_lora_forwards

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


def hf_next_token(model: torch.nn.Module, lean: bool = True) -> NextToken:
    """The next-token function of a Hugging Face causal LM (logits in fp32).

    With ``lean``, each prompt pass (no grad) asks :meth:`LlamaDecodeStep.applies` whether the
    model, as it is now, qualifies (a plain float32 Llama, or one with plain LoRA adapters); if so
    the one-token steps that follow decode through a :class:`LlamaDecodeStep` (same logits, bit for
    bit; a one-row reply's to float32 rounding), and its prompt pass runs the LoRA layers without
    peft's per-call bookkeeping (:func:`lean_lora_forwards`, same arithmetic). Any other model, and
    every call without ``lean``, go through the model's forward and ``transformers``' cache. Asking
    at the prompt pass rather than once here follows the model between replies: a model built in
    train mode and sampled in eval mode, or adapters merged or swapped for another kind, is judged
    as it is when the reply starts.
    """
    decode_step: LlamaDecodeStep | None = None  # the step of the reply under way

    def forward(input_ids, attention_mask, position_ids, cache):
        nonlocal decode_step
        if isinstance(cache, DecodeCache):
            return decode_step(input_ids, attention_mask, position_ids, cache), cache
        layers = None if not lean or torch.is_grad_enabled() else LlamaDecodeStep.lora_layers(model)
        with contextlib.nullcontext() if layers is None else lean_lora_forwards(layers):
            out = model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
        cache = out.cache
        if layers is not None and cache is not None:
            decode_step = LlamaDecodeStep(model)
            cache = decode_step.adopt(cache) or cache
        return out.logits[:, -1, :].float(), cache

    return forward


def distinct_rows(*tensors: torch.Tensor) -> tuple[list[int], list[int]] | None:
    """``(first, inverse)`` over rows equal in every tensor (each (B, T)): ``first`` the index of
    each distinct row's first occurrence, in order, and ``inverse`` (B,) the position in
    ``first`` of each row's distinct row; None when no two rows are equal."""
    keys = [tuple(row) for row in torch.cat(tensors, dim=1).tolist()]
    first, seen = [], {}
    inverse = [seen.setdefault(key, len(seen)) for key in keys]
    if len(seen) == len(keys):
        return None
    for row, position in enumerate(inverse):
        if position == len(first):
            first.append(row)
    return first, inverse


def select_cache_rows(cache: Any, index: torch.Tensor) -> bool:
    """Keep the batch rows ``index`` (B,) of ``cache`` in place: a ``transformers`` cache or a
    :class:`DecodeCache` (``batch_select_indices``), or a list of them (one per expert); False,
    changing nothing, when some cache cannot select rows."""
    caches = cache if isinstance(cache, list | tuple) else [cache]
    if not caches or not all(hasattr(c, "batch_select_indices") for c in caches):
        return False
    for c in caches:
        c.batch_select_indices(index)
    return True


def share_identical_prompts(next_token: NextToken) -> NextToken:
    """``next_token`` that runs the prompt pass once per distinct prompt row.

    The first call (no cache yet) sees the left-padded prompts: rows equal in ids, mask and
    positions (``[prompt] * n``, or the ``n`` copies of each prompt of a rollout) are passed
    once, then the cache's rows and the logits are copied back to every row, so the decode
    steps that follow see what a pass over every row would have left. Sampling still draws for
    every row in order, so a seed gives the same tokens as without sharing wherever a row's
    prompt pass does not depend on the batch it runs in: bit for bit on the CPUs measured
    (SmolLM2 with LoRA experts, the tiny test Llama, GPT-2; tests check logits and tokens); a
    kernel whose arithmetic depends on the batch size could move the last bits. The cache may
    be one cache or a list (one per expert: MOD, PMIX); one that cannot select rows gets the
    plain pass. Only for a next-token function whose rows are independent of each other (a
    model's forward, or a mix of several), not one that holds per-row state.
    """

    def forward(input_ids, attention_mask, position_ids, cache):
        groups = (
            None if cache is not None else distinct_rows(input_ids, attention_mask, position_ids)
        )
        if groups is None:
            return next_token(input_ids, attention_mask, position_ids, cache)
        first, inverse = (torch.tensor(g, device=input_ids.device) for g in groups)
        logits, cache = next_token(
            input_ids[first], attention_mask[first], position_ids[first], None
        )
        if not select_cache_rows(cache, inverse):
            return next_token(input_ids, attention_mask, position_ids, None)
        return logits[inverse], cache  # (B, V)

    return forward


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
