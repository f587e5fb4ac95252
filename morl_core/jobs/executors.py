"""Executors: one contract (submit, status, logs, cancel, list, resume) over where workers run.

:class:`LocalExecutor` runs a worker as a subprocess, :class:`RayExecutor` as a Ray job; the
run-folder protocol is the same. :meth:`Executor.reconcile` holds the shared lifecycle:

* an active run whose worker is gone or silent past ``heartbeat_timeout`` becomes ``lost`` and
  is re-queued from its last checkpoint, at most ``max_retries`` times, then fails;
* queued runs start oldest first while fewer than ``max_workers`` are active;
* a worker that ignores a cancel request for ``cancel_grace`` seconds is killed.

Any process may reconcile (one at a time, under a data-directory lock): every executor call
does (throttled), an exiting local worker does (starting the next run), and :func:`supervise`
does on a timer. Liveness is read from the folder and the OS/Ray, so a restarted app re-adopts
running jobs. Broken folders are skipped; a worker's final ``result.json`` is never overwritten.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.config import RunConfig
from morl_core.jobs.files import locked
from morl_core.jobs.paths import INDEX, RUNS, check_run_id
from morl_core.jobs.records import ACTIVE, TERMINAL, RunState, RunStatus, read_status, write_result
from morl_core.jobs.store import BrokenRun, RunStore, StoreError
from morl_core.runfolder import CANCEL, LOG, RESULT, describe_os_error, open_fd, read_json

EXECUTORS = ("local", "ray")
SUPERVISE_INTERVAL = 5.0
SUPERVISE_BOUNDS = (0.2, 3600.0)


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


def _pid_is_worker(pid: int, run_id: str) -> bool:
    """Whether ``pid`` is a live (not zombie) worker of ``run_id`` on this host."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").exists():  # no procfs (macOS): best effort
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, another user's
            pass
        return True
    try:
        stat = (proc / "stat").read_text()
        cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X") and run_id in cmdline  # a reused pid has another cmdline


