"""Which way of writing RiC's targets does a model follow? The two ends of the front, sampled.

Usage::

    python benchmarks/ric_tag_wording.py [--model smollm2-135m] [--run RUN_DIR]
        [--objectives formality,readability] [--prompts 16] [--replies 4] [--out FILE]

RiC (:mod:`morl_core.methods.ric`) steers one policy by writing a preference's target rewards
before the prompt, in one of its tag styles: ``relaxed`` (``<readability=0.0>``: the objectives
asked for below their best), ``all`` (every objective, ``<formality=1.0><readability=0.0>``)
or ``words`` ("Make your reply very formal."). For each style this samples ``--replies``
replies to each of ``--prompts`` held-out prompts under the prefix of each end of the front
(w = (1, 0, ...) and (0, 1, ...)), with the same seeds at both ends (common random numbers),
and reports each end's mean scores and the paired gap between the ends per objective, with its
standard error over prompts (ddof 1). A style the model reads puts the first objective's end
above the second's on the first objective and below it on the second; ``none`` (no prefix at
either end) is the noise floor.

Without ``--run`` it measures the base model ``--model``; with a RiC run folder it measures the
trained policy and the same model with its adapter off (what the tags alone do). Saves the
figures to ``--out`` (default ``benchmarks/results/ric_tag_wording.json``, or
``ric_tag_wording_<run id>.json`` beside it for a run).
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

from morl_core import objectives as objective_registry  # noqa: E402
from morl_core.methods import ric, ric_tags  # noqa: E402
from morl_core.prompts import load_prompts  # noqa: E402
from morl_core.runfolder import read_json, write_json_atomic  # noqa: E402

MAX_PROMPTS = 256
MAX_REPLIES = 32
MAX_NEW_TOKENS = 256
STYLES = ("none", *ric_tags.TAG_STYLES)


def end_prefixes(objectives: tuple[str, ...], style: str) -> tuple[str, str]:
    """The prefixes RiC writes at the first two objectives' ends in ``style`` ('' for none)."""
    if style == "none":
        return "", ""
    k = len(objectives)
    first, second = (ric_tags.prefix(objectives, np.eye(k)[i], style) for i in (0, 1))
    return first, second


