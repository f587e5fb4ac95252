"""Run configuration: one frozen dataclass, validated once, with every bad field named.

Everything derives from :class:`RunConfig`: the Train form, the CLI options, a run folder's
``config.json``. ``RunConfig.from_dict`` is the one entry point for untrusted input; it reports
*every* bad field at once in a :class:`ConfigError`. Types are checked before any comparison
(``null``, ``true`` as a count, NaN, 10**30 are field errors), numbers against closed ranges.
Paths (a prompt file, a model folder, ``path="run"`` options) are made absolute once, checked to
exist and, from input, to lie under :func:`morl_core.jobs.paths.allowed_roots`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass, field, fields
from pathlib import Path
from typing import Any

from huggingface_hub import try_to_load_from_cache

from morl_core.objectives import OBJECTIVES
from morl_core.objectives.degeneration import GUARDS
from morl_core.objectives.registry import base_name, objective_errors
from morl_core.objectives.specs import split_specs
from morl_core.policy.lora import LORA_ALL_LINEAR
from morl_core.policy.model import EMBEDDED, _looks_like_path, embedded_model_path
from morl_core.policy.registry import MODELS
from morl_core.prompts import PROMPT_SUFFIXES, available, shipped_file

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
MAX_STEPS = 100_000
INT64_MAX = 2**63 - 1  # seeds are stored in SQLite and handed to numpy/torch as int64
MAX_OBJECTIVES = 8  # EMORL's grid search evaluates 3**K candidates per round
MAX_TEXT = 4096  # characters of any text field (names, paths)
HUB_CONTEXT = 4096  # context assumed for a hub model whose config is not cached; the worker checks
DEFAULT_CONTEXT = 1024  # what Policy.max_length assumes when a config names no context
MAX_MODEL_CONFIG_BYTES = 2**20
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
# Hugging Face repo ids: "name" or "org/name".
HUB_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}(/[A-Za-z0-9][A-Za-z0-9._-]{0,95})?$")


class ConfigError(ValueError):
    """Bad configuration. ``errors`` maps each bad field name to a message with allowed values."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        lines = [f"  {name}: {msg}" for name, msg in self.errors.items()]
        super().__init__("invalid run configuration:\n" + "\n".join(lines))


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters: an error message stays one short line."""
    try:
        text = repr(value)
    except ValueError:  # an int too long to print in decimal
        text = f"<{type(value).__name__} too large to print>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


def is_integer(value: Any) -> bool:
    """An ``int`` that is not a ``bool`` (JSON ``true`` is no count)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite ``int`` or ``float`` that is not a ``bool`` (ints of any size are finite)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return isinstance(value, int) or math.isfinite(value)


def host_threads() -> int:
    """The most torch threads a run may ask for: this host's CPU count."""
    return os.cpu_count() or 1


def int_ranges(model: Any = "embedded") -> dict[str, tuple[int, int]]:
    """Every integer field's closed range; ``threads`` follows the host, ``max_new_tokens``
    leaves one position of ``model``'s context for the prompt."""
    return {
        **INT_RANGES,
        "threads": (1, host_threads()),
        "max_new_tokens": (1, max(1, model_context(model) - 1)),
    }


# --- the model's context, read from its config.json without loading weights ---
def _context_from_config(path: Path) -> int:
    try:
        stat = path.stat()
    except OSError:
        return HUB_CONTEXT
    return _context_cached(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=64)
def _context_cached(path: str, _mtime: int, size: int) -> int:
    if size > MAX_MODEL_CONFIG_BYTES:
        return HUB_CONTEXT
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return HUB_CONTEXT
    if not isinstance(data, dict):
        return HUB_CONTEXT
    # the keys Policy.max_length reads, in its order
    for key in ("n_positions", "max_position_embeddings"):
        value = data.get(key)
        if is_integer(value) and 2 <= value <= 10**7:
            return value
    return DEFAULT_CONTEXT


