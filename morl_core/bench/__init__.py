"""The MORL benchmark: suites x methods x seeds through the job system, records, leaderboard."""

from morl_core.bench.leaderboard import aggregate, read_records
from morl_core.bench.report import markdown, write_leaderboard
from morl_core.bench.runner import evaluate_record, run_suite
from morl_core.bench.suites import Suite, available, load_suite

__all__ = [
    "Suite",
    "aggregate",
    "available",
    "evaluate_record",
    "load_suite",
    "markdown",
    "read_records",
    "run_suite",
    "write_leaderboard",
]
