"""What EMORL's coefficient search costs as objectives are added: candidates, samples, hours.

Usage::

    python benchmarks/emorl_search_cost.py [--suites three_objectives,five_objectives,...]
        [--out benchmarks/results/emorl_search_cost.json]

EMORL searches its aggregation coefficients a in [0, 1]^K for every evaluation preference by a
hierarchical grid search (:func:`morl_core.search.hierarchical_grid_search`): 5 rounds of a 3^K
grid, each round shrinking the box to the best of its 2^K sub-boxes (a suite may search fewer
rounds: its ``method_options``; the five-objective suites search one). Candidates are shared
between preferences only where their grids meet, so the number of distinct candidates (each
decoded and scored on ``search_prompts`` x ``search_replies`` = 8 x 16 sampled replies) grows
about as 3^K times the number of preferences.

For each suite this counts the distinct candidates of the search itself, run on a stand-in
objective that peaks at a = w (a smooth bowl, ``-|a - w|^2``, with noise of 0.02 so ties break
as a real search's do; three noise seeds), and where the suite's published EMORL records exist it
puts their measured counts and seconds beside the estimate. The hours are the counted candidates
times the median seconds per candidate of those records (every suite's EMORL records, each on a
shared core), so they hold for this embedded model on a CPU like the one that measured them; a
candidate decodes K experts per token, so with more objectives they are a floor.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core.bench.suites import load_suite  # noqa: E402
from morl_core.evaluation import preference_grid  # noqa: E402
from morl_core.options import METHOD_OPTIONS  # noqa: E402
from morl_core.runfolder import write_json_atomic  # noqa: E402
from morl_core.search import hierarchical_grid_search  # noqa: E402

SUITES = "conflicting,three_objectives,five_objectives,five_objectives_mixed"
RECORDS = ROOT / "benchmarks" / "results" / "bench"
NOISE = 0.02


def distinct_candidates(k: int, preferences: np.ndarray, rounds: int, seed: int) -> int:
    """Distinct coefficient vectors the search scores over ``preferences`` on the stand-in."""
    rng, seen = np.random.default_rng(seed), set()

    def bowl(points: np.ndarray, w: np.ndarray) -> np.ndarray:
        seen.update(map(tuple, points))
        return -((points - w) ** 2).sum(1) + rng.normal(0.0, NOISE, len(points))

    for w in preferences:
        hierarchical_grid_search(lambda p, w=w: bowl(p, w), k, rounds=rounds)
    return len(seen)


def measured(suite: str) -> list[dict]:
    """The suite's published EMORL records: distinct candidates, samples, seconds."""
    found = []
    for path in sorted((RECORDS / suite / "records").glob("emorl__seed*.json")):
        record = json.loads(path.read_text())
        found.append(
            {
                "record": path.name,
                "candidates": record["search_evaluations"],
                "samples": record["search_samples"],
                "seconds": round(record["search_seconds"], 1),
            }
        )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suites", default=SUITES, help=f"comma-separated (default {SUITES})")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/emorl_search_cost.json"))
    args = parser.parse_args(argv)
    options = METHOD_OPTIONS["emorl"]
    default_rounds = options["search_rounds"].default
    per_candidate = options["search_prompts"].default * options["search_replies"].default
    names = args.suites.split(",")
    try:
        suites = [load_suite(name) for name in names]
    except ValueError as error:
        parser.error(f"--suites: {error}")
    rows, rates = [], []
    for name, suite in zip(names, suites, strict=True):
        k = len(suite.objectives)
        grid = preference_grid(k, suite.preferences)
        rounds = suite.method_options.get("emorl", {}).get("search_rounds", default_rounds)
        counts = [distinct_candidates(k, grid, rounds, seed) for seed in range(3)]
        # at the paper's rounds too, where the suite searches fewer (one noise seed)
        paper = (
            distinct_candidates(k, grid, default_rounds, 0) if rounds != default_rounds else None
        )
        records = measured(name)
        rates += [r["seconds"] / r["candidates"] for r in records]
        rows.append(
            {
                "suite": name,
                "objectives": k,
                "preferences": len(grid),
                "rounds": rounds,  # the suite's
                "candidates_estimated": counts,
                "candidates_at_default_rounds": paper,  # None: the suite searches those
                "samples_estimated": int(statistics.mean(counts)) * per_candidate,
                "measured": records,
            }
        )
    rate = statistics.median(rates) if rates else None
    print(f"EMORL search: rounds of a 3^K grid, {per_candidate} replies per candidate")
    if rate:
        print(f"seconds per candidate (median of {len(rates)} published records): {rate:.2f}")
    print(
        f"{'suite':24s} {'K':>2s} {'prefs':>5s} {'rounds':>6s} {'candidates':>18s} "
        f"{'samples':>10s} {'hours':>6s}"
    )
    for row in rows:
        mean = statistics.mean(row["candidates_estimated"])
        row["hours_estimated"] = round(mean * rate / 3600, 1) if rate else None
        low, high = min(row["candidates_estimated"]), max(row["candidates_estimated"])
        counts = str(low) if low == high else f"{low}-{high}"
        hours = f"{row['hours_estimated']:6.1f}" if rate else "     -"
        print(
            f"{row['suite']:24s} {row['objectives']:2d} {row['preferences']:5d} "
            f"{row['rounds']:6d} {counts:>18s} {row['samples_estimated']:10,d} {hours}"
        )
        paper = row["candidates_at_default_rounds"]
        if paper is not None:
            at = f" ({paper * rate / 3600:.1f} h)" if rate else ""
            print(f"{'':24s} at {default_rounds} rounds: {paper} candidates{at}")
        for r in row["measured"]:
            found = f"{r['candidates']} candidates, {r['seconds']:.0f} s"
            print(f"{'':24s} measured {r['record']}: {found}")
    write_json_atomic(
        Path(args.out),
        {
            "benchmark": "emorl_search_cost",
            "default_rounds": default_rounds,
            "replies_per_candidate": per_candidate,
            "seconds_per_candidate": rate,
            "suites": rows,
        },
    )
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
