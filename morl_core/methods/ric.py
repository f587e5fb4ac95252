"""C. RiC: Rewards-in-Context, one policy conditioned on target rewards written in the prompt.

Reference: Yang et al., "Rewards-in-Context: Multi-objective Alignment of Foundation Models with
Dynamic Preference Adjustment" (ICML 2024, arXiv 2402.10207).

**Conditioning.** The prompt x is prefixed with target-reward tags, then a newline. A tag is
written for every objective asked for *below its maximum*; an objective without a tag is asked
for at its maximum::

    <brevity=0.6>\\nThe hotel was          (sentiment at 1.0, brevity at 0.6)
    \\nThe hotel was                       (every objective at its maximum)

Targets are rounded to one decimal; no tokens are added (the tags are ordinary BPE pieces) and
the LoRA adapter learns to read them.

*Differs from the paper: only relaxed objectives are tagged.* With every objective written the
two ends (``<warm_word=1.0><cold_word=0.0>`` and its swap) are anagrams, which the small model
did not learn to tell apart; naming only the relaxed ones makes the ends differ in *which* name
is written. Artifacts without a ``tags`` field (older runs) are served with every tag written.

*Differs from the paper: tags in words (option ``tags="words"``), for chat models.* Base SmolLM2
does not tell the two ends' tags apart but does follow a request ("Make your reply very
formal." against "... very simple.": 5-6 standard errors apart on both objectives;
``benchmarks/ric_tag_wording.py``). So each target becomes a degree word before the objective's
registry adjective (0.9 and above "very", from 0.6 "fairly", from 0.3 "a little", below that
not asked), for inference and for the pool's labels alike; objectives without one are refused::

    Make your reply very formal and a little simple.\\nHow do I ...   (targets 1.0 and 0.4)

*Differs from the paper: tags rescale between the pool's 10th and 90th percentiles.* The ends of
the front ask for one objective at its best and another at 0.0. Rescaled from the pool's minimum
to its maximum (the paper's r_min and r_max), continuous rewards almost never give a sample those
tags: of SmolLM2's kept formality/readability pool, 0.2 % and 0.1 % carried the two ends' tags
(a pool minimum is an outlier, such as a reply of emoji), and the run never learned to read
them; from the 10th to the 90th percentile, clipped, 12 % and 8 % do (measured by
``benchmarks/ric_tag_reading.py``). On 0/1 rewards the two rules agree (the ends' tags are most
of the pool, and the known-answer tests read them).

**Preference-to-target map (the paper's, Section 3.3)**, rewards normalised to [0, 1]::

    target_i(w) = 1            if w_i >= 1/K
                = K * w_i      otherwise

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
from morl_core.objectives.degeneration import guarded_fluency
from morl_core.objectives.registry import OBJECTIVES, base_name
from morl_core.policy import Policy
from morl_core.prompts import load_prompts
from morl_core.rl.losses import kl_report, token_logprobs
from morl_core.rl.trainer import RLTrainer, reward_metrics, scalarized, score_rollout
from morl_core.weights import check_weights, dirichlet

ADAPTER = "ric"
TAG_STYLES = ("relaxed", "all", "words")  # "all": every objective tagged (older artifacts)
DEGREES = ((0.9, "very"), (0.6, "fairly"), (0.3, "a little"))  # words tags; below: not asked
MORS_QUANTILE = 0.7  # rejection sampling keeps samples above this pool quantile somewhere
# tags rescale each reward between these pool quantiles (see "Differs from the paper" above)
RELABEL_QUANTILES = (0.1, 0.9)
RELABEL_RULES = ("quantiles", "minmax")  # "minmax": artifacts without "relabel"
LORA_SEED = 500  # offset of the adapter's initialisation from seed * 1000
SFT_SEED = 700  # offset of the trainer's private generators from seed * 1000
CHECKPOINT_FORMAT = "ric-supervised-rounds"  # older checkpoints (RL steps) cannot be continued


def targets(weights: np.ndarray) -> np.ndarray:
    """RiC's preference-to-target map for rewards in [0, 1], rounded to one decimal (K,)."""
    w = np.asarray(weights, dtype=float)
    k = len(w)
    raw = np.where(w >= 1.0 / k - 1e-9, 1.0, k * w)
    return np.round(raw, 1)


