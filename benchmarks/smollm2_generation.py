"""Generation speed on SmolLM2-135M-Instruct: our sampler vs ``model.generate``, batch 1, CPU.

Usage::

    python benchmarks/smollm2_generation.py [--runs 5] [--new-tokens 48] [--threads 1]
        [--lora ADAPTER_DIR | --lora random [--lora-targets q_proj,v_proj]]
        [--out benchmarks/results/smollm2_generation.json (_lora.json with --lora)]

One reply of ``--new-tokens`` (48) tokens at batch 1 to a chat prompt from the held-out
``assistant`` set, for top-p sampling (temperature 1, top_p 0.9) and greedy decoding. Both sides
run the same model object on the same chat-encoded prompt, in the same process, taking turns run
by run, with EOS suppressed so both produce exactly 48 tokens (the method and the timing loop are
``benchmarks/generation.py``'s, reused here). ``speedup`` is HF's time over ours, the median over
runs of each back-to-back pair (above 1: ours is faster); the goal is ``speedup >= 1.3``.
``cpu_time_speedup`` is the same from process CPU seconds, steadier when background jobs share
the cores (the wall-clock ratio moved by +-0.05 between runs at a load average of 7-11).

``--lora`` measures the same on the model wrapped by peft with a LoRA adapter, as the SmolLM2
demos serve it (a soup, a MORLHF policy, an expert): a saved adapter folder, or ``random`` for
a fresh one (r 8, alpha 32, on ``--lora-targets``, every linear layer by default as the demos;
its B matrices random, so the adapter changes the replies). Both sides then run peft's model;
ours decodes through the lean step with the LoRA terms (``"lean_step": true`` in the record).

Where the time goes is recorded too (``--profile``): at batch 1 on a CPU each new token reads
every weight once (538 MB in float32), so ``aten::mm`` bounds both sides alike.

Last measured (2 AMD EPYC cores with AVX-512, a training job paused for the run; one thread,
5 runs, 2026-12-06, twice): top-p 1.45x and 1.50x, greedy 1.34x and 1.36x (CPU time alike; the
saved record is the second). On the earlier machine (2 AMD EPYC cores with AVX2 only) the same
code gave top-p 1.34x, greedy 1.28x. Our one-row
decode step reads an input-major copy of the weights (``PackedWeights`` in
``morl_core/policy/llama_decode.py``): its matmuls take ~42 ms a token where ``F.linear`` on the
model's own ``(out, in)`` weights takes ~47, the same arithmetic summed in another order. Before
that copy, in the same hour on the same machine: top-p 1.26x, greedy 1.14x; before the lean
decode step at all, 1.11x and 1.02x. What is left besides the matmuls is ~8 ms a token (SDPA
~1.5, the 61 RMSNorms, rotary, the KV writes, sampling) against HF's ~20; a greedy HF step is
cheaper than a top-p one (no vocabulary sort), so greedy stays the harder ratio, and the last
few percent sit within what moved between runs of the same code (+-0.04). Measured and not
kept: fusing q/k/v and gate/up into one matrix each (no gain at one row), ``F.rms_norm``, a
rotation matrix for rotary, MKL's and oneDNN's packed linear kernels (46 and 52 ms against 42
for the matmuls). At 2 or 3 rows the input-major layout is slower (51 ms a token against 44),
so steps of several rows (the Steer page's 2 samples) read the model's own weights.

Last measured with ``--lora`` (same machine, paused background jobs, 2026-12-06; ours decodes
through the lean step with the LoRA terms): the shipped demo expert
``smollm2-soups-formality-readability/adapters/expert_formality`` (r 8 on all 7 linear layers
of the 30 blocks, 210 LoRA layers) top-p 1.43x, greedy 1.34x. A LoRA layer costs peft's forward
more (six module calls) than it costs the lean step (two small matmuls, a scale and an add), so
the more layers an adapter holds the larger the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.generation import SETTINGS, make_runners, time_interleaved  # noqa: E402

SPEEDUP_GOAL = 1.3
MAX_RUNS = 50


def speedup(timings: dict) -> float:
    """Median over runs of HF / ours, each pair timed back to back."""
    pairs = zip(timings["hf_generate"], timings["ours"], strict=True)
    return round(statistics.median(hf / ours for hf, ours in pairs), 3)


def profile_ours(policy, prompt: str, new_tokens: int) -> dict:
    """Share of our decoding time per aten op (top 6) for one reply."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        policy.rollout([prompt], max_new_tokens=new_tokens, seed=0)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in rows) or 1
    return {e.key: round(e.self_cpu_time_total / total, 3) for e in rows[:6]}


