"""Policy-gradient pieces: token log-probs, group advantages (RLOO, kSCST), KL to the reference.

All of it works on a rollout of ``B = prompts * k`` rows ordered prompt-major (the k samples of
one prompt are adjacent), in fp32 whatever the model's dtype.

Objective maximised per step (REINFORCE with a group baseline and a KL penalty)::

    J(theta) = E[ A(y) * sum_t log pi_theta(y_t | x, y_<t) ] - beta * KL(pi_theta || pi_ref)

with ``A = r - baseline`` from the other samples of the same prompt, and the KL estimated per
token with the non-negative k3 estimator ``exp(q) - q - 1``, ``q = log pi_ref - log pi_theta``.
"""

from __future__ import annotations

import torch


def token_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, n_completion: int):
    """Log-probs (B, T) of the last ``n_completion`` tokens, and the entropy (B, T) there.

    Left padding is handled with explicit position ids. Entropy is returned detached.
    Only the last ``n_completion + 1`` positions go through the LM head (``logits_to_keep``):
    on a small model the vocabulary projection is a large share of the forward pass, and the
    prompt positions' logits are never used.
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    logits = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=positions,
        logits_to_keep=n_completion + 1,
    ).logits
    logits = logits[:, -n_completion - 1 : -1, :].float()  # (B, T, V) predicting the completion
    logp_all = torch.log_softmax(logits, dim=-1)
    targets = input_ids[:, -n_completion:]
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    with torch.no_grad():  # a monitor-only quantity: keep it out of the autograd graph
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, T)
    return logp, entropy


def group_advantages(rewards: torch.Tensor, k: int, kind: str = "rloo") -> torch.Tensor:
    """Advantages (B,) from scalar rewards (B,) in groups of ``k`` adjacent samples.

    ``rloo``: r_i minus the mean of the *other* k-1 samples (Ahmadian et al. 2024).
    ``kscst``: r_i minus the mean of all k samples (self-critical, as in EMORL).
    """
    if rewards.ndim != 1 or rewards.numel() % k:
        raise ValueError(
            f"rewards must be (B,) with B a multiple of k={k}, got {tuple(rewards.shape)}"
        )
    groups = rewards.view(-1, k)  # (P, k)
    total = groups.sum(-1, keepdim=True)
    if kind == "rloo":
        baseline = (total - groups) / (k - 1)
    elif kind == "kscst":
        baseline = total / k
    else:
        raise ValueError(f"advantage must be 'rloo' or 'kscst', got {kind!r}")
    return (groups - baseline).reshape(-1)


def kl_k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimate of KL(pi || ref): ``exp(q) - q - 1`` with ``q = ref - logp`` (>= 0)."""
    q = ref_logp - logp
    return torch.exp(q) - q - 1.0


def policy_loss(logp, ref_logp, advantages, mask, kl_coef: float):
    """Loss to minimise and its parts: -(A * sum_t logp) + beta * mean-token KL, averaged over rows."""
    mask = mask.float()
    lengths = mask.sum(-1).clamp(min=1.0)
    pg = -(advantages * (logp * mask).sum(-1)).mean()
    kl_tok = kl_k3(logp, ref_logp) * mask
    kl = (kl_tok.sum(-1) / lengths).mean()
    return pg + kl_coef * kl, pg.detach(), kl.detach()
