"""Scorer throughput: seconds per 100 texts for each registered objective, on one thread.

Usage::

    python benchmarks/scorers.py [--texts 100] [--repeats 5] [--out benchmarks/results/scorers.json]

For each objective: the first-load time (model import and weights; 0 for pure-Python
objectives), then the median and minimum over ``--repeats`` runs of ``score([name], prompts,
completions)`` on the same distinct (prompt, completion) pairs, scaled to 100 texts. Prints a
table and writes a JSON record (versions, git hash, machine) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from morl_core.jobs.records import git_hash, package_versions

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Tell me about your weekend.",
    "How do I bake bread at home?",
    "What do you think of the new library in town?",
    "Write a short review of a film you liked.",
    "Explain why the sky is blue.",
    "Give me advice on learning to play the guitar.",
]
SENTENCES = [
    "I spent the morning walking by the river with my dog.",
    "Mix the flour, water and yeast, then let the dough rest for an hour.",
    "Honestly, the building looks great but the opening hours are terrible.",
    "The film was warm, funny and beautifully shot.",
    "Sunlight is scattered by the air, and blue light is scattered the most.",
    "Practice a little every day and learn a few simple chords first.",
    "We would appreciate further information regarding the schedule.",
    "lol that was sooo cool, you gotta see it!!!",
    "The trees near the lake were quiet in the evening light.",
    "Nobody expected the old train to arrive on time.",
]


def make_texts(n: int, rng: np.random.Generator) -> tuple[list[str], list[str]]:
    """n prompts and n distinct completions of 2-4 sentences (about 20-50 words)."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    completions = []
    for i in range(n):
        picked = rng.choice(len(SENTENCES), size=int(rng.integers(2, 5)), replace=False)
        completions.append(" ".join(SENTENCES[j] for j in picked) + f" (note {i})")
    return prompts, completions


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=100, help="texts per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per objective")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/scorers.json")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    from morl_core.objectives import OBJECTIVES, score

    prompts, completions = make_texts(args.texts, np.random.default_rng(0))
    results = {}
    print(f"{'objective':<24}{'load s':>9}{'s / 100 texts':>15}{'min':>9}")
    for name, objective in OBJECTIVES.items():
        start = time.perf_counter()
        if objective.prepare is not None:
            objective.prepare(None)
        load_s = time.perf_counter() - start
        score([name], prompts[:2], completions[:2])  # warm caches outside the timing
        timings = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            score([name], prompts, completions)
            timings.append((time.perf_counter() - start) * 100 / args.texts)
        results[name] = {
            "kind": objective.kind,
            "load_s": round(load_s, 4),
            "seconds_per_100_median": round(statistics.median(timings), 5),
            "seconds_per_100_min": round(min(timings), 5),
        }
        row = results[name]
        print(
            f"{name:<24}{row['load_s']:>9.3f}{row['seconds_per_100_median']:>15.4f}"
            f"{row['seconds_per_100_min']:>9.4f}"
        )

    record = {
        "benchmark": "scorers",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "texts": args.texts,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "mean_completion_words": float(np.mean([len(c.split()) for c in completions])),
        "results": results,
        "versions": {
            "python": platform.python_version(),
            **package_versions(
                ("sentence-transformers", "scikit-learn", "vaderSentiment", "alt-profanity-check")
            ),
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
