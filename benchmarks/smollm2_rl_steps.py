"""A few RL steps of :class:`RLTrainer` on SmolLM2-135M-Instruct: does it run, and how fast.

Usage::

    python benchmarks/smollm2_rl_steps.py [--steps 3] [--batch-prompts 4] [--k 4]
        [--max-new-tokens 32] [--threads 1] [--out benchmarks/results/smollm2_rl_steps.json]

A check, not a training run: LoRA (r=8, alpha=32, all linear layers, as the methods attach it)
on ``smollm2-135m`` with chat prompts from the ``assistant`` set, RLOO on sentiment + brevity at
w = (0.5, 0.5). Prints seconds per step split into generation, scoring and update, and a reply
before and after. The first step also pays for the scorers' first load, so it is reported
apart from the mean over the others.
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
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MAX_STEPS = 50  # a check: anything longer belongs in the job system


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help=f"RL steps (1..{MAX_STEPS})")
    parser.add_argument("--batch-prompts", type=int, default=4)
    parser.add_argument("--k", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks/results/smollm2_rl_steps.json"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.steps <= MAX_STEPS:
        parser.error(f"--steps must be in 1..{MAX_STEPS}, got {args.steps}")

    import torch

    from morl_core.config import RunConfig
    from morl_core.jobs.records import git_hash, package_versions
    from morl_core.policy import attach_lora, load_policy
    from morl_core.prompts import load_prompts
    from morl_core.rl.trainer import RLTrainer

    config = RunConfig(
        objectives=("sentiment", "brevity"),
        model="smollm2-135m",
        prompt_set="assistant",
        steps=args.steps,
        batch_prompts=args.batch_prompts,
        k_samples=args.k,
        max_new_tokens=args.max_new_tokens,
        threads=args.threads,
        device=args.device,
        lr=1e-4,
    )
    t = time.perf_counter()
    policy = load_policy(config.model, device=config.device, threads=config.threads)
    load_s = time.perf_counter() - t
    attach_lora(policy, r=config.lora_r, alpha=config.lora_alpha)
    trainer = RLTrainer(policy, config, load_prompts("assistant", "train"), seed=0)
    probe = ["Why is the sky blue?"]
    before = policy.generate(probe, max_new_tokens=args.max_new_tokens, greedy=True)[0]
    steps = []
    for i in range(args.steps):
        t = time.perf_counter()
        metrics, raw = trainer.step([0.5, 0.5])
        seconds = time.perf_counter() - t
        steps.append(
            {"seconds": round(seconds, 2), **{k: round(float(v), 4) for k, v in metrics.items()}}
        )
        shown = ("time/generate", "time/score", "time/update", "reward/scalarized", "kl", "length")
        print(
            f"step {i + 1}: {seconds:.1f} s  "
            + "  ".join(f"{k}={metrics[k]:.3g}" for k in shown if k in metrics),
            flush=True,
        )
    after = policy.generate(probe, max_new_tokens=args.max_new_tokens, greedy=True)[0]
    rest = [s["seconds"] for s in steps[1:]] or [steps[0]["seconds"]]
    record = {
        "benchmark": "smollm2_rl_steps",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": config.model,
        "samples_per_step": args.batch_prompts * args.k,
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_s, 2),
        "first_step_seconds": steps[0]["seconds"],
        "mean_seconds_per_step_after_first": round(statistics.mean(rest), 2),
        "steps": steps,
        "reply_before": before,
        "reply_after": after,
        "load_average_1min": os.getloadavg()[0],
        "versions": {"python": platform.python_version(), **package_versions(())},
        "git_hash": git_hash(),
    }
    print(
        f"load {load_s:.1f} s; first step {steps[0]['seconds']:.1f} s; then {record['mean_seconds_per_step_after_first']:.1f} s/step"
    )
    print(f"before: {before!r}\nafter:  {after!r}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
