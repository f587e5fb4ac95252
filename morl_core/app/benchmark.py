"""The Benchmark page's library calls: benchmark records written by ``morl bench``, the
published leaderboard, planning / starting / stopping a suite, and a table of evaluated runs.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from morl_core import settings
from morl_core.app.catalog import ArtifactInfo, data_dir
from morl_core.app.fronts import front_indicators

# morl_core.bench (pandas, the suite runner) is an optional part: imported where it is used.

BENCH_HOWTO = (
    "Records come from `morl bench SUITE` (suite x methods x seeds through the job system, one "
    "record per run, written under the data folder's `bench/SUITE/records/`, or "
    "`$MORL_BENCH_OUT`). Start one below or on the command line, then "
    "`morl leaderboard` writes the same table as CSV/Markdown."
)


def bench_available() -> bool:
    """Whether ``morl_core.bench`` (the suite runner) is installed."""
    return importlib.util.find_spec("morl_core.bench") is not None


def bench_out() -> Path:
    """Where benchmark records go: ``$MORL_BENCH_OUT`` or the data folder's ``bench`` (the app
    never writes into the repository)."""
    return settings.bench_out(data_dir() / "bench")


PUBLISHED = Path(__file__).resolve().parents[2] / "assets" / "leaderboard" / "findings.json"
DEFAULT_RUN_SECONDS = 90.0  # per run, when the published table has no time for a method
TIE_MARKS = {"best": " best", "tied": " ≈ best"}
CANNOT_TELL_MARK = " ≈? best"
TABLE_LEGEND = (
    "mean [95% t interval over seeds; n/a with one seed]. best: the suite's highest "
    "mean; ≈ best: not separated from it (paired interval over shared seeds contains 0); "
    "≈? best: cannot tell, too few seeds shared with the best to separate them."
)
SUITE_TITLES = {
    "conflicting": "Conflicting pair",
    "independent": "Independent pair",
    "correlated": "Correlated pair",
    "known_answer": "Known answer (exact optimum)",
    "known_answer_headline": "Known answer: meta-policy vs 11 MORLHF policies at plateau",
    "three_objectives": "Three objectives",
    "five_objectives": "Five objectives",
}


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _mean(row: Mapping[str, Any], metric: str) -> Any:
    """``METRIC_mean``, or ``METRIC`` in older leaderboard files (``training_samples``)."""
    return row.get(f"{metric}_mean", row.get(metric))


def metric_cell(row: Mapping[str, Any], metric: str) -> str:
    """``mean [lo, hi]`` (``[n/a]`` with one seed) plus ``best`` / ``≈ best`` / ``≈? best``
    (tied on too few shared seeds: :func:`morl_core.bench.leaderboard.cannot_tell`); older
    leaderboard files without intervals read ``mean ± std``; ``n/a`` without a mean."""
    mean, lo, hi = _mean(row, metric), row.get(f"{metric}_lo"), row.get(f"{metric}_hi")
    if not _finite(mean):
        return "n/a"
    if f"{metric}_lo" in row:
        interval = f"[{lo:.3g}, {hi:.3g}]" if _finite(lo) and _finite(hi) else "[n/a]"
        text = f"{mean:.4g} {interval}"
    elif _finite(row.get(f"{metric}_std")):
        text = f"{mean:.3f} ± {row[f'{metric}_std']:.3f}"
    else:
        text = f"{mean:.4g}"
    if f"{metric}_shared_seeds" in row:  # a table of morl_core.bench, which is installed
        from morl_core.bench.leaderboard import cannot_tell

        if cannot_tell(row, metric):
            return text + CANNOT_TELL_MARK
    return text + TIE_MARKS.get(row.get(f"{metric}_vs_best"), "")


def published_leaderboard() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The leaderboard of ``docs/findings.md``, shipped as data: ``(about, display rows)``.

    HV is only compared within a suite (a 2- and a 3-objective hypervolume are different
    quantities), so the rows carry their suite and objectives.
    """
    try:
        data = json.loads(PUBLISHED.read_text())
    except (OSError, ValueError):
        return {}, []
    rows = [
        {
            "suite": SUITE_TITLES.get(r["suite"], r["suite"]),
            "objectives": " vs ".join(r["objectives"]),
            "method": r["method"],
            "seeds": r["seeds"],
            "HV": metric_cell(r, "hypervolume"),
            "EU": metric_cell(r, "expected_utility"),
            # beside the rewards, how far from the base model they were bought (an exploit shows)
            "KL/token": metric_cell(r, "kl_per_token"),
            "training samples": _mean(r, "training_samples"),
            "wall s": _mean(r, "wall_seconds"),
            "models kept": _mean(r, "models_kept"),
        }
        for r in data.get("rows", [])
    ]
    return {k: data.get(k) for k in ("source", "date", "setting")}, rows


