"""The run lifecycle and the records that describe a run: states, status, result.

``status.json`` is the mutable record of a run. It is only ever changed through
:func:`update_status`, which holds the run folder's lock, re-reads the file, checks a fencing
``attempt`` number and replaces the file atomically. A worker that was declared lost and whose run
was handed to a new attempt therefore cannot overwrite the newer attempt's status.

States::

    queued -> starting -> running -> succeeded | failed | cancelled
                 \\           \\-> cancel_requested -> cancelled
                  \\-> lost (no heartbeat / process gone) -> queued (next attempt) | failed

``broken`` is set by the store, not by this lifecycle: the run folder cannot be trusted (a
symlink, a ``status.json`` that does not parse, a missing ``config.json``). It lives in the
index only (the folder is left as found) and is final: executors skip the run.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import sys
import time
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import Any

from morl_core.jobs.files import locked
from morl_core.runfolder import RESULT, SCHEMA_VERSION, STATUS, read_json, write_json_atomic

_LOCK = ".status.lock"
_HISTORY_MAX = 200


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
    """Apply ``changes`` to ``run_dir/status.json`` under the run's lock.

    Args:
        run_dir: the run folder.
        changes: keys to set; a changed ``state`` is appended to ``history`` with a timestamp.
        expect_attempt: fencing token; when given and the file's ``attempt`` differs, nothing is
            written and ``None`` is returned (a newer attempt owns the run).
        only_from: when given, write only if the current state is one of these.
        create: allow creating the file (only when a run is first recorded).

    Returns:
        The new status dict, or ``None`` when a condition failed.
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
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    names = (
        "morl-studio",
        "torch",
        "transformers",
        "peft",
        "numpy",
        "safetensors",
        "moocore",
        *extra,
    )
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


@functools.cache
def git_hash() -> str | None:
    """The commit of the source tree this package runs from (``-dirty`` if modified), or None."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}-dirty" if dirty else head or None


def write_result(run_dir: Path, status: dict[str, Any], state: RunState, message: str) -> None:
    """``result.json`` for a run that ended outside a worker (cancelled while queued, gave up)."""
    write_json_atomic(
        Path(run_dir) / RESULT,
        {
            "schema_version": SCHEMA_VERSION,
            "run_id": status.get("run_id"),
            "status": str(state),
            "message": message,
            "method": status.get("method"),
            "objectives": status.get("objectives"),
            "steps_done": status.get("step", 0),
            "total_steps": status.get("total_steps", 0),
            "attempt": status.get("attempt", 0),
            "finished": time.time(),
            "versions": package_versions(),
            "git": git_hash(),
        },
    )
