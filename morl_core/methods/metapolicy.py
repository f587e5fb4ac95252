"""E. Bi-level meta-policy: a small network learns how to mix frozen per-objective experts.

References: Kong et al., "Multi-Objective Reinforcement Learning for Large Language Model
Optimization: Visionary Perspective" (arXiv 2509.21613), the bi-level meta-policy it proposes;
its prototype, EMORL's hidden-state fusion (arXiv 2505.02579); Chen et al., "Meta-Learning for
Multi-objective Reinforcement Learning" (arXiv 1811.03376).

**Lower level.** K LoRA experts, expert i trained by RL on objective i alone (shared with soups,
MOD and EMORL; ``experts_from`` reuses another run's), then frozen.

**Upper level.** At every token t a network g_phi reads the experts' last hidden states
h_{t,1..K} (after the final layer norm) and the preference w, and mixes them before the shared
LM head::

    c_t = LN(mean_i h_{t,i})                                   context: what has been written
    s_{t,i} = <W_q [c_t; w], W_k LN(h_{t,i}) + e_i> / sqrt(d)  attention of (context, w) on experts
    g_{t,i} = B tanh((s_{t,i} - mean_j s_{t,j}) / B)           bounded learned adjustment
    alpha_t = softmax_i( log(w_i + eps) + g_{t,i} )            mixing weights on the simplex
    pi_phi(y_t | x, y_<t, w) = softmax( lm_head( sum_i alpha_{t,i} h_{t,i} ) )

Only phi = (W_q, W_k, e, LN) trains (about 2 d D parameters), by REINFORCE with the group
baseline of the shared trainer on the preference-scalarised reward, one preference per batch:

    max_phi  E_{w ~ Dir(c)} E_{y ~ pi_phi(.|x, w)} [ f_w(r(x, y)) ] - beta_KL KL(pi_phi || pi_0)

where pi_0 is the same experts mixed by the prior alone (g = 0, alpha = softmax(log(w + eps))):
the KL term is a trust region on what the upper level changes. (KL to the base model instead
would pull alpha towards whichever expert moved least from the base, whatever w asks.) The
concentration c (``preference_concentration``, default 1: uniform on the simplex) below 1 draws
more training preferences near the corners, where the front's ends are: with three objectives
Dir(1) puts few near a vertex, and the network, linear in w, is left to extrapolate there.

**Design choices and what they trade.**

* *Hidden-state fusion*: one LM head and a convex combination keep the text in the base model's
  language (EMORL's finding), at K passes per token plus a negligible network.
* *The prior* log(w + eps) *plus a bounded adjustment* g in [-B, B]: W_q starts at zero, so the
  meta-policy starts as EMORL with a = w and can move each expert's log-weight by at most B
  (``score_bound``). Without the bound the network learned under RL to ignore w (one expert for
  every preference); the bound trades flexibility for stability and explainability.
* *Per-token weights* can hand, e.g., the end of a sentence to a brevity expert; alpha is then a
  trajectory, reported as its mean per preference.
* *Convex mixing* keeps alpha readable as per-objective contributions but, unlike EMORL's
  unnormalised a, cannot sharpen or flatten the distribution.
* *Frozen experts*: cheap and reusable; the front is bounded by what their mixtures reach.

The artifact records the mean mixing weights per evaluated preference (``mixing``) and the
upper level's cost (``cost``); ``benchmarks/meta_quality.py`` compares it against MORLHF.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.methods.base import StepInfo, TrainCallback
from morl_core.methods.common import (
    Stage,
    adapter_dir,
    load_adapters,
    open_policy,
    read_artifact,
    snapshot,
    train_stages,
    write_artifact,
)
from morl_core.methods.experts import expert_names, train_experts
from morl_core.methods.hidden import HiddenFusion, fused_policy
from morl_core.runfolder import read_safetensors, write_safetensors_atomic
from morl_core.weights import check_weights

FILE = "meta.safetensors"


class MetaMixer(nn.Module):
    """The upper level g_phi: attention of (context, preference) over the experts' states."""

    def __init__(
        self,
        dim: int,
        k: int,
        hidden: int = 64,
        prior_eps: float = 0.01,
        score_bound: float = 1.0,
        seed: int = 0,
    ):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)  # never the global RNG
        self.settings = dict(
            dim=dim, k=k, hidden=hidden, prior_eps=prior_eps, score_bound=score_bound, seed=seed
        )
        self.norm = nn.LayerNorm(dim)
        self.query = nn.Linear(dim + k, hidden)  # zero: at start alpha is the prior alone
        # no bias: a key bias adds the same score to every expert, which the centring below
        # removes, so it could never learn
        self.key = nn.Linear(dim, hidden, bias=False)
        self.expert_embedding = nn.Parameter(0.02 * torch.randn(k, hidden, generator=generator))
        with torch.no_grad():
            self.query.weight.zero_()
            self.query.bias.zero_()
            self.key.weight.copy_(torch.randn(hidden, dim, generator=generator) / math.sqrt(dim))
        self.register_buffer("preference", torch.full((k,), 1.0 / k), persistent=False)
        self.record: list[torch.Tensor] | None = None  # mixing weights of each decoding step
        self.adjust = True  # False: alpha is the prior alone (the KL reference pi_0)

    def set_preference(self, weights) -> None:
        self.preference.copy_(torch.as_tensor(np.asarray(weights, dtype=np.float32)))

    def mixing(self, hidden: torch.Tensor) -> torch.Tensor:
        """Mixing weights alpha (B, T, K) from expert states (B, T, K, D)."""
        hidden = hidden.to(self.key.weight.dtype)
        normed = self.norm(hidden)  # (B, T, K, D)
        context = self.norm(hidden.mean(-2))  # (B, T, D)
        w = self.preference.expand(*context.shape[:-1], -1)  # (B, T, K)
        query = self.query(torch.cat([context, w], dim=-1))  # (B, T, d)
        keys = self.key(normed) + self.expert_embedding  # (B, T, K, d)
        scores = (keys @ query[..., None]).squeeze(-1) / math.sqrt(query.shape[-1])  # (B, T, K)
        prior = torch.log(w + self.settings["prior_eps"])  # (B, T, K)
        if not self.adjust:
            return torch.softmax(prior, dim=-1)
        bound = self.settings["score_bound"]
        # softmax ignores a shift shared by all experts, but tanh does not: uncentred, the
        # part of the scores that every expert's key shares saturates every tanh at the
        # same bound, where the adjustment and its gradient vanish (training did nothing)
        scores = scores - scores.mean(-1, keepdim=True)
        adjustment = bound * torch.tanh(scores / bound)  # (B, T, K) in [-bound, bound]
        return torch.softmax(prior + adjustment, dim=-1)

    @contextlib.contextmanager
    def reference(self):
        """Mix by the prior alone: the reference policy pi_0 of the KL term."""
        self.adjust = False
        try:
            yield
        finally:
            self.adjust = True

    def forward(self, hidden: torch.Tensor, experts: list[int]) -> torch.Tensor:
        alpha = self.mixing(hidden)  # (B, T, K)
        if self.record is not None:  # the last position predicts the next token
            self.record.append(alpha[:, -1].detach().mean(0).cpu())
        return (alpha[..., None] * hidden.to(alpha.dtype)).sum(-2).to(hidden.dtype)  # (B, T, D)

    def save(self, folder: Path) -> Path:
        metadata = {"settings": json.dumps(self.settings)}
        return write_safetensors_atomic(
            Path(folder) / FILE, dict(self.named_parameters()), metadata
        )

    @classmethod
    def from_folder(cls, folder: Path) -> MetaMixer:
        if not (Path(folder) / FILE).is_file():
            raise ValueError(
                f"no trained meta-policy at {Path(folder) / FILE}; train method 'metapolicy' "
                "(option experts_from reuses this run's experts)"
            )
        tensors, metadata = read_safetensors(Path(folder) / FILE)
        mixer = cls(**json.loads(metadata["settings"]))
        mixer.load_state_dict(tensors, strict=False)  # the preference buffer is not saved
        return mixer.requires_grad_(False)


