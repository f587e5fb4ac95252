"""Run store, run files, checkpoints, the worker in-process, and the job CLI (no executors)."""

from __future__ import annotations

import argparse
import errno
import json
import os
import sys

import pytest
import torch

from morl_core import runfolder
from morl_core.config import ConfigError
from morl_core.jobs import (
    RunIdError,
    RunState,
    RunStore,
    StoreError,
    check_run_id,
    cli,
    paths,
    worker,
)
from morl_core.jobs.plugins import load_plugins, plugin_modules
from morl_core.jobs.records import update_status
from morl_core.runfolder import (
    append_jsonl,
    metric_values,
    read_jsonl,
    repair_torn_tail,
    write_json_atomic,
)
from tests.jobs_support import stub_config


# --- files ---
def test_jsonl_reader_tolerates_a_torn_last_line(tmp_path):
    path = tmp_path / "m.jsonl"
    append_jsonl(path, [{"step": 1}, {"step": 2}])
    with open(path, "ab") as handle:
        handle.write(b'{"step": 3, "x"')  # a writer killed mid-line
    records, offset = read_jsonl(path)
    assert [r["step"] for r in records] == [1, 2]
    assert read_jsonl(path, offset) == ([], offset)
    assert repair_torn_tail(path) == len(b'{"step": 3, "x"')
    append_jsonl(path, [{"step": 3}])
    assert [r["step"] for r in read_jsonl(path)[0]] == [1, 2, 3]
    assert read_jsonl(path, offset)[0] == [{"step": 3}]


def test_atomic_json_leaves_no_temp_files(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"x": 1})
    write_json_atomic(tmp_path / "a.json", {"x": 2})
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_status_updates_are_fenced_by_attempt(tmp_path):
    update_status(tmp_path, {"state": "queued", "attempt": 1}, create=True)
    assert update_status(tmp_path, {"state": "running"}, expect_attempt=2) is None
    assert update_status(tmp_path, {"state": "running"}, only_from={"starting"}) is None
    new = update_status(tmp_path, {"state": "running"}, expect_attempt=1)
    assert [h["state"] for h in new["history"]] == ["queued", "running"]


# --- paths ---
def test_data_dir_default_and_override(monkeypatch, tmp_path):
    monkeypatch.delenv("MORL_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.default_data_dir() == tmp_path / "xdg" / "morl-studio"
    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "d"))
    assert RunStore().data_dir == (tmp_path / "d").resolve()
    assert RunStore(tmp_path / "arg").data_dir == (tmp_path / "arg").resolve()


def test_run_ids_are_generated_and_checked():
    run_id = paths.new_run_id()
    assert check_run_id(run_id) == run_id
    # A fixed id for the upper-case check: a generated one may be all digits (upper() keeps it).
    for bad in ("../x", "x", run_id + "/..", "20260509-073512-a1b2c3d4".upper(), None, 3):
        with pytest.raises(RunIdError):
            check_run_id(bad)


# --- checkpoints ---
def test_checkpoint_round_trip_keeps_the_last_two(tmp_path):
    for step in (1, 2, 3):
        runfolder.save_checkpoint(
            tmp_path, step, {"w": torch.full((2, 2), float(step))}, {"s": step, "big": 2**80}
        )
    assert runfolder.list_checkpoints(tmp_path) == [2, 3]
    step, tensors, state = runfolder.load_latest_checkpoint(tmp_path)
    assert step == 3 and tensors["w"].eq(3).all() and state == {"s": 3, "big": 2**80}
    assert not list((tmp_path / "checkpoints").glob(".*"))


def test_checkpoint_skips_an_unreadable_newest_file_and_refuses_bad_input(tmp_path):
    shared = torch.arange(4.0)
    runfolder.save_checkpoint(tmp_path, 5, {"a": shared, "view": shared[:2]}, {})
    (tmp_path / "checkpoints" / "step-000000009.safetensors").write_bytes(b"garbage")
    assert runfolder.load_latest_checkpoint(tmp_path).step == 5
    assert runfolder.load_latest_checkpoint(tmp_path / "none") is None
    with pytest.raises(ValueError, match="JSON"):
        runfolder.save_checkpoint(tmp_path, 6, {}, {"x": object()})
    with pytest.raises(ValueError, match="tensors"):
        runfolder.save_checkpoint(tmp_path, 6, {"x": [1.0]})
    with pytest.raises(ValueError, match="step"):
        runfolder.save_checkpoint(tmp_path, -1, {})


