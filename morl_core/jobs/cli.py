"""The ``morl`` job commands: submit, runs, status, logs, cancel, resume, worker, supervise.

:func:`add_subcommands` adds them to ``morl``'s subparsers; ``args.func(args)`` returns the exit
code (0 ok, 1 failed, 2 bad input), never a traceback. ``$MORL_PLUGINS`` are imported first.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.config import ConfigError
from morl_core.config_cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    add_config_options,
    config_from_args,
    table,
)
from morl_core.jobs import worker
from morl_core.jobs.executors import executor_for, get_executor, supervise
from morl_core.jobs.paths import RunIdError
from morl_core.jobs.plugins import load_plugins
from morl_core.jobs.store import RunStore, StoreError
from morl_core.runfolder import metric_values


# --- helpers ---
def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn expected errors into a message and an exit code."""

    def run(args: argparse.Namespace) -> int:
        try:
            load_plugins()
            return handler(args)
        except (ConfigError, RunIdError, StoreError, ValueError, ImportError) as exc:
            print(f"error: {exc}", file=sys.stderr)  # a store failure exits 1, bad input 2
            failed = isinstance(exc, StoreError) and not isinstance(exc, KeyError)
            return EXIT_FAILED if failed else EXIT_USAGE
        except KeyboardInterrupt:
            return 130

    run.__name__ = handler.__name__
    return run


def _executor(args: argparse.Namespace, run_id: str | None = None):
    if run_id is not None:
        return executor_for(run_id, args.data_dir)
    return get_executor(getattr(args, "executor", None), args.data_dir)


def _reconcile(data_dir: str | None, executor: str, force: bool = False) -> None:
    """Let ``executor`` refresh live states when it is reachable (ray only with a cluster set)."""
    if executor == "local" or (executor == "ray" and settings.ray_address()):
        with contextlib.suppress(ValueError, ImportError, OSError):
            get_executor(executor, data_dir).reconcile(force=force)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def _progress(status) -> str:
    return (
        f"{status.step}/{status.total_steps} {status.progress:4.0%}" if status.total_steps else "-"
    )


# --- commands ---
def cmd_submit(args: argparse.Namespace) -> int:
    """Validate the options, queue the run, print its id."""
    config = config_from_args(args)
    run_id = _executor(args).submit(config)
    print(run_id)
    follow = f"follow with `morl logs {run_id} --follow`"
    print(f"submitted {config.method} on {','.join(config.objectives)}: {follow}", file=sys.stderr)
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    """Table of runs, newest first."""
    store = RunStore(args.data_dir)
    for name in {s.executor for s in store.list() if not s.done}:
        _reconcile(args.data_dir, name)
    runs = store.list(set(args.state) if args.state else None)[: args.limit]
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=1))
        return EXIT_OK
    header = ["ID", "METHOD", "OBJECTIVES", "STATE", "PROGRESS", "STARTED"]
    rows = [
        [r.run_id, r.method, ",".join(r.objectives), str(r.state), _progress(r), _when(r.started)]
        for r in runs
    ]
    print(table(rows, header, rule=False) if runs else "no runs yet (start one with `morl submit`)")
    for r in runs:  # a broken folder is skipped by the executors: say why
        if r.state == "broken":
            print(f"{r.run_id}: broken: {r.message}")
    return EXIT_OK


def _refreshed(args: argparse.Namespace, run_id: str):
    """The store, after the run's executor reconciled."""
    store = RunStore(args.data_dir)
    _reconcile(args.data_dir, store.status(run_id).executor, force=True)
    return store


