"""Job-system overhead: the job path vs calling the trainer directly, and metric read latency.

    MORL_PLUGINS=tests.stub_method PYTHONPATH=. python benchmarks/jobs_overhead.py [--repeats 3]
        [--method stub] [--steps 40] [--step-seconds 0.02] [--ray local|http://HEAD:8265]

Measures, for the same config:

* ``direct``: ``METHODS[method].train(config, tmp_dir, no-op callback)`` in this process;
* ``job``: ``LocalExecutor.submit`` -> worker subprocess -> succeeded, seen by polling the store
  (and the same through a Ray executor when ``--ray`` gives an address);
  split into submit call, start-up (submit -> first metric readable), the training steps and
  finishing (last metric -> succeeded visible);
* metric latency: ``time`` stamped by the worker when it appends a step -> the step returned by
  ``RunStore.metrics`` to a reader polling every ``--poll`` seconds;
* read cost: one incremental ``RunStore.metrics`` call and one ``RunStore.list`` with 200 runs.

The default method is the test stand-in ``stub`` (tests/stub_method.py: numpy/torch-light steps
with checkpoints), so the figures isolate the job machinery; pass ``--method morlhf`` to time a
real trainer. Results print and go to benchmarks/results/jobs_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def _quantiles(values: list[float]) -> dict[str, float]:
    values = sorted(values)
    return {
        "median": statistics.median(values),
        "p95": values[int(0.95 * (len(values) - 1))],
        "max": values[-1],
        "n": len(values),
    }


def direct_run(config) -> float:
    from morl_core.methods import get

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        get(config.method).train(config, Path(tmp), lambda info: True)
        return time.perf_counter() - start


def job_run(executor, config, poll: float) -> dict:
    """One run through ``executor``; wall-clock phases and metric read latencies."""
    start = time.time()
    run_id = executor.submit(config)
    submitted = time.time()
    offset, lags, first_seen, last_seen = 0, [], None, None
    while True:
        records, offset = executor.store.metrics(run_id, offset)
        now = time.time()
        for record in records:
            lags.append(now - record["time"])
            first_seen = first_seen or now
            last_seen = now
        if executor.status(run_id).done:
            break
        time.sleep(poll)
    end = time.time()
    status = executor.store.status(run_id)
    assert status.state == "succeeded", (status.state, status.message)
    return {
        "total_s": end - start,
        "submit_s": submitted - start,
        "startup_s": (first_seen or end) - start,
        "steps_s": (last_seen or end) - (first_seen or end),
        "finish_s": end - (last_seen or end),
        "lags": lags,
    }


def read_costs(data_dir: Path, config, n_runs: int = 200) -> dict:
    from morl_core.jobs import RunStore

    store = RunStore(data_dir / "reads")
    ids = [store.create(config, "bench").run_id for _ in range(n_runs)]
    from morl_core.runfolder import append_jsonl

    append_jsonl(
        store.run_dir(ids[0]) / "metrics.jsonl",
        [{"step": s, "time": 0.0, "loss": 1.0} for s in range(1, 1001)],
    )
    _, offset = store.metrics(ids[0])
    append_jsonl(
        store.run_dir(ids[0]) / "metrics.jsonl", [{"step": 1001, "time": 0.0, "loss": 1.0}]
    )
    reps = 200
    start = time.perf_counter()
    for _ in range(reps):
        store.metrics(ids[0], offset)
    incremental = (time.perf_counter() - start) / reps
    start = time.perf_counter()
    for _ in range(reps):
        store.metrics(ids[0])
    full = (time.perf_counter() - start) / reps
    start = time.perf_counter()
    for _ in range(20):
        store.list()
    listing = (time.perf_counter() - start) / 20
    return {
        "metrics_incremental_ms": incremental * 1e3,
        "metrics_full_1000_steps_ms": full * 1e3,
        f"list_{n_runs}_queued_runs_ms": listing * 1e3,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="stub")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument(
        "--step-seconds", type=float, default=0.02, help="stub only: sleep per step"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.01, help="reader poll interval (s)")
    parser.add_argument(
        "--ray", default=None, help="Ray dashboard address to time the Ray executor too"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("MORL_PLUGINS", "tests.stub_method")
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    sys.path.insert(0, str(ROOT))
    from morl_core.config import RunConfig
    from morl_core.jobs import LocalExecutor, load_plugins

    load_plugins()
    options = {"step_seconds": args.step_seconds} if args.method == "stub" else {}
    config = RunConfig.from_dict(
        {
            "method": args.method,
            "objectives": ["synth_nature", "synth_city"],
            "steps": args.steps,
            "checkpoint_every": 10,
            "eval_every": 10,
            "options": options,
        }
    )
    results: dict = {
        "method": args.method,
        "steps": args.steps,
        "step_seconds": args.step_seconds,
        "repeats": args.repeats,
        "poll_s": args.poll,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
    }
    direct = [direct_run(config) for _ in range(args.repeats)]
    results["direct_s"] = statistics.median(direct)
    with tempfile.TemporaryDirectory() as tmp:
        executors = {"local": LocalExecutor(Path(tmp) / "local")}
        stop_ray = None
        if args.ray == "local":  # a throwaway single-node head, as the tests start it
            from tests.jobs_support import start_ray_head

            args.ray, stop_ray = start_ray_head()
        if args.ray:
            from morl_core.jobs.executors import RayExecutor

            executors["ray"] = RayExecutor(Path(tmp) / "ray", address=args.ray)
        for name, executor in executors.items():
            runs = [job_run(executor, config, args.poll) for _ in range(args.repeats)]
            summary = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k != "lags"}
            summary["overhead_s"] = summary["total_s"] - results["direct_s"]
            summary["overhead_per_step_ms"] = (
                1e3 * (summary["steps_s"] - results["direct_s"]) / args.steps
            )
            summary["metric_latency_s"] = _quantiles([lag for r in runs for lag in r["lags"]])
            results[name] = summary
        if stop_ray is not None:
            stop_ray()
        results["read_costs"] = read_costs(Path(tmp), config)
    print(json.dumps(results, indent=2))
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "jobs_overhead.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
