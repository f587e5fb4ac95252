"""The worker: runs one run of the store in this process (``python -m morl_core.jobs.worker``).

Executors start it as a fresh interpreter (never a fork of the UI, never a thread). It

1. claims the run: ``starting -> running``, fenced by the attempt number it was launched with;
2. validates ``config.json`` again (the folder may have been edited or written by an old version);
3. trains through :func:`morl_core.methods.common.train_run`, as ``morl train`` does; its
   callback returns ``False`` once a cancel is requested;
4. heartbeats ``status.json`` from a thread and notices a cancel marker within one beat;
5. writes ``result.json`` and the final state; storage errors fail the run with a clear message.
   SIGTERM without a cancel request means "preempted": the method stops after its step (saving a
   checkpoint), the run is marked lost and the executor resumes it. A cancel or a SIGTERM also
   sets :data:`morl_core.methods.base.STOP`, which a long phase between steps (EMORL's search)
   polls, so it ends within one candidate instead of at the next step.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import resource
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.config import ConfigError, RunConfig
from morl_core.jobs.executors import LocalExecutor, store_of_run_folder
from morl_core.jobs.paths import RunIdError, check_run_id
from morl_core.jobs.plugins import load_plugins
from morl_core.jobs.records import RunState, RunStatus, read_status, update_status, write_result
from morl_core.methods.base import STOP
from morl_core.objectives import ObjectiveError
from morl_core.runfolder import (
    CANCEL,
    CONFIG,
    LOG,
    RecordWriter,
    describe_os_error,
    list_checkpoints,
    open_fd,
    read_json,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_SUPERSEDED = 0, 1, 2, 3
_OWNED = frozenset({RunState.RUNNING, RunState.CANCEL_REQUESTED})


def _running_seconds(run_dir: Path, now: float, started: float) -> float:
    """The run's running time over all its attempts, this one until ``now``; ``now -
    started`` when its status cannot be read."""
    try:
        current = read_status(run_dir)
    except OSError:
        current = None
    return RunStatus.from_dict(current).running_seconds(now) if current else now - started


class _Superseded(BaseException):  # noqa: N818 -- BaseException so a method's `except Exception` cannot swallow it
    """A newer attempt owns this run; stop at once without writing anything."""


def _log(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", flush=True)


class Worker:
    """Runs one run folder (protocol: the module docstring). ``attempt`` is the executor's;
    ``None`` (by hand) takes a queued or lost run over with the next attempt number."""

    def __init__(self, run_dir: Path, attempt: int | None = None, heartbeat_s: float | None = None):
        self.run_dir = Path(run_dir)
        self.attempt = attempt
        self.heartbeat_s = heartbeat_s or settings.heartbeat_s()
        self.step = self.total_steps = self.samples = 0
        self.records: RecordWriter | None = None  # the run's metrics/front files, once running
        self.cancel_seen = self.preempted = self.superseded = False
        self.storage_error: OSError | None = None
        self._stop = threading.Event()
        self._last_write = 0.0
        self.started = time.time()

    # --- lifecycle ---
    def claim(self) -> bool:
        """Move the run to ``running`` if this attempt still owns it."""
        current = read_status(self.run_dir) or {}
        if self.attempt is None:  # by hand: only a run that nobody else is running
            self.attempt = int(current.get("attempt", 0)) + 1
            taken = update_status(
                self.run_dir,
                {"attempt": self.attempt, "state": RunState.STARTING},
                only_from={RunState.QUEUED, RunState.LOST},
            )
            if taken is None:
                _log(
                    f"the run is {current.get('state')}: only queued or lost runs can be run by "
                    "hand (use `morl resume` for failed or cancelled ones)"
                )
                return False
        self.total_steps = int(current.get("total_steps") or 0)
        self.started = current.get("started") or time.time()
        changes = dict(state=RunState.RUNNING, pid=os.getpid(), host=socket.gethostname())
        changes.update(heartbeat=time.time(), started=self.started, message="")
        claimed = update_status(
            self.run_dir,
            changes,
            expect_attempt=self.attempt,
            only_from={RunState.STARTING, RunState.QUEUED},
        )
        return claimed is not None

    def run(self) -> int:
        """Claim, train, finish; returns the process exit code."""
        if not self.claim():
            current = read_status(self.run_dir) or {}
            if (
                current.get("attempt") == self.attempt
                and current.get("state") == RunState.CANCEL_REQUESTED
            ):  # cancelled while starting: this attempt still owns the run, so it ends it now
                return self.finish(RunState.CANCELLED, "cancelled before it started")
            _log(f"attempt {self.attempt} no longer owns the run; exiting")
            return EXIT_SUPERSEDED
        _log(f"worker pid {os.getpid()} attempt {self.attempt} running {self.run_dir.name}")
        if (self.run_dir / CANCEL).exists():
            return self.finish(RunState.CANCELLED, "cancelled before it started")
        from morl_core.methods.common import train_run  # torch: `morl runs` imports this module

        try:
            # paths are checked against the allow-list of the store that holds this run
            config = RunConfig.from_dict(
                read_json(self.run_dir / CONFIG) or {}, data_dir=store_of_run_folder(self.run_dir)
            )
            device = _device(config.device)
        except (ConfigError, ValueError) as exc:
            return self.finish(RunState.FAILED, str(exc))
        self.config = config
        self.total_steps = config.steps
        self.records = RecordWriter(self.run_dir, self.attempt)  # cuts killed attempts' torn tails
        for name, removed in self.records.repaired.items():
            if removed:
                _log(f"removed a torn last line ({removed} bytes) from {name}")
        self.samples = self.records.samples
        beat = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        beat.start()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._on_sigterm)
        resuming = f", resuming after step {self.last_step}" if self.last_step else ""
        _log(
            f"{config.method} on {list(config.objectives)}, {config.steps} steps, device {device}{resuming}"
        )
        update_status(self.run_dir, {"device": device}, expect_attempt=self.attempt)
        try:
            train_run(config, self.run_dir, self.callback, self.records)
        except _Superseded:
            _log("a newer attempt took the run over; exiting without writing")
            return EXIT_SUPERSEDED
        except OSError as exc:
            traceback.print_exc()
            return self.finish(RunState.FAILED, describe_os_error(exc))
        except ObjectiveError as exc:  # a reward function failed: one line names it, no traceback
            return self.finish(RunState.FAILED, str(exc))
        except Exception as exc:  # noqa: BLE001 -- any failure of the method fails the run
            traceback.print_exc()
            return self.finish(RunState.FAILED, f"{type(exc).__name__}: {exc} (traceback in {LOG})")
        finally:
            self._stop.set()
            beat.join(timeout=5)
        if self.superseded:
            return EXIT_SUPERSEDED
        if self.cancel_seen:
            return self.finish(RunState.CANCELLED, f"cancelled after step {self.last_step}")
        if self.preempted:
            message = "stopped by SIGTERM; resumes from its last checkpoint"
            changes = dict(state=RunState.LOST, step=self.last_step, message=message)
            update_status(self.run_dir, changes, expect_attempt=self.attempt)
            return EXIT_OK
        return self.finish(RunState.SUCCEEDED, "")

    @property
    def last_step(self) -> int:
        """The last step on disk in ``metrics.jsonl`` (0 before the run starts)."""
        return self.records.last_step if self.records else 0

    def finish(self, state: RunState, message: str) -> int:
        """Write ``result.json`` and the final state; returns the exit code."""
        now = time.time()
        config = getattr(self, "config", None)
        status = dict(run_id=self.run_dir.name, method=getattr(config, "method", None))
        status.update(objectives=list(getattr(config, "objectives", ())), step=self.last_step)
        status.update(total_steps=self.total_steps, attempt=self.attempt)
        measured = {
            "seed": getattr(config, "seed", None),
            "samples": self.samples,
            "final_metrics": self.records.last_metrics if self.records else {},
            "checkpoint_step": (list_checkpoints(self.run_dir) or [None])[-1],
            "started": self.started,
            "finished": now,
            # time spent running, over every attempt (not the pauses between them)
            "wall_seconds": _running_seconds(self.run_dir, now, self.started),
            # peak resident memory of this worker process (Linux reports KiB)
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        }
        # Log first: a reader that sees the final state must find this line in the log too.
        _log(f"{state}{': ' + message if message else ''}")
        try:
            write_result(self.run_dir, status, state, message, **measured)
            changes = dict(state=state, finished=now, message=message, step=self.last_step)
            changes["samples"] = self.samples
            written = update_status(self.run_dir, changes, expect_attempt=self.attempt)
        except OSError as exc:  # the disk may still be full: say so in the log at least
            _log(f"cannot record the end of the run ({state}): {describe_os_error(exc)}")
            return EXIT_FAILED
        if written is None:
            _log("a newer attempt owns the run; the end above was not recorded")
            return EXIT_SUPERSEDED
        return EXIT_OK if state != RunState.FAILED else EXIT_FAILED

    def callback(self, info: Any) -> bool:
        """Whether to go on after this step; a superseded attempt or a storage error raises
        here, before ``train_run`` records the step."""
        if self.superseded:
            raise _Superseded
        if self.storage_error is not None:
            raise self.storage_error
        now = time.time()
        self.step, self.total_steps = int(info.step), int(info.total_steps)
        self.samples = int(info.samples)
        if now - self._last_write > 0.5:
            self._write_progress()
        if (self.run_dir / CANCEL).exists():
            self._cancelled()
        return not (self.cancel_seen or self.preempted)

    def _write_progress(self) -> None:
        self._last_write = time.time()
        changes: dict[str, Any] = dict(heartbeat=self._last_write, step=self.step)
        changes.update(total_steps=self.total_steps, samples=self.samples)
        if (self.run_dir / CANCEL).exists():
            self._cancelled()
            changes["state"] = RunState.CANCEL_REQUESTED
        try:
            written = update_status(
                self.run_dir, changes, expect_attempt=self.attempt, only_from=_OWNED
            )
        except OSError as exc:
            self.storage_error = exc
            return
        if written is None:
            self.superseded = True

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            self._write_progress()

    def _cancelled(self) -> None:
        self.cancel_seen = True
        STOP.set()  # a phase between steps (EMORL's search) stops too

    def _on_sigterm(self, signum: int, frame: Any) -> None:
        self.preempted = True
        STOP.set()


def _device(requested: str) -> str:
    import torch  # heavy: only a running worker needs it, not `morl runs`

    if requested == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was requested but torch sees no GPU on this worker")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def _redirect_output(log_path: Path) -> None:
    """Send this process's stdout and stderr (C level too) to ``worker.log``."""
    fd = open_fd(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)


