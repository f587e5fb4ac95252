"""The method registry: a plain dict of :class:`MethodSpec`, filled by a loud ``register()``.

Each method lives in one file of this package; its module is imported only when it trains or
loads, so listing methods (CLI, UI, config validation) stays cheap.
"""

from __future__ import annotations

from morl_core.methods.base import MethodSpec, Steerable, StepInfo, TrainCallback
from morl_core.methods.registry import METHODS, get, register

__all__ = ["METHODS", "MethodSpec", "Steerable", "StepInfo", "TrainCallback", "get", "register"]
