"""The built-in methods, registered in taxonomy order (see ../shared/MORL.md)."""

from morl_core.methods import MethodSpec, register

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
            "gamma": (float, 0.2, "Exp3 exploration rate in (0, 1]"),
            "window": (int, 5, "steps between bandit updates"),
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
