"""The Learn page's library calls: the taxonomy from the method registry, each method's
equation and real source, and the scalarisation tour (why linear scalarisation misses the
non-convex part of a front).
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from morl_core.methods import METHODS, get
from morl_core.methods.base import FAMILIES
from morl_core.objectives import true_front
from morl_core.scalarize import scalarize

# From shared/MORL.md's taxonomy: what each family trains and when the preference applies.
FAMILY_FACTS = {
    "A": ("one per preference", "at training"),
    "B": ("one", "at training (weights move)"),
    "C": ("one", "at inference (w is an input)"),
    "D1": ("K experts, served as one", "at inference, 1 pass per token"),
    "D2": ("K experts", "at inference, K passes per token"),
    "D3": ("K experts + shared head", "at inference, weights found by grid search"),
    "E": ("K experts + a meta-policy", "at inference, learned combination"),
}


# One equation per family (LaTeX), after shared/MORL.md; r_i in [0, 1], w on the simplex.
FAMILY_EQUATIONS = {
    "A": r"\max_\theta\; \mathbb{E}_{y\sim\pi_\theta}\big[f_w(r_1,\dots,r_K)\big]"
    r" - \beta\,\mathrm{KL}(\pi_\theta\,\|\,\pi_{\mathrm{ref}}),\quad"
    r" f_w \in \{\textstyle\sum_i w_i r_i,\ \sum_i w_i\log r_i,\ -\max_i w_i|z^*_i - r_i|\}",
    "B": r"w_t \leftarrow \mathrm{Exp3}(w_{t-1},\ \bar r - \bar r_a)\ \text{every few steps},\quad"
    r" \max_\theta \mathbb{E}\big[\textstyle\sum_i w_{t,i} r_i\big]",
    "C": r"\pi_\theta(y \mid x, w):\ \text{one policy, the preference is an input}",
    "D1": r"\theta(w) = \theta_0 + \textstyle\sum_i w_i\,\Delta\theta_i",
    "D2": r"\log \pi_w(y_t\mid x, y_{<t}) = \textstyle\sum_i w_i \log \pi_i(y_t\mid x, y_{<t})"
    r" - \log Z",
    "D3": r"h(w) = \textstyle\sum_i w_i\, h_i(x, y_{<t}),\quad"
    r" \pi_w(y_t) = \mathrm{softmax}(W_{\mathrm{head}}\, h(w))",
    "E": r"\alpha = g_\phi(w, x),\quad \pi_{w}(y\mid x) = \mathrm{combine}_\alpha"
    r"(\pi_1, \dots, \pi_K),\quad \max_\phi \mathbb{E}_w\big[w^\top r\big]",
}


# Methods whose maths differs from their family's equation, and what a reader must not miss.
METHOD_EQUATIONS = {
    "pmix": r"\pi_w(y_t\mid x, y_{<t}) = \textstyle\sum_i w_i\, \pi_i(y_t\mid x, y_{<t})",
}
METHOD_NOTES = {
    "emorl": (
        "EMORL's default mixing (after the final layer norm, with the shared bias-free linear "
        "head) is exactly MOD with weights a/sum(a) at temperature 1/sum(a), as in the EMORL "
        "authors' own code: D3 here is D2's geometric mixture up to temperature. The paper's "
        "token-level baseline is the arithmetic mixture sum_i w_i p_i (method `pmix`), and "
        "`mix_at=pre_norm` mixes before the final norm, a genuinely different level."
    ),
    "pmix": (
        "The arithmetic mixture of the experts' next-token probabilities: EMORL's token-level "
        "baseline. MOD (`mod`) is the geometric mixture; the two differ most at middle weights."
    ),
}


def method_equation(name: str, family: str) -> str | None:
    """The LaTeX equation to show for a method: its own, else its family's."""
    return METHOD_EQUATIONS.get(name, FAMILY_EQUATIONS.get(family))


def taxonomy() -> list[dict[str, str]]:
    """One row per registered method (taxonomy order): family, idea, cost, paper."""
    rows = []
    order = list(FAMILIES)
    specs = sorted(METHODS.items(), key=lambda item: order.index(item[1].family))
    for name, spec in specs:
        trained, applied = FAMILY_FACTS.get(spec.family, ("", ""))
        rows.append(
            {
                "family": f"{spec.family}. {FAMILIES.get(spec.family, '')}",
                "method": name,
                "idea": spec.summary,
                "models trained": trained,
                "preference applied": applied,
                "paper": spec.paper,
            }
        )
    return rows


def method_source(name: str) -> tuple[str, str]:
    """``(module docstring, full source)`` of a method's file, found with ``find_spec`` and read
    without importing it (the page does not load torch just to show code)."""
    spec = importlib.util.find_spec(get(name).module)
    if spec is None or not spec.origin:
        raise ValueError(f"cannot locate the source of method {name!r}")
    source = Path(spec.origin).read_text(encoding="utf-8")
    return ast.get_docstring(ast.parse(source)) or "", source


@dataclass(frozen=True)
class ScalarisationTour:
    """Which points of a non-convex front each scalarisation can reach."""

    objectives: tuple[str, str]
    front: np.ndarray  # (n, 2) the true front
    weights: np.ndarray  # (m, 2) swept preferences
    linear: np.ndarray  # (m,) index of the front point linear scalarisation picks per weight
    tchebycheff: np.ndarray  # (m,) the same for Tchebycheff


def scalarisation_tour(n_weights: int = 41) -> ScalarisationTour:
    """Each scalarisation's pick over swept preferences on the analytic non-convex front of
    ``synth_nature_nonconvex`` vs ``synth_city_nonconvex`` (``sqrt(x) + sqrt(y) = 1``): linear
    ``w . r`` always lands on an end, Tchebycheff walks along the whole curve."""
    names = ("synth_nature_nonconvex", "synth_city_nonconvex")
    front = true_front(*names, n=101)  # (n, 2)
    t = np.linspace(0.0, 1.0, n_weights)
    weights = np.stack([t, 1.0 - t], axis=1)
    linear = np.array([int(np.argmax(scalarize(front, w, "linear"))) for w in weights])
    tcheb = np.array(
        [int(np.argmax(scalarize(front, w, "tchebycheff", utopia=np.ones(2)))) for w in weights]
    )
    return ScalarisationTour(names, front, weights, linear, tcheb)
