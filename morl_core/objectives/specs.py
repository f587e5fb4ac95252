"""Objective specs: how a user names an imported reward function, parsed without running code.

A spec is a dotted path to a TRL-style reward function, optionally called as a factory with
literal settings, optionally followed by the range its values are mapped from::

    trl.rewards:think_format_reward
    trl.rewards:get_repetition_penalty_reward(ngram_size=3, max_penalty=-1.0)
    mypkg.rewards:length_reward@[0, 200]

The settings are read with ``ast.literal_eval`` node by node (numbers, strings, booleans,
None, lists, tuples, dicts of those); nothing is evaluated, so a spec cannot run code before
its module is imported. The spec text itself is what a run's ``config.json`` records, so a
resumed run rebuilds the same function from it.

Which modules may be imported is the caller's decision: ``allow_import=True`` (the CLI, a local
user) allows any module; ``allow_import=False`` (the web UI, a server) allows only modules under
the prefixes in ``$MORL_ALLOWED_IMPORTS`` (comma-separated; default ``trl.rewards``).
"""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass
from typing import Any

from morl_core.settings import allowed_imports

DEFAULT_ALLOWED_IMPORTS = ("trl.rewards",)
MAX_SPEC_CHARS = 400
MAX_ARGUMENTS = 16
MAX_LITERAL_CHARS = 200  # any one setting, as written
PATH_PATTERN = re.compile(
    r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*|\.[A-Za-z_]\w*)$"
)


@dataclass(frozen=True)
class ObjectiveSpec:
    """A parsed objective spec."""

    text: str  # as written (stripped): the objective's name in configs and tables
    module: str  # e.g. "trl.rewards"
    attribute: str  # e.g. "get_repetition_penalty_reward"
    call: bool = False  # the attribute is a factory called with args / kwargs
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()  # (name, value) in written order
    value_range: tuple[float, float] | None = None  # (low, high) after "@"

    @property
    def path(self) -> str:
        """``module:attribute``, without settings or range."""
        return f"{self.module}:{self.attribute}"


def looks_like_spec(name: str) -> bool:
    """Whether ``name`` is meant as a dotted path rather than a registry name."""
    return isinstance(name, str) and (":" in name or "." in name)


def _bad(text: str, why: str) -> ValueError:
    return ValueError(
        f"objective path {text!r} is not 'package.module:function' or 'package.module.function'"
        f" ({why}); settings go in 'module:factory(name=value, ...)', a range in '@[low, high]'"
    )


