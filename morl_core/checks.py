"""The checks every configuration field shares: numeric bounds, the model's context, paths.

:mod:`morl_core.config` (the run's fields) and :mod:`morl_core.options` (each method's options)
both check their values with these: types before comparisons (``null``, ``true`` as a count, NaN
and 10**30 are refused), one-line messages that name the allowed values, and paths made absolute
once and checked to exist.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from morl_core.policy.model import EMBEDDED, _looks_like_path, embedded_model_path
from morl_core.policy.registry import MODELS
from morl_core.prompts import PROMPT_SUFFIXES

# --- bounds: every number has a range, checked before anything is allocated ---
MAX_STEPS = 100_000
INT64_MAX = 2**63 - 1  # seeds are stored in SQLite and handed to numpy/torch as int64
MAX_OBJECTIVES = 8  # EMORL's grid search evaluates 3**K candidates per round
MAX_TEXT = 4096  # characters of any text field (names, paths)
HUB_CONTEXT = 4096  # context assumed for a hub model whose config is not cached; the worker checks
DEFAULT_CONTEXT = 1024  # what Policy.max_length assumes when a config names no context
MAX_MODEL_CONFIG_BYTES = 2**20
# Hugging Face repo ids: "name" or "org/name".
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


class ConfigError(ValueError):
    """Bad configuration. ``errors`` maps each bad field name to a message with allowed values."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        lines = [f"  {name}: {msg}" for name, msg in self.errors.items()]
        super().__init__("invalid run configuration:\n" + "\n".join(lines))


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print in decimal
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_integer(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (JSON ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool`` (ints of any size are finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def host_threads() -> int:
    """The most torch threads a run may ask for: this host's CPU count."""
    return os.cpu_count() or 1


# --- the model's context, read from its config.json without loading weights ---
def _context_from_config(path: Path) -> int:
    try:
        stat = path.stat()
    except OSError:
        return HUB_CONTEXT
    return _context_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _context_cached(path: str, _mtime: int, size: int) -> int:
    if size > MAX_MODEL_CONFIG_BYTES:
        return HUB_CONTEXT
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return HUB_CONTEXT
    if not isinstance(data, dict):
        return HUB_CONTEXT
    # the keys Policy.max_length reads, in its order
    for key in ("n_positions", "max_position_embeddings"):
        value = data.get(key)
        if is_integer(value) and 2 <= value <= 10**7:
            return value
    return DEFAULT_CONTEXT


def model_context(model: Any) -> int:
    """Positions in ``model``'s context, from its ``config.json`` (local, or the hub cache);
    :data:`HUB_CONTEXT` when unknown (the worker checks)."""
    if not isinstance(model, str) or not model or len(model) > MAX_TEXT or "\0" in model:
        return HUB_CONTEXT
    if model == EMBEDDED:
        return _context_from_config(embedded_model_path() / "config.json")
    if model_is_path(model):
        return _context_from_config(resolve_path(model) / "config.json")
    if HUB_NAME.fullmatch(model):
        try:
            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001 - any cache trouble means "unknown", not an error
            cached = None
        if isinstance(cached, str):
            return _context_from_config(Path(cached))
    return HUB_CONTEXT


def is_hub_name(model: Any) -> bool:
    """``model`` names a hub repository (not a registered name, not a local path)."""
    return (
        isinstance(model, str)
        and model not in MODELS
        and bool(HUB_NAME.fullmatch(model))
        and not model_is_path(model)
    )


# --- paths: resolved once, checked to exist, and from input checked against the allow-list ---
def resolve_path(text: str | os.PathLike) -> Path:
    """``text`` absolute, ``~`` expanded, symlinks resolved; unresolvable stays as written
    (the existence check then reports it)."""
    path = Path(text)
    with contextlib.suppress(RuntimeError):  # ~user with no such user stays as written
        path = path.expanduser()
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return Path(os.path.abspath(path))


def model_is_path(model: str) -> bool:
    if _looks_like_path(model):
        return True
    try:
        return Path(model).expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # a name too long for the file system, ~user
        return False


def is_path_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and len(value) <= MAX_TEXT
        and "\0" not in value
    )


def path_problem(kind: str, path: Path) -> str | None:
    """Why ``path`` cannot serve as ``kind`` ('prompts', 'model' or 'run'), or ``None``."""
    try:
        if kind == "prompts":
            if not path.is_file():
                return f"no prompt file at {path}; give a shipped set or a .txt / .jsonl file"
            return (
                None if path.suffix in PROMPT_SUFFIXES else f"{path} is not a .txt or .jsonl file"
            )
        if kind == "model" and path.is_file() and path.suffix.lower() == ".gguf":
            return None  # converted to a cached model folder when loaded
        if not path.is_dir():
            return f"no {kind} folder at {path}"
        if not (path / "config.json").is_file():
            return f"{path} is not a {kind} folder (no config.json)"
        return None
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"cannot use {short_repr(str(path))}: {exc.strerror or exc}"