def attach_benchmark_lora(policy, source: str, targets: str) -> dict:
    """Wrap ``policy.model`` with the LoRA adapter ``source`` (a folder, or ``"random"``);
    return what the record says about it."""
    import torch

    from morl_core.policy.lora import attach_lora, load_adapter

    if source == "random":
        attach_lora(policy, r=8, alpha=32, target_modules=targets)
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():  # a fresh adapter's B is zero: random B makes it count
            for name, param in policy.model.named_parameters():
                if "lora_B" in name:
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.01)
    else:
        load_adapter(policy, Path(source))
    policy.model.eval()
    config = policy.model.active_peft_config
    layers = [name for name, _ in policy.model.named_modules() if name.endswith(".lora_A")]
    return {
        "source": source,
        "r": config.r,
        "alpha": config.lora_alpha,
        "target_modules": sorted(config.target_modules),
        "lora_layers": len(layers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="a registered name or a folder")
    parser.add_argument("--runs", type=int, default=5, help=f"timed runs (1..{MAX_RUNS})")
    parser.add_argument("--new-tokens", type=int, default=48)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--profile", action="store_true", help="also profile one of our replies")
    parser.add_argument(
        "--lora",
        default=None,
        metavar="ADAPTER_DIR",
        help="wrap the model with this peft LoRA adapter folder, or 'random' for a fresh one",
    )
    parser.add_argument(
        "--lora-targets",
        default="all-linear",
        help="with --lora random: 'all-linear' or comma-separated layer names (q_proj,v_proj)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="the JSON record (default benchmarks/results/smollm2_generation[_lora].json)",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        suffix = "" if args.lora is None else "_lora"
        args.out = ROOT / f"benchmarks/results/smollm2_generation{suffix}.json"
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be in 1..{MAX_RUNS}, got {args.runs}")
    if not 1 <= args.new_tokens <= 512:
        parser.error(f"--new-tokens must be in 1..512, got {args.new_tokens}")
    if (
        args.lora not in (None, "random")
        and not (Path(args.lora) / "adapter_config.json").is_file()
    ):
        parser.error(
            f"--lora must be 'random' or a peft adapter folder (with adapter_config.json), "
            f"got {args.lora!r}"
        )

    import torch

    from morl_core.jobs.records import git_hash, package_versions
    from morl_core.policy import load_policy
    from morl_core.policy.llama_decode import LlamaDecodeStep
    from morl_core.prompts import load_prompts

    policy = load_policy(args.model, device=args.device, threads=args.threads)
    lora = None
    if args.lora is not None:
        try:
            lora = attach_benchmark_lora(policy, args.lora, args.lora_targets)
        except ValueError as error:
            parser.error(f"--lora / --lora-targets: {error}")
    lean_step = LlamaDecodeStep.applies(policy.model)
    sync = torch.cuda.synchronize if policy.device.startswith("cuda") else (lambda: None)
    ours, hf = make_runners(policy, args.new_tokens)
    prompt = load_prompts("assistant", "eval")[0]
    load_before = os.getloadavg()
    adapter = "" if lora is None else f" + LoRA {lora['source']} ({lora['lora_layers']} layers)"
    print(
        f"model {args.model}{adapter} (chat: {policy.chat}), {args.new_tokens} new tokens, "
        f"batch 1, {torch.get_num_threads()} thread(s), {policy.device}, lean step: "
        f"{lean_step}; prompt {prompt!r}"
    )
    timings, cpu_timings = time_interleaved(
        {"ours": ours, "hf_generate": hf}, [prompt], args.runs, args.new_tokens, sync
    )
    results = {}
    print(
        f"{'setting':<8}{'ours (s)':>10}{'HF (s)':>10}{'speedup':>9}{'CPU-time speedup':>18}"
        "   (best: ours / HF)"
    )
    for setting in SETTINGS:
        t, cpu = timings[setting], cpu_timings[setting]
        results[setting] = row = {
            "seconds_median": {k: round(statistics.median(v), 3) for k, v in t.items()},
            "seconds_min": {k: round(min(v), 3) for k, v in t.items()},
            "speedup_hf_over_ours": speedup(t),
            "cpu_seconds_median": {k: round(statistics.median(v), 3) for k, v in cpu.items()},
            "cpu_time_speedup_hf_over_ours": speedup(cpu),
            "settings": SETTINGS[setting],
        }
        med, best = row["seconds_median"], row["seconds_min"]
        print(
            f"{setting:<8}{med['ours']:>10.2f}{med['hf_generate']:>10.2f}"
            f"{row['speedup_hf_over_ours']:>9.2f}{row['cpu_time_speedup_hf_over_ours']:>18.2f}"
            f"   ({best['ours']:.2f} / {best['hf_generate']:.2f})"
        )
    load_after = os.getloadavg()
    headline = results["top_p"]["speedup_hf_over_ours"]
    goal_met = all(r["speedup_hf_over_ours"] >= SPEEDUP_GOAL for r in results.values())
    print(
        f"goal: ours >= {SPEEDUP_GOAL}x faster than model.generate: {goal_met} "
        f"(top-p {headline:.2f}x, greedy {results['greedy']['speedup_hf_over_ours']:.2f}x)"
    )
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    record = {
        "benchmark": "smollm2_generation",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": args.model,
        "lora": lora,
        "lean_step": lean_step,
        "chat": policy.chat,
        "prompt": prompt,
        "parameters": sum(p.numel() for p in policy.model.parameters()),
        "new_tokens": args.new_tokens,
        "runs": args.runs,
        "torch_threads": torch.get_num_threads(),
        "device": policy.device,
        "results": results,
        "goal": {"speedup_at_least": SPEEDUP_GOAL, "met": goal_met},
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        "versions": {
            "python": platform.python_version(),
            **package_versions(("tokenizers", "peft")),
        },
        "git_hash": git_hash(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    if args.profile:
        record["profile_ours_self_cpu_share"] = shares = profile_ours(
            policy, prompt, args.new_tokens
        )
        print("our time by op: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