def cmd_status(args: argparse.Namespace) -> int:
    """Status, last metrics and result of one run."""
    store = _refreshed(args, args.run_id)
    status = store.status(args.run_id)
    records, _ = store.metrics(args.run_id)
    result = store.result(args.run_id)
    if args.json:
        last = records[-1] if records else None
        record = {"status": status.to_dict(), "last_metrics": last, "result": result}
        print(json.dumps(record, indent=1))
        return EXIT_OK
    lines = [
        ("id", status.run_id),
        ("state", str(status.state)),
        ("method", status.method),
        ("objectives", ",".join(status.objectives)),
        ("progress", _progress(status)),
        ("executor", status.executor),
        ("attempt", str(status.attempt)),
        ("created", _when(status.created)),
        ("started", _when(status.started)),
        ("finished", _when(status.finished)),
        ("device", status.device or "-"),
        ("message", status.message or "-"),
        ("folder", str(store.run_dir(args.run_id))),
    ]
    if records:
        lines.append(
            ("last step", " ".join(f"{k}={v:.4g}" for k, v in metric_values(records[-1]).items()))
        )
    width = max(len(k) for k, _ in lines)
    print("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    """Print the worker log; with --follow, keep printing until the run ends."""
    store = _refreshed(args, args.run_id)
    text, offset = store.logs(args.run_id)
    sys.stdout.write(text)
    while args.follow:
        done = _refreshed(args, args.run_id).status(args.run_id).done
        text, offset = store.logs(args.run_id, offset)
        sys.stdout.write(text)
        sys.stdout.flush()
        if done and not text:
            break
        time.sleep(0.5)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    """Request a cancel (queued runs end at once, running ones after their step)."""
    status = _executor(args, args.run_id).cancel(args.run_id)
    print(f"{status.run_id}: {status.state}")
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    """Queue a failed, cancelled or lost run again from its last checkpoint."""
    status = _executor(args, args.run_id).resume(args.run_id)
    print(f"{status.run_id}: {status.state}")
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    """Run one run in this process (what executors start)."""
    target = args.run
    if not Path(target).is_dir():
        target = str(RunStore(args.data_dir).run_dir(target))
    argv = [target] + (["--attempt", str(args.attempt)] if args.attempt is not None else [])
    return worker.main(argv + (["--no-redirect"] if args.no_redirect else []))


def cmd_supervise(args: argparse.Namespace) -> int:
    """Reconcile every --interval seconds until Ctrl-C (see executors.supervise)."""
    return supervise(args.data_dir, args.interval)


def add_subcommands(subparsers: Any) -> None:
    """Add submit, runs, status, logs, cancel, resume and worker to an argparse subparsers object."""

    def add(
        name: str, handler: Callable, help_text: str, run_id: bool = False
    ) -> argparse.ArgumentParser:
        parser = subparsers.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--data-dir",
            default=None,
            help="data directory (default: $MORL_DATA_DIR or ~/.local/share/morl-studio)",
        )
        if run_id:
            parser.add_argument("run_id", metavar="ID", help="run id (see `morl runs`)")
        parser.set_defaults(func=_guard(handler))
        return parser

    submit = add("submit", cmd_submit, "queue a training run; prints its id")
    submit.add_argument(
        "--executor",
        choices=("local", "ray"),
        help="where workers run (default: $MORL_EXECUTOR or local; ray needs RAY_ADDRESS)",
    )
    add_config_options(submit)
    runs = add("runs", cmd_runs, "list runs: id, method, objectives, state, progress, started")
    runs.add_argument("--state", action="append", help="only runs in this state (repeatable)")
    runs.add_argument("--limit", type=int, default=50, help="show at most this many (default 50)")
    runs.add_argument("--json", action="store_true", help="print JSON records")
    add(
        "status", cmd_status, "state, progress and last metrics of a run", run_id=True
    ).add_argument("--json", action="store_true", help="print a JSON record")
    add("logs", cmd_logs, "print a run's worker log", run_id=True).add_argument(
        "--follow", "-f", action="store_true", help="keep printing until the run ends"
    )
    add("cancel", cmd_cancel, "cancel a run (takes effect after its current step)", run_id=True)
    add(
        "resume",
        cmd_resume,
        "resume a failed, cancelled or lost run from its last checkpoint",
        run_id=True,
    )
    worker = add("worker", cmd_worker, "run one queued run in this process (executors start this)")
    worker.add_argument("run", metavar="RUN", help="run id or run folder")
    worker.add_argument("--attempt", type=int, help="attempt number (set by executors)")
    worker.add_argument(
        "--no-redirect", action="store_true", help="print here instead of worker.log"
    )
    add(
        "supervise",
        cmd_supervise,
        "reconcile on a timer: dead workers are noticed within INTERVAL seconds, queued runs start",
    ).add_argument(
        "--interval",
        type=float,
        default=5.0,
        help="seconds between rounds, 0.2 to 3600 (default 5)",
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m morl_core.jobs.cli``) with just the job commands."""
    parser = argparse.ArgumentParser(prog="morl", description="MORL Studio run commands")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
