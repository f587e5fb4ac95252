"""Training from the app: a form derived from ``RunConfig``, submission to the job system with
field-named errors, and a run's history (metrics, front snapshots, hypervolume, ETA) read
incrementally from its folder for the live view.
"""

from __future__ import annotations

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
from morl_core.app.serving import (
    allowed_models,
    app_data_dir,
    ui_allows_imports,
    ui_objectives,
    user_message,
)
from morl_core.config import METHOD_OPTIONS, RunConfig, field_help
from morl_core.evaluation import snapshot_hypervolume
from morl_core.jobs.paths import check_run_id
from morl_core.methods import METHODS
from morl_core.objectives.specs import allowed_prefixes, import_allowed, looks_like_spec, parse_spec

# --- the Train page --------------------------------------------------------------------------

MAIN_FIELDS = ("method", "objectives", "steps", "seed", "model", "device")
ADVANCED_FIELDS = (
    "n_preferences",
    "eval_every",
    "eval_prompts",
    "batch_prompts",
    "k_samples",
    "max_new_tokens",
    "lr",
    "kl_coef",
    "scalarization",
    "normalization",
    "advantage",
    "lora_r",
    "lora_alpha",
    "threads",
)


@dataclass(frozen=True)
class FormField:
    """One form widget derived from a ``RunConfig`` field.

    Attributes:
        name: The field name (errors are reported under it).
        label: Widget label.
        help: The field's help text from the dataclass.
        kind: ``choice``, ``multichoice``, ``int``, ``float`` or ``text``.
        default: Default value.
        choices: Allowed values for the choice kinds.
        low: The smallest number the widget takes (a method option's declared range), or None.
        high: The largest, or None.
    """

    name: str
    label: str
    help: str
    kind: str
    default: Any
    choices: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None


def form_fields(names: Sequence[str] = MAIN_FIELDS) -> list[FormField]:
    """Form widgets for ``names``, derived from ``RunConfig`` (type, default, help, choices)."""
    helps = field_help()
    hints = typing.get_type_hints(RunConfig)
    defaults = RunConfig()
    choices: dict[str, tuple[Any, ...]] = {
        "method": tuple(METHODS),
        "objectives": tuple(ui_objectives()),
        "model": allowed_models(),
        "device": cfg.DEVICES,
        "scalarization": cfg.SCALARIZATIONS,
        "advantage": cfg.ADVANTAGES,
        "normalization": cfg.NORMALIZATIONS,
    }
    by_name = {f.name: f for f in fields(RunConfig)}
    out = []
    for name in names:
        if name not in by_name:
            raise ValueError(f"{name!r} is not a RunConfig field")
        hint = hints[name]
        if name == "objectives":
            kind = "multichoice"
        elif name in choices:
            kind = "choice"
        elif hint is int:
            kind = "int"
        elif hint is float:
            kind = "float"
        else:
            kind = "text"
        default = getattr(defaults, name)
        out.append(
            FormField(
                name=name,
                label=name.replace("_", " "),
                help=helps[name],
                kind=kind,
                default=list(default) if isinstance(default, tuple) else default,
                choices=choices.get(name, ()),
            )
        )
    return out


def option_fields(method: str) -> list[FormField]:
    """One widget per option ``method`` declares (:data:`morl_core.config.METHOD_OPTIONS`), named
    ``options.NAME`` as the config's errors are: a bounded number, a choice, or text (paths)."""
    out = []
    for name, option in METHOD_OPTIONS.get(method, {}).items():
        kind = "choice" if option.choices else {int: "int", float: "float"}.get(option.kind, "text")
        low, high = map(option.kind, option.bounds()) if kind in ("int", "float") else (None, None)
        label, text = name.replace("_", " "), f"{option.help}; {option.allowed()}"
        extra = {"choices": option.choices, "low": low, "high": high}
        out.append(FormField(f"options.{name}", label, text, kind, option.default, **extra))
    return out


