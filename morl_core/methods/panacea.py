"""C. Panacea: the preference vector embedded as singular values of an SVD-LoRA.

Reference: Zhong et al., "Panacea: Pareto Alignment via Preference Adaptation for LLMs"
(NeurIPS 2024, arXiv 2402.02030).

Every adapted weight matrix W_0 (out x in) of the transformer blocks becomes

    W(w) = W_0 + (alpha / r) * U diag(sigma_1..sigma_r, lambda_l w_1, ..., lambda_l w_K) V^T

with U (out x (r+K)), V (in x (r+K)) and sigma (r) learned, the last K singular values the user's
preference w scaled by one learned factor lambda_l per layer. One model serves the whole front:
changing w changes K singular values of every layer and nothing else. Training samples one
preference per batch (w ~ Dirichlet(1), the run's seed) and maximises

    J(theta) = E_w E_{y ~ pi_{theta, w}} [ f_w(r(x, y)) ] - beta KL(pi_{theta, w} || pi_ref)

with the shared RL trainer (RLOO/kSCST; f_w the configured scalarisation; the paper's "loss
aggregation" is our scalarisation).

Implementation notes and differences from the paper:

* :class:`PanaceaLayer` adds ``(alpha/r) * ((x V) * d) U^T`` to the base layer's output and never
  touches its weight, so ``Linear`` and GPT-2's transposed ``Conv1D`` work alike
  (:func:`layer_sizes`).
* *Differs from the paper's code in the start.* U starts at zero, V with unit-norm random rows,
  sigma and lambda at 1: the update is 0 (the base model), as in the paper, but every U column
  learns from the first step, as a LoRA's B does, the preference columns in proportion to
  lambda * w_k. The paper's code starts sigma and lambda at 0 instead, which leaves U and V
  without a gradient until those scalars move; under RL's noisy gradients they hardly did. On the
  known-answer problem (lr 3e-4, 60 steps, seeds 0-2) the zero start steered by 0.19-0.21 in the
  warm rate between the ends, 0.34-0.45 nats from the exact optimum at w = (1, 0); this start by
  0.82-0.84, 0.02-0.04 nats from it (``tests/test_known_answers.py``). On SmolLM2 the zero start
  left lambda at 0.03 after 100 steps and the model did not steer (``docs/findings.md``).
* *Training preferences* are Dirichlet(1), uniform on the simplex as in the paper, unless option
  ``preference_concentration`` says otherwise. A preference column u_k learns in proportion to
  lambda w_k times the gradient of the scalarised reward w . r, so with two objectives it sees
  its own objective's gradient weighted E[w_k^2] and the other's E[w_1 w_2]: 1/3 and 1/6 under
  Dirichlet(1), 0.43 and 0.07 under Dirichlet(0.2), while the shared sigma columns learn the
  sum. What tells the ends apart is the difference, 1 / (2 (2a + 1)) at concentration a: 1.9
  times as large at a = 0.3 as at 1. On the known-answer problem after 20 steps (lr 3e-4, seeds
  0-2) the ends' warm rates were 0.12-0.27 apart at 1 and 0.26-0.38 at 0.3, the middle 0.06-0.14
  nats from pi*_w against 0.08-0.21 (``tests/test_known_answers.py``).
* Singular values are stored divided by ``SV_GAIN`` so Adam moves them about as fast as a
  standard LoRA moves its weights. No AdaLoRA orthogonality regulariser.
* Saved as ``adapters/panacea/adapter_model.safetensors`` (config in its metadata; names as in
  the paper's code: ``lora_A`` = V^T, ``lora_B`` = U, ``lora_diag`` = sigma, ``pref_scaling`` =
  lambda); nothing is pickled.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.methods.base import TrainCallback
from morl_core.methods.common import (
    Stage,
    adapter_dir,
    open_policy,
    read_artifact,
    snapshot,
    train_stages,
    write_artifact,
)
from morl_core.policy import Policy, load_policy
from morl_core.runfolder import read_safetensors, write_safetensors_atomic
from morl_core.weights import check_weights

FILE = "adapter_model.safetensors"  # Panacea's own layout (no adapter_config.json: not peft)
SV_GAIN = 10.0
ADAPTER_PARAMS = ("lora_A", "lora_B", "lora_diag", "pref_scaling")


def layer_sizes(layer: nn.Module) -> tuple[int, int]:
    """(in, out) of a ``Linear`` or a transformers ``Conv1D`` (weight stored as in x out)."""
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    if type(layer).__name__ == "Conv1D":
        return layer.weight.shape[0], layer.weight.shape[1]
    raise ValueError(f"Panacea adapts Linear or Conv1D layers, not {type(layer).__name__}")


class PanaceaLayer(nn.Module):
    """A base projection plus the SVD-LoRA update whose last K singular values are lambda * w."""

    def __init__(self, base: nn.Module, r: int, k: int, alpha: float, generator: torch.Generator):
        super().__init__()
        self.base = base
        n_in, n_out = layer_sizes(base)
        self.scaling = alpha / r
        # LoRA names, as in the paper's code: lora_B = U, lora_A = V^T, lora_diag = sigma
        a = torch.randn(r + k, n_in, generator=generator)
        self.lora_B = nn.Parameter(torch.zeros(n_out, r + k))  # (out, r+K): the update starts at 0
        self.lora_A = nn.Parameter(a / a.norm(dim=1, keepdim=True))  # (r+K, in) unit rows
        self.lora_diag = nn.Parameter(torch.full((r,), 1.0 / SV_GAIN))  # singular values / SV_GAIN
        self.pref_scaling = nn.Parameter(torch.full((1,), 1.0 / SV_GAIN))  # lambda_l / SV_GAIN
        self.register_buffer("preference", torch.full((k,), 1.0 / k), persistent=False)
        self.enabled = True

    def singular_values(self) -> torch.Tensor:  # (r + K,)
        return SV_GAIN * torch.cat([self.lora_diag, self.pref_scaling * self.preference])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        if not self.enabled:
            return out
        h = x.to(self.lora_A.dtype)  # the update runs in fp32 whatever the base dtype
        update = ((h @ self.lora_A.T) * self.singular_values()) @ self.lora_B.T  # (..., out)
        return out + (self.scaling * update).to(out.dtype)


def _targets(model: nn.Module) -> list[str]:
    """Names of the Linear/Conv1D layers inside the transformer blocks (not embeddings/head)."""
    head = model.get_output_embeddings()
    return [
        name
        for name, module in model.named_modules()
        if (isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D")
        and module is not head
    ]


class PanaceaModel(nn.Module):
    """The base causal LM with :class:`PanaceaLayer` s swapped in; the sampler's model interface."""

    # one preference for the whole batch: identical prompts may share their prompt pass
    rows_independent = True

    def __init__(self, base: nn.Module, r: int, k: int, alpha: float, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        for param in base.parameters():
            param.requires_grad_(False)
        self.targets = _targets(base)
        self.layers: list[PanaceaLayer] = []
        for name in self.targets:
            parent_name, _, child = name.rpartition(".")
            parent = base.get_submodule(parent_name)
            layer = PanaceaLayer(getattr(parent, child), r, k, alpha, generator)
            setattr(parent, child, layer)
            self.layers.append(layer)
        self.base = base
        self.settings = {"r": r, "k": k, "alpha": alpha, "seed": seed, "targets": self.targets}
        self.eval()  # never dropout: rollouts restore the mode they found, so it must start off

    @property
    def config(self):
        return self.base.config

    def forward(self, **kw):
        return self.base(**kw)

    def set_preference(self, weights: np.ndarray) -> None:
        w = torch.as_tensor(np.asarray(weights, dtype=np.float32))
        for layer in self.layers:
            layer.preference.copy_(w.to(layer.preference.device))

    @contextlib.contextmanager
    def disable_adapter(self):
        """Run the plain base model (the KL reference)."""
        for layer in self.layers:
            layer.enabled = False
        try:
            yield
        finally:
            for layer in self.layers:
                layer.enabled = True

    def adapter_state(self) -> dict[str, torch.Tensor]:
        """The Panacea parameters (V^T, U, sigma, lambda of every layer) by name, on CPU."""
        return {
            name: param.detach().cpu().contiguous()
            for name, param in self.named_parameters()
            if name.rsplit(".", 1)[-1] in ADAPTER_PARAMS
        }

    def save(self, folder: Path) -> Path:
        metadata = {"panacea": json.dumps(self.settings)}
        return write_safetensors_atomic(Path(folder) / FILE, self.adapter_state(), metadata)


def attach_panacea(policy: Policy, r: int, k: int, alpha: float, seed: int) -> PanaceaModel:
    """Swap Panacea layers into ``policy.model`` (in place); only they are trainable."""
    model = PanaceaModel(policy.model, r, k, alpha, seed).to(policy.device)
    policy.model = model
    return model


def load_panacea(policy: Policy, folder: Path) -> PanaceaModel:
    """Attach and fill the Panacea layers saved in ``folder`` (safetensors; no pickle)."""
    if not (Path(folder) / FILE).is_file():
        raise ValueError(f"no trained Panacea adapter at {Path(folder) / FILE}")
    tensors, metadata = read_safetensors(Path(folder) / FILE)
    settings = json.loads(metadata["panacea"])
    model = attach_panacea(
        policy, settings["r"], settings["k"], settings["alpha"], settings["seed"]
    )
    missing = set(model.adapter_state()) - set(tensors)
    if missing:
        raise ValueError(f"{folder / FILE} lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in tensors:
                param.copy_(tensors[name].to(param.device, param.dtype))
                param.requires_grad_(False)
    return model


class Panacea:
    """Steerable: one model; a preference sets K singular values of every adapted layer."""

    models_kept = 1
    passes_per_token = 1

    def __init__(self, policy: Policy, objectives: tuple[str, ...]):
        self.policy = policy
        self.objectives = tuple(objectives)

    def generate(self, prompts, weights, **gen: Any) -> list[str]:
        w = check_weights(weights, k=len(self.objectives))
        self.policy.model.set_preference(w)
        return self.policy.generate(list(prompts), **gen)


def train(config: RunConfig, run_dir: Path, callback: TrainCallback) -> None:
    policy = open_policy(config)
    k = len(config.objectives)
    model = attach_panacea(policy, config.lora_r, k, float(config.lora_alpha), config.seed)
    steerable = Panacea(policy, config.objectives)
    concentration = METHODS["panacea"].option(config.options, "preference_concentration")
    stage = Stage(
        "panacea policy",
        config.steps,
        condition=model.set_preference,
        adapter=False,
        concentration=concentration,
    )
    front_fn = lambda index, done: snapshot(steerable, config)  # noqa: E731
    if train_stages(config, run_dir, callback, policy, [stage], front_fn):
        model.save(adapter_dir(run_dir, "panacea"))
        scales = [SV_GAIN * layer.pref_scaling.item() for layer in model.layers]
        write_artifact(
            run_dir,
            config,
            {"panacea": None},
            layers=len(model.layers),
            rank=config.lora_r,
            preference_scale_mean=float(np.mean(np.abs(scales))),
        )


def load(run_dir: Path, device: str = "auto") -> Panacea:
    artifact = read_artifact(run_dir)
    policy = load_policy(artifact["model"], device=device)
    load_panacea(policy, adapter_dir(run_dir, "panacea"))
    return Panacea(policy, tuple(artifact["objectives"]))
