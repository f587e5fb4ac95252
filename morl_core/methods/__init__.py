"""MORL methods, one per file; the registry imports a method's module only to train or load it."""

from __future__ import annotations

from morl_core.methods.base import MethodSpec, Steerable, StepInfo, TrainCallback
from morl_core.methods.registry import METHODS, get, register

__all__ = ["METHODS", "MethodSpec", "Steerable", "StepInfo", "TrainCallback", "get", "register"]
