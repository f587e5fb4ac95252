"""Generation speed: our sampler (``Policy.rollout``) vs plain ``model.generate``, one thread.

Usage::

    python benchmarks/generation.py [--model embedded] [--runs 20] [--batch-runs 5]
        [--with-scorers] [--out benchmarks/results/generation.json]

Both sides run the same model on the same left-padded prompts with the same settings, in the
same process, taking turns run by run (so background load hits both alike), and both produce
exactly ``--new-tokens`` (48) tokens per row: ours with EOS masked out of the logits, HF's with
``min_new_tokens`` (which does the same). Timings include prompt encoding on both sides.

* ``latency``: one reply at batch 1, median (and min) over ``--runs`` runs (goal: <= 200 ms).
* ``throughput``: new tokens per second at batch 16, median (and best) over ``--batch-runs``.

Each is measured for top-p sampling (temperature 1, top_p 0.9: what training and the app use)
and greedy decoding. ``ratio`` is our time over HF's, the median over runs of each back-to-back
pair (below 1: ours is faster); it stays put when background load comes and goes, where the
absolute times do not (the load average is recorded with them). ``--with-scorers`` also runs
``benchmarks/scorers.py`` (seconds per 100 texts for every objective) and stores its results in
the same record.
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

from morl_core.jobs.records import git_hash, package_versions

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


SETTINGS = {
    "top_p": dict(temperature=1.0, top_p=0.9, greedy=False),
    "greedy": dict(temperature=1.0, top_p=1.0, greedy=True),
}
LATENCY_GOAL_MS = 200.0


def suppress_eos(next_token, eos_id: int):
    """Wrap a next-token function so EOS is never chosen (every row runs the full length)."""

    def forward(input_ids, attention_mask, position_ids, cache):
        logits, cache = next_token(input_ids, attention_mask, position_ids, cache)
        logits[:, eos_id] = float("-inf")
        return logits, cache

    return forward


def make_runners(policy, new_tokens: int):
    """(ours, hf): functions prompts, setting -> completion ids (rows, new_tokens)."""
    from morl_core.policy.sampling import hf_next_token

    next_token = suppress_eos(hf_next_token(policy.model), policy.eos_id)
    counter = iter(range(10**9))

    def ours(prompts, setting):
        rollout = policy.rollout(
            prompts,
            max_new_tokens=new_tokens,
            seed=next(counter),
            next_token=next_token,
            **SETTINGS[setting],
        )
        return rollout.completion_ids

    def hf(prompts, setting):
        ids, mask = policy.encode(prompts, new_tokens)
        options = SETTINGS[setting]
        sampling = (
            dict(do_sample=False)
            if options["greedy"]
            else dict(
                do_sample=True, temperature=options["temperature"], top_p=options["top_p"], top_k=0
            )
        )
        out = policy.model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            pad_token_id=policy.pad_id,
            eos_token_id=policy.eos_id,
            **sampling,
        )
        return out[:, ids.shape[1] :]

    return ours, hf


def time_interleaved(
    runners: dict, prompts: list[str], runs: int, new_tokens: int, sync
) -> tuple[dict, dict]:
    """Seconds per call, wall-clock and process CPU, each ``{setting: {runner: [...]}}``.

    One warm-up call each first. Every setting and runner takes its turn within each run, so a
    burst of background load hits all of them alike. The CPU seconds (``time.process_time``)
    leave out the time the process waited for a core: on a loaded machine they are the steadier
    comparison of two CPU runs (on a GPU they miss the device's time; use the wall-clock there).
    """
    wall = {setting: {name: [] for name in runners} for setting in SETTINGS}
    cpu = {setting: {name: [] for name in runners} for setting in SETTINGS}
    for setting in SETTINGS:
        for name, run in runners.items():
            completion = run(prompts, setting)  # warm-up, and a check that the lengths match
            assert tuple(completion.shape) == (len(prompts), new_tokens), (name, completion.shape)
    for _ in range(runs):
        for setting in SETTINGS:
            for name, run in runners.items():
                start, start_cpu = time.perf_counter(), time.process_time()
                run(prompts, setting)
                sync()
                wall[setting][name].append(time.perf_counter() - start)
                cpu[setting][name].append(time.process_time() - start_cpu)
    return wall, cpu


def paired_ratio(timings: dict) -> float:
    """Median over runs of ours / HF, each pair timed back to back (robust to load drifts)."""
    pairs = zip(timings["ours"], timings["hf_generate"], strict=True)
    return round(statistics.median(ours / hf for ours, hf in pairs), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="embedded", help="'embedded', a folder or a hub name")
    parser.add_argument("--device", default="cpu", help="cpu (the goal's setting) or cuda")
    parser.add_argument("--new-tokens", type=int, default=48, help="tokens per reply")
    parser.add_argument("--runs", type=int, default=20, help="timed runs at batch 1")
    parser.add_argument("--batch", type=int, default=16, help="batch size for throughput")
    parser.add_argument("--batch-runs", type=int, default=5, help="timed runs at the batch size")
    parser.add_argument(
        "--with-scorers", action="store_true", help="also run benchmarks/scorers.py"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/generation.json")
    args = parser.parse_args(argv)

    import torch

    from morl_core.policy import load_policy
    from morl_core.prompts import load_prompts

    policy = load_policy(args.model, device=args.device, threads=1)
    sync = torch.cuda.synchronize if policy.device.startswith("cuda") else (lambda: None)
    assert torch.get_num_threads() == 1
    ours, hf = make_runners(policy, args.new_tokens)
    runners = {"ours": ours, "hf_generate": hf}
    prompts = load_prompts("default", "eval")
    batch = [prompts[i % len(prompts)] for i in range(args.batch)]

    load_before = os.getloadavg()
    print(f"model {args.model}, {args.new_tokens} new tokens, 1 thread, {policy.device}")
    all_single, _ = time_interleaved(runners, batch[:1], args.runs, args.new_tokens, sync)
    all_many, _ = time_interleaved(runners, batch, args.batch_runs, args.new_tokens, sync)
    results = {}
    print(f"{'setting':<8}{'measure':<30}{'ours':>9}{'HF':>9}{'ratio':>7}   (best: ours / HF)")
    for setting in SETTINGS:
        single, many = all_single[setting], all_many[setting]
        tokens = args.batch * args.new_tokens
        results[setting] = row = {
            "latency_ms_batch1_median": {
                k: round(1000 * statistics.median(t), 2) for k, t in single.items()
            },
            "latency_ms_batch1_min": {k: round(1000 * min(t), 2) for k, t in single.items()},
            "latency_ratio_ours_over_hf": paired_ratio(single),
            f"tokens_per_s_batch{args.batch}_median": {
                k: round(tokens / statistics.median(t), 1) for k, t in many.items()
            },
            f"tokens_per_s_batch{args.batch}_best": {
                k: round(tokens / min(t), 1) for k, t in many.items()
            },
            "time_ratio_ours_over_hf_batch": paired_ratio(many),
            "settings": SETTINGS[setting],
        }
        median, best = row["latency_ms_batch1_median"], row["latency_ms_batch1_min"]
        print(
            f"{setting:<8}{'one reply at batch 1 (ms)':<30}{median['ours']:>9.1f}"
            f"{median['hf_generate']:>9.1f}{row['latency_ratio_ours_over_hf']:>7.2f}"
            f"   ({best['ours']:.1f} / {best['hf_generate']:.1f})"
        )
        median = row[f"tokens_per_s_batch{args.batch}_median"]
        best = row[f"tokens_per_s_batch{args.batch}_best"]
        print(
            f"{'':<8}{f'tokens/s at batch {args.batch}':<30}{median['ours']:>9.0f}"
            f"{median['hf_generate']:>9.0f}{row['time_ratio_ours_over_hf_batch']:>7.2f}"
            f"   ({best['ours']:.0f} / {best['hf_generate']:.0f})"
        )
    headline = results["top_p"]["latency_ms_batch1_median"]["ours"]
    goals = {
        "one_reply_ms": headline,
        "one_reply_within_200_ms": headline <= LATENCY_GOAL_MS,
        "no_slower_than_hf_generate": all(
            r["latency_ratio_ours_over_hf"] <= 1.0 and r["time_ratio_ours_over_hf_batch"] <= 1.0
            for r in results.values()
        ),
    }
    load_after = os.getloadavg()
    print(
        f"goal: one reply <= {LATENCY_GOAL_MS:.0f} ms: {goals['one_reply_within_200_ms']} "
        f"({headline:.0f} ms); no slower than model.generate: {goals['no_slower_than_hf_generate']}"
    )
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f}")

    record = {
        "benchmark": "generation",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "parameters": sum(p.numel() for p in policy.model.parameters()),
        "new_tokens": args.new_tokens,
        "runs_batch1": args.runs,
        "batch": args.batch,
        "runs_batch": args.batch_runs,
        "torch_threads": torch.get_num_threads(),
        "device": policy.device,
        "device_name": torch.cuda.get_device_name() if policy.device.startswith("cuda") else "cpu",
        "results": results,
        "goals": goals,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "versions": {"python": platform.python_version(), **package_versions(("tokenizers",))},
        "git_hash": git_hash(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    if args.with_scorers:
        from benchmarks import scorers

        scorer_out = args.out.with_name("scorers.json")
        scorers.main(["--out", str(scorer_out)])
        record["scorers"] = json.loads(scorer_out.read_text())["results"]
    else:
        print("scorer throughput: python benchmarks/scorers.py (or --with-scorers)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