class MetaPolicy:
    """Steerable: the frozen experts mixed per token by the trained upper-level network."""

    def __init__(self, policy, objectives: tuple[str, ...], experts: list[str], mixer: MetaMixer):
        self.mixer = mixer.to(policy.device)
        self.policy = fused_policy(policy, HiddenFusion(policy.model, experts, self.mixer))
        self.objectives = tuple(objectives)
        self.models_kept = len(experts) + 1  # K experts (adapters) + the meta-network
        self.passes_per_token = len(experts)
        self.mixing_log: dict[tuple[float, ...], list[float]] = {}

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        w = check_weights(weights, k=len(self.objectives))
        self.mixer.set_preference(w)
        self.mixer.record = []
        try:
            texts = self.policy.generate(list(prompts), **gen)
            alpha = torch.stack(self.mixer.record).mean(0)  # (K,) mean over decoding steps
            self.mixing_log[tuple(np.round(w, 6))] = alpha.tolist()
        finally:
            self.mixer.record = None
        return texts


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    spec = METHODS["metapolicy"]
    option = lambda name: spec.option(config.options, name)  # noqa: E731
    policy = open_policy(config)
    names = expert_names(config.objectives)
    meta_steps = option("meta_steps") or config.steps

    def expert_callback(info: StepInfo) -> bool:  # the run's total includes the upper level
        return callback(dataclasses.replace(info, total_steps=info.total_steps + meta_steps))

    if not train_experts(
        config, run_dir, expert_callback, policy, lambda i, done: None, option("experts_from")
    ):
        return
    for name in names:  # make sure every expert is loaded (a resumed run loads them here)
        if name not in policy.model.peft_config:
            raise ValueError(f"expert {name} is missing after training")
    policy.model.requires_grad_(False)  # the lower level is frozen: only the mixer trains
    dim = policy.model.get_output_embeddings().in_features
    mixer = MetaMixer(
        dim,
        len(names),
        option("meta_hidden"),
        option("prior_eps"),
        option("score_bound"),
        config.seed,
    )
    steerable = MetaPolicy(policy, config.objectives, names, mixer)
    stage = Stage(
        "meta-policy",
        meta_steps,
        condition=mixer.set_preference,
        adapter=False,
        lr=option("meta_lr") or None,
        concentration=option("preference_concentration"),
    )
    front_fn = lambda index, done: snapshot(steerable, config)  # noqa: E731
    if not train_stages(
        config, run_dir, callback, steerable.policy, [stage], front_fn, stages_before=len(names)
    ):
        return
    mixer.save(adapter_dir(run_dir, "metapolicy"))
    if not steerable.mixing_log:  # resumed after the last step: measure the mixing once
        snapshot(steerable, config)
    n_params = sum(p.numel() for p in mixer.parameters())
    write_artifact(
        run_dir,
        config,
        {n: None for n in names},
        experts=names,
        mixing=[{"preference": list(w), "mean_alpha": a} for w, a in steerable.mixing_log.items()],
        cost=dict(meta_parameters=n_params, passes_per_token=len(names), meta_steps=meta_steps),
    )


def load(run_dir: Path, device: str = "auto") -> MetaPolicy:
    artifact = read_artifact(run_dir)
    names = expert_names(artifact["objectives"])
    policy, _ = load_adapters(run_dir, device, names)
    mixer = MetaMixer.from_folder(adapter_dir(run_dir, "metapolicy"))
    return MetaPolicy(policy, tuple(artifact["objectives"]), names, mixer)
