"""Does RiC's supervised step teach SmolLM2 to read its tags, or to recall (reply, tags) pairs?

Usage::

    python benchmarks/ric_sft_probe.py RUN_DIR [--steps 200] [--every 50] [--out FILE]

Offline, on a finished RiC run's saved pool (no new samples): a fresh adapter (the run's LoRA
settings unless ``--targets`` says otherwise) takes ``--steps`` of RiC's own supervised step
(:meth:`morl_core.methods.ric.SupervisedRounds.supervised_step`: the kept, relabelled pool,
balanced minibatches) on the pool *less every reply to a quarter of the training prompts*. Every
``--every`` steps it measures how the policy reads the two ends' tags
(:mod:`benchmarks.ric_tag_reading`'s within-prompt correlation between log p(y | end A) - log
p(y | end B) and the reply's reward difference) on ``--probe`` base-model replies to trained
prompts and as many to the held-out ones; the base model (adapter off) is measured first. A
policy that reads its tags scores alike on both; one that recalls its training pairs scores
higher on the trained prompts. Saves every point to ``--out`` (default
``benchmarks/results/ric_sft_probe_<run>.json``) as it goes.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import ric_tag_reading as reading  # noqa: E402

from morl_core.config import RunConfig  # noqa: E402
from morl_core.methods import ric, ric_tags  # noqa: E402
from morl_core.methods.common import attach_seeded_lora, open_policy  # noqa: E402
from morl_core.prompts import load_prompts  # noqa: E402
from morl_core.runfolder import read_json, write_json_atomic  # noqa: E402

MAX_STEPS = 2000
MAX_PROBE = 512
HELD_OUT_SEED = 1  # which quarter of the training prompts is held out


def held_out_prompts(n_prompts: int) -> set[int]:
    rng = np.random.default_rng(HELD_OUT_SEED)
    return set(rng.choice(n_prompts, size=n_prompts // 4, replace=False).tolist())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--steps", type=int, default=200, help=f"1-{MAX_STEPS}")
    parser.add_argument("--every", type=int, default=50, help="measure every N steps")
    parser.add_argument("--probe", type=int, default=96, help=f"replies per set, 8-{MAX_PROBE}")
    parser.add_argument("--targets", default=None, help="LoRA target modules (default: the run's)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not 1 <= args.steps <= MAX_STEPS:
        parser.error(f"--steps must be in [1, {MAX_STEPS}], got {args.steps}")
    if not 1 <= args.every <= args.steps:
        parser.error(f"--every must be in [1, --steps], got {args.every}")
    if not 8 <= args.probe <= MAX_PROBE:
        parser.error(f"--probe must be in [8, {MAX_PROBE}], got {args.probe}")
    if not (args.run_dir / "config.json").is_file():
        parser.error(f"{args.run_dir}: not a run folder (no config.json)")
    try:
        raw = read_json(args.run_dir / "config.json")
    except (OSError, ValueError) as err:
        parser.error(f"{args.run_dir}/config.json: unreadable ({err})")
    if not isinstance(raw, dict) or raw.get("method") != "ric":
        parser.error(f"{args.run_dir}: not a RiC run")
    raw.update(device="cpu", threads=1)
    if args.targets:
        raw["lora_target_modules"] = args.targets
    try:
        config = RunConfig.from_dict(raw, check_files=False)
    except ValueError as err:  # e.g. --targets names no module
        parser.error(f"{args.run_dir}: {err}")
    out = args.out or ROOT / f"benchmarks/results/ric_sft_probe_{args.run_dir.name}.json"

    try:
        policy = ric.prefixed(open_policy(config))
    except ValueError as err:
        parser.error(f"{args.run_dir}: {err}")
    attach_seeded_lora(policy, config, ric.ADAPTER, config.seed * 1000 + ric.LORA_SEED)
    trainer = ric.SupervisedRounds(policy, config)
    pool_prompt, pool_ids, norm, fluency = reading.load_pool(args.run_dir)
    prompts = load_prompts(config.prompt_set, "train")
    held = held_out_prompts(len(prompts))
    trained_rows = [i for i in range(len(pool_ids)) if pool_prompt[i] not in held]
    trainer.pool_prompt = [pool_prompt[i] for i in trained_rows]
    trainer.pool_ids = [pool_ids[i] for i in trained_rows]
    trainer.pool_norm = norm[trained_rows].astype(float)
    trainer.pool_fluency = fluency[trained_rows].astype(float)

    base_rows = ric.offline_steps(config) * config.batch_prompts * config.k_samples
    objectives = tuple(config.objectives)
    k = len(objectives)
    ends = tuple(ric_tags.prefix(objectives, np.eye(k)[i], trainer.tags) for i in (0, 1))

    def sample(keep) -> np.ndarray:
        rows = [
            i for i in range(min(base_rows, len(pool_ids))) if pool_ids[i] and keep(pool_prompt[i])
        ]
        rng = np.random.default_rng(0)
        return rng.choice(rows, size=min(args.probe, len(rows)), replace=False)

    sets = {"trained": sample(lambda q: q not in held), "held_out": sample(lambda q: q in held)}

    def measure(base: bool = False) -> dict:
        policy.prefix = ""
        found = {}
        for name, rows in sets.items():
            asked = [prompts[pool_prompt[i]] for i in rows]
            replies = [pool_ids[i] for i in rows]
            diff = norm[rows, 0] - norm[rows, 1]
            groups = np.asarray([pool_prompt[i] for i in rows])
            off = policy.model.disable_adapter() if base else contextlib.nullcontext()
            with off:
                gap = reading.reply_logprobs(policy, asked, replies, ends[0])
                gap -= reading.reply_logprobs(policy, asked, replies, ends[1])
            prompts_seen = len(set(groups.tolist()))
            found[name] = {**reading.correlations(gap, diff, groups), "n": len(rows)}
            found[name]["prompts"] = prompts_seen
        return found

    log = {
        "benchmark": "ric_sft_probe",
        "run": str(args.run_dir),
        "lora_target_modules": config.lora_target_modules,
        "lr": config.lr,
        "held_out_prompts": sorted(held),
        "trained_pool_rows": len(trained_rows),
        "ends": list(ends),
        "base": measure(base=True),
        "points": [],
    }
    print("base", log["base"], flush=True)
    start = time.perf_counter()
    for step in range(1, args.steps + 1):
        metrics = trainer.supervised_step(report_kl=step % args.every == 0)
        if step % args.every:
            continue
        point = {
            "step": step,
            "seconds": time.perf_counter() - start,
            "loss": metrics["loss/sft"],
            "kl_per_token": metrics.get("kl_per_token"),
            **measure(),
        }
        log["points"].append(point)
        within = {name: round(point[name]["corr_within_prompt"], 3) for name in sets}
        print(f"step {step}: within-prompt reading {within}, loss {point['loss']:.3f}", flush=True)
        write_json_atomic(out, log)
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
