"""Reliability of the job system: broken folders, the supervisor, final results, cancel while
starting, read-only and full stores, symlinks in run folders.

Each test here reproduced its defect before the fix. The read-only and full-disk tests use a
real read-only bind mount and a real tiny tmpfs; they skip where mounting is not permitted.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from morl_core.jobs import LocalExecutor, RunState, RunStore, StoreError, cli, worker
from morl_core.jobs.executors import Executor, supervise
from morl_core.runfolder import (
    CANCEL,
    LOG,
    METRICS,
    RESULT,
    SymlinkRefused,
    append_jsonl,
    repair_torn_tail,
    write_json_atomic,
)
from tests.jobs_support import stop_all, stub_config, wait_for, worker_env


class FakeExecutor(Executor):
    """An executor whose workers are never started: it records which runs it would launch."""

    name = "local"
    max_workers = 1

    def __init__(self, data_dir, **kwargs):
        super().__init__(data_dir, **kwargs)
        self.launched: list[str] = []

    def _launch(self, run_id, run_dir, attempt, config):
        self.launched.append(run_id)
        return {}

    def _alive(self, data):
        return True

    def _kill(self, data):
        pass


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def _running(store: RunStore, run_id: str, **extra) -> None:
    import socket

    store.update(
        run_id,
        {
            "state": RunState.RUNNING,
            "attempt": 1,
            "pid": _dead_pid(),
            "host": socket.gethostname(),
            "heartbeat": time.time(),
            **extra,
        },
    )


# --- a reconcile that never stalls ---
def test_bad_run_folders_are_broken_listed_and_skipped(tmp_path, capsys):
    executor = FakeExecutor(tmp_path / "data")
    store = executor.store
    unparsable, symlinked, no_config, waiting = (
        store.create(stub_config(seed=i), "local").run_id for i in range(4)
    )
    (store.runs_dir / unparsable / "status.json").write_text("{not json")
    moved = tmp_path / "elsewhere"
    (store.runs_dir / symlinked).rename(moved)
    (store.runs_dir / symlinked).symlink_to(moved)
    (store.runs_dir / no_config / "config.json").unlink()

    executor.reconcile(force=True)  # raised on the unparsable folder before

    assert executor.launched == [waiting]  # the run queued behind them was started
    listed = {s.run_id: s for s in store.list()}
    assert listed[waiting].state == RunState.STARTING
    reasons = {
        unparsable: "status.json does not parse",
        symlinked: "the run folder is a symlink",
        no_config: "config.json is missing",
    }
    for run_id, reason in reasons.items():
        assert listed[run_id].state == RunState.BROKEN and reason in listed[run_id].message
    assert store.rebuild_index() == 4  # rebuilding keeps them, as broken
    assert {s.run_id for s in store.list({"broken"})} == set(reasons)
    assert cli.main(["runs", "--data-dir", str(store.data_dir)]) == 0
    out = capsys.readouterr().out
    for run_id, reason in reasons.items():
        assert f"{run_id}: broken: " in out and reason in out


def test_rebuild_index_survives_a_number_sqlite_cannot_hold(tmp_path):
    store = RunStore(tmp_path / "data")
    good = store.create(stub_config(), "local").run_id
    bad = store.create(stub_config(seed=9), "local").run_id
    status_path = store.runs_dir / bad / "status.json"
    data = json.loads(status_path.read_text())
    status_path.write_text(json.dumps({**data, "total_steps": 2**63}))
    assert store.rebuild_index() == 2  # raised OverflowError every time before
    states = {s.run_id: s for s in store.list()}
    assert states[good].state == RunState.QUEUED
    assert states[bad].state == RunState.BROKEN and "int64" in states[bad].message


# --- the supervisor ---
def test_supervisor_notices_a_dead_worker_within_its_interval(tmp_path):
    store = RunStore(tmp_path / "data")
    run_id = store.create(stub_config(), "local").run_id
    stop = threading.Event()
    thread = threading.Thread(
        target=supervise,
        args=(store.data_dir, 0.3),
        kwargs={"stop": stop, "max_retries": 0, "log": lambda line: None},
    )
    thread.start()
    try:
        time.sleep(0.5)
        _running(store, run_id)  # the worker dies: nobody calls the CLI or the app
        died = time.monotonic()
        wait_for(lambda: store.status(run_id).state == RunState.FAILED, timeout=10)
        noticed = time.monotonic() - died
    finally:
        stop.set()
        thread.join(10)
    assert noticed < 0.3 + 1.5, f"noticed after {noticed:.2f} s"
    assert "gave up after 0 retries" in store.status(run_id).message


def test_supervise_interval_is_bounded(tmp_path, capsys):
    code = cli.main(["supervise", "--data-dir", str(tmp_path / "d"), "--interval", "0"])
    assert code == 2 and "interval" in capsys.readouterr().err


# --- the executor never overwrites a worker's final result ---
def test_end_keeps_the_final_result_a_worker_wrote(tmp_path):
    executor = FakeExecutor(tmp_path / "data")
    store = executor.store
    run_id = store.create(stub_config(), "local").run_id
    _running(store, run_id, state=RunState.CANCEL_REQUESTED)
    final = {
        "status": "cancelled",
        "message": "cancelled after step 8",
        "attempt": 1,
        "steps_done": 8,
        "final_metrics": {"scalarized": -0.5},
        "wall_seconds": 12.0,
        "finished": time.time(),
    }
    write_json_atomic(store.runs_dir / run_id / RESULT, final)
    (store.runs_dir / run_id / CANCEL).touch()
    executor._alive = lambda data: False  # the worker died after writing result.json
    executor.reconcile(force=True)
    status = store.status(run_id)
    assert status.state == RunState.CANCELLED and status.message == "cancelled after step 8"
    assert store.result(run_id) == final


def test_a_cancelled_run_whose_worker_ended_reads_cancelled_at_its_step(tmp_path):
    executor = FakeExecutor(tmp_path / "data", heartbeat_timeout=60)
    store = executor.store
    quiet, silent = (store.create(stub_config(), "local").run_id for _ in range(2))
    _running(store, quiet, state=RunState.CANCEL_REQUESTED, step=4)
    _running(store, silent, state=RunState.CANCEL_REQUESTED, step=7, heartbeat=time.time() - 600)
    for run_id in (quiet, silent):
        (store.runs_dir / run_id / CANCEL).touch()
    executor._alive = lambda data: False  # both workers exited without writing result.json
    executor.reconcile(force=True)
    assert store.status(quiet).message == "cancelled at step 4"
    assert store.status(silent).message.startswith("cancelled at step 7 (no heartbeat for 6")
    assert store.result(quiet)["status"] == "cancelled"


def test_cancel_while_starting_resolves_without_a_later_command(tmp_path, monkeypatch):
    worker_env(monkeypatch)
    executor = LocalExecutor(tmp_path / "data", heartbeat_timeout=30)
    try:
        run_id = executor.store.create(stub_config(steps=3), "local").run_id
        executor.reconcile(force=True)
        assert executor.store.status(run_id).state == RunState.STARTING
        executor.cancel(run_id)
        # Only reads from here on: no executor call may be needed to end the run.
        wait_for(lambda: executor.store.status(run_id).state == RunState.CANCELLED, 60)
        history = [h["state"] for h in executor.store.status(run_id).history]
        assert "running" not in history  # it was cancelled while starting
        assert executor.store.result(run_id)["status"] == "cancelled"
    finally:
        stop_all(executor)


# --- symlinks inside run folders ---
def test_run_folder_files_that_are_symlinks_are_refused(tmp_path):
    store = RunStore(tmp_path / "data")
    run_id = store.create(stub_config(), "local").run_id
    run_dir = store.runs_dir / run_id
    outside = tmp_path / "outside.txt"
    outside.write_text("precious, no newline at the end")
    for name in (LOG, METRICS):
        (run_dir / name).symlink_to(outside)
    with pytest.raises(StoreError, match="symlink"):
        store.logs(run_id)
    with pytest.raises(StoreError, match="symlink"):
        store.metrics(run_id)
    with pytest.raises(SymlinkRefused):
        append_jsonl(run_dir / METRICS, [{"step": 1}])
    with pytest.raises(SymlinkRefused):
        repair_torn_tail(run_dir / METRICS)  # would have truncated the outside file
    assert outside.read_text() == "precious, no newline at the end"
    (run_dir / CANCEL).symlink_to(tmp_path / "created-outside")
    with pytest.raises(SymlinkRefused):
        store.request_cancel(run_id)
    assert not (tmp_path / "created-outside").exists()


def test_worker_on_a_folder_outside_the_store_creates_no_index_or_lock(tmp_path, monkeypatch):
    worker_env(monkeypatch)
    store = RunStore(tmp_path / "data")
    run_id = store.create(stub_config(steps=2), "local").run_id
    foreign = tmp_path / "x" / "a" / "b" / run_id
    foreign.parent.mkdir(parents=True)
    (store.runs_dir / run_id).rename(foreign)
    assert worker.main([str(foreign), "--no-redirect"]) == 0
    assert json.loads((foreign / "status.json").read_text())["state"] == "succeeded"
    assert sorted(p.name for p in (tmp_path / "x" / "a").iterdir()) == ["b"]


# --- read-only and full stores (real mounts) ---
@contextlib.contextmanager
def _mount(*args: str):
    target = args[-1]
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()}); needs root in a privileged box")
    try:
        yield Path(target)
    finally:
        subprocess.run(["umount", "-l", target], capture_output=True)


def _filled_store(path: Path) -> tuple[str, str]:
    store = RunStore(path)
    done = store.create(stub_config(), "local").run_id
    queued = store.create(stub_config(seed=5), "local").run_id
    store.update(done, {"state": RunState.SUCCEEDED, "step": 10})
    append_jsonl(store.runs_dir / done / METRICS, [{"step": 1, "scalarized": 0.5}])
    (store.runs_dir / done / LOG).write_text("hello from the worker\n")
    del store
    return done, queued


def test_a_read_only_store_can_still_be_read(tmp_path, capsys):
    source = tmp_path / "data"
    done, queued = _filled_store(source)
    target = tmp_path / "ro"
    target.mkdir()
    with _mount("--bind", str(source), str(target)):
        remounted = subprocess.run(
            ["mount", "-o", "remount,ro,bind", str(target)], capture_output=True, text=True
        )
        if remounted.returncode != 0:
            pytest.skip(f"cannot remount read-only: {remounted.stderr.strip()}")
        store = RunStore(target)
        assert store.read_only and "read-only file system" in store.read_only_reason
        assert {s.run_id for s in store.list()} == {done, queued}
        assert store.status(done).state == RunState.SUCCEEDED
        assert store.metrics(done)[0][0]["scalarized"] == 0.5
        data = ["--data-dir", str(target)]
        assert cli.main(["runs", *data]) == 0
        assert cli.main(["status", done, *data]) == 0
        assert cli.main(["logs", done, *data]) == 0
        out = capsys.readouterr().out
        assert done in out and queued in out and "hello from the worker" in out
        assert cli.main(["cancel", queued, *data]) == 1
        assert "can only be read" in capsys.readouterr().err


def test_a_full_disk_says_disk_full(tmp_path, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    with _mount("-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)):
        done, queued = _filled_store(mount / "data")
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as handle:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        data = ["--data-dir", str(mount / "data")]
        code = cli.main(
            ["submit", *data, "--method", "stub", "--objectives", "synth_nature,synth_city"]
        )
        err = capsys.readouterr().err
        assert code == 1 and "disk full" in err and "disk I/O error" not in err
        assert cli.main(["runs", *data]) == 0
        assert cli.main(["status", done, *data]) == 0
        out = capsys.readouterr().out
        assert done in out and queued in out


def test_store_error_translation_names_a_full_disk(tmp_path, monkeypatch):
    import sqlite3

    from morl_core.jobs.index import describe_sqlite_error

    class Stats:
        f_bavail, f_frsize, f_files, f_favail = 0, 4096, 100, 10

    monkeypatch.setattr(os, "statvfs", lambda path: Stats)
    message = describe_sqlite_error(sqlite3.OperationalError("disk I/O error"), tmp_path)
    assert "disk full" in message and "I/O" not in message
