"""The built-in methods, registered in taxonomy order (see ../shared/MORL.md)."""

from morl_core.config import MAX_STEPS
from morl_core.methods import MethodSpec, register
from morl_core.methods.base import Option

# A run folder whose experts a method reuses: resolved, checked to exist and to be allowed.
EXPERTS_FROM = Option(str, "", "run folder whose experts to reuse instead of training", path="run")

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
            "gamma": Option(float, 0.2, "Exp3 exploration rate", low=0, high=1, open_low=True),
            "window": Option(int, 2, "steps between bandit updates", low=1, high=MAX_STEPS),
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
        options={"experts_from": EXPERTS_FROM},
    )
)
register(
    MethodSpec(
        name="mod",
        family="D2",
        module="morl_core.methods.mod",
        summary="the same experts mixed at decoding time by weighted log-probabilities",
        paper="Shi et al. 2024, Decoding-Time Language Model Alignment with Multiple Objectives (arXiv 2406.18853)",
        options={"experts_from": EXPERTS_FROM},
    )
)
register(
    MethodSpec(
        name="pmix",
        family="D2",
        module="morl_core.methods.mixture",
        summary="the same experts mixed at decoding time by weighted probabilities (arithmetic mixture)",
        paper="Kong et al. 2025, EMORL's logits-aggregation baseline (arXiv 2505.02579)",
        options={"experts_from": EXPERTS_FROM},
    )
)

# --- preference-conditioned policies, hidden-state aggregation, meta-policy ---
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
            "experts_from": EXPERTS_FROM,
            "search_rounds": Option(
                int, 5, "hierarchical grid search rounds (each halves the box)", low=1, high=20
            ),
            "search_prompts": Option(
                int, 8, "training prompts scored per candidate in the search", low=1, high=1024
            ),
            "mix_at": Option(
                str,
                "final",
                "mix after the final layer norm (= MOD up to temperature) or before it",
                check=lambda v: v in ("final", "pre_norm"),
                allowed="one of final, pre_norm",
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
            "experts_from": EXPERTS_FROM,
            "meta_steps": Option(
                int, 0, "RL steps of the upper level (0 = the run's steps)", low=0, high=MAX_STEPS
            ),
            "meta_lr": Option(
                float, 0.0, "learning rate of the upper level (0 = the run's lr)", low=0, high=1
            ),
            "meta_hidden": Option(
                int, 64, "attention width of the upper-level network", low=1, high=4096
            ),
            "prior_eps": Option(
                float,
                0.01,
                "eps of the preference prior log(w + eps)",
                low=0,
                high=1,
                open_low=True,
                open_high=True,
            ),
            "score_bound": Option(
                float,
                1.0,
                "bound B of the learned log-weight adjustment",
                low=0,
                high=100,
                open_low=True,
            ),
        },
    )
)
