"""Run configuration: one frozen dataclass, validated once, with every bad field named.

Everything derives from :class:`RunConfig`: the Train form, the CLI options, a run folder's
``config.json``. ``RunConfig.from_dict`` is the one entry point for untrusted input; it reports
*every* bad field at once in a :class:`ConfigError`. Types are checked before any comparison
(``null``, ``true`` as a count, NaN, 10**30 are field errors), numbers against closed ranges.
Paths (a prompt file, a model folder, ``path="run"`` options) are made absolute once, checked to
exist and, from input, to lie under :func:`morl_core.jobs.paths.allowed_roots`. The checks
the fields share are in :mod:`morl_core.checks`, each method's options in
:mod:`morl_core.options`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from morl_core.checks import (
    HUB_NAME,
    INT64_MAX,
    MAX_OBJECTIVES,
    MAX_STEPS,
    MAX_TEXT,
    ConfigError,
    host_threads,
    is_integer,
    is_number,
    is_path_text,
    model_context,
    model_is_path,
    path_problem,
    resolve_path,
    short_repr,
)
from morl_core.objectives import OBJECTIVES
from morl_core.objectives.degeneration import GUARDS
from morl_core.objectives.registry import base_name, objective_errors
from morl_core.objectives.specs import split_specs
from morl_core.options import METHOD_OPTIONS, option_errors, path_options, retrained
from morl_core.policy.lora import LORA_ALL_LINEAR
from morl_core.policy.model import EMBEDDED
from morl_core.prompts import available, shipped_file

SCALARIZATIONS = ("linear", "logsum", "tchebycheff")
ADVANTAGES = ("rloo", "kscst")
DEVICES = ("auto", "cpu", "cuda")
NORMALIZATIONS = ("fixed", "running")

# RL steps per trained policy at which each method's learning curve flattened on the default
# objectives (`python benchmarks/learning_curves.py`; docs/findings.md, "Training budgets").
# `morl train`, `morl submit` and the Train form start from these; RunConfig's own default (30)
# is a quick run. The experts of soups, mod, pmix, emorl and metapolicy share one budget;
# morlhf's middle preference was still rising at 200 steps, so 200 is a floor for it.
PLATEAU_STEPS = {"morlhf": 200, "dynaopt": 30, "ric": 30, "panacea": 90}
PLATEAU_STEPS |= dict.fromkeys(("soups", "mod", "pmix", "emorl", "metapolicy"), 130)


def default_steps(method: str) -> int:
    """The plateau budget of ``method`` (RunConfig's default for a method not measured)."""
    return PLATEAU_STEPS.get(method, RunConfig.steps)


# --- bounds: every number has a range, checked before anything is allocated ---
INT_RANGES: dict[str, tuple[int, int]] = {
    "steps": (1, MAX_STEPS),
    "seed": (0, INT64_MAX),
    "batch_prompts": (1, 256),
    "k_samples": (2, 64),
    "lora_r": (1, 256),
    "lora_alpha": (1, 1024),
    "n_preferences": (2, 128),
    "eval_prompts": (1, 1024),
    "eval_every": (0, MAX_STEPS),
    "checkpoint_every": (1, MAX_STEPS),
}
FLOAT_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (1e-3, 10.0),
    "top_p": (1e-3, 1.0),
    "lr": (1e-8, 1.0),
    "kl_coef": (0.0, 100.0),
    "grad_clip": (1e-6, 1e6),
    "fluency_penalty": (0.0, 10.0),
}
RANGE_NOTES = {
    "threads": " (at most this host's CPU count)",
    "max_new_tokens": " (the model's context minus one prompt token)",
}
CHOICES: dict[str, tuple[str, ...]] = {
    "device": DEVICES,
    "advantage": ADVANTAGES,
    "scalarization": SCALARIZATIONS,
    "normalization": NORMALIZATIONS,
    "fluency_guard": GUARDS,
}
MODULE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,95}")  # one module name: q_proj, c_attn
MAX_TARGET_MODULES = 64


def int_ranges(model: Any = "embedded") -> dict[str, tuple[int, int]]:
    """Every integer field's closed range; ``threads`` follows the host, ``max_new_tokens``
    leaves one position of ``model``'s context for the prompt."""
    return {
        **INT_RANGES,
        "threads": (1, host_threads()),
        "max_new_tokens": (1, max(1, model_context(model) - 1)),
    }


