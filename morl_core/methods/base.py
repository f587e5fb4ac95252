"""The contract every MORL method follows: a spec in the registry, a train function, a Steerable.

A method file defines ``train(config, run_dir, callback) -> None`` and
``load(run_dir) -> Steerable``. Training reports every step through ``callback(StepInfo)``;
a callback returning ``False`` stops training after the current step (Stable-Baselines3 style).
Methods save checkpoints under ``run_dir/checkpoints`` with :mod:`morl_core.runfolder`
and resume from the latest one when it exists, so a killed run can be continued.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from morl_core.config import short_repr

FAMILIES = {
    "A": "fixed scalarization",
    "B": "dynamic weighting",
    "C": "preference-conditioned single policy",
    "D1": "parameter aggregation",
    "D2": "token/logit aggregation",
    "D3": "hidden-state aggregation",
    "E": "bi-level meta-policy",
}


@dataclass
class StepInfo:
    """What a monitor needs after one training step.

    Attributes:
        step: steps done so far over the whole run (1-based), across all policies it trains.
        total_steps: steps the run will do in total.
        samples: prompt-completion pairs scored so far (the efficiency axis).
        metrics: flat name -> float of this step (rewards raw/normalised, KL, entropy, ...).
        stage: what is being trained, e.g. "expert:sentiment" or "policy w=(0.5, 0.5)".
        front: front snapshot when one was evaluated at this step, else None. A dict with
            "objectives", "preferences" (P, K), "points" (P, K), "stderr" (P, K).
    """

    step: int
    total_steps: int
    samples: int
    metrics: dict[str, float]
    stage: str = ""
    front: dict[str, Any] | None = None


TrainCallback = Callable[[StepInfo], bool]


def no_callback(_: StepInfo) -> bool:
    """A callback that never stops training."""
    return True


class Steerable(Protocol):
    """A trained artifact that serves any preference."""

    objectives: tuple[str, ...]
    models_kept: int  # full or adapter models held in memory to serve a preference
    passes_per_token: int  # forward passes per generated token

    def generate(self, prompts: Sequence[str], weights: Sequence[float], **gen: Any) -> list[str]:
        """One completion per prompt for preference ``weights`` (on the simplex)."""
        ...


class Option(NamedTuple):
    """A method option: type, default, help, and the values it may take.

    Numbers are bounded: ``low``/``high`` (closed unless ``open_low``/``open_high``) are checked
    before a method sees the value. A numeric option declared without bounds gets
    :data:`DEFAULT_INT_RANGE` or :data:`DEFAULT_FLOAT_RANGE`, so nothing unbounded reaches a
    method. ``path="run"`` marks a text option that names a run folder: it is resolved to an
    absolute path, checked to exist and to lie under the allowed folders
    (:func:`morl_core.jobs.paths.allowed_roots`) when the config is built from input.
    ``check``/``allowed`` add a custom test and its wording.
    """

    kind: type
    default: Any
    help: str
    check: Callable[[Any], bool] | None = None
    allowed: str = ""
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    path: str = ""


# Bounds of numeric options that declare none (plugins): wide, but finite and int64-safe.
DEFAULT_INT_RANGE = (-(2**31), 2**31 - 1)
DEFAULT_FLOAT_RANGE = (-1e12, 1e12)
MAX_OPTION_TEXT = 4096  # characters of a text option (paths included)
PATH_KINDS = ("", "run")


def _range_text(low: float, high: float, open_low: bool, open_high: bool) -> str:
    return f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def option_value_error(spec: Option, value: Any) -> str | None:
    """Why ``value`` is not allowed for the option ``spec`` (one line), or ``None``.

    Type first (``bool`` is not a number; an ``int`` is accepted where a ``float`` is), then
    finiteness and the range, then the custom check: no comparison ever sees a wrong type.
    """
    kind = spec.kind
    if kind in (int, float):
        is_number = isinstance(value, int | float) and not isinstance(value, bool)
        if not is_number or (kind is int and not isinstance(value, int)):
            word = "an integer" if kind is int else "a number"
            return f"must be {word}, got {short_repr(value)}"
        if isinstance(value, float) and not math.isfinite(value):
            return f"must be finite, got {short_repr(value)}"
        default_low, default_high = DEFAULT_INT_RANGE if kind is int else DEFAULT_FLOAT_RANGE
        low = default_low if spec.low is None else spec.low
        high = default_high if spec.high is None else spec.high
        below = value <= low if spec.open_low else value < low
        above = value >= high if spec.open_high else value > high
        if below or above:
            word = "an integer" if kind is int else "a number"
            span = _range_text(low, high, spec.open_low, spec.open_high)
            return f"must be {word} in {span}, got {short_repr(value)}"
    elif kind is str:
        if not isinstance(value, str):
            return f"must be text, got {short_repr(value)}"
        if len(value) > MAX_OPTION_TEXT:
            return f"must be at most {MAX_OPTION_TEXT} characters, got {len(value)}"
    elif not isinstance(value, kind):
        return f"must be {kind.__name__}, got {short_repr(value)}"
    if spec.check is not None and not spec.check(value):  # a plugin's own test, after the type
        return f"must be {spec.allowed}, got {short_repr(value)}"
    return None


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry. ``module`` holds ``train`` and ``load``; it is imported on first use."""

    name: str
    family: str
    summary: str
    paper: str
    module: str
    options: Mapping[str, Option | tuple] = field(
        default_factory=dict
    )  # name -> Option (or a plain (type, default, help) tuple)

    def __post_init__(self) -> None:
        for key, declared in self.options.items():
            try:
                spec = Option(*declared)
            except TypeError:
                raise ValueError(
                    f"option {key!r} of {self.name!r} must be an Option, got {declared!r}"
                ) from None
            if not isinstance(spec.kind, type) or spec.path not in PATH_KINDS:
                raise ValueError(f"option {key!r} of {self.name!r} has a bad kind or path")

    def spec(self, name: str) -> Option:
        """The :class:`Option` declared as ``name``."""
        return Option(*self.options[name])

    def _module(self):
        return importlib.import_module(self.module)

    def train(self, config, run_dir: Path, callback: TrainCallback = no_callback) -> None:
        return self._module().train(config, Path(run_dir), callback)

    def load(self, run_dir: Path, **kw: Any) -> Steerable:
        return self._module().load(Path(run_dir), **kw)

    def option(self, options: Mapping[str, Any], name: str) -> Any:
        """An option's value from ``options`` or its default."""
        return options.get(name, self.options[name][1])

    def option_errors(self, options: Mapping[str, Any]) -> dict[str, str]:
        """Every bad option, keyed ``options.NAME``; type and range only (paths: see config)."""
        err = {}
        for key, value in options.items():
            if key not in self.options:
                allowed = ", ".join(self.options) or "none"
                err[f"options.{key}"] = f"unknown option for {self.name}; allowed: {allowed}"
                continue
            problem = option_value_error(self.spec(key), value)
            if problem:
                err[f"options.{key}"] = problem
        return err
