"""Scoring many objectives at once: ``score`` -> an (N, K) matrix, ``describe`` -> table rows.

``score`` validates everything a user can get wrong (objective names, empty or mismatched
prompt and completion lists) and raises ``ValueError`` with a message that names the field, so
that the CLI can print it and exit with code 2.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from morl_core.objectives.registry import (
    KINDS,
    OBJECTIVES,
    Objective,
    ProgressCallback,
    as_text,
    resolve,
)


class ObjectiveRow(NamedTuple):
    """One row of the ``morl objectives`` table."""

    name: str
    kind: str  # real | synthetic | imported
    description: str
    range: str  # "[0, 1]" or "any float"
    mapping: str  # how the raw signal maps to the range, higher is better


def describe(kind: str | None = None) -> list[ObjectiveRow]:
    """Rows describing the registered objectives, in registration order.

    Args:
        kind: Only objectives of this kind (``real`` or ``synthetic``); all when None.

    Raises:
        ValueError: For an unknown kind.

    Example:
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
    """Normalises ``"a,b"`` or ``["a", "b"]`` to a list of names; rejects empty and repeated."""
    if isinstance(names, str):
        names = [part.strip() for part in names.split(",")]
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
    """Resolves objectives and loads their scorers now (progress bar / callback on slow loads).

    Args:
        names: Objective names or dotted paths, as a list or a comma-separated string.
        progress: Optional ``progress(message, fraction_done)`` for the web UI; a tqdm bar is
            shown on a terminal either way.
        allow_import: Whether dotted paths may be imported (the web UI passes its operator's
            setting, off by default there).

    Returns:
        The resolved objectives, in the order given.

    Raises:
        ValueError: For unknown or unimportable objectives (see ``resolve``).
    """
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
    **kwargs: Any,
) -> np.ndarray:
    """Scores N (prompt, completion) pairs on K objectives.

    Args:
        names: K objective names (keys of ``OBJECTIVES``) or dotted paths to TRL-style reward
            functions, as a list or a comma-separated string.
        prompts: N prompts: strings or TRL conversational message lists.
        completions: N completions, one per prompt, in the same formats.
        allow_import: Whether dotted paths may be imported; the web UI passes False unless its
            operator has switched imports on.
        progress: Optional ``progress(message, fraction_done)`` during slow first loads.
        **kwargs: Passed to every reward function, TRL style (each ignores what it does not
            use), e.g. ``target_words=10`` for ``brevity``.

    Returns:
        Float array (N, K); column k holds objective ``names[k]``. Built-in objectives lie in
        [0, 1], higher is better; ``None`` from an imported function becomes NaN.

    Raises:
        ValueError: Unknown objective (lists the available ones), dotted path not allowed or
            not importable, empty ``prompts`` or ``completions``, mismatched lengths,
            non-text items, or a reward function returning the wrong number of values.

    Example:
        >>> score(["brevity", "synth_nature"], ["Describe it."], ["A tree and a river."])
        array([[1. , 0.4]])
    """
    objectives = [resolve(name, allow_import) for name in objective_names(names)]
    prompt_texts = _check_texts(prompts, "prompts")
    completion_texts = _check_texts(completions, "completions")
    if len(prompt_texts) != len(completion_texts):
        raise ValueError(
            f"completions has {len(completion_texts)} items but prompts has "
            f"{len(prompt_texts)}; pass one completion per prompt"
        )
    for objective in objectives:
        if objective.prepare is not None:
            objective.prepare(progress)
    rewards = np.empty((len(prompt_texts), len(objectives)), dtype=np.float64)  # (N, K)
    for k, objective in enumerate(objectives):
        values = objective.fn(list(prompts), list(completions), **kwargs)
        rewards[:, k] = _as_column(values, objective.name, len(prompt_texts))
    return rewards


def _as_column(values: Any, name: str, expected: int) -> np.ndarray:
    if not isinstance(values, Sequence | np.ndarray) or len(values) != expected:
        got = len(values) if isinstance(values, Sequence | np.ndarray) else type(values).__name__
        raise ValueError(f"objective {name!r} returned {got} values for {expected} completions")
    column = np.empty(expected, dtype=np.float64)
    for i, value in enumerate(values):
        if value is None:
            column[i] = math.nan
            continue
        try:
            column[i] = float(value)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"objective {name!r} returned a non-number at index {i}: {value!r}"
            ) from error
    return column


def _listing() -> str:
    return ", ".join(OBJECTIVES)
