"""Local-executor lifecycle details: the worker limit and queue, the retry limit, resume."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from morl_core.jobs import LocalExecutor, RunState, StoreError
from morl_core.runfolder import metric_values
from tests.jobs_support import kill_worker, stop_all, stub_config, wait_for, worker_env


@pytest.fixture
def local(tmp_path, monkeypatch):
    worker_env(monkeypatch)
    ex = LocalExecutor(tmp_path / "data", heartbeat_timeout=5, max_retries=0)
    yield ex
    stop_all(ex)


def _done(ex, run_id, timeout=60.0):
    return wait_for(lambda: (s := ex.status(run_id)).done and s, timeout)


def test_one_worker_at_a_time_queue_chains_and_queued_cancel_is_immediate(local):
    first = local.submit(stub_config(steps=8, step_seconds=0.1))
    second = local.submit(stub_config(steps=3, seed=1))
    third = local.submit(stub_config(steps=3, seed=2))
    assert local.status(second).state == RunState.QUEUED
    assert local.cancel(third).state == RunState.CANCELLED  # never started
    assert local.store.result(third)["status"] == "cancelled"
    wait_for(lambda: local.store.status(first).state == RunState.RUNNING)
    # The finishing worker starts the next queued run itself (no polling needed).
    wait_for(lambda: local.store.status(second).state == RunState.SUCCEEDED, 60)
    first_status, second_status = local.store.status(first), local.store.status(second)
    assert second_status.started >= first_status.finished - 0.5
    assert first_status.state == RunState.SUCCEEDED


def test_retry_limit_fails_the_run_with_the_reason(local):
    run_id = local.submit(stub_config(steps=200, step_seconds=0.05))
    wait_for(lambda: len(local.store.metrics(run_id)[0]) >= 2)
    kill_worker(local, run_id)
    status = _done(local, run_id)
    assert status.state == RunState.FAILED and "gave up after 0 retries" in status.message
    assert local.store.result(run_id)["status"] == "failed"


def test_resume_a_cancelled_run_continues_its_metrics(local):
    run_id = local.submit(stub_config(steps=30, step_seconds=0.05, checkpoint_every=100))
    wait_for(lambda: len(local.store.metrics(run_id)[0]) >= 4)
    local.cancel(run_id)
    assert _done(local, run_id).state == RunState.CANCELLED
    time.sleep(2.0)  # cancelled and waiting: not running time
    assert local.resume(run_id).state in (RunState.QUEUED, RunState.STARTING, RunState.RUNNING)
    status = _done(local, run_id)
    assert status.state == RunState.SUCCEEDED and status.attempt == 2
    result = local.store.result(run_id)  # the run's cost: its two attempts, not the pause
    span = result["finished"] - result["started"]
    assert 30 * 0.05 <= result["wall_seconds"] <= span - 2.0
    assert result["wall_seconds"] == pytest.approx(status.running_seconds(), abs=0.5)
    records, _ = local.store.metrics(run_id)
    assert [r["step"] for r in records] == list(range(1, 31))
    assert all("scalarized" in metric_values(r) for r in records)


def test_resume_refuses_a_succeeded_run(local):
    run_id = local.submit(stub_config(steps=2))
    assert _done(local, run_id).state == RunState.SUCCEEDED
    with pytest.raises(StoreError, match="already succeeded"):
        local.resume(run_id)


def test_a_silent_worker_is_lost_by_heartbeat(local):
    store = local.store
    run_id = store.create(stub_config(), "local").run_id
    # A worker on another host (pid unknown here) that stopped beating 100 s ago.
    store.update(
        run_id,
        {
            "state": RunState.RUNNING,
            "attempt": 1,
            "host": "elsewhere",
            "pid": 4242,
            "heartbeat": time.time() - 100,
        },
    )
    local.reconcile(force=True)
    status = store.status(run_id)
    assert status.state == RunState.FAILED and "no heartbeat for" in status.message
    assert [h["state"] for h in status.history][-2:] == ["lost", "failed"]


def test_sigterm_without_cancel_is_a_preemption_that_resumes(tmp_path, monkeypatch):
    import os
    import signal

    worker_env(monkeypatch)
    ex = LocalExecutor(tmp_path / "data", heartbeat_timeout=5)
    try:
        run_id = ex.submit(stub_config(steps=20, step_seconds=0.05, checkpoint_every=100))
        wait_for(lambda: len(ex.store.metrics(run_id)[0]) >= 3)
        os.kill(ex.store.status(run_id).pid, signal.SIGTERM)
        status = _done(ex, run_id)
        assert status.state == RunState.SUCCEEDED and status.attempt == 2
        assert "lost" in [h["state"] for h in status.history]
        assert [r["step"] for r in ex.store.metrics(run_id)[0]] == list(range(1, 21))
    finally:
        stop_all(ex)


def test_a_cancel_or_sigterm_sets_the_stop_that_long_phases_poll(tmp_path):
    """Phases between steps (EMORL's search) cannot wait for the step callback: the worker sets
    ``STOP`` when it sees the cancel marker and on SIGTERM."""
    import signal

    from morl_core.jobs.worker import Worker
    from morl_core.methods.base import STOP
    from morl_core.runfolder import CANCEL

    try:
        worker = Worker(tmp_path)
        worker._on_sigterm(signal.SIGTERM, None)
        assert STOP.is_set() and worker.preempted
        STOP.clear()
        worker = Worker(tmp_path)
        worker._last_write = time.time() + 60  # no status write in this call
        assert worker.callback(SimpleNamespace(step=1, total_steps=2, samples=4)) is True
        assert not STOP.is_set()
        (tmp_path / CANCEL).write_text("")
        assert worker.callback(SimpleNamespace(step=2, total_steps=2, samples=8)) is False
        assert STOP.is_set() and worker.cancel_seen
    finally:
        STOP.clear()


def test_running_seconds_count_each_attempt_not_the_pauses():
    from morl_core.jobs.records import RunStatus

    def at(t, state, attempt):
        return {"time": float(t), "state": state, "attempt": attempt}

    history = [
        at(0, "queued", 0), at(100, "starting", 1), at(105, "running", 1),
        at(400, "cancel_requested", 1), at(405, "cancelled", 1),  # 300 s running
        at(4000, "queued", 1), at(4000, "starting", 2), at(4002, "running", 2),
        at(4102, "lost", 2),  # noticed lost: 100 s
        at(4200, "queued", 2), at(4201, "starting", 3), at(4210, "running", 3),
    ]  # fmt: skip
    status = RunStatus(run_id="r", state=RunState.RUNNING, history=tuple(history))
    assert status.running_seconds(now=4260.0) == pytest.approx(300 + 100 + 50)
    done = RunStatus(
        run_id="r", state=RunState.SUCCEEDED, history=(*history, at(4290, "succeeded", 3))
    )
    assert done.running_seconds(now=1e9) == pytest.approx(300 + 100 + 80)  # now is not read
    assert RunStatus(run_id="r", state=RunState.QUEUED).running_seconds() == 0.0
