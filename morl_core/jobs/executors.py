"""Executors: where workers run, picked by name, and the supervisor that keeps them in step.

:class:`LocalExecutor` (:mod:`morl_core.jobs.local`) runs a worker as a subprocess,
:class:`RayExecutor` (:mod:`morl_core.jobs.ray_jobs`) as a Ray job; both follow the run-folder
protocol and the lifecycle of :class:`Executor` (:mod:`morl_core.jobs.lifecycle`: lost workers
re-queued from their checkpoint, queued runs started while a slot is free, ignored cancels
killed).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.jobs.lifecycle import Executor
from morl_core.jobs.local import LocalExecutor
from morl_core.jobs.paths import INDEX, RUNS
from morl_core.jobs.ray_jobs import RayExecutor
from morl_core.jobs.store import RunStore

EXECUTORS = ("local", "ray")
SUPERVISE_INTERVAL = 5.0
SUPERVISE_BOUNDS = (0.2, 3600.0)


def get_executor(
    name: str | None = None, data_dir: str | Path | None = None, **kwargs: Any
) -> Executor:
    """An executor by name: ``local`` (default, or ``$MORL_EXECUTOR``) or ``ray``."""
    name = name or settings.executor()
    if name == "local":
        return LocalExecutor(data_dir, **kwargs)
    if name == "ray":
        return RayExecutor(data_dir, **kwargs)
    raise ValueError(f"unknown executor {name!r}; allowed: {', '.join(EXECUTORS)}")


def executor_for(run_id: str, data_dir: str | Path | None = None, **kwargs: Any) -> Executor:
    """The executor that owns ``run_id`` (as recorded in its status)."""
    store = RunStore(data_dir)
    return get_executor(store.status(run_id).executor, store=store, **kwargs)


def store_of_run_folder(run_dir: Path) -> Path | None:
    """The data directory holding ``run_dir`` (``DATA/runs/<id>`` with an index), else None
    (a folder outside any store gets no index or lock two levels up)."""
    run_dir = Path(run_dir)
    data_dir = run_dir.parent.parent
    if run_dir.parent.name != RUNS or not (data_dir / INDEX).is_file():
        return None
    return data_dir


def supervise(
    data_dir: str | Path | None = None,
    interval: float = SUPERVISE_INTERVAL,
    *,
    stop: threading.Event | None = None,
    iterations: int | None = None,
    log=None,
    **kwargs: Any,
) -> int:
    """Reconcile every ``interval`` seconds (``SUPERVISE_BOUNDS``, else ValueError) until
    ``stop`` is set, Ctrl-C or ``iterations`` rounds; returns 0.

    Dead local workers are noticed within ``interval``, hung ones within ``heartbeat_timeout +
    interval``; Ray runs too when ``RAY_ADDRESS`` is set. ``log`` gets one line per new problem
    (default stderr); ``kwargs`` go to each executor.
    """
    low, high = SUPERVISE_BOUNDS
    if not isinstance(interval, int | float) or not low <= interval <= high:
        raise ValueError(
            f"interval: must be a number of seconds from {low} to {high}, got {interval!r}"
        )
    log = log or (lambda line: print(line, file=sys.stderr, flush=True))
    stop = stop or threading.Event()
    store = RunStore(data_dir)
    executors: list[Executor] = [LocalExecutor(store=store, **kwargs)]
    if settings.ray_address():
        try:
            executors.append(get_executor("ray", store=store, **kwargs))
        except (ImportError, ValueError) as exc:
            log(f"supervise: ray runs are not supervised: {exc}")
    rounds, last = 0, ""
    while not stop.is_set():
        for executor in executors:
            executor.reconcile(force=True)
            if executor.last_error and executor.last_error != last:
                log(f"supervise: {executor.name}: {executor.last_error}")
            last = executor.last_error or last
        rounds += 1
        if iterations is not None and rounds >= iterations:
            break
        stop.wait(interval)
    return 0
