"""Trainer throughput, ours vs TRL's GRPOTrainer, on the same task in the same process.

Usage::

    pip install -r requirements-bench.txt   # TRL, for this benchmark only
    python benchmarks/trainer_vs_trl.py [--model embedded] [--steps 8] [--batch-prompts 4]
        [--k 4] [--max-new-tokens 24] [--repeats 3] [--threads 1] [--device cpu]
        [--out benchmarks/results/trainer_vs_trl.json]

``--model`` is any registered base model (``morl models``): ``embedded`` (the 6.9M GPT-2, the
default) trains on the ``default`` prompt set as plain text; a chat model such as
``smollm2-135m`` (SmolLM2-135M-Instruct) on the ``assistant`` set, each prompt one user message
of its chat template, the completion the assistant's reply. TRL gets the same prompts as
conversational ``[{"role": "user", "content": ...}]`` records, so it renders the same template;
before timing, the benchmark checks that both sides turn every prompt of the set into the same
token ids and stop at the same EOS ids, and that their adapters have the same trainable
parameters.

Both sides train a LoRA adapter (r=8, alpha=32, no dropout, on ``RunConfig.lora_target_modules``,
by default peft's ``all-linear``: every linear layer but the output head) with the same
``batch_prompts`` prompts x ``k`` completions per step (TRL: ``per_device_train_batch_size =
batch_prompts * k``, ``num_generations = k``), the same maximum completion length, sampling
(temperature 1, top-p 1, no top-k), learning rate, gradient clip and KL coefficient to the
adapter-free reference (TRL: ``beta``), and two objectives given to TRL as its own reward
functions (our objectives are TRL-style callables) combined with ``reward_weights = (0.5, 0.5)``;
ours scalarises linearly with the same weights.

Throughput is scored samples (prompt-completion pairs) per second over steps 2..N (step 1 is
warm-up). Repeats alternate ours and TRL, so a machine whose load drifts hurts both alike; the
reported ratio is the median of the per-repeat ratios. Completion lengths differ once the two
policies drift apart, so tokens per second are reported too. Phase splits: ours from the
trainer's own ``time/generate``, ``time/score`` and ``time/update`` metrics; TRL's by timing its
``_generate_single_turn`` (generation) and ``_calculate_rewards`` (scoring) methods, the rest
of the step being its update. Inside the update, ``logprob_forward`` is the time spent in the
two teacher-forced passes (policy with its graph, reference without), timed around
``rl.losses.token_logprobs`` (ours) and ``_get_per_token_logps_and_entropies`` (TRL); the rest
of the update is the backward pass, the optimiser step and bookkeeping.

Prints a table and writes a JSON record (versions, git hash, machine) to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
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
LORA = {"r": 8, "alpha": 32, "dropout": 0.0}  # target modules: RunConfig.lora_target_modules
PROMPT_SETS = {False: "default", True: "assistant"}  # by Policy.chat: plain text, chat replies
# RunConfig field -> the flag that sets it, so a bad value is reported under the flag's name
FLAGS = {
    "steps": "--steps",
    "batch_prompts": "--batch-prompts",
    "k_samples": "--k",
    "max_new_tokens": "--max-new-tokens",
    "lr": "--lr",
    "kl_coef": "--kl-coef",
    "grad_clip": "--grad-clip",
    "threads": "--threads",
    "device": "--device",
    "model": "--model",
}


# --- the shared task ---
def task_config(args: argparse.Namespace, prompt_set: str):
    """The RunConfig both sides follow (ours runs it; TRL's GRPOConfig copies its fields)."""
    from morl_core.config import RunConfig

    return RunConfig(
        method="morlhf",
        objectives=OBJECTIVES,
        model=args.model,
        prompt_set=prompt_set,
        steps=args.steps,
        seed=0,
        device=args.device,
        threads=args.threads,
        batch_prompts=args.batch_prompts,
        k_samples=args.k,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        lr=args.lr,
        kl_coef=args.kl_coef,
        grad_clip=args.grad_clip,
        lora_r=LORA["r"],
        lora_alpha=LORA["alpha"],
        weights=WEIGHTS,
    ).validated()


# --- ours ---
def run_ours(args: argparse.Namespace, config, seed: int) -> dict:
    """Time ``config.steps`` RLTrainer steps exactly as a MORLHF stage runs them."""
    import torch

    import morl_core.rl.trainer as trainer_module
    from morl_core.policy import attach_lora, load_policy
    from morl_core.prompts import load_prompts

    config = dataclasses.replace(config, seed=seed)
    policy = load_policy(config.model, device=args.device, threads=args.threads)
    torch.manual_seed(seed)
    attach_lora(
        policy,
        r=config.lora_r,
        alpha=config.lora_alpha,
        dropout=LORA["dropout"],
        target_modules=config.lora_target_modules,
    )
    trainer = trainer_module.RLTrainer(
        policy, config, load_prompts(config.prompt_set, "train"), seed=seed
    )
    passes: list[tuple[str, float, float]] = []
    metrics, stamps = [], [time.perf_counter()]
    with patched(trainer_module, "token_logprobs", "logprob_forward", passes):
        for _ in range(config.steps):
            step_metrics, _ = trainer.step(WEIGHTS)
            metrics.append(step_metrics)
            stamps.append(time.perf_counter())
    timed_steps = metrics[1:]  # step 1 is warm-up
    seconds = stamps[-1] - stamps[1]
    phases = {
        phase: sum(m[f"time/{phase}"] for m in timed_steps)
        for phase in ("generate", "score", "update")
    }
    phases["logprob_forward"] = phase_total(passes, "logprob_forward", since=stamps[1])
    summary = summarise(args, seconds, [m["length"] for m in timed_steps], phases)
    summary["trainable_parameters"] = trainable_parameters(policy.model)
    return summary


# --- TRL ---
def run_trl(args: argparse.Namespace, config, seed: int, check: dict | None = None) -> dict:
    """Time ``config.steps`` GRPOTrainer steps on the same task. With ``check`` (a dict), first
    compare TRL's prompt token ids and EOS ids with ours, and record the result in it."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, TrainerCallback
    from transformers.utils import logging as hf_logging
    from trl import GRPOConfig, GRPOTrainer

    from morl_core.objectives import OBJECTIVES as REGISTRY
    from morl_core.policy import MODELS, resolve_device, resolve_dtype, resolve_model, set_threads
    from morl_core.prompts import load_prompts

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_threads(args.threads)
    device = resolve_device(args.device)
    dtype = resolve_dtype("auto", device)
    path = resolve_model(config.model, progress=False).path
    chat = MODELS[config.model].chat
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    model_type = getattr(model.config, "model_type", "")
    prompts = load_prompts(config.prompt_set, "train")
    # a chat model: one user message each, which TRL renders with the same chat template
    records = [[{"role": "user", "content": p}] for p in prompts] if chat else prompts

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
        trl_config = GRPOConfig(
            output_dir=output_dir,
            reward_weights=list(WEIGHTS),
            num_generations=config.k_samples,
            per_device_train_batch_size=config.batch_prompts * config.k_samples,
            max_completion_length=config.max_new_tokens,
            max_steps=config.steps,
            learning_rate=config.lr,
            lr_scheduler_type="constant",
            max_grad_norm=config.grad_clip,
            beta=config.kl_coef,
            temperature=config.temperature,
            top_p=config.top_p,
            top_k=0,  # off, as ours
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
            args=trl_config,
            train_dataset=Dataset.from_dict({"prompt": records}),
            processing_class=tokenizer,
            peft_config=LoraConfig(
                r=config.lora_r,
                lora_alpha=config.lora_alpha,
                lora_dropout=LORA["dropout"],
                target_modules=config.lora_target_modules,
                task_type="CAUSAL_LM",
                fan_in_fan_out=model_type == "gpt2",  # GPT-2 keeps Conv1D weights transposed
            ),
            callbacks=[clock],
        )
        trainer.remove_callback(PrinterCallback)  # TRL prints every log dict otherwise
        if check is not None:
            check.update(same_inputs(trainer, config, prompts, records, chat))
        log: list[tuple[str, float, float]] = []
        with contextlib.ExitStack() as stack:
            for attribute, phase in (
                ("_generate_single_turn", "generate"),
                ("_calculate_rewards", "score"),
                ("_get_per_token_logps_and_entropies", "logprob_forward"),
            ):
                stack.enter_context(patched(trainer, attribute, phase, log))
            trainer.train()
    steps = [h for h in trainer.state.log_history if "completions/mean_length" in h]
    first = clock.stamps[1]  # steps 2..N
    seconds = clock.stamps[-1] - first
    phases = {phase: phase_total(log, phase, since=first) for phase in ("generate", "score")}
    phases["update"] = max(0.0, seconds - phases["generate"] - phases["score"])
    phases["logprob_forward"] = phase_total(log, "logprob_forward", since=first)
    lengths = [float(h["completions/mean_length"]) for h in steps[1:]]
    summary = summarise(args, seconds, lengths, phases)
    summary["trainable_parameters"] = trainable_parameters(trainer.model)
    return summary


def same_inputs(trainer, config, prompts: list[str], records: list, chat: bool) -> dict:
    """Our prompt token ids (``Policy.encode``) and EOS id beside TRL's for every prompt of the
    set; ``SystemExit`` naming the first prompt that differs."""
    from morl_core.policy import Policy

    ours = Policy(trainer.model, trainer.processing_class, "cpu", config.model, chat=chat)
    ids, mask = ours.encode(prompts, config.max_new_tokens)
    our_rows = [row[m.bool()].tolist() for row, m in zip(ids.cpu(), mask.cpu(), strict=True)]
    trl_rows = [list(row) for row in trainer._tokenize_prompts(records)[0]]
    for prompt, our_row, trl_row in zip(prompts, our_rows, trl_rows, strict=True):
        if our_row != trl_row:
            raise SystemExit(
                f"prompt token ids differ for {prompt[:40]!r}: ours {our_row[:12]}..., "
                f"TRL {trl_row[:12]}...; the comparison would not be like for like"
            )
    if [ours.eos_id] != list(trainer.eos_token_ids):
        raise SystemExit(f"EOS ids differ: ours {[ours.eos_id]}, TRL {trainer.eos_token_ids}")
    return {
        "prompt_ids_identical": True,
        "prompts_checked": len(prompts),
        "eos_ids": [ours.eos_id],
        "example_prompt_tokens": len(our_rows[0]),
        "example_prompt_text": ours.tokenizer.decode(our_rows[0]),
    }


# --- timing helpers ---
@contextlib.contextmanager
def patched(owner, attribute: str, phase: str, log: list[tuple[str, float, float]]):
    """Time every call of ``owner.attribute`` into ``log`` as (phase, start, seconds), then put
    the original back."""
    original = getattr(owner, attribute)
    own = attribute in vars(owner)  # a module's global; else an instance's bound method

    def wrapper(*a, **kw):
        start = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            log.append((phase, start, time.perf_counter() - start))

    setattr(owner, attribute, wrapper)
    try:
        yield
    finally:
        if own:
            setattr(owner, attribute, original)
        else:
            delattr(owner, attribute)  # the class's method shows through again


def phase_total(log: list[tuple[str, float, float]], phase: str, since: float) -> float:
    """Seconds spent in ``phase`` by calls that started at or after ``since``."""
    return sum(spent for name, start, spent in log if name == phase and start >= since)


def trainable_parameters(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


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


def median_phases(runs: list[dict], key: str = "phase_share") -> dict[str, float]:
    """Per phase, the median over repeats of ``run[key][phase]``."""
    return {k: round(statistics.median(r[key][k] for r in runs), 3) for k in runs[0][key]}


def phase_ratios(ours: list[dict], theirs: list[dict]) -> dict[str, float]:
    """Per phase: median over repeats of TRL's seconds over ours (> 1: ours is faster there)."""
    return {
        phase: round(
            statistics.median(
                t["phase_seconds"][phase] / max(o["phase_seconds"][phase], 1e-9)
                for o, t in zip(ours, theirs, strict=True)
            ),
            3,
        )
        for phase in ours[0]["phase_seconds"]
    }


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, object]:
    """Checked arguments and the RunConfig both sides follow; bad input ends in a usage error
    that names the flag and its allowed values."""
    from morl_core.config import ConfigError
    from morl_core.policy import MODELS, resolve_model

    models = ", ".join(MODELS)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--model", default="embedded", help=f"registered base model: {models} (default embedded)"
    )
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
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result JSON (default benchmarks/results/trainer_vs_trl.json for embedded, "
        "trainer_vs_trl_<model>.json otherwise)",
    )
    args = parser.parse_args(argv)
    if args.model not in MODELS:
        parser.error(f"--model must be one of {models} (see `morl models`), got {args.model!r}")
    if args.steps < 2 or args.k < 2 or args.repeats < 1:
        parser.error("need --steps >= 2 (the first is warm-up), --k >= 2 and --repeats >= 1")
    try:
        import trl  # noqa: F401
    except ImportError:
        parser.error("TRL is not installed: pip install -r requirements-bench.txt")
    try:
        resolve_model(args.model)  # converts a GGUF model once, before anything is timed
    except ValueError as exc:
        parser.error(f"--model {args.model}: {exc}")
    try:
        config = task_config(args, PROMPT_SETS[MODELS[args.model].chat])
    except ConfigError as exc:
        bad = [f"{FLAGS.get(field, field)}: {message}" for field, message in exc.errors.items()]
        parser.error("; ".join(bad))
    if args.out is None:
        stem = "trainer_vs_trl" + ("" if args.model == "embedded" else f"_{args.model}")
        args.out = ROOT / "benchmarks/results" / f"{stem}.json"
    return args, config


