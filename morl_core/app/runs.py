"""Training from the app: a form derived from ``RunConfig``, submission with field-named errors, a
run's history read incrementally for the live view, status lines, owners, delete, logs, exports."""

from __future__ import annotations

import csv
import io
import json
import shutil
import time
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import config as cfg
from morl_core import jobs, runfolder
from morl_core.app import catalog, figures, serving
from morl_core.config import RunConfig, field_help
from morl_core.evaluation import reference_point, snapshot_hypervolume
from morl_core.jobs.paths import check_run_id
from morl_core.methods import METHODS
from morl_core.objectives.specs import allowed_prefixes, import_allowed, looks_like_spec, parse_spec
from morl_core.options import METHOD_OPTIONS
from morl_core.plots import hypervolume_curve_figure

# --- the Train form ----------------------------------------------------------------------------

MAIN_FIELDS = ("method", "objectives", "steps", "seed", "model", "device")
ADVANCED_FIELDS = (
    *("n_preferences", "eval_every", "eval_prompts"),  # the front and its evaluation
    *("batch_prompts", "k_samples", "max_new_tokens", "lr", "kl_coef"),  # one training step
    *("scalarization", "normalization", "advantage"),  # how rewards combine
    *("lora_r", "lora_alpha", "threads"),  # the adapter and CPU threads
)
_NUMBER_KINDS = {int: "int", float: "float"}


@dataclass(frozen=True)
class FormField:
    """One form widget: a ``RunConfig`` field, or a method option named ``options.NAME``."""

    name: str  # errors are reported under it
    label: str
    help: str
    kind: str  # choice, multichoice, int, float or text
    default: Any
    choices: tuple[Any, ...] = ()  # for the choice kinds
    low: float | None = None  # a method option's declared range; None: unbounded
    high: float | None = None


def form_fields(names: Sequence[str] = MAIN_FIELDS, method: str | None = None) -> list[FormField]:
    """Form widgets for ``names``, derived from ``RunConfig`` (type, default, help, choices);
    with ``method``, ``steps`` defaults to that method's plateau budget."""
    helps, hints, defaults = field_help(), typing.get_type_hints(RunConfig), RunConfig()
    choices = {"method": tuple(METHODS), "objectives": tuple(catalog.ui_objectives())}
    choices |= {"model": catalog.allowed_models(), "device": cfg.DEVICES}
    choices |= {"scalarization": cfg.SCALARIZATIONS, "normalization": cfg.NORMALIZATIONS}
    choices |= {"advantage": cfg.ADVANTAGES}
    known = {f.name for f in fields(RunConfig)}
    out = []
    for name in names:
        if name not in known:
            raise ValueError(f"{name!r} is not a RunConfig field")
        kind = "choice" if name in choices else _NUMBER_KINDS.get(hints[name], "text")
        kind = "multichoice" if name == "objectives" else kind
        default = getattr(defaults, name)
        default = list(default) if isinstance(default, tuple) else default
        default = cfg.default_steps(method) if name == "steps" and method else default
        label, options = name.replace("_", " "), choices.get(name, ())
        out.append(FormField(name, label, helps[name], kind, default, options))
    return out


def option_fields(method: str) -> list[FormField]:
    """One widget per option ``method`` declares (:data:`morl_core.options.METHOD_OPTIONS`), named
    ``options.NAME`` as the config's errors are: a bounded number, a choice, or text (paths)."""
    out = []
    for name, option in METHOD_OPTIONS.get(method, {}).items():
        kind = "choice" if option.choices else _NUMBER_KINDS.get(option.kind, "text")
        low, high = map(option.kind, option.bounds()) if kind in ("int", "float") else (None, None)
        label, text = name.replace("_", " "), f"{option.help}; {option.allowed()}"
        extra = {"choices": option.choices, "low": low, "high": high}
        out.append(FormField(f"options.{name}", label, text, kind, option.default, **extra))
    return out


