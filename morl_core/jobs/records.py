"""The run lifecycle and the records that describe a run: states, status, result.

``status.json`` changes only through :func:`update_status`: under the run folder's lock it
re-reads the file, checks the fencing ``attempt`` number and replaces the file atomically, so a
worker declared lost cannot overwrite the status of the attempt that replaced it.

States::

    queued -> starting -> running -> succeeded | failed | cancelled
                 \\           \\-> cancel_requested -> cancelled
                  \\-> lost (no heartbeat / process gone) -> queued (next attempt) | failed

``broken`` is set by the store (a folder that cannot be trusted), in the index only, and final.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from importlib import metadata
from pathlib import Path
from typing import Any

from morl_core.jobs.files import locked
from morl_core.runfolder import RESULT, SCHEMA_VERSION, STATUS, read_json, write_json_atomic

_LOCK = ".status.lock"
_HISTORY_MAX = 200
# packages whose versions a result records
PROVENANCE = ("morl-studio", "torch", "transformers", "peft", "numpy", "safetensors", "moocore")


class RunState(StrEnum):
    """Where a run is in its lifecycle."""

    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCEL_REQUESTED = "cancel_requested"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    LOST = "lost"
    BROKEN = "broken"


TERMINAL = frozenset({RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED, RunState.BROKEN})
ACTIVE = frozenset({RunState.STARTING, RunState.RUNNING, RunState.CANCEL_REQUESTED})


@dataclass(frozen=True)
class RunStatus:
    """A read-only view of ``status.json`` (times are UNIX seconds, ``None`` until known)."""

    run_id: str
    state: RunState
    method: str = ""
    objectives: tuple[str, ...] = ()
    executor: str = "local"
    step: int = 0
    total_steps: int = 0
    samples: int = 0
    attempt: int = 0
    lost_count: int = 0
    created: float | None = None
    started: float | None = None
    finished: float | None = None
    heartbeat: float | None = None
    message: str = ""
    pid: int | None = None
    host: str = ""
    external_id: str = ""
    device: str = ""
    history: tuple[dict[str, Any], ...] = field(default=(), repr=False)

    @property
    def progress(self) -> float:
        """Fraction of steps done, in [0, 1]."""
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    @property
    def done(self) -> bool:
        """True in a terminal state (succeeded, failed, cancelled)."""
        return self.state in TERMINAL

    def running_seconds(self, now: float | None = None) -> float:
        """Seconds the run has spent running, over all its attempts: from each ``running`` in
        ``history`` to the attempt's end (succeeded, failed, cancelled, lost; a lost attempt
        ends when it is noticed), an open attempt until ``now``. Time queued, or cancelled
        and waiting for a resume, does not count (``finished - started`` does)."""
        total, since = 0.0, None
        for event in self.history:
            state = event.get("state")
            if state == RunState.RUNNING and since is None:
                since = float(event["time"])
            elif since is not None and (state in TERMINAL or state == RunState.LOST):
                total, since = total + float(event["time"]) - since, None
        if since is not None:
            total += (time.time() if now is None else now) - since
        return total

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunStatus:
        """Build from ``status.json`` content; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["state"] = RunState(values.get("state", RunState.QUEUED))
        values["objectives"] = tuple(values.get("objectives") or ())
        values["history"] = tuple(values.get("history") or ())
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready data (``state`` as its string value)."""
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["state"] = str(self.state)
        data["objectives"] = list(self.objectives)
        data["history"] = list(self.history)
        data["progress"] = self.progress
        return data


def update_status(
    run_dir: Path,
    changes: dict[str, Any],
    *,
    expect_attempt: int | None = None,
    only_from: frozenset[str] | set[str] | None = None,
    create: bool = False,
) -> dict[str, Any] | None:
    """Apply ``changes`` to ``run_dir/status.json`` under the run's lock; the new status, or
    ``None`` when a condition failed (nothing written).

    A changed ``state`` is appended to ``history``. ``expect_attempt`` is the fencing token (a
    newer attempt owns the run when it differs); ``only_from`` the states a write may start
    from; ``create`` allows a missing file (a run first recorded).
    """
    path = Path(run_dir) / STATUS
    with locked(Path(run_dir) / _LOCK):
        current = read_json(path)
        if current is None and not create:
            raise FileNotFoundError(f"no {STATUS} in {run_dir}")
        current = current or {}
        if expect_attempt is not None and current.get("attempt") != expect_attempt:
            return None
        if only_from is not None and current.get("state") not in only_from:
            return None
        now = time.time()
        new = {
            **current,
            **{k: (str(v) if isinstance(v, RunState) else v) for k, v in changes.items()},
        }
        new["updated"] = now
        state_changed = new.get("state") != current.get("state")
        if state_changed:
            event = {"time": now, "state": new["state"], "attempt": new.get("attempt", 0)}
            if new.get("message"):
                event["message"] = new["message"]
            new["history"] = [*current.get("history", []), event][-_HISTORY_MAX:]
        # Heartbeats are frequent and cheap to lose; state changes are made durable.
        write_json_atomic(path, new, fsync=state_changed)
        return new


def read_status(run_dir: Path) -> dict[str, Any] | None:
    """``status.json`` content, or ``None`` when absent."""
    return read_json(Path(run_dir) / STATUS)


# --- provenance ---
@functools.cache
def package_versions(extra: tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python and the packages a result depends on (plus ``extra`` packages)."""
    versions = {"python": sys.version.split()[0]}
    for name in (*PROVENANCE, *extra):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@functools.cache
def git_hash() -> str | None:
    """The commit of the source tree this package runs from (``-dirty`` if modified), or None."""
    root = str(Path(__file__).resolve().parents[2])

    def git(*args: str) -> str:
        run = subprocess.run(["git", "-C", root, *args], capture_output=True, text=True, timeout=5)
        run.check_returncode()
        return run.stdout.strip()

    try:
        head = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def write_result(
    run_dir: Path, status: dict[str, Any], state: RunState, message: str, **extra: Any
) -> None:
    """``result.json``, the run's final record, from its ``status`` (a worker adds its
    measurements in ``extra``; an executor writes it for a run that ended outside a worker)."""
    result = dict(schema_version=SCHEMA_VERSION, status=str(state), message=message)
    result.update({key: status.get(key) for key in ("run_id", "method", "objectives")})
    result.update(steps_done=status.get("step", 0), total_steps=status.get("total_steps", 0))
    result.update(attempt=status.get("attempt", 0), finished=time.time())
    result.update(versions=package_versions(), git=git_hash())
    write_json_atomic(Path(run_dir) / RESULT, {**result, **extra})
