"""``morl models``: the registered base models, their size, licence and offline availability."""

from __future__ import annotations

import argparse
import dataclasses
import json

from morl_core.config_cli import table
from morl_core.policy import registry


def cmd_models(args: argparse.Namespace) -> int:
    """List the registered models, or convert one ahead of its first use (``--prepare``)."""
    if args.prepare:
        spec = registry.MODELS.get(args.prepare)
        if spec is None:
            raise ValueError(
                f"--prepare must be one of {', '.join(registry.MODELS)}, got {args.prepare!r}"
            )
        print(registry.resolve_model(spec.name, progress=not args.json).path)
        return 0
    rows = registry.describe_models()
    if args.json:
        print(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
        return 0
    rows_shown = [
        (
            r.name,
            r.parameters,
            r.size,
            r.licence,
            "yes" if r.chat else "no",
            "yes" if r.offline else "no",
            r.note,
        )
        for r in rows
    ]
    print(table(rows_shown, ["name", "params", "size", "licence", "chat", "offline", "where"]))
    print(
        "\nAlso accepted wherever a model is asked for: a local model folder, a .gguf file "
        "or a hub name (org/name)."
    )
    return 0


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``morl models`` on the top-level parser's subcommands."""
    p = sub.add_parser(
        "models",
        help="list the base models (size, licence, available offline)",
        description="List the registered base models. GGUF models are converted once to a "
        "safetensors cache ($MORL_CACHE_DIR, else ~/.cache/morl-studio) on first load.",
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument(
        "--prepare",
        metavar="NAME",
        help="convert a registered model now (so its first load is fast) and print its folder",
    )
    p.set_defaults(func=cmd_models)
