"""Utility at a suite's vertices and at its mixtures, per method, from the committed records.

Hypervolume is dominated by a front's extremes; this asks what a method delivers where the
preference mixes objectives. For each record: the mean of w . p over the evaluated preferences
that are vertices of the simplex (one objective) and over those that mix objectives, where p is
the front's mean point at w. Then, per pair of methods, the paired difference at the mixtures
over the seeds both ran, with the leaderboard's t interval.

    python benchmarks/mixture_utility.py five_objectives_mixed
    python benchmarks/mixture_utility.py five_objectives_mixed --pairs morlhf:soups,metapolicy:metapolicy_prior
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RECORDS = ROOT / "benchmarks/results/bench"


def utilities(records: list[dict]) -> dict[str, dict[int | None, tuple[float, float]]]:
    """method -> seed -> (mean utility at the vertices, at the mixtures)."""
    found: dict[str, dict[int | None, tuple[float, float]]] = {}
    for record in records:
        if record.get("status") != "succeeded" or not record.get("front"):
            continue
        points, weights = np.asarray(record["front"]), np.asarray(record["preferences"])
        utility = (points * weights).sum(1)  # (P,)
        vertex = np.isclose(weights.max(1), 1.0)
        mixed = utility[~vertex].mean() if (~vertex).any() else float("nan")
        found.setdefault(record["method"], {})[record.get("seed")] = (
            float(utility[vertex].mean()) if vertex.any() else float("nan"),
            float(mixed),
        )
    return found


def main(argv: list[str] | None = None) -> int:
    from morl_core.bench.leaderboard import BASE_METHOD, mean_interval, read_records

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", help="a suite with records under --out")
    parser.add_argument("--out", type=Path, default=RECORDS, help="benchmark records folder")
    parser.add_argument(
        "--pairs", default="", help="A:B,... paired at the mixtures (default: every pair)"
    )
    args = parser.parse_args(argv)
    found = utilities(read_records(args.out, [args.suite]))
    if not found:
        parser.error(f"no succeeded records of suite {args.suite!r} under {args.out}")
    print(f"{'method':18s} {'vertices':>9s} {'mixtures':>9s} seeds")
    for method, seeds in sorted(
        found.items(), key=lambda m: -np.mean([v[1] for v in m[1].values()])
    ):
        values = np.asarray(list(seeds.values()))
        print(f"{method:18s} {values[:, 0].mean():9.4f} {values[:, 1].mean():9.4f} {len(seeds)}")
    methods = sorted(m for m in found if m != BASE_METHOD)
    if args.pairs:
        try:
            pairs = [tuple(p.split(":")) for p in args.pairs.split(",")]
            unknown = {m for a, b in pairs for m in (a, b)} - set(found)
        except ValueError:
            parser.error("--pairs must look like morlhf:soups,mod:soups")
        if unknown:
            parser.error(f"--pairs: no records for {', '.join(sorted(unknown))}")
    else:
        pairs = [(a, b) for a in methods for b in methods if a < b]
    print("\npaired at the mixtures (A - B, t interval over shared seeds):")
    for a, b in pairs:
        shared = sorted(set(found[a]) & set(found[b]), key=str)
        d = np.asarray([found[a][s][1] - found[b][s][1] for s in shared])
        low, high = mean_interval(d)
        print(f"{a} - {b}: {d.mean():+.4f} [{low:+.4f}, {high:+.4f}] over {len(d)} seeds")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
