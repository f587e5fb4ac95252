"""C. RiC: Rewards-in-Context, one policy conditioned on target rewards written in the prompt.

Reference: Yang et al., "Rewards-in-Context: Multi-objective Alignment of Foundation Models with
Dynamic Preference Adjustment" (ICML 2024, arXiv 2402.10207).

**Conditioning.** The prompt x is prefixed with target-reward tags, then a newline. A tag is
written for every objective asked for *below its maximum*; an objective without a tag is asked
for at its maximum::

    <brevity=0.6>\\nThe hotel was          (sentiment at 1.0, brevity at 0.6)
    \\nThe hotel was                       (every objective at its maximum)

Targets are rounded to one decimal. The embedded byte-level BPE tokenizer has no merges for these
tags: ``<``, ``=``, ``>`` and each digit and the dot are single tokens and the objective name is
1-4 pieces. No tokens are added (the embedding matrix and LM head stay the base model's); the
LoRA adapter learns to read the tags.

*Why not one tag per objective, as in the paper.* Writing every objective
(``<warm_word=1.0><cold_word=0.0>`` for w = (1, 0), ``<warm_word=0.0><cold_word=1.0>`` for
w = (0, 1)) makes the two extreme prompts anagrams of each other: the same tokens, with the
digits swapped. A small model reads a prefix this far from the slot almost as a bag of tokens
(the embedded model's next-token distributions under the two prefixes differ by 3e-4 nats), so
it has to learn to bind each digit to the name before it, and in 40 steps of supervised or RL
training it did not: the two ends stayed identical to three decimals. Naming only the relaxed
objectives makes the ends differ in *which* name is written, and the same training reads them
(first-token warm rate 1.00 vs 0.00 after 16 supervised steps). With K = 2 one objective is
always at its maximum, so every preference is told apart by the name and its value; with K >= 3
two relaxed objectives with swapped values are still anagrams. Runs saved before this change
wrote every objective; their artifacts carry no ``tags`` field and are served with that format.

**Preference-to-target map (the paper's, Section 3.3).** Rewards are normalised to [0, 1] here, so
with r_min = 0 and r_max = 1, for K objectives::

    target_i(w) = 1            if w_i >= 1/K
                = K * w_i      otherwise

(the objectives the user weights at least evenly are asked for at their maximum; the others are
relaxed in proportion to their weight).

**Training.** Two phases, both on the run's training prompts:

1. *Offline: supervised fine-tuning on relabelled samples* (the paper's offline stage). The base
   model (adapter off, no tags) samples ``batch_prompts x k_samples`` completions for each of
   ``ceil(steps / 2)`` batches; each is scored, its normalised rewards are rescaled to the pool's
   range per objective (so 1.0 is the best the base model reached, as the paper's r_max) and
   written, rounded, as its prompt's tags. Multi-objective rejection sampling keeps the samples
   above the pool's 0.7-quantile on at least one objective (the paper's MORS): the kept set is
   the region near the front that inference asks for, and without the many samples that are
   poor on everything the loss is about *which* objective a sample serves, i.e. about the tags.
   The adapter then takes ``ceil(steps / 2)`` AdamW steps of token-level cross-entropy on
   (tags + prompt -> completion), minibatches of ``batch_prompts x k_samples`` kept samples.
2. *Online: RL with the tags in the prompt* (replaces the paper's online rejection-sampling
   rounds). ``steps`` RL steps over preferences sampled per batch (w ~ Dirichlet(1), the run's
   seed), with target(w) in the prompt and the w-scalarised reward:

    J(theta) = E_w E_{y ~ pi_theta(. | [target(w); x])} [ f_w(r(x, y)) ] - beta KL(pi_theta || pi_ref)

Inference uses the same map, so the served policy sees exactly the tags it was trained on. The
scorers see the plain prompt (the tags are added at tokenisation), so ``relevance`` is not
disturbed by them. One model, one pass per token.

The supervised phase is not reported as steps (the callback sees the ``steps`` RL steps); its
size is in the artifact (``sft``). A run resumed from any checkpoint skips it: the checkpointed
adapter already contains it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from morl_core import objectives as objective_registry
from morl_core import runfolder
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
from morl_core.prompts import load_prompt_columns, load_prompts
from morl_core.rl.losses import token_logprobs
from morl_core.weights import check_weights

ADAPTER = "ric"
# Tag formats: "relaxed" names only the objectives asked for below their maximum (this
# version); "all" names every objective (runs saved before it, whose artifact has no "tags").
TAG_STYLES = ("relaxed", "all")
MORS_QUANTILE = 0.7  # rejection sampling keeps samples above this pool quantile somewhere
SFT_SEED = 700  # offset of the supervised phase's private generators from seed * 1000


def targets(weights: np.ndarray) -> np.ndarray:
    """RiC's preference-to-target map for rewards in [0, 1], rounded to one decimal (K,)."""
    w = np.asarray(weights, dtype=float)
    k = len(w)
    raw = np.where(w >= 1.0 / k - 1e-9, 1.0, k * w)
    return np.round(raw, 1)