# --- store ---
def test_store_creates_lists_and_rebuilds_its_index(tmp_path):
    store = RunStore(tmp_path)
    ids = [store.create(stub_config(seed=s), "local").run_id for s in range(3)]
    assert {s.run_id for s in store.list()} == set(ids)
    assert store.config(ids[0])["method"] == "stub"
    (tmp_path / "index.sqlite").unlink()
    for extra in ("index.sqlite-wal", "index.sqlite-shm"):
        (tmp_path / extra).unlink(missing_ok=True)
    fresh = RunStore(tmp_path)
    assert fresh.list() == []
    assert fresh.rebuild_index() == 3
    assert sorted(s.run_id for s in fresh.list()) == sorted(ids)
    assert all(s.state == RunState.QUEUED for s in fresh.list())


def test_unusable_data_dir_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(StoreError, match="cannot use data directory"):
        RunStore(tmp_path / "file" / "data")


# --- the worker, in this process ---
def _queued(tmp_path, **changes):
    store = RunStore(tmp_path)
    run_id = store.create(stub_config(**changes), "test").run_id
    store.update(run_id, {"state": RunState.STARTING, "attempt": 1})
    return store, run_id, store.run_dir(run_id)


def test_worker_cuts_a_torn_tail_and_continues_without_duplicates(tmp_path):
    store, run_id, run_dir = _queued(tmp_path, steps=6)
    append_jsonl(
        run_dir / "metrics.jsonl", [{"step": s, "samples": 8 * s, "loss": 0.0} for s in (1, 2)]
    )
    with open(run_dir / "metrics.jsonl", "ab") as handle:
        handle.write(b'{"step": 3, "sam')
    assert worker.Worker(run_dir, attempt=1, heartbeat_s=0.1).run() == 0
    records, _ = store.metrics(run_id)
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert metric_values(records[0]) == {"loss": 0.0}
    assert store.status(run_id).state == RunState.SUCCEEDED


def test_worker_fails_the_run_on_a_full_disk(tmp_path, monkeypatch):
    store, run_id, run_dir = _queued(tmp_path)
    metrics, real_append = run_dir / "metrics.jsonl", runfolder.append_jsonl

    def fills_up_at_step_3(path, records):  # RecordWriter's one JSONL writer
        records = list(records)
        if path == metrics and records[0]["step"] == 3:
            with open(path, "ab") as handle:  # the disk took half a line, then ran out
                handle.write(json.dumps(records[0]).encode()[:10])
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        real_append(path, records)

    monkeypatch.setattr(runfolder, "append_jsonl", fills_up_at_step_3)
    assert worker.Worker(run_dir, attempt=1, heartbeat_s=0.1).run() == worker.EXIT_FAILED
    status = store.status(run_id)
    assert status.state == RunState.FAILED and "disk full" in status.message
    result = store.result(run_id)
    assert result["status"] == "failed" and result["steps_done"] == 2
    records, _ = store.metrics(run_id)  # the torn half line is not read as a record
    assert [r["step"] for r in records] == [1, 2]
    assert runfolder.RecordWriter(run_dir).repaired["metrics.jsonl"] == 10  # a resume cuts it


