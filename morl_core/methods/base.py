"""The contract every MORL method follows: a spec in the registry, a train function, a Steerable.

A method file defines ``train(config, run_dir, callback) -> None`` and
``load(run_dir) -> Steerable``. Training reports every step through ``callback(StepInfo)``;
a callback returning ``False`` stops training after the current step (Stable-Baselines3 style).
Methods save checkpoints under ``run_dir/checkpoints`` with :mod:`morl_core.jobs.checkpoint`
and resume from the latest one when it exists, so a killed run can be continued.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

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
    """A method option: type, default, help, and optionally a range check with its wording."""

    kind: type
    default: Any
    help: str
    check: Callable[[Any], bool] | None = None
    allowed: str = ""


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry. ``module`` holds ``train`` and ``load``; it is imported on first use."""

    name: str
    family: str
    summary: str
    paper: str
    module: str
    options: Mapping[str, tuple[type, Any, str]] = field(
        default_factory=dict
    )  # name -> (type, default, help)

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
        err = {}
        for key, value in options.items():
            if key not in self.options:
                allowed = ", ".join(self.options) or "none"
                err[f"options.{key}"] = f"unknown option for {self.name}; allowed: {allowed}"
                continue
            kind = self.options[key][0]
            ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                ok = True
            if not ok:
                err[f"options.{key}"] = f"must be {kind.__name__}, got {value!r}"
                continue
            spec = Option(*self.options[key])
            if spec.check is not None and not spec.check(value):
                err[f"options.{key}"] = f"must be {spec.allowed}, got {value!r}"
        return err
