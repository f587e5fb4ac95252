"""Prompt sets: the shipped ones under ``assets/prompts`` or a user's .txt/.jsonl file."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from morl_core.policy.model import ASSETS

SPLITS = ("train", "eval")
PROMPT_SUFFIXES = (".txt", ".jsonl")
MAX_FILE_BYTES = 64 * 2**20  # a prompt file is read whole: bound it before reading
# A shipped set is named, never pathed: "../x" or "/etc/x" must not reach a join with ASSETS.
_SHIPPED_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def available() -> list[str]:
    """Names of the shipped prompt sets."""
    return sorted({p.name.split(".")[0] for p in (ASSETS / "prompts").glob("*.train.jsonl")})


def shipped_file(name: object, split: str = "train") -> Path | None:
    """The file of the shipped set ``name`` for ``split``, or ``None`` when there is no such set."""
    if not isinstance(name, str) or not _SHIPPED_NAME.fullmatch(name):
        return None
    path = ASSETS / "prompts" / f"{name}.{split}.jsonl"
    return path if path.is_file() else None


def load_prompts(name: str | os.PathLike = "default", split: str = "train") -> list[str]:
    """Prompts of a shipped set (``name``) or of a file (one prompt a line, or JSONL with "text").

    A file path gives the same prompts for both splits.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(name, str | os.PathLike):
        raise ValueError(f"prompt set must be a name or a file path, got {name!r}")
    path = shipped_file(name, split) or Path(name)
    try:
        is_file = path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, a NUL byte
        is_file = False
    if not is_file:
        raise ValueError(
            f"unknown prompt set {name!r}; shipped: {', '.join(available())}, "
            "or give a .txt / .jsonl file path"
        )
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ValueError(
            f"{path}: {size} bytes; prompt files are read whole, at most {MAX_FILE_BYTES}"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    lines = [(i, ln) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]  # 1-based numbers
    if path.suffix == ".jsonl":
        prompts = []
        for i, line in lines:
            try:
                prompt = json.loads(line)["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                raise ValueError(
                    f"{path}:{i}: expected a JSON object with a 'text' field"
                ) from None
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"{path}:{i}: 'text' must be a non-empty string, got {prompt!r}")
            prompts.append(prompt)
    else:
        prompts = [ln.strip() for _, ln in lines]
    if not prompts:
        raise ValueError(f"prompt set {name!r} is empty")
    return prompts


def load_prompt_columns(name: str = "default", split: str = "train") -> dict[str, dict]:
    """The extra fields of a JSONL prompt set, keyed by prompt text: ``{text: {field: value}}``.

    Fields other than ``"text"`` are the set's columns (e.g. a ``solution`` for TRL's
    ``accuracy_reward``); scoring passes them to imported reward functions as keyword
    arguments, one value per sample, as TRL passes a data set's columns. A ``.txt`` set has none.
    ``ValueError`` as ``load_prompts``, or on one prompt text given twice with different fields.
    """
    load_prompts(name, split)  # validates the set, the file and every line
    path = shipped_file(name, split) or Path(name)
    if path.suffix != ".jsonl":
        return {}
    columns: dict[str, dict] = {}
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        text = record.pop("text")
        if text in columns and columns[text] != record:
            raise ValueError(f"{path}:{i}: prompt {text[:40]!r} repeats with different fields")
        columns[text] = record
    return {text: fields for text, fields in columns.items() if fields}
