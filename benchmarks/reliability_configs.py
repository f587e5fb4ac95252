"""Reliability benchmark, hostile-config half: refused / tried, tracebacks, files written.

Generates N hostile configs (seeded; one or two bad fields on a valid config, or a document
that is not a mapping at all), writes each to a file and feeds it to ``morl submit --config``
in this process (``morl_core.cli.main``), with a fresh data directory per config. Counts:

- refused: exit code 2 with the bad field named on stderr;
- tracebacks: an exception escaped ``main`` or "Traceback" reached stderr (must be 0);
- written: refused configs that left any file or folder in the data directory (must be 0);
- accepted: configs that were not refused (must be 0: every config here is invalid).

Usage::

    python benchmarks/reliability_configs.py [--n 1000] [--seed 0] [--out benchmarks/results]

Writes ``reliability_configs.json`` (figures and the first failures) under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from morl_core import cli  # noqa: E402
from morl_core.checks import MAX_OBJECTIVES  # noqa: E402
from morl_core.config import CHOICES, FLOAT_RANGES, int_ranges  # noqa: E402
from morl_core.methods import METHODS  # noqa: E402
from morl_core.objectives import OBJECTIVES  # noqa: E402

HUGE = [2**63, 2**64, 10**30, -(2**63) - 1, 10**400]
NON_FINITE = [math.nan, math.inf, -math.inf]


# --- hostile values ---
def junk(rng: random.Random, depth: int = 0) -> Any:
    """Any JSON value: scalars of every type, nested lists and objects."""
    kind = rng.randrange(8 if depth < 3 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.choice([0, -1, 1, 7, *HUGE, rng.randint(-(10**12), 10**12)])
    if kind == 3:
        return rng.choice([0.5, -2.5, 1e300, *NON_FINITE])
    if kind in (4, 5):
        alphabet = "abc01 ./\\:_-~é\u202e\x00"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
    if kind == 6:
        return [junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {str(junk(rng, 3)): junk(rng, depth + 1) for _ in range(rng.randrange(3))}


def not_number(rng: random.Random) -> Any:
    while True:
        value = junk(rng)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value


def not_text(rng: random.Random) -> Any:
    while True:
        value = junk(rng)
        if not isinstance(value, str):
            return value


def bad_integer(rng: random.Random, low: int, high: int) -> Any:
    return rng.choice(
        [
            lambda: not_number(rng),
            lambda: float(rng.randint(low, high)),  # 3.0 is no count
            lambda: rng.choice(NON_FINITE),
            lambda: low - rng.randint(1, 10**6),
            lambda: high + rng.randint(1, 10**6),
            lambda: rng.choice([v for v in HUGE if not low <= v <= high]),
        ]
    )()


def bad_float(rng: random.Random, low: float, high: float, open_low: bool = False) -> Any:
    return rng.choice(
        [
            lambda: not_number(rng),
            lambda: rng.choice(NON_FINITE),
            lambda: low - rng.uniform(1e-6, 10) if not open_low else low,
            lambda: high + rng.uniform(1e-3, 1e6),
            lambda: rng.choice(HUGE),
        ]
    )()


def bad_name(rng: random.Random, allowed) -> Any:
    value = rng.choice([not_text(rng), "".join(rng.choice("xyz_-") for _ in range(6))])
    return None if isinstance(value, str) and value in allowed else value


def bad_objectives(rng: random.Random) -> Any:
    names = list(OBJECTIVES)
    return rng.choice(
        [
            lambda: not_text(rng) if rng.random() < 0.5 else None,
            lambda: rng.sample(names, 1),
            lambda: rng.sample(names, MAX_OBJECTIVES + 1),
            lambda: [names[0], names[0]],
            lambda: [names[0], not_text(rng)],
            lambda: [names[0], "no_such_objective"],
        ]
    )()


def bad_weights(rng: random.Random) -> Any:
    return rng.choice(
        [
            lambda: {"w": 1},
            lambda: [not_number(rng) or "x", 0.5],
            lambda: [0.2, 0.3, 0.5],
            lambda: [rng.choice(NON_FINITE), 0.5],
            lambda: [-0.5, 1.5],
            lambda: [0.3, 0.3],
            lambda: [rng.choice(HUGE), 0],
        ]
    )()


def bad_options(rng: random.Random) -> tuple[dict[str, Any], str]:
    method = rng.choice([m for m in METHODS if METHODS[m].options])
    spec = METHODS[method]
    key = rng.choice([*spec.options, "no_such_option"])
    if key == "no_such_option":
        value = junk(rng)
    else:
        option = spec.options[key]
        if option.kind is int:
            value = bad_integer(rng, int(option.low), int(option.high))
        elif option.kind is float:
            value = bad_float(rng, option.low, option.high, option.open_low)
        else:
            value = rng.choice([not_text(rng), "/etc", "/nonexistent/run", "no-such-run"])
    return {"method": method, "options": {key: value}}, "options"


def hostile_field(rng: random.Random) -> tuple[dict[str, Any], str]:
    """One hostile field: the document fragment and the field name that must be named."""
    ints, floats = int_ranges(), FLOAT_RANGES
    makers = {
        **{n: (lambda n=n: bad_integer(rng, *ints[n])) for n in ints},
        **{n: (lambda n=n: bad_float(rng, *floats[n])) for n in floats},
        **{n: (lambda n=n: bad_name(rng, CHOICES[n])) for n in CHOICES},
        "method": lambda: bad_name(rng, METHODS),
        "objectives": lambda: bad_objectives(rng),
        "model": lambda: rng.choice([not_text(rng), "", "a b", "/nonexistent/model", "../x"]),
        "prompt_set": lambda: rng.choice([not_text(rng), "", "/etc/passwd", "nope.txt", "~/x"]),
        "weights": lambda: bad_weights(rng),
    }
    roll = rng.random()
    if roll < 0.12:
        return bad_options(rng)
    if roll < 0.17:
        name = "".join(rng.choice("qwxz_") for _ in range(rng.randint(1, 8)))
        return {name: junk(rng)}, name
    field = rng.choice(sorted(makers))
    return {field: makers[field]()}, field


def hostile_document(rng: random.Random) -> tuple[Any, list[str]]:
    """A whole hostile config and the fields its refusal must name."""
    if rng.random() < 0.05:
        return rng.choice([[], "x", None, 3, [{"method": "soups"}], not_number(rng)]), ["config"]
    first, field = hostile_field(rng)
    if rng.random() < 0.3 and "options" not in first:
        second, other = hostile_field(rng)
        if "options" not in second and other != field:
            return {**first, **second}, [field, other]
    return first, [field]


# --- the run ---
def feed(document: Any, fields: list[str], workdir: Path) -> dict[str, Any]:
    """Submit one document through ``morl submit --config``; what happened."""
    config = workdir / "config.json"
    config.write_text(json.dumps(document))
    store = workdir / "store"
    out, err = io.StringIO(), io.StringIO()
    crashed = None
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main(["submit", "--data-dir", str(store), "--config", str(config)])
        except BaseException as exc:  # noqa: BLE001 - counting escapes is the point
            code, crashed = -1, "".join(traceback.format_exception(exc))
    stderr = err.getvalue()
    written = []  # the data directory itself counts: a refused config creates nothing
    if store.exists():
        written = ["store", *(str(p.relative_to(workdir)) for p in store.rglob("*"))]
    return {
        "code": code,
        "named": all(f in stderr for f in fields),
        "traceback": crashed is not None or "Traceback" in stderr,
        "written": written,
        "stderr": (crashed or stderr)[-400:],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="hostile configs to try")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts = {"tried": 0, "refused": 0, "unnamed": 0, "accepted": 0, "tracebacks": 0, "written": 0}
    failures: list[dict[str, Any]] = []
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.n):
            document, fields = hostile_document(rng)
            workdir = Path(tmp) / str(i)
            workdir.mkdir()
            seen = feed(document, fields, workdir)
            counts["tried"] += 1
            counts["refused"] += seen["code"] == 2
            counts["unnamed"] += seen["code"] == 2 and not seen["named"]
            counts["accepted"] += seen["code"] == 0
            counts["tracebacks"] += seen["traceback"]
            counts["written"] += bool(seen["written"]) and seen["code"] != 0
            bad = seen["code"] != 2 or not seen["named"] or seen["traceback"] or seen["written"]
            if bad and len(failures) < 20:
                failures.append({"document": repr(document)[:300], "fields": fields, **seen})
    seconds = time.perf_counter() - start
    record = {
        "benchmark": "reliability_configs",
        "seed": args.seed,
        **counts,
        "seconds": round(seconds, 2),
        "ms_per_config": round(1000 * seconds / max(1, counts["tried"]), 2),
        "failures": failures,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability_configs.json").write_text(json.dumps(record, indent=1))
    print(
        f"hostile configs refused {counts['refused']}/{counts['tried']} "
        f"(field not named: {counts['unnamed']}, accepted: {counts['accepted']}); "
        f"tracebacks {counts['tracebacks']}; files written by refused configs {counts['written']}; "
        f"{record['ms_per_config']} ms per config"
    )
    for failure in failures[:5]:
        print("  failure:", failure["document"], failure["fields"], failure["stderr"][-200:])
    ok = counts["refused"] == counts["tried"] and not counts["unnamed"]
    return 0 if ok and not counts["tracebacks"] and not counts["written"] else 1


if __name__ == "__main__":
    sys.exit(main())
