"""KL(policy || base) of sampled replies: the cost beside every reward the evaluation reports.

A Monte-Carlo estimate on the replies a steerable actually samples. The sampler reports log pi
of each token it draws under the policy's actual next-token distribution (a mixture, a fusion,
a conditioned prompt and all: :class:`StepLogprobs`); one teacher-forced pass of the base model
(:func:`base_model`: the adapters switched off) on the user's plain prompt and the same token
ids gives log pi_base (:func:`reply_kl`). :func:`generate_with_kl` does both for a fresh
sample (the evaluation, EMORL's search); :func:`kl_to_base` re-tokenises replies generated
elsewhere (the app's point inspector). Used by :mod:`morl_core.evaluation`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

KL_BATCH = 16  # replies per forward pass of the KL estimate (bounds the logits' memory)


class StepLogprobs:
    """The sampler's ``on_logprobs`` (:func:`morl_core.policy.sampling.sample`): records one
    rollout's columns as they are chosen, with log pi of each chosen token."""

    def __init__(self) -> None:
        self.columns: list[tuple[Any, Any, Any]] = []

    def __call__(self, tokens, live, logprobs) -> None:
        self.columns.append((tokens, live, logprobs))

    def rollout(self, rows: int):
        """(completion ids, mask, log pi) (rows, T) of the recorded rollout, or None when none was
        recorded (greedy decoding, a steerable that does not sample through ``Policy.rollout``)
        or it is not one rollout of ``rows`` rows."""
        import torch

        if not self.columns or any(len(t) != rows for t, _, _ in self.columns):
            return None
        tokens, live, logprobs = (torch.stack(c, dim=1) for c in zip(*self.columns, strict=True))
        return tokens, live, logprobs


@contextlib.contextmanager
def base_model(model):
    """The base model under a steerable's ``model``, in eval mode, its adapters switched off.

    A peft model (one adapter per preference, or the experts of a mixture) and Panacea's layers
    switch off with ``disable_adapter``; a hidden-state fusion (EMORL, the meta-policy) is a
    fusion of adapters of one peft model, whose own ``disable_adapter`` is the RL trainer's
    reference (for the meta-policy, the untrained mixing), so the peft model is used instead.
    A model without adapters is its own base.
    """
    from morl_core.methods.hidden import HiddenFusion  # imports torch: only when KL is measured

    if isinstance(model, HiddenFusion):
        model = model.model
    switch_off = getattr(model, "disable_adapter", None)
    was_training = model.training
    model.eval()
    try:
        with switch_off() if switch_off is not None else contextlib.nullcontext():
            yield model
    finally:
        model.train(was_training)


def teacher_forced_logprobs(
    model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature: float = 1.0
):
    """log_softmax(logits / temperature) of each completion token given the prompt and the
    completion before it (B, T), 0 where the mask is 0; ``KL_BATCH`` rows per forward pass.

    Prompts left-padded (B, P), completions right-padded (B, T), as a rollout holds them.
    """
    import torch

    from morl_core.rl.losses import token_logprobs

    width = completion_ids.shape[1]
    out = torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device)
    for start in range(0, len(completion_ids), KL_BATCH):
        rows = slice(start, start + KL_BATCH)
        ids = torch.cat([prompt_ids[rows], completion_ids[rows]], dim=1)  # (b, P + T)
        mask = torch.cat([prompt_mask[rows], completion_mask[rows]], dim=1)
        with torch.no_grad():
            chosen, _ = token_logprobs(model, ids, mask, width, temperature)  # (b, T)
        out[rows] = torch.where(completion_mask[rows].bool(), chosen, torch.zeros_like(chosen))
    return out


def plain_prompts(policy, prompts: Sequence[str], max_new_tokens: int):
    """The user's prompts as a plain :class:`~morl_core.policy.Policy` encodes them (its chat
    template, no steering prefix such as RiC's reward tags): the x of KL(pi(.|x) || base(.|x))."""
    from morl_core.policy import Policy

    return Policy.encode(policy, list(prompts), max_new_tokens)


