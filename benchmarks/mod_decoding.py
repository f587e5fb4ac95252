"""MOD decoding speed on SmolLM2: each expert through the lean step vs the model's forward.

Usage::

    python benchmarks/mod_decoding.py [--run-dir assets/demo/smollm2-soups-formality-readability]
        [--method mod] [--runs 5] [--new-tokens 32] [--weights 0.5,0.5] [--threads 1]
        [--out benchmarks/results/mod_decoding.json]
    python benchmarks/mod_decoding.py --shared-prompt [--runs 5] [--new-tokens 48]
        [--out benchmarks/results/mod_decoding_shared_prompt.json]

The shipped SmolLM2 demo's experts (``expert_formality``, ``expert_readability``: LoRA r 8 on
all 7 linear layers of the 30 blocks) aggregated by MOD (``--method pmix``: the arithmetic
mixture, same decoding), one reply of ``--new-tokens`` (32, the demo's length) at batch 1 and
at batch 2 (the Steer page's two samples of one prompt), for top-p sampling (temperature 1,
top_p 0.9: the Steer page's decoding) and greedy decoding. Both sides are the same steerable
on the same model object in the same process, taking turns run by run: ``lean`` decodes each
expert's one-token steps through :class:`~morl_core.policy.llama_decode.LlamaDecodeStep` (what
MOD does now), ``forward`` through peft's forward and ``transformers``' cache (``lean=False``,
what it did before). EOS is suppressed so every reply has exactly ``--new-tokens`` tokens, and
both sides' seeded replies are checked to be the same tokens. ``speedup`` is the forward's
time over the lean one's, the median over runs of each back-to-back pair (above 1: lean is
faster); ``cpu_time_speedup`` is the same from process CPU seconds (steadier under load).

``--shared-prompt`` times Steer-like calls instead: one chat prompt x samples 2 and 4, top-p
decoding, both sides on the lean step, ``shared`` passing the prompt once per expert for all
samples (what MOD does now) and ``per_row`` once per sample and expert (``share_prompts=False``,
what it did before), taking turns run by run, seeded replies checked to be the same tokens.
It records each side's seconds per call, CPU seconds and time to the first token (the prompt
passes plus the first step: what the page waits for before a reply starts to stream).

Last measured (``--shared-prompt --runs 3 --new-tokens 48 --threads 1``, ``nice -n 5``, 2 shared
AMD EPYC cores, load average 10.5 -> 7.4 from background training, 2026-12-05; a 40-token chat
prompt, MOD at 0.5/0.5, seeded replies identical on both sides), medians per row / shared:
samples 2: CPU 10.18 s / 10.05 s (1.01x), first token 4.47 s / 2.88 s (1.43x); samples 4: CPU
13.32 s / 11.41 s (1.16x), first token 7.81 s / 2.52 s (2.60x). Wall-clock (52-61 s a call,
1.05x) is mostly waiting for a core at that load. The 48 two-expert decode steps dominate a
reply; sharing saves one prompt pass per expert for each extra sample (~0.3 s of CPU each).

Last measured (2 shared AMD EPYC cores, one thread, ``nice -n 5``, 3 runs, load average 7.0-7.2
from background training, 2026-12-05; MOD at weights 0.5/0.5, seeded replies identical on both
sides): batch 1 top-p 7.9 s vs 11.9 s, 1.52x (CPU time 1.52x), greedy 1.33x (1.53x); batch 2
(the Steer page) top-p 1.36x (1.36x), greedy 1.35x (1.34x). In CPU time a batch-1 reply is
~4.0 s lean vs ~6.1 s forward (32 tokens, two experts, the chat prompt's passes included).
A second run in the next quarter hour (load 7.7-9.1): batch 1 1.60x / 1.60x (CPU 1.58x /
1.60x), batch 2 1.41x / 1.35x (CPU 1.41x / 1.32x).
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

from benchmarks.generation import SETTINGS, suppress_eos, time_interleaved  # noqa: E402

DEMO = ROOT / "assets/demo/smollm2-soups-formality-readability"
METHODS = ("mod", "pmix")
MAX_RUNS = 50


def speedup(timings: dict) -> float:
    """Median over runs of forward / lean, each pair timed back to back."""
    pairs = zip(timings["forward"], timings["lean"], strict=True)
    return round(statistics.median(forward / lean for forward, lean in pairs), 3)


def make_runner(steerable, weights: list[float], new_tokens: int):
    """A function (prompts, setting) -> completion ids (rows, new_tokens) of ``steerable``,
    seeded by a counter (run i of either side draws with seed i)."""
    policy = steerable.policy
    counter = iter(range(10**9))

    def run(prompts, setting):
        rollout = policy.rollout(
            prompts,
            max_new_tokens=new_tokens,
            seed=next(counter),
            next_token=suppress_eos(steerable.next_token(weights), policy.eos_id),
            **SETTINGS[setting],
        )
        return rollout.completion_ids

    return run


def summarize(times: dict) -> dict:
    """Medians of ``times`` ({side: {kind: [seconds per run]}}, sides ``per_row`` and ``shared``)
    and the median over runs of per_row / shared for each kind (above 1: sharing is faster)."""
    kinds = {"wall": "seconds", "cpu": "cpu_seconds", "first_token": "first_token_seconds"}
    out = {}
    for kind, label in kinds.items():
        pairs = zip(times["per_row"][kind], times["shared"][kind], strict=True)
        out[f"{label}_median"] = {
            side: round(statistics.median(by_kind[kind]), 3) for side, by_kind in times.items()
        }
        out[f"{label}_per_row_over_shared"] = round(
            statistics.median(old / new for old, new in pairs), 3
        )
        out[label] = {side: [round(t, 3) for t in by_kind[kind]] for side, by_kind in times.items()}
    return out


def shared_prompt_record(steerable, weights: list[float], prompt: str, args) -> dict:
    """Steer-like calls (``[prompt] * samples``, top-p) with the prompt passes shared and per row,
    each timed ``args.runs`` times after a warm-up, the two sides taking turns."""
    import time

    policy = steerable.policy
    sides = {
        "shared": steerable,
        "per_row": type(steerable)(
            policy, steerable.objectives, steerable.experts, share_prompts=False
        ),
    }
    settings = SETTINGS["top_p"]  # the Steer page's decoding

    def call(side, samples: int, seed: int):
        """(completion ids, seconds, CPU seconds, seconds to the first token)."""
        first = []
        on_step = lambda tokens, live: first or first.append(time.perf_counter())  # noqa: E731
        start, start_cpu = time.perf_counter(), time.process_time()
        rollout = policy.rollout(
            [prompt] * samples,
            max_new_tokens=args.new_tokens,
            seed=seed,
            next_token=suppress_eos(side.next_token(weights), policy.eos_id),
            on_step=on_step,
            **settings,
        )
        end, end_cpu = time.perf_counter(), time.process_time()
        return rollout.completion_ids, end - start, end_cpu - start_cpu, first[0] - start

    results = {}
    for samples in (2, 4):
        same = all(
            bool(
                (
                    call(sides["shared"], samples, seed)[0]
                    == call(sides["per_row"], samples, seed)[0]
                ).all()
            )
            for seed in (0, 1)
        )  # the first of these calls is also the warm-up
        times = {name: {"wall": [], "cpu": [], "first_token": []} for name in sides}
        for run in range(args.runs):
            for name, side in sides.items():
                _, wall, cpu, first_token = call(side, samples, seed=100 + run)
                times[name]["wall"].append(wall)
                times[name]["cpu"].append(cpu)
                times[name]["first_token"].append(first_token)
        results[f"samples{samples}"] = {"same_tokens": same, **summarize(times)}
    return {"settings": settings, "results": results}


def same_replies(lean, forward, prompts: list[str], new_tokens: int) -> bool:
    """Whether both sides give the same tokens for the same seed, in every setting."""
    return all(
        bool((lean(prompts, setting) == forward(prompts, setting)).all()) for setting in SETTINGS
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, default=DEMO, help="a run folder with experts")
    parser.add_argument("--method", default="mod", help=f"one of {', '.join(METHODS)}")
    parser.add_argument("--runs", type=int, default=5, help=f"timed runs (1..{MAX_RUNS})")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--weights", default="0.5,0.5", help="the preference, comma-separated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--shared-prompt",
        action="store_true",
        help="time Steer-like calls (one prompt x samples 2 and 4), prompt passes shared vs per row",
    )
    parser.add_argument("--out", type=Path, default=None, help="the JSON record to write")
    args = parser.parse_args(argv)
    if args.out is None:
        name = "mod_decoding_shared_prompt.json" if args.shared_prompt else "mod_decoding.json"
        args.out = ROOT / "benchmarks/results" / name
    if args.method not in METHODS:
        parser.error(f"--method must be one of {', '.join(METHODS)}, got {args.method!r}")
    if not 1 <= args.runs <= MAX_RUNS:
        parser.error(f"--runs must be in 1..{MAX_RUNS}, got {args.runs}")
    if not 1 <= args.new_tokens <= 512:
        parser.error(f"--new-tokens must be in 1..512, got {args.new_tokens}")
    if not (args.run_dir / "artifact.json").is_file():
        parser.error(f"--run-dir must be a finished run folder (artifact.json), got {args.run_dir}")
    try:
        weights = [float(x) for x in args.weights.split(",")]
    except ValueError:
        parser.error(f"--weights must be comma-separated numbers, got {args.weights!r}")

    import torch

    from morl_core.jobs.records import git_hash, package_versions
    from morl_core.methods.common import load_steerable
    from morl_core.policy import set_threads
    from morl_core.policy.llama_decode import LlamaDecodeStep
    from morl_core.prompts import load_prompts
    from morl_core.weights import check_weights

    set_threads(args.threads)
    steerable = load_steerable(args.run_dir, method=args.method, device="cpu")
    try:
        check_weights(weights, k=len(steerable.objectives))
    except ValueError as error:
        parser.error(f"--weights: {error}")
    policy = steerable.policy
    lean_step = LlamaDecodeStep.applies(policy.model)
    prompt = load_prompts("assistant", "eval")[0]
    lora_layers = sum(name.endswith(".lora_A") for name, _ in policy.model.named_modules())
    about = {
        "run_dir": str(args.run_dir),
        "method": args.method,
        "experts": steerable.experts,
        "lora_layers": lora_layers,
        "weights": weights,
        "model": policy.name,
        "lean_step": lean_step,
        "prompt": prompt,
        "prompt_tokens": int(policy.encode([prompt], args.new_tokens)[1].sum()),
        "new_tokens": args.new_tokens,
        "runs": args.runs,
        "torch_threads": torch.get_num_threads(),
    }
    context = {
        "nice": os.nice(0),
        "versions": {
            "python": platform.python_version(),
            **package_versions(("tokenizers", "peft")),
        },
        "git_hash": git_hash(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
    }
    if args.shared_prompt:
        print(
            f"{args.method} over {', '.join(steerable.experts)} on {policy.name}, weights "
            f"{weights}, one prompt of {about['prompt_tokens']} tokens x samples 2 and 4, "
            f"{args.new_tokens} new tokens, {torch.get_num_threads()} thread(s), {args.runs} runs"
        )
        load_before = os.getloadavg()
        measured = shared_prompt_record(steerable, weights, prompt, args)
        load_after = os.getloadavg()
        print(
            f"{'samples':<10}{'per row (s)':>13}{'shared (s)':>12}{'speedup':>9}{'CPU':>7}"
            f"{'first token per row / shared (s)':>34}{'same':>6}"
        )
        for key, row in measured["results"].items():
            med, first = row["seconds_median"], row["first_token_seconds_median"]
            print(
                f"{key:<10}{med['per_row']:>13.2f}{med['shared']:>12.2f}"
                f"{row['seconds_per_row_over_shared']:>9.2f}"
                f"{row['cpu_seconds_per_row_over_shared']:>7.2f}"
                f"{first['per_row']:>26.2f} / {first['shared']:.2f}{str(row['same_tokens']):>6}"
            )
        print(f"load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f}")
        record = {
            "benchmark": "mod_decoding_shared_prompt",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            **about,
            **measured,
            "load_average": {"before": load_before, "after": load_after},
            **context,
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(record, indent=2) + "\n")
        print(f"saved {args.out}")
        return 0

    forward_steerable = type(steerable)(policy, steerable.objectives, steerable.experts, lean=False)
    lean = make_runner(steerable, weights, args.new_tokens)
    forward = make_runner(forward_steerable, weights, args.new_tokens)
    load_before = os.getloadavg()
    print(
        f"{args.method} over {', '.join(steerable.experts)} ({lora_layers} LoRA layers) on "
        f"{policy.name}, weights {weights}, {args.new_tokens} new tokens, "
        f"{torch.get_num_threads()} thread(s), lean step: {lean_step}; prompt {prompt!r}"
    )
    results, same = {}, {}
    for batch in (1, 2):
        prompts = [prompt] * batch  # batch 2: the Steer page's two samples of one prompt
        same[batch] = same_replies(lean, forward, prompts, args.new_tokens)
        wall, cpu = time_interleaved(
            {"lean": lean, "forward": forward},
            prompts,
            args.runs,
            args.new_tokens,
            lambda: None,
        )
        for setting in SETTINGS:
            t, c = wall[setting], cpu[setting]
            results[f"batch{batch}_{setting}"] = {
                "seconds_median": {k: round(statistics.median(v), 3) for k, v in t.items()},
                "seconds_min": {k: round(min(v), 3) for k, v in t.items()},
                "speedup_forward_over_lean": speedup(t),
                "cpu_seconds_median": {k: round(statistics.median(v), 3) for k, v in c.items()},
                "cpu_time_speedup_forward_over_lean": speedup(c),
                "ms_per_token_lean": round(
                    1000 * statistics.median(t["lean"]) / args.new_tokens, 1
                ),
                "settings": SETTINGS[setting],
            }
    load_after = os.getloadavg()
    print(
        f"{'batch/setting':<16}{'lean (s)':>10}{'forward (s)':>13}{'speedup':>9}"
        f"{'CPU-time speedup':>18}"
    )
    for key, row in results.items():
        med = row["seconds_median"]
        print(
            f"{key:<16}{med['lean']:>10.2f}{med['forward']:>13.2f}"
            f"{row['speedup_forward_over_lean']:>9.2f}"
            f"{row['cpu_time_speedup_forward_over_lean']:>18.2f}"
        )
    print(f"same tokens lean vs forward (seeded): batch 1 {same[1]}, batch 2 {same[2]}")
    print(f"load average (1 min) before / after: {load_before[0]:.1f} / {load_after[0]:.1f}")
    record = {
        "benchmark": "mod_decoding",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **about,
        "same_tokens": {f"batch{b}": v for b, v in same.items()},
        "results": results,
        "load_average_1min": {"before": load_before[0], "after": load_after[0]},
        **context,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
