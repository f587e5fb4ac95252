"""Extra methods for worker processes: ``MORL_PLUGINS="pkg.mod_a,pkg.mod_b"``.

A worker is a fresh interpreter, so a method registered only in the submitting process is
unknown there. Each module named in ``MORL_PLUGINS`` is imported at worker start (and by the
job commands) and calls ``morl_core.methods.register(...)``; executors pass the variable on.
"""

from __future__ import annotations

import importlib
import re

from morl_core import settings

PLUGINS_ENV = settings.PLUGINS
_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_loaded: set[str] = set()


def plugin_modules(value: str | None = None) -> list[str]:
    """Module names in ``value`` (default: ``$MORL_PLUGINS``); malformed names raise ValueError."""
    raw = settings.plugins() if value is None else value
    names = [part.strip() for part in raw.split(",") if part.strip()]
    bad = [n for n in names if not _MODULE.match(n)]
    if bad:
        raise ValueError(f"{PLUGINS_ENV}: not module names: {bad} (expected 'pkg.mod,pkg.other')")
    return names


def load_plugins(value: str | None = None) -> list[str]:
    """Import each plugin module once; returns the modules imported by this call."""
    imported = []
    for name in plugin_modules(value):
        if name not in _loaded:
            importlib.import_module(name)
            _loaded.add(name)
            imported.append(name)
    return imported