def parse_spec(text: str) -> ObjectiveSpec:
    """Parses ``module:function[(settings)][@[low, high]]`` without evaluating anything.

    ``ValueError`` names the spec and what is wrong: a malformed path, a setting that is not a
    literal, a repeated setting name, too many or too long settings, or a range that is not two
    finite numbers with low < high.

    Example:
        >>> spec = parse_spec("trl.rewards:get_repetition_penalty_reward(ngram_size=3)@[-1, 0]")
        >>> spec.path, spec.kwargs, spec.value_range
        ('trl.rewards:get_repetition_penalty_reward', (('ngram_size', 3),), (-1.0, 0.0))
    """
    if not isinstance(text, str):
        raise ValueError(f"objective specs must be strings, got {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_SPEC_CHARS:
        raise _bad(text[:60] + "...", f"longer than {MAX_SPEC_CHARS} characters")
    body, value_range = text, None
    head, at, tail = text.rpartition("@")
    if at and tail.strip().startswith("["):  # an "@" inside a string setting is not a range
        body, value_range = head, _parse_range(text, tail)
    body = body.strip()
    call, settings = False, ""
    if body.endswith(")"):
        head, paren, rest = body.partition("(")
        if not paren:
            raise _bad(text, "a ')' without '('")
        body, settings, call = head.strip(), rest[:-1], True
    if not PATH_PATTERN.match(body):
        raise _bad(text, f"{body!r} is not a dotted path")
    module, _, attribute = body.partition(":") if ":" in body else body.rpartition(".")
    try:
        args, kwargs = parse_settings(settings) if call else ((), ())
    except SettingsError as error:
        raise _bad(text, str(error)) from None
    return ObjectiveSpec(text, module, attribute, call, args, kwargs, value_range)


class SettingsError(ValueError):
    """Settings that are not literal ``name=value, ...``; the message says why, naming no
    objective (each caller puts its own in front)."""


def parse_settings(settings: str) -> tuple[tuple[Any, ...], tuple[tuple[str, Any], ...]]:
    """The literal settings written between a call's parentheses, without evaluating anything:
    ``(positional values, ((name, value), ...))`` in written order.

    Used for a factory's settings in a spec and for a built-in objective's settings
    (``brevity(target_words=20)``, see the registry). ``SettingsError`` says what is wrong: not
    ``name=value, ...``, ``*`` or ``**``, a repeated name, too many or too long settings, or a
    value that is not a literal.

    Example:
        >>> parse_settings("3, max_penalty=-1.0")
        ((3,), (('max_penalty', -1.0),))
    """
    try:
        node = ast.parse(f"f({settings})", mode="eval").body
    except SyntaxError:
        raise SettingsError(f"settings ({settings}) are not 'name=value, ...'") from None
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
        raise SettingsError(f"settings ({settings}) are not 'name=value, ...'")
    if len(node.args) + len(node.keywords) > MAX_ARGUMENTS:
        raise SettingsError(f"more than {MAX_ARGUMENTS} settings")
    args = tuple(_literal(arg, f"setting {i + 1}") for i, arg in enumerate(node.args))
    kwargs, seen = [], set()
    for keyword in node.keywords:
        if keyword.arg is None:
            raise SettingsError("'**' is not allowed in settings")
        if keyword.arg in seen:
            raise SettingsError(f"setting {keyword.arg!r} is given twice")
        seen.add(keyword.arg)
        kwargs.append((keyword.arg, _literal(keyword.value, f"setting {keyword.arg!r}")))
    return args, tuple(kwargs)


def _literal(node: ast.AST, what: str) -> Any:
    if isinstance(node, ast.Starred):
        raise SettingsError("'*' is not allowed in settings")
    source = ast.unparse(node)
    if len(source) > MAX_LITERAL_CHARS:
        raise SettingsError(f"{what} is longer than {MAX_LITERAL_CHARS} characters")
    try:
        value = ast.literal_eval(node)  # literals only: names, calls and attributes are refused
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise SettingsError(
            f"{what} = {source} is not a literal (number, string, bool, None, list, tuple or dict)"
        ) from None
    if (isinstance(value, float) and not math.isfinite(value)) or isinstance(value, complex):
        raise SettingsError(f"{what} = {source} must be a finite real number")
    return value


def _parse_range(text: str, range_text: str) -> tuple[float, float]:
    try:
        value = ast.literal_eval(range_text.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        value = None
    ok = (
        isinstance(value, list | tuple)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
        and all(math.isfinite(v) for v in value)
    )
    if not ok or not value[0] < value[1]:
        raise _bad(
            text,
            f"range @{range_text.strip()} must be two finite numbers [low, high] with low < high",
        )
    return float(value[0]), float(value[1])


def split_specs(text: str) -> list[str]:
    """Splits a comma-separated list of objectives, keeping commas inside ``(...)``/``[...]``.

    Example:
        >>> split_specs("m:f(a=1,b=2)@[0,1],sentiment")
        ['m:f(a=1,b=2)@[0,1]', 'sentiment']
    """
    parts, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in "([{":
            depth += 1
        elif char in ")]}":
            depth = max(0, depth - 1)
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    parts.append("".join(current).strip())
    return [part for part in parts if part]


def allowed_prefixes() -> tuple[str, ...]:
    """Module prefixes a server may import objectives from (``$MORL_ALLOWED_IMPORTS``)."""
    return allowed_imports(DEFAULT_ALLOWED_IMPORTS)


def import_allowed(module: str, allow_import: bool) -> bool:
    """Whether ``module`` may be imported: any when ``allow_import``, else the allow-list's."""
    if allow_import:
        return True
    return any(module == p or module.startswith(p + ".") for p in allowed_prefixes())
