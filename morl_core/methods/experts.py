"""Per-objective LoRA experts, trained once per run folder and shared by every aggregation.

Soups (D1), MOD (D2), EMORL (D3) and the meta-policy (E) all start from K experts: expert i is
trained by RL on objective i alone (preference = the i-th one-hot vector). A run may reuse the
experts of another run (option ``experts_from``) so one training serves many aggregations.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.common import Stage, adapter_dir, read_config, train_stages
from morl_core.policy import Policy


def expert_name(objective: str) -> str:
    return f"expert_{objective.replace('.', '_').replace(':', '_')}"


def expert_names(objectives) -> list[str]:
    return [expert_name(o) for o in objectives]


def copy_experts(config: RunConfig, run_dir: Path, source: Path) -> None:
    """Copy finished experts from ``source`` (same base model, same objectives) into ``run_dir``."""
    source = Path(source)
    other = read_config(source)
    if other.model != config.model:
        raise ValueError(
            f"options.experts_from: {source} was trained on model {other.model!r}, "
            f"this run uses {config.model!r}"
        )
    for name in expert_names(config.objectives):
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
