"""Job-system reliability: kills survived at each point, reads under load, cancel latency.

    PYTHONPATH=. python benchmarks/reliability.py [--tries 3] [--model-tries 1] [--cancels 8]
        [--readers 50] [--only POINT] [--out benchmarks/results/reliability.json]

Everything runs on the local executor in a temporary data directory:

* **kills**: a worker is SIGKILLed at one point, the executor resumes the run, and the kill counts
  as *survived* only when the run succeeds with every step recorded once and its metrics (and
  final parameters) equal to an uninterrupted run of the same config. Points:
  ``startup`` (the run is claimed, no step done), ``mid_step`` (an outside SIGKILL after a
  random number of steps), ``mid_checkpoint`` (a checkpoint's temp file written, not renamed) on
  the ``stub`` method; ``stage_boundary`` (an adapter saved, its stage-done checkpoint not) and
  ``adapter_save`` (peft's config written, its weights not) on a real two-stage ``soups`` run on
  the embedded model; ``emorl_search`` (EMORL's coefficient search has begun) and
  ``meta_training`` (a meta-policy step done, its checkpoint not written) on tiny EMORL and
  meta-policy runs. Exact points are hit through ``tests/kill_points.py``.
* **reads under load**: ``--readers`` threads, each with its own store, list/status/metrics/
  fronts in a loop while a worker writes and an executor reconciles; errors and torn or
  out-of-order lines are counted.
* **cancel latency**: ``Executor.cancel`` on a running stub run -> ``cancelled`` visible in the
  store, p50/p95 over ``--cancels`` runs.

Prints a summary and writes JSON (``--out``). Hostile configs are measured by
``benchmarks/reliability_configs.py``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB_POINTS = ("startup", "mid_step", "mid_checkpoint")
SOUPS_POINTS = ("stage_boundary", "adapter_save")
# point -> method: EMORL's search; the meta-policy's own loop, and the boundary after its last
# expert (the meta loop must start at the exact step, whatever checkpoint the kill left).
METHOD_POINTS = {
    "emorl_search": "emorl",
    "meta_training": "metapolicy",
    "last_stage_boundary": "metapolicy",
}
SOUPS = {
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


def _comparable(record: dict) -> dict:
    from morl_core.runfolder import metric_values

    return {k: v for k, v in metric_values(record).items() if not k.startswith("time/")}


def _wait(predicate, timeout: float, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def _reference(config) -> tuple[list[dict], dict, list]:
    """Metrics, final tensors and front points of an uninterrupted run, trained in this process."""
    from morl_core.methods import get

    steps: list[dict] = []
    fronts: list = []

    def record(info) -> bool:
        steps.append(_comparable(info.metrics))
        if info.front is not None:
            fronts.append(json.loads(json.dumps(info.front, default=_plain))["points"])
        return True

    with tempfile.TemporaryDirectory() as tmp:
        get(config.method).train(config, Path(tmp), record)
        return steps, _final_tensors(Path(tmp), config), fronts


def _plain(value):
    return value.tolist() if hasattr(value, "tolist") else str(value)


def _final_tensors(run_dir: Path, config) -> dict:
    from safetensors.torch import load_file

    from morl_core.runfolder import load_latest_checkpoint

    if config.method != "stub":  # every adapter and mixer file of the run
        return {
            str(path.relative_to(run_dir)): load_file(path)
            for path in sorted((run_dir / "adapters").glob("*/*.safetensors"))
        }
    found = load_latest_checkpoint(run_dir)
    return {"checkpoint": found.tensors} if found else {}


def _same(a: dict, b: dict) -> bool:
    if a.keys() != b.keys():
        return False
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, dict):
            if not _same(x, y):
                return False
        elif not x.equal(y):
            return False
    return True


def kill_once(data_dir: Path, config, point: str, reference) -> dict:
    """One run killed at ``point`` and resumed; whether it ended equal to ``reference``."""
    from morl_core.jobs import LocalExecutor, RunState

    executor = LocalExecutor(data_dir, heartbeat_timeout=5, max_retries=2)
    run_id = executor.store.create(config, "local").run_id
    run_dir = executor.store.run_dir(run_id)
    # names in tests/kill_points.py; the last boundary of a two-objective run is after stage 2
    hook = {"mid_checkpoint": "checkpoint", "last_stage_boundary": "stage_boundary:2"}.get(
        point, point
    )
    if point != "mid_step":
        (run_dir / "kill_at").write_text(hook)
    executor.reconcile(force=True)
    killed = point != "mid_step"
    if point == "mid_step":
        at = random.randint(2, max(2, config.steps - 2))
        got = _wait(lambda: len(executor.store.metrics(run_id)[0]) >= at, 120)
        pid = executor.store.status(run_id).pid
        if got and pid:
            os.kill(pid, signal.SIGKILL)
            killed = True
    status = _wait(lambda: (s := executor.status(run_id)).done and s, 300)
    records, _ = executor.store.metrics(run_id)
    ref_steps, ref_tensors, ref_fronts = reference
    fronts, _ = executor.store.fronts(run_id)
    checks = {
        "killed": killed and (point == "mid_step" or (run_dir / "killed_at").exists()),
        "succeeded": bool(status) and status.state == RunState.SUCCEEDED,
        "resumed": bool(status) and status.attempt >= 2,
        "steps_once": [r["step"] for r in records] == list(range(1, len(ref_steps) + 1)),
        "metrics_equal": [_comparable(r) for r in records] == ref_steps,
        "parameters_equal": _same(_final_tensors(run_dir, config), ref_tensors),
        "fronts_equal": [f["points"] for f in fronts] == ref_fronts,
    }
    return {
        "point": point,
        "run_id": run_id,
        "survived": all(checks.values()),
        "step": status.step if status else None,
        "total_steps": status.total_steps if status else None,
        **checks,
    }


def reads_under_load(data_dir: Path, readers: int) -> dict:
    """``readers`` threads read a run while its worker writes; errors and torn lines."""
    from morl_core.config import RunConfig
    from morl_core.jobs import LocalExecutor, RunState, RunStore
    from tests.stub_method import SPEC  # noqa: F401 -- registers the stub here

    executor = LocalExecutor(data_dir, heartbeat_timeout=10)
    config = RunConfig.from_dict(
        {
            "method": "stub",
            "objectives": ["synth_nature", "synth_city"],
            "steps": 60,
            "eval_every": 2,
            "checkpoint_every": 5,
            "options": {"step_seconds": 0.05},
        }
    )
    run_id = executor.submit(config)
    _wait(lambda: executor.status(run_id).state == RunState.RUNNING, 120)
    errors: list[str] = []
    counts = {"reads": 0, "torn": 0}
    stop = threading.Event()
    lock = threading.Lock()

    def reader() -> None:
        store = RunStore(data_dir)
        while not stop.is_set():
            try:
                assert run_id in [s.run_id for s in store.list()]
                store.status(run_id)
                records, _ = store.metrics(run_id)
                fronts, _ = store.fronts(run_id)
                torn = [r["step"] for r in records] != list(range(1, len(records) + 1))
                with lock:
                    counts["reads"] += 1
                    counts["torn"] += torn or any("points" not in f for f in fronts)
            except Exception as exc:  # noqa: BLE001 -- every failure is a counted error
                with lock:
                    errors.append(repr(exc))

    def writer() -> None:
        while not stop.is_set():
            try:
                executor.reconcile(force=True)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    errors.append(repr(exc))
            time.sleep(0.02)

    threads = [threading.Thread(target=reader) for _ in range(readers)]
    threads.append(threading.Thread(target=writer))
    for thread in threads:
        thread.start()
    status = _wait(lambda: (s := executor.store.status(run_id)).done and s, 300)
    stop.set()
    for thread in threads:
        thread.join(30)
    return {
        "readers": readers,
        "reads": counts["reads"],
        "errors": len(errors),
        "torn_or_out_of_order": counts["torn"],
        "first_errors": errors[:3],
        "run_state": str(status.state) if status else "timeout",
    }


def cancel_latency(data_dir: Path, runs: int) -> dict:
    """Seconds from ``cancel()`` on a running stub run to ``cancelled`` in the store."""
    from morl_core.config import RunConfig
    from morl_core.jobs import LocalExecutor, RunState

    executor = LocalExecutor(data_dir, heartbeat_timeout=10)
    config = RunConfig.from_dict(
        {
            "method": "stub",
            "objectives": ["synth_nature", "synth_city"],
            "steps": 1000,
            "options": {"step_seconds": 0.05},
        }
    )
    latencies, failures = [], 0
    for _ in range(runs):
        run_id = executor.submit(config)
        _wait(lambda run_id=run_id: len(executor.store.metrics(run_id)[0]) >= 3, 120)
        start = time.monotonic()
        executor.cancel(run_id)
        done = _wait(
            lambda run_id=run_id: executor.store.status(run_id).state == RunState.CANCELLED,
            60,
            0.01,
        )
        if done:
            latencies.append(time.monotonic() - start)
        else:
            failures += 1
    latencies.sort()
    return {
        "runs": runs,
        "not_cancelled": failures,
        "p50_s": statistics.median(latencies) if latencies else None,
        "p95_s": latencies[math.ceil(0.95 * len(latencies)) - 1] if latencies else None,
        "max_s": latencies[-1] if latencies else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tries", type=int, default=3, help="kills per stub point (1-50)")
    parser.add_argument(
        "--model-tries",
        type=int,
        default=1,
        help="kills per point on the embedded model (soups, emorl, metapolicy; 0-10)",
    )
    parser.add_argument("--readers", type=int, default=50, help="reader threads (1-200)")
    parser.add_argument("--cancels", type=int, default=8, help="runs cancelled (1-100)")
    parser.add_argument("--only", action="append", help="only these kill points (repeatable)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "reliability.json"))
    args = parser.parse_args()
    for name, value, low, high in (
        ("--tries", args.tries, 1, 50),
        ("--model-tries", args.model_tries, 0, 10),
        ("--readers", args.readers, 1, 200),
        ("--cancels", args.cancels, 1, 100),
    ):
        if not low <= value <= high:
            parser.error(f"{name} must be from {low} to {high}, got {value}")
    random.seed(args.seed)
    os.environ["MORL_PLUGINS"] = "tests.stub_method,tests.kill_points"
    os.environ["MORL_HEARTBEAT_S"] = "0.3"
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.path.insert(0, str(ROOT))
    import torch

    torch.set_num_threads(1)
    import tests.stub_method  # noqa: F401 -- registers "stub" in this process
    from morl_core.config import RunConfig

    started = time.time()
    stub = RunConfig.from_dict(
        {
            "method": "stub",
            "objectives": ["synth_nature", "synth_city"],
            "steps": 12,
            "checkpoint_every": 3,
            "seed": 3,
            "options": {"step_seconds": 0.05},
        }
    )
    soups = RunConfig.from_dict(SOUPS)
    trials = []
    with tempfile.TemporaryDirectory(prefix="morl-reliability-") as tmp:
        tmp = Path(tmp)
        plan = [(stub, p, args.tries) for p in STUB_POINTS]
        plan += [(soups, p, args.model_tries) for p in SOUPS_POINTS]
        for point, method in METHOD_POINTS.items():
            options = {"search_rounds": 1, "search_prompts": 2} if method == "emorl" else {}
            other = RunConfig.from_dict({**SOUPS, "method": method, "options": options})
            plan.append((other, point, args.model_tries))
        known = {*STUB_POINTS, *SOUPS_POINTS, *METHOD_POINTS}
        if args.only and not set(args.only) <= known:
            parser.error(
                f"--only: unknown points {sorted(set(args.only) - known)}; allowed: {sorted(known)}"
            )
        plan = [step for step in plan if not args.only or step[1] in args.only]
        references = {}
        for config, point, tries in plan:
            if tries and config.method not in references:
                print(f"reference run: {config.method}", flush=True)
                references[config.method] = _reference(config)
            for i in range(tries):
                trial = kill_once(tmp / f"{point}-{i}", config, point, references[config.method])
                print(f"kill {point} #{i + 1}: {'survived' if trial['survived'] else trial}")
                trials.append(trial)
        reads = reads_under_load(tmp / "reads", args.readers)
        print(f"reads under load: {reads}")
        cancels = cancel_latency(tmp / "cancel", args.cancels)
        print(f"cancel latency: {cancels}")
    kills = {
        point: {
            "survived": sum(t["survived"] for t in trials if t["point"] == point),
            "tried": sum(t["point"] == point for t in trials),
        }
        for point in (*STUB_POINTS, *SOUPS_POINTS, *METHOD_POINTS)
    }
    result = {
        "kills": kills,
        "kills_total": {
            "survived": sum(k["survived"] for k in kills.values()),
            "tried": sum(k["tried"] for k in kills.values()),
        },
        "reads_under_load": reads,
        "cancel_latency_local": cancels,
        "trials": trials,
        "seconds": time.time() - started,
        "cpus": os.cpu_count(),
    }
    from morl_core.jobs.records import git_hash, package_versions

    result.update(git=git_hash(), versions=package_versions())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print("\nkills survived / tried:")
    for point, k in kills.items():
        print(f"  {point:15s} {k['survived']}/{k['tried']}")
    print(
        f"reads with errors under load: {reads['errors']} of {reads['reads']} "
        f"({reads['readers']} readers), torn/out-of-order: {reads['torn_or_out_of_order']}"
    )
    print(
        f"cancel latency (local): p50 {cancels['p50_s']:.2f} s, p95 {cancels['p95_s']:.2f} s "
        f"over {cancels['runs']} runs"
    )
    print(f"wrote {out} ({result['seconds']:.0f} s)")


if __name__ == "__main__":
    main()
