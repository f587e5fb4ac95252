"""Is MORLHF's lead on the five-objective suite a method effect or a training seed?

At a vertex of the simplex MORLHF trains a one-objective policy exactly as an expert is trained
(same steps, prompts, KL), but a stage's seed is ``seed * 1000 + its position in the run``:
MORLHF trains sentiment fifth, the experts (soups, MOD, the meta-policy) train it first. This
script trains, with the five_objectives suite's settings:

- soups with the objectives reversed (sentiment fifth, MORLHF's stage seed) at ``--reversed``
  seeds: if the seed is the whole story its sentiment vertex equals MORLHF's to the digit;
- soups and MORLHF in the suite's order at ``--seeds``: the spread of the sentiment vertex
  between seeds, and the paired difference MORLHF's stage seed minus the expert's.

Each vertex is evaluated under the suite's protocol (held-out prompts x 4 samples, common random
numbers) without KL or bootstrap. A run cut short resumes (finished cells are read back from
``--out``; an unfinished run continues from its checkpoint). Results: ``--out/results.jsonl``
and a summary JSON (default ``benchmarks/results/stage_seed_vertex.json``).

    python benchmarks/stage_seed_vertex.py --reversed 0,1,2 --seeds 3,4,5,6,7 --out /tmp/vtx
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SUITE = "five_objectives"
OBJECTIVE = "sentiment"
MAX_SEEDS = 50  # each cell trains five policies: an upper bound on one call's work


def seeds_arg(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"seeds must be integers like 0,1,2, got {text!r}"
        ) from None
    if len(seeds) > MAX_SEEDS or any(not 0 <= s < 10_000 for s in seeds):
        raise argparse.ArgumentTypeError(f"at most {MAX_SEEDS} seeds, each in [0, 9999]")
    return seeds


def vertex(method: str, seed: int, order: str, out: Path) -> dict:
    """Train one cell (resuming) and evaluate its sentiment vertex."""
    from morl_core import evaluation
    from morl_core.bench.suites import load_suite
    from morl_core.methods.registry import get
    from morl_core.train_cli import run_training

    suite = load_suite(SUITE)
    config = suite.run_config(method, seed)
    if order == "reversed":
        config = replace(config, objectives=tuple(reversed(config.objectives)))
    run_dir = out / f"{method}_{seed}_{order}"
    start = time.time()
    run_training(config, run_dir)
    steerable = get(method).load(run_dir, device="cpu")
    protocol = replace(suite.eval_protocol(), kl=False, bootstrap=0)
    prompts, columns = protocol.prompts(config.prompt_set)
    objectives = list(config.objectives)
    w = np.eye(len(objectives))[objectives.index(OBJECTIVE)]
    front = evaluation.evaluate_front(
        steerable, prompts, w, objectives, protocol=protocol, prompt_columns=columns
    )
    point = dict(zip(objectives, front["points"][0], strict=True))
    return {
        "method": method,
        "seed": seed,
        "order": order,
        OBJECTIVE: point[OBJECTIVE],
        "point": point,
        "seconds": time.time() - start,
    }


def summary(rows: list[dict]) -> dict:
    """Vertex values by cell, the reversed-order check and the paired difference."""
    by = {(r["method"], r["seed"], r["order"]): r[OBJECTIVE] for r in rows}
    morlhf = {s: v for (m, s, o), v in by.items() if m == "morlhf" and o == "suite"}
    experts = {s: v for (m, s, o), v in by.items() if m == "soups" and o == "suite"}
    reversed_ = {s: v for (m, s, o), v in by.items() if m == "soups" and o == "reversed"}
    shared = sorted(set(morlhf) & set(experts))
    diffs = [morlhf[s] - experts[s] for s in shared]
    values = list(morlhf.values()) + list(experts.values())
    out = {
        "objective": OBJECTIVE,
        "morlhf": morlhf,
        "experts": experts,
        "experts_reversed_order": reversed_,
        "paired_seeds": shared,
        "paired_differences": diffs,
    }
    if len(diffs) > 1:
        mean, sd = statistics.mean(diffs), statistics.stdev(diffs)
        out |= {
            "difference_mean": mean,
            "difference_sd": sd,
            "difference_t": mean / (sd / len(diffs) ** 0.5) if sd > 0 else None,
            "positive": sum(d > 0 for d in diffs),
        }
    if len(values) > 1:
        out["vertex_sd_between_seeds"] = statistics.stdev(values)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reversed", type=seeds_arg, default=[0, 1, 2])
    parser.add_argument("--seeds", type=seeds_arg, default=[3, 4, 5, 6, 7])
    parser.add_argument("--out", type=Path, required=True, help="run folders and results.jsonl")
    parser.add_argument(
        "--summary", type=Path, default=ROOT / "benchmarks/results/stage_seed_vertex.json"
    )
    parser.add_argument(
        "--record",
        type=Path,
        action="append",
        default=[],
        help="a committed record (benchmarks/results/bench/five_objectives/records/*.json) "
        "whose sentiment vertex joins the summary",
    )
    args = parser.parse_args(argv)
    from morl_core.policy import set_threads

    set_threads(1)
    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "results.jsonl"
    rows = [json.loads(line) for line in results.open()] if results.exists() else []
    done = {(r["method"], r["seed"], r["order"]) for r in rows}
    cells = [("soups", s, "reversed") for s in args.reversed]
    cells += [(m, s, "suite") for s in args.seeds for m in ("soups", "morlhf")]
    for cell in cells:
        if cell in done:
            continue
        row = vertex(*cell, args.out)
        print(json.dumps(row), flush=True)
        rows.append(row)
        with results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
    for path in args.record:  # the suite's own cells, evaluated with KL (same points)
        record = json.loads(path.read_text())
        objectives = record["objectives"]
        at = [p[objectives.index(OBJECTIVE)] for p in record["preferences"]].index(1.0)
        rows.append(
            {
                "method": record["method"],
                "seed": record["seed"],
                "order": "suite",
                OBJECTIVE: record["front"][at][objectives.index(OBJECTIVE)],
            }
        )
    found = summary(rows)
    args.summary.parent.mkdir(parents=True, exist_ok=True)
    args.summary.write_text(json.dumps(found, indent=1) + "\n")
    print(json.dumps({k: v for k, v in found.items() if not isinstance(v, dict)}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