def submit_run(values: Mapping[str, Any], executor=None) -> str:
    """Validate form values (``options.NAME`` keys make ``options``), submit them to ``executor``
    (default: the configured one) and return the run id; ConfigError names every bad field. Only
    allowed models and registered objectives (dotted paths import code: CLI only unless allowed)."""
    data = {k: v for k, v in values.items() if not k.startswith("options.")}
    typed = {k.removeprefix("options."): v for k, v in values.items() if k.startswith("options.")}
    if typed:  # the form's option widgets
        data["options"] = typed
    errors: dict[str, str] = {}
    if data.get("model", "embedded") not in (allowed := catalog.allowed_models()):
        errors["model"] = f"not on this server's list; allowed: {', '.join(allowed)}"
        data["model"] = "embedded"
    objectives = () if catalog.ui_allows_imports() else data.get("objectives") or ()
    if bad := [o for o in objectives if _refused(o)]:
        errors["objectives"] = (
            f"not offered here: {bad}; registered objectives, or specs of modules under "
            f"{', '.join(allowed_prefixes()) or 'none'} (other dotted paths: CLI only)"
        )
    return (executor or jobs.get_executor()).submit(RunConfig.from_dict(data, errors))


def _refused(name: object) -> bool:
    """A spec of a module off this server's allow-list (RunConfig judges any other name)."""
    if not looks_like_spec(name) or name in catalog.ui_objectives():
        return False
    try:
        return not import_allowed(parse_spec(name).module, False)
    except ValueError:
        return False  # a malformed spec: RunConfig names the problem


# --- a run's history and status lines ----------------------------------------------------------


@dataclass
class RunHistory:
    """Metric rows and front snapshots of a run folder (:mod:`morl_core.runfolder`, the same for
    ``morl train`` and the job system); :meth:`update` reads only what was appended since."""

    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    fronts: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=lambda: {"metrics": 0, "fronts": 0})

    def update(self) -> RunHistory:
        """Append new records; returns self."""
        for name, read in (("metrics", runfolder.read_metrics), ("fronts", runfolder.read_fronts)):
            new, self.offsets[name] = read(self.run_dir, self.offsets[name])
            getattr(self, name).extend(new)
        return self

    def hypervolume_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(samples, HV) per front snapshot, with the task's fixed reference point."""
        xs, hv = [], []
        for snap in self.fronts:
            pts = np.asarray(snap["points"], dtype=float)
            if pts.ndim != 2 or not len(pts):
                continue
            xs.append(snap["samples"] if snap["samples"] is not None else snap["step"])
            hv.append(snapshot_hypervolume(pts, snap.get("objectives") or pts.shape[1]))
        return np.asarray(xs, dtype=float), np.asarray(hv, dtype=float)

    def snapshot_figures(self, index: int, run_id: str, method: str) -> tuple[Any, Any, str]:
        """Front snapshot ``index``, the hypervolume curve so far and a caption for a lone point."""
        snap = self.fronts[index]
        ref = reference_point(snap["objectives"])
        title = f"front at step {snap['step']}" + (" (partial)" if snap["partial"] else "")
        front = figures.snapshot_figure(snap | {"method": method}, ref, title)
        samples, hv = self.hypervolume_curve()
        curve = hypervolume_curve_figure(
            {run_id: (samples, hv)}, methods={run_id: method}, ref=ref, x_title="training samples"
        ).update_traces(mode="lines+markers")
        lone = f"One front snapshot so far (step {snap['step']}): hypervolume {hv[0]:.3f}. "
        lone += "The line grows with each evaluation (see eval_every)."
        return front, curve.update_layout(height=300), lone if len(hv) == 1 else ""

    def downloads(self, run_id: str) -> list[tuple[str, str, str, str]]:
        """(label, data, file name, MIME type) of each export: metrics CSV, fronts CSV, JSON."""
        import pandas as pd

        metrics = pd.DataFrame(self.metrics).to_csv(index=False) if self.metrics else ""
        fronts = io.StringIO()
        writer = csv.writer(fronts)
        for i, snap in enumerate(self.fronts):  # a row per point: step, samples, w_*, scores
            names = list(snap["objectives"])
            if i == 0:
                writer.writerow(["step", "samples", *[f"w_{n}" for n in names], *names])
            for pref, point in zip(snap["preferences"], snap["points"], strict=False):
                writer.writerow([snap["step"], snap["samples"], *pref, *point])
        everything = json.dumps({"metrics": self.metrics, "fronts": self.fronts}, default=float)
        return [
            ("Metrics CSV", metrics, f"{run_id}-metrics.csv", "text/csv"),
            ("Fronts CSV", fronts.getvalue(), f"{run_id}-fronts.csv", "text/csv"),
            ("All (JSON)", everything, f"{run_id}.json", "application/json"),
        ]


