"""The method registry: a plain dict of :class:`MethodSpec` filled by a loud ``register()``, and
the built-in methods in taxonomy order (options: :data:`morl_core.options.METHOD_OPTIONS`).
"""

from __future__ import annotations

import re

from morl_core.methods.base import FAMILIES, MethodSpec
from morl_core.options import METHOD_OPTIONS, declare_options

METHODS: dict[str, MethodSpec] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; a duplicate or malformed name, family or option raises ``ValueError``."""
    if not isinstance(spec, MethodSpec):
        raise ValueError(f"register() takes a MethodSpec, got {type(spec).__name__}")
    if not _NAME.match(spec.name):
        raise ValueError(f"method name {spec.name!r} must match {_NAME.pattern}")
    if spec.name in METHODS:
        raise ValueError(f"method {spec.name!r} is already registered")
    if spec.family not in FAMILIES:
        raise ValueError(
            f"family {spec.family!r} of {spec.name!r} must be one of {', '.join(FAMILIES)}"
        )
    declare_options(spec.name, spec.options)
    METHODS[spec.name] = spec
    return spec


def get(name: str) -> MethodSpec:
    """The spec for ``name``; unknown names raise ``ValueError`` listing the registered ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name]


# name | family | module | summary | paper (taxonomy order)
BUILT_IN = [
    tuple(row.split(" | "))
    for row in """\
morlhf | A | morlhf | one policy per preference, RL on a fixed scalarisation | Wu et al. 2023 (arXiv 2306.01693); EMORL baselines (arXiv 2505.02579)
dynaopt | B | dynaopt | one policy; objective weights moved during training by an Exp3 bandit | Min et al. 2024, DynaOpt (arXiv 2403.13578)
soups | D1 | soups | one LoRA expert per objective; the front by interpolating adapter weights | Rame et al. 2023, Rewarded Soups (arXiv 2306.04488)
mod | D2 | mod | the same experts mixed at decoding time by weighted log-probabilities | Shi et al. 2024, Decoding-Time Language Model Alignment with Multiple Objectives (arXiv 2406.18853)
pmix | D2 | mixture | the same experts mixed at decoding time by weighted probabilities (arithmetic mixture) | Kong et al. 2025, EMORL's logits-aggregation baseline (arXiv 2505.02579)
ric | C | ric | one policy; the preference enters as target-reward tags in the prompt | Yang et al. 2024, Rewards-in-Context (arXiv 2402.10207)
panacea | C | panacea | one policy; the preference is K singular values of an SVD-LoRA | Zhong et al. 2024, Panacea (arXiv 2402.02030)
emorl | D3 | emorl | experts mixed at the last hidden state; weights by hierarchical grid search | Kong et al. 2025, EMORL (arXiv 2505.02579)
metapolicy | E | metapolicy | frozen experts mixed per token by a small network trained by RL over preferences | Kong et al. 2025, MORL for LLMs: Visionary Perspective (arXiv 2509.21613)
""".splitlines()
]
for name, family, module, summary, paper in BUILT_IN:
    module = f"morl_core.methods.{module}"
    register(MethodSpec(name, family, summary, paper, module, METHOD_OPTIONS[name]))