def reply_kl(
    policy, prompts: Sequence[str], completion_ids, completion_mask, logprobs, temperature
):
    """(sum_t log pi - log pi_base over each reply (n,), tokens per reply (n,)) or None.

    ``logprobs`` (n, T) are the policy's log pi of the completion tokens; the base term is one
    teacher-forced pass of :func:`base_model` on the plain prompt and the same token ids, at the
    same temperature (the base row decodes at it too: its own KL stays 0).
    """
    if completion_ids.shape[1] == 0 or not bool(completion_mask.any()):
        return None
    prompt_ids, prompt_mask = plain_prompts(policy, prompts, completion_ids.shape[1])
    with base_model(policy.model) as model:
        base = teacher_forced_logprobs(
            model, prompt_ids, prompt_mask, completion_ids, completion_mask, temperature
        )
    live = completion_mask.float()
    kl = ((logprobs.float() - base) * live).sum(-1)  # (n,)
    return kl.double().cpu().numpy(), live.sum(-1).double().cpu().numpy()


def generate_with_kl(
    steerable, prompts: Sequence[str], weights, **gen: Any
) -> tuple[list[str], tuple[np.ndarray, np.ndarray] | None]:
    """``steerable.generate`` plus the Monte-Carlo KL(policy || base) of each reply it sampled.

    Every steerable samples through ``Policy.rollout``, whose per-step logits are its actual
    next-token distribution (a mixture, a fusion, a conditioned prompt and all). The sampler
    reports log pi(y_t | x, y_<t) under the untruncated ``log_softmax(logits / temperature)``
    (:class:`StepLogprobs`); one teacher-forced pass of the base model on the user's plain
    prompt x and the same token ids gives log pi_base (:func:`reply_kl`). Summed over a
    reply's tokens, its mean over replies estimates the per-sequence KL and the pooled ratio
    the per-token KL, of the untruncated policy on its (top-p) samples.

    Returns:
        ``(texts, (kl (n,), tokens (n,)))``; the KL is None for greedy decoding (temperature
        0: no finite KL), a steerable without a ``policy`` or that does not sample through
        ``Policy.rollout``, or when nothing was generated.
    """
    recorder = StepLogprobs()
    texts = steerable.generate(list(prompts), weights, on_logprobs=recorder, **gen)
    policy = getattr(steerable, "policy", None)
    temperature = gen.get("temperature", 1.0)
    found = recorder.rollout(len(prompts))
    if policy is None or found is None or gen.get("greedy") or not temperature:
        return texts, None
    return texts, reply_kl(policy, prompts, *found, temperature)


def kl_to_base(
    steerable, prompts: Sequence[str], texts: Sequence[str], weights
) -> tuple[np.ndarray, np.ndarray] | None:
    """Monte-Carlo KL(policy || base) of replies generated elsewhere: (sum over tokens, tokens).

    For texts not sampled through :func:`generate_with_kl` (the app's point inspector scores
    cached replies): each reply is re-tokenised and teacher-forced through the steerable's own
    ``generate`` (the sampler's ``forced`` completions, at temperature 1), so the policy term
    is its actual distribution for every method, as in the evaluation; the base term is
    :func:`reply_kl`'s.

    Returns:
        ``(kl (n,), tokens (n,))``, or None for a steerable without a ``policy`` (or that does
        not decode through ``Policy.rollout``) or when there is no reply token.
    """
    policy = getattr(steerable, "policy", None)
    if policy is None or not texts:
        return None
    import torch  # heavy: only evaluations that measure KL load it

    encode = lambda text: policy.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    replies = [encode(" " + t) if t else [] for t in texts]
    width = max(map(len, replies))
    if width == 0:
        return None
    completion = torch.full((len(replies), width), policy.pad_id, dtype=torch.long)
    mask = torch.zeros_like(completion)
    for row, ids in enumerate(replies):
        completion[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        mask[row, : len(ids)] = 1
    forced = (completion.to(policy.device), mask.to(policy.device))
    recorder = StepLogprobs()
    steerable.generate(
        list(prompts),
        weights,
        forced=forced,
        on_logprobs=recorder,
        max_new_tokens=width,
        temperature=1.0,
        seed=0,  # nothing is drawn
    )
    found = recorder.rollout(len(prompts))
    return None if found is None else reply_kl(policy, prompts, *found, 1.0)
