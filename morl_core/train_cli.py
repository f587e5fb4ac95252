"""Train in this process: ``morl train`` (foreground, with a progress bar), ``morl front``.

It trains through :func:`morl_core.methods.common.train_run`, as a ``morl submit`` worker does,
into the same run folder format (:mod:`morl_core.runfolder`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache
from tqdm import tqdm

from morl_core import evaluation, settings
from morl_core.checks import is_hub_name
from morl_core.config import ConfigError, RunConfig
from morl_core.config_cli import add_config_options, config_from_args
from morl_core.methods.base import StepInfo, TrainCallback
from morl_core.runfolder import CONFIG, write_json_atomic

FRONT_FILE = "front.json"


# --- running a method into a run folder ---
def run_training(config: RunConfig, run_dir: Path, callback: TrainCallback | None = None) -> Path:
    """Write ``config.json`` and train ``config.method`` into ``run_dir`` (resuming if possible)."""
    from morl_core.methods.common import train_run  # torch: `morl --help` stays fast

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(run_dir / CONFIG, config.to_dict())
    train_run(config, run_dir, callback)
    return run_dir


def evaluate_run(run_dir: Path, method: str | None = None, device: str = "auto") -> dict[str, Any]:
    """:func:`morl_core.evaluation.evaluate_run` of a finished run, saved as ``front.json``."""
    run_dir = Path(run_dir)
    front = evaluation.evaluate_run(run_dir, method=method, device=device)
    write_json_atomic(run_dir / FRONT_FILE, front)
    return front


# --- checks that need the file system, done before anything is written ---
def check_out_folder(out: Path) -> None:
    """Refuse an ``--out`` that is a file, or a folder with other things in it than a run."""
    try:
        if out.exists() and not out.is_dir():
            raise ValueError(f"--out {out} is a file; give a new or empty folder")
        if out.is_dir() and any(out.iterdir()) and not (out / "config.json").exists():
            raise ValueError(
                f"--out {out} exists and is not a run folder; choose an empty or new folder"
            )
    except OSError as exc:
        raise ValueError(f"--out {out}: cannot read it ({exc.strerror or exc})") from None


def check_model_reachable(model: str) -> None:
    """ConfigError when ``model`` is a hub model not in the local cache and the hub is offline."""
    if not settings.hub_offline() or not is_hub_name(model):
        return
    if not isinstance(try_to_load_from_cache(model, "config.json"), str):
        raise ConfigError(
            {"model": f"hub model {model!r} is not in the local cache and HF_HUB_OFFLINE is set"}
        )


# --- commands ---
def reward_postfix(metrics: dict[str, float]) -> dict[str, float]:
    """Each objective's training reward for a progress bar, keyed by a short label: the name
    without its settings (``brevity(target_words=20)`` shows as ``brevity``), 9 characters."""
    return {
        key.split("/", 1)[1].split("(", 1)[0][:9]: round(value, 3)
        for key, value in metrics.items()
        if key.startswith("reward/") and key != "reward/scalarized"
    }


def cmd_train(args: argparse.Namespace) -> int:
    # Everything is checked before the first byte is written: a refused run leaves no folder.
    config = config_from_args(args)
    out = Path(args.out)
    check_out_folder(out)
    check_model_reachable(config.model)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"--out {args.out}: cannot create it ({exc.strerror or exc})") from None
    bar = tqdm(desc=f"{config.method}", unit="step")

    def show(info: StepInfo) -> bool:
        bar.total = info.total_steps
        bar.n = info.step
        rewards = reward_postfix(info.metrics)
        bar.set_postfix(stage=info.stage, kl=round(info.metrics.get("kl", 0.0), 4), **rewards)
        return True

    run_training(config, Path(args.out), show)
    bar.close()
    print(f"trained {config.method} into {args.out}")
    return 0


def cmd_front(args: argparse.Namespace) -> int:
    front = evaluate_run(Path(args.run), method=args.method, device=args.device)
    names = front["objectives"]
    print("preference".ljust(20) + "  ".join(n[:12].ljust(12) for n in names) + "  KL/token")
    for w, p, kl in zip(front["preferences"], front["points"], front["kl_per_token"], strict=True):
        print(
            ",".join(f"{x:.2f}" for x in w).ljust(20)
            + "  ".join(f"{x:.3f}".ljust(12) for x in p)
            + "  "
            + ("n/a" if kl is None else f"{kl:.4f}")
        )
    indicators = front["indicators"]
    for key, value in indicators.items():
        if not isinstance(value, list | dict):
            print(f"{key}: {value}")
    level = round(100 * indicators["level"])
    for key, (low, high) in indicators["intervals"].items():
        print(f"{key} {level}% interval (bootstrap over prompts): [{low:.4f}, {high:.4f}]")
    print(f"reference point: {indicators['ref']}")
    return 0


def add_subcommands(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a MORL method in the foreground",
        description="Train a MORL method; every RunConfig field is an option.",
    )
    add_config_options(p)
    p.add_argument("--out", required=True, help="run folder to write (resumes if it holds a run)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("front", help="evaluate a trained run's front and indicators")
    p.add_argument("run", help="run folder")
    p.add_argument("--method", help="aggregate the run's experts with another method (e.g. mod)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_front)
