"""Per-objective LoRA experts, trained once per run folder and shared by every aggregation.

Soups (D1), MOD (D2), EMORL (D3) and the meta-policy (E) all start from K experts: expert i is
trained by RL on objective i alone (preference = the i-th one-hot vector). A run may reuse the
experts of another run (option ``experts_from``) so one training serves many aggregations.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

from morl_core.config import RunConfig
from morl_core.methods.base import Steerable, TrainCallback
from morl_core.methods.common import (
    Stage,
    adapter_dir,
    load_adapters,
    open_policy,
    read_artifact,
    read_config,
    snapshot,
    train_stages,
    write_artifact,
)
from morl_core.methods.registry import METHODS
from morl_core.options import retrained
from morl_core.policy import Policy

# ``steerable(policy, objectives, expert names)``: an aggregation of the experts (soups, MOD, PMIX)
Aggregate = Callable[[Policy, tuple[str, ...], list[str]], Steerable]


def expert_name(objective: str) -> str:
    return f"expert_{objective.replace('.', '_').replace(':', '_')}"


def expert_names(objectives) -> list[str]:
    return [expert_name(o) for o in objectives]


def copy_experts(config: RunConfig, run_dir: Path, source: Path) -> None:
    """Copy finished experts from ``source`` (same base model, same objectives) into ``run_dir``,
    all but those of the objectives in option ``retrain`` (which this run trains)."""
    source = Path(source)
    other = read_config(source)
    if other.model != config.model:
        raise ValueError(
            f"options.experts_from: {source} was trained on model {other.model!r}, "
            f"this run uses {config.model!r}"
        )
    retrain = retrained(config.options)
    for name in expert_names(o for o in config.objectives if o not in retrain):
        src = adapter_dir(source, name)
        if not (src / "adapter_config.json").exists():
            raise ValueError(
                f"options.experts_from: the run has no finished expert {name!r} "
                f"(experts are trained per objective: {', '.join(config.objectives)})"
            )
        linked = [p.name for p in [src, *src.rglob("*")] if p.is_symlink()]
        if linked:  # never copy a file from outside the store through a link
            raise ValueError(
                f"options.experts_from: expert {name!r} contains symbolic links ({linked[:3]}); "
                "only plain files are copied"
            )
        dst = adapter_dir(run_dir, name)
        if not dst.exists():
            shutil.copytree(src, dst, symlinks=True)


def train_experts(
    config: RunConfig,
    run_dir: Path,
    callback: TrainCallback,
    policy: Policy,
    front_fn,
    experts_from: str = "",
) -> bool:
    """Train (or reuse) one expert per objective; returns False if stopped early."""
    if experts_from:
        copy_experts(config, run_dir, Path(experts_from))
    k = len(config.objectives)
    stages = [
        Stage(name, config.steps, (lambda step, i=i: np.eye(k)[i]))
        for i, name in enumerate(expert_names(config.objectives))
    ]
    return train_stages(config, run_dir, callback, policy, stages, front_fn)


def train_aggregation(
    config: RunConfig, run_dir: Path, callback: TrainCallback, steerable: Aggregate
) -> None:
    """Train (or reuse) the experts, evaluate the aggregation's front, write the artifact."""
    policy = open_policy(config)
    names = expert_names(config.objectives)

    def front_fn(index: int, finished: bool):
        if index < len(names) - 1 or not finished:
            return None  # the aggregation exists once every expert is trained
        return snapshot(steerable(policy, config.objectives, names), config)

    experts_from = METHODS[config.method].option(config.options, "experts_from")
    if train_experts(config, run_dir, callback, policy, front_fn, experts_from):
        write_artifact(run_dir, config, dict.fromkeys(names), experts=names)


def load_aggregation(run_dir: Path, device: str, steerable: Aggregate) -> Steerable:
    """The aggregation of a finished run's experts."""
    artifact = read_artifact(run_dir)
    names = expert_names(artifact["objectives"])
    policy, _ = load_adapters(run_dir, device, names)
    return steerable(policy, tuple(artifact["objectives"]), names)
