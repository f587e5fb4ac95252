"""The method registry: a plain dict of :class:`MethodSpec`, filled by a loud ``register()``.

Each method lives in one file of this package; its module is imported only when it trains or
loads, so listing methods (CLI, UI, config validation) stays cheap.
"""

from __future__ import annotations

import re

from morl_core.methods.base import FAMILIES, MethodSpec, Steerable, StepInfo, TrainCallback

METHODS: dict[str, MethodSpec] = {}
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method; duplicate or malformed names and unknown families raise ``ValueError``."""
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
    METHODS[spec.name] = spec
    return spec


def get(name: str) -> MethodSpec:
    """The spec for ``name``; unknown names raise ``ValueError`` listing the registered ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(sorted(METHODS))}")
    return METHODS[name]


__all__ = ["METHODS", "MethodSpec", "Steerable", "StepInfo", "TrainCallback", "get", "register"]

from morl_core.methods import registry as _registry  # noqa: E402,F401  (registers the built-ins)
