"""The built-in methods, registered in taxonomy order (see ../shared/MORL.md)."""

from morl_core.methods import MethodSpec, register
from morl_core.methods.base import Option

register(
    MethodSpec(
        name="morlhf",
        family="A",
        module="morl_core.methods.morlhf",
        summary="one policy per preference, RL on a fixed scalarisation",
        paper="Wu et al. 2023 (arXiv 2306.01693); EMORL baselines (arXiv 2505.02579)",
    )
)
register(
    MethodSpec(
        name="dynaopt",
        family="B",
        module="morl_core.methods.dynaopt",
        summary="one policy; objective weights moved during training by an Exp3 bandit",
        paper="Min et al. 2024, DynaOpt (arXiv 2403.13578)",
        options={
            "gamma": Option(float, 0.2, "Exp3 exploration rate", lambda v: 0 < v <= 1, "in (0, 1]"),
            "window": Option(int, 5, "steps between bandit updates", lambda v: v >= 1, ">= 1"),
        },
    )
)
register(
    MethodSpec(
        name="soups",
        family="D1",
        module="morl_core.methods.soups",
        summary="one LoRA expert per objective; the front by interpolating adapter weights",
        paper="Rame et al. 2023, Rewarded Soups (arXiv 2306.04488)",
        options={
            "experts_from": (str, "", "run folder whose experts to reuse instead of training")
        },
    )
)
register(
    MethodSpec(
        name="mod",
        family="D2",
        module="morl_core.methods.mod",
        summary="the same experts mixed at decoding time by weighted log-probabilities",
        paper="Shi et al. 2024, Decoding-Time Language Model Alignment with Multiple Objectives (arXiv 2406.18853)",
        options={
            "experts_from": (str, "", "run folder whose experts to reuse instead of training")
        },
    )
)

# --- issue 8: preference-conditioned policies, hidden-state aggregation, meta-policy ---
_EXPERTS_FROM = ("experts_from", (str, "", "run folder whose experts to reuse instead of training"))
register(
    MethodSpec(
        name="ric",
        family="C",
        module="morl_core.methods.ric",
        summary="one policy; the preference enters as target-reward tags in the prompt",
        paper="Yang et al. 2024, Rewards-in-Context (arXiv 2402.10207)",
    )
)
register(
    MethodSpec(
        name="panacea",
        family="C",
        module="morl_core.methods.panacea",
        summary="one policy; the preference is K singular values of an SVD-LoRA",
        paper="Zhong et al. 2024, Panacea (arXiv 2402.02030)",
    )
)
register(
    MethodSpec(
        name="emorl",
        family="D3",
        module="morl_core.methods.emorl",
        summary="experts mixed at the last hidden state; weights by hierarchical grid search",
        paper="Kong et al. 2025, EMORL (arXiv 2505.02579)",
        options={
            _EXPERTS_FROM[0]: _EXPERTS_FROM[1],
            "search_rounds": Option(
                int,
                5,
                "hierarchical grid search rounds (each halves the box)",
                lambda v: v >= 1,
                ">= 1",
            ),
            "search_prompts": Option(
                int,
                8,
                "held-out prompts scored per candidate in the search",
                lambda v: v >= 1,
                ">= 1",
            ),
        },
    )
)
register(
    MethodSpec(
        name="metapolicy",
        family="E",
        module="morl_core.methods.metapolicy",
        summary="frozen experts mixed per token by a small network trained by RL over preferences",
        paper="Kong et al. 2025, MORL for LLMs: Visionary Perspective (arXiv 2509.21613)",
        options={
            _EXPERTS_FROM[0]: _EXPERTS_FROM[1],
            "meta_steps": Option(
                int,
                0,
                "RL steps of the upper level (0 = the run's steps)",
                lambda v: v >= 0,
                ">= 0",
            ),
            "meta_lr": Option(
                float,
                0.0,
                "learning rate of the upper level (0 = the run's lr)",
                lambda v: 0 <= v <= 1,
                "in [0, 1]",
            ),
            "meta_hidden": Option(
                int, 64, "attention width of the upper-level network", lambda v: v >= 1, ">= 1"
            ),
            "prior_eps": Option(
                float,
                0.01,
                "eps of the preference prior log(w + eps)",
                lambda v: 0 < v < 1,
                "in (0, 1)",
            ),
            "score_bound": Option(
                float, 1.0, "bound B of the learned log-weight adjustment", lambda v: v > 0, "> 0"
            ),
        },
    )
)
