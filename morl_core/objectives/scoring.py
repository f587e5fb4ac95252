"""Scoring many objectives at once: ``score`` -> an (N, K) matrix, ``describe`` -> table rows.

Bad input raises ``ValueError`` naming the field; a reward function that raises or returns the
wrong thing raises :class:`ObjectiveError` (a ``ValueError``), one line naming the objective.

Imported objectives are called exactly as TRL's ``GRPOTrainer`` calls reward functions::

    fn(prompts=prompts, completions=completions, completion_ids=completion_ids,
       **prompt_set_columns, trainer_state=state, log_extra=..., log_metric=...)

``None`` results become NaN ("not applicable to this sample"), async functions are awaited,
and completions are message lists (``[{"role": "assistant", "content": text}]``) when the
prompts are conversations, or when the function annotates ``completions`` as message lists
(TRL's own functions do); plain strings otherwise. Built-in objectives keep the plain call
``fn(prompts, completions, **kwargs)``, which accepts all of the above.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from morl_core.objectives.registry import (
    KINDS,
    OBJECTIVES,
    LazyResource,
    Objective,
    ProgressCallback,
    as_text,
    resolve,
)
from morl_core.objectives.specs import split_specs
from morl_core.policy.model import embedded_model_path

# keyword arguments score() itself passes; a prompt-set column may not take these names
RESERVED_COLUMNS = frozenset(
    {"prompts", "completions", "completion_ids", "trainer_state", "log_extra", "log_metric"}
)
MAX_COLUMNS = 32


class ObjectiveError(ValueError):
    """A reward function raised or returned something unusable; one line names it.

    Attributes:
        objective: The objective's name or spec as the caller gave it.
    """

    def __init__(self, objective: str, message: str):
        self.objective = objective
        super().__init__(message)


@dataclass(frozen=True)
class TrainerState:
    """The part of TRL's ``TrainerState`` that reward functions read for shaping by progress.

    Attributes:
        global_step: Updates done so far in this policy's training.
        max_steps: Updates this policy will get in total.
    """

    global_step: int
    max_steps: int

    @property
    def epoch(self) -> float:
        """Fraction of training done (TRL counts epochs; here one epoch is the whole run)."""
        return self.global_step / max(self.max_steps, 1)


class ObjectiveRow(NamedTuple):
    """One row of the ``morl objectives`` table."""

    name: str
    kind: str  # real | synthetic | imported
    description: str
    range: str  # "[0, 1]" or "any float"
    mapping: str  # how the raw signal maps to the range, higher is better


def describe(kind: str | None = None) -> list[ObjectiveRow]:
    """Rows describing the registered objectives of ``kind`` (all when None), in order.

    >>> row = describe()[0]
    >>> row.name, row.kind, row.range
    ('sentiment', 'real', '[0, 1]')
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return [
        ObjectiveRow(o.name, o.kind, o.description, o.value_range, o.mapping)
        for o in OBJECTIVES.values()
        if kind is None or o.kind == kind
    ]