def tag_name(objective: str) -> str:
    """The tag of an objective: its registry name (the last part of a dotted path)."""
    return objective.replace(":", ".").rsplit(".", 1)[-1]


def adjective(objective: str) -> str:
    """The registry adjective of an objective (``formal``); ValueError when it has none."""
    found = OBJECTIVES.get(base_name(objective) or "")
    if found is None or not found.adjective:
        raise ValueError(f"tags 'words': objective {objective!r} has no adjective; use 'relaxed'")
    return found.adjective


def tag_text(objectives, values, style: str = "relaxed") -> str:
    """The tags for target (or relabelled) rewards ``values`` (K,) in [0, 1], e.g.
    ``'<brevity=0.6>\\n'`` or, in words, ``'Make your reply very formal.\\n'``; ``style`` is
    one of :data:`TAG_STYLES`."""
    if style not in TAG_STYLES:
        raise ValueError(f"tags must be one of {', '.join(TAG_STYLES)}, got {style!r}")
    if style == "words":
        asked = [
            f"{next(word for low, word in DEGREES if v >= low - 1e-9)} {adjective(o)}"
            for o, v in zip(objectives, (round(float(v), 1) for v in values), strict=True)
            if v >= DEGREES[-1][0] - 1e-9
        ]
        if not asked:
            return ""
        listed = ", ".join(asked[:-1]) + " and " + asked[-1] if len(asked) > 1 else asked[0]
        return f"Make your reply {listed}.\n"
    tags = "".join(
        f"<{tag_name(o)}={v:.1f}>"
        for o, v in zip(objectives, values, strict=True)
        if style == "all" or round(float(v), 1) < 1.0
    )
    return tags + "\n"


def prefix(objectives, weights: np.ndarray, style: str = "relaxed") -> str:
    """The prompt prefix for preference ``weights``, e.g. ``'<brevity=0.6>\\n'``."""
    return tag_text(objectives, targets(weights), style)


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


def relabel(norm: np.ndarray, rule: str = "quantiles") -> np.ndarray:
    """Achieved normalised rewards (N, K) -> tag values (N, K), rounded to 0.1: each objective
    rescaled from the pool's ``RELABEL_QUANTILES`` (rule ``"quantiles"``; clipped, so the pool's
    bottom and top tenth get 0.0 and 1.0) or from its minimum to maximum (``"minmax"``, runs
    trained before the quantiles). Where the quantiles meet (a 0/1 reward that fewer than a
    tenth of the pool reaches), that objective falls back to its minimum and maximum; an
    objective the pool never varies on is at 1.0; a not-applicable score (NaN) gets the
    objective's pool mean."""
    if rule not in RELABEL_RULES:
        raise ValueError(f"relabel rule must be one of {', '.join(RELABEL_RULES)}, got {rule!r}")
    low, high = np.nanmin(norm, axis=0), np.nanmax(norm, axis=0)
    if rule == "quantiles":
        q_low, q_high = np.nanquantile(norm, RELABEL_QUANTILES, axis=0)
        apart = q_high - q_low > 1e-12
        low, high = np.where(apart, q_low, low), np.where(apart, q_high, high)
    span = high - low
    scaled = np.where(span > 1e-12, (norm - low) / np.where(span > 1e-12, span, 1.0), 1.0)
    scaled = np.clip(scaled, 0.0, 1.0)
    scaled = np.where(np.isnan(scaled), np.nanmean(scaled, axis=0), scaled)
    return np.round(np.nan_to_num(scaled, nan=1.0), 1)


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
