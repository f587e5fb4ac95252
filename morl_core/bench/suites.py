"""Benchmark suites: ``_default.json`` plus small per-suite overrides, validated by name.

A suite file in ``benchmarks/suites/`` names the objectives, prompt set, model, training budget
(RunConfig overrides), options of single methods (``method_options``), the number of evaluation
preferences, seeds and methods. Published suites are never edited in a way that changes a
recorded cell: change a copy under a new name, so old records stay comparable (giving options to a
method the suite has no records of yet leaves every record as it was). The
reference point, like every rule of evaluation, is the protocol's (:mod:`morl_core.evaluation`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import evaluation
from morl_core.config import ConfigError, RunConfig

SUITES_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "suites"
DEFAULT_FILE = "_default.json"


@dataclass(frozen=True)
class Suite:
    """One validated suite (defaults merged in)."""

    name: str
    description: str
    version: int
    objectives: tuple[str, ...]
    model: str
    prompt_set: str
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    preferences: int
    reference_point: tuple[float, ...]  # the protocol's, for the objectives (recorded)
    config: dict[str, Any] = field(default_factory=dict)
    # method -> its options in this suite (merged over config["options"]): the five-objective
    # suites search EMORL's coefficients one round deep (its grid grows as 3^K a round)
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    relationship: dict[str, Any] | None = None
    # evaluation rules this suite sets for itself (PROTOCOL_FIELDS), recorded in every record
    protocol: dict[str, Any] = field(default_factory=dict)

    def eval_protocol(self) -> evaluation.EvalProtocol:
        """The evaluation protocol with this suite's own samples / reply length."""
        return replace(evaluation.default_protocol(), **self.protocol)

    @property
    def synthetic(self) -> bool:
        return all(o.startswith("synth_") for o in self.objectives)

    def true_front(self) -> np.ndarray | None:
        """The analytic front of a two-objective synthetic suite, else None (the protocol's)."""
        return evaluation.true_front(self.objectives)

    def run_config(self, method: str, seed: int) -> RunConfig:
        """The validated RunConfig of one (method, seed) cell."""
        options = {**self.config.get("options", {}), **self.method_options.get(method, {})}
        return RunConfig.from_dict(
            {
                **self.config,
                **({"options": options} if options else {}),
                "method": method,
                "seed": seed,
                "objectives": list(self.objectives),
                "model": self.model,
                "prompt_set": self.prompt_set,
                "n_preferences": self.preferences,
            }
        )


KEYS = {f.name for f in fields(Suite)}  # the fields a suite file may set
# what a suite may change in the protocol: one-token problems need more samples per prompt and
# no 24-token continuation; everything else (prompts, seeds, indicators) stays the protocol's
PROTOCOL_FIELDS = ("samples", "max_new_tokens")


def available() -> list[str]:
    return sorted(p.stem for p in SUITES_DIR.glob("*.json") if p.name != DEFAULT_FILE)


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"suite file {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"suite file {path} must hold a JSON object")
    return data


def load_suite(name_or_path: str) -> Suite:
    """Load a suite by name (``benchmarks/suites/NAME.json``) or path; every bad field named."""
    path = Path(name_or_path)
    if not path.suffix:
        path = SUITES_DIR / f"{name_or_path}.json"
    if not path.is_file():
        raise ValueError(f"unknown suite {name_or_path!r}; available: {', '.join(available())}")
    defaults, data = _read(SUITES_DIR / DEFAULT_FILE), _read(path)
    merged = {
        **defaults,
        **data,
        "config": {**defaults.get("config", {}), **data.get("config", {})},
    }
    merged.setdefault("name", path.stem)
    return validate(merged)


