"""Trainer throughput, ours vs TRL's GRPOTrainer, on the same task in the same process.

Usage::

    pip install -r requirements-bench.txt   # TRL, for this benchmark only
    python benchmarks/trainer_vs_trl.py [--steps 8] [--batch-prompts 4] [--k 4]
        [--max-new-tokens 24] [--repeats 3] [--threads 1] [--device cpu]
        [--out benchmarks/results/trainer_vs_trl.json]

Both sides train a LoRA adapter (r=8, alpha=32, all linear layers) on the embedded model with
the same prompts (the default train set), ``batch_prompts`` prompts x ``k`` completions per step
(TRL: ``per_device_train_batch_size = batch_prompts * k``, ``num_generations = k``), the same
maximum completion length, sampling (temperature 1, top-p 1), learning rate, gradient clip and
KL coefficient to the adapter-free reference (TRL: ``beta``), and two objectives given to TRL
as its own reward functions (our objectives are TRL-style callables) combined with
``reward_weights = (0.5, 0.5)``; ours scalarises linearly with the same weights.

Throughput is scored samples (prompt-completion pairs) per second over steps 2..N (step 1 is
warm-up). Repeats alternate ours and TRL, so a machine whose load drifts hurts both alike; the
reported ratio is the median of the per-repeat ratios. Completion lengths differ once the two
policies drift apart, so tokens per second are reported too. Phase splits: ours from the
trainer's own ``time/generate``, ``time/score`` and ``time/update`` metrics; TRL's by timing its
``_generate_single_turn`` (generation) and ``_calculate_rewards`` (scoring) methods, the rest
of the step being its log-prob passes, loss and optimiser step.

Prints a table and writes a JSON record (versions, git hash, machine) to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from morl_core.jobs.records import git_hash, package_versions

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

OBJECTIVES = ("sentiment", "brevity")
WEIGHTS = (0.5, 0.5)
LORA = {"r": 8, "alpha": 32}


# --- ours ---
def run_ours(args: argparse.Namespace, seed: int) -> dict:
    """Time ``args.steps`` RLTrainer steps exactly as a MORLHF stage runs them."""
    import torch

    from morl_core.config import RunConfig
    from morl_core.policy import attach_lora, load_policy
    from morl_core.prompts import load_prompts
    from morl_core.rl.trainer import RLTrainer

    config = RunConfig(
        method="morlhf",
        objectives=OBJECTIVES,
        steps=args.steps,
        seed=seed,
        device=args.device,
        threads=args.threads,
        batch_prompts=args.batch_prompts,
        k_samples=args.k,
        max_new_tokens=args.max_new_tokens,
        lr=args.lr,
        kl_coef=args.kl_coef,
        grad_clip=args.grad_clip,
        lora_r=LORA["r"],
        lora_alpha=LORA["alpha"],
        weights=WEIGHTS,
    ).validated()
    policy = load_policy("embedded", device=args.device, threads=args.threads)
    torch.manual_seed(seed)
    attach_lora(policy, r=config.lora_r, alpha=config.lora_alpha)
    trainer = RLTrainer(policy, config, load_prompts("default", "train"), seed=seed)
    metrics, stamps = [], [time.perf_counter()]
    for _ in range(args.steps):
        step_metrics, _ = trainer.step(WEIGHTS)
        metrics.append(step_metrics)
        stamps.append(time.perf_counter())
    timed = metrics[1:]  # step 1 is warm-up
    seconds = stamps[-1] - stamps[1]
    phases = {
        phase: sum(m[f"time/{phase}"] for m in timed) for phase in ("generate", "score", "update")
    }
    return summarise(args, seconds, [m["length"] for m in timed], phases)


# --- TRL ---
def run_trl(args: argparse.Namespace, seed: int) -> dict:
    """Time ``args.steps`` GRPOTrainer steps on the same task."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from morl_core.objectives import OBJECTIVES as REGISTRY
    from morl_core.policy import embedded_model_path, resolve_device, resolve_dtype, set_threads
    from morl_core.prompts import load_prompts

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    path = str(embedded_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model_type = getattr(model.config, "model_type", "")

    class StepClock(TrainerCallback):
        def __init__(self) -> None:
            self.stamps: list[float] = []

        def on_step_begin(self, *_, **__) -> None:
            if not self.stamps:
                self.stamps.append(time.perf_counter())

        def on_step_end(self, *_, **__) -> None:
            self.stamps.append(time.perf_counter())

    clock = StepClock()
    with tempfile.TemporaryDirectory() as output_dir:
        config = GRPOConfig(
            output_dir=output_dir,
            reward_weights=list(WEIGHTS),
            num_generations=args.k,
            per_device_train_batch_size=args.batch_prompts * args.k,
            max_completion_length=args.max_new_tokens,
            max_steps=args.steps,
            learning_rate=args.lr,
            lr_scheduler_type="constant",
            max_grad_norm=args.grad_clip,
            beta=args.kl_coef,
            temperature=1.0,
            top_p=1.0,
            use_cpu=device == "cpu",
            bf16=dtype == torch.bfloat16,
            seed=seed,
            logging_steps=1,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
        )
        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[REGISTRY[name].fn for name in OBJECTIVES],
            args=config,
            train_dataset=Dataset.from_dict({"prompt": load_prompts("default", "train")}),
            processing_class=tokenizer,
            peft_config=LoraConfig(
                r=LORA["r"],
                lora_alpha=LORA["alpha"],
                target_modules="all-linear",
                task_type="CAUSAL_LM",
                fan_in_fan_out=model_type == "gpt2",  # GPT-2 keeps Conv1D weights transposed
            ),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # TRL prints every log dict otherwise
        phase_log: list[tuple[str, float]] = []
        for attribute, phase in (
            ("_generate_single_turn", "generate"),
            ("_calculate_rewards", "score"),
        ):
            setattr(trainer, attribute, timed(getattr(trainer, attribute), phase, phase_log))
        trainer.train()
    steps = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    seconds = clock.stamps[-1] - clock.stamps[1]
    # phase times of steps 2..N: drop the first generation and the first scoring
    per_phase: dict[str, list[float]] = {"generate": [], "score": []}
    for phase, spent in phase_log:
        per_phase[phase].append(spent)
    phases = {phase: sum(times[1:]) for phase, times in per_phase.items()}
    phases["update"] = max(0.0, seconds - phases["generate"] - phases["score"])
    lengths = [float(h["completions/mean_length"]) for h in steps[1:]]
    return summarise(args, seconds, lengths, phases)


def timed(function, phase: str, log: list[tuple[str, float]]):
    def wrapper(*a, **kw):
        start = time.perf_counter()
        try:
            return function(*a, **kw)
        finally:
            log.append((phase, time.perf_counter() - start))

    return wrapper


# --- report ---
def summarise(args: argparse.Namespace, seconds: float, lengths: list[float], phases: dict) -> dict:
    samples = args.batch_prompts * args.k * (args.steps - 1)
    mean_length = statistics.fmean(lengths)
    return {
        "seconds": round(seconds, 4),
        "samples": samples,
        "samples_per_s": round(samples / seconds, 3),
        "tokens_per_s": round(samples * mean_length / seconds, 2),
        "mean_completion_tokens": round(mean_length, 2),
        "seconds_per_step": round(seconds / (args.steps - 1), 4),
        "phase_seconds": {k: round(v, 4) for k, v in phases.items()},
        "phase_share": {k: round(v / seconds, 3) for k, v in phases.items()},
    }


def median_of(runs: list[dict], key: str) -> float:
    return round(statistics.median(r[key] for r in runs), 3)


def median_shares(runs: list[dict]) -> dict[str, float]:
    return {
        k: round(statistics.median(r["phase_share"][k] for r in runs), 3)
        for k in runs[0]["phase_share"]
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8, help="steps per run (first is warm-up)")
    parser.add_argument("--batch-prompts", type=int, default=4, help="prompts per step")
    parser.add_argument("--k", type=int, default=4, help="completions per prompt")
    parser.add_argument("--max-new-tokens", type=int, default=24, help="max completion tokens")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--kl-coef", type=float, default=0.05, help="KL to the reference (beta)")
    parser.add_argument("--grad-clip", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3, help="alternating ours/TRL pairs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/trainer_vs_trl.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers v6 renames
    if args.steps < 2 or args.k < 2 or args.repeats < 1:
        parser.error("need --steps >= 2, --k >= 2 and --repeats >= 1")
    try:
        import trl  # noqa: F401
    except ImportError:
        parser.error("TRL is not installed: pip install -r requirements-bench.txt")

    from morl_core.policy import resolve_device, set_threads

    set_threads(args.threads)
    device = resolve_device(args.device)
    ours, theirs, ratios = [], [], []
    header = f"{'repeat':<8}{'ours samples/s':>16}{'TRL samples/s':>15}{'ratio':>8}"
    print(header)
    for repeat in range(args.repeats):
        ours.append(run_ours(args, seed=repeat))
        theirs.append(run_trl(args, seed=repeat))
        ratios.append(ours[-1]["samples_per_s"] / theirs[-1]["samples_per_s"])
        print(
            f"{repeat:<8}{ours[-1]['samples_per_s']:>16.2f}{theirs[-1]['samples_per_s']:>15.2f}"
            f"{ratios[-1]:>8.2f}"
        )
    summary = {
        "ratio_samples_per_s": round(statistics.median(ratios), 3),
        "ratio_tokens_per_s": round(
            statistics.median(
                o["tokens_per_s"] / t["tokens_per_s"] for o, t in zip(ours, theirs, strict=True)
            ),
            3,
        ),
        "ours_samples_per_s": median_of(ours, "samples_per_s"),
        "trl_samples_per_s": median_of(theirs, "samples_per_s"),
        "ours_mean_completion_tokens": median_of(ours, "mean_completion_tokens"),
        "trl_mean_completion_tokens": median_of(theirs, "mean_completion_tokens"),
        "ours_phase_share": median_shares(ours),
        "trl_phase_share": median_shares(theirs),
    }
    print(
        f"median ratio ours/TRL: {summary['ratio_samples_per_s']:.2f}x samples/s, "
        f"{summary['ratio_tokens_per_s']:.2f}x tokens/s (goal >= 1.5x)"
    )
    for side in ("ours", "trl"):
        shares = summary[f"{side}_phase_share"]
        print(f"{side:<5} phase share: " + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    record = {
        "benchmark": "trainer_vs_trl",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "torch_threads": args.threads,
        "task": {
            "model": "embedded",
            "objectives": list(OBJECTIVES),
            "weights": list(WEIGHTS),
            "prompt_set": "default/train",
            "batch_prompts": args.batch_prompts,
            "k": args.k,
            "max_new_tokens": args.max_new_tokens,
            "steps": args.steps,
            "timed_steps": args.steps - 1,
            "lr": args.lr,
            "kl_coef": args.kl_coef,
            "grad_clip": args.grad_clip,
            "lora": LORA,
        },
        "summary": summary,
        "ours": ours,
        "trl": theirs,
        "versions": package_versions(("accelerate", "trl", "datasets")),
        "git_hash": git_hash(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