def test_worker_reports_a_method_error_and_a_bad_config(tmp_path):
    store, run_id, run_dir = _queued(tmp_path, fail_at=2)
    assert worker.Worker(run_dir, attempt=1, heartbeat_s=0.1).run() == worker.EXIT_FAILED
    assert "RuntimeError: stub failure at step 2" in store.status(run_id).message
    store, run_id, run_dir = _queued(tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    write_json_atomic(run_dir / "config.json", {**config, "steps": 0, "device": "tpu"})
    assert worker.Worker(run_dir, attempt=1).run() == worker.EXIT_FAILED
    message = store.status(run_id).message
    assert "steps" in message and "device" in message


def test_a_superseded_worker_writes_nothing(tmp_path):
    store, run_id, run_dir = _queued(tmp_path)
    assert worker.Worker(run_dir, attempt=7).run() == worker.EXIT_SUPERSEDED
    assert store.status(run_id).state == RunState.STARTING
    assert not (run_dir / "metrics.jsonl").exists()


def test_plugins_env_is_parsed_strictly():
    assert plugin_modules("tests.stub_method, a.b") == ["tests.stub_method", "a.b"]
    with pytest.raises(ValueError, match="module names"):
        plugin_modules("os; rm -rf /")
    load_plugins("tests.stub_method")  # idempotent: registering twice would raise


# --- CLI ---
def _cli(argv, capsys):
    parser = argparse.ArgumentParser(prog="morl")
    cli.add_subcommands(parser.add_subparsers(dest="command", required=True))
    code = parser.parse_args(argv).func(parser.parse_args(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_bad_config_names_every_field_and_exits_2(tmp_path, capsys):
    code, out, err = _cli(
        [
            "submit",
            "--data-dir",
            str(tmp_path),
            "--method",
            "stub",
            "--steps",
            "zero",
            "--device",
            "tpu",
            "--objectives",
            "synth_city",
            "-o",
            "nokey",
        ],
        capsys,
    )
    assert code == 2 and out == ""
    for field in ("steps", "device", "objectives", "options"):
        assert f"  {field}" in err
    assert "Traceback" not in err and not list(tmp_path.rglob("config.json"))


def test_cli_bad_or_unknown_run_ids_exit_2(tmp_path, capsys):
    for command in ("status", "logs", "cancel", "resume"):
        code, _, err = _cli([command, "--data-dir", str(tmp_path), "../../etc"], capsys)
        assert code == 2 and "invalid run id" in err
    code, _, err = _cli(["status", "--data-dir", str(tmp_path), "20260101-000000-abcdef01"], capsys)
    assert code == 2 and "no run" in err


def test_cli_runs_status_logs_and_worker(tmp_path, capsys):
    store, run_id, run_dir = _queued(tmp_path, steps=3)
    assert _cli(["runs", "--data-dir", str(tmp_path)], capsys)[1].splitlines()[0].split() == [
        "ID",
        "METHOD",
        "OBJECTIVES",
        "STATE",
        "PROGRESS",
        "STARTED",
    ]
    code, _, _ = _cli(
        ["worker", "--data-dir", str(tmp_path), run_id, "--attempt", "1", "--no-redirect"], capsys
    )
    assert code == 0
    code, out, _ = _cli(["status", "--data-dir", str(tmp_path), run_id], capsys)
    assert code == 0 and "succeeded" in out and "3/3" in out
    code, out, _ = _cli(["status", "--json", "--data-dir", str(tmp_path), run_id], capsys)
    assert json.loads(out)["status"]["state"] == "succeeded"
    row = _cli(["runs", "--data-dir", str(tmp_path)], capsys)[1].splitlines()[1]
    assert row.startswith(run_id) and "stub" in row and "succeeded" in row
    code, out, _ = _cli(["logs", "--data-dir", str(tmp_path), "--follow", run_id], capsys)
    assert code == 0
    # By hand, a finished run is not run again.
    code, _, _ = _cli(["worker", "--data-dir", str(tmp_path), run_id, "--no-redirect"], capsys)
    assert code == worker.EXIT_SUPERSEDED and store.status(run_id).state == RunState.SUCCEEDED


def test_cli_options_are_generated_from_runconfig():
    from dataclasses import fields

    from morl_core.config import RunConfig

    parser = argparse.ArgumentParser()
    cli.add_config_options(parser)
    flags = {a.dest for a in parser._actions}
    assert {f"cfg_{f.name}" for f in fields(RunConfig) if f.name != "options"} <= flags
    args = parser.parse_args(
        [
            "--method",
            "stub",
            "--objectives",
            "synth_nature,synth_city",
            "--steps",
            "4",
            "--weights",
            "0.25,0.75",
            "-o",
            "step_seconds=0.5",
            "-o",
            "batch=2",
        ]
    )
    config = cli.config_from_args(args)
    assert config.steps == 4 and config.weights == (0.25, 0.75)
    assert dict(config.options) == {"step_seconds": 0.5, "batch": 2}
    with pytest.raises(ConfigError):
        cli.config_from_args(parser.parse_args(["--method", "stub", "--lr", "fast"]))


def test_morl_core_jobs_does_not_import_streamlit_or_ray():
    import subprocess

    code = (
        "import sys, morl_core.jobs, morl_core.jobs.cli, morl_core.jobs.worker, "
        "morl_core.jobs.executors; print('streamlit' in sys.modules, 'ray' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ}, check=True
    ).stdout.split()
    assert out == ["False", "False"]