def main(argv: list[str] | None = None) -> int:
    args, config = parse_args(argv)
    warnings.filterwarnings("ignore", category=FutureWarning)  # transformers v6 renames

    from morl_core.policy import resolve_device, set_threads

    set_threads(args.threads)
    device = resolve_device(args.device)
    ours, theirs, ratios, inputs = [], [], [], {}
    print(f"model {config.model}, prompt set {config.prompt_set}")
    print(f"{'repeat':<8}{'ours samples/s':>16}{'TRL samples/s':>15}{'ratio':>8}")
    for repeat in range(args.repeats):
        ours.append(run_ours(args, config, seed=repeat))
        theirs.append(run_trl(args, config, seed=repeat, check=inputs if repeat == 0 else None))
        if ours[-1]["trainable_parameters"] != theirs[-1]["trainable_parameters"]:
            raise SystemExit(
                f"the adapters differ: ours trains {ours[-1]['trainable_parameters']} "
                f"parameters, TRL {theirs[-1]['trainable_parameters']}"
            )
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
        "ours_phase_share": median_phases(ours),
        "trl_phase_share": median_phases(theirs),
        "ours_phase_seconds_per_step": {
            k: round(v / (args.steps - 1), 3)
            for k, v in median_phases(ours, "phase_seconds").items()
        },
        "trl_phase_seconds_per_step": {
            k: round(v / (args.steps - 1), 3)
            for k, v in median_phases(theirs, "phase_seconds").items()
        },
        "trl_over_ours_phase_seconds": phase_ratios(ours, theirs),
    }
    print(
        f"median ratio ours/TRL: {summary['ratio_samples_per_s']:.2f}x samples/s, "
        f"{summary['ratio_tokens_per_s']:.2f}x tokens/s (goal >= 1.5x)"
    )
    for side in ("ours", "trl"):
        seconds = summary[f"{side}_phase_seconds_per_step"]
        print(
            f"{side:<5} seconds per step: " + ", ".join(f"{k} {v:.3f}" for k, v in seconds.items())
        )
    record = {
        "benchmark": "trainer_vs_trl",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "device": device,
        "torch_threads": args.threads,
        "task": {
            "model": config.model,
            "objectives": list(OBJECTIVES),
            "weights": list(WEIGHTS),
            "prompt_set": f"{config.prompt_set}/train",
            "batch_prompts": config.batch_prompts,
            "k": config.k_samples,
            "max_new_tokens": config.max_new_tokens,
            "steps": config.steps,
            "timed_steps": config.steps - 1,
            "lr": config.lr,
            "kl_coef": config.kl_coef,
            "grad_clip": config.grad_clip,
            "temperature": config.temperature,
            "top_p": config.top_p,
            "lora": {**LORA, "target_modules": config.lora_target_modules},
            "trainable_parameters": ours[0]["trainable_parameters"],
        },
        "same_inputs": inputs,
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
