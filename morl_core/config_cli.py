"""What the ``morl`` commands share: RunConfig options -> a validated config, exit codes, tables.

``morl train`` and ``morl submit`` both build their config with :func:`config_from_args` from
the options :func:`add_config_options` generates: ``--field-name`` per ``RunConfig`` field and
``--option-name`` per declared method option (:data:`morl_core.options.METHOD_OPTIONS`).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from morl_core.checks import short_repr
from morl_core.config import PLATEAU_STEPS, ConfigError, RunConfig, default_steps, field_help
from morl_core.options import METHOD_OPTIONS

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
MAX_CONFIG_BYTES = 2**20  # a --config file is read whole


def table(rows: Sequence[Sequence[Any]], header: Sequence[str], rule: bool = True) -> str:
    """Left-aligned text columns under ``header`` (and a dashed rule under it)."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(row: Sequence[Any]) -> str:
        return "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    ruled = [line(["-" * w for w in widths])] if rule else []
    return "\n".join([line(header), *ruled, *map(line, rows)])


def method_options() -> dict[str, Any]:
    """Every declared method option by name (one flag serves all methods that declare it)."""
    return {key: option for declared in METHOD_OPTIONS.values() for key, option in declared.items()}


def add_config_options(parser: argparse.ArgumentParser) -> None:
    """``--field-name`` per ``RunConfig`` field, ``--option-name`` per method option, ``-o K=V``."""
    helps = field_help()
    group = parser.add_argument_group("run configuration (RunConfig)")
    methods = parser.add_argument_group("method options (see `morl methods`)")

    def flag(to: Any, name: str, dest: str, text: str) -> None:
        to.add_argument("--" + name.replace("_", "-"), dest=dest, metavar=name.upper(), help=text)

    for f in fields(RunConfig):
        if f.name != "options":
            default = f.default if f.default is not MISSING else None
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            if f.name == "steps":  # per method: where its learning curve flattened
                shown = ", ".join(f"{m} {n}" for m, n in PLATEAU_STEPS.items())
            flag(group, f.name, f"cfg_{f.name}", f"{helps[f.name]} (default: {shown})")
    for key, option in method_options().items():
        allowed = f"{option.allowed()} (default: {option.default!r})"
        flag(methods, key, f"opt_{key}", f"{option.help}; {allowed}")
    group.add_argument(
        "--option",
        "-o",
        dest="cfg_option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method option; VALUE is read as JSON when it "
        "parses (3, 0.5, true), else as text; repeat for several",
    )
    group.add_argument(
        "--config",
        dest="cfg_file",
        metavar="FILE.json",
        help="start from this JSON config; options given here override it",
    )


def _convert(name: str, raw: str) -> Any:
    """A flag's text as the field's type (int or float); other fields stay text."""
    if name == "weights":
        return None if raw.strip().lower() in ("", "none") else raw
    kind = type({f.name: f.default for f in fields(RunConfig)}.get(name))
    return _convert_option(kind, raw) if kind in (int, float) else raw


def _convert_option(kind: type, raw: str) -> Any:
    try:
        return kind(raw)
    except ValueError:
        return raw  # validation reports it by name, with the allowed values


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The validated ``RunConfig`` from parsed options (paths checked against the allow-list
    of ``--data-dir``); raises ConfigError naming every bad field."""
    errors: dict[str, str] = {}
    data: dict[str, Any] = {}
    if getattr(args, "cfg_file", None):
        data = _read_config_file(args.cfg_file)
    for f in fields(RunConfig):
        value = getattr(args, f"cfg_{f.name}", None)
        if f.name != "options" and value is not None:
            data[f.name] = _convert(f.name, value)
    items = getattr(args, "cfg_option", None) or []
    flagged = {
        key: _convert_option(option.kind, raw)
        for key, option in method_options().items()
        if (raw := getattr(args, f"opt_{key}", None)) is not None
    }
    merging = bool(items or flagged)
    options = data.get("options", {})
    if merging and not isinstance(options, dict):  # --option cannot merge into it
        errors["options"] = f"must be a JSON object, got {type(options).__name__}"
        options = {}
    options = {**options, **flagged} if merging else options
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            errors["options"] = f"expected KEY=VALUE, got {short_repr(item)}"
            continue
        try:
            options[key.strip()] = json.loads(value)
        except (ValueError, RecursionError):  # not JSON (or nested past the parser): text
            options[key.strip()] = value
    if merging:
        data["options"] = options
    if "steps" not in data and isinstance(method := data.get("method", RunConfig.method), str):
        data["steps"] = default_steps(method)  # the method's plateau budget
    return RunConfig.from_dict(data, errors, data_dir=getattr(args, "data_dir", None))


def _read_config_file(name: str) -> dict[str, Any]:
    """The JSON object in ``name``; anything else is a ``config`` field error."""
    try:
        path = Path(name)
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ConfigError(
                {"config": f"{name} is {size} bytes; a config file is at most {MAX_CONFIG_BYTES}"}
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if isinstance(exc, ConfigError):
            raise
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError({"config": f"cannot read {short_repr(name)}: {reason}"}) from None
    except RecursionError:
        raise ConfigError({"config": f"{short_repr(name)} is nested too deeply"}) from None
    if not isinstance(data, dict):
        raise ConfigError(
            {"config": f"{short_repr(name)} must hold a JSON object, got {type(data).__name__}"}
        )
    return data
