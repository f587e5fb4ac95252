"""Run configuration: one frozen dataclass, validated once, with every bad field named.

Everything derives from :class:`RunConfig`: the Train page's form, the CLI's options, the
``config.json`` in a run folder. ``RunConfig.from_dict`` is the single entry point for
untrusted input (UI, CLI, JSON); it reports *every* bad field at once in a :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

SCALARIZATIONS = ("linear", "logsum", "tchebycheff")
ADVANTAGES = ("rloo", "kscst")
DEVICES = ("auto", "cpu", "cuda")
NORMALIZATIONS = ("fixed", "running")


class ConfigError(ValueError):
    """Bad configuration. ``errors`` maps each bad field name to a message with allowed values."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        lines = [f"  {name}: {msg}" for name, msg in self.errors.items()]
        super().__init__("invalid run configuration:\n" + "\n".join(lines))


def _help(text: str, **kw: Any) -> Any:
    return field(metadata={"help": text}, **kw)


@dataclass(frozen=True)
class RunConfig:
    """One training run: which method, on which objectives, for how long, with what knobs."""

    method: str = _help("MORL method name (see `morl methods`)", default="morlhf")
    objectives: tuple[str, ...] = _help(
        "objective names, two or more (see `morl objectives`)", default=("sentiment", "brevity")
    )
    model: str = _help("base model: 'embedded', a local folder or a hub name", default="embedded")
    steps: int = _help("RL updates per trained policy", default=30)
    seed: int = _help("random seed (same seed + config -> same metrics on CPU)", default=0)
    device: str = _help("'auto' (CUDA when present), 'cpu' or 'cuda'", default="auto")
    threads: int = _help("torch threads in the training process", default=1)
    prompt_set: str = _help(
        "prompt set name in assets/prompts or a .txt/.jsonl path", default="default"
    )
    batch_prompts: int = _help("prompts per RL step", default=4)
    k_samples: int = _help("completions sampled per prompt (k of RLOO/kSCST)", default=4)
    max_new_tokens: int = _help("tokens generated per completion", default=24)
    temperature: float = _help("sampling temperature during training", default=1.0)
    top_p: float = _help("nucleus sampling mass during training", default=1.0)
    lr: float = _help("AdamW learning rate for the LoRA parameters", default=1e-3)
    kl_coef: float = _help("KL penalty coefficient to the frozen reference policy", default=0.05)
    grad_clip: float = _help("gradient norm clip", default=2.0)
    advantage: str = _help(
        "'rloo' (leave-one-out baseline) or 'kscst' (mean of the k)", default="rloo"
    )
    lora_r: int = _help("LoRA rank", default=8)
    lora_alpha: int = _help("LoRA alpha", default=32)
    scalarization: str = _help("'linear', 'logsum' or 'tchebycheff'", default="linear")
    normalization: str = _help("'fixed' ([0,1] maps) or 'running' (mean/std)", default="fixed")
    weights: tuple[float, ...] | None = _help(
        "one preference on the simplex for single-preference training; None = method default",
        default=None,
    )
    n_preferences: int = _help(
        "preferences on the evaluated front (and MORLHF policies)", default=5
    )
    eval_every: int = _help("steps between front snapshots (0 = only at the end)", default=10)
    eval_prompts: int = _help("held-out prompts per front evaluation", default=8)
    checkpoint_every: int = _help("steps between checkpoints", default=10)
    options: Mapping[str, Any] = _help(
        "method-specific options (see the method's docs)", default_factory=dict
    )

    # --- validation ---
    def errors(self) -> dict[str, str]:
        """Every problem, keyed by field name; empty when the config is valid."""
        from morl_core.methods import METHODS
        from morl_core.objectives import OBJECTIVES

        err: dict[str, str] = {}
        if self.method not in METHODS:
            err["method"] = f"unknown method {self.method!r}; allowed: {', '.join(sorted(METHODS))}"
        objs = tuple(self.objectives) if not isinstance(self.objectives, str) else ()
        if len(objs) < 2:
            err["objectives"] = (
                f"need at least two objectives, got {len(objs)}; allowed: {', '.join(OBJECTIVES)}"
            )
        elif len(set(objs)) != len(objs):
            err["objectives"] = f"objectives must be distinct, got {list(objs)}"
        else:
            unknown = [o for o in objs if o not in OBJECTIVES and ":" not in o and "." not in o]
            if unknown:
                err["objectives"] = f"unknown {unknown}; allowed: {', '.join(OBJECTIVES)}"
        if not isinstance(self.model, str) or not self.model.strip():
            err["model"] = "must be 'embedded', a model folder or a hub name"
        for name, low in [
            ("steps", 1),
            ("threads", 1),
            ("batch_prompts", 1),
            ("k_samples", 2),
            ("max_new_tokens", 1),
            ("lora_r", 1),
            ("lora_alpha", 1),
            ("n_preferences", 2),
            ("eval_prompts", 1),
            ("seed", 0),
            ("eval_every", 0),
            ("checkpoint_every", 1),
        ]:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                err[name] = f"must be an integer >= {low}, got {value!r}"
        for name, low, high in [
            ("temperature", 1e-3, 10.0),
            ("top_p", 1e-3, 1.0),
            ("lr", 1e-8, 1.0),
            ("kl_coef", 0.0, 100.0),
            ("grad_clip", 1e-6, 1e6),
        ]:
            value = getattr(self, name)
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
            if not ok or not low <= value <= high:
                err[name] = f"must be a number in [{low:g}, {high:g}], got {value!r}"
        for name, allowed in [
            ("device", DEVICES),
            ("advantage", ADVANTAGES),
            ("scalarization", SCALARIZATIONS),
            ("normalization", NORMALIZATIONS),
        ]:
            if getattr(self, name) not in allowed:
                err[name] = f"must be one of {', '.join(allowed)}; got {getattr(self, name)!r}"
        if self.weights is not None:
            w = self.weights
            if "objectives" not in err and len(w) != len(objs):
                err["weights"] = f"need {len(objs)} weights (one per objective), got {len(w)}"
            elif any(not isinstance(x, int | float) or not math.isfinite(x) or x < 0 for x in w):
                err["weights"] = f"must be finite and >= 0, got {list(w)}"
            elif abs(sum(w) - 1.0) > 1e-6:
                err["weights"] = f"must sum to 1 (a point on the simplex), got sum {sum(w):.6g}"
        if not isinstance(self.options, Mapping):
            err["options"] = f"must be a mapping, got {type(self.options).__name__}"
        elif "method" not in err:
            err.update(METHODS[self.method].option_errors(self.options))
        return err

    def validated(self) -> RunConfig:
        """Return self, or raise :class:`ConfigError` naming every bad field."""
        err = self.errors()
        if err:
            raise ConfigError(err)
        return self

    # --- (de)serialisation ---
    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], errors: Mapping[str, str] | None = None
    ) -> RunConfig:
        """Build and validate a config from plain data (JSON, form values, CLI options).

        ``errors`` are problems a caller already found while reading its input (a bad
        ``KEY=VALUE``, a model not on a server's list); they are reported together with the
        validation errors in one :class:`ConfigError`.
        """
        try:
            config = cls._from_dict(data)
        except ConfigError as exc:
            raise ConfigError({**exc.errors, **(errors or {})}) from None
        if errors:
            raise ConfigError(errors)
        return config

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> RunConfig:
        if not isinstance(data, Mapping):
            raise ConfigError({"config": f"must be a mapping, got {type(data).__name__}"})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                {name: f"unknown field; allowed: {', '.join(sorted(known))}" for name in unknown}
            )
        values = dict(data)
        for name in ("objectives", "weights"):
            if isinstance(values.get(name), str):
                parts = [p.strip() for p in values[name].split(",") if p.strip()]
                values[name] = parts
        if values.get("objectives") is not None:
            values["objectives"] = tuple(values["objectives"])
        if values.get("weights") is not None:
            try:
                values["weights"] = tuple(float(x) for x in values["weights"])
            except (TypeError, ValueError):
                raise ConfigError(
                    {"weights": f"must be numbers, got {values['weights']!r}"}
                ) from None
        if "options" in values and isinstance(values["options"], Mapping):
            values["options"] = dict(values["options"])
        return cls(**values).validated()

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; ``from_dict(to_dict())`` round-trips."""
        data = dataclasses.asdict(self)
        data["objectives"] = list(self.objectives)
        data["weights"] = list(self.weights) if self.weights is not None else None
        data["options"] = dict(self.options)
        return data

    def replace(self, **changes: Any) -> RunConfig:
        """A validated copy with some fields changed."""
        return RunConfig.from_dict({**self.to_dict(), **changes})


def field_help() -> dict[str, str]:
    """Field name -> one-line help, for forms and CLI options."""
    return {f.name: f.metadata.get("help", "") for f in fields(RunConfig)}
