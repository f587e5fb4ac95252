"""A tiny stand-in training method owned by the job tests (registered as ``stub``).

It follows the method contract exactly as a real trainer should: resume from the latest
checkpoint (parameters + RNG state), one callback per step, a checkpoint every
``config.checkpoint_every`` steps, at the last step and whenever the callback says stop. It is
deterministic given the seed, so a killed-and-resumed run must end equal to an uninterrupted one.
Workers load it through ``MORL_PLUGINS=tests.stub_method``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from morl_core.methods import METHODS, MethodSpec, StepInfo, register
from morl_core.options import Option
from morl_core.runfolder import load_latest_checkpoint, save_checkpoint

SPEC = MethodSpec(
    name="stub",
    family="A",
    summary="test stand-in: noisy gradient ascent on K quadratics",
    paper="none (test fixture)",
    module=__name__,
    options={
        "step_seconds": Option(float, 0.0, "sleep per step, to make runs last", low=0, high=60),
        "fail_at": Option(int, 0, "raise RuntimeError at this step (0 = never)", low=0),
        "batch": Option(int, 8, "samples per step", low=1, high=4096),
    },
)
if "stub" not in METHODS:
    register(SPEC)


def train(config, run_dir: Path, callback) -> None:
    """Maximise -(theta_k - target_k)^2 for each objective k with noisy gradients."""
    k = len(config.objectives)
    batch = SPEC.option(config.options, "batch")
    found = load_latest_checkpoint(run_dir)
    if found is not None:
        start, tensors, state = found
        theta = tensors["theta"]
        rng = np.random.default_rng()
        rng.bit_generator.state = state["rng"]
        samples = state["samples"]
    else:
        start, samples = 0, 0
        theta = torch.zeros(k, dtype=torch.float64)
        rng = np.random.default_rng(config.seed)
    weights = torch.tensor(config.weights or [1.0 / k] * k, dtype=torch.float64)
    target = torch.linspace(1.0, 2.0, k, dtype=torch.float64)
    for step in range(start + 1, config.steps + 1):
        if SPEC.option(config.options, "step_seconds"):
            time.sleep(SPEC.option(config.options, "step_seconds"))
        if step == SPEC.option(config.options, "fail_at"):
            raise RuntimeError(f"stub failure at step {step}")
        noise = torch.from_numpy(rng.normal(scale=0.1, size=(batch, k)))  # (B, K)
        rewards = -((theta + noise - target) ** 2)  # (B, K)
        grad = -2 * (theta + noise - target).mean(0) * weights  # (K,)
        theta = theta + config.lr * 100 * grad
        samples += batch
        metrics = {
            f"reward/{name}": float(rewards[:, i].mean())
            for i, name in enumerate(config.objectives)
        }
        metrics["scalarized"] = float((rewards.mean(0) * weights).sum())
        front = None
        if config.eval_every and step % config.eval_every == 0:
            front = {
                "objectives": list(config.objectives),
                "preferences": [weights.tolist()],
                "points": [rewards.mean(0).tolist()],
                "stderr": [[0.0] * k],
            }
        keep_going = callback(StepInfo(step, config.steps, samples, metrics, "stub", front))
        if step % config.checkpoint_every == 0 or step == config.steps or not keep_going:
            save_checkpoint(
                run_dir,
                step,
                {"theta": theta},
                {"rng": rng.bit_generator.state, "samples": samples},
            )
        if not keep_going:
            return


def load(run_dir: Path, **kw):
    """Not a real Steerable: the test stand-in only trains."""
    raise NotImplementedError("the stub method cannot generate")
