"""Method options: declared once, here; validated by :class:`morl_core.config.RunConfig`; they
become the CLI's flags and the Train form's widgets.

Each option is an :class:`Option` (type, default, help, allowed values). The built-in methods'
options are declared below; a plugin method declares its own through
:func:`morl_core.methods.register` (:func:`declare_options`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

from morl_core.checks import (
    MAX_STEPS,
    MAX_TEXT,
    is_integer,
    is_number,
    is_path_text,
    path_problem,
    resolve_path,
    short_repr,
)

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
ric | offline_share | float | 0.5 | (0, 1] | share of the rounds the base model samples (offline stage)
panacea | preference_concentration | float | 1 | [0.05, 100] | training preferences ~ Dirichlet(it)
metapolicy | meta_steps | int | 0 | [0, {MAX_STEPS}] | RL steps of the upper level (0 = the run's steps)
metapolicy | meta_lr | float | 0 | [0, 1] | learning rate of the upper level (0 = the run's lr)
metapolicy | meta_hidden | int | 64 | [1, 4096] | attention width of the upper-level network
metapolicy | prior_eps | float | 0.01 | (0, 1) | eps of the preference prior log(w + eps)
metapolicy | score_bound | float | 1 | (0, 100] | bound B of the learned log-weight adjustment
metapolicy | preference_concentration | float | 1 | [0.05, 100] | upper-level preferences ~ Dirichlet(it)
""".splitlines():
    _method, _name, _kind, *_rest = _row.split(" | ")
    METHOD_OPTIONS[_method][_name] = _ranged({"int": int, "float": float}[_kind], *_rest)
METHOD_OPTIONS["emorl"]["mix_at"] = Option(
    str,
    "final",
    "mix after the final layer norm (= MOD up to temperature) or before it",
    choices=("final", "pre_norm"),
)
METHOD_OPTIONS["ric"]["tags"] = Option(
    str,
    "relaxed",
    "how target rewards are written before the prompt: relaxed = <name=value> for each "
    "objective below its best (the paper's tags), words = a request a chat model reads "
    "('Make your reply very formal and a little short.'; objectives need an adjective; "
    "see offline_tags)",
    choices=("relaxed", "words"),
)
METHOD_OPTIONS["ric"]["offline_tags"] = Option(
    str,
    "none",
    "what the base model is asked in the offline rounds: none = the plain prompt (the paper's "
    "offline data), drawn = the tags of the round's drawn preference (for a model that already "
    "reads them, such as a chat model given tags in words)",
    choices=("none", "drawn"),
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
        raise ValueError(f"the options of {method!r} are declared in morl_core.options")
    METHOD_OPTIONS[method] = dict(options)
    return METHOD_OPTIONS[method]


def path_options(method: Any, options: Mapping[str, Any]) -> list[str]:
    """The keys of ``options`` that ``method`` declares as paths and that hold path text."""
    declared = METHOD_OPTIONS.get(method, {}) if isinstance(method, str) else {}
    return [
        key
        for key, value in options.items()
        if key in declared and declared[key].path and is_path_text(value)
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
            and (problem := path_problem(option.path, resolve_path(value)))
        ):
            err[f"options.{key}"] = problem
    return err
