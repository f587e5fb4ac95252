"""Settings from the environment: defaults when unset, bounds, and a one-line error naming the variable."""

from __future__ import annotations

import os
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest

from morl_core import settings
from morl_core.jobs.executors import LocalExecutor


def test_defaults_when_unset_or_empty(monkeypatch, tmp_path):
    for name in (settings.MAX_RETRIES, settings.HEARTBEAT_S, settings.UI_MODELS):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(settings.UI_REPLICAS, "")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv(settings.DATA_DIR, raising=False)
    assert settings.max_retries() == 3 and settings.heartbeat_s() == 1.0
    assert settings.ui_models() == ("embedded",) and settings.ui_replicas() == 1
    assert settings.data_dir() == tmp_path / "morl-studio"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (settings.MAX_WORKERS, "0", "MORL_MAX_WORKERS: must be an integer in [1, 1024], got '0'"),
        (settings.UI_THREADS, "two", "MORL_UI_THREADS: must be an integer in [1, 1024], got 'two'"),
        (settings.WORKER_NICE, "20", "MORL_WORKER_NICE: must be an integer in [0, 19], got '20'"),
        (
            settings.HEARTBEAT_TIMEOUT,
            "nan",
            "MORL_HEARTBEAT_TIMEOUT: must be a number in [0.1, 86400]",
        ),
    ],
)
def test_a_bad_value_names_the_variable_and_its_bounds(monkeypatch, tmp_path, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(settings.SettingsError) as refused:
        LocalExecutor(tmp_path) if name != settings.UI_THREADS else settings.ui_threads()
    assert str(refused.value).startswith(message)
    assert isinstance(refused.value, ValueError)


def test_the_executor_reads_its_limits_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(settings.MAX_WORKERS, "3")
    monkeypatch.setenv(settings.MAX_RETRIES, "0")
    executor = LocalExecutor(tmp_path)
    assert executor.max_workers == 3 and executor.max_retries == 0
    assert executor.worker_env({"threads": 2})[settings.MAX_WORKERS] == "3"


@pytest.mark.skipif(not hasattr(os, "nice"), reason="niceness is a Unix thing")
@pytest.mark.parametrize("step", ["", "7", "0"])
def test_a_worker_lowers_its_own_priority_so_the_ui_comes_first(step):
    """``MORL_WORKER_NICE`` (default 10) is added to the worker's niceness, capped at 19 by the OS.
    Run in a child: niceness cannot be raised back."""
    code = "from morl_core.jobs.worker import lower_priority; print(lower_priority())"
    env = {**os.environ, settings.WORKER_NICE: step}
    shown = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    expected = min(19, os.nice(0) + int(step or 10))
    assert int(shown) == expected


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroup scheduling")
def test_a_worker_leading_its_session_lowers_the_sessions_share_too():
    """Under autogroup a process's niceness counts only inside its session: a worker started in
    a session of its own (as the executor starts it) sets the session's niceness; one inside
    somebody else's session (a terminal) leaves that session alone."""
    code = (
        "from pathlib import Path; from morl_core.jobs.worker import lower_priority; "
        "lower_priority(); print(Path('/proc/self/autogroup').read_text(), end='')"
    )
    env = {**os.environ, settings.WORKER_NICE: "6"}
    run = partial(subprocess.run, [sys.executable, "-c", code], env=env, capture_output=True)
    own = run(text=True, check=True, start_new_session=True).stdout
    # A process in the default (root) group, as under some CI runners, reads an empty file.
    if own.split():
        assert int(own.split()[-1]) == min(19, os.nice(0) + 6)
    before = Path("/proc/self/autogroup").read_text()
    run(text=True, check=True)
    assert Path("/proc/self/autogroup").read_text() == before
