"""The objective registry: what an objective is, the ``OBJECTIVES`` dict and how names resolve.

An objective is a TRL-style reward function ``fn(prompts, completions, **kwargs) -> list[float]``
plus the facts a user needs to read its numbers: a one-line description, the documented map of
its raw signal to [0, 1] (higher is better), and its kind (``real``, ``synthetic`` or
``imported``). The registry is a plain dict filled by explicit ``register()`` calls; a name that
is not in it may still be used when it is a dotted path to an importable reward function.

A registered objective may be given literal keyword settings where a name is accepted, e.g.
``brevity(target_words=20)``: its function with those settings bound, named by that text in
configs and results (see :func:`with_settings`). Nothing is imported or evaluated to read them.

An imported objective's value range comes from, in this order: its spec's ``@[low, high]``
(``given``), the function (a ``value_range`` attribute or TRL's documented range: ``declared``),
or the base model's samples at the start of training (``learned``, see ``normalize``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import math
import re
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from tqdm.auto import tqdm

from morl_core.objectives.specs import (
    ObjectiveSpec,
    SettingsError,
    allowed_prefixes,
    import_allowed,
    looks_like_spec,
    parse_settings,
    parse_spec,
)

RewardFunction = Callable[..., list[float]]
# progress(message, fraction_done): called while a slow scorer loads, fraction in [0, 1].
ProgressCallback = Callable[[str, float], None]

KINDS = ("real", "synthetic", "imported")
RANGE_SOURCES = ("fixed", "given", "declared", "learned")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ADJECTIVE = re.compile(r"(?=.{0,24}$)([a-z]+( [a-z]+)*)?")  # "", "formal", "on topic"


@dataclass(frozen=True)
class Objective:
    """One registered objective.

    Attributes:
        name: Registry key: lower case letters, digits and underscores, starting with a letter.
        fn: TRL-style reward function ``fn(prompts, completions, **kwargs) -> list[float]``.
        description: One line saying what is rewarded.
        mapping: How the raw signal maps to [0, 1], higher is better (one line).
        kind: ``real`` (a scorer of text quality), ``synthetic`` (known-answer objective) or
            ``imported`` (a user function reached by dotted path).
        bounded: True when values are guaranteed to lie in [0, 1].
        prepare: Optional ``prepare(progress)`` that loads the scorer ahead of the first call.
        spec: For imported objectives and built-ins with settings, the text as written (the
            name used in configs, e.g. ``brevity(target_words=20)``).
        bounds: ``(low, high)`` of the raw values for imported objectives, or None when the
            range has to be learned; built-in objectives lie in [0, 1].
        bounds_source: Where ``bounds`` came from: ``fixed`` (built-in [0, 1]), ``given``
            (the spec's ``@[low, high]``), ``declared`` (by the function or TRL's docs) or
            ``learned`` (still to be learned from the base model's samples).
        conversational: Whether the function reads completions as message lists (TRL's
            ``completion[0]["content"]``) even when the prompts are plain strings.
        adjective: What a reply that scores high is, in a word or two a chat model reads
            (``formal``, ``short``); RiC's tags in words ask for it. Empty: none.
    """

    name: str
    fn: RewardFunction
    description: str
    mapping: str
    kind: str = "real"
    bounded: bool = True
    prepare: Callable[[ProgressCallback | None], None] | None = None
    spec: str | None = None
    bounds: tuple[float, float] | None = None
    bounds_source: str = "fixed"
    conversational: bool = False
    adjective: str = ""

    def __post_init__(self) -> None:
        problems = []
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            problems.append(
                f"name {self.name!r} must match {NAME_PATTERN.pattern} "
                "(lower case letters, digits, underscores; starts with a letter; <= 64 chars)"
            )
        if not callable(self.fn):
            problems.append(f"fn must be callable, got {type(self.fn).__name__}")
        for field in ("description", "mapping"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip() or "\n" in value:
                problems.append(f"{field} must be one non-empty line, got {value!r}")
        if not isinstance(self.adjective, str) or not ADJECTIVE.fullmatch(self.adjective):
            problems.append(
                f"adjective must be empty or lower-case words of at most 24 characters, "
                f"got {self.adjective!r}"
            )
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {KINDS}, got {self.kind!r}")
        if self.bounds_source not in RANGE_SOURCES:
            problems.append(
                f"bounds_source must be one of {RANGE_SOURCES}, got {self.bounds_source!r}"
            )
        if self.bounds is not None and not (
            len(self.bounds) == 2
            and all(math.isfinite(b) for b in self.bounds)
            and self.bounds[0] < self.bounds[1]
        ):
            problems.append(f"bounds must be two finite numbers low < high, got {self.bounds!r}")
        if problems:
            raise ValueError(f"invalid objective {self.name!r}: " + "; ".join(problems))

    @property
    def value_range(self) -> str:
        """The range of values as shown in tables: ``[0, 1]``, ``[low, high] (source)``, ``any float``."""
        if self.bounded:
            return "[0, 1]"
        if self.bounds is not None:
            return f"[{self.bounds[0]:g}, {self.bounds[1]:g}] ({self.bounds_source})"
        return "any float (range learned)"

    @property
    def known_bounds(self) -> tuple[float, float] | None:
        """``(low, high)`` known before any sample is scored, or None when it must be learned."""
        return (0.0, 1.0) if self.bounded else self.bounds


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Adds an objective to ``OBJECTIVES`` and returns it; a taken name raises ``ValueError``."""
    if not isinstance(objective, Objective):
        raise ValueError(f"register() takes an Objective, got {type(objective).__name__}")
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is already registered")
    OBJECTIVES[objective.name] = objective
    return objective


# spec text -> (module object, objective): a factory runs once per process and module load
_IMPORTED: dict[str, tuple[Any, Objective]] = {}
_IMPORT_LOCK = threading.Lock()

# TRL's own reward functions declare no range in code; these are the ranges their docstrings
# state (trl 1.16.0, trl/rewards/*.py), keyed by the function's or the factory class's name.
_TRL_RANGES: dict[str, Callable[[Any], tuple[float, float] | None]] = {
    "think_format_reward": lambda fn: (0.0, 1.0),
    "accuracy_reward": lambda fn: (0.0, 1.0),
    "reasoning_accuracy_reward": lambda fn: (0.0, 1.0),
    "_RepetitionPenalty": lambda fn: (float(fn.max_penalty), 0.0),
    "_SoftOverlongPunishment": lambda fn: (-1.0, 0.0),
    "_CosineScaledReward": lambda fn: (
        min(fn.min_value_wrong, fn.max_value_wrong, fn.min_value_correct, fn.max_value_correct),
        max(fn.min_value_wrong, fn.max_value_wrong, fn.min_value_correct, fn.max_value_correct),
    ),
}


def declared_range(fn: Any) -> tuple[float, float] | None:
    """A reward function's ``value_range = (low, high)`` attribute (TRL's own functions: the
    range their documentation states), or None."""
    declared = getattr(fn, "value_range", None)
    if declared is None and (getattr(fn, "__module__", "") or "").startswith("trl.rewards"):
        key = fn.__name__ if inspect.isfunction(fn) else type(fn).__name__
        rule = _TRL_RANGES.get(key)
        try:
            declared = rule(fn) if rule else None
        except (AttributeError, TypeError, ValueError):
            declared = None
    try:
        low, high = (float(v) for v in declared)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        return None
    return (low, high) if math.isfinite(low) and math.isfinite(high) and low < high else None


def wants_messages(fn: Any) -> bool:
    """Whether ``fn`` annotates ``completions`` as message lists (``list[list[dict]]``), as
    TRL's own functions do; they then get message lists even for plain-string prompts."""
    try:
        parameter = inspect.signature(fn).parameters.get("completions")
    except (TypeError, ValueError):
        return False
    if parameter is None or parameter.annotation is inspect.Parameter.empty:
        return False
    annotation = parameter.annotation
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return re.sub(r"\s|typing\.", "", text).lower().startswith("list[list[dict")


def import_objective(path: str, allow_import: bool = True) -> Objective:
    """Imports a TRL-style reward function by spec (:mod:`~morl_core.objectives.specs`) and
    wraps it as an unregistered ``imported`` objective (the same object per spec and process).

    With ``allow_import`` False only modules under ``$MORL_ALLOWED_IMPORTS`` may be imported.
    Raises ``ValueError`` naming the spec for anything that cannot be imported or called.
    """
    spec = parse_spec(path)
    if not import_allowed(spec.module, allow_import):
        raise ValueError(
            f"objective {spec.text!r}: importing {spec.module!r} is not allowed here "
            f"(allow_import=False); allowed module prefixes: {', '.join(allowed_prefixes()) or 'none'}"
            " (set MORL_ALLOWED_IMPORTS)"
        )
    with _IMPORT_LOCK:
        module, objective = _IMPORTED.get(spec.text, (None, None))
        if objective is None or sys.modules.get(spec.module) is not module:  # new or reloaded
            objective = _build_imported(spec)
            _IMPORTED[spec.text] = (sys.modules.get(spec.module), objective)
    return objective


def _build_imported(spec: ObjectiveSpec) -> Objective:
    path = spec.text
    try:
        target: Any = importlib.import_module(spec.module)
    except ImportError as error:
        raise ValueError(f"cannot import objective {path!r}: {error}") from error
    except Exception as error:  # the module itself raised while importing
        raise ValueError(
            f"cannot import objective {path!r}: importing {spec.module!r} raised "
            f"{type(error).__name__}: {error}"
        ) from error
    for part in spec.attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(
                f"cannot import objective {path!r}: {spec.module!r} has no {part!r}"
            ) from None
        except Exception as error:  # a lazy module failing to import the attribute's module
            raise ValueError(
                f"cannot import objective {path!r}: {spec.module}.{part} raised "
                f"{type(error).__name__}: {error}"
            ) from None
    if not callable(target):
        raise ValueError(f"objective {path!r} is not callable ({type(target).__name__})")
    doc_source = target
    if spec.call:
        try:
            target = target(*spec.args, **dict(spec.kwargs))
        except Exception as error:  # the factory rejected its settings
            raise ValueError(
                f"objective {path!r}: {spec.attribute}(...) rejected its settings: "
                f"{type(error).__name__}: {error}"
            ) from None
        if not callable(target):
            raise ValueError(
                f"objective {path!r}: {spec.attribute}(...) returned "
                f"{type(target).__name__}, not a reward function"
            )
    doc_lines = (getattr(doc_source, "__doc__", None) or "").strip().splitlines()
    description = doc_lines[0].strip() if doc_lines else f"reward function {spec.path}"
    bounds, source = spec.value_range, "given"
    if bounds is None:
        bounds, source = declared_range(target), "declared"
    if bounds is None:
        source = "learned"
    mapping = (
        f"[{bounds[0]:g}, {bounds[1]:g}] ({source}) -> [0, 1]"
        if bounds
        else "range learned from the base model's samples -> [0, 1]"
    )
    return Objective(
        name=re.sub(r"\W+", "_", spec.path.lower()).strip("_")[:64] or "imported",
        fn=target,
        description=description[:200] or f"reward function {spec.path}",
        mapping=mapping,
        kind="imported",
        bounded=False,
        spec=spec.text,
        bounds=bounds,
        bounds_source=source,
        conversational=wants_messages(target),
    )


# --- built-in objectives with settings: "brevity(target_words=20)" ---

# a registry-style name followed by "(": meant as a built-in with settings, not a dotted path
_WITH_SETTINGS = re.compile(r"^\s*([a-z][a-z0-9_]*)\s*\(")
# settings text -> objective: one object per text and process
_BOUND: dict[str, Objective] = {}
_BOUND_LOCK = threading.Lock()


def base_name(text: str) -> str | None:
    """The registry name ``text`` is written with, registered or not: ``brevity`` for both
    ``brevity`` and ``brevity(target_words=20)``; None for a dotted path (a spec).

    >>> base_name("brevity(target_words=20)"), base_name("trl.rewards:think_format_reward")
    ('brevity', None)
    """
    if not isinstance(text, str):
        return None
    if match := _WITH_SETTINGS.match(text):
        return match.group(1)
    return None if looks_like_spec(text) else text


def settings_of(fn: Any) -> list[str]:
    """The settings a built-in reward function takes: its keyword parameters after
    ``prompts`` and ``completions`` (``**kwargs`` is not a setting)."""
    try:
        parameters = list(inspect.signature(fn).parameters.values())[2:]
    except (TypeError, ValueError):
        return []
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return [p.name for p in parameters if p.kind in keyword]


def with_settings(text: str) -> Objective:
    """A registered objective with literal keyword settings, e.g. ``brevity(target_words=20)``:
    the same objective (kind, range, scorer) whose ``fn`` has the settings bound and whose
    ``spec`` is ``text``, the same object per text and process.

    The settings are read with :func:`~morl_core.objectives.specs.parse_settings` (no code runs)
    and checked here, once: ``ValueError`` names the objective and an unknown base name (listing
    the registered ones), a setting the function does not take (listing those it does), or a
    value the function refuses (its own message). Call-time keywords of ``score`` override a
    bound setting, as for any ``functools.partial``.
    """
    text = text.strip()
    with _BOUND_LOCK:
        if text not in _BOUND:
            _BOUND[text] = _bind_settings(text)
        return _BOUND[text]


def _bind_settings(text: str) -> Objective:
    match = _WITH_SETTINGS.match(text)
    if match is None:
        raise ValueError(f"objective {text!r} is not 'name(setting=value, ...)'")
    name = match.group(1)
    if name not in OBJECTIVES:
        raise _unknown(text)
    base = OBJECTIVES[name]
    accepted = settings_of(base.fn)
    takes = f"its settings: {', '.join(accepted)}" if accepted else f"{name} takes no settings"
    if not text.endswith(")"):
        raise ValueError(
            f"objective {text!r}: settings go in '{name}(setting=value, ...)', ending in ')' "
            f"(no range); {takes}"
        )
    try:
        args, kwargs = parse_settings(text[match.end() : -1])
    except SettingsError as error:
        raise ValueError(f"objective {text!r}: {error}; {takes}") from None
    if args:
        example = f"{name}({accepted[0]}=...)" if accepted else name
        raise ValueError(f"objective {text!r}: settings must be named, e.g. {example}; {takes}")
    if not kwargs:
        raise ValueError(f"objective {text!r}: no settings given; write {name!r}, or {takes}")
    unknown = [key for key, _ in kwargs if key not in accepted]
    if unknown:
        raise ValueError(
            f"objective {text!r}: {name} has no setting {', '.join(map(repr, unknown))}; {takes}"
        )
    fn = functools.partial(base.fn, **dict(kwargs))
    try:
        fn([], [])  # the function checks its settings before it scores anything
    except Exception as error:  # noqa: BLE001 -- its message, on one line, naming the objective
        detail = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
        raise ValueError(f"objective {text!r}: {detail}") from None
    shown = ", ".join(f"{key}={value!r}" for key, value in kwargs)
    return dataclasses.replace(
        base,
        name=re.sub(r"\W+", "_", text.lower()).strip("_")[:64],
        fn=fn,
        description=f"{base.description}; {shown}",
        spec=text,
    )


def objective_text(name: str, **settings: Any) -> str:
    """How a config names registered objective ``name`` with ``settings``: the settings that
    differ from the function's defaults in ``name(setting=value, ...)``, plain ``name`` when
    none do (so a default-valued setting leaves configs as they were).

    >>> objective_text("brevity", target_words=20), objective_text("brevity", target_words=8)
    ('brevity(target_words=20)', 'brevity')
    """
    if name not in OBJECTIVES:
        raise _unknown(name)
    try:
        parameters = inspect.signature(OBJECTIVES[name].fn).parameters
    except (TypeError, ValueError):
        parameters = {}
    changed = {
        key: value
        for key, value in settings.items()
        if key not in parameters or parameters[key].default != value
    }
    if not changed:
        return name
    return f"{name}({', '.join(f'{key}={value!r}' for key, value in changed.items())})"


def objective_errors(names: Iterable[str]) -> str:
    """Why ``names`` cannot be scored, as far as can be told without importing anything ('' when
    nothing is wrong): unknown names, a built-in's bad settings, a spec's bad syntax."""
    problems = []
    for name in names:
        try:
            if base_name(name) is None:
                parse_spec(name)
            else:
                resolve(name, allow_import=False)  # a registry name: nothing is imported
        except ValueError as error:
            problems.append(str(error))
    return "; ".join(problems)


def _unknown(name: str) -> ValueError:
    return ValueError(
        f"unknown objective {name!r}; available: {', '.join(OBJECTIVES)} "
        "(or a dotted path 'package.module:function' to a TRL-style reward function; "
        "settings as in 'brevity(target_words=20)')"
    )


def resolve(name: str, allow_import: bool = True) -> Objective:
    """Finds an objective by registry name, by a registry name with settings (e.g.
    ``"brevity(target_words=20)"``, see :func:`with_settings`) or by spec (e.g.
    ``"mypkg.rewards:length"``).

    ``allow_import`` as for :func:`import_objective` (the web UI passes False unless its operator
    switched imports on); settings of a built-in import nothing, so they are always allowed. An
    unknown name raises ``ValueError`` listing the available ones.
    """
    if not isinstance(name, str):
        raise ValueError(f"objective names must be strings, got {type(name).__name__}")
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if _WITH_SETTINGS.match(name):
        return with_settings(name)
    if looks_like_spec(name):
        return import_objective(name, allow_import)
    raise _unknown(name)


def as_text(item: Any, field: str = "completions") -> str:
    """The text of a prompt or completion: a string, or the last of TRL's ``{"role", "content"}``
    messages; anything else raises ``ValueError`` naming ``field``.

    >>> as_text([{"role": "assistant", "content": "Hello."}])
    'Hello.'
    """
    if isinstance(item, str):
        return item
    if isinstance(item, Sequence) and item and isinstance(item[-1], dict):
        content = item[-1].get("content")
        if isinstance(content, str):
            return content
    raise ValueError(
        f"{field} must hold strings or lists of {{'role', 'content'}} messages, "
        f"got {type(item).__name__}: {item!r:.80}"
    )


T = TypeVar("T")


class LazyResource(Generic[T]):
    """A value built once, on first use, from any number of threads.

    Concurrent first calls load once; a loader that raises leaves it unloaded (a later call
    retries). ``loader(step)`` calls ``step("what was done")`` after each of its ``steps``
    stages; progress goes to a tqdm bar on stderr (on a terminal, if ``show_bar``) and to the
    optional callback of :meth:`get`.
    """

    def __init__(
        self,
        label: str,
        loader: Callable[[Callable[[str], None]], T],
        steps: int = 1,
        show_bar: bool = True,
    ) -> None:
        self.label = label
        self._loader = loader
        self._steps = steps
        self._show_bar = show_bar
        self._lock = threading.Lock()
        self._value: T | None = None
        self._loaded = False

    @property
    def loaded(self) -> bool:
        """Whether the value has been built."""
        return self._loaded

    def get(self, progress: ProgressCallback | None = None) -> T:
        """The value, built on the first call (reporting to ``progress(message, fraction)``)."""
        if self._loaded:
            return self._value  # type: ignore[return-value]
        with self._lock:
            if not self._loaded:
                self._value = self._load(progress)
                self._loaded = True
        return self._value  # type: ignore[return-value]

    def reset(self) -> None:
        """Forgets the value (tests use this to time or count the first load)."""
        with self._lock:
            self._value, self._loaded = None, False

    def _load(self, progress: ProgressCallback | None) -> T:
        bar = tqdm(
            total=self._steps,
            desc=f"loading {self.label}",
            disable=None if self._show_bar else True,  # None: only on a terminal
            file=sys.stderr,
            leave=False,
        )
        done = 0
        if progress is not None:
            progress(f"loading {self.label}", 0.0)

        def step(stage: str) -> None:
            nonlocal done
            done += 1
            bar.set_postfix_str(stage)
            bar.update(1)
            if progress is not None:
                progress(f"loading {self.label}: {stage}", min(done / self._steps, 1.0))

        try:
            return self._loader(step)
        finally:
            bar.close()
