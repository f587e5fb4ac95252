"""Workers as subprocesses on this machine (the default executor)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.jobs.lifecycle import Executor
from morl_core.jobs.records import ACTIVE, read_status
from morl_core.runfolder import LOG, open_fd


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
