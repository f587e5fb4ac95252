"""Known answers: every method against the exact KL-regularised optimum pi*_w.

Usage::

    python benchmarks/known_answers.py [--steps 150] [--beta 0.3] [--methods morlhf,soups,...]
        [--work morl_data/known_answers] [--out benchmarks/results/known_answers.json]

The problem is :mod:`morl_core.known_answers`: one-token replies at adjective-slot prompts,
objectives ``warm_word`` and ``cold_word``. Two parts:

1. **Exact, no training.** The base rates; the exact front of linear scalarisation; whether MOD
   is exact when its experts are optimal (the geometric mixture of pi*_(1,0) and pi*_(0,1) with
   weights w against pi*_w); and, for rate ** p transforms (p = 0.5, 1, 2), the IGD of the
   optima of per-sample linear and Tchebycheff scalarisation to the transformed front.
2. **Trained.** Each method trained with the run settings below (8 prompts x 8 samples per step,
   ``--steps`` per policy), then its class rates measured at 5 preferences from
   ``--samples`` sampled replies per prompt (common random numbers: the same seed at every
   preference and for every method) and compared with pi*_w: the largest rate error, its Monte
   Carlo standard error, and for single-adapter methods the exact KL(pi_w || pi*_w).

Runs are ordinary run folders under ``--work``; a method whose folder already holds a finished
artifact is not retrained, and an interrupted one resumes from its checkpoint, so a cut-short
benchmark continues where it stopped. Prints a table and writes JSON to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core import known_answers as ka  # noqa: E402
from morl_core import objectives as objective_registry  # noqa: E402
from morl_core.config import RunConfig  # noqa: E402
from morl_core.jobs.records import git_hash  # noqa: E402
from morl_core.methods import METHODS  # noqa: E402
from morl_core.policy import load_policy, set_threads  # noqa: E402
from morl_core.prompts import load_prompts  # noqa: E402

PREFERENCES = [(1.0, 0.0), (0.75, 0.25), (0.5, 0.5), (0.25, 0.75), (0.0, 1.0)]
DEFAULT_METHODS = "morlhf,soups,mod,pmix,emorl,metapolicy,ric,panacea,dynaopt"
EXPERT_METHODS = {"soups", "mod", "pmix", "emorl", "metapolicy"}


def settings(args) -> dict:
    return {
        "objectives": list(ka.KNOWN_OBJECTIVES),
        "prompt_set": ka.PROMPT_SET,
        "max_new_tokens": 1,
        "batch_prompts": 8,
        "k_samples": 8,
        "kl_coef": args.beta,
        "lr": args.lr,
        "steps": args.steps,
        "n_preferences": 5,
        "eval_every": 0,
        "eval_prompts": 4,
        "checkpoint_every": 25,
        "device": "cpu",
        "threads": 1,
        "seed": args.seed,
    }


# --- part 1: exact --------------------------------------------------------------------------


def exact_part(policy, prompts, beta: float) -> dict:
    rewards = ka.token_rewards(policy)
    ref = ka.reference_logprobs(policy, prompts)
    experts = [ka.optimum(ref, rewards, w, beta, "linear") for w in ((1.0, 0.0), (0.0, 1.0))]
    mod_errors = []
    for w in PREFERENCES:
        mixed = w[0] * experts[0] + w[1] * experts[1]
        mixed -= np.logaddexp.reduce(mixed, axis=-1, keepdims=True)
        star = ka.optimum(ref, rewards, w, beta, "linear")
        mod_errors.append(float(np.abs(np.exp(mixed) - np.exp(star)).max()))
    front = ka.exact_front(ref, rewards, beta)
    grid = [(a, 1 - a) for a in np.linspace(0, 1, 11)]
    transforms = {}
    for power in (0.5, 1.0, 2.0):
        target = ka.transformed(front, power)
        row = {}
        for kind in ("linear", "tchebycheff"):
            points = [ka.rates(ka.optimum(ref, rewards, w, beta, kind), rewards) for w in grid]
            row[kind] = ka.igd(ka.transformed(np.asarray(points), power), target)
        transforms[str(power)] = row
    return {
        "base_rates": ka.rates(ref, rewards).tolist(),
        "optimal_rates": {
            str(w): ka.rates(ka.optimum(ref, rewards, w, beta, "linear"), rewards).tolist()
            for w in PREFERENCES
        },
        "mod_of_optimal_experts_max_abs_error": max(mod_errors),
        "igd_to_transformed_front": transforms,
    }


# --- part 2: trained ------------------------------------------------------------------------


def train(method: str, base: dict, work: Path, expert_dir: Path | None) -> tuple[Path, float]:
    run = work / method
    if (run / "artifact.json").exists():
        return run, 0.0
    run.mkdir(parents=True, exist_ok=True)
    data = {**base, "method": method}
    if method in EXPERT_METHODS and expert_dir is not None and method != "soups":
        data["options"] = {"experts_from": str(expert_dir)}
    config = RunConfig.from_dict(data)
    (run / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
    start = time.perf_counter()
    total = {"step": 0}

    def progress(info) -> bool:
        if info.step % 25 == 0 or info.step == info.total_steps:
            print(f"  {method}: step {info.step}/{info.total_steps} ({info.stage})", flush=True)
        total["step"] = info.step
        return True

    METHODS[method].train(config, run, progress)
    return run, time.perf_counter() - start


def measure(steerable, prompts, rewards_ref, beta: float, samples: int, seed: int) -> list[dict]:
    rewards, ref = rewards_ref
    rows = []
    for w in PREFERENCES:
        texts = steerable.generate(prompts, w, n=samples, max_new_tokens=1, seed=seed)
        repeated = [p for p in prompts for _ in range(samples)]
        scores = objective_registry.score(ka.KNOWN_OBJECTIVES, repeated, texts)  # (N, 2)
        rates = scores.mean(0)
        stderr = scores.std(0, ddof=1) / np.sqrt(len(scores))
        star = ka.optimum(ref, rewards, w, beta, "linear")
        optimal = ka.rates(star, rewards)
        row = {
            "weights": list(w),
            "rates": rates.tolist(),
            "stderr": stderr.tolist(),
            "optimal_rates": optimal.tolist(),
            "rate_error": float(np.abs(rates - optimal).max()),
        }
        exact = exact_logprobs(steerable, w, prompts)
        if exact is not None:
            row["kl_to_optimum"] = ka.kl(exact, star)
            row["exact_rates"] = ka.rates(exact, rewards).tolist()
        rows.append(row)
    return rows


def exact_logprobs(steerable, weights, prompts):
    """Exact next-token log-probs for single-adapter servers (morlhf, soups, dynaopt), else None."""
    choose = getattr(steerable, "choose", None)
    policy = getattr(steerable, "policy", None)
    if choose is None or policy is None:
        return None
    policy.model.set_adapter(choose(np.asarray(weights, float)))
    return ka.next_token_logprobs(policy, prompts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--beta", type=float, default=0.3)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=128, help="replies per prompt and w")
    parser.add_argument("--methods", default=DEFAULT_METHODS)
    parser.add_argument("--work", type=Path, default=ROOT / "morl_data" / "known_answers")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/known_answers.json")
    args = parser.parse_args(argv)
    if not 1 <= args.steps <= 5000 or not 1 <= args.samples <= 4096:
        parser.error("--steps must be in [1, 5000] and --samples in [1, 4096]")
    set_threads(1)
    os.environ.setdefault("MORL_ALLOWED_PATHS", str(args.work.resolve()))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; allowed: {', '.join(sorted(METHODS))}")
    work = args.work / f"steps{args.steps}-beta{args.beta:g}-seed{args.seed}"
    work.mkdir(parents=True, exist_ok=True)

    prompts = load_prompts(ka.PROMPT_SET, "train")
    policy = load_policy("embedded", device="cpu", threads=1)
    exact = exact_part(policy, prompts, args.beta)
    rewards = ka.token_rewards(policy)
    ref = ka.reference_logprobs(policy, prompts)
    print(f"base rates (warm, cold): {np.round(exact['base_rates'], 3).tolist()}")
    print(
        "MOD of the exact experts vs pi*_w, max |p - p*|: "
        f"{exact['mod_of_optimal_experts_max_abs_error']:.2e}"
    )
    for power, row in exact["igd_to_transformed_front"].items():
        print(
            f"rate ** {power}: IGD to the exact front, per-sample linear {row['linear']:.4f}, "
            f"per-sample Tchebycheff {row['tchebycheff']:.4f}"
        )

    base = settings(args)
    expert_dir = None
    if EXPERT_METHODS & set(methods):
        expert_dir, _ = train("soups", base, work, None)
    results = {}
    for method in methods:
        run, seconds = train(method, base, work, expert_dir)
        steerable = METHODS[method].load(run, device="cpu")
        rows = measure(steerable, prompts, (rewards, ref), args.beta, args.samples, args.seed)
        results[method] = {"train_seconds": seconds, "preferences": rows}
        errors = " ".join(f"{r['rate_error']:.3f}" for r in rows)
        print(f"{method:>10}: rate error at w1 = 1, .75, .5, .25, 0: {errors}", flush=True)

    record = {
        "benchmark": "known_answers",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_hash": git_hash(),
        "settings": {**base, "samples": args.samples, "preferences": PREFERENCES},
        "exact": exact,
        "methods": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
