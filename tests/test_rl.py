"""The RL core on hand cases: advantages, k3 KL, the policy loss, token log-probs, normalisers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from morl_core.policy import load_policy, set_threads
from morl_core.rl.losses import (
    group_advantages,
    kl_k3,
    kl_report,
    kl_shaped_rewards,
    policy_loss,
    sequence_kl,
    token_logprobs,
)
from morl_core.rl.trainer import RewardNormalizer, distinct_n

set_threads(1)


# --- group advantages ------------------------------------------------------------------------


def test_rloo_advantage_is_reward_minus_mean_of_the_others():
    rewards = torch.tensor([1.0, 2.0, 3.0, 4.0, 4.0, 4.0])  # two prompts, k = 3
    # prompt 0: 1 - (2+3)/2, 2 - (1+3)/2, 3 - (1+2)/2; prompt 1: all equal -> 0
    expected = [-1.5, 0.0, 1.5, 0.0, 0.0, 0.0]
    np.testing.assert_allclose(group_advantages(rewards, 3, "rloo"), expected)


def test_kscst_advantage_is_reward_minus_mean_of_all_k():
    rewards = torch.tensor([1.0, 2.0, 3.0, 0.0, 10.0, 2.0])
    expected = [-1.0, 0.0, 1.0, -4.0, 6.0, -2.0]
    np.testing.assert_allclose(group_advantages(rewards, 3, "kscst"), expected)


def test_rloo_is_kscst_scaled_by_k_over_k_minus_one():
    rewards = torch.randn(20, generator=torch.Generator().manual_seed(0))
    k = 4
    np.testing.assert_allclose(
        group_advantages(rewards, k, "rloo"),
        group_advantages(rewards, k, "kscst") * k / (k - 1),
        rtol=1e-5,
        atol=1e-6,
    )


def test_advantages_sum_to_zero_within_each_group():
    rewards = torch.rand(12, generator=torch.Generator().manual_seed(1))
    for kind in ("rloo", "kscst"):
        sums = group_advantages(rewards, 3, kind).view(-1, 3).sum(-1)
        np.testing.assert_allclose(sums, 0.0, atol=1e-6)


@pytest.mark.parametrize(
    ("rewards", "k", "kind", "message"),
    [
        (torch.zeros(5), 2, "rloo", "multiple of k=2"),
        (torch.zeros(2, 2), 2, "rloo", "must be (B,)"),
        (torch.zeros(4), 2, "ppo", "'rloo' or 'kscst'"),
    ],
)
def test_group_advantages_rejects_bad_input(rewards, k, kind, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        group_advantages(rewards, k, kind)


# --- k3 KL -----------------------------------------------------------------------------------


def test_k3_is_zero_when_the_policies_agree_and_non_negative_otherwise():
    gen = torch.Generator().manual_seed(0)
    logp = torch.log_softmax(torch.randn(64, generator=gen), -1)
    assert torch.equal(kl_k3(logp, logp), torch.zeros(64))
    ref = torch.log_softmax(torch.randn(64, generator=gen) * 3, -1)
    values = kl_k3(logp, ref)
    assert (values >= 0).all()
    assert values.max() > 0.1  # really different distributions, so not trivially zero


def test_k3_expectation_under_the_policy_is_the_exact_kl():
    # E_{y~pi}[exp(q) - q - 1] with q = log ref - log pi equals KL(pi || ref) exactly.
    pi = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    ref = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    exact = float((pi * (pi / ref).log()).sum())
    expectation = float((pi * kl_k3(pi.log(), ref.log())).sum())
    assert expectation == pytest.approx(exact, rel=1e-12)
    assert exact == pytest.approx(0.5 * np.log(2.5) + 0.3 * np.log(1.5) + 0.2 * np.log(1 / 3))


# --- policy loss -----------------------------------------------------------------------------


def test_policy_loss_values_on_a_hand_case():
    logp = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]])  # (B=2, T=3)
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])  # row 0's last token is padding
    advantages = torch.tensor([2.0, -1.0])
    loss = policy_loss(logp, advantages, mask)
    # -mean(A * sum_t logp) = -mean(2 * -3, -1 * -1.5) = -mean(-6, 1.5) = 2.25
    assert float(loss) == pytest.approx(2.25)


def test_sequence_kl_sums_over_real_tokens_and_is_detached():
    logp = torch.tensor([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]], requires_grad=True)
    ref = logp.detach() + torch.tensor([[0.1, 0.3, 5.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    kl = sequence_kl(logp, ref, mask)
    # summed (not averaged) over tokens; the padded token (difference 5) is not counted
    assert kl.tolist() == pytest.approx([-0.4, 0.0])
    assert not kl.requires_grad
    shaped = kl_shaped_rewards(torch.tensor([1.0, 1.0]), logp, ref, mask, kl_coef=0.5)
    assert shaped.tolist() == pytest.approx([1.2, 1.0])
    per_seq, per_tok = kl_report(logp, ref, mask)
    k3 = sum(np.exp(q) - q - 1 for q in (0.1, 0.3))
    assert per_seq == pytest.approx(k3 / 2, rel=1e-5)
    assert per_tok == pytest.approx(k3 / 5, rel=1e-5)


def test_expected_gradient_is_the_gradient_of_the_kl_regularised_objective():
    """Exact expectation over a 4-token one-step policy: E_y[A(y) grad log pi(y)] of the shaped
    reward equals grad (E[r] - beta KL(pi || ref)), computed by autograd on the closed form."""
    torch.manual_seed(0)
    beta = 0.3
    logits = torch.randn(4, dtype=torch.float64, requires_grad=True)
    ref = torch.log_softmax(torch.randn(4, dtype=torch.float64), -1)
    reward = torch.tensor([1.0, 0.0, 0.2, 0.0], dtype=torch.float64)

    logp = torch.log_softmax(logits, -1)
    exact = (logp.exp() * reward).sum() - beta * (logp.exp() * (logp - ref)).sum()
    (grad_exact,) = torch.autograd.grad(exact, logits)

    # score-function estimator in expectation: sum_y pi(y) * shaped(y) * grad log pi(y)
    logp = torch.log_softmax(logits, -1)
    shaped = kl_shaped_rewards(reward, logp[:, None], ref[:, None], torch.ones(4, 1), beta)
    surrogate = (logp.exp().detach() * shaped * logp).sum()
    (grad_estimator,) = torch.autograd.grad(surrogate, logits)
    assert torch.allclose(grad_estimator, grad_exact, atol=1e-12)


def test_padded_tokens_get_no_gradient():
    logp = torch.zeros(1, 3, requires_grad=True)
    loss = policy_loss(logp, torch.tensor([1.0]), torch.tensor([[1, 1, 0]]))
    loss.backward()
    assert logp.grad[0, 2] == 0.0
    assert (logp.grad[0, :2] != 0).all()


def test_gradient_step_raises_logp_of_positive_advantage_samples():
    # two independent one-token policies over 4 tokens; sample 0 was good, sample 1 bad
    logits = torch.zeros(2, 1, 4, requires_grad=True)
    tokens = torch.tensor([[1], [2]])
    advantages = torch.tensor([1.0, -1.0])

    def logp_of_samples():
        return torch.log_softmax(logits, -1).gather(-1, tokens[..., None]).squeeze(-1)  # (2, 1)

    before = logp_of_samples().detach()
    loss = policy_loss(logp_of_samples(), advantages, torch.ones(2, 1))
    loss.backward()
    with torch.no_grad():
        logits -= 0.5 * logits.grad  # one SGD step on the loss
    after = logp_of_samples().detach()
    assert after[0, 0] > before[0, 0]  # positive advantage: more likely
    assert after[1, 0] < before[1, 0]  # negative advantage: less likely
    # at uniform logits d(-A log p_y)/d logit_y = -A (1 - 1/4), halved by the mean over 2 rows
    assert float(logits.grad[0, 0, 1]) == pytest.approx(-0.375)
    assert float(logits.grad[1, 0, 2]) == pytest.approx(0.375)


# --- token log-probs with left padding -------------------------------------------------------


@pytest.fixture(scope="module")
def policy():
    return load_policy("embedded", device="cpu", threads=1)


def test_token_logprobs_match_a_manual_per_row_computation(policy):
    tok = policy.tokenizer
    prompts = ["The weather today is", "Hi"]
    completions = [" very nice and", " there"]  # different lengths: row 1 is right-padded
    prompt_rows = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    completion_rows = [tok(c, add_special_tokens=False)["input_ids"] for c in completions]
    assert len(prompt_rows[0]) != len(prompt_rows[1])
    assert len(completion_rows[0]) != len(completion_rows[1])
    width = max(map(len, prompt_rows))
    n_tok = max(map(len, completion_rows))
    pad = policy.pad_id
    ids, mask = [], []
    for p, c in zip(prompt_rows, completion_rows, strict=True):
        left, right = width - len(p), n_tok - len(c)
        ids.append([pad] * left + p + c + [pad] * right)
        mask.append([0] * left + [1] * (len(p) + len(c)) + [0] * right)
    input_ids, attention_mask = torch.tensor(ids), torch.tensor(mask)

    with torch.no_grad():
        logp, entropy = token_logprobs(policy.model, input_ids, attention_mask, n_tok)
    assert logp.shape == entropy.shape == (2, n_tok)
    assert logp.dtype == torch.float32

    for row, (p, c) in enumerate(zip(prompt_rows, completion_rows, strict=True)):
        # the same sequence alone, no padding, default positions
        full = torch.tensor([p + c])
        with torch.no_grad():
            logits = policy.model(input_ids=full).logits[0].float()  # (L, V)
        logp_all = torch.log_softmax(logits, -1)
        for t, token in enumerate(c):
            position = len(p) + t - 1  # the logit row that predicts completion token t
            assert float(logp[row, t]) == pytest.approx(float(logp_all[position, token]), abs=1e-4)
            manual_entropy = -(logp_all[position].exp() * logp_all[position]).sum()
            assert float(entropy[row, t]) == pytest.approx(float(manual_entropy), abs=1e-4)
    assert (logp[:, : min(map(len, completion_rows))] < 0).all()


# --- distinct-n ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("texts", "n", "expected"),
    [
        (["a b a b"], 2, 2 / 3),  # (a b), (b a), (a b)
        (["a a b"], 1, 2 / 3),
        (["a b", "a b"], 2, 1 / 2),  # counted across texts
        (["a b c", "c d"], 2, 1.0),
        (["word"], 2, 0.0),  # no bigram at all
        ([], 2, 0.0),
        ([""], 1, 0.0),
    ],
)
def test_distinct_n(texts, n, expected):
    assert distinct_n(texts, n) == pytest.approx(expected)


# --- reward normaliser -----------------------------------------------------------------------


def test_fixed_normaliser_clips_to_unit_interval():
    norm = RewardNormalizer("fixed", 3)
    out = norm(np.array([[-0.5, 0.3, 1.7]]))
    np.testing.assert_allclose(out, [[0.0, 0.3, 1.0]])
    assert norm.state() == {"kind": "fixed", "stats": None}


def test_running_normaliser_is_a_sigmoid_of_the_running_z_score():
    norm = RewardNormalizer("running", 2)
    out = norm(np.array([[0.0, 10.0], [2.0, 30.0]]))  # mean (1, 20), std (1, 10)
    sig = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(out, [[1 - sig, 1 - sig], [sig, sig]], rtol=1e-6)
    assert ((out > 0) & (out < 1)).all()
    # a second batch updates the statistics: mean (1, 20) -> pooled over 3 rows
    out2 = norm(np.array([[1.0, 20.0]]))
    np.testing.assert_allclose(out2, [[0.5, 0.5]], atol=1e-9)  # the mean maps to 0.5
    assert norm.stats.count == 3
    np.testing.assert_allclose(norm.stats.var, [2 / 3, 200 / 3])


def test_running_normaliser_state_round_trips():
    rng = np.random.default_rng(0)
    a = RewardNormalizer("running", 2)
    a(rng.normal(size=(8, 2)))
    b = RewardNormalizer("running", 2)
    b.load(a.state())
    batch = rng.normal(size=(4, 2))
    np.testing.assert_array_equal(a(batch), b(batch))
