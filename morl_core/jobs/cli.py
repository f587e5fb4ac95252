"""The ``morl`` job commands: submit, runs, status, logs, cancel, resume, worker.

``morl_core/cli.py`` calls :func:`add_subcommands` on its subparsers and then dispatches with
``args.func(args)``, which returns the exit code: 0 ok, 1 the operation failed, 2 bad input
(a bad config, run id or executor), never a traceback. The config options are generated from
``RunConfig``'s fields (:func:`add_config_options` / :func:`config_from_args`), so ``morl train``
can share them. Modules in ``$MORL_PLUGINS`` are imported first (extra methods).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from morl_core.config import ConfigError, RunConfig, field_help, short_repr
from morl_core.jobs.paths import RunIdError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_CONFIG_BYTES = 2**20  # a --config file is read whole


# --- config options from RunConfig ---
def add_config_options(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` option per ``RunConfig`` field, plus ``--option KEY=VALUE``."""
    helps = field_help()
    group = parser.add_argument_group("run configuration (RunConfig)")
    for f in fields(RunConfig):
        if f.name == "options":
            continue
        default = f.default if f.default is not MISSING else None
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        group.add_argument(
            "--" + f.name.replace("_", "-"),
            dest=f"cfg_{f.name}",
            default=None,
            metavar=f.name.upper(),
            help=f"{helps[f.name]} (default: {shown})",
        )
    group.add_argument(
        "--option",
        "-o",
        dest="cfg_option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option; VALUE is read as JSON when it "
        "parses (3, 0.5, true), else as text; repeat for several",
    )
    group.add_argument(
        "--config",
        dest="cfg_file",
        metavar="FILE.json",
        help="start from this JSON config; options given here override it",
    )


