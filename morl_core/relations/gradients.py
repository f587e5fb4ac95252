"""Gradient conflict: cosine similarity between per-objective policy gradients.

The trainer computes, for the same batch and the same parameters, the gradient of each
objective's (**maximisation**) RL loss, flattens each to a vector (e.g. all LoRA parameters), and
stacks them into a (K, D) matrix. This module turns that into a (K, K) cosine matrix.

How to read it:

* ``cos_ij < 0`` (**conflict**): to first order, a step that improves objective i makes
  objective j worse. This is the local, parameter-space version of a trade-off, and the quantity
  that gradient-surgery methods such as PCGrad (Yu et al. 2020) act on.
* ``cos_ij ~ 0``: the objectives pull in unrelated directions; one step can improve both.
* ``cos_ij > 0``: the objectives are aligned here; training on one helps the other.

Caveats: a cosine is local (it describes the current parameters, unlike reward correlations,
which describe the samples) and noisy (one batch is one estimate: average the matrix over several
steps or batches before drawing conclusions). It ignores gradient size, so a strongly negative
cosine against a tiny gradient matters little; look at the norms too. A zero gradient has no
direction: its row and column are NaN.

``gradient_conflict`` is pure; ``gradient_conflict_study`` measures it on a model (torch, lazily).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import ArrayLike

from morl_core.array_checks import as_matrix
from morl_core.objectives import score
from morl_core.policy import attach_lora, load_policy, set_threads
from morl_core.prompts import load_prompts


def gradient_conflict(gradients: ArrayLike) -> np.ndarray:
    """Cosine similarity matrix (K, K) of per-objective gradients ``(K, D)``, K >= 2.

    Symmetric, entries in [-1, 1], ones on the diagonal; the row and column of an all-zero
    gradient are NaN (no direction). Raises ``ValueError`` on a wrong shape or NaN/inf.
    """
    g = as_matrix(gradients, "gradients", min_k=1)  # (K, D)
    if g.shape[0] < 2:
        raise ValueError(f"gradients: expected at least 2 rows (one per objective), got {g.shape}")
    # Scale each row by its largest entry first so the norms neither overflow nor underflow.
    peak = np.abs(g).max(axis=1, keepdims=True)  # (K, 1)
    safe = np.divide(g, peak, out=np.zeros_like(g), where=peak > 0)
    norms = np.linalg.norm(safe, axis=1)  # (K,)
    unit = np.divide(safe, norms[:, None], out=np.zeros_like(safe), where=norms[:, None] > 0)
    cosine = np.clip(unit @ unit.T, -1.0, 1.0)  # (K, K)
    np.fill_diagonal(cosine, 1.0)
    zero = norms == 0
    cosine[zero, :] = np.nan
    cosine[:, zero] = np.nan
    return cosine


def mean_cosine(cosines: Sequence[np.ndarray]) -> np.ndarray:
    """Entrywise mean of (K, K) cosine matrices, skipping NaN; NaN where every one is NaN."""
    stack = np.stack(cosines)  # (B, K, K)
    seen = ~np.isnan(stack)
    total = np.where(seen, stack, 0.0).sum(axis=0)
    count = seen.sum(axis=0)
    return np.divide(total, count, out=np.full(total.shape, np.nan), where=count > 0)


def gradient_conflict_study(
    objective_names: Sequence[str],
    *,
    model: str = "embedded",
    prompt_set: str = "default",
    batches: int = 3,
    batch_prompts: int = 4,
    k_samples: int = 4,
    seed: int = 0,
    threads: int | None = None,
    allow_import: bool = True,
    progress: Callable[[str, float], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cosine matrix of per-objective policy gradients at ``model``, averaged over batches.

    A fresh LoRA adapter (rank 8, all linear layers, on CPU) sits on the model; for each batch
    one rollout is scored on every objective and the REINFORCE gradient of each objective alone
    (RLOO baseline, as in training) is taken with respect to the adapter.

    Returns:
        ``(cosine (K, K), mean gradient norms (K,))``; an objective whose gradient was zero in
        every batch (e.g. a constant reward) has NaN cosines.
    """
    import torch  # heavy (as is rl.losses): loaded only when someone asks for the study

    from morl_core.rl.losses import group_advantages, token_logprobs

    names = list(objective_names)
    set_threads(threads)
    torch.manual_seed(seed)
    policy = attach_lora(load_policy(model, device="cpu", threads=threads), r=8, alpha=32)
    params = [p for p in policy.model.parameters() if p.requires_grad]
    prompts = load_prompts(prompt_set, "train")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    cosines, norms = [], []
    for b in range(batches):
        if progress:
            progress(f"batch {b + 1} of {batches}: rollout and {len(names)} gradients", b / batches)
        batch = list(rng.choice(prompts, size=batch_prompts, replace=False))
        rollout = policy.rollout(
            batch, n=k_samples, max_new_tokens=24, temperature=1.0, generator=generator
        )
        texts = policy.decode(rollout.completion_ids, rollout.completion_mask)
        asked = [p for p in batch for _ in range(k_samples)]
        rewards = score(names, asked, texts, allow_import=allow_import)  # (N, K)
        n_tok = rollout.completion_mask.shape[1]
        mask = rollout.completion_mask.float()
        grads = []
        for i in range(len(names)):
            adv = group_advantages(torch.as_tensor(rewards[:, i], dtype=torch.float32), k_samples)
            logp, _ = token_logprobs(policy.model, rollout.input_ids, rollout.attention_mask, n_tok)
            loss = -(adv * (logp * mask).sum(-1)).mean()
            policy.model.zero_grad(set_to_none=True)
            loss.backward()
            flat = [torch.zeros(p.numel()) if p.grad is None else p.grad.flatten() for p in params]
            grads.append(torch.cat(flat).numpy())
        g = np.stack(grads)  # (K, D)
        cosines.append(gradient_conflict(g))
        norms.append(np.linalg.norm(g, axis=1))
    if progress:
        progress("done", 1.0)
    return mean_cosine(cosines), np.mean(np.stack(norms), axis=0)