def objective_names(names: str | Sequence[str]) -> list[str]:
    """Normalises ``"a,b"`` or ``["a", "b"]`` to a list of names; rejects empty and repeated.
    Commas inside settings stay put: ``"m:f(a=1,b=2),brevity(target_words=20)"`` is two."""
    if isinstance(names, str):
        names = split_specs(names)
    if not isinstance(names, Sequence) or isinstance(names, bytes):
        raise ValueError(f"names must be a list of objective names, got {type(names).__name__}")
    names = list(names)
    if not names:
        raise ValueError("names is empty: pass at least one objective; available: " + _listing())
    if any(not isinstance(name, str) or not name.strip() for name in names):
        raise ValueError(f"names must be non-empty strings, got {names!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"names repeats {', '.join(repeated)}; list each objective once")
    return names


def prepare(
    names: str | Sequence[str],
    progress: ProgressCallback | None = None,
    allow_import: bool = True,
) -> list[Objective]:
    """Resolves objectives (names or specs, a list or ``"a,b"``) and loads their scorers now,
    reporting slow loads to ``progress(message, fraction_done)`` (see ``resolve``)."""
    objectives = [resolve(name, allow_import) for name in objective_names(names)]
    for objective in objectives:
        if objective.prepare is not None:
            objective.prepare(progress)
    return objectives


def _check_texts(values: Any, field: str) -> list[str]:
    if isinstance(values, str | bytes):
        raise ValueError(f"{field} must be a list of strings, got a single string; wrap it in [ ]")
    if not isinstance(values, Sequence):
        raise ValueError(f"{field} must be a list of strings, got {type(values).__name__}")
    if len(values) == 0:
        raise ValueError(f"{field} is empty: pass at least one item")
    return [as_text(value, f"{field}[{i}]") for i, value in enumerate(values)]


def score(
    names: str | Sequence[str],
    prompts: Sequence,
    completions: Sequence,
    *,
    allow_import: bool = True,
    progress: ProgressCallback | None = None,
    completion_ids: Sequence[Sequence[int]] | None = None,
    prompt_columns: Mapping[str, Mapping[str, Any]] | None = None,
    trainer_state: TrainerState | None = None,
    tokenizer: Any = None,
    **kwargs: Any,
) -> np.ndarray:
    """Scores N (prompt, completion) pairs on K objectives.

    Args:
        names: K objective names, names with settings (``brevity(target_words=20)``) or specs,
            as a list or a comma-separated string.
        prompts: N prompts: strings or TRL conversational message lists.
        completions: N completions, one per prompt, in the same formats.
        allow_import: As for :func:`~morl_core.objectives.registry.resolve`.
        progress: Optional ``progress(message, fraction_done)`` during slow first loads.
        completion_ids: N lists of the completions' token ids, as generated. When None and an
            imported objective is scored, the completions are tokenised with ``tokenizer``
            (the embedded model's when None).
        prompt_columns: The prompt set's extra columns, ``{prompt text: {column: value}}``
            (see :func:`morl_core.prompts.load_prompt_columns`); each column reaches imported
            functions as a keyword holding one value per sample (None where a prompt lacks it).
        trainer_state: Training progress passed to imported functions as ``trainer_state``.
        tokenizer: Tokenizer for ``completion_ids`` when they are not given.
        **kwargs: Passed to every built-in reward function (each ignores what it does not
            use), e.g. ``target_words=10`` for ``brevity``; they override settings written in
            a name. A run sets them in its objective names instead (``brevity(target_words=10)``).

    Returns:
        Float array (N, K); column k holds objective ``names[k]``. Built-in objectives lie in
        [0, 1], higher is better; ``None`` from an imported function becomes NaN (not
        applicable to that sample).

    Raises:
        ValueError: Bad input, named by field (unknown objective, empty or mismatched lists).
        ObjectiveError: A reward function raised or returned the wrong thing.

    Example:
        >>> score(["brevity", "synth_nature"], ["Describe it."], ["A tree and a river."])
        array([[1. , 0.4]])
    """
    names = objective_names(names)
    objectives = [resolve(name, allow_import) for name in names]
    prompt_texts = _check_texts(prompts, "prompts")
    completion_texts = _check_texts(completions, "completions")
    n = len(prompt_texts)
    if n != len(completion_texts):
        raise ValueError(
            f"completions has {len(completion_texts)} items but prompts has "
            f"{n}; pass one completion per prompt"
        )
    for objective in objectives:
        if objective.prepare is not None:
            objective.prepare(progress)
    imported = any(objective.kind == "imported" for objective in objectives)
    trl_kwargs: dict[str, Any] = {}
    if imported:
        trl_kwargs = _columns(prompt_texts, prompt_columns)
        trl_kwargs["completion_ids"] = _completion_ids(completion_ids, completion_texts, tokenizer)
        if trainer_state is not None:
            trl_kwargs["trainer_state"] = trainer_state
        trl_kwargs["log_extra"] = _discard  # TRL's completions-table hooks: nothing shows them here
        trl_kwargs["log_metric"] = _discard
    rewards = np.empty((n, len(objectives)), dtype=np.float64)  # (N, K)
    for k, (name, objective) in enumerate(zip(names, objectives, strict=True)):
        if objective.kind == "imported":
            values = _call_imported(name, objective, list(prompts), list(completions), trl_kwargs)
        else:
            values = objective.fn(list(prompts), list(completions), **kwargs)
        rewards[:, k] = _as_column(values, name, n)
    return rewards


def _discard(*args: Any, **kwargs: Any) -> None:
    return None


def _as_messages(items: list, role: str) -> list:
    return [[{"role": role, "content": x}] if isinstance(x, str) else x for x in items]


def _call_imported(
    name: str, objective: Objective, prompts: list, completions: list, trl_kwargs: dict
) -> Any:
    """Calls an imported reward function the way TRL's GRPOTrainer does."""
    conversation = not isinstance(prompts[0], str)  # TRL: conversational prompts -> messages
    if conversation or objective.conversational:
        prompts = _as_messages(prompts, "user")
        completions = _as_messages(completions, "assistant")
    try:
        values = objective.fn(prompts=prompts, completions=completions, **trl_kwargs)
        if inspect.isawaitable(values):
            values = _await(values)
    except Exception as error:  # noqa: BLE001 -- any failure becomes one line naming the function
        detail = (str(error).strip().splitlines() or [""])[0][:200]
        raise ObjectiveError(
            name,
            f"objective {name!r} failed: {_function_name(objective.fn)}() raised "
            f"{type(error).__name__}" + (f": {detail}" if detail else ""),
        ) from None
    return values


def _await(awaitable: Any) -> Any:
    async def wait() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:  # no loop in this thread: the usual case
        return asyncio.run(wait())
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:  # inside a running loop
        return pool.submit(asyncio.run, wait()).result()


def _function_name(fn: Any) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _columns(
    prompt_texts: list[str], table: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, list[Any]]:
    """Per-sample column lists from ``{prompt text: {column: value}}``, TRL's reward_kwargs."""
    if not table:
        return {}
    if not isinstance(table, Mapping):
        raise ValueError(
            f"prompt_columns must map prompt text to columns, got {type(table).__name__}"
        )
    keys: list[str] = []
    for text in dict.fromkeys(prompt_texts):
        for key in table.get(text) or {}:
            if key not in keys:
                keys.append(key)
    bad = [key for key in keys if not isinstance(key, str) or not key.isidentifier()]
    clash = [key for key in keys if key in RESERVED_COLUMNS]
    if bad or clash:
        raise ValueError(
            f"prompt_columns: column names must be Python identifiers other than "
            f"{', '.join(sorted(RESERVED_COLUMNS))}; got {bad + clash}"
        )
    if len(keys) > MAX_COLUMNS:
        raise ValueError(f"prompt_columns: at most {MAX_COLUMNS} columns, got {len(keys)}")
    return {key: [(table.get(text) or {}).get(key) for text in prompt_texts] for key in keys}


def _load_embedded_tokenizer(step: Any) -> Any:
    from transformers import AutoTokenizer  # heavy, and only imported objectives need it

    tokenizer = AutoTokenizer.from_pretrained(str(embedded_model_path()))
    step("tokenizer")
    return tokenizer


EMBEDDED_TOKENIZER: LazyResource[Any] = LazyResource(
    "embedded tokenizer", _load_embedded_tokenizer, show_bar=False
)


def _completion_ids(ids: Any, texts: list[str], tokenizer: Any) -> list[list[int]]:
    if ids is None:
        tokenizer = tokenizer if tokenizer is not None else EMBEDDED_TOKENIZER.get()
        return [list(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in texts]
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence) or len(ids) != len(texts):
        got = len(ids) if isinstance(ids, Sequence) else type(ids).__name__
        raise ValueError(
            f"completion_ids must hold one list of token ids per completion, got {got}"
        )
    rows = []
    for i, row in enumerate(ids):
        if isinstance(row, str | bytes) or not isinstance(row, Sequence):
            raise ValueError(f"completion_ids[{i}] must be a list of token ids, got {row!r:.60}")
        rows.append([int(token) for token in row])
    return rows


def _as_column(values: Any, name: str, expected: int) -> np.ndarray:
    if isinstance(values, np.ndarray):
        values = values.tolist()
    if (
        not isinstance(values, Sequence)
        or isinstance(values, str | bytes)
        or len(values) != expected
    ):
        got = len(values) if isinstance(values, Sequence) else type(values).__name__
        raise ObjectiveError(
            name,
            f"objective {name!r} returned {got} values for {expected} completions "
            f"(one per completion expected): {values!r:.120}",
        )
    column = np.empty(expected, dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            column[i] = math.nan
            continue
        try:
            column[i] = float(value)
        except (TypeError, ValueError):
            raise ObjectiveError(
                name, f"objective {name!r} returned a non-number at index {i}: {value!r:.80}"
            ) from None
        if math.isinf(column[i]):
            raise ObjectiveError(
                name, f"objective {name!r} returned an infinite value at index {i}: {value!r}"
            )
    return column


def mean_applicable_columns(rewards: np.ndarray) -> np.ndarray:
    """Column means (K,) of an (N, K) matrix over its non-NaN entries (NaN where none)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": NaN is the answer
        return np.nanmean(rewards, axis=0) if rewards.size else np.full(rewards.shape[1:], np.nan)


def stderr_applicable_columns(rewards: np.ndarray) -> np.ndarray:
    """Standard errors (K,) of the column means over non-NaN entries (0 with fewer than 2)."""
    rewards = np.asarray(rewards, dtype=np.float64)
    out = np.zeros(rewards.shape[1])
    for k in range(rewards.shape[1]):
        column = rewards[~np.isnan(rewards[:, k]), k]
        if column.size > 1:
            out[k] = column.std(ddof=1) / np.sqrt(column.size)
    return out


def _listing() -> str:
    return ", ".join(OBJECTIVES)
