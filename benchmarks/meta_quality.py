"""Quality and cost of every MORL method (issues 5 and 8) on a real and a synthetic pair.

Usage::

    python benchmarks/meta_quality.py --scale small [--seeds 0,1] [--workers 2]
    python benchmarks/meta_quality.py --scale tiny            # a smoke run in about a minute
    python benchmarks/meta_quality.py --scale medium --steps 40 --seeds 0,1,2

For each pair of objectives and each seed, every method is trained on the embedded model with
the same config (``--scale`` presets, each field overridable); the per-objective experts are
trained once (by ``soups``) and reused by ``mod``, ``emorl`` and ``metapolicy`` through
``experts_from``, but their samples and seconds are charged to every method that uses them.
MORLHF trains one policy per preference (``--preferences``, 11 by default) for
``--morlhf-steps`` steps each (default: the scale's steps; set it to the budget where a single
policy's learning curve has flattened). Every front, the base model's (a reference row) and the
meta-policy's prior (the same experts mixed by the untrained mixer, alpha = softmax(log(w +
eps)): the ablation of the upper level) is then measured by the evaluation protocol
(:mod:`morl_core.evaluation`: every held-out prompt x 4 samples at each preference, common
random numbers, HV of the mean points with a bootstrap interval over prompts, EU over the
protocol's fixed lattice, KL to the base model); ``--eval-prompts`` caps the prompts (0 = all;
the ``tiny`` smoke preset uses 2) and the cap is recorded.

Pairs:

* ``real``: readability vs formality, *conflicting* on the embedded model's own replies (the
  pair is classified from base-model samples at the start of the run and the result recorded).
* ``synthetic``: rate of articles vs rate of personal pronouns, two disjoint word classes built
  with ``word_class_objective``; every split of the words is reachable, so the true front is
  ``x + y = 1`` (IGD+ is reported against it). The registered ``synth_nature``/``synth_city``
  pair has the same known front but the embedded model almost never writes those words (rate
  ~0.001), so RL at benchmark scale gets no signal; ``--synthetic registered`` uses it anyway.

Reported per method (mean, std with ddof = 1 and a 95 % t interval over seeds):
hypervolume and expected utility under the protocol (its reference point and EU preferences),
IGD+ (synthetic), KL to the base per token, training samples (what each run reported scoring,
plus the experts it reused), search samples and seconds (EMORL), training wall seconds (experts
included), inference seconds per reply, forward passes per token, models kept. Headline: the
meta-policy's (and its prior's) hypervolume as a share of the MORLHF front's, per seed, with a
t interval over seeds, and its training samples as a share of MORLHF's (goal: >= 95 %
at <= 1/3); per-preference utility gaps to MORLHF show where it degrades; a decoding-time table
against K shows how its cost grows with the number of objectives.

Writes ``benchmarks/results/meta_quality.json`` and ``meta_quality.html`` (plotly). A job (one
pair and seed) cut short resumes when the same command is run again: finished methods are read
back from ``OUT/runs/PAIR-seedN/METHOD.result.json`` and an unfinished run continues from its last
checkpoint (every 10 steps); a resumed method's wall seconds count its last attempt only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core import objectives as objective_registry  # noqa: E402
from morl_core.bench.leaderboard import PRIOR_METHOD  # noqa: E402
from morl_core.jobs.records import git_hash  # noqa: E402

METHODS = ("morlhf", "dynaopt", "soups", "mod", "ric", "panacea", "emorl", "metapolicy")
USES_EXPERTS = ("soups", "mod", "emorl", "metapolicy")
ARTICLES = frozenset({"the", "a", "an"})
PRONOUNS = frozenset(
    {"i", "you", "it", "he", "she", "we", "they", "me", "him", "her", "us", "them", "my", "your"}
)
PAIRS = {"real": ("readability", "formality"), "synthetic": ("bench_articles", "bench_pronouns")}
REGISTERED_SYNTHETIC = ("synth_nature", "synth_city")
SCALES = {  # RunConfig fields + benchmark knobs; every one can be overridden on the command line
    "tiny": dict(
        steps=2,
        batch_prompts=2,
        k_samples=2,
        max_new_tokens=8,
        eval_prompts=2,  # a smoke run: only 2 held-out prompts (recorded in the protocol)
        lr=0.01,
        search_rounds=2,
        search_prompts=2,
        seeds="0",
    ),
    "small": dict(
        steps=12,
        batch_prompts=2,
        k_samples=4,
        max_new_tokens=16,
        eval_prompts=0,
        lr=0.005,
        search_rounds=5,
        search_prompts=4,
        seeds="0,1,2",
    ),
    "medium": dict(
        steps=30,
        batch_prompts=4,
        k_samples=4,
        max_new_tokens=24,
        eval_prompts=0,
        lr=0.002,
        search_rounds=5,
        search_prompts=8,
        seeds="0,1,2",
    ),
}
N_PREFERENCES = 11  # default preferences: MORLHF trains one policy per preference of this grid
PRIOR = PRIOR_METHOD  # the ablation row: the meta-policy's experts mixed by the prior alone


def register_benchmark_objectives() -> None:
    """The dense synthetic pair (also registered in worker processes, which import this file)."""
    for name, words in (("bench_articles", ARTICLES), ("bench_pronouns", PRONOUNS)):
        if name not in objective_registry.OBJECTIVES:
            objective_registry.register(objective_registry.word_class_objective(name, words))


register_benchmark_objectives()


def classify_pair(objectives: tuple[str, ...], seed: int) -> dict:
    """Relationship of the pair on 128 base-model replies to training prompts."""
    from morl_core.policy import load_policy
    from morl_core.prompts import load_prompts
    from morl_core.relations import classify_relations

    policy = load_policy("embedded", device="cpu", threads=1)
    prompts = load_prompts("default", "train")[:32]
    texts = policy.generate(prompts, n=4, max_new_tokens=24, top_p=0.9, seed=seed)
    rewards = objective_registry.score(
        list(objectives), [p for p in prompts for _ in range(4)], texts
    )
    _, pairs = classify_relations(
        rewards, np.random.default_rng(seed), list(objectives), n_boot=300
    )
    return {"label": pairs[0].label, "spearman": pairs[0].coefficient, "reason": pairs[0].reason}


def run_samples(run_dir: Path) -> int:
    """Prompt-completion pairs the run itself scored to train (its last reported count)."""
    from morl_core.runfolder import read_metrics

    records, _ = read_metrics(run_dir)
    return int(max((r.get("samples") or 0 for r in records), default=0))


def protocol_for(scale: dict):
    """The evaluation protocol; a scale may only cap its prompts (``eval_prompts``, 0 = all)."""
    import dataclasses

    from morl_core.evaluation import default_protocol

    return dataclasses.replace(default_protocol(), max_prompts=int(scale["eval_prompts"]))


def front_row(front: dict) -> dict:
    """The quality fields of one front evaluated by :mod:`morl_core.evaluation`."""
    indicators = front["indicators"]
    kl = [v for v in front["kl_per_token"] if v is not None]
    return {
        "preferences": front["preferences"],
        "points": front["points"],
        "hypervolume": indicators["hypervolume"],
        "expected_utility": indicators["expected_utility"],
        "igd_plus": indicators["igd_plus"],
        "intervals": indicators["intervals"],
        "kl_per_token": front["kl_per_token"],
        "mean_kl_per_token": float(np.mean(kl)) if kl else None,
    }


def _read(path: Path) -> str | None:
    return path.read_text() if path.is_file() else None


def run_job(pair: str, objectives: tuple[str, ...], seed: int, scale: dict, out: Path) -> dict:
    """Train and measure every method on one pair with one seed (runs in a worker process)."""
    from morl_core.config import RunConfig
    from morl_core.evaluation import BasePolicy, evaluate_base, evaluate_run, evaluate_steerable
    from morl_core.methods import get
    from morl_core.policy import load_policy, set_threads
    from morl_core.prompts import load_prompts
    from morl_core.runfolder import read_metrics
    from morl_core.train_cli import run_training

    set_threads(1)
    register_benchmark_objectives()
    protocol = protocol_for(scale)
    # warm up (imports, model load, scorers) so the first method's wall time is not charged
    tokenizer = load_policy("embedded", device="cpu", threads=1).tokenizer
    objective_registry.score(list(objectives), ["Hi"], ["Hello there."])
    root = out / "runs" / f"{pair}-seed{seed}"
    # a job cut short resumes: finished methods are read back, an unfinished run continues from
    # its last checkpoint; a folder left by other settings is cleared first
    settings = json.dumps({"scale": scale, "objectives": list(objectives)}, sort_keys=True)
    if root.exists() and _read(root / "settings.json") != settings:
        shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "settings.json").write_text(settings)
    fields = ("steps", "batch_prompts", "k_samples", "max_new_tokens", "lr")
    base = {f: scale[f] for f in fields} | {
        "objectives": list(objectives),
        "seed": seed,
        "device": "cpu",
        "threads": 1,
        "n_preferences": scale["preferences"],
        "eval_every": 0,
        "checkpoint_every": 10,
    }
    options = {
        "emorl": {
            "search_rounds": scale["search_rounds"],
            "search_prompts": scale["search_prompts"],
        },
        "metapolicy": {"meta_steps": scale.get("meta_steps") or scale["steps"]},
    }
    prompts = load_prompts("default", "eval")[:8]  # the decoding-time measurement's prompts
    results, experts_seconds, experts_samples = {}, 0.0, 0
    for method in ("soups", *[m for m in scale["methods"] if m != "soups"]):
        run_dir = root / method
        opts = dict(options.get(method, {}))
        if method in USES_EXPERTS and method != "soups":
            opts["experts_from"] = str(root / "soups")
        steps = scale["morlhf_steps"] or scale["steps"] if method == "morlhf" else scale["steps"]
        done = root / f"{method}.result.json"
        if done.is_file():  # finished before the job was cut short
            results.update(json.loads(done.read_text()))
            if method == "soups":
                experts_seconds = results["soups"]["wall_seconds"]
                experts_samples = results["soups"]["train_samples"]
            continue
        config = RunConfig.from_dict({**base, "method": method, "steps": steps, "options": opts})
        resumed = (run_dir / "config.json").is_file()
        start = time.perf_counter()
        run_training(config, run_dir)
        seconds = time.perf_counter() - start  # a resumed run: the last attempt's time only
        if method == "soups":
            experts_seconds, experts_samples = seconds, run_samples(run_dir)
        front = evaluate_run(run_dir, device="cpu", protocol=protocol)
        steerable = get(method).load(run_dir, device="cpu")
        per_reply, per_token, distinct2 = decoding_seconds(steerable, prompts, tokenizer)
        artifact = json.loads((run_dir / "artifact.json").read_text())
        search = artifact.get("search", {})
        timing = run_dir / search.get("seconds_in", "none")
        reused = method in USES_EXPERTS and method != "soups"
        results[method] = {
            **front_row(front),
            # what the run itself reported, plus the experts it reused (trained by soups)
            "train_samples": run_samples(run_dir) + (experts_samples if reused else 0),
            "search_samples": search.get("samples", 0),
            "search_seconds": json.loads(timing.read_text())["seconds"]
            if timing.is_file()
            else 0.0,
            "search_evaluations": search.get("evaluations", 0),
            "wall_seconds": seconds + (experts_seconds if reused else 0.0),
            "inference_seconds_per_reply": per_reply,
            "inference_seconds_per_token": per_token,
            "distinct2": distinct2,
            "passes_per_token": steerable.passes_per_token,
            "models_kept": steerable.models_kept,
            "mixing": artifact.get("mixing"),
            "resumed": resumed,
        }
        print(
            f"[{pair} seed {seed}] {method}: HV {front['indicators']['hypervolume']:.4f}, "
            f"{seconds:.0f}s",
            flush=True,
        )
        if method == "metapolicy":  # ablation: the same experts, the untrained mixer's prior
            steerable.mixer.adjust = False
            prior = evaluate_steerable(
                steerable,
                objectives,
                "default",
                scale["preferences"],
                protocol=protocol,
                records=read_metrics(run_dir)[0],
            )
            per_reply, per_token, distinct2 = decoding_seconds(steerable, prompts, tokenizer)
            results[PRIOR] = {
                **results[method],
                **front_row(prior),
                "train_samples": experts_samples,  # the prior needs the experts only
                "wall_seconds": experts_seconds,
                "inference_seconds_per_reply": per_reply,
                "inference_seconds_per_token": per_token,
                "distinct2": distinct2,
                "models_kept": steerable.models_kept - 1,  # no meta-network
                "mixing": None,
            }
        rows = {m: results[m] for m in (method, PRIOR if method == "metapolicy" else None) if m}
        (root / f"{method}.result.json").write_text(json.dumps(rows))
    front = evaluate_base(
        objectives, n_preferences=scale["preferences"], device="cpu", protocol=protocol
    )
    base_policy = BasePolicy(load_policy("embedded", device="cpu", threads=1), objectives)
    per_reply, per_token, distinct2 = decoding_seconds(base_policy, prompts, tokenizer)
    results["base"] = {
        **front_row(front),
        "train_samples": 0,
        "search_samples": 0,
        "search_seconds": 0.0,
        "search_evaluations": 0,
        "wall_seconds": 0.0,
        "inference_seconds_per_reply": per_reply,
        "inference_seconds_per_token": per_token,
        "distinct2": distinct2,
        "passes_per_token": 1,
        "models_kept": 1,
        "mixing": None,
    }
    return {
        "pair": pair,
        "objectives": list(objectives),
        "seed": seed,
        "protocol": protocol.to_dict(),
        "methods": results,
    }


def decoding_seconds(steerable, prompts: list[str], tokenizer) -> tuple[float, float, float]:
    """Seconds per reply and per generated token at w = uniform (best of two timed runs), and
    the distinct-2 of those replies (low = repetitive text, e.g. a scorer being gamed)."""
    from morl_core.rl.trainer import distinct_n

    k = len(steerable.objectives)
    weights = np.full(k, 1.0 / k)
    steerable.generate(prompts[:1], weights, seed=0, max_new_tokens=4)  # warm-up
    best = float("inf")
    for _ in range(2):
        tick = time.perf_counter()
        texts = steerable.generate(prompts, weights, seed=0, max_new_tokens=24, top_p=0.9)
        best = min(best, time.perf_counter() - tick)
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)
    return best / len(prompts), best / tokens, distinct_n(texts, 2)


def best_seconds(fn, repeats: int = 3) -> float:
    """Fastest of ``repeats`` timed calls (CPU timings of ~0.1 s are noisy)."""
    best = float("inf")
    for _ in range(repeats):
        tick = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - tick)
    return best


def cost_vs_k(ks: list[int], prompts: int = 8) -> list[dict]:
    """Decoding seconds per reply against K for MOD, EMORL and the meta-policy.

    The K experts are fresh LoRA adapters (B = 0, so every method writes the base model's greedy
    replies and the comparison is the same text at every K); the meta-network is untrained.
    """
    from morl_core.methods.emorl import Emorl
    from morl_core.methods.metapolicy import MetaMixer, MetaPolicy
    from morl_core.methods.mod import Mod
    from morl_core.policy import attach_lora, load_policy, set_threads
    from morl_core.prompts import load_prompts

    set_threads(1)
    texts = load_prompts("default", "eval")[:prompts]
    decode = {"seed": 0, "max_new_tokens": 24, "greedy": True}
    base = load_policy("embedded", device="cpu", threads=1)
    base.generate(texts[:1], max_new_tokens=4)  # warm-up
    seconds = best_seconds(lambda: base.generate(texts, **decode))
    rows = [
        {"k": 1, "method": "base", "passes_per_token": 1, "seconds_per_reply": seconds / prompts}
    ]
    for k in ks:
        policy = load_policy("embedded", device="cpu", threads=1)
        names = [f"expert{i}" for i in range(k)]
        for name in names:
            attach_lora(policy, adapter_name=name)
        objectives = tuple(f"objective_{i}" for i in range(k))
        dim = policy.model.get_output_embeddings().in_features
        steerables = {
            "mod": Mod(policy, objectives, names),
            "emorl": Emorl(policy, objectives, names),
            "metapolicy": MetaPolicy(policy, objectives, names, MetaMixer(dim, k)),
        }
        w = np.full(k, 1.0 / k)
        for method, steerable in steerables.items():
            steerable.generate(texts[:1], w, seed=0, max_new_tokens=4)  # warm-up
            seconds = best_seconds(lambda s=steerable, w=w: s.generate(texts, w, **decode))
            rows.append(
                {
                    "k": k,
                    "method": method,
                    "passes_per_token": steerable.passes_per_token,
                    "seconds_per_reply": seconds / prompts,
                }
            )
    return rows


# --- aggregation over seeds, headline, figure ---
def mean_std(values: list[float]) -> dict[str, float]:
    """Mean, std (ddof = 1) and the leaderboard's 95 % t interval over seeds (None
    with one seed)."""
    from morl_core.bench.leaderboard import mean_interval

    arr = np.asarray([v for v in values if v is not None], dtype=float)
    if arr.size == 0:
        return {"mean": None, "std": None, "lo": None, "hi": None, "n": 0}
    low, high = mean_interval(arr) if arr.size > 1 else (None, None)
    return {
        "mean": float(arr.mean()),
        "std": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "lo": low,
        "hi": high,
        "n": int(arr.size),
    }


SUMMARISED = (
    "distinct2",
    "inference_seconds_per_token",
    "hypervolume",
    "expected_utility",
    "igd_plus",
    "train_samples",
    "search_samples",
    "search_seconds",
    "wall_seconds",
    "inference_seconds_per_reply",
)


def share(runs: list[dict], method: str, key: str) -> dict[str, float]:
    """``method``'s ``key`` as a share of MORLHF's, per seed, then :func:`mean_std`."""
    return mean_std([r["methods"][method][key] / r["methods"]["morlhf"][key] for r in runs])


def aggregate(jobs: list[dict]) -> dict:
    """Per pair and method: mean/std over seeds; headline fractions; per-preference gaps."""
    out = {}
    for pair in sorted({j["pair"] for j in jobs}):
        runs = [j for j in jobs if j["pair"] == pair]
        methods = list(runs[0]["methods"])
        table = {}
        for method in methods:
            rows = [r["methods"][method] for r in runs]
            table[method] = {key: mean_std([r[key] for r in rows]) for key in SUMMARISED}
            table[method]["passes_per_token"] = rows[0]["passes_per_token"]
            table[method]["models_kept"] = rows[0]["models_kept"]
        pair_out = {"objectives": runs[0]["objectives"], "methods": table}
        if {"metapolicy", "morlhf"} <= set(methods):
            # utility w . p at each preference: meta-policy minus MORLHF's policy for that w
            prefs = np.asarray(runs[0]["methods"]["morlhf"]["preferences"])
            gaps = [
                (
                    (
                        np.asarray(r["methods"]["metapolicy"]["points"])
                        - np.asarray(r["methods"]["morlhf"]["points"])
                    )
                    * prefs
                ).sum(1)
                for r in runs
            ]
            pair_out["headline"] = {
                "hv_fraction_of_morlhf": share(runs, "metapolicy", "hypervolume"),
                "sample_fraction_of_morlhf": share(runs, "metapolicy", "train_samples"),
                "prior_hv_fraction_of_morlhf": share(runs, PRIOR, "hypervolume"),
                "prior_sample_fraction_of_morlhf": share(runs, PRIOR, "train_samples"),
                "morlhf_policies": len(runs[0]["methods"]["morlhf"]["preferences"]),
                "goal": ">= 0.95 of the hypervolume at <= 1/3 of the samples",
                "utility_gap_by_preference": {
                    "preferences": prefs.tolist(),
                    "mean": np.mean(gaps, 0).tolist(),
                    "std": np.std(gaps, 0, ddof=1).tolist()
                    if len(gaps) > 1
                    else [0.0] * len(prefs),
                },
            }
        out[pair] = pair_out
    return out


def figure_html(jobs: list[dict], summary: dict, cost: list[dict]) -> str:
    """Fronts per pair (first seed; true front dashed), HV and samples per method, cost vs K."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from morl_core.colors import method_color
    from morl_core.plots import front_2d_figure

    parts = []
    for pair, data in summary.items():
        job = min((j for j in jobs if j["pair"] == pair), key=lambda j: j["seed"])
        methods = list(job["methods"])
        points = np.concatenate([job["methods"][m]["points"] for m in methods])
        labels = [m for m in methods for _ in job["methods"][m]["points"]]
        prefs = np.concatenate([job["methods"][m]["preferences"] for m in methods])
        fig = front_2d_figure(
            points,
            data["objectives"],
            methods=labels,
            preferences=prefs,
            title=f"{pair}: fronts (seed {job['seed']})",
        )
        if pair == "synthetic":
            true = objective_registry.true_front(*data["objectives"])
            fig.add_trace(
                go.Scatter(
                    x=true[:, 0],
                    y=true[:, 1],
                    mode="lines",
                    name="true front",
                    line={"dash": "dash", "color": "black"},
                )
            )
        parts.append(fig)
        bars = make_subplots(
            rows=1,
            cols=3,
            subplot_titles=(
                "hypervolume (the protocol's reference point)",
                "training samples",
                "inference s / reply",
            ),
        )
        for col, key in enumerate(
            ("hypervolume", "train_samples", "inference_seconds_per_reply"), 1
        ):
            stats = [data["methods"][m][key] for m in methods]
            bars.add_trace(
                go.Bar(
                    x=methods,
                    y=[s["mean"] for s in stats],
                    marker_color=[method_color(m) for m in methods],
                    error_y={  # the 95 % t interval over seeds (none with one seed)
                        "type": "data",
                        "array": [(s["hi"] or s["mean"]) - s["mean"] for s in stats],
                        "arrayminus": [s["mean"] - (s["lo"] or s["mean"]) for s in stats],
                    },
                    showlegend=False,
                ),
                row=1,
                col=col,
            )
        bars.update_layout(title=f"{pair}: quality and cost (mean, 95 % interval over seeds)")
        parts.append(bars)
    if cost:
        fig = go.Figure()
        for method in sorted({r["method"] for r in cost}):
            rows = [r for r in cost if r["method"] == method]
            fig.add_trace(
                go.Scatter(
                    x=[r["k"] for r in rows],
                    y=[r["seconds_per_reply"] for r in rows],
                    mode="lines+markers",
                    name=method,
                    line={"color": method_color(method)},
                )
            )
        fig.update_layout(
            title="decoding cost against the number of objectives K",
            xaxis_title="K",
            yaxis_title="seconds per reply (24 tokens)",
        )
        parts.append(fig)
    html = [p.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, p in enumerate(parts)]
    return "<html><body>" + "\n".join(html) + "</body></html>"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scale", choices=sorted(SCALES), default="small")
    for key, value in SCALES["small"].items():
        parser.add_argument(
            "--" + key.replace("_", "-"),
            type=type(value),
            default=None,
            help=f"override the scale's {key} (small: {value})",
        )
    parser.add_argument(
        "--meta-steps", type=int, default=0, help="meta-policy RL steps (0 = steps)"
    )
    parser.add_argument(
        "--preferences", type=int, default=N_PREFERENCES, help="preferences (MORLHF policies)"
    )
    parser.add_argument(
        "--morlhf-steps", type=int, default=0, help="steps per MORLHF policy (0 = steps)"
    )
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--pairs", default="real,synthetic")
    parser.add_argument("--synthetic", choices=("dense", "registered"), default="dense")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes, 1 thread each")
    parser.add_argument("--cost-k", default="2,3,4", help="K values for the cost table ('' = skip)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args(argv)
    scale = dict(SCALES[args.scale])
    scale.update({k: v for k in SCALES["small"] if (v := getattr(args, k)) is not None})
    scale.update(
        meta_steps=args.meta_steps, preferences=args.preferences, morlhf_steps=args.morlhf_steps
    )
    if args.preferences < 2 or args.morlhf_steps < 0 or args.meta_steps < 0:
        parser.error("--preferences must be >= 2, --morlhf-steps and --meta-steps >= 0")
    scale["methods"] = [m for m in args.methods.split(",") if m]
    unknown = set(scale["methods"]) - set(METHODS)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; allowed: {', '.join(METHODS)}")
    pairs = dict(PAIRS)
    if args.synthetic == "registered":
        pairs["synthetic"] = REGISTERED_SYNTHETIC
    pairs = {p: pairs[p] for p in args.pairs.split(",") if p}
    seeds = [int(s) for s in str(scale["seeds"]).split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    # the methods that reuse soups' experts name its run folder under --out: let configs read it
    # (the workers inherit the variable)
    allowed = os.environ.get("MORL_ALLOWED_PATHS", "")
    os.environ["MORL_ALLOWED_PATHS"] = os.pathsep.join(
        [p for p in (allowed, str(args.out.resolve())) if p]
    )
    start = time.perf_counter()
    relations = {p: classify_pair(objs, 0) for p, objs in pairs.items()}
    jobs_in = [(p, objs, s) for p, objs in pairs.items() for s in seeds]
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_job, p, objs, s, scale, args.out) for p, objs, s in jobs_in]
        jobs = [f.result() for f in futures]
    cost = cost_vs_k([int(k) for k in args.cost_k.split(",") if k])
    summary = aggregate(jobs)
    record = {
        "benchmark": "meta_quality",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git_hash(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "workers": args.workers,
            "threads_per_worker": 1,
        },
        "scale": {"name": args.scale, **scale},
        "protocol": protocol_for(scale).to_dict(),
        "pairs": {p: {"objectives": list(o), "relation": relations[p]} for p, o in pairs.items()},
        "summary": summary,
        "cost_vs_k": cost,
        "jobs": jobs,
        "seconds": time.perf_counter() - start,
    }
    (args.out / "meta_quality.json").write_text(json.dumps(record, indent=1))
    (args.out / "meta_quality.html").write_text(figure_html(jobs, summary, cost))
    for pair, data in summary.items():
        print(f"\n{pair} {data['objectives']} ({relations[pair]['label']}):")
        print(
            f"{'method':17}{'HV':>14}{'EU':>8}{'samples':>9}{'wall s':>8}{'search s':>9}"
            f"{'s/reply':>9}{'dist-2':>7}{'passes':>7}{'models':>7}"
        )
        for method, row in data["methods"].items():
            hv = row["hypervolume"]
            print(
                f"{method:17}{hv['mean']:>8.4f}+-{hv['std'] or 0:<4.3f}"
                f"{row['expected_utility']['mean']:>8.3f}{row['train_samples']['mean']:>9.0f}"
                f"{row['wall_seconds']['mean']:>8.0f}{row['search_seconds']['mean']:>9.1f}"
                f"{row['inference_seconds_per_reply']['mean']:>9.3f}"
                f"{row['distinct2']['mean']:>7.2f}"
                f"{row['passes_per_token']:>7}{row['models_kept']:>7}"
            )
        if "headline" in data:
            head = data["headline"]
            for name, key in (("meta-policy", ""), ("its prior", "prior_")):
                hv = head[f"{key}hv_fraction_of_morlhf"]
                interval = f" [{hv['lo']:.3f}, {hv['hi']:.3f}]" if hv["lo"] is not None else ""
                print(
                    f"{name} HV / MORLHF HV ({head['morlhf_policies']} policies) = "
                    f"{hv['mean']:.3f}{interval}; samples / MORLHF = "
                    f"{head[f'{key}sample_fraction_of_morlhf']['mean']:.3f} (goal: {head['goal']})"
                )
    print(
        f"\nwrote {args.out / 'meta_quality.json'} and meta_quality.html "
        f"in {record['seconds']:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
