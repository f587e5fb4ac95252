"""C. RiC: Rewards-in-Context, one policy conditioned on target rewards written in the prompt.

Reference: Yang et al., "Rewards-in-Context: Multi-objective Alignment of Foundation Models with
Dynamic Preference Adjustment" (ICML 2024, arXiv 2402.10207).

**Conditioning.** A preference w becomes target rewards, written as tags before the prompt; a
pooled reply is labelled with the rewards it achieved, written the same way. How, and where
that differs from the paper (tags for the relaxed objectives only, tags in words for chat
models, labels rescaled between the pool's 10th and 90th percentiles), is
:mod:`morl_core.methods.ric_tags`.

**Training** (RL-free, as in the paper): ``steps`` rounds. Each round draws one batch
(``batch_prompts x k_samples``), scores it, adds it to a pool labelled with the rewards achieved,
and takes ``sft_updates`` (option, default 1) AdamW steps of cross-entropy on (tags + prompt ->
completion), each over a minibatch drawn from the pool (the paper trains several epochs over its
offline data; more steps per round fit the pool's tags harder at no new samples):

1. *offline* (the first ``ceil(offline_share * steps)`` rounds; option ``offline_share``, by
   default half): the base model samples (adapter off, no tags; with option
   ``offline_tags="drawn"`` under the tags of a drawn preference, for a model that already reads
   them: trained on replies drawn without them, RiC in words on SmolLM2 unlearnt the requests
   its base model follows);
2. *online* (the rest): the policy samples, prompted with target(w) for w ~ Dirichlet(1).

A sample's tags are its rewards rescaled between the pool's 10th and 90th percentiles (1.0 = the
pool's top tenth, standing for the paper's r_max; :func:`relabel`). Only samples at or above the
pool's 0.7-quantile on some objective (and above its worst) are trained on (multi-objective
rejection sampling), each objective's kept samples filling an equal share of a minibatch.
*Differs from the paper: rejection reads the rewards the RL methods train on*, each objective's
normalised reward less the run's fluency penalty c (1 - f(y)) (``fluency_guard``,
``fluency_penalty``; :func:`judged`), so a reply the guard fails is not imitated; its tags still
say what each reply achieved (the guard does not move the pool's quantiles). SmolLM2 sampled at
temperature 1 writes a few replies in made-up or foreign words, and a pool that kept them like
any other taught them ("Ja, de onzeel van hyderakies"; run 20261207-132211-ba549d4f: 12.5 % of
its lattice's replies fail the word-list guard, up to 19 % at its mixtures). Inference uses the
same map; the scorers see the plain prompt.

Every sample drawn counts as training cost. The checkpoint holds the pool, adapter, AdamW and
generators (a resumed run equals an uninterrupted one). Metrics are the step's new batch's,
``kl`` (k3, policy vs base) the training minibatch's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morl_core import objectives as objective_registry
from morl_core import runfolder
from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.methods.base import StepInfo, TrainCallback, no_callback
from morl_core.methods.common import (
    adapter_dir,
    attach_seeded_lora,
    load_adapters,
    open_policy,
    preference_rng,
    read_artifact,
    save_adapter_atomic,
    snapshot,
    write_artifact,
)
from morl_core.methods.ric_tags import prefix, relabel, tag_text
from morl_core.objectives.degeneration import guarded_fluency
from morl_core.policy import Policy
from morl_core.prompts import load_prompts
from morl_core.rl.losses import kl_report, token_logprobs
from morl_core.rl.trainer import RLTrainer, reward_metrics, scalarized, score_rollout
from morl_core.weights import check_weights, dirichlet

ADAPTER = "ric"
MORS_QUANTILE = 0.7  # rejection sampling keeps samples above this pool quantile somewhere
LORA_SEED = 500  # offset of the adapter's initialisation from seed * 1000
SFT_SEED = 700  # offset of the trainer's private generators from seed * 1000
CHECKPOINT_FORMAT = "ric-supervised-rounds"  # older checkpoints (RL steps) cannot be continued


@dataclass
class PrefixedPolicy(Policy):
    """A policy that writes ``prefix`` before every prompt it tokenises (the scorers never see it)."""

    prefix: str = ""

    def encode(self, prompts, max_new_tokens: int = 0, prefix: str = ""):
        return super().encode(prompts, max_new_tokens, prefix=self.prefix + prefix)


def prefixed(policy: Policy) -> PrefixedPolicy:
    return PrefixedPolicy(**{f.name: getattr(policy, f.name) for f in dataclasses.fields(Policy)})


class RewardsInContext:
    """Steerable: one LoRA policy; a preference becomes target-reward tags in the prompt."""

    models_kept = 1
    passes_per_token = 1

    def __init__(self, policy: PrefixedPolicy, objectives: tuple[str, ...], tags: str = "relaxed"):
        self.policy = policy
        self.objectives = tuple(objectives)
        self.tags = tags

    def prompt_prefix(self, weights) -> str:
        """The exact text put before each prompt for ``weights`` (for display and tests)."""
        w = check_weights(weights, k=len(self.objectives))
        return prefix(self.objectives, w, self.tags)

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        self.policy.prefix = self.prompt_prefix(weights)
        return self.policy.generate(list(prompts), **gen)


# --- training: supervised steps on a growing pool of samples labelled with their rewards ----


def judged(norm: np.ndarray, fluency: np.ndarray, penalty: float) -> np.ndarray:
    """Normalised rewards (N, K) less the fluency penalty ``penalty * (1 - fluency)`` (N,) on
    every objective: what the pool's rejection sampling reads."""
    return norm - penalty * (1.0 - fluency)[:, None]


