"""Batched, seedable sampling with the KV cache, over any next-token function.

The loop is written once and reused: a plain policy passes its model's forward; MOD passes a
mix of several models' log-probabilities; EMORL passes a mix of hidden states through one LM
head. Each gets greedy, temperature and top-p decoding, EOS handling and left padding for free.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# forward(input_ids (B, T), attention_mask (B, S), position_ids (B, T), cache) -> (logits (B, V), cache)
NextToken = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, Any], tuple[torch.Tensor, Any]]


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
    """The next-token function of a Hugging Face causal LM (logits in fp32)."""

    def forward(input_ids, attention_mask, position_ids, cache):
        out = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                    cache=cache, use_cache=True, logits_to_keep=1)
        return out.logits[:, -1, :].float(), out.cache

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
) -> Rollout:
    """Decode up to ``max_new_tokens`` per row; a row stops at its first EOS."""
    batch = prompt_ids.shape[0]
    device = prompt_ids.device
    mask = prompt_mask.clone()
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    step_ids, step_pos, cache = prompt_ids, positions, None
    tokens, alive = [], torch.ones(batch, dtype=torch.bool, device=device)
    masks = []
    for _ in range(max_new_tokens):
        logits, cache = next_token(step_ids, mask, step_pos, cache)  # (B, V)
        if greedy:
            nxt = logits.argmax(-1)
        else:
            logits = filter_top_p(logits / max(temperature, 1e-5), top_p)
            probs = torch.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        nxt = torch.where(alive, nxt, torch.full_like(nxt, pad_id))
        tokens.append(nxt)
        masks.append(alive.long())
        alive = alive & (nxt != eos_id)
        mask = torch.cat([mask, torch.ones(batch, 1, dtype=mask.dtype, device=device)], dim=1)
        step_ids = nxt[:, None]
        step_pos = step_pos[:, -1:] + 1
        if not alive.any():
            break
    completion = torch.stack(tokens, 1) if tokens else prompt_ids.new_zeros((batch, 0))
    completion_mask = torch.stack(masks, 1) if masks else prompt_mask.new_zeros((batch, 0))
    return Rollout(prompt_ids, prompt_mask, completion, completion_mask)
