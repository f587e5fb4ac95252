"""Runs that survive: the run store, the worker, and local and Ray executors.

Quick use::

    from morl_core import jobs
    run_id = jobs.submit(config)                     # validated, queued, started when a slot is free
    jobs.get_executor().status(run_id).state         # queued/starting/running/.../succeeded
    records, offset = jobs.RunStore().metrics(run_id)  # poll with the returned offset

Store: ``store.py`` (the run folders) and ``index.py`` (the SQLite index of them); worker
protocol: ``worker.py``; the lifecycle every executor shares: ``lifecycle.py``; where workers
run: ``local.py`` (subprocesses) and ``ray_jobs.py`` (a Ray cluster), picked by name in
``executors.py``; run-folder files and checkpoints: :mod:`morl_core.runfolder`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from morl_core.jobs.executors import EXECUTORS, Executor, LocalExecutor, executor_for, get_executor
from morl_core.jobs.paths import RunIdError, check_run_id, default_data_dir
from morl_core.jobs.plugins import load_plugins
from morl_core.jobs.records import ACTIVE, TERMINAL, RunState, RunStatus
from morl_core.jobs.store import RunNotFound, RunStore, StoreError


def submit(config: Any, executor: str | None = None, data_dir: str | Path | None = None) -> str:
    """Validate ``config`` (RunConfig or dict), queue it on ``executor``; returns the run id."""
    return get_executor(executor, data_dir).submit(config)


__all__ = [
    "ACTIVE",
    "EXECUTORS",
    "TERMINAL",
    "Executor",
    "LocalExecutor",
    "RunIdError",
    "RunNotFound",
    "RunState",
    "RunStatus",
    "RunStore",
    "StoreError",
    "check_run_id",
    "default_data_dir",
    "executor_for",
    "get_executor",
    "load_plugins",
    "submit",
]