def submit_run(values: Mapping[str, Any], executor=None) -> str:
    """Validate form values and submit them to the job system; returns the run id.

    The web UI only trains on the server's allowed models and registered objectives (dotted
    paths import code: CLI and config files only, unless the operator allows it). Training
    happens in a worker process started by the executor, never in the UI process.

    Args:
        values: Field name -> value; ``options.NAME`` keys (the option widgets) make ``options``.
        executor: A :class:`morl_core.jobs.Executor`; default the configured one.

    Raises:
        ConfigError: every bad field by name (nothing is submitted).
    """
    data = {k: v for k, v in values.items() if not k.startswith("options.")}
    typed = {k.removeprefix("options."): v for k, v in values.items() if k.startswith("options.")}
    if typed:  # the form's option widgets
        data["options"] = typed
    errors: dict[str, str] = {}
    if data.get("model", "embedded") not in allowed_models():
        errors["model"] = f"not on this server's list; allowed: {', '.join(allowed_models())}"
        data["model"] = "embedded"
    if not ui_allows_imports():

        def refused(name: object) -> bool:  # a spec of a module off this server's allow-list
            if not looks_like_spec(name) or name in ui_objectives():
                return False  # registered names and unknown ones: RunConfig names them
            try:
                return not import_allowed(parse_spec(name).module, False)
            except ValueError:
                return False  # a malformed spec: RunConfig names the problem

        bad = [o for o in data.get("objectives") or () if refused(o)]
        if bad:
            errors["objectives"] = (
                f"not offered here: {bad}; registered objectives, or specs of modules under "
                f"{', '.join(allowed_prefixes()) or 'none'} (other dotted paths: CLI only)"
            )
    return (executor or jobs.get_executor()).submit(RunConfig.from_dict(data, errors))


def run_folder(executor, run_id: str) -> Path:
    """The folder of ``run_id`` in the executor's store (bad ids raise ``RunIdError``)."""
    return executor.store.run_dir(run_id)


@dataclass
class RunHistory:
    """Everything the live view draws, read incrementally from a run folder.

    The records are the run folder's one format (:mod:`morl_core.runfolder`), the same for runs
    of ``morl train`` and of the job system. Call :meth:`update` on every poll: it reads only the
    bytes appended since the last call.
    """

    run_dir: Path
    metrics: list[dict[str, Any]] = field(default_factory=list)
    fronts: list[dict[str, Any]] = field(default_factory=list)
    offsets: dict[str, int] = field(default_factory=lambda: {"metrics": 0, "fronts": 0})

    def update(self) -> RunHistory:
        """Append new records; returns self."""
        new, self.offsets["metrics"] = runfolder.read_metrics(self.run_dir, self.offsets["metrics"])
        self.metrics += new
        new, self.offsets["fronts"] = runfolder.read_fronts(self.run_dir, self.offsets["fronts"])
        self.fronts += new
        return self

    def frame(self):
        """Metrics as a pandas DataFrame (one row per step)."""
        import pandas as pd

        return pd.DataFrame(self.metrics)

    def hypervolume_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """(samples, HV) per front snapshot, with the task's fixed reference point."""
        xs, hv = [], []
        for snap in self.fronts:
            pts = np.asarray(snap["points"], dtype=float)
            if pts.ndim != 2 or not len(pts):
                continue
            xs.append(snap["samples"] if snap["samples"] is not None else snap["step"])
            names = snap.get("objectives") or pts.shape[1]
            hv.append(snapshot_hypervolume(pts, names))
        return np.asarray(xs, dtype=float), np.asarray(hv, dtype=float)


