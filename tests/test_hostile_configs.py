"""Property-based sweep: hostile values for every RunConfig field and method option.

For each field a strategy draws values that can never be valid there (wrong JSON types, nested
containers, bools where counts belong, NaN/inf, out-of-range and huge integers, unknown names,
missing files). Whatever is drawn:

- ``RunConfig.from_dict`` raises :class:`ConfigError` (a ``ValueError``) naming the field;
- ``morl submit --config FILE`` and ``morl train --config FILE`` (called in this process) exit 2
  with the field named on stderr, no traceback, and nothing written to the data dir or --out;
- the same holds for the command-line flags, which reach the config as text.

``benchmarks/reliability_configs.py`` draws from the same strategies (seeded) at a larger count.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from morl_core import cli
from morl_core.checks import HUB_NAME, MAX_OBJECTIVES
from morl_core.config import (
    CHOICES,
    FLOAT_RANGES,
    ConfigError,
    RunConfig,
    int_ranges,
    target_modules_error,
)
from morl_core.config_cli import _convert
from morl_core.methods import METHODS
from morl_core.objectives import OBJECTIVES
from morl_core.prompts import available

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# --- hostile values, per kind of field ---
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
not_text = json_values.filter(lambda v: not isinstance(v, str))
not_number = json_values.filter(
    lambda v: isinstance(v, bool) or not isinstance(v, int | float)
)  # bools, None, text, containers
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
huge = st.sampled_from([2**63, 2**64, 10**30, -(2**63) - 1, 10**400])


def bad_integer(low: int, high: int) -> st.SearchStrategy:
    return st.one_of(
        not_number,
        st.floats(allow_nan=True, allow_infinity=True),  # 3.0 is no count either
        st.integers(max_value=low - 1),
        st.integers(min_value=high + 1),
        huge.filter(lambda v: not low <= v <= high),
    )


def bad_float(low: float, high: float) -> st.SearchStrategy:
    return st.one_of(
        not_number,
        non_finite,
        st.floats(max_value=low, exclude_max=True, allow_nan=False),
        st.floats(min_value=high, exclude_min=True, allow_nan=False),
        huge,
    )


def bad_name(allowed) -> st.SearchStrategy:
    return st.one_of(not_text, st.text(max_size=12).filter(lambda s: s not in allowed))


def bad_model() -> st.SearchStrategy:
    return st.one_of(
        not_text,
        st.just(""),
        st.text(max_size=20).filter(
            lambda s: (
                s != "embedded" and not HUB_NAME.fullmatch(s) and not Path(s).exists()
                if "\x00" not in s
                else True
            )
        ),
        st.text(alphabet="abc", min_size=1, max_size=8).map(lambda s: f"/nonexistent/{s}"),
        st.just("a" * 5000),
    )


def bad_objectives() -> st.SearchStrategy:
    names = st.sampled_from(list(OBJECTIVES))
    return st.one_of(
        not_text.filter(lambda v: not isinstance(v, list)),
        st.lists(names, max_size=1, unique=True),  # fewer than two
        st.lists(names, min_size=MAX_OBJECTIVES + 1, max_size=12, unique=True),  # too many
        names.map(lambda n: [n, n]),  # not distinct
        st.lists(not_text, min_size=2, max_size=3),  # not names
        st.tuples(names, not_text).map(list),  # ["sentiment", 3]
        st.text(alphabet="qxz_", min_size=1, max_size=8).map(lambda s: ["sentiment", s]),
    )


def bad_weights() -> st.SearchStrategy:
    return st.one_of(
        not_number.filter(lambda v: v is not None and not isinstance(v, str | list)),
        st.lists(not_number.filter(lambda v: not isinstance(v, str)), min_size=2, max_size=2),
        st.lists(st.floats(0, 1), min_size=0, max_size=5).filter(lambda w: len(w) != 2),
        st.tuples(non_finite, st.floats(0, 1)).map(list),
        st.tuples(st.floats(max_value=-1e-3), st.floats(1.001, 10)).map(list),
        st.lists(st.floats(0, 1), min_size=2, max_size=2).filter(lambda w: abs(sum(w) - 1) > 1e-3),
        st.tuples(huge, st.just(0)).map(list),
    )


def bad_prompt_set() -> st.SearchStrategy:
    shipped = set(available())
    return st.one_of(
        not_text,
        st.just(""),
        st.text(max_size=20).filter(lambda s: s.strip() not in shipped and s not in shipped),
        st.sampled_from(["/etc/passwd", "/etc/hostname", "../assets/prompts/x", "~/x.txt"]),
    )


def bad_options(method: str) -> st.SearchStrategy:
    """(method, options) pairs with one hostile option value or an unknown name."""
    spec = METHODS[method]
    choices = [
        st.tuples(
            st.just(method),
            st.dictionaries(
                st.text(max_size=8).filter(lambda k: k not in spec.options),
                json_values,
                min_size=1,
                max_size=2,
            ),
        )
    ]
    for key in spec.options:
        option = spec.options[key]
        if option.kind is int:
            values = bad_integer(*map(int, option.bounds()))
        elif option.kind is float:
            values = bad_float(*option.bounds())
        else:  # text; a path option names a missing folder or one outside the store
            values = st.one_of(
                not_text, st.sampled_from(["/etc", "/nonexistent/run", "no-such-run", "~root"])
            )
        choices.append(st.tuples(st.just(method), values.map(lambda v, key=key: {key: v})))
    return st.one_of(*choices)


FIELD_VALUES: dict[str, st.SearchStrategy] = {
    **{name: bad_integer(low, high) for name, (low, high) in int_ranges().items()},
    **{name: bad_float(low, high) for name, (low, high) in FLOAT_RANGES.items()},
    **{name: bad_name(allowed) for name, allowed in CHOICES.items()},
    "method": bad_name(set(METHODS)),
    "objectives": bad_objectives(),
    "model": bad_model(),
    "prompt_set": bad_prompt_set(),
    "weights": bad_weights(),
    "options": not_number.filter(lambda v: not isinstance(v, dict)),
    "lora_target_modules": st.one_of(
        not_text, st.text(max_size=12).filter(lambda s: target_modules_error(s) is not None)
    ),
}


def hostile_field() -> st.SearchStrategy:
    """(document, field that must be named): one hostile field on top of a valid config."""
    plain = st.one_of(
        *[st.tuples(st.just(name), values) for name, values in FIELD_VALUES.items()]
    ).map(lambda fv: ({fv[0]: fv[1]}, fv[0]))
    options = st.one_of(*[bad_options(m) for m in METHODS if METHODS[m].options]).map(
        lambda mo: ({"method": mo[0], "options": mo[1]}, "options")
    )
    unknown = st.text(min_size=1, max_size=10).filter(lambda k: k not in FIELD_VALUES)
    unknown_field = st.tuples(unknown, json_values).map(lambda kv: ({kv[0]: kv[1]}, kv[0]))
    not_a_mapping = not_number.filter(lambda v: not isinstance(v, dict)).map(
        lambda v: (v, "config")
    )
    return st.one_of(plain, options, unknown_field, not_a_mapping)


def names_field(errors: dict[str, str], field: str) -> bool:
    return any(key == field or key.startswith(field + ".") for key in errors)


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(argv)
    return code, err.getvalue()


def written(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*")] if folder.exists() else []


# --- the library ---
@SETTINGS
@given(case=hostile_field())
def test_from_dict_names_the_hostile_field(case):
    data, field = case
    try:
        RunConfig.from_dict(data)
    except ConfigError as exc:
        assert isinstance(exc, ValueError)
        assert names_field(exc.errors, field), (field, exc.errors)
        assert all("\n" not in message for message in exc.errors.values())
    else:
        raise AssertionError(f"accepted {data!r}")


@SETTINGS
@given(first=hostile_field(), second=hostile_field())
def test_two_hostile_fields_are_both_named(first, second):
    (a, field_a), (b, field_b) = first, second
    if not isinstance(a, dict) or not isinstance(b, dict) or {field_a, field_b} & {"options"}:
        return  # merging is only meaningful for two plain fields
    if field_a == field_b:
        return
    try:
        RunConfig.from_dict({**a, **b})
    except ConfigError as exc:
        assert names_field(exc.errors, field_a) and names_field(exc.errors, field_b), exc.errors
    else:
        raise AssertionError(f"accepted {a!r} {b!r}")


# --- the CLI, in this process ---
@settings(SETTINGS, max_examples=80)
@given(case=hostile_field())
def test_config_files_exit_2_name_the_field_and_write_nothing(case):
    data, field = case
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        config = tmp / "config.json"
        config.write_text(json.dumps(data))
        store, out = tmp / "store", tmp / "out"
        for argv in (
            ["submit", "--data-dir", str(store), "--config", str(config)],
            ["train", "--config", str(config), "--out", str(out)],
        ):
            code, err = run_cli(argv)
            assert code == 2, (argv[0], data, err)
            assert field in err and "Traceback" not in err, (argv[0], data, err)
        assert written(store) == [] and written(out) == []
        assert sorted(p.name for p in tmp.iterdir()) == ["config.json"]


FLAG_FIELDS = sorted(set(int_ranges()) | set(FLOAT_RANGES) | set(CHOICES) | {"method", "model"})


def as_flag_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@settings(SETTINGS, max_examples=80)
@given(
    case=st.sampled_from(FLAG_FIELDS).flatmap(
        lambda name: st.tuples(st.just(name), FIELD_VALUES[name])
    )
)
def test_flags_exit_2_name_the_field_and_write_nothing(case):
    name, value = case
    text = as_flag_text(value)
    if "\x00" in text:
        return  # argv cannot carry a NUL byte
    try:  # text that reads as a valid value of the field (as the CLI reads it) is no hostile flag
        RunConfig.from_dict({name: _convert(name, text)})
    except ConfigError:
        pass
    else:
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        flag = f"--{name.replace('_', '-')}={text}"
        for argv in (
            ["submit", "--data-dir", str(tmp / "store"), flag],
            ["train", flag, "--out", str(tmp / "out")],
        ):
            code, err = run_cli(argv)
            assert code == 2 and name in err and "Traceback" not in err, (argv, err)
        assert list(tmp.iterdir()) == []
