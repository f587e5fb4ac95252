"""``streamlit run app.py`` on a free port for the real-browser tests, stopped afterwards."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def streamlit_app(
    data_dir: Path, env: Mapping[str, str] | None = None, unset: tuple[str, ...] = (),
    start_s: float = 60.0,
) -> Iterator[str]:  # fmt: skip
    """The app with job store ``data_dir``, ``env`` added and ``unset`` removed from this
    process's environment; yields its URL once its health check answers (fails the test after
    ``start_s`` seconds)."""
    port = free_port()
    environment = {k: v for k, v in os.environ.items() if k not in unset}
    environment |= {"MORL_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    environment |= dict(env or {})
    cmd = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true"]
    cmd += ["--server.port", str(port), "--server.address", "127.0.0.1"]
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + start_s
        while time.time() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=1).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        else:
            pytest.fail(f"streamlit did not start within {start_s:.0f} s")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
