"""The objective registry: what an objective is, the ``OBJECTIVES`` dict and how names resolve.

An objective is a TRL-style reward function ``fn(prompts, completions, **kwargs) -> list[float]``
plus the facts a user needs to read its numbers: a one-line description, the documented map of
its raw signal to [0, 1] (higher is better), and its kind (``real``, ``synthetic`` or
``imported``). The registry is a plain dict filled by explicit ``register()`` calls; a name that
is not in it may still be used when it is a dotted path to an importable reward function.

Also here: ``LazyResource``, the thread-safe load-once cache that the model-backed scorers use,
and ``as_text``, which accepts both plain strings and TRL's conversational message lists.
"""

from __future__ import annotations

import importlib
import re
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

RewardFunction = Callable[..., list[float]]
# progress(message, fraction_done): called while a slow scorer loads, fraction in [0, 1].
ProgressCallback = Callable[[str, float], None]

KINDS = ("real", "synthetic", "imported")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
# "pkg.mod:fn" or "pkg.mod.fn": at least one dot or colon between Python identifiers.
DOTTED_PATH_PATTERN = re.compile(
    r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*(:[A-Za-z_]\w*(\.[A-Za-z_]\w*)*|\.[A-Za-z_]\w*)$"
)


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
    """

    name: str
    fn: RewardFunction
    description: str
    mapping: str
    kind: str = "real"
    bounded: bool = True
    prepare: Callable[[ProgressCallback | None], None] | None = None

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
        if self.kind not in KINDS:
            problems.append(f"kind must be one of {KINDS}, got {self.kind!r}")
        if problems:
            raise ValueError(f"invalid objective {self.name!r}: " + "; ".join(problems))

    @property
    def value_range(self) -> str:
        """The range of values as shown in tables: ``[0, 1]`` or ``any float``."""
        return "[0, 1]" if self.bounded else "any float"


OBJECTIVES: dict[str, Objective] = {}


def register(objective: Objective) -> Objective:
    """Adds an objective to ``OBJECTIVES``.

    Args:
        objective: The objective to add (validated when it was built).

    Returns:
        The same objective, so that ``register`` can be used inline.

    Raises:
        ValueError: If the name is taken or the argument is not an ``Objective``.
    """
    if not isinstance(objective, Objective):
        raise ValueError(f"register() takes an Objective, got {type(objective).__name__}")
    if objective.name in OBJECTIVES:
        raise ValueError(f"objective {objective.name!r} is already registered")
    OBJECTIVES[objective.name] = objective
    return objective


def import_objective(path: str) -> Objective:
    """Imports a TRL-style reward function by dotted path and wraps it as an objective.

    Args:
        path: ``"package.module:function"`` or ``"package.module.function"``.

    Returns:
        An unregistered ``Objective`` of kind ``imported``; its values are not checked to lie
        in [0, 1] (``bounded`` is False) and ``None`` values become NaN in ``score``.

    Raises:
        ValueError: If the path is malformed, the module or attribute is missing, importing the
            module fails, or the attribute is not callable.
    """
    if not DOTTED_PATH_PATTERN.match(path):
        raise ValueError(
            f"objective path {path!r} is not 'package.module:function' or 'package.module.function'"
        )
    module_name, _, attribute = path.partition(":") if ":" in path else path.rpartition(".")
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as error:
        raise ValueError(f"cannot import objective {path!r}: {error}") from error
    except Exception as error:  # the module itself raised while importing
        raise ValueError(
            f"cannot import objective {path!r}: importing {module_name!r} raised "
            f"{type(error).__name__}: {error}"
        ) from error
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise ValueError(f"cannot import objective {path!r}: {module_name!r} has no {part!r}")
        target = getattr(target, part)
    if not callable(target):
        raise ValueError(f"objective {path!r} is not callable ({type(target).__name__})")
    doc_lines = (getattr(target, "__doc__", None) or "").strip().splitlines()
    description = doc_lines[0].strip() if doc_lines else f"reward function {path}"
    return Objective(
        name=re.sub(r"\W+", "_", path.lower()).strip("_")[:64] or "imported",
        fn=target,
        description=description,
        mapping="as returned by the function (not checked to lie in [0, 1])",
        kind="imported",
        bounded=False,
    )


def resolve(name: str, allow_import: bool = True) -> Objective:
    """Finds an objective by registry name or, when allowed, by dotted path.

    Args:
        name: A key of ``OBJECTIVES`` or a dotted path such as ``"mypkg.rewards:length"``.
        allow_import: Whether dotted paths may be imported. The web UI passes False unless its
            operator has switched imports on, because importing runs arbitrary code.

    Returns:
        The objective.

    Raises:
        ValueError: For an unknown name (the message lists the available ones), a dotted path
            while imports are off, or a dotted path that cannot be imported.
    """
    if not isinstance(name, str):
        raise ValueError(f"objective names must be strings, got {type(name).__name__}")
    if name in OBJECTIVES:
        return OBJECTIVES[name]
    if ":" in name or "." in name:
        if not allow_import:
            raise ValueError(
                f"objective {name!r} looks like a dotted path, but importing objectives is "
                "switched off here (allow_import=False); available: " + ", ".join(OBJECTIVES)
            )
        return import_objective(name)
    raise ValueError(
        f"unknown objective {name!r}; available: {', '.join(OBJECTIVES)} "
        "(or a dotted path 'package.module:function' to a TRL-style reward function)"
    )


def as_text(item: Any, field: str = "completions") -> str:
    """Returns the text of a prompt or completion in TRL's plain or conversational format.

    Args:
        item: A string, or a list of ``{"role": ..., "content": ...}`` messages (the text of the
            last message is used).
        field: Name of the argument the item came from, for the error message.

    Returns:
        The text.

    Raises:
        ValueError: If the item is neither.

    Example:
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

    The loader runs under a lock (so concurrent first calls load once), outside the lock
    afterwards (reads are lock-free). A loader that raises leaves the resource unloaded, so a
    later call retries. Progress goes to a tqdm bar on stderr (shown only on a terminal) and to
    an optional callback, which is how the CLI and the web UI show the slow first load.

    Args:
        label: Short name shown in the progress bar, e.g. ``"MiniLM"``.
        loader: ``loader(step)`` builds the value and calls ``step("what was done")`` at the
            end of each of its ``steps`` stages.
        steps: Number of stages the loader reports.
        show_bar: Whether to show a tqdm bar (off for loads too quick to notice).
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
        """Returns the value, building it on the first call.

        Args:
            progress: Optional ``progress(message, fraction_done)`` called during the load.
        """
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
        from tqdm.auto import tqdm

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
