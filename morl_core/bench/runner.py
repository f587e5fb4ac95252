"""Run a suite: suite x methods x seeds -> runs through the job system -> one record per run.

Records live in ``OUT/SUITE/records/METHOD__seedS.json``; ``OUT/SUITE/runs.json`` maps each
cell to its run id. Running the same command again skips cells that have a record and waits
for (or evaluates) cells whose run already exists, so an interrupted benchmark resumes where it
stopped and only the missing runs are trained.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from morl_core.bench.leaderboard import BASE_METHOD, PRIOR_METHOD
from morl_core.bench.suites import Suite
from morl_core.runfolder import read_json, write_json_atomic

RECORD_SCHEMA = 2  # 2: evaluated by morl_core.evaluation (protocol recorded, intervals, KL)
KL_KEYS = ("kl_per_token", "kl_per_sequence")  # per preference in a front, means in a record
NO_TRAINING = {  # the cost and training-provenance fields of the base model's row
    "training_samples": 0,
    "wall_seconds": 0.0,
    "search_seconds": 0.0,
    "search_evaluations": 0,
    "search_samples": 0,
    "peak_rss_mb": None,
    "trained_git": None,
}


def _header(suite: Suite, method: str, seed: int, run_id: str | None, status: str) -> dict:
    """The fields every record starts with, succeeded or not."""
    return {
        "schema_version": RECORD_SCHEMA,
        "suite": suite.name,
        "suite_version": suite.version,
        "method": method,
        "seed": seed,
        "run_id": run_id,
        "status": status,
    }


def _evaluated(suite: Suite, method: str, seed: int, run_id: str | None, front: dict, **cost):
    """A succeeded record: a front of :mod:`morl_core.evaluation`, its training ``cost``."""
    from morl_core.jobs.records import git_hash, package_versions

    points = np.asarray(front["points"])
    indicators = front["indicators"]
    kl = {key: [v for v in front[key] if v is not None] for key in KL_KEYS}
    return {
        **_header(suite, method, seed, run_id, "succeeded"),
        "objectives": list(suite.objectives),
        "reference_point": indicators["ref"],
        **{k: v for k, v in indicators.items() if k not in ("ref", "intervals")},
        "intervals": indicators["intervals"],
        "protocol": front["protocol"],
        "protocol_version": front["protocol_version"],
        "front": front["points"],
        "preferences": front["preferences"],
        **{key: float(np.mean(values)) if values else None for key, values in kl.items()},
        "front_kl_per_token": front["kl_per_token"],
        "mean_reward": dict(zip(suite.objectives, points.mean(0).tolist(), strict=True)),
        "distinct1": float(np.mean(front.get("distinct1", [np.nan]))),
        "distinct2": float(np.mean(front.get("distinct2", [np.nan]))),
        "inference_seconds_per_reply": front["eval_seconds"] / max(front["replies"], 1),
        "passes_per_token": int(front["passes_per_token"]),
        "models_kept": int(front["models_kept"]),
        **cost,
        "versions": package_versions(),
        "git": git_hash(),  # the commit that evaluated; trained_git: the one that trained
        "recorded": time.time(),
    }


def _running_seconds(status: Any, result: dict) -> float:
    """Seconds the run spent running over its attempts, from its status history; else
    result.json's figure (which, for runs finished before 2026-12-08, spans first start to end,
    pauses between attempts included)."""
    history = getattr(status, "history", None)
    running = status.running_seconds() if history else 0.0
    return running or float(result.get("wall_seconds") or 0.0)


def evaluate_record(
    suite: Suite, method: str, seed: int, run_dir: Path, status: Any
) -> dict[str, Any]:
    """Evaluate a finished run under the evaluation protocol (:mod:`morl_core.evaluation`)."""
    from morl_core.bench.curves import run_curve
    from morl_core.evaluation import evaluate_run
    from morl_core.methods.common import read_artifact

    result = read_json(run_dir / "result.json") or {}
    search = read_artifact(run_dir).get("search") or {}
    timing = read_json(run_dir / "search_timing.json") or {}
    return _evaluated(
        suite,
        method,
        seed,
        run_dir.name,
        evaluate_run(run_dir, method=method, protocol=suite.eval_protocol()),
        training_samples=int(result.get("samples") or getattr(status, "samples", 0)),
        wall_seconds=_running_seconds(status, result),
        search_seconds=float(timing.get("seconds", 0.0)),
        search_evaluations=int(search.get("evaluations", 0)),
        search_samples=int(search.get("samples", 0)),  # in training
        peak_rss_mb=result.get("peak_rss_mb"),
        learning_curve=run_curve(run_dir),  # the training reward per step, and its plateau
        trained_git=result.get("git"),  # the worker's, which may differ from the evaluator's
        options=(read_json(run_dir / "config.json") or {}).get("options", {}),  # as trained
    )


def prior_record(suite: Suite, seed: int, run_dir: Path) -> dict[str, Any]:
    """The meta-policy's ablation row: the same run's experts mixed by the untrained mixer
    (:data:`PRIOR_METHOD`), charged for the experts' training only."""
    from morl_core.evaluation import evaluate_run
    from morl_core.runfolder import read_metrics

    experts = [r for r in read_metrics(run_dir)[0] if str(r.get("stage", "")).startswith("expert")]
    result = read_json(run_dir / "result.json") or {}
    started = result.get("started")
    return _evaluated(
        suite,
        PRIOR_METHOD,
        seed,
        run_dir.name,
        evaluate_run(run_dir, protocol=suite.eval_protocol(), prior=True),
        training_samples=max((int(r.get("samples", 0)) for r in experts), default=0),
        wall_seconds=max((float(r["time"]) - started for r in experts if started), default=0.0),
        search_seconds=0.0,
        search_evaluations=0,
        search_samples=0,
        peak_rss_mb=None,
        trained_git=result.get("git"),
    )


