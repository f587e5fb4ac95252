"""One RL trainer: a LoRA adapter trained by REINFORCE (RLOO / kSCST) on scalarised rewards.

Every method reuses it: MORLHF trains one per preference, soups/MOD/EMORL one per objective,
DynaOpt one whose weights a bandit moves. A step is::

    prompts --rollout (k samples each, one prompt pass per group, KV cache)--> completions
            --objectives.score--> raw rewards (B, K) --normalise--> (B, K) in [0, 1]
            --scalarize(weights)--> (B,) --minus beta * KL(pi || base) per sequence (detached)
            --group baseline--> advantages (B,) --REINFORCE--> AdamW step on the adapter only

The maximised objective is E[f_w(r)] - beta * KL(pi || pi_ref), KL summed over a completion's
tokens; see :mod:`morl_core.rl.losses` for why the KL enters through the reward.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from morl_core import objectives as objective_registry
from morl_core.config import RunConfig
from morl_core.objectives.degeneration import guarded_fluency
from morl_core.objectives.normalize import RewardNormalizer  # noqa: F401 -- imported from here too
from morl_core.policy.model import is_transformers_model
from morl_core.prompts import load_prompt_columns
from morl_core.rl.losses import (
    group_advantages,
    kl_report,
    kl_shaped_rewards,
    policy_loss,
    token_logprobs,
)
from morl_core.scalarize import scalarize_available

TCHEBYCHEFF_UTOPIA = 1.0  # normalised rewards live in [0, 1], so 1 is the ideal point


def scalarized(norm: np.ndarray, weights, kind: str, group_size: int | None) -> np.ndarray:
    """Scalar rewards (B,) of normalised rewards (B, K) as training computes them (the utopia of
    ``tchebycheff`` at :data:`TCHEBYCHEFF_UTOPIA`; NaN = not applicable)."""
    kw = {"utopia": np.full(norm.shape[1], TCHEBYCHEFF_UTOPIA)} if kind == "tchebycheff" else {}
    return scalarize_available(norm, weights, kind, group_size=group_size, **kw)


def reward_metrics(objectives, raw: np.ndarray, norm: np.ndarray, normalizer) -> dict[str, float]:
    """Each objective's mean raw and normalised reward over applicable samples, and the
    normaliser's ranges (``range_low/NAME``, ``range_high/NAME``)."""
    raw_means = objective_registry.mean_applicable_columns(raw)  # (K,)
    norm_means = objective_registry.mean_applicable_columns(norm)  # (K,)
    metrics = {}
    for name, raw_mean, norm_mean in zip(objectives, raw_means, norm_means, strict=True):
        metrics[f"reward/{name}"] = float(raw_mean)
        metrics[f"reward_norm/{name}"] = float(norm_mean)
    return {**metrics, **normalizer.metrics()}