AUTOGROUP = Path("/proc/self/autogroup")  # Linux: the CPU share of this process's session


def lower_priority() -> int:
    """Add ``MORL_WORKER_NICE`` to this process's niceness (Unix; elsewhere a no-op) and return
    the niceness it has now, so that a trainer on the core next to the UI yields it.

    Linux with autogroup scheduling shares the CPU between sessions first and applies a
    process's niceness only within its session; a worker the executor started in a session of
    its own (it leads it) sets that session's niceness too, else its own would not count against
    the UI's."""
    step = settings.worker_nice()
    if not hasattr(os, "nice"):
        return 0
    nice = os.nice(step)
    if step and AUTOGROUP.exists() and os.getsid(0) == os.getpid():
        with contextlib.suppress(OSError):  # not permitted, or changed too often: keep going
            AUTOGROUP.write_text(str(nice))
    return nice


def main(argv: list[str] | None = None) -> int:
    """Entry point: ``python -m morl_core.jobs.worker RUN_DIR [--attempt N]``."""
    parser = argparse.ArgumentParser(prog="morl worker", description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", help="the run folder (DATA/runs/<run id>)")
    parser.add_argument(
        "--attempt", type=int, default=None, help="attempt number (executors set it)"
    )
    parser.add_argument("--no-redirect", action="store_true", help="keep output on this terminal")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir).resolve()
    try:
        check_run_id(run_dir.name)
    except RunIdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        if read_status(run_dir) is None:
            print(f"error: {run_dir} is not a run folder (no status.json)", file=sys.stderr)
            return EXIT_USAGE
        if not args.no_redirect:
            _redirect_output(run_dir / LOG)
        raw = read_json(run_dir / CONFIG) or {}
        lower_priority()
    except (OSError, ValueError) as exc:
        reason = describe_os_error(exc) if isinstance(exc, OSError) else str(exc)
        print(f"error: {run_dir} cannot be used: {reason}", file=sys.stderr)
        return EXIT_USAGE
    raw = raw if isinstance(raw, dict) else {}
    threads = raw.get("threads") if isinstance(raw.get("threads"), int) else 1
    import torch  # heavy: after the cheap checks above

    torch.set_num_threads(max(1, threads))
    worker = Worker(run_dir, args.attempt)
    try:
        load_plugins()
    except Exception as exc:  # noqa: BLE001 -- a broken plugin fails the run, with the reason
        traceback.print_exc()
        if worker.claim():
            return worker.finish(
                RunState.FAILED, f"cannot import MORL_PLUGINS: {type(exc).__name__}: {exc}"
            )
        return EXIT_SUPERSEDED
    code = worker.run()
    _start_next(run_dir)
    return code


def _start_next(run_dir: Path) -> None:
    """Local runs chain: a finishing worker starts the next queued run (no daemon needed)."""
    with contextlib.suppress(Exception):
        status = read_status(run_dir) or {}
        data_dir = store_of_run_folder(run_dir)
        if status.get("executor") != "local" or data_dir is None:
            return  # a folder outside a store: never create an index or a lock next to it
        LocalExecutor(data_dir).reconcile(force=True)


if __name__ == "__main__":
    exit_code = main()
    # Everything the run needs is on disk by now; skipping interpreter teardown (seconds for a
    # loaded torch/transformers model on 2 cores) frees the CPU for the next queued run.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)
