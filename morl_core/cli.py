"""The ``morl`` command. Every subcommand turns bad input into one clear line and exit code 2."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence

from morl_core import train_cli
from morl_core.bench import cli as bench_cli
from morl_core.config_cli import EXIT_USAGE as EXIT_BAD_INPUT
from morl_core.config_cli import table
from morl_core.jobs import cli as jobs_cli
from morl_core.methods import METHODS
from morl_core.objectives import describe, score, split_specs
from morl_core.policy import cli as models_cli
from morl_core.policy import load_policy


def _floats(text: str, field: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise ValueError(f"{field} must be comma-separated numbers, got {text!r}")
    return values


# --- foundation commands ---
def cmd_objectives(args: argparse.Namespace) -> int:
    rows = [(r.name, r.kind, r.range, r.description) for r in describe()]
    print(table(rows, ["name", "kind", "range", "description"]))
    # a hint on stderr: stdout stays the table alone, for scripts that read it
    print("Built-ins take settings in the name, e.g. brevity(target_words=20).", file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    names = split_specs(args.objectives)  # commas inside a factory's (settings) stay put
    columns = {}
    for item in args.column:
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"--column must be NAME=VALUE with NAME an identifier, got {item!r}")
        columns[key.strip()] = value
    prompts = [args.prompt] * len(args.texts)
    matrix = score(
        names, prompts, list(args.texts), allow_import=True, prompt_columns={args.prompt: columns}
    )
    if args.json:  # NaN (not applicable) -> null
        scores = [[None if math.isnan(v) else v for v in row] for row in matrix.tolist()]
        print(json.dumps({"objectives": names, "scores": scores}))
    else:
        rows = [
            [t[:48], *("n/a" if math.isnan(v) else f"{v:.3f}" for v in row)]
            for t, row in zip(args.texts, matrix, strict=True)
        ]
        print(table(rows, ["text", *names]))
    return 0


# `morl generate` draws every completion in one batch: at most this many per prompt, and prompts
MAX_GENERATE_N = 64
MAX_GENERATE_PROMPTS = 256


def cmd_generate(args: argparse.Namespace) -> int:
    if not args.prompt:
        raise ValueError("give at least one --prompt")
    if len(args.prompt) > MAX_GENERATE_PROMPTS:
        raise ValueError(f"--prompt: at most {MAX_GENERATE_PROMPTS}, got {len(args.prompt)}")
    if not 1 <= args.n <= MAX_GENERATE_N:
        raise ValueError(
            f"-n (completions per prompt) must be in [1, {MAX_GENERATE_N}], got {args.n}"
        )
    weights = None if args.weights is None else _floats(args.weights, "--weights")
    if weights is not None and not args.run:
        raise ValueError(
            "--weights needs a trained run folder (morl generate RUN_FOLDER --weights ...)"
        )
    if weights is not None:  # checked against the run's objectives before a slow model load
        from morl_core.runfolder import read_config
        from morl_core.weights import check_weights

        check_weights(weights, k=len(read_config(args.run).objectives))
    from morl_core.policy.sampling import check_sampling  # torch: only `morl generate` needs it

    check_sampling(args.max_new_tokens, args.temperature, args.top_p)  # before a slow model load
    gen = {
        k: getattr(args, k) for k in ("max_new_tokens", "temperature", "top_p", "greedy", "seed")
    }
    if args.run:
        from morl_core.methods.common import load_steerable  # torch: only with a run folder

        steerable = load_steerable(args.run, device=args.device)
        if args.weights is None:
            raise ValueError(
                f"--weights is required with a run folder ({len(steerable.objectives)} numbers "
                f"for {', '.join(steerable.objectives)})"
            )
        # one call per repeat, each with its own seed (the same seed would repeat the same text)
        repeats = [
            steerable.generate(args.prompt, weights, **{**gen, "seed": _nth_seed(args.seed, i)})
            for i in range(args.n)
        ]
        # prompt-major, as the base-model path orders them
        texts = [repeats[i][j] for j in range(len(args.prompt)) for i in range(args.n)]
    else:
        policy = load_policy(args.model, device=args.device, threads=args.threads)
        texts = policy.generate(args.prompt, n=args.n, **gen)
    for text in texts:
        print(text.replace("\n", "\\n"))  # one completion a line, newlines written as \n
    return 0


def _nth_seed(seed: int | None, i: int) -> int | None:
    return None if seed is None else seed + i


def cmd_methods(args: argparse.Namespace) -> int:
    rows = [(m.name, m.family, m.summary, m.paper) for m in METHODS.values()]
    print(table(rows, ["name", "family", "summary", "paper"]))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="morl", description="MORL Studio: multi-objective RL for language models."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("objectives", help="list the registered objectives")
    p.set_defaults(func=cmd_objectives)

    p = sub.add_parser("score", help="score texts on objectives")
    p.add_argument("texts", nargs="+", help="texts to score")
    specs = "comma-separated names or specs, e.g. sentiment,trl.rewards:think_format_reward"
    p.add_argument("--objectives", required=True, help=specs)
    p.add_argument("--prompt", default="", help="prompt the texts answer (for relevance)")
    column = "a prompt-set column for imported reward functions, e.g. solution=42 (repeat)"
    p.add_argument("--column", action="append", default=[], metavar="NAME=VALUE", help=column)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser(
        "generate",
        help="generate from a base model or a trained run",
        description="Print n completions per prompt, one a line (prompt-major; "
        "newlines inside a completion are written as \\n).",
    )
    p.add_argument("run", nargs="?", help="trained run folder (omit to use --model)")
    p.add_argument("--model", default="embedded", help="'embedded', a model folder or a hub name")
    p.add_argument("--prompt", action="append", default=[], help="prompt (repeat for several)")
    p.add_argument("-n", type=int, default=1, help="completions per prompt")
    p.add_argument("--weights", help="preference for a run, e.g. 0.3,0.7")
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--greedy", action="store_true")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("methods", help="list the registered MORL methods")
    p.set_defaults(func=cmd_methods)

    train_cli.add_subcommands(sub)  # train, front
    jobs_cli.add_subcommands(sub)  # submit, runs, status, logs, cancel, resume, worker
    bench_cli.add_subcommands(sub)  # bench, leaderboard
    models_cli.add_subcommands(sub)  # models
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValueError as exc:  # bad input: one clear message, no traceback
        print(f"morl {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `morl runs | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