def validate(data: dict[str, Any]) -> Suite:
    """A :class:`Suite` from merged data, or ``ValueError`` listing every bad field."""
    errors: dict[str, str] = {}
    for key in sorted(set(data) - KEYS):
        errors[key] = f"unknown suite field; allowed: {', '.join(sorted(KEYS))}"
    objectives = data.get("objectives")
    if (
        not isinstance(objectives, list)
        or len(objectives) < 2
        or not all(isinstance(o, str) for o in objectives)
    ):
        errors["objectives"] = f"need a list of two or more objective names, got {objectives!r}"
        objectives = ["?", "?"]
    for key in ("methods", "seeds"):
        value = data.get(key)
        if not isinstance(value, list) or not value:
            errors[key] = f"need a non-empty list, got {value!r}"
    seeds = data.get("seeds")
    if isinstance(seeds, list) and not all(isinstance(s, int) and s >= 0 for s in seeds):
        errors["seeds"] = f"seeds must be integers >= 0, got {seeds!r}"
    prefs = data.get("preferences")
    if not isinstance(prefs, int) or prefs < 2:
        errors["preferences"] = f"need an integer >= 2, got {prefs!r}"
    if data.get("reference_point") is not None:
        errors["reference_point"] = (
            "the reference point is the evaluation protocol's "
            "(morl_core.evaluation.reference_point); leave it null"
        )
    if not isinstance(data.get("config", {}), dict):
        errors["config"] = "must be an object of RunConfig fields"
    method_options = data.get("method_options", {})
    if not isinstance(method_options, dict) or not all(
        isinstance(m, str) and isinstance(o, dict) for m, o in method_options.items()
    ):
        errors["method_options"] = (
            f"an object of method name -> object of that method's options; got {method_options!r}"
        )
    elif unlisted := sorted(set(method_options) - set(data.get("methods") or [])):
        errors["method_options"] = (
            f"options for methods the suite does not run: {', '.join(unlisted)}"
        )
    protocol = data.get("protocol", {})
    if not isinstance(protocol, dict) or set(protocol) - set(PROTOCOL_FIELDS):
        errors["protocol"] = (
            f"an object with some of {', '.join(PROTOCOL_FIELDS)}; got {protocol!r}"
        )
    else:
        try:
            replace(evaluation.default_protocol(), **protocol)
        except (TypeError, ValueError) as exc:
            errors["protocol"] = str(exc)
    if errors:
        raise ConfigError(errors)
    suite = Suite(
        name=str(data["name"]),
        description=str(data.get("description", "")),
        version=int(data.get("version", 1)),
        objectives=tuple(objectives),
        model=str(data.get("model", "embedded")),
        prompt_set=str(data.get("prompt_set", "default")),
        methods=tuple(data["methods"]),
        seeds=tuple(data["seeds"]),
        preferences=prefs,
        reference_point=tuple(float(x) for x in evaluation.reference_point(objectives)),
        config=dict(data.get("config", {})),
        method_options={m: dict(o) for m, o in method_options.items()},
        relationship=data.get("relationship"),
        protocol=dict(protocol),
    )
    for method in suite.methods:  # every cell must make a valid RunConfig
        try:
            suite.run_config(method, suite.seeds[0])
        except ConfigError as exc:
            raise ConfigError(
                {f"{k} (method {method})": v for k, v in exc.errors.items()}
            ) from None
    return suite


def measure_relationship(
    objectives: tuple[str, ...],
    model: str = "embedded",
    prompt_set: str = "default",
    samples_per_prompt: int = 4,
    seed: int = 0,
) -> dict[str, Any]:
    """Correlation and class of an objective pair on the base model's own samples.

    Samples ``samples_per_prompt`` completions (24 tokens, temperature 1) for every training
    prompt, scores them, and classifies the pair with the default Spearman rule and a bootstrap
    confidence interval (see :mod:`morl_core.relations`).
    """
    from morl_core.objectives import score
    from morl_core.policy import load_policy
    from morl_core.prompts import load_prompts
    from morl_core.relations import classify_relations

    policy = load_policy(model)
    prompts = load_prompts(prompt_set, "train")
    texts = policy.generate(prompts, n=samples_per_prompt, seed=seed, max_new_tokens=24)
    asked = [p for p in prompts for _ in range(samples_per_prompt)]
    rewards = score(list(objectives), asked, texts)
    _, pairs = classify_relations(
        rewards, np.random.default_rng(seed), names=list(objectives), n_boot=1000
    )
    first = pairs[0]
    return {
        "method": "spearman",
        "samples": len(texts),
        "seed": seed,
        "coefficient": round(first.coefficient, 4),
        "ci95": [round(first.lower, 4), round(first.upper, 4)],
        "p_value": float(f"{first.p_value:.3g}"),
        "label": first.label,
        "pairs": [
            {
                "first": p.first,
                "second": p.second,
                "label": p.label,
                "coefficient": round(p.coefficient, 4),
            }
            for p in pairs
        ],
    }