def progress_eta(status, now: float | None = None) -> tuple[float, str]:
    """(fraction done, a line like ``step 12/40 - 1.3 s/step - about 36 s left``)."""
    now = time.time() if now is None else now
    fraction, state = status.progress, str(status.state)
    if status.done:
        took = (status.finished or now) - (status.started or status.created or now)
        at = "" if state == "succeeded" else f" at step {status.step}/{status.total_steps}"
        return (1.0 if state == "succeeded" else fraction), f"{state}{at} after {took:.0f} s"
    if not status.step or not status.started:
        return fraction, f"{state}: waiting for the first step"
    rate = (now - status.started) / status.step
    left = rate * max(0, status.total_steps - status.step)
    step = f"step {status.step}/{status.total_steps}"
    return fraction, f"{step} - {rate:.1f} s/step - about {left:.0f} s left"


def run_label(status) -> str:
    """The run selector's line: id, method, state and step (``running 13/60``)."""
    state = str(status.state)  # "starting" with a step: read before the worker said "running"
    state = "running" if state == "starting" and status.step else state
    return f"{status.run_id} · {status.method} · {state} {status.step}/{status.total_steps}"


def shown_message(status) -> str:
    """The status message worth a caption: none for a cancelled run (its progress line says it
    all; the job system's reason for an early cancel reads like a crash)."""
    return "" if str(status.state) == "cancelled" else serving.user_message(status.message)


# --- owners, visibility, delete, logs ------------------------------------------------------------


def _owner_file(run_id: str) -> Path:
    return catalog.app_data_dir() / "owners" / check_run_id(run_id)


def record_owner(run_id: str, owner: str) -> None:
    """Remember which app session started ``run_id`` (one small file per run in the app's data
    folder: the run folder and the job index stay as the job system writes them)."""
    path = _owner_file(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    runfolder.write_bytes_atomic(path, str(owner)[:64].encode())


def owner_of(run_id: str) -> str | None:
    """The session id that started ``run_id`` from the app, or None (CLI, bench, unknown)."""
    try:
        return _owner_file(run_id).read_text().strip() or None
    except (OSError, ValueError):
        return None


def visible_runs(statuses, owner: str, everyone: bool, current: str | None) -> list:
    """The selector's runs: everyone's or those ``owner`` started, with ``current`` (a shared
    link) first when it is not among them."""
    shown = list(statuses) if everyone else [s for s in statuses if owner_of(s.run_id) == owner]
    if current in {s.run_id for s in shown}:
        return shown
    return [s for s in statuses if s.run_id == current] + shown


def delete_run(executor, run_id: str) -> None:
    """Delete a finished run: its folder, its index row and the app's owner note; a queued or
    running one raises ValueError (cancel it first)."""
    status = executor.status(run_id)
    if not status.done:
        raise ValueError(f"run {run_id} is {status.state}: cancel it before deleting it")
    shutil.rmtree(executor.store.run_dir(run_id))
    executor.store.index.delete([run_id])
    _owner_file(run_id).unlink(missing_ok=True)


def log_tail(executor, run_id: str, chars: int = 6000) -> str:
    """The end of the run's worker log with server paths shortened (for the log viewer)."""
    lines = executor.logs(run_id, 0)[0][-max(200, min(int(chars), 100_000)) :].splitlines()
    return "\n".join(serving.user_message(x) if x.strip() else x for x in lines)
