"""C. RiC: Rewards-in-Context, one policy conditioned on target rewards written in the prompt.

Reference: Yang et al., "Rewards-in-Context: Multi-objective Alignment of Foundation Models with
Dynamic Preference Adjustment" (ICML 2024, arXiv 2402.10207).

**Conditioning.** The prompt x is prefixed with one tag per objective carrying a target reward,
then a newline::

    <sentiment=1.0><brevity=0.6>\\nThe hotel was

Targets are rounded to one decimal. The embedded byte-level BPE tokenizer has no merges for these
tags: ``<``, ``=``, ``>`` and each digit and the dot are single tokens and the objective name is
1-4 pieces, so a target is always the three tokens ``d . d``. No tokens are added (the embedding
matrix and LM head stay the base model's); the LoRA adapter learns to read the tags.

**Preference-to-target map (the paper's, Section 3.3).** Rewards are normalised to [0, 1] here, so
with r_min = 0 and r_max = 1, for K objectives::

    target_i(w) = 1            if w_i >= 1/K
                = K * w_i      otherwise

(the objectives the user weights at least evenly are asked for at their maximum; the others are
relaxed in proportion to their weight).

**What is implemented (differs from the paper).** The paper trains offline by supervised
fine-tuning on responses labelled with the rewards they achieved, then online by generating
with targets near the Pareto front and re-fine-tuning on the samples that multi-objective
rejection sampling keeps. Here, with the RL core available, one LoRA policy is trained by RL
over preferences sampled per batch (w ~ Dirichlet(1), the run's seed), with target(w) in the
prompt and the w-scalarised reward:

    J(theta) = E_w E_{y ~ pi_theta(. | [target(w); x])} [ f_w(r(x, y)) ] - beta KL(pi_theta || pi_ref)

so the prompt tags work as a learned code for w (no hindsight relabelling, no rejection
sampling). Inference uses the same map, so the served policy sees exactly the tags it was trained
on. The scorers see the plain prompt (the tags are added at tokenisation), so ``relevance`` is not
disturbed by them. One model, one pass per token.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morl_core.config import RunConfig
from morl_core.methods.base import TrainCallback
from morl_core.methods.common import (
    Stage,
    adapter_dir,
    load_adapters,
    open_policy,
    read_artifact,
    save_adapter_atomic,
    snapshot,
    train_stages,
    write_artifact,
)
from morl_core.policy import Policy, attach_lora
from morl_core.weights import check_weights

ADAPTER = "ric"


def targets(weights: np.ndarray) -> np.ndarray:
    """RiC's preference-to-target map for rewards in [0, 1], rounded to one decimal (K,)."""
    w = np.asarray(weights, dtype=float)
    k = len(w)
    raw = np.where(w >= 1.0 / k - 1e-9, 1.0, k * w)
    return np.round(raw, 1)


def tag_name(objective: str) -> str:
    """The tag of an objective: its registry name (the last part of a dotted path)."""
    return objective.replace(":", ".").rsplit(".", 1)[-1]


def prefix(objectives, weights: np.ndarray) -> str:
    """The prompt prefix for preference ``weights``, e.g. ``'<sentiment=1.0><brevity=0.6>\\n'``."""
    tags = "".join(
        f"<{tag_name(o)}={t:.1f}>" for o, t in zip(objectives, targets(weights), strict=True)
    )
    return tags + "\n"


@dataclass
class PrefixedPolicy(Policy):
    """A policy that writes ``prefix`` in front of every prompt when it tokenises it.

    Only the model sees the prefix; the prompts handed to the scorers stay as they are.
    """

    prefix: str = ""

    def encode(self, prompts, max_new_tokens: int = 0, prefix: str = ""):
        return super().encode(prompts, max_new_tokens, prefix=self.prefix + prefix)


def prefixed(policy: Policy) -> PrefixedPolicy:
    return PrefixedPolicy(
        model=policy.model,
        tokenizer=policy.tokenizer,
        device=policy.device,
        name=policy.name,
        chat=policy.chat,
    )


class RewardsInContext:
    """Steerable: one LoRA policy; a preference becomes target-reward tags in the prompt."""

    models_kept = 1
    passes_per_token = 1

    def __init__(self, policy: PrefixedPolicy, objectives: tuple[str, ...]):
        self.policy = policy
        self.objectives = tuple(objectives)

    def prompt_prefix(self, weights) -> str:
        """The exact text put before each prompt for ``weights`` (for display and tests)."""
        return prefix(self.objectives, check_weights(weights, k=len(self.objectives)))

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        self.policy.prefix = self.prompt_prefix(weights)
        return self.policy.generate(list(prompts), **gen)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    policy = prefixed(open_policy(config))
    with torch.random.fork_rng(devices=[]):  # LoRA A is drawn from torch's global RNG
        torch.manual_seed(config.seed * 1000 + 500)
        attach_lora(policy, r=config.lora_r, alpha=config.lora_alpha, adapter_name=ADAPTER)
    steerable = RewardsInContext(policy, config.objectives)

    def condition(weights: np.ndarray) -> None:
        policy.prefix = prefix(config.objectives, weights)

    stage = Stage("ric policy", config.steps, condition=condition, adapter=False)
    front_fn = lambda index, done: snapshot(steerable, config)  # noqa: E731
    if train_stages(config, run_dir, callback, policy, [stage], front_fn):
        k = len(config.objectives)
        save_adapter_atomic(policy, adapter_dir(run_dir, ADAPTER), ADAPTER)
        write_artifact(
            run_dir,
            config,
            {ADAPTER: None},
            map="target_i = 1 if w_i >= 1/K else K * w_i (rounded to 0.1)",
            example_prefix=prefix(config.objectives, np.full(len(config.objectives), 1 / k)),
        )


def load(run_dir: Path, device: str = "auto") -> RewardsInContext:
    artifact = read_artifact(run_dir)
    policy, _ = load_adapters(run_dir, device, [ADAPTER])
    return RewardsInContext(prefixed(policy), tuple(artifact["objectives"]))
