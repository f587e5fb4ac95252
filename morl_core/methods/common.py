"""What every trained method shares: stages, the training driver, checkpoints, resume.

A method is a list of :class:`Stage` s that :func:`train_stages` trains in order with
:class:`RLTrainer`, each step's preference given (MORLHF, the experts, DynaOpt's bandit) or
sampled from Dirichlet(1) (Panacea, the meta-policy). The driver reports each step, evaluates a
front every ``eval_every`` steps and at each stage's end, checkpoints every ``checkpoint_every``
steps, saves finished adapters under ``run_dir/adapters/NAME``, and resumes from the newest
checkpoint exactly where an uninterrupted run would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morl_core import runfolder
from morl_core.config import RunConfig
from morl_core.evaluation import evaluate_front, preference_grid
from morl_core.methods import get
from morl_core.methods.base import StepInfo, TrainCallback
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
from morl_core.runfolder import ARTIFACT, RecordWriter, adapter_dir, read_artifact, read_config
from morl_core.weights import check_weights, dirichlet

SAMPLED_SEED = 500  # a sampled stage's trainer seed offset, apart from the adapter stages' indices
PREFERENCE_STREAM = 8  # keeps the sampled preferences' generator apart from the trainers' seeds


@dataclass
class Stage:
    """One stretch of RL training, reported under ``name`` (also its LoRA adapter's name).

    Attributes:
        weights: ``weights(step_in_stage) -> (K,)``, each step's preference; ``None`` samples
            Dirichlet(``concentration``) from :func:`preference_rng` (checkpointed with the
            stage).
        concentration: of the sampled preferences: 1 is uniform on the simplex, below 1 draws
            more of them near its corners (the ends of the front).
        condition: told each step's preference before the step (Panacea's singular values, the
            meta-network's input).
        adapter: train a fresh LoRA adapter seeded by (seed, stage index) and save it to
            ``adapters/NAME``; False trains whatever has ``requires_grad`` and saves nothing
            (the method does), and must be the last stage.
        lr: the stage's learning rate (default ``config.lr``).
        after_step: ``after_step(metrics, raw_rewards)`` may update method state and metrics.
        state, load: the method state to checkpoint, and how to put it back.
    """

    name: str
    steps: int
    weights: Callable[[int], np.ndarray] | None = None
    after_step: Callable[[dict[str, float], np.ndarray], None] = lambda metrics, raw: None
    state: Callable[[], dict[str, Any]] = lambda: {}
    load: Callable[[dict[str, Any]], None] = lambda state: None
    condition: Callable[[np.ndarray], None] = lambda weights: None
    adapter: bool = True
    lr: float | None = None
    concentration: float = 1.0
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DriverState:
    """What :func:`train_stages` keeps in a checkpoint's JSON state (the tensors are the trainer's).

    Attributes:
        stage: the stage in progress or, when ``trainer`` is None, the number of stages done.
        trainer: ``RLTrainer.state()`` of the stage in progress; None at a stage boundary.
        method: the stage's ``Stage.state()`` (kept at its end: DynaOpt's bandit outlives it).
        rng: a sampled stage's preference generator state (None for given preferences).
        offset: steps the run did before a sampled stage.

    On disk a sampled stage's own keys sit under ``"conditioned"`` (the format older runs wrote).
    """

    stage: int
    trainer: dict[str, Any] | None = None
    method: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] | None = None
    offset: int = 0

    def to_json(self) -> dict[str, Any]:
        """The JSON state saved with the checkpoint."""
        if self.rng is None:
            return {"stage": self.stage, "trainer": self.trainer, "method": self.method}
        own = {"offset": self.offset, "trainer": self.trainer, "rng": self.rng}
        return {"stage": self.stage, "trainer": None, "method": self.method, "conditioned": own}

    @classmethod
    def from_json(cls, state: dict[str, Any]) -> DriverState:
        """Read back what :meth:`to_json` wrote."""
        own = state.get("conditioned") or {}
        trainer = own.get("trainer", state.get("trainer"))
        method = state.get("method") or {}
        return cls(int(state["stage"]), trainer, method, own.get("rng"), own.get("offset", 0))


def preference_rng(config: RunConfig) -> np.random.Generator:
    """The run's generator of sampled training preferences."""
    return np.random.default_rng([config.seed, PREFERENCE_STREAM])