def score_rollout(policy, rollout, prompts, k: int, objectives, columns, state):
    """Decode a rollout of ``prompts`` (``k`` samples each, prompt-major) and score it: texts,
    completion ids (as TRL passes them) and raw rewards (B, K), NaN = not applicable."""
    texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
    rows = zip(rollout.completion_ids.tolist(), rollout.completion_mask, strict=True)
    ids = [row[: int(m.sum())] for row, m in rows]
    repeated = [p for p in prompts for _ in range(k)]
    raw = objective_registry.score(
        objectives, repeated, texts, completion_ids=ids, prompt_columns=columns, trainer_state=state
    )
    return texts, ids, raw


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams in ``texts`` (whitespace tokens); 0 when there are none."""
    grams = [
        tuple(t.split()[i : i + n]) for t in texts for i in range(max(0, len(t.split()) - n + 1))
    ]
    return len(set(grams)) / len(grams) if grams else 0.0


class RLTrainer:
    """Trains the policy's *active* adapter. The base model (adapters off) is the KL reference."""

    def __init__(self, policy, config: RunConfig, prompts: Sequence[str], seed: int):
        self.policy = policy
        self.config = config
        self.prompts = list(prompts)
        self.objectives = tuple(config.objectives)
        self.named_params = [(n, p) for n, p in policy.model.named_parameters() if p.requires_grad]
        if not self.named_params:
            raise ValueError("the policy has no trainable parameters: attach a LoRA adapter first")
        self.optimizer = torch.optim.AdamW(
            [p for _, p in self.named_params], lr=config.lr, weight_decay=0.0
        )
        self.generator = torch.Generator(device=policy.device)
        self.generator.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        # imported objectives get their range mapped to [0, 1] (given, declared or learned)
        self.normalizer = objective_registry.RewardNormalizer(config.normalization, self.objectives)
        # the prompt set's extra JSONL fields, passed to imported reward functions as TRL does
        self.prompt_columns = load_prompt_columns(config.prompt_set, "train")
        self.steps_done = 0

    # --- one step ---
    def rollout(self, batch: Sequence[str]):
        """``k_samples`` completions per prompt, decoded with the run's sampling settings."""
        cfg = self.config
        return self.policy.rollout(
            list(batch),
            n=cfg.k_samples,
            max_new_tokens=cfg.max_new_tokens,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            generator=self.generator,
        )

    def step(self, weights: Sequence[float]) -> tuple[dict[str, float], np.ndarray]:
        """One update with preference ``weights`` (K,). Returns metrics and raw rewards (B, K)."""
        cfg, policy = self.config, self.policy
        weights = np.asarray(weights, dtype=float)
        t0 = time.perf_counter()
        replace = len(self.prompts) < cfg.batch_prompts
        batch = list(self.rng.choice(self.prompts, size=cfg.batch_prompts, replace=replace))
        rollout = self.rollout(batch)
        t1 = time.perf_counter()

        # --- rewards ---
        state = objective_registry.TrainerState(self.steps_done, cfg.steps)
        texts, _, raw = score_rollout(
            policy, rollout, batch, cfg.k_samples, self.objectives, self.prompt_columns, state
        )  # raw (B, K)
        norm = self.normalizer(raw)  # (B, K)
        scalar = scalarized(norm, weights, cfg.scalarization, cfg.k_samples)  # (B,)
        fluency = guarded_fluency(texts, cfg.fluency_guard)  # (B,) 1 = fluent
        trained_on = scalar - cfg.fluency_penalty * (1.0 - fluency)  # (B,) the RL reward
        t2 = time.perf_counter()

        # --- update: REINFORCE on the KL-shaped reward, group baseline (RLOO / kSCST) ---
        model = policy.model
        model.eval()  # no dropout: the sampled and the scored policy must be the same
        mask = rollout.completion_mask
        n_tok = mask.shape[1]
        metrics_extra: dict[str, float] = {}
        kl_seq = kl_tok = 0.0
        if n_tok == 0:
            metrics_extra["skipped"] = 1.0
            pg = torch.tensor(0.0)
            entropy = torch.tensor(0.0)
        else:
            # the k completions of a prompt share it: the prompt runs once per group (on a
            # transformers / peft model; a method's own module, e.g. a fusion, runs every row)
            k = cfg.k_samples if is_transformers_model(model) else 1
            ids, attention = rollout.input_ids, rollout.attention_mask
            logp, ent = token_logprobs(model, ids, attention, n_tok, group_size=k)
            with torch.no_grad(), model.disable_adapter():
                ref_logp, _ = token_logprobs(model, ids, attention, n_tok, group_size=k)
            shaped = kl_shaped_rewards(
                torch.as_tensor(trained_on, dtype=torch.float32, device=logp.device),
                logp,
                ref_logp,
                mask,
                cfg.kl_coef,
            )  # (B,)
            advantages = group_advantages(shaped, cfg.k_samples, cfg.advantage)
            pg = policy_loss(logp, advantages, mask)
            self.optimizer.zero_grad(set_to_none=True)
            pg.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                [p for _, p in self.named_params], cfg.grad_clip
            )
            self.optimizer.step()
            metrics_extra["grad_norm"] = float(grad_norm)
            kl_seq, kl_tok = kl_report(logp, ref_logp, mask)
            entropy = (ent * mask).sum() / mask.sum().clamp(min=1)
        t3 = time.perf_counter()
        self.steps_done += 1

        return {
            **reward_metrics(self.objectives, raw, norm, self.normalizer),
            "reward/scalarized": float(scalar.mean()),
            "loss/policy": float(pg.detach()),
            "kl": kl_seq,  # KL(pi || ref) per completion (summed over its tokens)
            "kl_per_token": kl_tok,
            "entropy": float(entropy),
            "length": float(mask.sum(-1).float().mean()) if n_tok else 0.0,
            "distinct2": distinct_n(texts, 2),
            "fluency": float(fluency.mean()),  # the degeneration guard, beside every score
            "time/generate": t1 - t0,
            "time/score": t2 - t1,
            "time/update": t3 - t2,
            **metrics_extra,
            **{f"weight/{o}": float(w) for o, w in zip(self.objectives, weights, strict=True)},
        }, raw

    # --- checkpoint state (safetensors tensors + JSON) ---
    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue exactly: adapter, AdamW moments (step counts by
        parameter index), RNG states."""
        tensors = {f"param/{n}": p.detach().cpu().contiguous() for n, p in self.named_params}
        steps = {}
        for i, (_, p) in enumerate(self.named_params):
            if st := self.optimizer.state.get(p):
                for key in ("exp_avg", "exp_avg_sq"):
                    tensors[f"adam/{i}/{key}"] = st[key].detach().cpu().contiguous()
                steps[str(i)] = float(st["step"])
        tensors["rng/torch"] = self.generator.get_state().cpu()
        state = {
            "adam_steps": steps,
            "numpy_rng": self.rng.bit_generator.state,
            "normalizer": self.normalizer.state(),
            "steps_done": self.steps_done,
        }
        return tensors, state

    def load_state(self, tensors: dict[str, torch.Tensor], state: dict[str, Any]) -> None:
        with torch.no_grad():
            for n, p in self.named_params:
                p.copy_(tensors[f"param/{n}"].to(p.device, p.dtype))
        for i, (_, p) in enumerate(self.named_params):
            if str(i) in state["adam_steps"]:
                self.optimizer.state[p] = {
                    "step": torch.tensor(state["adam_steps"][str(i)]),
                    "exp_avg": tensors[f"adam/{i}/exp_avg"].to(p.device),
                    "exp_avg_sq": tensors[f"adam/{i}/exp_avg_sq"].to(p.device),
                }
        self.generator.set_state(tensors["rng/torch"].to(torch.uint8))
        self.rng.bit_generator.state = state["numpy_rng"]
        self.normalizer.load(state["normalizer"])
        self.steps_done = int(state["steps_done"])