def tag_name(objective: str) -> str:
    """The tag of an objective: its registry name (the last part of a dotted path)."""
    return objective.replace(":", ".").rsplit(".", 1)[-1]


def tag_text(objectives, values, style: str = "relaxed") -> str:
    """The tags for target ``values`` (K,), e.g. ``'<brevity=0.6>\\n'``.

    Args:
        objectives: the run's objectives, in order.
        values: one target (or achieved, relabelled) reward in [0, 1] per objective.
        style: ``"relaxed"`` writes only the objectives below 1.0 (see the module docstring);
            ``"all"`` writes every objective (the format of runs saved before it).
    """
    if style not in TAG_STYLES:
        raise ValueError(f"tags must be one of {', '.join(TAG_STYLES)}, got {style!r}")
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


# --- the offline phase: supervised fine-tuning on samples labelled with their rewards ---------


def relabel(norm: np.ndarray) -> np.ndarray:
    """Achieved normalised rewards (N, K) -> tag values (N, K): each objective rescaled to the
    pool's range and rounded to 0.1 (an objective the pool never varies on is at 1.0; a
    not-applicable score, NaN, gets the objective's pool mean)."""
    low, high = np.nanmin(norm, axis=0), np.nanmax(norm, axis=0)
    span = high - low
    scaled = np.where(span > 1e-12, (norm - low) / np.where(span > 1e-12, span, 1.0), 1.0)
    scaled = np.where(np.isnan(scaled), np.nanmean(scaled, axis=0), scaled)
    return np.round(np.nan_to_num(scaled, nan=1.0), 1)


def rejection_keep(norm: np.ndarray, quantile: float = MORS_QUANTILE) -> np.ndarray:
    """Multi-objective rejection sampling: samples (N,) above the pool's ``quantile`` on at
    least one objective; every sample when none is (a pool without spread)."""
    filled = np.nan_to_num(norm, nan=-np.inf)
    keep = (filled > np.nanquantile(norm, quantile, axis=0)).any(axis=1)
    return keep if keep.any() else np.ones(len(norm), dtype=bool)


def sft_steps(config: RunConfig) -> int:
    """Batches sampled for, and AdamW steps of, the supervised phase."""
    return max(1, config.steps)