def open_policy(config: RunConfig) -> Policy:
    set_threads(config.threads)
    return load_policy(config.model, device=config.device, threads=config.threads)


def eval_preferences(config: RunConfig) -> np.ndarray:
    return preference_grid(len(config.objectives), config.n_preferences)


def snapshot(steerable, config: RunConfig, preferences: np.ndarray | None = None) -> dict[str, Any]:
    """Evaluate ``steerable`` on the held-out prompts (the shared protocol)."""
    prompts = load_prompts(config.prompt_set, "eval")[: config.eval_prompts]
    prefs = eval_preferences(config) if preferences is None else preferences
    columns = load_prompt_columns(config.prompt_set, "eval")
    return evaluate_front(
        steerable, prompts, prefs, config.objectives, seed=config.seed, prompt_columns=columns
    )


def train_stages(
    config: RunConfig,
    run_dir: Path,
    callback: TrainCallback,
    policy: Policy,
    stages: list[Stage],
    front_fn: Callable[[int, bool], dict[str, Any] | None],
    *,
    stages_before: int = 0,
) -> bool:
    """Train ``stages`` in order, resuming from the newest checkpoint; False if stopped early.

    ``callback`` gets a :class:`StepInfo` per step (False stops after it); ``front_fn(index,
    stage_finished)`` returns a snapshot or None, every ``eval_every`` steps and at each stage's
    end. ``stages_before``: stages an earlier call trained into this folder (the meta-policy's
    experts), whose steps this call's count continues.

    An adapter stage ends (1) reporting its last step, (2) renaming its saved adapter into
    ``adapters/NAME``, (3) writing a stage-done checkpoint, so a kill between any two resumes to
    the uninterrupted result: a stage whose adapter folder exists is done whatever the checkpoint
    says (a kill between 2 and 3, copied experts), and the global step is always the steps of the
    stages before plus this one's. A sampled stage checkpoints its last step too.
    """
    if any(not s.adapter for s in stages[:-1]):
        raise ValueError("only the last stage may train without its own adapter")
    run_dir = Path(run_dir)
    prompts = load_prompts(config.prompt_set, "train")
    batch = config.batch_prompts * config.k_samples
    found = runfolder.load_latest_checkpoint(run_dir)
    point = DriverState.from_json(found.state) if found is not None else None
    steps_before = 0  # steps of the stages before the one at hand (an uninterrupted run's count)
    if point is not None and stages_before and point.stage == stages_before:
        steps_before = point.offset if point.rng is not None else found.step
    total = steps_before + sum(s.steps for s in stages)

    def checkpoint(step: int, tensors: dict[str, Any], state: DriverState) -> None:
        runfolder.save_checkpoint(run_dir, step, tensors, state.to_json())

    for local, stage in enumerate(stages):
        index = stages_before + local
        folder = adapter_dir(run_dir, stage.name)
        first = point.stage if point is not None else 0
        if stage.adapter and (index < first or (folder / "adapter_config.json").exists()):
            load_adapter(policy, folder, adapter_name=stage.name)
            steps_before += stage.steps
            if point is not None and index == first - 1 and point.method:
                stage.load(point.method)  # the finished stage's method state
            if found is not None and index >= first:
                # Killed after the adapter was renamed into place but before its stage-done
                # checkpoint: write that checkpoint now, so whatever resumes next (a later
                # stage, the meta-policy loop) sees this stage as done at its exact step.
                checkpoint(steps_before, {"stage_done": torch.zeros(1)}, DriverState(index + 1))
                point = DriverState(index + 1)
            continue
        seed = config.seed * 1000 + (index if stage.adapter else SAMPLED_SEED)
        if stage.adapter:
            attach_seeded_lora(policy, config, stage.name, seed)
            _train_only(policy, stage.name)
        lr = config.lr if stage.lr is None else stage.lr
        trainer = RLTrainer(
            policy, config.replace(lr=lr) if lr != config.lr else config, prompts, seed
        )
        rng = preference_rng(config) if stage.weights is None else None
        if point is not None and index == first and point.trainer is not None:
            trainer.load_state(found.tensors, point.trainer)
            stage.load(point.method)
            if rng is not None:
                rng.bit_generator.state = point.rng
        while trainer.steps_done < stage.steps:
            if rng is None:
                weights = stage.weights(trainer.steps_done)
            else:
                weights = dirichlet(len(config.objectives), 1, rng, stage.concentration)[0]
            stage.condition(weights)
            metrics, raw = trainer.step(weights)
            stage.after_step(metrics, raw)
            global_step = steps_before + trainer.steps_done
            done = trainer.steps_done == stage.steps
            front = None
            if done or (config.eval_every and trainer.steps_done % config.eval_every == 0):
                front = front_fn(local, done)
            keep_going = callback(
                StepInfo(global_step, total, global_step * batch, metrics, stage.name, front)
            )
            if done and stage.adapter:  # the adapter folder now holds the stage
                save_adapter_atomic(policy, folder, stage.name)
                checkpoint(
                    global_step,
                    {"stage_done": torch.zeros(1)},
                    DriverState(index + 1, method=stage.state()),
                )
            elif done or global_step % config.checkpoint_every == 0 or not keep_going:
                tensors, trainer_state = trainer.state()
                rng_state = None if rng is None else rng.bit_generator.state
                checkpoint(
                    global_step,
                    tensors,
                    DriverState(index, trainer_state, stage.state(), rng_state, steps_before),
                )
            if not keep_going:
                return False
        steps_before += stage.steps
    return True


