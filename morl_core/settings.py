"""Settings from the environment: every ``MORL_*`` variable is read here and nowhere else.

Set by whoever runs the app, the CLI or a worker; input (a config, a form) never can. Each
reader looks its variable up when called. Unset or empty means the default; a value that does
not parse or lies outside its bounds raises :class:`SettingsError` naming the variable.

=========================== ============================================= =====================
variable                    meaning                                       default (bounds)
=========================== ============================================= =====================
MORL_DATA_DIR               the job store (runs, index, app caches)       XDG data /morl-studio
MORL_CACHE_DIR              converted models (.gguf, wheels)              XDG cache /morl-studio
MORL_ASSETS                 embedded model, tokenizer, prompt sets        the repo's assets/
MORL_ALLOWED_PATHS          extra folders a config may name               none (os.pathsep list)
MORL_ALLOWED_IMPORTS        module prefixes objectives may import from    trl.rewards (commas)
MORL_THREADS                torch threads of a CLI / worker process       1 (1..1024)
MORL_EXECUTOR               where workers run: local or ray               local
MORL_MAX_WORKERS            local workers at once                         1 (1..1024)
MORL_WORKER_NICE            niceness a worker adds to itself (UI first)   10 (0..19)
MORL_MAX_RETRIES            resumes of a lost run before it fails         3 (0..1000)
MORL_HEARTBEAT_TIMEOUT      seconds of silence before a run is lost       30 (0.1..86400)
MORL_HEARTBEAT_S            seconds between a worker's heartbeats         1 (0.01..3600)
MORL_PLUGINS                modules a worker imports (extra methods)      none (commas)
MORL_RAY_PYTHON             interpreter on the Ray nodes                  this one
RAY_ADDRESS                 the Ray dashboard (the ray executor)          none
MORL_UI_MODELS              models the web UI may train on                embedded (commas)
MORL_UI_DEMO_MODELS         models whose shipped demos the UI lists       all (commas)
MORL_UI_ALLOW_IMPORT        "1": the UI may import dotted objectives      off
MORL_UI_IMPORTED_OBJECTIVES imported objectives the UI offers             TRL's two (";" list)
MORL_UI_THREADS             torch threads of the UI process               1 (1..1024)
MORL_UI_REPLICAS            copies of each model the UI keeps             1 (1..64)
MORL_BENCH_OUT              where benchmark records go                    DATA/bench
HF_HUB_OFFLINE              no hub downloads (checked before training)    off
=========================== ============================================= =====================
"""

from __future__ import annotations

import os
import sys
from functools import partial
from pathlib import Path

DATA_DIR = "MORL_DATA_DIR"
CACHE_DIR = "MORL_CACHE_DIR"
ASSETS = "MORL_ASSETS"
ALLOWED_PATHS = "MORL_ALLOWED_PATHS"
ALLOWED_IMPORTS = "MORL_ALLOWED_IMPORTS"
THREADS = "MORL_THREADS"
EXECUTOR = "MORL_EXECUTOR"
MAX_WORKERS = "MORL_MAX_WORKERS"
WORKER_NICE = "MORL_WORKER_NICE"
MAX_RETRIES = "MORL_MAX_RETRIES"
HEARTBEAT_TIMEOUT = "MORL_HEARTBEAT_TIMEOUT"
HEARTBEAT_S = "MORL_HEARTBEAT_S"
PLUGINS = "MORL_PLUGINS"
RAY_PYTHON = "MORL_RAY_PYTHON"
RAY_ADDRESS = "RAY_ADDRESS"
UI_MODELS = "MORL_UI_MODELS"
UI_DEMO_MODELS = "MORL_UI_DEMO_MODELS"
UI_ALLOW_IMPORT = "MORL_UI_ALLOW_IMPORT"
UI_IMPORTED_OBJECTIVES = "MORL_UI_IMPORTED_OBJECTIVES"
UI_THREADS = "MORL_UI_THREADS"
UI_REPLICAS = "MORL_UI_REPLICAS"
BENCH_OUT = "MORL_BENCH_OUT"
HF_OFFLINE = "HF_HUB_OFFLINE"

MAX_THREADS = 1024
REPO_ASSETS = Path(__file__).resolve().parents[1] / "assets"
TRUE_WORDS = ("1", "true", "yes", "on")


class SettingsError(ValueError):
    """An environment variable holds a value its setting does not allow."""


def text(name: str, default: str = "") -> str:
    """The variable's text, or ``default`` when it is unset or empty."""
    return os.environ.get(name) or default


def _number(name: str, default: float, low: float, high: float, kind: type) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # NaN fails the comparison too
        word = "an integer" if kind is int else "a number"
        raise SettingsError(f"{name}: must be {word} in [{low:g}, {high:g}], got {raw[:40]!r}")
    return value