@dataclass(frozen=True)
class SuitePlan:
    """What starting a suite will do: how many runs and roughly how long."""

    suite: str
    runs: int
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    seconds: float

    def describe(self) -> str:
        """``24 runs (8 methods x 3 seeds), about 40 min on this kind of machine``."""
        return (
            f"{self.runs} runs ({len(self.methods)} methods x {len(self.seeds)} seeds), "
            f"about {self.seconds / 60:.0f} min (from the published runs' wall time)"
        )


def plan_suite(suite: str) -> SuitePlan:
    """Count the runs of ``suite`` and estimate their time from the published wall seconds;
    ``ValueError`` on an unknown suite."""
    from morl_core.bench import load_suite

    spec = load_suite(suite)
    _, rows = published_leaderboard()
    wall = {r["method"]: r["wall s"] for r in rows if r.get("wall s")}
    per_seed = sum(wall.get(m, DEFAULT_RUN_SECONDS) for m in spec.methods)
    return SuitePlan(
        spec.name,
        len(spec.methods) * len(spec.seeds),
        tuple(spec.methods),
        tuple(spec.seeds),
        per_seed * len(spec.seeds),
    )


def stop_suite(pid: int) -> bool:
    """Stop a suite process started by :func:`start_suite` (its runs already queued finish or
    can be cancelled on the Train page); False when it had already ended."""
    try:
        os.killpg(int(pid), signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def benchmark_records(out: Path | str | None = None) -> list[dict[str, Any]]:
    """Every benchmark record under ``out`` (default :func:`bench_out`); [] when there are none."""
    if not bench_available():
        return []
    from morl_core.bench import read_records

    try:
        return read_records(Path(out or bench_out()))
    except (OSError, ValueError):
        return []


@dataclass(frozen=True)
class Leaderboard:
    """The benchmark page's content: records, the aggregated table and its figures."""

    records: list[dict[str, Any]]
    table: Any  # pandas DataFrame, one row per (suite, method)
    figures: dict[str, Any]  # name -> plotly Figure

    def display_table(
        self,
        metrics: Sequence[str] = (
            "hypervolume",
            "expected_utility",
            "igd_plus",
            "training_samples",
            "wall_seconds",
            "models_kept",
        ),
    ):
        """One row per suite and method, a :func:`metric_cell` per shown metric."""
        keys = ("suite", "method", "seeds", "failed")
        return [
            {**{k: row[k] for k in keys}, **{m: metric_cell(row, m) for m in metrics}}
            for _, row in self.table.iterrows()
        ]


def leaderboard(records: list[dict[str, Any]]) -> Leaderboard:
    """Aggregate records (means and intervals over seeds) and build the benchmark figures."""
    from morl_core.bench import aggregate
    from morl_core.bench.figures import all_figures

    table = aggregate(records)
    return Leaderboard(records, table, all_figures(records, table))


def bench_suites() -> list[str]:
    """Suite names shipped in ``benchmarks/suites``."""
    from morl_core.bench import available

    return available()


def start_suite(suite: str, out: Path | str | None = None) -> tuple[int, Path]:
    """Start ``morl bench SUITE`` as a detached process (it outlives the page); returns
    ``(pid, log file)``. The runs it submits appear on the Train page as they go;
    ``ValueError`` on an unknown suite.
    """
    from morl_core.bench import load_suite

    name = load_suite(suite).name
    out = Path(out or bench_out())
    log = out / f"{name}.bench.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "morl_core.cli", "bench", suite, "--out", str(out)],
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    return proc.pid, log


def evaluated_runs_table(artifacts: Sequence[ArtifactInfo]) -> list[dict[str, Any]]:
    """One row per artifact whose front was evaluated (``front.json``): method and indicators."""
    rows = []
    for info in artifacts:
        path = info.run_dir / "front.json"
        if not path.exists():
            continue
        front = json.loads(path.read_text())
        ind = front.get("indicators") or front_indicators(front)
        rows.append(
            {
                "artifact": info.label,
                "method": front.get("method", info.method),
                # bars group by method *and* objective set: HVs of 2 and 3 objectives differ
                "front": f"{front.get('method', info.method)} · {', '.join(info.objectives)}",
                "objectives": ", ".join(info.objectives),
                "hypervolume": ind.get("hypervolume"),
                "expected_utility": ind.get("expected_utility"),
                "sparsity": ind.get("sparsity"),
                "cardinality": ind.get("cardinality"),
            }
        )
    return rows
