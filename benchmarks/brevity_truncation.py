"""What does brevity reward when most replies are cut off? Base SmolLM2 replies at the builder's
32-token training budget.

Usage::

    python benchmarks/brevity_truncation.py [--replies 4] [--max-new-tokens 32,64] [--out FILE]

``brevity(target_words=15)`` scores ``min(1, 15 / words)``. A reply the sampler cuts off at
``max_new_tokens`` is not short, yet it is scored by the words that fit in the budget, so among
cut-off replies the reward pays for fewer words per token. For the base model sampled as the
SmolLM2 demos train (every training prompt of the ``assistant`` set, ``--replies`` each,
temperature 1, top-p 1, seed 0) this prints, per budget, the share of replies that end (EOS)
inside it, the mean brevity of ended and cut-off replies, the words of the cut-off ones, and the
share of brevity's variance that lies between ended and cut-off replies (the rest is variation
among replies of the same kind: for cut-off ones, words per token). Saves the figures to ``--out``
(default ``benchmarks/results/brevity_truncation.json``).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core import objectives as objective_registry  # noqa: E402
from morl_core.objectives.lexical import words_of  # noqa: E402
from morl_core.policy import load_policy, set_threads  # noqa: E402
from morl_core.prompts import load_prompts  # noqa: E402
from morl_core.runfolder import write_json_atomic  # noqa: E402

BREVITY = "brevity(target_words=15)"  # the SmolLM2 demos' brevity (scripts/build_smollm2_demos.py)
MAX_REPLIES = 16
MAX_TOKENS = 256


def budget_figures(policy, prompts: list[str], replies: int, max_new_tokens: int) -> dict:
    """Sample ``replies`` per prompt within ``max_new_tokens`` and split brevity by ending."""
    t0 = time.perf_counter()
    rollout = policy.rollout(
        prompts, n=replies, max_new_tokens=max_new_tokens, temperature=1.0, top_p=1.0, seed=0
    )
    texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
    ids = [
        row[: int(m.sum())]
        for row, m in zip(rollout.completion_ids.tolist(), rollout.completion_mask, strict=True)
    ]
    ended = np.asarray([bool(row) and row[-1] == policy.eos_id for row in ids])
    asked = [p for p in prompts for _ in range(replies)]
    brevity = np.asarray(objective_registry.score([BREVITY], asked, texts), dtype=float)[:, 0]
    words = np.asarray([len(words_of(t)) for t in texts])
    share = ended.mean()
    within = sum(part.mean() * brevity[part].var() for part in (ended, ~ended) if part.any())
    return {
        "max_new_tokens": max_new_tokens,
        "replies": len(texts),
        "ended_share": float(share),
        "brevity_mean": float(brevity.mean()),
        "brevity_ended": float(brevity[ended].mean()) if ended.any() else None,
        "brevity_cut_off": float(brevity[~ended].mean()) if (~ended).any() else None,
        "brevity_std_cut_off": float(brevity[~ended].std()) if (~ended).any() else None,
        "words_cut_off_p5_p50_p95": (
            np.percentile(words[~ended], [5, 50, 95]).tolist() if (~ended).any() else None
        ),
        "variance_share_between_ended_and_cut_off": float(1.0 - within / brevity.var()),
        "seconds": time.perf_counter() - t0,
    }


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replies", type=int, default=4, help=f"per prompt, 1-{MAX_REPLIES}")
    parser.add_argument("--max-new-tokens", default="32,64", help=f"budgets, each 1-{MAX_TOKENS}")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/brevity_truncation.json"
    )
    args = parser.parse_args(argv)
    try:
        budgets = [int(b) for b in args.max_new_tokens.split(",")]
    except ValueError:
        parser.error("--max-new-tokens: comma-separated whole numbers, e.g. 32,64")
    if not 1 <= args.replies <= MAX_REPLIES:
        parser.error(f"--replies must be in [1, {MAX_REPLIES}], got {args.replies}")
    if not all(1 <= b <= MAX_TOKENS for b in budgets):
        parser.error(f"--max-new-tokens: each budget must be in [1, {MAX_TOKENS}]")
    if not 1 <= args.threads <= (os.cpu_count() or 1):
        parser.error(f"--threads must be in [1, {os.cpu_count()}], got {args.threads}")
    set_threads(args.threads)
    try:
        policy = load_policy(args.model, device="cpu", threads=args.threads)
    except ValueError as err:
        parser.error(f"--model: {err}")
    prompts = load_prompts("assistant", "train")
    rows = []
    for budget in budgets:
        row = budget_figures(policy, prompts, args.replies, budget)
        rows.append(row)
        print(
            f"{budget:4d} tokens: {row['ended_share']:.1%} of {row['replies']} replies end; "
            f"brevity ended {fmt(row['brevity_ended'])}, cut off {fmt(row['brevity_cut_off'])} "
            f"(std {fmt(row['brevity_std_cut_off'])}, words {row['words_cut_off_p5_p50_p95']}); "
            f"between ended and cut off: {row['variance_share_between_ended_and_cut_off']:.1%} "
            "of brevity's variance",
            flush=True,
        )
    result = {
        "benchmark": "brevity_truncation",
        "model": args.model,
        "objective": BREVITY,
        "prompt_set": "assistant/train",
        "machine": platform.processor() or platform.machine(),
        "budgets": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, result)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
