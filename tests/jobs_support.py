"""Shared helpers for the job tests: stub configs, waiting, a real local Ray head, cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import tests.stub_method  # noqa: F401 -- registers "stub" in this process
from morl_core.config import RunConfig

REPO = Path(__file__).resolve().parents[1]


def worker_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers must find the stub method and beat fast enough for short tests."""
    monkeypatch.setenv("MORL_PLUGINS", "tests.stub_method")
    monkeypatch.setenv("PYTHONPATH", str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("MORL_HEARTBEAT_S", "0.3")


def stub_config(**changes: Any) -> RunConfig:
    """A stub run; ``step_seconds`` etc. go in ``options``."""
    options = {k: changes.pop(k) for k in ("step_seconds", "fail_at", "batch") if k in changes}
    base = {
        "method": "stub",
        "objectives": ["synth_nature", "synth_city"],
        "steps": 10,
        "checkpoint_every": 4,
        "eval_every": 5,
        "seed": 3,
        "options": options,
    }
    return RunConfig.from_dict({**base, **changes})


def wait_for(predicate: Callable[[], Any], timeout: float = 60.0, interval: float = 0.05) -> Any:
    """Poll until ``predicate()`` is truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s")


def kill_worker(executor, run_id: str) -> int:
    """SIGKILL the worker process of ``run_id`` (it runs on this machine for both executors)."""
    pid = executor.store.status(run_id).pid
    assert pid, "worker has not recorded its pid yet"
    os.kill(pid, signal.SIGKILL)
    return pid


def stop_all(executor) -> None:
    """Cancel what is still running and kill leftovers, so no worker outlives its test."""
    for status in executor.store.list():
        if status.done:
            continue
        executor.store.request_cancel(status.run_id)
        if status.pid:
            from morl_core.jobs.local import _pid_is_worker

            if _pid_is_worker(status.pid, status.run_id):
                os.kill(status.pid, signal.SIGKILL)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_ray_head() -> tuple[str, Callable[[], None]]:
    """Start a real single-node Ray head (dashboard + Jobs API); returns (address, stop)."""
    ray = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    if ray is None:
        pytest.skip("ray is installed but its `ray` command is not on PATH")
    temp = tempfile.mkdtemp(prefix="rayt")
    dash = _free_port()
    ports = {
        "--port": _free_port(),
        "--dashboard-port": dash,
        "--dashboard-agent-listen-port": _free_port(),
        "--dashboard-agent-grpc-port": _free_port(),
        "--runtime-env-agent-port": _free_port(),
        "--metrics-export-port": _free_port(),
        "--node-manager-port": _free_port(),
        "--object-manager-port": _free_port(),
    }
    cmd = [
        ray,
        "start",
        "--head",
        "--block",
        "--num-cpus=2",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        "--disable-usage-stats",
        f"--temp-dir={temp}",
        *[f"{k}={v}" for k, v in ports.items()],
    ]
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    log = open(Path(temp) / "head.log", "wb")  # noqa: SIM115 -- closed in stop()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    address = f"http://127.0.0.1:{dash}"

    def stop() -> None:
        with_timeout = 30
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(with_timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()
        shutil.rmtree(temp, ignore_errors=True)

    from ray.job_submission import JobSubmissionClient

    deadline = time.monotonic() + 90
    while True:
        try:
            JobSubmissionClient(address).list_jobs()
            return address, stop
        except Exception:  # noqa: BLE001 -- not up yet
            if proc.poll() is not None or time.monotonic() > deadline:
                stop()
                text = (
                    (Path(temp) / "head.log").read_text(errors="replace")[-2000:]
                    if Path(temp).exists()
                    else ""
                )
                pytest.fail(f"could not start a local Ray head:\n{text}")
            time.sleep(0.5)
