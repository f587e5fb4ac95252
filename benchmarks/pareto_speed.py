"""Pareto speed: morl_core.pareto against calling moocore directly, on the same data, same run.

Usage::

    python benchmarks/pareto_speed.py [--repeats 21] [--seed 0] [--out benchmarks/results/pareto_speed.json]

Cases (issue 4), all under the maximisation convention:

* ``hypervolume_3d``: 10,000 points in 3-D, all on the front (the positive octant of the unit
  sphere, the hard case: nothing can be skipped), ref = 0.
* ``hypervolume_5d``: 2,000 points in 5-D on the unit sphere's positive orthant, ref = 0.
* ``non_dominated_3d``: 100,000 points uniform in the unit cube.

The baseline is ``moocore.hypervolume(points, ref=ref, maximise=True)`` and
``moocore.is_nondominated(points, maximise=True, keep_weakly=True)`` (the same semantics as
``morl_core.pareto``'s defaults). Ours and the baseline are timed alternately, ``--repeats``
times each after one warm-up call; the figure reported is the ratio of medians
(ours / moocore; goal: <= 1.2). Results must agree exactly. Prints a table and writes a JSON
record (versions, git hash, machine) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import numpy as np

from morl_core.jobs.records import git_hash

ROOT = Path(__file__).resolve().parents[1]
GOAL = 1.2


def sphere_front(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """n mutually non-dominated points on the positive orthant of the unit sphere, (n, k)."""
    x = np.abs(rng.normal(size=(n, k)))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def time_pair(
    ours: Callable[[], object], baseline: Callable[[], object], repeats: int
) -> tuple[list[float], list[float]]:
    """Time two calls alternately (so drift hits both alike); one warm-up call each first."""
    ours()
    baseline()
    times_ours, times_base = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours()
        times_ours.append(time.perf_counter() - start)
        start = time.perf_counter()
        baseline()
        times_base.append(time.perf_counter() - start)
    return times_ours, times_base


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=21, help="timed calls per side and case")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated point sets")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/pareto_speed.json")
    args = parser.parse_args(argv)

    import moocore

    sys.path.insert(0, str(ROOT))
    from morl_core import pareto

    rng = np.random.default_rng(args.seed)
    hv3 = sphere_front(10_000, 3, rng)  # (10000, 3)
    hv5 = sphere_front(2_000, 5, rng)  # (2000, 5)
    nd3 = rng.uniform(size=(100_000, 3))  # (100000, 3)
    cases = {
        "hypervolume_3d": (
            hv3.shape,
            lambda: pareto.hypervolume(hv3, np.zeros(3)),
            lambda: moocore.hypervolume(hv3, ref=np.zeros(3), maximise=True),
        ),
        "hypervolume_5d": (
            hv5.shape,
            lambda: pareto.hypervolume(hv5, np.zeros(5)),
            lambda: moocore.hypervolume(hv5, ref=np.zeros(5), maximise=True),
        ),
        "non_dominated_3d": (
            nd3.shape,
            lambda: pareto.non_dominated(nd3),
            lambda: moocore.is_nondominated(nd3, maximise=True, keep_weakly=True),
        ),
    }

    results = {}
    print(f"{'case':<20}{'shape':>14}{'ours ms':>10}{'moocore ms':>12}{'ratio':>8}  within goal")
    for name, (shape, ours, baseline) in cases.items():
        if not np.array_equal(np.asarray(ours()), np.asarray(baseline())):
            raise SystemExit(f"{name}: morl_core.pareto and moocore disagree")
        times_ours, times_base = time_pair(ours, baseline, args.repeats)
        med_ours, med_base = statistics.median(times_ours), statistics.median(times_base)
        ratio = med_ours / med_base
        results[name] = {
            "shape": list(shape),
            "ours_median_s": med_ours,
            "moocore_median_s": med_base,
            "ours_min_s": min(times_ours),
            "moocore_min_s": min(times_base),
            "ratio_of_medians": round(ratio, 4),
            "ratio_of_minima": round(min(times_ours) / min(times_base), 4),
            "within_goal": ratio <= GOAL,
        }
        print(
            f"{name:<20}{str(shape):>14}{med_ours * 1e3:>10.3f}{med_base * 1e3:>12.3f}"
            f"{ratio:>8.3f}  {'yes' if ratio <= GOAL else 'NO'}"
        )

    record = {
        "benchmark": "pareto_speed",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "goal_ratio": GOAL,
        "repeats": args.repeats,
        "seed": args.seed,
        "results": results,
        "versions": {
            "python": platform.python_version(),
            "numpy": np.__version__,
            "moocore": version("moocore"),
        },
        "git_hash": git_hash(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