def model_context(model: Any) -> int:
    """Positions in ``model``'s context, from its ``config.json`` (local, or the hub cache);
    :data:`HUB_CONTEXT` when unknown (the worker checks)."""
    if not isinstance(model, str) or not model or len(model) > MAX_TEXT or "\0" in model:
        return HUB_CONTEXT
    if model == EMBEDDED:
        return _context_from_config(embedded_model_path() / "config.json")
    if _model_is_path(model):
        return _context_from_config(resolve_path(model) / "config.json")
    if HUB_NAME.fullmatch(model):
        try:
            cached = try_to_load_from_cache(model, "config.json")
        except Exception:  # noqa: BLE001 - any cache trouble means "unknown", not an error
            cached = None
        if isinstance(cached, str):
            return _context_from_config(Path(cached))
    return HUB_CONTEXT


def is_hub_name(model: Any) -> bool:
    """``model`` names a hub repository (not a registered name, not a local path)."""
    return (
        isinstance(model, str)
        and model not in MODELS
        and bool(HUB_NAME.fullmatch(model))
        and not _model_is_path(model)
    )


# --- paths: resolved once, checked to exist, and from input checked against the allow-list ---
def resolve_path(text: str | os.PathLike) -> Path:
    """``text`` absolute, ``~`` expanded, symlinks resolved; unresolvable stays as written
    (the existence check then reports it)."""
    path = Path(text)
    with contextlib.suppress(RuntimeError):  # ~user with no such user stays as written
        path = path.expanduser()
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return Path(os.path.abspath(path))


def _model_is_path(model: str) -> bool:
    if _looks_like_path(model):
        return True
    try:
        return Path(model).expanduser().exists()
    except (OSError, RuntimeError, ValueError):  # a name too long for the file system, ~user
        return False


def _is_path_text(value: Any) -> bool:
    return (
        isinstance(value, str)
        and bool(value.strip())
        and len(value) <= MAX_TEXT
        and "\0" not in value
    )


def _path_fields(values: Mapping[str, Any]) -> dict[str, str]:
    """The fields of config ``values`` that hold paths (``options.KEY`` for an option), by name;
    shipped prompt sets, the embedded model and hub ids are names, not paths."""
    prompt_set, model, options = (values.get(k) for k in ("prompt_set", "model", "options"))
    named = {}
    if _is_path_text(prompt_set) and shipped_file(prompt_set) is None:
        named["prompt_set"] = prompt_set
    if _is_path_text(model) and model != EMBEDDED and _model_is_path(model):
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


def _path_problem(kind: str, path: Path) -> str | None:
    """Why ``path`` cannot serve as ``kind`` ('prompts', 'model' or 'run'), or ``None``."""
    try:
        if kind == "prompts":
            if not path.is_file():
                return f"no prompt file at {path}; give a shipped set or a .txt / .jsonl file"
            return (
                None if path.suffix in PROMPT_SUFFIXES else f"{path} is not a .txt or .jsonl file"
            )
        if kind == "model" and path.is_file() and path.suffix.lower() == ".gguf":
            return None  # converted to a cached model folder when loaded
        if not path.is_dir():
            return f"no {kind} folder at {path}"
        if not (path / "config.json").is_file():
            return f"{path} is not a {kind} folder (no config.json)"
        return None
    except OSError as exc:  # e.g. a name longer than the file system allows
        return f"cannot use {short_repr(str(path))}: {exc.strerror or exc}"


# --- method options: declared once, here; validated by RunConfig; CLI flags and form widgets ---
DEFAULT_INT_RANGE = (-(2**31), 2**31 - 1)  # for a plugin's option declared without bounds
DEFAULT_FLOAT_RANGE = (-1e12, 1e12)
OPTION_KINDS = (int, float, str)
PATH_KINDS = ("", "run")