def _convert(name: str, raw: str) -> Any:
    default = {f.name: f.default for f in fields(RunConfig)}.get(name)
    if name == "weights":
        return None if raw.strip().lower() in ("", "none") else raw
    for kind in (bool, int, float):  # bool first: it is an int too
        if isinstance(default, kind):
            if kind is bool:
                return raw
            try:
                return kind(raw)
            except ValueError:
                return raw  # validation reports it by name, with the allowed range
    return raw


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated ``RunConfig`` from parsed options; raises ConfigError naming every bad field.

    Paths are resolved against the current directory and checked against the allow-list of
    the command's data directory (``--data-dir``), before anything is written.
    """
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    if getattr(args, "cfg_file", None):
        data = _read_config_file(args.cfg_file)
    for f in fields(RunConfig):
        value = getattr(args, f"cfg_{f.name}", None)
        if f.name != "options" and value is not None:
            data[f.name] = _convert(f.name, value)
    items = getattr(args, "cfg_option", None) or []
    options = data.get("options", {})
    if items and not isinstance(options, dict):  # --option cannot merge into it
        errors["options"] = f"must be a JSON object, got {type(options).__name__}"
        options = {}
    options = dict(options) if items else options
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            errors["options"] = f"expected KEY=VALUE, got {short_repr(item)}"
            continue
        try:
            options[key.strip()] = json.loads(value)
        except (ValueError, RecursionError):  # not JSON (or nested past the parser): text
            options[key.strip()] = value
    if items:
        data["options"] = options
    return RunConfig.from_dict(data, errors, data_dir=getattr(args, "data_dir", None))


def _read_config_file(name: str) -> dict[str, Any]:
    """The JSON object in ``name``; anything else is a ``config`` field error."""
    try:
        path = Path(name)
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                {"config": f"{name} is {size} bytes; a config file is at most {MAX_CONFIG_BYTES}"}
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError({"config": f"cannot read {short_repr(name)}: {reason}"}) from None
    except RecursionError:
        raise ConfigError({"config": f"{short_repr(name)} is nested too deeply"}) from None
    if not isinstance(data, dict):
        raise ConfigError(
            {"config": f"{short_repr(name)} must hold a JSON object, got {type(data).__name__}"}
        )
    return data


# --- helpers ---
def _guard(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Turn expected errors into a message and an exit code."""
    from morl_core.jobs.plugins import load_plugins
    from morl_core.jobs.store import StoreError

    def run(args: argparse.Namespace) -> int:
        try:
            load_plugins()
            return handler(args)
        except (ConfigError, RunIdError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except StoreError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE if isinstance(exc, KeyError) else EXIT_FAILED
        except (ValueError, ImportError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except KeyboardInterrupt:
            return 130

    run.__name__ = handler.__name__
    return run


def _executor(args: argparse.Namespace, run_id: str | None = None):
    from morl_core.jobs.executors import executor_for, get_executor

    if run_id is not None:
        return executor_for(run_id, args.data_dir)
    return get_executor(getattr(args, "executor", None), args.data_dir)


def _when(stamp: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(stamp)) if stamp else "-"


def _progress(status) -> str:
    return (
        f"{status.step}/{status.total_steps} {status.progress:4.0%}" if status.total_steps else "-"
    )


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# --- commands ---
def cmd_submit(args: argparse.Namespace) -> int:
    """Validate the options, queue the run, print its id."""
    config = config_from_args(args)
    run_id = _executor(args).submit(config)
    print(run_id)
    print(
        f"submitted {config.method} on {','.join(config.objectives)}: follow with `morl logs {run_id} "
        f"--follow`",
        file=sys.stderr,
    )
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    """Table of runs, newest first."""
    from morl_core.jobs.store import RunStore

    store = RunStore(args.data_dir)
    # Refresh live states first (lost workers, queued runs); ray only when a cluster is set.
    for name in {s.executor for s in store.list() if not s.done}:
        if name == "local" or (name == "ray" and os.environ.get("RAY_ADDRESS")):
            with contextlib.suppress(ValueError, ImportError, OSError):
                _executor(argparse.Namespace(executor=name, data_dir=args.data_dir)).reconcile()
    runs = store.list(set(args.state) if args.state else None)[: args.limit]
    if args.json:
        print(json.dumps([r.to_dict() for r in runs], indent=1))
        return EXIT_OK
    rows = [["ID", "METHOD", "OBJECTIVES", "STATE", "PROGRESS", "STARTED"]]
    rows += [
        [r.run_id, r.method, ",".join(r.objectives), str(r.state), _progress(r), _when(r.started)]
        for r in runs
    ]
    print(_table(rows) if runs else "no runs yet (start one with `morl submit`)")
    for r in runs:  # a broken folder is skipped by the executors: say why
        if r.state == "broken":
            print(f"{r.run_id}: broken: {r.message}")
    return EXIT_OK


def _refreshed(args: argparse.Namespace, run_id: str):
    """The store, after the run's executor reconciled (skipped when it is not reachable)."""
    from morl_core.jobs.store import RunStore

    store = RunStore(args.data_dir)
    name = store.status(run_id).executor
    if name == "local" or (name == "ray" and os.environ.get("RAY_ADDRESS")):
        with contextlib.suppress(ValueError, ImportError, OSError):
            _executor(argparse.Namespace(executor=name, data_dir=args.data_dir)).reconcile(
                force=True
            )
    return store


def cmd_status(args: argparse.Namespace) -> int:
    """Status, last metrics and result of one run."""
    store = _refreshed(args, args.run_id)
    status = store.status(args.run_id)
    records, _ = store.metrics(args.run_id)
    result = store.result(args.run_id)
    if args.json:
        last = records[-1] if records else None
        print(
            json.dumps(
                {"status": status.to_dict(), "last_metrics": last, "result": result}, indent=1
            )
        )
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
        from morl_core.runfolder import metric_values

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
    from morl_core.jobs import worker
    from morl_core.jobs.store import RunStore

    target = args.run
    if not Path(target).is_dir():
        target = str(RunStore(args.data_dir).run_dir(target))
    argv = [target] + (["--attempt", str(args.attempt)] if args.attempt is not None else [])
    return worker.main(argv + (["--no-redirect"] if args.no_redirect else []))


def cmd_supervise(args: argparse.Namespace) -> int:
    """Reconcile every --interval seconds until Ctrl-C (see executors.supervise)."""
    from morl_core.jobs.executors import supervise

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
        default=None,
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
    worker.add_argument(
        "--attempt", type=int, default=None, help="attempt number (set by executors)"
    )
    worker.add_argument(
        "--no-redirect", action="store_true", help="print here instead of worker.log"
    )
    add(
        "supervise",
        cmd_supervise,
        "reconcile on a timer: dead workers are noticed within INTERVAL seconds, queued runs start",
    ).add_argument(
        "--interval", type=float, default=5.0, help="seconds between rounds, 0.2 to 3600 (default 5)"
    )


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m morl_core.jobs.cli``) with just the job commands."""
    parser = argparse.ArgumentParser(prog="morl", description="MORL Studio run commands")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