def supervised_phase(policy: PrefixedPolicy, config: RunConfig) -> dict[str, int]:
    """Fine-tune the active adapter on base-model samples tagged with the rewards they got.

    Returns the phase's size (pool samples, kept samples, steps) for the artifact.
    """
    objectives = tuple(config.objectives)
    prompts = load_prompts(config.prompt_set, "train")
    columns = load_prompt_columns(config.prompt_set, "train")
    steps = sft_steps(config)
    rng = np.random.default_rng(config.seed * 1000 + SFT_SEED)
    generator = torch.Generator(device=policy.device)
    generator.manual_seed(config.seed * 1000 + SFT_SEED)
    policy.prefix = ""
    samples: list[tuple[str, list[int]]] = []  # (prompt, completion ids incl. its EOS)
    raw_rows = []
    for _ in range(steps):
        replace = len(prompts) < config.batch_prompts
        batch = list(rng.choice(prompts, size=config.batch_prompts, replace=replace))
        with policy.model.disable_adapter():
            rollout = policy.rollout(
                batch,
                n=config.k_samples,
                max_new_tokens=config.max_new_tokens,
                temperature=config.temperature,
                top_p=config.top_p,
                generator=generator,
            )
        texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
        ids = [
            row[: int(m.sum())]
            for row, m in zip(rollout.completion_ids.tolist(), rollout.completion_mask, strict=True)
        ]
        repeated = [p for p in batch for _ in range(config.k_samples)]
        raw_rows.append(
            objective_registry.score(
                objectives,
                repeated,
                texts,
                completion_ids=ids,
                prompt_columns=columns,
                trainer_state=objective_registry.TrainerState(0, config.steps),
            )
        )
        samples.extend(zip(repeated, ids, strict=True))
    norm = objective_registry.RewardNormalizer(config.normalization, objectives)(
        np.concatenate(raw_rows)
    )
    labels = relabel(norm)
    kept = np.flatnonzero(rejection_keep(norm) & np.array([len(c) > 0 for _, c in samples]))
    if len(kept) == 0:
        return {"pool": len(samples), "kept": 0, "steps": 0}

    params = [p for p in policy.model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=0.0)
    model = policy.model
    model.eval()  # no dropout, as in the RL step
    size = config.batch_prompts * config.k_samples
    # Balanced minibatches: each objective's kept samples (those it ranks highest) fill an equal
    # share, so no objective's samples dominate the loss and the tags must tell them apart.
    serves = np.nanargmax(np.nan_to_num(labels[kept], nan=-1.0), axis=1)
    groups = [kept[serves == j] for j in range(len(objectives)) if (serves == j).any()]
    for _ in range(steps):
        share = [size // len(groups) + (j < size % len(groups)) for j in range(len(groups))]
        chosen = np.concatenate(
            [rng.choice(g, size=n, replace=len(g) < n) for g, n in zip(groups, share, strict=True)]
        )
        ids, mask, n_tok = supervised_batch(policy, objectives, samples, labels, chosen)
        logp, _ = token_logprobs(model, ids, mask, n_tok)
        completion = mask[:, -n_tok:].to(logp.dtype)
        loss = -(logp * completion).sum() / completion.sum().clamp(min=1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, config.grad_clip)
        optimizer.step()
    return {"pool": len(samples), "kept": len(kept), "steps": steps}


def supervised_batch(policy, objectives, samples, labels, chosen):
    """(tags + prompt, left-padded) + (completion, right-padded): ids, mask (B, L) and the
    completion width, in the layout :func:`token_logprobs` reads."""
    prompt_rows, completions = [], []
    for i in chosen:
        prompt, completion = samples[i]
        ids, _ = policy.encode([prompt], len(completion), prefix=tag_text(objectives, labels[i]))
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


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    policy = prefixed(open_policy(config))
    with torch.random.fork_rng(devices=[]):  # LoRA A is drawn from torch's global RNG
        torch.manual_seed(config.seed * 1000 + 500)
        attach_lora(policy, r=config.lora_r, alpha=config.lora_alpha, adapter_name=ADAPTER)
    steerable = RewardsInContext(policy, config.objectives)
    sft = {"pool": sft_steps(config) * config.batch_prompts * config.k_samples}
    if runfolder.load_latest_checkpoint(run_dir) is None:
        # a resumed run's checkpoint holds the adapter after this phase (and after RL steps)
        sft = supervised_phase(policy, config)

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
            tags="relaxed",
            example_prefix=prefix(config.objectives, np.full(k, 1 / k)),
            sft={"pool": sft["pool"], "steps": sft_steps(config), "quantile": MORS_QUANTILE},
        )


def load(run_dir: Path, device: str = "auto") -> RewardsInContext:
    artifact = read_artifact(run_dir)
    policy, _ = load_adapters(run_dir, device, [ADAPTER])
    tags = artifact.get("tags", "all")  # runs saved before the relaxed tags wrote every objective
    return RewardsInContext(prefixed(policy), tuple(artifact["objectives"]), tags)