@dataclass(frozen=True)
class Option:
    """A method option: type, default, help, and the values it may take.

    Numbers lie in ``[low, high]`` (open ends with ``open_low``/``open_high``; undeclared bounds
    default to :data:`DEFAULT_INT_RANGE` / :data:`DEFAULT_FLOAT_RANGE`). Text is at most
    :data:`MAX_TEXT` characters and, with ``choices``, one of them. ``path="run"`` marks text
    naming a run folder, checked like the other path fields.
    """

    kind: type
    default: Any
    help: str
    _: KW_ONLY
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    open_high: bool = False
    choices: tuple[str, ...] = ()
    path: str = ""

    def __post_init__(self) -> None:
        if self.kind not in OPTION_KINDS or self.path not in PATH_KINDS:
            raise ValueError(
                f"an Option's kind must be int, float or str and its path one of {PATH_KINDS}, "
                f"got {self.kind!r}, {self.path!r}"
            )
        if self.error(self.default):
            raise ValueError(f"an Option's default {self.default!r} {self.error(self.default)}")

    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a numeric option."""
        low, high = DEFAULT_INT_RANGE if self.kind is int else DEFAULT_FLOAT_RANGE
        return (low if self.low is None else self.low, high if self.high is None else self.high)

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``an integer in [1, 20]`` or ``one of a, b``."""
        if self.choices:
            return f"one of {', '.join(self.choices)}"
        if self.kind is str:
            return f"text of at most {MAX_TEXT} characters"
        low, high = self.bounds()
        span = f"{'(' if self.open_low else '['}{low:g}, {high:g}{')' if self.open_high else ']'}"
        return f"{'an integer' if self.kind is int else 'a number'} in {span}"

    def error(self, value: Any) -> str | None:
        """Why ``value`` is not allowed (one line, with the allowed values), or ``None``."""
        if self.kind is str:
            fits = isinstance(value, str) and len(value) <= MAX_TEXT
            fits = fits and (not self.choices or value in self.choices)
        elif self.kind is int:
            fits = is_integer(value)
        else:
            fits = is_number(value)
        if fits and self.kind is not str:
            low, high = self.bounds()
            fits = (low < value if self.open_low else low <= value) and (
                value < high if self.open_high else value <= high
            )
        return None if fits else f"must be {self.allowed()}, got {short_repr(value)}"


EXPERTS_FROM = Option(str, "", "run folder whose experts to reuse instead of training", path="run")
RETRAIN = Option(
    str,
    "",
    "objectives whose experts this run trains itself though experts_from has them "
    "(comma-separated, e.g. brevity); the others are copied",
)
# Options of every registered method, by method name. The built-ins are declared here; a
# plugin's are added by ``morl_core.methods.register`` (see :func:`declare_options`).
_SHARE_EXPERTS = ("soups", "mod", "pmix", "emorl", "metapolicy")  # they take experts_from
METHOD_OPTIONS: dict[str, dict[str, Option]] = {
    m: {"experts_from": EXPERTS_FROM, "retrain": RETRAIN} if m in _SHARE_EXPERTS else {}
    for m in ("morlhf", "dynaopt", "soups", "mod", "pmix", "ric", "panacea", "emorl", "metapolicy")
}


def retrained(options: Mapping[str, Any]) -> list[str]:
    """The objectives named by option ``retrain`` (comma-separated text; none when absent)."""
    text = options.get("retrain", "")
    return [name.strip() for name in text.split(",") if name.strip()] if text else []


def _ranged(kind: type, default: str, span: str, help: str) -> Option:
    """A numeric Option from interval notation: ``(0, 1]`` allows 0 < x <= 1."""
    low, high = (kind(x) for x in span[1:-1].split(", "))
    ends = {"open_low": span[0] == "(", "open_high": span[-1] == ")"}
    return Option(kind, kind(default), help, low=low, high=high, **ends)


