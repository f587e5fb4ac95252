"""Train the small demo artifacts that the app's Steer page uses out of the box.

One seeded command, on CPU with one torch thread (so the result is the same on every machine)::

    python scripts/build_demo_artifacts.py            # all demos into assets/demo/
    python scripts/build_demo_artifacts.py --only soups-sentiment-brevity

Each demo is an ordinary run folder written by ``morl_core.train_cli.run_training`` on the
embedded model, followed by ``evaluate_run`` (``front.json`` with the indicators). Checkpoints
are removed afterwards: only ``config.json``, ``artifact.json``, ``metrics.jsonl``,
``front.jsonl``, ``front.json`` and ``adapters/*`` are kept, as the app needs nothing else.
LoRA rank 4 keeps the folders small (about 0.4 MB per adapter, a few MB in all).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from morl_core.app.catalog import DEMO_DIR, KEPT_RUN_FILES  # noqa: E402

COMMON = {
    "model": "embedded",
    "seed": 0,
    "device": "cpu",
    "threads": 1,
    "lora_r": 4,
    "lora_alpha": 16,
    "lr": 2e-3,
    # beta on the KL per sequence (nats summed over a reply): 0.05 lets brevity move (replies
    # from ~20 to ~14 words in 60 steps) while the replies stay sentences; 0.2 barely moved it
    "kl_coef": 0.05,
    "n_preferences": 5,
    "eval_every": 20,
    "eval_prompts": 8,
    "checkpoint_every": 1000,
}

DEMOS: dict[str, dict] = {
    # Experts per objective: steerable as soups (weight interpolation) and as mod (logit mixing).
    "soups-sentiment-brevity": {
        "method": "soups",
        "objectives": ["sentiment", "brevity"],
        "steps": 60,
    },
    # One policy per preference on the same pair: the fixed-scalarisation baseline.
    "morlhf-sentiment-brevity": {
        "method": "morlhf",
        "objectives": ["sentiment", "brevity"],
        "steps": 40,
    },
    # Three objectives, so the Steer page can show its ternary simplex map.
    "soups-sentiment-brevity-readability": {
        "method": "soups",
        "objectives": ["sentiment", "brevity", "readability"],
        "steps": 50,
        "n_preferences": 10,  # the 3-objective lattice with 3 divisions: 10 preferences
    },
}


def portable(adapter_config: Path) -> None:
    """Name the base model "embedded" instead of this machine's absolute path (metadata only:
    the app always loads adapters onto the embedded model it already holds)."""
    data = json.loads(adapter_config.read_text())
    data["base_model_name_or_path"] = "embedded"
    adapter_config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def build(name: str, out_root: Path) -> Path:
    """Train and evaluate one demo into ``out_root/name``; returns the folder."""
    from morl_core.app.lattice import build_lattice
    from morl_core.config import RunConfig
    from morl_core.policy import set_threads
    from morl_core.train_cli import evaluate_run, run_training

    set_threads(1)
    run_dir = out_root / name
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config = RunConfig.from_dict({**COMMON, **DEMOS[name]})
    start = time.perf_counter()

    def report(info) -> bool:
        if info.step % 10 == 0 or info.step == info.total_steps:
            print(f"  {name}: step {info.step}/{info.total_steps} ({info.stage})", flush=True)
        return True

    run_training(config, run_dir, report)
    evaluate_run(run_dir, device="cpu")
    for item in run_dir.iterdir():
        if item.name not in KEPT_RUN_FILES:
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    for readme in run_dir.glob("adapters/*/README.md"):
        readme.unlink()  # peft's model-card template: boilerplate, not provenance
    for adapter in run_dir.glob("adapters/*/adapter_config.json"):
        portable(adapter)
    build_lattice(run_dir, device="cpu")  # the Steer page's precomputed replies
    print(f"built {name} in {time.perf_counter() - start:.0f} s", flush=True)
    return run_dir


def main(argv: list[str] | None = None) -> int:
    """Entry point; see the module docstring."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(DEMOS), action="append", help="build only these")
    parser.add_argument("--out", type=Path, default=DEMO_DIR, help="folder to write into")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(DEMOS):
        build(name, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