def integer(name: str, default: int, low: int, high: int) -> int:
    """The variable as an integer in ``[low, high]``, or ``default`` when unset."""
    return int(_number(name, default, low, high, int))


def number(name: str, default: float, low: float, high: float) -> float:
    """The variable as a float in ``[low, high]``, or ``default`` when unset."""
    return float(_number(name, default, low, high, float))


def listed(name: str, separator: str = ",") -> list[str] | None:
    """The variable split on ``separator`` with blanks dropped; ``None`` when it is unset."""
    raw = os.environ.get(name)
    if raw is None:
        return None
    return [part.strip() for part in raw.split(separator) if part.strip()]


def _home_dir(name: str, xdg: str, fallback: tuple[str, ...]) -> Path:
    explicit = os.environ.get(name)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get(xdg) or Path.home().joinpath(*fallback)
    return Path(base).expanduser() / "morl-studio"


# --- folders ---
def data_dir() -> Path:
    """``$MORL_DATA_DIR``, else ``$XDG_DATA_HOME/morl-studio``, else ``~/.local/share/morl-studio``."""
    return _home_dir(DATA_DIR, "XDG_DATA_HOME", (".local", "share"))


def cache_dir() -> Path:
    """``$MORL_CACHE_DIR``, else ``$XDG_CACHE_HOME/morl-studio``, else ``~/.cache/morl-studio``."""
    return _home_dir(CACHE_DIR, "XDG_CACHE_HOME", (".cache",))


def assets_dir() -> Path:
    """``$MORL_ASSETS`` or the repository's ``assets/``."""
    return Path(text(ASSETS) or REPO_ASSETS)


def allowed_paths() -> list[Path]:
    """Extra folders a run config may name (``$MORL_ALLOWED_PATHS``), resolved."""
    return [Path(entry).expanduser().resolve() for entry in listed(ALLOWED_PATHS, os.pathsep) or []]


def bench_out(default: Path) -> Path:
    """Where benchmark records go: ``$MORL_BENCH_OUT`` or ``default``."""
    return Path(text(BENCH_OUT) or default)


def allowed_imports(default: tuple[str, ...]) -> tuple[str, ...]:
    """Module prefixes objectives may be imported from (``$MORL_ALLOWED_IMPORTS``)."""
    found = listed(ALLOWED_IMPORTS)
    return default if found is None else tuple(found)


# --- one reader per variable: the meaning, default and bounds are in the table above ---
threads = partial(integer, THREADS, 1, 1, MAX_THREADS)
executor = partial(text, EXECUTOR, "local")
max_workers = partial(integer, MAX_WORKERS, 1, 1, MAX_THREADS)
worker_nice = partial(integer, WORKER_NICE, 10, 0, 19)
max_retries = partial(integer, MAX_RETRIES, 3, 0, 1000)
heartbeat_timeout = partial(number, HEARTBEAT_TIMEOUT, 30.0, 0.1, 86400.0)
heartbeat_s = partial(number, HEARTBEAT_S, 1.0, 0.01, 3600.0)
plugins = partial(text, PLUGINS)  # parsed by morl_core.jobs.plugins
ray_address = partial(text, RAY_ADDRESS)
ray_python = partial(text, RAY_PYTHON, sys.executable)
ui_imported_objectives = partial(listed, UI_IMPORTED_OBJECTIVES, ";")  # None: use the default
ui_threads = partial(integer, UI_THREADS, 1, 1, MAX_THREADS)
ui_replicas = partial(integer, UI_REPLICAS, 1, 1, 64)


def hub_offline() -> bool:
    """Whether ``$HF_HUB_OFFLINE`` forbids hub downloads."""
    return text(HF_OFFLINE).lower() in TRUE_WORDS


def ui_models() -> tuple[str, ...]:
    """Models the web UI offers for training (``$MORL_UI_MODELS``, default embedded)."""
    return tuple(listed(UI_MODELS) or ()) or ("embedded",)


def ui_demo_models() -> tuple[str, ...] | None:
    """Models whose shipped demos the UI lists (``$MORL_UI_DEMO_MODELS``; None: every model).

    A server for a classroom lists only the embedded model's; the test suite does too, so that
    its pages do not depend on which larger demos are shipped.
    """
    return tuple(listed(UI_DEMO_MODELS) or ()) or None


def ui_allows_imports() -> bool:
    """Whether the operator switched on dotted-path objectives in the UI (``"1"``)."""
    return text(UI_ALLOW_IMPORT) == "1"


# Variables a worker on another machine (a Ray node) needs from the submitting process.
WORKER_ENV = ("PYTHONPATH", PLUGINS, HEARTBEAT_S, "HF_HOME", HF_OFFLINE, "TRANSFORMERS_OFFLINE")


def worker_env() -> dict[str, str]:
    """The :data:`WORKER_ENV` variables that are set here."""
    return {name: os.environ[name] for name in WORKER_ENV if os.environ.get(name)}
