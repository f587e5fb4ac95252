"""One policy trained over preferences sampled per batch: the loop RiC, Panacea and the
meta-policy share.

Each RL step draws one preference w ~ Dirichlet(1) from a generator seeded by the run's seed,
hands it to the method (``condition(w)``: put it in the prompt, in the singular values, or in
the meta-network's input) and takes one :class:`~morl_core.rl.trainer.RLTrainer` step on the
w-scalarised reward. Checkpoints (``morl_core.jobs.checkpoint``) hold the trainer state and the
preference generator, so a resumed run samples the same preferences an uninterrupted one would.

Checkpoints share ``run_dir/checkpoints`` with :func:`~morl_core.methods.common.train_stages`
(experts first, then this loop): their state carries ``stage`` = the number of stages already
finished and ``trainer = None`` so the stage driver sees its work as done, plus our own state
under ``"conditioned"``. Steps and samples continue the experts' count.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from morl_core.config import RunConfig
from morl_core.methods.base import StepInfo, TrainCallback
from morl_core.policy import Policy
from morl_core.prompts import load_prompts
from morl_core.rl.trainer import RLTrainer
from morl_core.weights import dirichlet

STATE_KEY = "conditioned"
SEED_STREAM = 8  # keeps this generator's stream apart from the trainers' seeds


def preference_rng(config: RunConfig) -> np.random.Generator:
    """The run's generator of training preferences."""
    return np.random.default_rng([config.seed, SEED_STREAM])


def train_over_preferences(
    config: RunConfig,
    run_dir: Path,
    callback: TrainCallback,
    policy: Policy,
    *,
    stage: str,
    steps: int,
    condition: Callable[[np.ndarray], None],
    front_fn: Callable[[], dict[str, Any] | None],
    stages_done: int = 0,
    lr: float | None = None,
) -> bool:
    """RL on ``policy``'s trainable parameters with one sampled preference per step.

    Args:
        config: the run configuration (batch, k, decoding, KL, checkpoint cadence, seed).
        run_dir: the run folder (checkpoints go to ``run_dir/checkpoints``).
        callback: receives a :class:`StepInfo` per step; returning False stops after the step.
        policy: the policy to train; its parameters with ``requires_grad`` are the trainable ones.
        stage: name reported in ``StepInfo.stage``.
        steps: RL steps of this loop.
        condition: called with each step's preference (K,) before the step.
        front_fn: returns a front snapshot; called every ``eval_every`` steps and at the end.
        stages_done: stages of :func:`train_stages` finished before this loop (experts).
        lr: learning rate for this loop (default ``config.lr``).

    Returns:
        True when all steps are done, False when the callback stopped training.
    """
    from morl_core.jobs.checkpoint import load_latest_checkpoint, save_checkpoint

    k = len(config.objectives)
    trainer_config = config if lr is None or lr == config.lr else config.replace(lr=lr)
    trainer = RLTrainer(
        policy,
        trainer_config,
        load_prompts(config.prompt_set, "train"),
        seed=config.seed * 1000 + 500,
    )
    rng = preference_rng(config)
    offset = 0  # steps the run did before this loop (the experts')
    found = load_latest_checkpoint(run_dir)
    if found is not None:
        step, tensors, state = found
        own = state.get(STATE_KEY)
        if own is None:  # the experts' last checkpoint: this loop starts now
            offset = step
        else:
            offset = int(own["offset"])
            trainer.load_state(tensors, own["trainer"])
            rng.bit_generator.state = own["rng"]
    total = offset + steps
    batch = config.batch_prompts * config.k_samples
    while trainer.steps_done < steps:
        weights = dirichlet(k, 1, rng)[0]  # (K,)
        condition(weights)
        metrics, _ = trainer.step(weights)
        global_step = offset + trainer.steps_done
        done = trainer.steps_done == steps
        front = None
        if done or (config.eval_every and trainer.steps_done % config.eval_every == 0):
            front = front_fn()
        keep_going = callback(
            StepInfo(
                step=global_step,
                total_steps=total,
                samples=global_step * batch,
                metrics=metrics,
                stage=stage,
                front=front,
            )
        )
        if done or global_step % config.checkpoint_every == 0 or not keep_going:
            tensors, trainer_state = trainer.state()
            own = {"offset": offset, "trainer": trainer_state, "rng": rng.bit_generator.state}
            save_checkpoint(
                run_dir,
                global_step,
                tensors,
                {"stage": stages_done, "trainer": None, "method": {}, STATE_KEY: own},
            )
        if not keep_going:
            return False
    return True