# method | option | type | default | range | help
for _row in f"""\
dynaopt | gamma | float | 0.2 | (0, 1] | Exp3 exploration rate
dynaopt | window | int | 2 | [1, {MAX_STEPS}] | steps between bandit updates
emorl | search_rounds | int | 5 | [1, 20] | hierarchical grid search rounds (each halves the box)
emorl | search_prompts | int | 8 | [1, 1024] | training prompts scored per candidate in the search
emorl | search_replies | int | 16 | [1, 64] | replies sampled per search prompt for each candidate
emorl | search_guard | float | 0 | [0, 10] | keep a = w unless beaten by this many paired SEs
ric | sft_updates | int | 1 | [1, 16] | supervised steps per round on the pool (the paper trains epochs)
panacea | preference_concentration | float | 1 | [0.05, 100] | training preferences ~ Dirichlet(it)
metapolicy | meta_steps | int | 0 | [0, {MAX_STEPS}] | RL steps of the upper level (0 = the run's steps)
metapolicy | meta_lr | float | 0 | [0, 1] | learning rate of the upper level (0 = the run's lr)
metapolicy | meta_hidden | int | 64 | [1, 4096] | attention width of the upper-level network
metapolicy | prior_eps | float | 0.01 | (0, 1) | eps of the preference prior log(w + eps)
metapolicy | score_bound | float | 1 | (0, 100] | bound B of the learned log-weight adjustment
""".splitlines():
    _method, _name, _kind, *_rest = _row.split(" | ")
    METHOD_OPTIONS[_method][_name] = _ranged({"int": int, "float": float}[_kind], *_rest)
METHOD_OPTIONS["emorl"]["mix_at"] = Option(
    str,
    "final",
    "mix after the final layer norm (= MOD up to temperature) or before it",
    choices=("final", "pre_norm"),
)
METHOD_OPTIONS["emorl"]["search_objective"] = Option(
    str,
    "reward_kl",
    "what the coefficient search maximises per sampled reply: reward_kl = w . r - kl_coef * "
    "KL to the base model (the experts' training objective), reward = w . r (the paper)",
    choices=("reward_kl", "reward"),
)


def declare_options(method: str, options: Mapping[str, Any]) -> Mapping[str, Option]:
    """Record ``method``'s options; ``ValueError`` for a non-Option or a changed built-in."""
    for key, option in options.items():
        if not isinstance(key, str) or not isinstance(option, Option):
            raise ValueError(f"option {key!r} of {method!r} must be an Option, got {option!r}")
    known = METHOD_OPTIONS.get(method)
    if known is not None and dict(known) != dict(options):
        raise ValueError(f"the options of {method!r} are declared in morl_core.config")
    METHOD_OPTIONS[method] = dict(options)
    return METHOD_OPTIONS[method]


def path_options(method: Any, options: Mapping[str, Any]) -> list[str]:
    """The keys of ``options`` that ``method`` declares as paths and that hold path text."""
    declared = METHOD_OPTIONS.get(method, {}) if isinstance(method, str) else {}
    return [
        key
        for key, value in options.items()
        if key in declared and declared[key].path and _is_path_text(value)
    ]


def option_errors(
    method: str, options: Mapping[str, Any], check_files: bool = True
) -> dict[str, str]:
    """Every bad option of ``method``, keyed ``options.NAME``: unknown, type, range, path."""
    declared = METHOD_OPTIONS[method]
    err = {}
    for key, value in options.items():
        option = declared.get(key)
        if option is None:
            allowed = ", ".join(declared) or "none"
            err[f"options.{key}"] = f"unknown option for {method}; allowed: {allowed}"
        elif (problem := option.error(value)) or (
            check_files
            and option.path
            and value
            and (problem := _path_problem(option.path, resolve_path(value)))
        ):
            err[f"options.{key}"] = problem
    return err


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
        elif self.model != EMBEDDED and _model_is_path(self.model):
            problem = _path_problem("model", resolve_path(self.model)) if check_files else None
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
            problem = _path_problem("prompts", resolve_path(self.prompt_set))
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
        return err

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