def _path_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """The fields of config ``values`` that hold paths (``options.KEY`` for an option), by name;
    shipped prompt sets, the embedded model and hub ids are names, not paths."""
    prompt_set, model, options = (values.get(k) for k in ("prompt_set", "model", "options"))
    named = {}
    if is_path_text(prompt_set) and shipped_file(prompt_set) is None:
        named["prompt_set"] = prompt_set
    if is_path_text(model) and model != EMBEDDED and model_is_path(model):
        named["model"] = model
    if isinstance(options, Mapping):
        for key in path_options(values.get("method"), options):
            named[f"options.{key}"] = options[key]
    return named


def _resolved_paths(values: dict[str, Any]) -> dict[str, Any]:
    """``values`` with every path field made absolute (names and hub ids stay as given)."""
    out = dict(values)
    if isinstance(out.get("options"), Mapping):
        out["options"] = dict(out["options"])
    for name, text in _path_fields(values).items():
        key = name.removeprefix("options.")
        (out if key == name else out["options"])[key] = str(resolve_path(text))
    return out


def target_modules_error(value: Any) -> str | None:
    """Why ``value`` is no ``lora_target_modules`` text (its form only: which names the model
    has is checked when it loads, by :func:`morl_core.policy.lora.target_module_names`)."""
    names = value.split(",") if isinstance(value, str) and len(value) <= MAX_TEXT else None
    if value == LORA_ALL_LINEAR or (
        names and len(names) <= MAX_TARGET_MODULES and all(map(MODULE_NAME.fullmatch, names))
    ):
        return None
    return (
        f"must be '{LORA_ALL_LINEAR}' or up to {MAX_TARGET_MODULES} comma-separated module "
        f"names without spaces (e.g. q_proj,v_proj), got {short_repr(value)}"
    )


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
    kl_coef: float = _help(
        "beta of E[r] - beta * KL(pi || ref), with the KL summed over a completion's tokens "
        "(nats per completion, not per token)",
        default=0.05,
    )
    fluency_penalty: float = _help(
        "subtract this times (1 - fluency) from each sample's scalarised reward "
        "(0 = off; fluency is 0 for punctuation runs, one-word loops, empty replies)",
        default=0.0,
    )
    fluency_guard: str = _help(
        "what fluency checks: 'lexical' (punctuation runs, loops, letter runs) or 'wordlist' "
        "(also made-up words: a reply with a share of words outside an English word list "
        "above 0.25)",
        default="lexical",
    )
    grad_clip: float = _help("gradient norm clip", default=2.0)
    advantage: str = _help(
        "'rloo' (leave-one-out baseline) or 'kscst' (mean of the k)", default="rloo"
    )
    lora_r: int = _help("LoRA rank", default=8)
    lora_alpha: int = _help("LoRA alpha", default=32)
    lora_target_modules: str = _help(
        "layers the LoRA adapters wrap: 'all-linear' or comma-separated module names "
        "(e.g. q_proj,v_proj), checked against the model's linear layers when it loads",
        default=LORA_ALL_LINEAR,
    )
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
    def errors(self, check_files: bool = True) -> dict[str, str]:
        """Every problem by field name (empty: valid); any value gives a message, never raises.

        With ``check_files`` the files the config names must exist.
        """
        err: dict[str, str] = {}
        names = ", ".join(sorted(METHOD_OPTIONS))
        if not isinstance(self.method, str):
            err["method"] = (
                f"must be a method name (text), got {short_repr(self.method)}; allowed: {names}"
            )
        elif self.method not in METHOD_OPTIONS:
            err["method"] = f"unknown method {short_repr(self.method)}; allowed: {names}"

        objs: tuple = ()
        allowed_objectives = ", ".join(OBJECTIVES)
        if isinstance(self.objectives, list | tuple):
            objs = tuple(self.objectives)
            bad = [o for o in objs if not isinstance(o, str) or not o or len(o) > 200]
            if bad:
                err["objectives"] = (
                    f"every entry must be an objective name, got {short_repr(bad[0])}"
                )
            elif len(objs) < 2:
                err["objectives"] = (
                    f"need at least two objectives, got {len(objs)}; allowed: {allowed_objectives}"
                )
            elif len(objs) > MAX_OBJECTIVES:
                err["objectives"] = f"need at most {MAX_OBJECTIVES} objectives, got {len(objs)}"
            elif len(set(objs)) != len(objs):
                err["objectives"] = f"objectives must be distinct, got {short_repr(list(objs))}"
            else:
                unknown = [o for o in objs if base_name(o) not in (None, *OBJECTIVES)]
                if unknown:
                    err["objectives"] = (
                        f"unknown {short_repr(unknown)}; allowed: {allowed_objectives}"
                    )
                elif problems := objective_errors(o for o in objs if o not in OBJECTIVES):
                    err["objectives"] = problems  # built-ins' settings; specs' syntax (no import)
        else:
            err["objectives"] = (
                f"must be a list of objective names, got {short_repr(self.objectives)}; "
                f"allowed: {allowed_objectives}"
            )

        model_ok = False
        if not isinstance(self.model, str) or not self.model.strip() or len(self.model) > MAX_TEXT:
            err["model"] = (
                f"must be 'embedded', a model folder or a hub name, got {short_repr(self.model)}"
            )
        elif "\0" in self.model:
            err["model"] = "must not contain a NUL character"
        elif self.model != EMBEDDED and model_is_path(self.model):
            problem = path_problem("model", resolve_path(self.model)) if check_files else None
            if problem:
                err["model"] = problem
            model_ok = problem is None
        elif self.model != EMBEDDED and not HUB_NAME.fullmatch(self.model):
            err["model"] = (
                f"must be 'embedded', a model folder or a hub name like org/name, "
                f"got {short_repr(self.model)}"
            )
        else:
            model_ok = True

        for name, (low, high) in int_ranges(self.model if model_ok else None).items():
            value = getattr(self, name)
            if not is_integer(value) or not low <= value <= high:
                extra = RANGE_NOTES.get(name, "")
                err[name] = f"must be an integer in [{low}, {high}]{extra}, got {short_repr(value)}"
        for name, (low, high) in FLOAT_RANGES.items():
            value = getattr(self, name)
            if not is_number(value) or not low <= value <= high:
                err[name] = f"must be a number in [{low:g}, {high:g}], got {short_repr(value)}"
        for name, allowed in CHOICES.items():
            value = getattr(self, name)
            if not isinstance(value, str) or value not in allowed:
                err[name] = f"must be one of {', '.join(allowed)}; got {short_repr(value)}"

        if problem := target_modules_error(self.lora_target_modules):
            err["lora_target_modules"] = problem
        elif self.method == "panacea" and self.lora_target_modules != LORA_ALL_LINEAR:
            err["lora_target_modules"] = (
                f"must be '{LORA_ALL_LINEAR}' for panacea (its SVD adapter wraps every linear "
                f"layer), got {short_repr(self.lora_target_modules)}"
            )

        if not isinstance(self.prompt_set, str) or not self.prompt_set.strip():
            err["prompt_set"] = (
                f"must be a shipped prompt set ({', '.join(available())}) or a .txt / .jsonl "
                f"file, got {short_repr(self.prompt_set)}"
            )
        elif len(self.prompt_set) > MAX_TEXT or "\0" in self.prompt_set:
            err["prompt_set"] = f"must be a name or a path of at most {MAX_TEXT} characters"
        elif check_files and shipped_file(self.prompt_set) is None:
            problem = path_problem("prompts", resolve_path(self.prompt_set))
            if problem:
                err["prompt_set"] = f"{problem} (shipped sets: {', '.join(available())})"

        if self.weights is not None:
            w = self.weights
            numbers = isinstance(w, list | tuple) and all(
                isinstance(x, int | float) and not isinstance(x, bool) for x in w
            )
            if not numbers:
                err["weights"] = f"must be numbers, one per objective, got {short_repr(w)}"
            elif "objectives" not in err and len(w) != len(objs):
                err["weights"] = f"need {len(objs)} weights (one per objective), got {len(w)}"
            elif any(not is_number(x) or not 0 <= x <= 1 for x in w):
                err["weights"] = (
                    f"must be finite and >= 0 (each in [0, 1]), got {short_repr(list(w))}"
                )
            elif abs(sum(w) - 1.0) > 1e-6:
                err["weights"] = f"must sum to 1 (a point on the simplex), got sum {sum(w):.6g}"

        if not isinstance(self.options, Mapping):
            err["options"] = f"must be a mapping, got {type(self.options).__name__}"
        elif not all(isinstance(k, str) for k in self.options):
            err["options"] = "option names must be text"
        elif "method" not in err:
            err.update(option_errors(self.method, self.options, check_files))
            if "options.retrain" not in err and "objectives" not in err:
                err.update(self._retrain_errors(objs))
            if "options.tags" not in err and "objectives" not in err:
                err.update(self._tag_errors(objs))
        return err

    def _tag_errors(self, objectives: tuple[str, ...]) -> dict[str, str]:
        """RiC's tags in words need every objective to have an adjective."""
        if self.method != "ric" or self.options.get("tags") != "words":
            return {}
        words = {name: o.adjective for name, o in OBJECTIVES.items() if o.adjective}
        missing = [o for o in objectives if base_name(o) not in words]
        if not missing:
            return {}
        return {
            "options.tags": f"'words' needs objectives with an adjective; "
            f"{short_repr(', '.join(missing))} {'has' if len(missing) == 1 else 'have'} none "
            f"(those with one: {', '.join(words)}); "
            f"use 'relaxed' for these objectives"
        }

    def _retrain_errors(self, objectives: tuple[str, ...]) -> dict[str, str]:
        """``options.retrain`` names objectives of this run, and only beside ``experts_from``."""
        names = retrained(self.options)
        if not names:
            return {}
        unknown = [name for name in names if name not in objectives]
        if unknown:
            return {
                "options.retrain": f"{short_repr(', '.join(unknown))} is not an objective of "
                f"this run; allowed: comma-separated names among {', '.join(objectives)}"
            }
        if not self.options.get("experts_from"):
            return {"options.retrain": "needs options.experts_from (the run to copy the rest from)"}
        return {}

    def outside_errors(self, data_dir: str | os.PathLike | None = None) -> dict[str, str]:
        """Path fields naming files outside :func:`~morl_core.jobs.paths.allowed_roots`.

        Paths are resolved first, so a symlink counts where it points.
        """
        # jobs/__init__ imports the executors, which import this module: read jobs.paths late
        from morl_core.jobs.paths import outside_allowed

        err = {}
        for name, text in _path_fields(vars(self)).items():
            if problem := outside_allowed(resolve_path(text), data_dir):
                err[name] = problem
        return err

    def resolved(self) -> RunConfig:
        """A copy whose path fields are absolute (resolved against the cwd); names stay names."""
        changed = _resolved_paths(values := vars(self))
        if all(changed[k] is values[k] or changed[k] == values[k] for k in values):
            return self
        return dataclasses.replace(self, **changed)

    def validated(self) -> RunConfig:
        """This config with absolute paths, or :class:`ConfigError` naming every bad field.

        The allow-list applies to input (:meth:`from_dict`), not to a config built in Python.
        """
        err = self.errors()
        if err:
            raise ConfigError(err)
        return self.resolved()

    # --- (de)serialisation ---
    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        errors: Mapping[str, str] | None = None,
        *,
        data_dir: str | os.PathLike | None = None,
        check_files: bool = True,
    ) -> RunConfig:
        """Build and validate a config from plain data (JSON, form values, CLI options).

        Relative paths are stored absolute. With ``check_files`` (input) the files must exist
        and lie under the allowed roots of ``data_dir``. ``errors`` (problems the caller found
        reading its input) are raised together with the field errors in one :class:`ConfigError`.
        """
        err: dict[str, str] = {}
        config = None
        if not isinstance(data, Mapping):
            err["config"] = f"must be a mapping of field names to values, got {type(data).__name__}"
        else:
            values, err = cls._values(data)
            config = cls(**values)
            # The allow-list first: a path outside it is refused without saying whether it exists.
            if check_files:
                err.update(config.outside_errors(data_dir))
            err.update({k: v for k, v in config.errors(check_files).items() if k not in err})
        err.update(errors or {})
        if err:
            raise ConfigError(err)
        return config

    @classmethod
    def _values(cls, data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
        """Known fields of ``data`` in the shapes the dataclass holds, and the unknown ones."""
        known = {f.name for f in fields(cls)}
        err = {
            str(name): f"unknown field; allowed: {', '.join(sorted(known))}"
            for name in data
            if name not in known
        }
        values = {k: v for k, v in data.items() if k in known}
        for name in ("objectives", "weights"):
            value = values.get(name)
            if isinstance(value, str) and name == "objectives":  # commas in a spec's (...) stay
                values[name] = split_specs(value)
            elif isinstance(value, str):  # "a,b" from a form or a flag
                values[name] = [p.strip() for p in value.split(",") if p.strip()]
        if isinstance(values.get("objectives"), list):
            values["objectives"] = tuple(values["objectives"])
        weights = values.get("weights")
        if isinstance(weights, list | tuple):
            values["weights"] = tuple(_number(x) for x in weights)
        if isinstance(values.get("options"), Mapping):
            values["options"] = dict(values["options"])
        return _resolved_paths(values), err

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


def _number(value: Any) -> Any:
    """A weight as a float ("0.5" from a comma list too); junk stays junk for the checks."""
    if (isinstance(value, str) and len(value) <= 64) or is_number(value):
        with contextlib.suppress(ValueError, OverflowError):  # an int past float range
            return float(value)
    return value


def field_help() -> dict[str, str]:
    """Field name -> one-line help, for forms and CLI options."""
    return {f.name: f.metadata.get("help", "") for f in fields(RunConfig)}
