"""What every adapter-training method shares: stages, checkpoints, resume, front snapshots.

A method is a list of :class:`Stage` s, each training one LoRA adapter with :class:`RLTrainer`
(MORLHF: one per preference; soups/MOD/EMORL: one per objective; DynaOpt: one). The driver
reports each step to the callback, checkpoints every ``checkpoint_every`` steps, saves each
finished adapter as a peft folder under ``run_dir/adapters/NAME``, and on a restart resumes
from the newest checkpoint with exactly the state an uninterrupted run would have had.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morl_core.config import RunConfig
from morl_core.methods.base import StepInfo, TrainCallback
from morl_core.evaluation import evaluate_front, preference_grid
from morl_core.policy import (
    Policy,
    attach_lora,
    load_adapter,
    load_policy,
    save_adapter,
    set_threads,
)
from morl_core.prompts import load_prompt_columns, load_prompts
from morl_core.rl.trainer import RLTrainer

ARTIFACT = "artifact.json"


@dataclass
class Stage:
    """One adapter to train.

    ``weights(step_in_stage, trainer, last_raw)`` gives the preference used at each step
    (constant for most methods; DynaOpt's bandit moves it). ``after_step`` may update method
    state from the step's raw rewards; ``state``/``load`` put that state into checkpoints.
    """

    name: str
    steps: int
    weights: Callable[[int], np.ndarray]
    after_step: Callable[[dict[str, float], np.ndarray], None] = lambda metrics, raw: None
    state: Callable[[], dict[str, Any]] = lambda: {}
    load: Callable[[dict[str, Any]], None] = lambda state: None
    info: dict[str, Any] = field(default_factory=dict)


def open_policy(config: RunConfig) -> Policy:
    set_threads(config.threads)
    return load_policy(config.model, device=config.device, threads=config.threads)


def adapter_dir(run_dir: Path, name: str) -> Path:
    return Path(run_dir) / "adapters" / name


def eval_preferences(config: RunConfig) -> np.ndarray:
    return preference_grid(len(config.objectives), config.n_preferences)


def snapshot(steerable, config: RunConfig, preferences: np.ndarray | None = None) -> dict[str, Any]:
    """Evaluate ``steerable`` on the held-out prompts (the shared protocol)."""
    prompts = load_prompts(config.prompt_set, "eval")[: config.eval_prompts]
    prefs = eval_preferences(config) if preferences is None else preferences
    return evaluate_front(
        steerable,
        prompts,
        prefs,
        config.objectives,
        seed=config.seed,
        prompt_columns=load_prompt_columns(config.prompt_set, "eval"),
    )


def train_stages(
    config: RunConfig,
    run_dir: Path,
    callback: TrainCallback,
    policy: Policy,
    stages: list[Stage],
    front_fn: Callable[[int, bool], dict[str, Any] | None],
) -> bool:
    """Train ``stages`` in order, resuming from the newest checkpoint. False if stopped early.

    ``front_fn(stage_index, stage_finished)`` returns a front snapshot to report (or None); it
    is called every ``eval_every`` steps and at the end of each stage.

    A stage ends in this order, so that a kill between any two of these lines resumes to the
    result of an uninterrupted run:

    1. the last step's metrics (and the stage's front) go to the callback;
    2. the adapter is saved to a temp folder and renamed to ``adapters/NAME`` (a kill mid-save
       leaves only the temp folder, which is ignored and retrained from the checkpoint);
    3. a stage-done checkpoint records that the next stage starts fresh.

    A stage whose adapter folder exists is finished, whatever the checkpoint says (a kill
    between 2 and 3, or experts copied from another run); the global step is always the
    steps of the stages before plus the steps done in this one, so it never depends on which
    checkpoint the run resumed from.
    """
    from morl_core.jobs.checkpoint import load_latest_checkpoint, save_checkpoint

    run_dir = Path(run_dir)
    prompts = load_prompts(config.prompt_set, "train")
    total = sum(s.steps for s in stages)
    batch = config.batch_prompts * config.k_samples
    resume = load_latest_checkpoint(run_dir)
    first_stage, tensors, state = 0, None, None
    if resume is not None:
        _, tensors, state = resume
        first_stage = int(state["stage"])
    steps_before = 0  # steps of the stages before ``index`` (an uninterrupted run's numbering)
    for index, stage in enumerate(stages):
        folder = adapter_dir(run_dir, stage.name)
        if index < first_stage or (folder / "adapter_config.json").exists():
            load_adapter(policy, folder, adapter_name=stage.name)
            steps_before += stage.steps
            if state is not None and index == first_stage - 1 and state.get("method"):
                stage.load(state["method"])  # the finished stage's method state
            if resume is not None and index >= first_stage:
                # Killed after the adapter was renamed into place but before its stage-done
                # checkpoint: write that checkpoint now, so whatever resumes next (a later
                # stage, the meta-policy loop) sees this stage as done at its exact step.
                save_checkpoint(
                    run_dir,
                    steps_before,
                    {"stage_done": torch.zeros(1)},
                    {"stage": index + 1, "trainer": None, "method": {}},
                )
                first_stage, state = index + 1, None
            continue
        stage_seed = config.seed * 1000 + index
        # LoRA A is drawn from torch's global RNG: seed it privately so the initial adapter
        # depends on (seed, stage) alone, not on what ran before in this process (a resume
        # at a stage boundary, or a second run in the same process, must match a fresh run).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(stage_seed)
            attach_lora(policy, r=config.lora_r, alpha=config.lora_alpha, adapter_name=stage.name)
        _train_only(policy, stage.name)
        trainer = RLTrainer(policy, config, prompts, seed=stage_seed)
        if state is not None and index == first_stage and state["trainer"] is not None:
            trainer.load_state(tensors, state["trainer"])
            stage.load(state["method"])
        while trainer.steps_done < stage.steps:
            metrics, raw = trainer.step(stage.weights(trainer.steps_done))
            stage.after_step(metrics, raw)
            global_step = steps_before + trainer.steps_done
            done = trainer.steps_done == stage.steps
            front = None
            if done or (config.eval_every and trainer.steps_done % config.eval_every == 0):
                front = front_fn(index, done)
            keep_going = callback(
                StepInfo(
                    step=global_step,
                    total_steps=total,
                    samples=global_step * batch,
                    metrics=metrics,
                    stage=stage.name,
                    front=front,
                )
            )
            if done:  # the adapter folder now holds the stage; the next one starts fresh
                save_adapter_atomic(policy, folder, stage.name)
                save_checkpoint(  # the method's state too: DynaOpt's bandit outlives its stage
                    run_dir,
                    global_step,
                    {"stage_done": torch.zeros(1)},
                    {"stage": index + 1, "trainer": None, "method": stage.state()},
                )
            elif global_step % config.checkpoint_every == 0 or not keep_going:
                t, s = trainer.state()
                save_checkpoint(
                    run_dir, global_step, t, {"stage": index, "trainer": s, "method": stage.state()}
                )
            if not keep_going:
                return False
        steps_before += stage.steps
    return True


def _train_only(policy: Policy, adapter: str) -> None:
    """Make exactly the LoRA weights of ``adapter`` trainable (earlier adapters stay frozen)."""
    for name, param in policy.model.named_parameters():
        param.requires_grad_("lora_" in name and f".{adapter}." in name)


def save_adapter_atomic(policy: Policy, folder: Path, adapter_name: str) -> Path:
    """Save an adapter to a temp folder beside ``folder``, then rename it into place.

    peft writes ``adapter_config.json`` before the weights, so a folder written in place can
    look finished while it holds no weights; a renamed folder is complete or absent.
    """
    folder = Path(folder)
    parent = folder.parent
    if parent.is_symlink() or folder.is_symlink():
        raise OSError(errno.ELOOP, "refusing to write through a symlink", str(folder))
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{folder.name}.*.tmp"):  # left by a save that was killed
        shutil.rmtree(stale, ignore_errors=True)
    tmp = parent / f".{folder.name}.{os.getpid()}.tmp"
    try:
        save_adapter(policy, tmp, adapter_name=adapter_name)
        if folder.exists():
            shutil.rmtree(folder)
        os.rename(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def write_artifact(
    run_dir: Path, config: RunConfig, adapters: dict[str, list[float] | None], **extra: Any
) -> None:
    """Describe the trained artifact (adapters and their preferences) for ``load``."""
    data = {
        "method": config.method,
        "objectives": list(config.objectives),
        "model": config.model,
        "adapters": adapters,
        **extra,
    }
    tmp = Path(run_dir) / (ARTIFACT + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(Path(run_dir) / ARTIFACT)


def read_artifact(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / ARTIFACT
    if not path.exists():
        raise ValueError(
            f"{run_dir} holds no trained artifact (no {ARTIFACT}); has the run finished?"
        )
    return json.loads(path.read_text())


def read_config(run_dir: Path) -> RunConfig:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise ValueError(f"{run_dir} is not a run folder (no config.json)")
    # the files it names were resolved and checked when it was submitted; a finished run's
    # config is read back as data (its experts' source may since have gone)
    return RunConfig.from_dict(json.loads(path.read_text()), check_files=False)


class AdapterPolicy:
    """Steerable over named adapters of one base model; subclasses pick the adapter per preference."""

    passes_per_token = 1

    def __init__(
        self, policy: Policy, objectives: tuple[str, ...], adapters: dict[str, list[float] | None]
    ):
        self.policy = policy
        self.objectives = tuple(objectives)
        self.adapters = adapters
        self.models_kept = len(adapters)

    def choose(self, weights: np.ndarray) -> str:
        raise NotImplementedError

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        from morl_core.weights import check_weights

        w = check_weights(weights, k=len(self.objectives))
        self.policy.model.set_adapter(self.choose(w))
        return self.policy.generate(list(prompts), **gen)


def load_adapters(
    run_dir: Path, device: str = "auto", names: list[str] | None = None
) -> tuple[Policy, dict[str, Any]]:
    """Base policy with the named adapters (default: all) of a finished run loaded, frozen."""
    run_dir = Path(run_dir)
    artifact = read_artifact(run_dir)
    policy = load_policy(artifact["model"], device=device)
    for name in names if names is not None else artifact["adapters"]:
        load_adapter(policy, adapter_dir(run_dir, name), adapter_name=name)
    return policy, artifact


def load_steerable(run_dir: Path, method: str | None = None, device: str = "auto"):
    """The Steerable of a finished run; ``method`` re-aggregates its experts another way."""
    from morl_core.methods import get

    config = read_config(run_dir)
    return get(method or config.method).load(Path(run_dir), device=device)
