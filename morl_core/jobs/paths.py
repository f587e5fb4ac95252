"""Where runs live: the data directory and generated, validated run ids.

A run id is generated here (UTC time + random hex) and checked against one pattern before it is
ever joined to a path, so no caller-supplied string can name a folder outside ``DATA/runs``.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from pathlib import Path

from morl_core import settings
from morl_core.policy.model import ASSETS

RUN_ID_PATTERN = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")
RUNS = "runs"
INDEX = "index.sqlite"


class RunIdError(ValueError):
    """A string that is not a run id (or names a folder outside the data directory)."""


def default_data_dir() -> Path:
    """``$MORL_DATA_DIR``, else ``$XDG_DATA_HOME/morl-studio``, else ``~/.local/share/morl-studio``."""
    return settings.data_dir()


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The absolute data directory: the argument, else :func:`default_data_dir`."""
    path = Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    return path.resolve()


def new_run_id(now: float | None = None) -> str:
    """A fresh id such as ``20260509-073512-a1b2c3d4`` (sortable by creation time)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(4)}"


def check_run_id(run_id: object) -> str:
    """Return ``run_id`` when it matches the id pattern, else raise :class:`RunIdError`."""
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise RunIdError(
            f"invalid run id {run_id!r}: expected YYYYMMDD-HHMMSS-xxxxxxxx (see `morl runs`)"
        )
    return run_id


def run_path(data_dir: Path, run_id: object) -> Path:
    """The folder of ``run_id`` under ``data_dir/runs``; anything else raises :class:`RunIdError`."""
    runs = (Path(data_dir) / RUNS).resolve()
    path = runs / check_run_id(run_id)
    # A symlinked run folder pointing elsewhere is refused as well.
    if path.exists() and path.resolve().parent != runs:
        raise RunIdError(f"run folder {path} resolves outside {runs}")
    return path


# --- which files a config may name: the allow-list, read here and nowhere else ---
ALLOWED_PATHS_ENV = settings.ALLOWED_PATHS


def allowed_roots(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Folders whose files a run config may name, resolved: the store (``data_dir``), the
    assets, and ``$MORL_ALLOWED_PATHS`` (set by whoever runs the server; input never can)."""
    roots = [resolve_data_dir(data_dir), Path(ASSETS).resolve()]
    return roots + settings.allowed_paths()


def outside_allowed(path: Path, data_dir: str | os.PathLike | None = None) -> str | None:
    """Why ``path`` (absolute, resolved) may not be read, or ``None`` when it is under a root."""
    roots = allowed_roots(data_dir)
    if any(path == root or path.is_relative_to(root) for root in roots):
        return None
    return (
        f"{path} is outside the folders runs may read ({', '.join(map(str, roots))}); "
        f"the person running the server can allow a folder with {ALLOWED_PATHS_ENV}=/that/folder"
    )