def base_record(suite: Suite) -> dict[str, Any]:
    """The base model's row: the suite's model, prompts and preferences, no training."""
    from morl_core.evaluation import evaluate_base

    config = suite.run_config(suite.methods[0], suite.seeds[0])
    front = evaluate_base(
        suite.objectives,
        config.model,
        config.prompt_set,
        config.n_preferences,
        config.device,
        protocol=suite.eval_protocol(),
    )
    return _evaluated(suite, BASE_METHOD, 0, None, front, **NO_TRAINING)


def gradient_conflict_record(suite: Suite, batches: int = 3) -> dict[str, Any]:
    """Cosine of per-objective policy gradients at the base model, averaged over a few
    training batches (:func:`morl_core.relations.gradient_conflict_study`)."""
    if suite.model != "embedded":
        return {"skipped": f"measured on the embedded model only; this suite uses {suite.model}"}
    from morl_core.relations import gradient_conflict_study

    cosine, norms = gradient_conflict_study(
        suite.objectives, model=suite.model, prompt_set=suite.prompt_set, batches=batches, seed=0
    )
    rounded = [[None if np.isnan(c) else round(float(c), 4) for c in row] for row in cosine]
    return {
        "objectives": list(suite.objectives),
        "batches": batches,
        "cosine": rounded,  # (K, K); None where an objective had no gradient
        "gradient_norms": [float(n) for n in norms],
    }


def _check_runs_in_store(store, runs: dict[str, str], keys: list[str], runs_file: Path) -> None:
    """Every cell's recorded run is in this job store: a ``--data-dir`` other than the one the
    runs went to is a ``ValueError`` naming both, before anything waits or trains."""
    from morl_core.jobs.store import RunNotFound

    for key in keys:
        if key not in runs:
            continue
        try:
            store.run_dir(runs[key])
        except RunNotFound:
            raise ValueError(
                f"--data-dir {store.data_dir}: it has no run {runs[key]}, which {runs_file} lists "
                f"for {key}; pass the --data-dir the suite's runs were submitted to (or remove "
                f"{key} from {runs_file.name} to train that cell again)"
            ) from None


def run_suite(
    suite: Suite,
    out: Path,
    *,
    methods: Sequence[str] | None = None,
    seeds: Sequence[int] | None = None,
    executor: str | None = None,
    data_dir: Path | None = None,
    poll_seconds: float = 2.0,
    progress: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Train and evaluate every missing cell; returns all records of the requested cells, then
    the base model's row."""
    from morl_core.jobs import RunState, get_executor

    methods = list(methods or suite.methods)
    seeds = list(seeds if seeds is not None else suite.seeds)
    for method in methods:  # validate every cell before anything is submitted
        suite.run_config(method, seeds[0])
    ex = get_executor(executor, data_dir)
    folder, runs_file = Path(out) / suite.name / "records", Path(out) / suite.name / "runs.json"
    folder.mkdir(parents=True, exist_ok=True)
    runs: dict[str, str] = read_json(runs_file) or {}
    cells = [(f"{m}__seed{s}", m, s) for m in methods for s in seeds]
    for key, method, seed in cells:  # submit what has neither a record nor a run
        if not (folder / f"{key}.json").exists() and key not in runs:
            runs[key] = ex.submit(suite.run_config(method, seed))
            write_json_atomic(runs_file, runs)
            progress(f"submitted {key} as run {runs[key]}")
    _check_runs_in_store(ex.store, runs, [key for key, _, _ in cells], runs_file)
    records = []
    for key, method, seed in cells:
        record_path = folder / f"{key}.json"
        if not record_path.exists():
            run_id = runs[key]
            while True:
                ex.reconcile()
                if (status := ex.status(run_id)).done:  # succeeded, failed, cancelled, broken
                    break
                time.sleep(poll_seconds)
            if status.state == RunState.SUCCEEDED:
                progress(f"evaluating {key}")
                record = evaluate_record(suite, method, seed, ex.store.run_dir(run_id), status)
            else:
                record = _header(suite, method, seed, run_id, str(status.state))
                record["message"] = status.message
            write_json_atomic(record_path, record)
            progress(f"recorded {key}: {record['status']}")
        records.append(read_json(record_path))
        prior_path = folder / f"{PRIOR_METHOD}__seed{seed}.json"
        if method == "metapolicy" and records[-1]["status"] == "succeeded":
            if not prior_path.exists():  # also added beside a meta-policy recorded before it
                progress(f"evaluating {PRIOR_METHOD}__seed{seed}")
                run_dir = ex.store.run_dir(records[-1]["run_id"])
                write_json_atomic(prior_path, prior_record(suite, seed, run_dir))
            records.append(read_json(prior_path))
    base_path = folder / f"{BASE_METHOD}.json"
    base_row = read_json(base_path)
    if base_row is None:  # the reference row, once per suite (it has no seed to vary)
        progress("evaluating the base model")
        base_row = base_record(suite)
    if "gradient_conflict" not in base_row:  # also added to a base row recorded before it
        progress("measuring gradient conflict at the base model")
        base_row["gradient_conflict"] = gradient_conflict_record(suite)
        write_json_atomic(base_path, base_row)
    records.append(base_row)
    return records