def rejection_keep(norm: np.ndarray, quantile: float = MORS_QUANTILE) -> np.ndarray:
    """Multi-objective rejection sampling: samples (N,) at or above the pool's ``quantile`` on
    at least one objective, and strictly above the pool's worst there (a reward most samples
    share at its bottom, such as a 0/1 score, keeps only its 1s; once most reach the top, the
    top is still kept); every sample when none is (a pool without spread)."""
    filled = np.nan_to_num(norm, nan=-np.inf)
    above = (filled >= np.nanquantile(norm, quantile, axis=0)) & (filled > np.nanmin(norm, axis=0))
    keep = above.any(axis=1)
    return keep if keep.any() else np.ones(len(norm), dtype=bool)


def offline_steps(config: RunConfig) -> int:
    """Steps whose batch the base model samples (the first ``offline_share`` of them, rounded
    up; by default half); the remaining ones sample the policy."""
    share = float(METHODS["ric"].option(config.options, "offline_share"))
    return math.ceil(round(config.steps * share, 9))


class SupervisedRounds(RLTrainer):
    """RiC's trainer: per round (a step of the run) one batch drawn, scored and pooled, and
    ``sft_updates`` (default 1) supervised steps on the active adapter; the base model samples the
    offline batches and is the KL reference.

    It shares :class:`RLTrainer`'s adapter, AdamW, generators (``rng`` draws prompts and
    minibatches), normaliser and checkpoint part; only the step differs.
    """

    def __init__(self, policy: PrefixedPolicy, config: RunConfig):
        prompts = load_prompts(config.prompt_set, "train")
        super().__init__(policy, config, prompts, config.seed * 1000 + SFT_SEED)
        self.preferences = preference_rng(config)  # the online steps' targets
        self.offline = offline_steps(config)
        self.updates = int(METHODS["ric"].option(config.options, "sft_updates"))
        self.tags = str(METHODS["ric"].option(config.options, "tags"))
        self.offline_tags = METHODS["ric"].option(config.options, "offline_tags") == "drawn"
        # the pool: prompt index, completion ids (with their EOS), normalised rewards and the
        # fluency guard's score (1 = fluent)
        self.pool_prompt: list[int] = []
        self.pool_ids: list[list[int]] = []
        self.pool_norm = np.zeros((0, len(self.objectives)))
        self.pool_fluency = np.zeros(0)

    def step(self) -> dict[str, float]:
        """Draw a batch (base model offline, tagged policy online), pool it, train one step."""
        cfg, policy = self.config, self.policy
        t0 = time.perf_counter()
        online = self.steps_done >= self.offline
        replace = len(self.prompts) < cfg.batch_prompts
        chosen_prompts = self.rng.choice(len(self.prompts), size=cfg.batch_prompts, replace=replace)
        batch = [self.prompts[i] for i in chosen_prompts]
        # every step draws a preference: online steps prompt with its targets; offline steps
        # prompt the base model with them only with offline_tags="drawn" (else it is used only
        # for the reported scalarised reward)
        weights = dirichlet(len(self.objectives), 1, self.preferences)[0]  # (K,)
        metrics = {f"weight/{n}": float(w) for n, w in zip(self.objectives, weights, strict=True)}
        asked = online or self.offline_tags
        policy.prefix = prefix(self.objectives, weights, self.tags) if asked else ""
        context = contextlib.nullcontext() if online else policy.model.disable_adapter()
        with context:
            rollout = self.rollout(batch)
        t1 = time.perf_counter()
        state = objective_registry.TrainerState(self.steps_done, cfg.steps)
        texts, ids, raw = score_rollout(
            policy, rollout, batch, cfg.k_samples, self.objectives, self.prompt_columns, state
        )  # raw (B, K)
        norm = self.normalizer(raw)
        fluency = guarded_fluency(texts, cfg.fluency_guard)  # (B,) 1 = fluent
        self.pool_prompt.extend(int(i) for i in chosen_prompts for _ in range(cfg.k_samples))
        self.pool_ids.extend(ids)
        self.pool_norm = np.concatenate([self.pool_norm, norm])
        self.pool_fluency = np.concatenate([self.pool_fluency, fluency])
        t2 = time.perf_counter()
        for i in range(self.updates):  # the pool is reused: several steps cost no new samples
            last = i == self.updates - 1  # only the last one's loss and KL are reported
            metrics.update(self.supervised_step(report_kl=last))
        self.steps_done += 1
        metrics.update(reward_metrics(self.objectives, raw, norm, self.normalizer))  # new batch's
        scalar = scalarized(norm, weights, cfg.scalarization, cfg.k_samples)
        metrics["reward/scalarized"] = float(scalar.mean())
        metrics.update(online=float(online), pool=float(len(self.pool_ids)))
        metrics["fluency"] = float(fluency.mean())  # the degeneration guard, as the RL trainer's
        metrics.update({"length": float(np.mean([len(c) for c in ids])), "time/generate": t1 - t0})
        return {**metrics, "time/score": t2 - t1, "time/update": time.perf_counter() - t2}

    def supervised_step(self, report_kl: bool = True) -> dict[str, float]:
        """One AdamW step of cross-entropy on a balanced minibatch of the kept, relabelled pool;
        ``report_kl``: also measure the minibatch's KL to the base model (a second forward)."""
        labels = relabel(self.pool_norm)  # what each reply achieved
        guarded = judged(self.pool_norm, self.pool_fluency, self.config.fluency_penalty)
        nonempty = np.array([len(c) > 0 for c in self.pool_ids])
        kept = np.flatnonzero(rejection_keep(guarded) & nonempty)  # what is imitated
        if len(kept) == 0:  # nothing but empty completions so far: nothing to imitate
            return {"kept": 0.0, "skipped": 1.0, "loss/sft": 0.0, "kl": 0.0, "kl_per_token": 0.0}
        size = self.config.batch_prompts * self.config.k_samples
        serves = np.nanargmax(np.nan_to_num(labels[kept], nan=-1.0), axis=1)
        groups = [kept[serves == j] for j in range(len(self.objectives)) if (serves == j).any()]
        share = [size // len(groups) + (j < size % len(groups)) for j in range(len(groups))]
        chosen = np.concatenate(
            [
                self.rng.choice(g, size=n, replace=len(g) < n)
                for g, n in zip(groups, share, strict=True)
            ]
        )
        ids, mask, n_tok = self.supervised_batch(labels, chosen)
        model = self.policy.model
        model.eval()  # no dropout: the same policy is sampled and trained
        logp, _ = token_logprobs(model, ids, mask, n_tok)
        completion = mask[:, -n_tok:].to(logp.dtype)
        loss = -(logp * completion).sum() / completion.sum().clamp(min=1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for _, p in self.named_params]
        grad_norm = torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip)
        self.optimizer.step()
        metrics = {
            "kept": float(len(kept)),
            "loss/sft": float(loss.detach()),
            "grad_norm": float(grad_norm),
        }
        if not report_kl:
            return metrics
        with torch.no_grad(), model.disable_adapter():
            ref_logp, _ = token_logprobs(model, ids, mask, n_tok)
        kl_seq, kl_tok = kl_report(logp, ref_logp, completion)
        return {**metrics, "kl": kl_seq, "kl_per_token": kl_tok}

    def supervised_batch(self, labels: np.ndarray, chosen: np.ndarray):
        """(tags + prompt, left-padded) + (completion, right-padded): ids, mask (B, L) and the
        completion width, in the layout :func:`token_logprobs` reads."""
        policy = self.policy
        prompt_rows, completions = [], []
        for i in chosen:
            completion = self.pool_ids[i]
            tags = tag_text(self.objectives, labels[i], self.tags)
            ids, _ = policy.encode([self.prompts[self.pool_prompt[i]]], len(completion), tags)
            prompt_rows.append(ids[0].tolist())  # one row: no padding
            completions.append(completion)
        width, n_tok = max(map(len, prompt_rows)), max(map(len, completions))
        ids = torch.full((len(chosen), width + n_tok), policy.pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for r, (row, completion) in enumerate(zip(prompt_rows, completions, strict=True)):
            ids[r, width - len(row) : width] = torch.tensor(row)
            ids[r, width : width + len(completion)] = torch.tensor(completion)
            mask[r, width - len(row) : width + len(completion)] = 1
        return ids.to(policy.device), mask.to(policy.device), n_tok

    # --- checkpoint state (safetensors tensors + JSON) ---
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """:meth:`RLTrainer.state` plus the pool and the preference generator."""
        tensors, state = super().state()
        width = max([1, *map(len, self.pool_ids)])
        pool = torch.full((len(self.pool_ids), width), -1, dtype=torch.long)
        for r, completion in enumerate(self.pool_ids):
            pool[r, : len(completion)] = torch.tensor(completion, dtype=torch.long)
        tensors["pool/ids"] = pool
        tensors["pool/prompt"] = torch.tensor(self.pool_prompt, dtype=torch.long)
        tensors["pool/norm"] = torch.from_numpy(np.ascontiguousarray(self.pool_norm))
        tensors["pool/fluency"] = torch.from_numpy(np.ascontiguousarray(self.pool_fluency))
        preference_rng = self.preferences.bit_generator.state
        return tensors, {**state, "format": CHECKPOINT_FORMAT, "preference_rng": preference_rng}

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                "checkpoint: written by an older RiC (supervised phase, then RL steps) that this "
                "version cannot continue; start the run again in a new run folder"
            )
        super().load_state(tensors, state)
        self.preferences.bit_generator.state = state["preference_rng"]
        self.pool_ids = [[t for t in row if t >= 0] for row in tensors["pool/ids"].tolist()]
        self.pool_prompt = tensors["pool/prompt"].tolist()
        self.pool_norm = tensors["pool/norm"].numpy().astype(float)
        fluent = torch.ones(len(self.pool_ids), dtype=torch.float64)  # pools saved before it
        self.pool_fluency = tensors.get("pool/fluency", fluent).numpy().astype(float)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback = no_callback) -> None:
    policy = prefixed(open_policy(config))
    attach_seeded_lora(policy, config, ADAPTER, config.seed * 1000 + LORA_SEED)
    trainer = SupervisedRounds(policy, config)
    steerable = RewardsInContext(policy, config.objectives, trainer.tags)
    found = runfolder.load_latest_checkpoint(run_dir)
    if found is not None:
        trainer.load_state(found.tensors, found.state)
    batch = config.batch_prompts * config.k_samples
    while trainer.steps_done < config.steps:
        metrics = trainer.step()
        step = trainer.steps_done
        done = step == config.steps
        front = None
        if done or (config.eval_every and step % config.eval_every == 0):
            front = snapshot(steerable, config)
        stage = "ric online" if step > trainer.offline else "ric offline"
        # every sample drawn (the offline pool and the online batches) is training cost
        keep_going = callback(StepInfo(step, config.steps, step * batch, metrics, stage, front))
        if done or step % config.checkpoint_every == 0 or not keep_going:
            runfolder.save_checkpoint(Path(run_dir), step, *trainer.state())
        if not keep_going:
            return
    k = len(config.objectives)
    save_adapter_atomic(policy, adapter_dir(run_dir, ADAPTER), ADAPTER)
    write_artifact(
        run_dir,
        config,
        {ADAPTER: None},
        map="target_i = 1 if w_i >= 1/K else K * w_i (rounded to 0.1)",
        tags=trainer.tags,
        relabel="quantiles",
        example_prefix=prefix(config.objectives, np.full(k, 1 / k), trainer.tags),
        training={
            "offline_steps": trainer.offline,
            "online_steps": config.steps - trainer.offline,
            "samples": config.steps * batch,
            "supervised_steps": config.steps * trainer.updates,
            "quantile": MORS_QUANTILE,
        },
    )


def load(run_dir: Path, device: str = "auto") -> RewardsInContext:
    artifact = read_artifact(run_dir)
    policy, _ = load_adapters(run_dir, device, [ADAPTER])
    tags = artifact.get("tags", "all")  # runs saved before the relaxed tags wrote every objective
    return RewardsInContext(prefixed(policy), tuple(artifact["objectives"]), tags)