def paired_gap(a: np.ndarray, b: np.ndarray, n_prompts: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean (K,) and standard error (K,) over prompts of end A's scores less end B's; ``a`` and
    ``b`` are (n_prompts * replies, K), prompt-major, sampled with the same seeds."""
    per_prompt = (a - b).reshape(n_prompts, -1, a.shape[1]).mean(1)  # (P, K)
    return per_prompt.mean(0), per_prompt.std(0, ddof=1) / np.sqrt(n_prompts)


def measure(policy, objectives, prompts, styles, replies, max_new_tokens, seed=0) -> dict:
    """Each style's two ends: mean scores (K,), paired gap and its standard error (K,)."""
    asked = [p for p in prompts for _ in range(replies)]
    out = {}
    for style in styles:
        ends = end_prefixes(objectives, style)
        scores = []
        for text in dict.fromkeys(ends):  # "none" writes the same (empty) prefix at both ends
            policy.prefix = text
            texts = policy.generate(
                prompts, n=replies, max_new_tokens=max_new_tokens, temperature=1.0, seed=seed
            )
            scores.append(objective_registry.score(objectives, asked, texts))
        if len(scores) == 1:  # both ends written alike: one sampling serves both
            scores.append(scores[0])
        gap, se = paired_gap(scores[0], scores[1], len(prompts))
        out[style] = {
            "prefixes": list(ends),
            "end_a": scores[0].mean(0).round(4).tolist(),
            "end_b": scores[1].mean(0).round(4).tolist(),
            "gap": gap.round(4).tolist(),
            "se": se.round(4).tolist(),
        }
        shown = ", ".join(f"{g:+.3f} ({s:.3f})" for g, s in zip(gap, se, strict=True))
        print(f"  {style:8s} gap A - B per objective (SE): {shown}", flush=True)
    policy.prefix = ""
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m", help="base model (without --run)")
    parser.add_argument("--run", type=Path, default=None, help="a RiC run folder")
    parser.add_argument("--objectives", default="formality,readability")
    parser.add_argument("--prompt-set", default="assistant")
    parser.add_argument("--prompts", type=int, default=16, help=f"held-out, 2-{MAX_PROMPTS}")
    parser.add_argument("--replies", type=int, default=4, help=f"per prompt, 1-{MAX_REPLIES}")
    parser.add_argument("--max-new-tokens", type=int, default=32, help=f"1-{MAX_NEW_TOKENS}")
    parser.add_argument("--styles", default=",".join(STYLES), help=f"among {', '.join(STYLES)}")
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default benchmarks/results/ric_tag_wording.json, with --run ..._<run id>.json",
    )
    args = parser.parse_args(argv)
    if args.out is None:  # a run's figures never overwrite the base model's
        stem = f"ric_tag_wording_{args.run.resolve().name}" if args.run else "ric_tag_wording"
        args.out = ROOT / "benchmarks/results" / f"{stem}.json"
    if not 2 <= args.prompts <= MAX_PROMPTS:
        parser.error(f"--prompts must be an integer in [2, {MAX_PROMPTS}], got {args.prompts}")
    if not 1 <= args.replies <= MAX_REPLIES:
        parser.error(f"--replies must be an integer in [1, {MAX_REPLIES}], got {args.replies}")
    if not 1 <= args.max_new_tokens <= MAX_NEW_TOKENS:
        parser.error(
            f"--max-new-tokens must be in [1, {MAX_NEW_TOKENS}], got {args.max_new_tokens}"
        )
    styles = [s.strip() for s in args.styles.split(",") if s.strip()]
    if not styles or any(s not in STYLES for s in styles):
        parser.error(f"--styles must be among {', '.join(STYLES)}, got {args.styles!r}")

    from morl_core.policy import load_policy, set_threads

    set_threads(1)
    if args.run is not None:
        config = read_json(args.run / "config.json") if (args.run / "config.json").is_file() else {}
        if not isinstance(config, dict) or config.get("method") != "ric":
            parser.error(f"--run {args.run}: not a RiC run folder (its config.json names no RiC)")
        if not (args.run / "artifact.json").is_file():
            parser.error(f"--run {args.run}: not finished (no artifact.json)")
        steerable = ric.load(args.run, device="cpu")
        policy, objectives = steerable.policy, steerable.objectives
        prompt_set, model = config["prompt_set"], config["model"]
    else:
        objectives = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
        if len(objectives) < 2:
            parser.error(f"--objectives: need at least two, got {args.objectives!r}")
        try:
            for name in objectives:
                objective_registry.resolve(name)
        except ValueError as err:
            parser.error(f"--objectives: {err}")
        try:
            policy = ric.prefixed(load_policy(args.model, device="cpu", threads=1))
        except ValueError as err:
            parser.error(f"--model: {err}")
        prompt_set, model = args.prompt_set, args.model
    if "words" in styles:
        try:
            end_prefixes(objectives, "words")
        except ValueError as err:
            parser.error(f"--styles words: {err}")
    try:
        prompts = load_prompts(prompt_set, "eval")[: args.prompts]
    except ValueError as err:
        parser.error(f"--prompt-set: {err}")
    if len(prompts) < 2:
        parser.error(f"--prompt-set {prompt_set}: fewer than 2 held-out prompts")

    start = time.perf_counter()
    log = {
        "benchmark": "ric_tag_wording",
        "model": model,
        "run": str(args.run) if args.run else None,
        "objectives": list(objectives),
        "prompt_set": prompt_set,
        "prompts": len(prompts),
        "replies": args.replies,
        "max_new_tokens": args.max_new_tokens,
        "decoding": {"temperature": 1.0, "top_p": 1.0, "seed": 0},
    }
    measured = {}
    whose = ["policy", "base"] if args.run else ["base"]
    for who in whose:
        print(f"{who}:", flush=True)
        off = policy.model.disable_adapter() if who == "base" and args.run else None
        with off or contextlib.nullcontext():
            measured[who] = measure(
                policy, objectives, prompts, styles, args.replies, args.max_new_tokens
            )
    log.update(measured, seconds=round(time.perf_counter() - start, 1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(args.out, log)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
