"""CUDA check and CPU-vs-GPU step timing for the trainer, on whatever devices this machine has.

    python benchmarks/device_check.py [--steps 6]

For each available device: load the embedded policy (bf16 on a capable GPU, fp32 on CPU),
generate, train ``morlhf`` and ``soups`` for a few steps, steer the soups run as soups and as
MOD, and record seconds per step and the dtype used. Prints and saves JSON under
benchmarks/results/device_check.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from morl_core.config import RunConfig
from morl_core.methods import get
from morl_core.policy import load_policy
from morl_core.train_cli import run_training


def check(device: str, steps: int) -> dict:
    policy = load_policy("embedded", device=device)
    out = {"device": device, "dtype": str(next(policy.model.parameters()).dtype)}
    t = time.perf_counter()
    out["sample"] = policy.generate(["The hotel was"], seed=0, max_new_tokens=24)[0]
    out["generate_s"] = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        for method in ("morlhf", "soups"):
            config = RunConfig(
                method=method,
                objectives=("sentiment", "brevity"),
                steps=steps,
                n_preferences=2,
                eval_every=0,
                eval_prompts=4,
                device=device,
            ).validated()
            times = []
            t = time.perf_counter()
            run_training(
                config,
                Path(tmp) / method,
                lambda info, times=times: times.append(time.perf_counter()) or True,
            )
            out[f"{method}_s_per_step"] = (times[-1] - t) / len(times)
            out[f"{method}_final_metrics"] = {
                k: v
                for k, v in json.loads(
                    (Path(tmp) / method / "metrics.jsonl").read_text().splitlines()[-1]
                ).items()
                if k.startswith(("reward/", "kl"))
            }
        for method in ("soups", "mod"):
            steerable = get(method).load(Path(tmp) / "soups", device=device)
            out[f"{method}_steer"] = steerable.generate(
                ["I think homework is"], [0.5, 0.5], seed=1, max_new_tokens=24
            )[0]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6)
    args = parser.parse_args()
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = {
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "runs": [check(d, args.steps) for d in devices],
    }
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "device_check.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
