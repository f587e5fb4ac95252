"""The lifecycle every executor shares: one contract (submit, status, logs, cancel, list,
resume) over where workers run, kept in step with the OS or cluster by :meth:`Executor.reconcile`:

* an active run whose worker is gone or silent past ``heartbeat_timeout`` becomes ``lost`` and
  is re-queued from its last checkpoint, at most ``max_retries`` times, then fails;
* queued runs start oldest first while fewer than ``max_workers`` are active;
* a worker that ignores a cancel request for ``cancel_grace`` seconds is killed.

Any process may reconcile (one at a time, under a data-directory lock): every executor call
does (throttled), an exiting local worker does (starting the next run), and
:func:`morl_core.jobs.executors.supervise` does on a timer. Liveness is read from the folder and
the OS/Ray, so a restarted app re-adopts running jobs. Broken folders are skipped; a worker's
final ``result.json`` is never overwritten. A subclass says how a worker is launched, checked
and killed: :mod:`morl_core.jobs.local` (a subprocess) and :mod:`morl_core.jobs.ray_jobs` (a
Ray job).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.config import RunConfig
from morl_core.jobs.files import locked
from morl_core.jobs.paths import check_run_id
from morl_core.jobs.records import ACTIVE, TERMINAL, RunState, RunStatus, write_result
from morl_core.jobs.store import BrokenRun, RunStore, StoreError
from morl_core.runfolder import CANCEL, RESULT, describe_os_error, read_json


class Executor:
    """The shared contract and lifecycle; subclasses implement ``_launch``, ``_alive``, ``_kill``.

    ``store`` (an open :class:`RunStore`) replaces ``data_dir``; ``max_retries`` and
    ``heartbeat_timeout`` default to :mod:`morl_core.settings`.
    """

    name = "base"
    max_workers: int | None = None  # None: the backend queues (Ray schedules by resources)

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        store: RunStore | None = None,
        max_retries: int | None = None,
        heartbeat_timeout: float | None = None,
        cancel_grace: float = 15.0,
    ):
        self.store = store or RunStore(data_dir)
        self.max_retries = int(max_retries if max_retries is not None else settings.max_retries())
        self.heartbeat_timeout = heartbeat_timeout or settings.heartbeat_timeout()
        self.cancel_grace = cancel_grace
        self._last_reconcile = 0.0
        self.last_error = ""

    # --- the contract ---
    def submit(self, config: RunConfig | Mapping[str, Any]) -> str:
        """Validate ``config`` (ConfigError, nothing written), queue it, start it when a slot is
        free; returns the run id."""
        if isinstance(config, RunConfig):
            config = config.validated()
        else:
            config = RunConfig.from_dict(config)
        status = self.store.create(config, executor=self.name)
        self.reconcile(force=True)
        return status.run_id

    def status(self, run_id: str) -> RunStatus:
        """The run's current status (reconciling first)."""
        check_run_id(run_id)
        self.reconcile()
        return self.store.status(run_id)

    def list(self, states: set[str] | None = None) -> list[RunStatus]:
        """Every run in the store, newest first (reconciling this executor's runs first)."""
        self.reconcile()
        return self.store.list(states)

    def logs(self, run_id: str, offset: int = 0) -> tuple[str, int]:
        """Worker log text from byte ``offset`` and the next offset."""
        return self.store.logs(run_id, offset)

    def cancel(self, run_id: str) -> RunStatus:
        """Cancel a run: a queued one at once, a running one after its current step."""
        status = self.store.status(run_id)
        if status.done:
            return status
        self.store.request_cancel(run_id)
        now = time.time()
        changes = dict(
            state=RunState.CANCELLED, finished=now, message="cancelled before it started"
        )
        ended = self.store.update(run_id, changes, only_from={RunState.QUEUED, RunState.LOST})
        if ended is not None:
            write_result(self.store.run_dir(run_id), ended, RunState.CANCELLED, ended["message"])
        else:
            self.store.update(
                run_id,
                {"state": RunState.CANCEL_REQUESTED, "cancel_time": now},
                only_from={RunState.STARTING, RunState.RUNNING},
            )
        self.reconcile(force=True)
        return self.store.status(run_id)

    def resume(self, run_id: str) -> RunStatus:
        """Queue a failed, cancelled or lost run again; it continues from its last checkpoint."""
        status = self.store.status(run_id)
        if status.state == RunState.SUCCEEDED:
            raise StoreError(f"run {run_id} already succeeded; nothing to resume")
        if status.state not in {RunState.FAILED, RunState.CANCELLED, RunState.LOST}:
            return status
        self.store.clear_cancel(run_id)
        with contextlib.suppress(FileNotFoundError):
            (self.store.run_dir(run_id) / RESULT).unlink()
        changes = dict(state=RunState.QUEUED, lost_count=0, finished=None, executor=self.name)
        changes["message"] = "resumed by request"
        self.store.update(
            run_id, changes, only_from={RunState.FAILED, RunState.CANCELLED, RunState.LOST}
        )
        self.reconcile(force=True)
        return self.store.status(run_id)

    # --- lifecycle ---
    def reconcile(self, force: bool = False) -> None:
        """Detect lost workers, retry or fail them, start queued runs, refresh the index.

        Never raises: a broken folder is marked and skipped, a run whose folder cannot be written
        waits for the next round, a store-wide storage error goes to ``last_error``.
        """
        now = time.time()
        if not force and now - self._last_reconcile < 0.5:
            return
        self._last_reconcile = now
        if self.store.read_only:
            return
        try:
            self._reconcile(now, force)
            self.last_error = ""
        except (StoreError, OSError) as exc:
            self.last_error = str(exc) if isinstance(exc, StoreError) else describe_os_error(exc)

    def _reconcile(self, now: float, force: bool) -> None:
        with locked(self.store.data_dir / "scheduler.lock", blocking=force) as got:
            if not got:  # another process is reconciling right now
                return
            live = []
            for row in self.store.index.rows({s.value for s in RunState if s not in TERMINAL}):
                try:
                    data = self.store.inspect(row["id"])
                except BrokenRun as exc:
                    self.store.mark_broken(row["id"], str(exc))
                    continue
                if data.get("executor") != self.name:
                    continue
                try:
                    live.append(self._check(data, now))
                except OSError:  # this run's folder cannot be written now: the others go on
                    continue
            active = sum(1 for d in live if d.get("state") in ACTIVE)
            for data in sorted(live, key=lambda d: d.get("created") or 0):
                if data.get("state") != RunState.QUEUED:
                    continue
                if self.max_workers is not None and active >= self.max_workers:
                    break
                try:
                    active += self._start(data)
                except OSError:
                    continue
            self.store.sync([d["run_id"] for d in live])

    def _check(self, data: dict[str, Any], now: float) -> dict[str, Any]:
        run_id, state = data["run_id"], data.get("state")
        run_dir = self.store.runs_dir / run_id
        cancel = (run_dir / CANCEL).exists()
        if state in ACTIVE:
            alive = self._alive(data)
            beat = data.get("heartbeat") or data.get("updated") or data.get("created") or now
            stale = now - beat > self.heartbeat_timeout
            hung = alive is True and stale and state != RunState.STARTING
            if alive is False or (alive is None and stale) or hung:
                if hung:
                    self._kill(data)
                reason = (
                    f"no heartbeat for {now - beat:.0f} s"
                    if stale
                    else "worker process ended without a final state"
                )
                if cancel:
                    where = f"cancelled at step {data.get('step') or 0}"
                    return self._end(
                        data, RunState.CANCELLED, f"{where} ({reason})" if stale else where
                    )
                changed = self.store.update(
                    run_id,
                    {"state": RunState.LOST, "message": reason},
                    expect_attempt=data.get("attempt"),
                    only_from=ACTIVE,
                )
                data, state = changed or data, (changed or data).get("state")
            elif cancel and alive and now - (data.get("cancel_time") or now) > self.cancel_grace:
                self._kill(data)
        if state == RunState.LOST:
            if cancel:
                return self._end(data, RunState.CANCELLED, "cancelled while lost")
            retries = int(data.get("lost_count") or 0)
            if retries >= self.max_retries:
                return self._end(
                    data,
                    RunState.FAILED,
                    f"lost {retries + 1} times ({data.get('message', '')}); "
                    f"gave up after {self.max_retries} retries",
                )
            message = (
                f"resuming from the last checkpoint (retry {retries + 1} of {self.max_retries})"
            )
            changes = dict(state=RunState.QUEUED, lost_count=retries + 1, message=message)
            changed = self.store.update(run_id, changes, only_from={RunState.LOST})
            data = changed or data
        return data

    def _end(self, data: dict[str, Any], state: RunState, message: str) -> dict[str, Any]:
        """End a run the worker could not end; a final result the worker wrote wins."""
        run_dir = self.store.runs_dir / data["run_id"]
        final = _final_result(run_dir, data.get("attempt"))
        if final is not None:  # the worker finished but died before recording its state
            state, message = RunState(final["status"]), str(final.get("message") or "")
        changes = {"state": state, "message": message, "finished": time.time()}
        if final is not None:
            changes.update(
                finished=final.get("finished") or changes["finished"],
                step=final.get("steps_done", data.get("step")),
            )
        changed = self.store.update(data["run_id"], changes, expect_attempt=data.get("attempt"))
        if changed is not None and final is None:
            write_result(run_dir, changed, state, message)
        return changed or data

    def _start(self, data: dict[str, Any]) -> int:
        run_id, attempt = data["run_id"], int(data.get("attempt") or 0) + 1
        changes = dict(state=RunState.STARTING, attempt=attempt, heartbeat=time.time(), pid=None)
        changes.update(external_id="", cancel_time=None)
        started = self.store.update(
            run_id, changes, expect_attempt=data.get("attempt"), only_from={RunState.QUEUED}
        )
        if started is None:
            return 0
        run_dir = self.store.runs_dir / run_id
        try:
            info = self._launch(run_id, run_dir, attempt, self.store.config(run_id) or {})
        except Exception as exc:  # noqa: BLE001 -- any launch failure fails the run, with the reason
            self._end(
                started, RunState.FAILED, f"could not start a worker: {type(exc).__name__}: {exc}"
            )
            return 0
        self.store.update(run_id, info, expect_attempt=attempt)
        return 1

    def worker_env(self, config: Mapping[str, Any]) -> dict[str, str]:
        """Environment for a worker: pinned threads, plus this executor's settings."""
        threads = str(config.get("threads") or 1)
        return {
            "OMP_NUM_THREADS": threads,
            "MKL_NUM_THREADS": threads,
            "OPENBLAS_NUM_THREADS": threads,
            "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1",
            settings.MAX_RETRIES: str(self.max_retries),
            settings.HEARTBEAT_TIMEOUT: str(self.heartbeat_timeout),
            **({settings.MAX_WORKERS: str(self.max_workers)} if self.max_workers else {}),
        }

    def worker_command(self, python: str, run_dir: Path, attempt: int) -> list[str]:
        """The worker's command line."""
        return [python, "-m", "morl_core.jobs.worker", str(run_dir), "--attempt", str(attempt)]

    # --- backend hooks ---
    def _launch(
        self, run_id: str, run_dir: Path, attempt: int, config: dict[str, Any]
    ) -> dict[str, Any]:
        raise NotImplementedError

    def _alive(self, data: dict[str, Any]) -> bool | None:
        """True/False when the backend knows whether the worker runs, None when it cannot tell."""
        raise NotImplementedError

    def _kill(self, data: dict[str, Any]) -> None:
        raise NotImplementedError


def _final_result(run_dir: Path, attempt: Any) -> dict[str, Any] | None:
    """The final ``result.json`` a worker wrote for ``attempt``, if there is one."""
    try:
        result = read_json(run_dir / RESULT)
    except (OSError, ValueError):
        return None
    if (
        isinstance(result, dict)
        and result.get("attempt") == attempt
        and result.get("status") in {str(s) for s in TERMINAL - {RunState.BROKEN}}
    ):
        return result
    return None
