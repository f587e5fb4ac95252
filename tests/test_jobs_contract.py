"""One contract suite, run against both executors (local subprocesses and a real local Ray head).

Every test uses the ``stub`` method (tests/stub_method.py), which workers load through
``MORL_PLUGINS``. The Ray variants skip only when ray is not installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morl_core.config import ConfigError
from morl_core.jobs import LocalExecutor, RunIdError, RunState, RunStore
from morl_core.methods import get
from morl_core.runfolder import load_latest_checkpoint, metric_values
from tests.jobs_support import (
    REPO,
    kill_worker,
    start_ray_head,
    stop_all,
    stub_config,
    wait_for,
    worker_env,
)


@pytest.fixture(scope="session")
def ray_address():
    """A real local Ray head for the session (or ``$RAY_ADDRESS`` when one is given)."""
    pytest.importorskip(
        "ray.job_submission", reason="ray is not installed: pip install 'morl-studio[ray]'"
    )
    if os.environ.get("MORL_TEST_RAY_ADDRESS"):
        yield os.environ["MORL_TEST_RAY_ADDRESS"]
        return
    address, stop = start_ray_head()
    yield address
    stop()


@pytest.fixture(params=["local", "ray"])
def executor(request, tmp_path, monkeypatch):
    worker_env(monkeypatch)
    data = tmp_path / "data"
    if request.param == "local":
        ex = LocalExecutor(data, heartbeat_timeout=5)
    else:
        from morl_core.jobs.executors import RayExecutor

        ex = RayExecutor(data, address=request.getfixturevalue("ray_address"), heartbeat_timeout=5)
    yield ex
    stop_all(ex)


def _finish(executor, run_id, timeout=60.0):
    return wait_for(lambda: (s := executor.status(run_id)).done and s, timeout)


def _steps(executor, run_id):
    records, _ = executor.store.metrics(run_id)
    return records


def test_submit_runs_to_success_with_live_metrics(executor):
    run_id = executor.submit(stub_config(steps=12, step_seconds=0.1))
    states, lags, offset, seen = set(), [], 0, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = executor.status(run_id)
        states.add(status.state)
        records, offset = executor.store.metrics(run_id, offset)
        now = time.time()
        lags += [now - r["time"] for r in records]
        seen += [r["step"] for r in records]
        if status.done:
            break
        time.sleep(0.05)
    assert status.state == RunState.SUCCEEDED, executor.logs(run_id)[0]
    assert RunState.RUNNING in states
    assert seen == list(range(1, 13))
    assert max(lags) < 2.0, f"metrics became readable {max(lags):.2f} s after being written"
    result = executor.store.result(run_id)
    assert result["status"] == "succeeded" and result["schema_version"] == 1
    assert {"versions", "git", "final_metrics"} <= set(result) and "torch" in result["versions"]
    fronts, _ = executor.store.fronts(run_id)
    assert [f["step"] for f in fronts] == [5, 10]
    assert load_latest_checkpoint(executor.store.run_dir(run_id)).step == 12
    assert "succeeded" in executor.logs(run_id)[0]


def test_cancel_while_running(executor):
    run_id = executor.submit(stub_config(steps=500, step_seconds=0.05))
    wait_for(lambda: len(_steps(executor, run_id)) >= 3)
    requested = time.monotonic()
    assert executor.cancel(run_id).state in (RunState.CANCEL_REQUESTED, RunState.CANCELLED)
    status = _finish(executor, run_id, timeout=20)
    assert status.state == RunState.CANCELLED
    assert time.monotonic() - requested < 3.0
    last = _steps(executor, run_id)[-1]["step"]
    checkpoint = load_latest_checkpoint(executor.store.run_dir(run_id))
    assert checkpoint is not None and checkpoint.step == last  # a usable last checkpoint
    assert executor.store.result(run_id)["status"] == "cancelled"


def _reference(tmp_path, config):
    """The same config trained directly, without interruption."""
    steps = []
    get("stub").train(config, tmp_path, lambda info: steps.append(info.metrics) or True)
    return steps, load_latest_checkpoint(tmp_path)


def test_sigkill_is_lost_then_resumed_equal_to_uninterrupted(executor, tmp_path):
    config = stub_config(steps=16, checkpoint_every=4, step_seconds=0.1)
    run_id = executor.submit(config)
    wait_for(lambda: len(_steps(executor, run_id)) >= 6)
    kill_worker(executor, run_id)
    status = _finish(executor, run_id)
    assert status.state == RunState.SUCCEEDED, executor.logs(run_id)[0]
    history = [h["state"] for h in status.history]
    assert "lost" in history and history.index("lost") < len(history) - 1
    assert status.attempt == 2 and status.lost_count == 1
    records = _steps(executor, run_id)
    assert [r["step"] for r in records] == list(range(1, 17))  # continuous, no duplicates
    assert {r["attempt"] for r in records} == {1, 2}
    (ref_dir := tmp_path / "reference").mkdir()
    ref_metrics, ref_checkpoint = _reference(ref_dir, config)
    assert [metric_values(r) for r in records] == ref_metrics
    final = load_latest_checkpoint(executor.store.run_dir(run_id))
    assert final.step == 16 and final.tensors["theta"].equal(ref_checkpoint.tensors["theta"])
    assert executor.store.result(run_id)["final_metrics"] == ref_metrics[-1]


def test_new_process_readopts_running_jobs(executor, tmp_path):
    env = {**os.environ}
    if executor.name == "ray":
        env["RAY_ADDRESS"] = executor.address
    cmd = [
        sys.executable,
        "-m",
        "morl_core.jobs.cli",
        "submit",
        "--executor",
        executor.name,
        "--data-dir",
        str(executor.store.data_dir),
        "--method",
        "stub",
        "--objectives",
        "synth_nature,synth_city",
        "--steps",
        "14",
        "--checkpoint-every",
        "3",
        "-o",
        "step_seconds=0.1",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    run_id = done.stdout.strip()
    # This test process is a new store process: it finds the job, sees it run, handles its loss.
    fresh = type(executor)(
        executor.store.data_dir,
        heartbeat_timeout=5,
        **({"address": executor.address} if executor.name == "ray" else {}),
    )
    wait_for(
        lambda: fresh.status(run_id).state == RunState.RUNNING and len(_steps(fresh, run_id)) >= 4
    )
    assert run_id in [s.run_id for s in fresh.list()]
    kill_worker(fresh, run_id)
    status = _finish(fresh, run_id)
    assert status.state == RunState.SUCCEEDED and status.attempt == 2
    assert [r["step"] for r in _steps(fresh, run_id)] == list(range(1, 15))


def test_fifty_readers_while_a_worker_writes(executor):
    run_id = executor.submit(stub_config(steps=40, step_seconds=0.05, eval_every=2))
    wait_for(lambda: executor.status(run_id).state == RunState.RUNNING)
    errors, reads = [], [0]
    stop = threading.Event()

    def reader() -> None:
        store = RunStore(executor.store.data_dir)  # own connections, like another process
        try:
            while not stop.is_set():
                assert run_id in [s.run_id for s in store.list()]
                status = store.status(run_id)
                assert status.state in set(RunState) and status.total_steps == 40
                records, _ = store.metrics(run_id)
                assert [r["step"] for r in records] == list(range(1, len(records) + 1))
                assert all("scalarized" in r and "time" in r for r in records)
                fronts, _ = store.fronts(run_id)
                assert all(len(f["points"]) == 1 for f in fronts)
                reads[0] += 1
        except Exception as exc:  # noqa: BLE001 -- collected and reported below
            errors.append(repr(exc))

    def writer() -> None:  # the executor writes the index while the readers read it
        while not stop.is_set():
            try:
                executor.reconcile(force=True)
            except Exception as exc:  # noqa: BLE001
                errors.append(repr(exc))
            time.sleep(0.02)

    threads = [threading.Thread(target=reader) for _ in range(50)] + [
        threading.Thread(target=writer)
    ]
    for thread in threads:
        thread.start()
    status = _finish(executor, run_id)
    stop.set()
    for thread in threads:
        thread.join(30)
    assert not errors, errors[:5]
    assert reads[0] > 50
    assert status.state == RunState.SUCCEEDED


_BAD_VALUES = st.one_of(
    st.tuples(
        st.just("steps"), st.one_of(st.integers(max_value=0), st.text(max_size=5), st.booleans())
    ),
    st.tuples(st.just("k_samples"), st.integers(max_value=1)),
    st.tuples(
        st.just("temperature"),
        st.one_of(st.floats(max_value=0.0), st.floats(min_value=11.0), st.just(float("nan"))),
    ),
    st.tuples(
        st.just("device"), st.text(max_size=8).filter(lambda s: s not in ("auto", "cpu", "cuda"))
    ),
    st.tuples(st.just("method"), st.text(max_size=8).filter(lambda s: s not in ("stub",))),
    st.tuples(
        st.just("objectives"), st.lists(st.sampled_from(["synth_nature", "brevity"]), max_size=1)
    ),
    st.tuples(
        st.just("weights"),
        st.lists(st.floats(0, 1), min_size=2, max_size=2).filter(lambda w: abs(sum(w) - 1) > 1e-3),
    ),
    st.tuples(
        st.text(min_size=1, max_size=8).filter(
            lambda s: (
                s.isidentifier()
                and s
                not in (
                    "method",
                    "objectives",
                    "steps",
                    "seed",
                    "device",
                    "options",
                    "weights",
                    "model",
                    "threads",
                    "lr",
                    "top_p",
                )
            )
        ),
        st.integers(),
    ),
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=_BAD_VALUES)
def test_bad_configs_report_fields_and_write_nothing(executor, bad):
    field, value = bad
    if field == "method":
        from morl_core.methods import METHODS

        if value in METHODS:
            return
    before = sorted(p.name for p in executor.store.runs_dir.iterdir())
    rows = executor.store.index.rows()
    data = {**stub_config().to_dict(), field: value}
    with pytest.raises(ConfigError) as info:
        executor.submit(data)
    assert field in info.value.errors, info.value.errors
    assert field in str(info.value)
    assert sorted(p.name for p in executor.store.runs_dir.iterdir()) == before
    assert executor.store.index.rows() == rows


@pytest.mark.parametrize(
    "bad_id",
    [
        "../../etc/passwd",
        "..",
        "/etc",
        "",
        "20260101-000000-abcdef01/..",
        "20260101-000000-ABCDEF01",
        "20260101-000000-abcdef01/../../x",
    ],
)
def test_path_traversal_run_ids_are_refused(executor, bad_id):
    for call in (
        executor.status,
        executor.cancel,
        executor.resume,
        executor.logs,
        executor.store.run_dir,
        executor.store.metrics,
        executor.store.result,
    ):
        with pytest.raises(RunIdError):
            call(bad_id)


def test_symlinked_run_folder_is_refused(executor, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "status.json").write_text("{}")
    (executor.store.runs_dir / "20260101-000000-abcdef01").symlink_to(outside)
    with pytest.raises(RunIdError):
        executor.store.status("20260101-000000-abcdef01")


# --- stage-exact resume with a real multi-stage method ---
# Soups on the embedded model: two experts of two steps each, a checkpoint after every step.
_SOUPS = {
    "method": "soups",
    "objectives": ["sentiment", "formality"],
    "steps": 2,
    "batch_prompts": 2,
    "k_samples": 2,
    "max_new_tokens": 4,
    "eval_prompts": 2,
    "n_preferences": 2,
    "eval_every": 0,
    "checkpoint_every": 1,
    "device": "cpu",
    "threads": 1,
    "lr": 0.01,
    "seed": 1,
}


def _comparable(metrics):
    return {k: v for k, v in metric_values(metrics).items() if not k.startswith("time/")}


@pytest.fixture(scope="module")
def soups_reference(tmp_path_factory):
    """The soups config trained in this process without interruption: metrics, front, adapters."""
    from morl_core.config import RunConfig

    folder = tmp_path_factory.mktemp("soups_reference")
    config = RunConfig.from_dict(_SOUPS)
    steps, fronts = [], []

    def record(info):
        steps.append(_comparable(info.metrics))
        if info.front is not None:
            fronts.append(info.front)
        return True

    get("soups").train(config, folder, record)
    return config, steps, fronts, folder


def _kill_params():
    # The stage-boundary kill on the local executor runs by default (about 40 s on 2 busy
    # cores); the other points and executors are marked slow to keep the default suite short.
    slow = pytest.mark.slow
    return [
        pytest.param("local", "stage_boundary"),
        pytest.param("local", "adapter_save", marks=slow),
        pytest.param("ray", "stage_boundary", marks=slow),
        pytest.param("ray", "adapter_save", marks=slow),
    ]


@pytest.mark.parametrize(("executor", "point"), _kill_params(), indirect=["executor"])
def test_kill_at_a_stage_boundary_resumes_equal_to_uninterrupted(
    executor, soups_reference, point, monkeypatch
):
    from safetensors.torch import load_file

    from morl_core.methods.common import adapter_dir

    monkeypatch.setenv("MORL_PLUGINS", "tests.stub_method,tests.kill_points")
    config, ref_steps, ref_fronts, ref_dir = soups_reference
    run_id = executor.store.create(config, executor.name).run_id
    run_dir = executor.store.run_dir(run_id)
    (run_dir / "kill_at").write_text(point)
    executor.reconcile(force=True)
    status = _finish(executor, run_id, timeout=120)
    assert (run_dir / "killed_at").exists(), (status, executor.logs(run_id)[0][-3000:])
    assert (run_dir / "killed_at").read_text() == point  # the first attempt died there
    assert status.state == RunState.SUCCEEDED, executor.logs(run_id)[0]
    assert status.attempt == 2 and status.step == status.total_steps == 4
    records = _steps(executor, run_id)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert [_comparable(r) for r in records] == ref_steps
    fronts, _ = executor.store.fronts(run_id)
    assert [f["points"] for f in fronts] == [f["points"] for f in ref_fronts]
    for name in ("expert_sentiment", "expert_formality"):
        got = load_file(adapter_dir(run_dir, name) / "adapter_model.safetensors")
        want = load_file(adapter_dir(ref_dir, name) / "adapter_model.safetensors")
        assert got.keys() == want.keys() and all(got[k].equal(want[k]) for k in got)
    assert not list((run_dir / "adapters").glob(".*.tmp"))
    assert executor.store.result(run_id)["steps_done"] == 4