def progress_eta(status, now: float | None = None) -> tuple[float, str]:
    """(fraction done, a line like ``step 12/40 - 1.3 s/step - about 36 s left``)."""
    now = time.time() if now is None else now
    fraction = status.progress
    state = str(status.state)
    if status.done:
        took = (status.finished or now) - (status.started or status.created or now)
        at = "" if state == "succeeded" else f" at step {status.step}/{status.total_steps}"
        return (1.0 if state == "succeeded" else fraction), f"{state}{at} after {took:.0f} s"
    if not status.step or not status.started:
        return fraction, f"{state}: waiting for the first step"
    rate = (now - status.started) / status.step
    left = rate * max(0, status.total_steps - status.step)
    return fraction, (
        f"step {status.step}/{status.total_steps} - {rate:.1f} s/step - about {left:.0f} s left"
    )


def run_label(status) -> str:
    """The run selector's line: id, method, state and step (``running 13/60``)."""
    state = str(status.state)
    if state == "starting" and status.step:  # a status read before the worker said "running"
        state = "running"
    return f"{status.run_id} · {status.method} · {state} {status.step}/{status.total_steps}"


def shown_message(status) -> str:
    """The status message worth a caption: a cancelled run's progress line already says it all
    (the job system's reason for an early cancel reads like a crash)."""
    return "" if str(status.state) == "cancelled" else user_message(status.message)


# --- managing runs: owners, delete, logs, exports ---------------------------------------------

LOG_TAIL_CHARS = 6000  # what the log viewer shows (the end of worker.log)


def _owner_file(run_id: str) -> Path:
    check_run_id(run_id)
    return app_data_dir() / "owners" / run_id


def record_owner(run_id: str, owner: str) -> None:
    """Remember which app session started ``run_id`` (one small file per run, in the app's
    data folder: the run folder and the job index stay as the job system writes them)."""
    path = _owner_file(run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    runfolder.write_bytes_atomic(path, str(owner)[:64].encode())


def owner_of(run_id: str) -> str | None:
    """The session id that started ``run_id`` from the app, or None (CLI, bench, unknown)."""
    try:
        return _owner_file(run_id).read_text().strip() or None
    except (OSError, ValueError):
        return None


def mine(statuses, owner: str) -> list:
    """The runs this session started, newest first."""
    return [s for s in statuses if owner_of(s.run_id) == owner]


def delete_run(executor, run_id: str) -> None:
    """Delete a finished run: its folder, its index row and the app's owner note.

    Raises:
        ValueError: the run is still queued or running (cancel it first).
    """
    status = executor.status(run_id)
    if not status.done:
        raise ValueError(f"run {run_id} is {status.state}: cancel it before deleting it")
    shutil.rmtree(executor.store.run_dir(run_id))
    executor.store.index.delete([run_id])
    _owner_file(run_id).unlink(missing_ok=True)


def log_tail(executor, run_id: str, chars: int = LOG_TAIL_CHARS) -> str:
    """The end of the run's worker log with server paths shortened (for the log viewer)."""
    text, _ = executor.logs(run_id, 0)
    text = text[-max(200, min(int(chars), 100_000)) :]
    return "\n".join(user_message(line) if line.strip() else line for line in text.splitlines())


def export_metrics_csv(history: RunHistory) -> str:
    """The run's metrics as CSV (one row per logged step)."""
    return history.frame().to_csv(index=False)


def export_json(history: RunHistory) -> str:
    """Metrics and front snapshots as one JSON document."""
    import json

    return json.dumps({"metrics": history.metrics, "fronts": history.fronts}, default=float)


def export_fronts_csv(history: RunHistory) -> str:
    """Every front snapshot point as a CSV row: step, samples, preference, objective scores."""
    import csv
    import io

    out = io.StringIO()
    writer = None
    for snap in history.fronts:
        names = list(snap["objectives"])
        if writer is None:
            writer = csv.writer(out)
            writer.writerow(["step", "samples", *[f"w_{n}" for n in names], *names])
        for pref, point in zip(snap["preferences"], snap["points"], strict=False):
            writer.writerow([snap["step"], snap["samples"], *pref, *point])
    return out.getvalue()
