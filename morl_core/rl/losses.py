"""Policy-gradient pieces: token log-probs, group advantages (RLOO, kSCST), KL to the reference.

All of it works on a rollout of ``B = prompts * k`` rows ordered prompt-major (the k samples of
one prompt are adjacent), in fp32 whatever the model's dtype.

Objective maximised (the KL-regularised RL objective of RLHF)::

    J(theta) = E_{x, y ~ pi_theta} [ r(x, y) ] - beta * KL(pi_theta(.|x) || pi_ref(.|x))

with the KL taken over whole completions, i.e. summed over their tokens (per sequence, not per
token). Its maximiser is pi*(y|x) proportional to pi_ref(y|x) exp(r(x, y) / beta).

The gradient is estimated in the RLOO form (Ahmadian et al. 2024): the per-sequence estimate
``k1(y) = sum_t log pi(y_t) - log pi_ref(y_t)`` is *detached* and folded into the reward,
``r'(y) = r(y) - beta * k1(y)``, before the group baseline; the loss is then plain REINFORCE,
``-A(y) * sum_t log pi(y_t)``. Since ``grad KL = E[k1 * grad log pi(y)]``, this is an unbiased
gradient of ``J``. (Backpropagating k3 through ``log pi`` would follow ``KL(pi_ref || pi)``;
a per-token KL would divide beta by the length; ``tests/test_known_answers.py`` pins the optimum.)

The k3 estimator ``exp(q) - q - 1`` (``q = log ref - log pi``, >= 0, unbiased) is for reporting.
"""

from __future__ import annotations

import torch


def token_logprobs(
    model,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    n_completion: int,
    temperature: float = 1.0,
    group_size: int = 1,
):
    """Log-probs (B, T) of the last ``n_completion`` tokens under ``log_softmax(logits /
    temperature)``, and the detached entropy (B, T).

    Left padding gets explicit position ids; only the last ``n_completion + 1`` positions go
    through the LM head (on a small model the vocabulary projection dominates the pass).

    ``group_size = k > 1``: rows come in groups of ``k`` adjacent completions of one prompt. When
    the rows of every group do share their prompt, it runs once per group and its cache is
    repeated ``k`` times (``repeat_interleave`` keeps the graph: the rows' gradients add up on
    the shared prompt); otherwise every row runs in full, as with ``group_size = 1``.
    """
    positions = (attention_mask.cumsum(-1) - 1).clamp(min=0)
    prompt = input_ids.shape[1] - n_completion
    if group_size > 1 and _groups_share_prompt(input_ids, attention_mask, prompt, group_size):
        logits = _shared_prompt_logits(
            model, input_ids, attention_mask, positions, prompt, group_size
        )
    else:
        logits = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=positions,
            logits_to_keep=n_completion + 1,
        ).logits[:, -n_completion - 1 : -1, :]
    logits = logits.float()  # (B, T, V) predicting the completion
    logp_all = torch.log_softmax(logits / temperature, dim=-1)
    targets = input_ids[:, -n_completion:]
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)  # (B, T)
    with torch.no_grad():  # a monitor-only quantity: keep it out of the autograd graph
        entropy = -(logp_all.exp() * logp_all).sum(-1)  # (B, T)
    return logp, entropy


def _groups_share_prompt(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt: int, k: int
) -> bool:
    """Whether the first ``prompt`` columns (ids and mask) match within each group of k rows."""
    if prompt < 1 or input_ids.shape[0] % k:
        return False
    for rows in (input_ids[:, :prompt], attention_mask[:, :prompt]):
        groups = rows.reshape(-1, k, prompt)  # (P, k, prompt)
        if not torch.equal(groups, groups[:, :1].expand_as(groups)):
            return False
    return True


def _shared_prompt_logits(model, input_ids, attention_mask, positions, prompt: int, k: int):
    """Logits (B, T, V) predicting the completion, the prompt computed once per group of k."""
    out = model(
        input_ids=input_ids[::k, :prompt],
        attention_mask=attention_mask[::k, :prompt],
        position_ids=positions[::k, :prompt],
        use_cache=True,
        logits_to_keep=1,
    )
    cache = out.cache
    cache.batch_repeat_interleave(k)
    # the prompt's last logit predicts the first completion token
    logits = [out.logits[:, -1:, :].repeat_interleave(k, 0)]  # (B, 1, V)
    if input_ids.shape[1] - prompt > 1:  # the completion's tokens but its last predict the rest
        logits.append(
            model(
                input_ids=input_ids[:, prompt:-1],
                attention_mask=attention_mask[:, :-1],
                position_ids=positions[:, prompt:-1],
                cache=cache,
                use_cache=True,
            ).logits
        )
    return torch.cat(logits, 1)


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
    """Per-token k3 estimate of KL(pi || ref): ``exp(q) - q - 1`` with ``q = ref - logp`` (>= 0).

    For reporting: its gradient through ``logp`` is *not* the gradient of KL(pi || ref).
    """
    q = ref_logp - logp
    return torch.exp(q) - q - 1.0


def sequence_kl(logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Detached per-sequence k1 estimate (B,): ``sum_t (log pi - log ref)`` over real tokens.

    Unbiased for KL(pi || ref) of the whole completion when ``y ~ pi``; a single sample may be
    negative. This is the quantity beta multiplies in the shaped reward.
    """
    return ((logp.detach() - ref_logp.detach()) * mask.float()).sum(-1)


def kl_shaped_rewards(
    rewards: torch.Tensor, logp: torch.Tensor, ref_logp: torch.Tensor, mask, kl_coef: float
) -> torch.Tensor:
    """``r - beta * k1_sequence`` (B,): the reward the group baseline is taken on."""
    return rewards - kl_coef * sequence_kl(logp, ref_logp, mask)


def policy_loss(logp: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """REINFORCE loss to minimise: ``-mean_rows(A * sum_t log pi(y_t))`` over real tokens.

    ``advantages`` (B,) come from :func:`group_advantages` of the KL-shaped rewards, so the
    KL penalty is already inside them.
    """
    return -(advantages * (logp * mask.float()).sum(-1)).mean()


def kl_report(
    logp: torch.Tensor, ref_logp: torch.Tensor, mask: torch.Tensor
) -> tuple[float, float]:
    """(KL per sequence, KL per token), both means over rows of the k3 estimate."""
    mask = mask.float()
    per_row = (kl_k3(logp.detach(), ref_logp.detach()) * mask).sum(-1)  # (B,)
    tokens = mask.sum().clamp(min=1.0)
    return float(per_row.mean()), float(per_row.sum() / tokens)