class LocalExecutor(Executor):
    """Workers as subprocesses here; ``max_workers`` defaults to ``$MORL_MAX_WORKERS`` or 1
    (on 2 cores a second trainer only slows both and stalls the UI)."""

    name = "local"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        max_workers: int | None = None,
        python: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(data_dir, **kwargs)
        self.max_workers = int(max_workers or settings.max_workers())
        settings.worker_nice()  # a bad value is refused here, before any worker starts
        self.python = python or sys.executable
        self._procs: dict[str, subprocess.Popen] = {}

    def _launch(
        self, run_id: str, run_dir: Path, attempt: int, config: dict[str, Any]
    ) -> dict[str, Any]:
        env = {**os.environ, **self.worker_env(config)}
        with os.fdopen(open_fd(run_dir / LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as log:
            # A fresh interpreter in its own session: never a fork of this process's state, and
            # it outlives this process (an app restart does not stop training).
            proc = subprocess.Popen(
                self.worker_command(self.python, run_dir, attempt),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
                env=env,
            )
        self._procs[run_id] = proc
        return {"pid": proc.pid, "host": socket.gethostname()}

    def reconcile(self, force: bool = False) -> None:
        """See :meth:`Executor.reconcile`; also reaps this process's finished children."""
        for run_id, proc in list(self._procs.items()):
            data = read_status(self.store.runs_dir / run_id) if proc.poll() is not None else None
            if data is not None and (
                data.get("state") not in ACTIVE or data.get("pid") != proc.pid
            ):
                self._procs.pop(run_id, None)
        super().reconcile(force)

    def _alive(self, data: dict[str, Any]) -> bool | None:
        pid = data.get("pid")
        proc = self._procs.get(data["run_id"])
        if proc is not None and proc.pid == pid:
            return proc.poll() is None
        if not pid:
            return None
        if data.get("host") and data["host"] != socket.gethostname():
            return None  # started from another machine sharing this data directory
        return _pid_is_worker(int(pid), data["run_id"])

    def _kill(self, data: dict[str, Any]) -> None:
        pid = data.get("pid")
        if pid and _pid_is_worker(int(pid), data["run_id"]):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(int(pid), signal.SIGKILL)  # the worker leads its own session


def _job_client(address: str):
    # ray is an optional extra, imported only when a Ray run is started or checked
    try:
        from ray.job_submission import JobSubmissionClient
    except ImportError as exc:
        raise ImportError(
            "the ray executor needs the optional extra: pip install 'morl-studio[ray]'"
        ) from exc
    return JobSubmissionClient(address)


class RayExecutor(Executor):
    """Workers as Ray jobs (Jobs API) on an existing cluster (``pip install 'morl-studio[ray]'``).

    ``address`` defaults to ``$RAY_ADDRESS`` (the dashboard, e.g. ``http://head-node:8265``),
    ``python`` on the nodes to ``$MORL_RAY_PYTHON``. Workers speak the same run-folder protocol,
    so **the data directory must be mounted at the same path on every node**, and the nodes
    need this package (``PYTHONPATH`` is passed on). A ``device='cuda'`` run asks for one GPU,
    others for ``config.threads`` CPUs; Ray queues by resources (no worker limit here).
    """

    name = "ray"

    def __init__(
        self,
        data_dir: str | Path | None = None,
        *,
        address: str | None = None,
        python: str | None = None,
        **kwargs: Any,
    ):
        super().__init__(data_dir, **kwargs)
        self.address = address or settings.ray_address()
        if not self.address:
            raise ValueError(
                "the ray executor needs RAY_ADDRESS (the Ray dashboard, e.g. http://127.0.0.1:8265)"
            )
        self.python = python or settings.ray_python()
        self._client = None

    @property
    def client(self):
        """The Jobs API client (created on first use)."""
        if self._client is None:
            self._client = _job_client(self.address)
        return self._client

    def _launch(
        self, run_id: str, run_dir: Path, attempt: int, config: dict[str, Any]
    ) -> dict[str, Any]:
        env = {**self.worker_env(config), **settings.worker_env()}
        job_id = self.client.submit_job(
            entrypoint=shlex.join(self.worker_command(self.python, run_dir, attempt)),
            submission_id=f"morl-{run_id}-a{attempt}",
            runtime_env={"env_vars": env},
            entrypoint_num_cpus=int(config.get("threads") or 1),
            entrypoint_num_gpus=1 if config.get("device") == "cuda" else 0,
            metadata={"morl_run_id": run_id, "attempt": str(attempt)},
        )
        return {"external_id": job_id}

    def _alive(self, data: dict[str, Any]) -> bool | None:
        job_id = data.get("external_id")
        if not job_id:
            return None
        try:
            status = self.client.get_job_status(job_id)
        except Exception:  # noqa: BLE001 -- cluster unreachable: fall back to heartbeats
            return None
        return not status.is_terminal()

    def _kill(self, data: dict[str, Any]) -> None:
        job_id = data.get("external_id")
        if job_id:
            with contextlib.suppress(Exception):  # already gone: the heartbeat decides
                self.client.stop_job(job_id)


def get_executor(
    name: str | None = None, data_dir: str | Path | None = None, **kwargs: Any
) -> Executor:
    """An executor by name: ``local`` (default, or ``$MORL_EXECUTOR``) or ``ray``."""
    name = name or settings.executor()
    if name == "local":
        return LocalExecutor(data_dir, **kwargs)
    if name == "ray":
        return RayExecutor(data_dir, **kwargs)
    raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")


def executor_for(run_id: str, data_dir: str | Path | None = None, **kwargs: Any) -> Executor:
    """The executor that owns ``run_id`` (as recorded in its status)."""
    store = RunStore(data_dir)
    return get_executor(store.status(run_id).executor, store=store, **kwargs)


def store_of_run_folder(run_dir: Path) -> Path | None:
    """The data directory holding ``run_dir`` (``DATA/runs/<id>`` with an index), else None
    (a folder outside any store gets no index or lock two levels up)."""
    run_dir = Path(run_dir)
    data_dir = run_dir.parent.parent
    if run_dir.parent.name != RUNS or not (data_dir / INDEX).is_file():
        return None
    return data_dir


def supervise(
    data_dir: str | Path | None = None,
    interval: float = SUPERVISE_INTERVAL,
    *,
    stop: threading.Event | None = None,
    iterations: int | None = None,
    log=None,
    **kwargs: Any,
) -> int:
    """Reconcile every ``interval`` seconds (``SUPERVISE_BOUNDS``, else ValueError) until
    ``stop`` is set, Ctrl-C or ``iterations`` rounds; returns 0.

    Dead local workers are noticed within ``interval``, hung ones within ``heartbeat_timeout +
    interval``; Ray runs too when ``RAY_ADDRESS`` is set. ``log`` gets one line per new problem
    (default stderr); ``kwargs`` go to each executor.
    """
    low, high = SUPERVISE_BOUNDS
    if not isinstance(interval, int | float) or not low <= interval <= high:
        raise ValueError(
            f"interval: must be a number of seconds from {low} to {high}, got {interval!r}"
        )
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    stop = stop or threading.Event()
    store = RunStore(data_dir)
    executors: list[Executor] = [LocalExecutor(store=store, **kwargs)]
    if settings.ray_address():
        try:
            executors.append(get_executor("ray", store=store, **kwargs))
        except (ImportError, ValueError) as exc:
            log(f"supervise: ray runs are not supervised: {exc}")
    rounds, last = 0, ""
    while not stop.is_set():
        for executor in executors:
            executor.reconcile(force=True)
            if executor.last_error and executor.last_error != last:
                log(f"supervise: {executor.name}: {executor.last_error}")
            last = executor.last_error or last
        rounds += 1
        if iterations is not None and rounds >= iterations:
            break
        stop.wait(interval)
    return 0
