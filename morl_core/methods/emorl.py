"""D3. EMORL: per-objective experts mixed at a hidden state, weights by grid search.

Reference: Kong et al., "EMORL: Ensemble Multi-Objective Reinforcement Learning for Efficient and
Flexible LLM Fine-Tuning" (SIGDIAL 2025, arXiv 2505.02579).

Train one LoRA expert per objective (shared with soups/MOD/PMIX, ``experts_from`` reuses another
run's). For aggregation coefficients a in [0, 1]^K, the policy pi_a decodes with

    h_t = sum_i a_i h_{t,i}(x, y_<t),       pi_a(y_t | x, y_<t) = softmax(W h_t)

where h_{t,i} is expert i's last hidden state (after the final layer norm) and W the shared LM
head, as in the authors' code. W is linear and bias-free, so this is exactly MOD at temperature
1 / sum(a) (:mod:`~morl_core.methods.hidden`; ``tests/test_methods_emorl.py`` checks it to 1e-5):
the search tunes mixture weights and temperature together. The paper's token-level baseline,
the arithmetic mixture sum_i w_i pi_i, is ``pmix`` here. Option ``mix_at="pre_norm"`` mixes the
residual streams before the final norm instead: a non-linear level, where only a's direction
matters (the search scores each direction once).

For a target preference w the coefficients are

    a*(w) = argmax_{a in [0,1]^K} mean_{x in S, y ~ pi_a} [ w.r(x, y) - c (1 - f(y)) - beta KL_seq ]

with KL_seq = sum_t log pi_a(y_t | x, y_<t) - log pi_base(y_t | x, y_<t) the Monte-Carlo KL of each
sampled reply to the base model (:func:`morl_core.kl.generate_with_kl`), beta the run's
``kl_coef``, f(y) in [0, 1] the run's fluency guard (``fluency_guard``) and c its
``fluency_penalty`` (0 by default): the objective the experts were trained on. For KL-regularised
experts pi_i ~ pi_base exp(r_i / beta), pi_a at a = w is the optimum pi*_w of that objective, so
the search can find it; without the KL term (option ``search_objective="reward"``, the paper's
search) it maximises w . r alone and drifts to a corner or a high temperature (tested on the
known-answer problem in ``tests/test_methods_emorl.py``). Found by hierarchical grid search
(:func:`morl_core.search.hierarchical_grid_search`: 3^K grid, keep the best 2^K sub-cube, shrink,
``search_rounds`` rounds) on the first ``search_prompts`` *training* prompts S (the artifact
records whether S overlaps the evaluated prompts), with ``search_replies`` sampled replies per
prompt and candidate (the mean above). a is not normalised, so at ``"final"`` the search also picks
the temperature; unregularised, on a small model it found high-temperature word salad that games a
scorer (3.3 nats/token from the base), which the KL term prices in. Option ``search_guard`` (a
number of standard errors; 0, the paper's search, by default) keeps a = w unless the best
candidate beats it by that many standard errors of their paired per-reply difference: the
maximum of a grid of noisy means is biased upwards (the winner's curse).

The search (:mod:`morl_core.methods.emorl_search`) runs after training for every preference of
the evaluation grid (candidate scores cached across preferences, one candidate decoded at a
time); a preference off the grid gets inverse-distance (Shepard) interpolated coefficients, so
steering costs one decode. The search counts as training: its scored
completions (candidates x prompts x replies) add to the run's ``samples`` (the KL's base passes
score the same completions and add nothing) and go into the artifact (``search``, with its
objective) and metrics (``search/*``); its wall-clock seconds go to ``search_timing.json`` so the
artifact stays reproducible. Every scored candidate is saved in ``search_candidates.json`` as it
is scored, so a search cut short resumes where it stopped. Inference: K models kept, K passes
per token (a_i = 0 skipped).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.methods.base import StepInfo, Stopped, TrainCallback
from morl_core.methods.common import (
    eval_preferences,
    load_adapters,
    open_policy,
    read_artifact,
    snapshot,
    write_artifact,
)
from morl_core.methods.emorl_search import search_metrics, search_table
from morl_core.methods.experts import expert_names, train_experts
from morl_core.methods.hidden import FixedMixer, HiddenFusion, fused_policy
from morl_core.prompts import load_prompts
from morl_core.runfolder import write_json_atomic
from morl_core.weights import check_weights

SEARCH_TIMING = "search_timing.json"
SEARCH_CANDIDATES = "search_candidates.json"  # every scored candidate: the search resumes from it


class Emorl:
    """Steerable: hidden-state aggregation of the ``experts`` (adapters of ``policy``) with
    coefficients looked up in ``table`` (searched (preference, coefficients) pairs; empty: a = w).
    """

    def __init__(
        self,
        policy,
        objectives: tuple[str, ...],
        experts: list[str],
        table=(),
        mix_at: str = "final",
    ):
        self.mixer = FixedMixer(len(experts))
        self.fusion = HiddenFusion(policy.model, experts, self.mixer, level=mix_at)
        self.mix_at = mix_at
        self.policy = fused_policy(policy, self.fusion)
        self.objectives = tuple(objectives)
        self.table = [(np.asarray(p, float), np.asarray(a, float)) for p, a in table]
        self.models_kept = len(experts)
        self.passes_per_token = len(experts)

    def coefficients(self, weights) -> np.ndarray:
        """Aggregation coefficients a (K,) for preference ``weights``: searched or interpolated."""
        w = check_weights(weights, k=len(self.objectives))
        if not self.table:
            return w  # no search yet: a = w
        prefs = np.stack([p for p, _ in self.table])  # (P, K)
        coefs = np.stack([a for _, a in self.table])  # (P, K)
        dist = np.sqrt(((prefs - w) ** 2).sum(-1))  # (P,)
        if dist.min() < 1e-9:
            return coefs[int(dist.argmin())]
        inverse = 1.0 / dist**2
        return (inverse[:, None] * coefs).sum(0) / inverse.sum()

    def decode(self, prompts, coefficients: np.ndarray, **gen: Any) -> list[str]:
        """Generate with explicit coefficients: (K,) for all rows or (len(prompts), K)."""
        self.mixer.weights = torch.as_tensor(np.asarray(coefficients), dtype=torch.float32)
        return self.policy.generate(list(prompts), **gen)

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        return self.decode(prompts, self.coefficients(weights), **gen)


def search_prompts(config: RunConfig, n: int) -> tuple[list[str], bool]:
    """The search prompts (the first ``n`` of the *training* split) and whether any of them is
    also one of the evaluated prompts (the same text in both splits)."""
    chosen = load_prompts(config.prompt_set, "train")[:n]
    evaluated = set(load_prompts(config.prompt_set, "eval")[: config.eval_prompts])
    return chosen, bool(evaluated.intersection(chosen))


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    spec = METHODS["emorl"]
    rounds = spec.option(config.options, "search_rounds")
    n_prompts = spec.option(config.options, "search_prompts")
    mix_at = spec.option(config.options, "mix_at")
    objective = spec.option(config.options, "search_objective")
    replies = spec.option(config.options, "search_replies")
    guard = spec.option(config.options, "search_guard")
    policy = open_policy(config)
    names = expert_names(config.objectives)
    prompts, overlap = search_prompts(config, n_prompts)
    experts_from = spec.option(config.options, "experts_from")
    total_steps = len(names) * config.steps
    found: dict[str, Any] = {}

    def search() -> Emorl:
        steerable = Emorl(policy, config.objectives, names, mix_at=mix_at)
        preferences = eval_preferences(config)
        table, cost = search_table(
            steerable,
            config,
            preferences,
            prompts,
            rounds,
            objective,
            replies,
            saved=Path(run_dir) / SEARCH_CANDIDATES,
            guard=guard,
        )
        steerable.table = [
            (np.asarray(t["preference"]), np.asarray(t["coefficients"])) for t in table
        ]
        found.update(table=table, cost=cost, steerable=steerable)
        return steerable

    def front(steerable: Emorl) -> dict[str, Any]:
        searched = {k: v for k, v in found["cost"].items() if k != "seconds"}
        return {**snapshot(steerable, config), "search": searched}

    def front_fn(index: int, finished: bool) -> dict[str, Any] | None:
        if index < len(names) - 1 or not finished:
            return None  # the front exists once every expert is trained and searched
        return front(search())

    def counted(info: StepInfo) -> bool:
        # The search runs inside front_fn, just before the last step is reported: from then
        # on the run's samples include the completions the search scored (training cost).
        if found:
            info = replace(
                info,
                samples=info.samples + found["cost"]["samples"],
                metrics={**info.metrics, **search_metrics(found["cost"])},
            )
        return callback(info)

    try:
        if not train_experts(config, run_dir, counted, policy, front_fn, experts_from):
            return
        if not found:  # resumed after the last expert, or experts copied: search and report now
            steerable = search()
            trained = 0 if experts_from else total_steps * config.batch_prompts * config.k_samples
            callback(
                StepInfo(
                    step=total_steps,
                    total_steps=total_steps,
                    samples=trained + found["cost"]["samples"],
                    metrics=search_metrics(found["cost"]),
                    stage="search",
                    front=front(steerable),
                )
            )
    except Stopped:  # cancelled or preempted mid-search: the worker ends the run, resume goes on
        return
    cost = found["cost"]
    # wall-clock time differs run to run: kept out of the (reproducible) artifact
    write_json_atomic(Path(run_dir) / SEARCH_TIMING, {"seconds": cost.pop("seconds")})
    write_artifact(
        run_dir,
        config,
        {n: None for n in names},
        experts=names,
        mix_at=mix_at,
        aggregation=found["table"],
        search={
            **cost,
            "split": "train",
            "overlaps_eval_prompts": overlap,
            "seconds_in": SEARCH_TIMING,
        },
    )


def load(run_dir: Path, device: str = "auto") -> Emorl:
    artifact = read_artifact(run_dir)
    names = expert_names(artifact["objectives"])
    policy, _ = load_adapters(run_dir, device, names)
    table = [(t["preference"], t["coefficients"]) for t in artifact.get("aggregation", [])]
    mix_at = artifact.get("mix_at", "final")  # artifacts written before the option: final
    return Emorl(policy, tuple(artifact["objectives"]), names, table, mix_at=mix_at)