def attach_seeded_lora(policy: Policy, config: RunConfig, adapter_name: str, seed: int) -> None:
    """Attach the run's LoRA (``lora_r``, ``lora_alpha``, ``lora_target_modules``) as
    ``adapter_name``, initialised from ``seed`` alone. LoRA A is drawn from torch's global RNG:
    seeded privately, the initial adapter does not depend on what ran before in this process (a
    resume at a stage boundary, or a second run in the same process, must match a fresh run)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attach_lora(
            policy,
            r=config.lora_r,
            alpha=config.lora_alpha,
            adapter_name=adapter_name,
            target_modules=config.lora_target_modules,
        )


def _train_only(policy: Policy, adapter: str) -> None:
    """Make exactly the LoRA weights of ``adapter`` trainable (earlier adapters stay frozen)."""
    for name, param in policy.model.named_parameters():
        param.requires_grad_("lora_" in name and f".{adapter}." in name)


def save_adapter_atomic(policy: Policy, folder: Path, adapter_name: str) -> Path:
    """Save a peft adapter to ``folder`` so that it is complete or absent (renamed into place)."""
    return runfolder.write_folder_atomic(
        folder, lambda tmp: save_adapter(policy, tmp, adapter_name=adapter_name)
    )


def write_artifact(
    run_dir: Path, config: RunConfig, adapters: dict[str, list[float] | None], **extra: Any
) -> None:
    """Describe the trained artifact (adapters and their preferences) for ``load``."""
    data = {"method": config.method, "objectives": list(config.objectives), "model": config.model}
    runfolder.write_json_atomic(Path(run_dir) / ARTIFACT, {**data, "adapters": adapters, **extra})


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
        w = check_weights(weights, k=len(self.objectives))
        name = self.choose(w)
        if self.policy.model.active_adapter != name:  # switching costs ~20 ms on SmolLM2
            self.policy.model.set_adapter(name)
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


def train_run(
    config: RunConfig,
    run_dir: Path,
    callback: TrainCallback | None = None,
    records: RecordWriter | None = None,
) -> None:
    """Train ``config.method`` into ``run_dir``: what ``morl train`` and the job worker both run.

    Each step goes to ``callback`` (which may raise to stop before anything is written), then to
    ``records`` (default a new :class:`~morl_core.runfolder.RecordWriter`).
    """
    records = records or RecordWriter(run_dir)

    def record(info: StepInfo) -> bool:
        keep_going = True if callback is None else callback(info)
        records.write(info)
        return keep_going

    get(config.method).train(config, Path(run_dir), record)


def load_steerable(run_dir: Path, method: str | None = None, device: str = "auto"):
    """The Steerable of a finished run; ``method`` re-aggregates its experts another way."""
    config = read_config(run_dir)
    return get(method or config.method).load(Path(run_dir), device=device)
