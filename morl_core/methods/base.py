"""The contract every MORL method follows: a spec in the registry, a train function, a Steerable.

A method file defines ``train(config, run_dir, callback) -> None`` and ``load(run_dir) ->
Steerable``. Training reports every step through ``callback(StepInfo)``; ``False`` stops it
after the step. Methods checkpoint with :mod:`morl_core.runfolder` and resume from the latest.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from morl_core.options import Option

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
        samples: prompt-completion pairs scored so far (the efficiency axis).
        metrics: flat name -> float of this step (rewards raw/normalised, KL, entropy, ...).
        stage: what is being trained, e.g. "expert_sentiment".
        front: the snapshot evaluated at this step, else None: "objectives", "preferences"
            (P, K), "points" (P, K), "stderr" (P, K).
    """

    step: int
    total_steps: int
    samples: int
    metrics: dict[str, float]
    stage: str = ""
    front: dict[str, Any] | None = None


TrainCallback = Callable[[StepInfo], bool]

# Set by the job worker once its run is cancelled or preempted (SIGTERM). Training stops at the
# callback after its step; a long phase between steps (EMORL's coefficient search: hours on
# SmolLM2) polls it and raises :class:`Stopped`, keeping what it saved for the resume.
STOP = threading.Event()


class Stopped(Exception):
    """A phase between steps gave up because :data:`STOP` was set."""


def check_stop() -> None:
    """Raise :class:`Stopped` if the worker asked the run to stop."""
    if STOP.is_set():
        raise Stopped


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


@dataclass(frozen=True)
class MethodSpec:
    """A registry entry. ``module`` holds ``train`` and ``load``; it is imported on first use."""

    name: str
    family: str
    summary: str
    paper: str
    module: str
    options: Mapping[str, Option] = field(default_factory=dict)  # see morl_core.options.Option

    @property
    def steers(self) -> bool:
        """Whether a preference changes what it serves: every family but B (DynaOpt), which
        trains one policy and spends the weights during training."""
        return self.family != "B"

    def _module(self):
        return importlib.import_module(self.module)

    def train(self, config, run_dir: Path, callback: TrainCallback = no_callback) -> None:
        return self._module().train(config, Path(run_dir), callback)

    def load(self, run_dir: Path, **kw: Any) -> Steerable:
        return self._module().load(Path(run_dir), **kw)

    def option(self, options: Mapping[str, Any], name: str) -> Any:
        """An option's value from ``options`` or its declared default."""
        return options.get(name, self.options[name].default)
