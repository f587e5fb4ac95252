"""Colour registries: one fixed colour per method and one per objective.

A name has the same colour on every page and in every exported figure. The registries are plain
dicts with a loud ``register_*`` (a duplicate raises). Names match case-insensitively; an unknown
name gets a fallback colour from a SHA-256 hash of the name (stable across processes).
"""

from __future__ import annotations

import hashlib

METHOD_COLORS: dict[str, str] = {
    "morlhf": "#1F77B4",
    "dynaopt": "#FF7F0E",
    "soups": "#2CA02C",
    "mod": "#D62728",
    "pmix": "#BCBD22",
    "ric": "#9467BD",
    "panacea": "#8C564B",
    "emorl": "#E377C2",
    "metapolicy": "#17BECF",
}
OBJECTIVE_COLORS: dict[str, str] = {  # Okabe-Ito plus Tol's muted colours, colour-blind safe
    "sentiment": "#E69F00",
    "nontoxic": "#009E73",
    "readability": "#56B4E9",
    "brevity": "#D55E00",
    "diversity": "#CC79A7",
    "relevance": "#0072B2",
    "formality": "#999933",
    "synth_a": "#882255",
    "synth_b": "#44AA99",
    "synth_c": "#332288",
}
FALLBACK_COLORS: tuple[str, ...] = (
    "#4E79A7",
    "#F28E2B",
    "#59A14F",
    "#E15759",
    "#76B7B2",
    "#EDC948",
    "#B07AA1",
    "#FF9DA7",
    "#9C755F",
    "#AF7AA1",
    "#6B6ECF",
    "#B5CF6B",
)
DOMINATED_COLOR = "#B0B0B0"
POSITIVE_COLOR, NEGATIVE_COLOR = "#2166AC", "#B2182B"  # the ends of the RdBu heatmap scale


def _key(name: str) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"name: expected a non-empty string, got {name!r}")
    return name.strip().lower()


def _register(registry: dict[str, str], kind: str, name: str, color: str) -> None:
    key = _key(name)
    if key in registry:
        raise ValueError(f"{kind} {name!r}: already has colour {registry[key]}, got {color}")
    if not (isinstance(color, str) and color.startswith("#") and len(color) == 7):
        raise ValueError(f"color: expected a hex colour like '#1F77B4', got {color!r}")
    int(color[1:], 16)  # raises ValueError on non-hex digits
    registry[key] = color


def register_method_color(name: str, color: str) -> None:
    """Give a new method a fixed colour; re-registering a name raises ``ValueError``."""
    _register(METHOD_COLORS, "method", name, color)


def register_objective_color(name: str, color: str) -> None:
    """Give a new objective a fixed colour; re-registering a name raises ``ValueError``."""
    _register(OBJECTIVE_COLORS, "objective", name, color)


def _fallback(name: str) -> str:
    digest = hashlib.sha256(_key(name).encode()).digest()
    return FALLBACK_COLORS[int.from_bytes(digest[:4], "big") % len(FALLBACK_COLORS)]


def method_color(name: str) -> str:
    """The fixed colour of a method (case-insensitive), or its deterministic fallback."""
    return METHOD_COLORS.get(_key(name)) or _fallback(name)


def objective_color(name: str) -> str:
    """The fixed colour of an objective (case-insensitive), or its deterministic fallback."""
    key = _key(name)
    base = key.split("(", 1)[0]  # brevity(target_words=20) is still brevity
    return OBJECTIVE_COLORS.get(key) or OBJECTIVE_COLORS.get(base) or _fallback(name)
