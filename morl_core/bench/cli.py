"""``morl bench SUITE`` and ``morl leaderboard``."""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = "benchmarks/results/bench"


def _names(text: str | None) -> list[str] | None:
    """A comma-separated option as a list (None when not given)."""
    return [name.strip() for name in text.split(",")] if text else None


def cmd_bench(args: argparse.Namespace) -> int:
    from morl_core.bench import load_suite, run_suite

    suite = load_suite(args.suite)
    if args.seeds is not None and args.seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {args.seeds}")
    seeds = list(range(args.seeds)) if args.seeds is not None else None
    records = run_suite(
        suite,
        Path(args.out),
        methods=_names(args.methods),
        seeds=seeds,
        executor=args.executor,
        data_dir=args.data_dir,
    )
    ok = sum(r["status"] == "succeeded" for r in records)
    print(
        f"{suite.name}: {ok}/{len(records)} runs succeeded; records in {Path(args.out) / suite.name}"
    )
    return 0 if ok == len(records) else 1


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from morl_core.bench import write_leaderboard

    data_dirs = [Path(d) for d in _names(args.data_dir) or []]
    for data_dir in data_dirs:
        if not (data_dir / "runs").is_dir():
            raise ValueError(f"--data-dir {data_dir}: no runs/ folder there (a job store data dir)")
    dest = Path(args.dest) if args.dest else None
    paths = write_leaderboard(Path(args.out), _names(args.suite), dest, data_dirs, args.update)
    print(paths["md"].read_text())
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark suite (resumes where it stopped)")
    p.add_argument("suite", help="suite name in benchmarks/suites/ or a suite file")
    p.add_argument("--methods", help="comma-separated subset of the suite's methods")
    p.add_argument("--seeds", type=int, help="use seeds 0..N-1 instead of the suite's")
    p.add_argument("--executor", choices=["local", "ray"], help="job executor (default local)")
    p.add_argument("--data-dir", help="job store data directory")
    p.add_argument("--out", default=DEFAULT_OUT, help="where records go")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser(
        "leaderboard", help="aggregate benchmark records: CSV, JSON, Markdown, figures"
    )
    p.add_argument("--suite", help="comma-separated suites (default: all)")
    p.add_argument("--out", default=DEFAULT_OUT, help="where the records are")
    p.add_argument("--dest", help="where to write the leaderboard (default: --out)")
    p.add_argument(
        "--data-dir",
        help="comma-separated job store data directories: learning curves of records written "
        "before curves were stored are read from their run folders there",
    )
    p.add_argument(
        "--update",
        action="store_true",
        help="keep the suites of the leaderboard already at --dest that these records do not "
        "cover (their rows, comparisons and figures), instead of dropping them",
    )
    p.set_defaults(func=cmd_leaderboard)
