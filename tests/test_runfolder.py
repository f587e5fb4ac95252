"""The run folder's one owner: one record format for `morl train` and the worker, atomic writes,
and the training driver's checkpoint state."""

from __future__ import annotations

import json
import os

import pytest
import torch

from morl_core import runfolder
from morl_core.app.runs import RunHistory
from morl_core.jobs import RunState, RunStore, worker
from morl_core.methods.common import DriverState
from morl_core.train_cli import run_training
from tests.jobs_support import stub_config


def _keys(path) -> list[frozenset[str]]:
    records, _ = runfolder.read_jsonl(path)
    return [frozenset(r) for r in records]


def test_morl_train_and_the_worker_write_the_same_records(tmp_path):
    config = stub_config(steps=6, eval_every=3)
    cli_dir = run_training(config, tmp_path / "cli")  # what `morl train` runs
    store = RunStore(tmp_path / "store")  # what `morl submit` runs, in a worker
    run_id = store.create(config, "test").run_id
    store.update(run_id, {"state": RunState.STARTING, "attempt": 1})
    job_dir = store.run_dir(run_id)
    assert worker.Worker(job_dir, attempt=1, heartbeat_s=0.1).run() == worker.EXIT_OK

    for name in (runfolder.METRICS, runfolder.FRONTS):
        cli, job = _keys(cli_dir / name), _keys(job_dir / name)
        assert len(cli) == len(job) == (6 if name == runfolder.METRICS else 2)
        assert cli == job, f"{name}: morl train and the worker wrote different keys"
    metrics, _ = runfolder.read_jsonl(job_dir / runfolder.METRICS)
    assert set(runfolder.METRIC_META) <= set(metrics[0])
    assert {r["attempt"] for r in metrics} == {1}
    fronts, _ = runfolder.read_jsonl(cli_dir / runfolder.FRONTS)
    assert set(runfolder.FRONT_META) | {"objectives", "points"} <= set(fronts[0])

    # the app reads both with one reader, to the same rows (up to the wall-clock time)
    histories = [RunHistory(folder).update() for folder in (cli_dir, job_dir)]
    for history in histories:
        assert [m["step"] for m in history.metrics] == [1, 2, 3, 4, 5, 6]
        assert [f["step"] for f in history.fronts] == [3, 6]
        assert history.hypervolume_curve()[0].tolist() == [24.0, 48.0]  # samples at 3 and 6
    drop = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert drop(histories[0].metrics) == drop(histories[1].metrics)
    assert drop(histories[0].fronts) == drop(histories[1].fronts)


def test_a_resumed_morl_train_counts_its_attempt_and_writes_no_duplicates(tmp_path):
    config = stub_config(steps=4, eval_every=2)
    run_training(config, tmp_path)
    with open(tmp_path / runfolder.METRICS, "ab") as handle:
        handle.write(b'{"step": 5, "sam')  # a torn line from a killed writer
    run_training(config.replace(steps=6), tmp_path)
    records, _ = runfolder.read_jsonl(tmp_path / runfolder.METRICS)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert [r["attempt"] for r in records] == [1, 1, 1, 1, 2, 2]


def test_driver_state_round_trips_in_the_on_disk_format():
    boundary = DriverState(2, method={"bandit": [1.0]})
    assert boundary.to_json() == {"stage": 2, "trainer": None, "method": {"bandit": [1.0]}}
    assert DriverState.from_json(boundary.to_json()) == boundary
    sampled = DriverState(3, {"steps_done": 4}, {}, rng={"state": 7}, offset=30)
    saved = sampled.to_json()
    # a sampled stage keeps its own keys under "conditioned"; its top-level trainer is None
    assert saved["trainer"] is None and saved["conditioned"]["offset"] == 30
    assert DriverState.from_json(json.loads(json.dumps(saved))) == sampled


def test_atomic_writes_refuse_symlinks_and_leave_no_temp_files(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "adapters").symlink_to(outside)
    with pytest.raises(runfolder.SymlinkRefused):
        runfolder.write_folder_atomic(run_dir / "adapters" / "a", lambda tmp: tmp.mkdir())
    with pytest.raises(runfolder.SymlinkRefused):
        runfolder.write_safetensors_atomic(run_dir / "adapters" / "x.safetensors", {})
    os.symlink(outside / "log", run_dir / runfolder.METRICS)
    with pytest.raises(runfolder.SymlinkRefused):
        runfolder.append_jsonl(run_dir / runfolder.METRICS, [{"step": 1}])
    assert list(outside.iterdir()) == []

    def half_written(tmp):
        tmp.mkdir()
        (tmp / "adapter_config.json").write_text("{}")
        raise OSError("killed mid-save")

    with pytest.raises(OSError, match="mid-save"):
        runfolder.write_folder_atomic(run_dir / "b", half_written)
    path = runfolder.write_safetensors_atomic(run_dir / "m.safetensors", {"w": torch.ones(2)})
    assert sorted(p.name for p in run_dir.iterdir()) == [
        "adapters",
        "m.safetensors",
        runfolder.METRICS,
    ]
    assert path.stat().st_size > 0
