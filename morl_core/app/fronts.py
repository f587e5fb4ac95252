"""Fronts for the app: reference point, indicators, fronts served by any method (evaluated once
and cached), KL to the base, the Steer page's front and report, and the Fronts page's table.

Maximisation convention throughout: every objective maps to [0, 1], larger is better.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morl_core import evaluation, settings
from morl_core.app.catalog import ArtifactInfo, app_data_dir, example_prompts, slug
from morl_core.app.figures import (
    highlight,
    overlay_fronts_figure,
    reward_kl_figure,
    scatter_matrix_figure,
    steer_front_figure,
    ternary_figure,
)
from morl_core.app.points import (  # noqa: F401  (pages reach them as fronts.*)
    Degeneration,
    Pick,
    degeneration,
    knee_point,
    nearest_preference,
    neighbour_index,
    pseudo_weight_pick,
)
from morl_core.app.report import tradeoff_report
from morl_core.app.serving import Generation, Progress, SharedSteerable, noop, score_texts
from morl_core.kl import kl_to_base as estimate_kl
from morl_core.plots import front_3d_figure, parallel_coordinates_figure
from morl_core.policy import set_threads
from morl_core.runfolder import write_json_atomic

reference_point = evaluation.reference_point  # the fixed per-task reference point


REFERENCE_EXPLAINED = (
    "Every objective maps to [0, 1], so the reference point sits 10% of that range below 0 on "
    "each axis: r = (-0.1, ..., -0.1). It is fixed per task, never derived from a front, so "
    "hypervolumes of different runs and methods can be compared; the margin keeps the "
    "single-objective extremes of a front contributing volume."
)


ON_SCREEN_NOTE = (
    "Diamond (on screen now): the mean scores of the replies shown above, on this one prompt. "
    "The front's points are means over the held-out prompt set, so the diamond can sit off "
    "the front: one prompt is easier or harder than the average."
)


def front_indicators(front: Mapping[str, Any]) -> dict[str, Any]:
    """A front's own indicators under the current protocol, else recomputed (no intervals)."""
    if evaluation.is_current(front) and front.get("indicators"):
        return dict(front["indicators"])
    return evaluation.front_indicators(front)


OLD_PROTOCOL = "old protocol"
# a demo may ship its base model's front (the evaluation of a larger model takes minutes)
BASE_FRONT = "base_front.json"


def protocol_label(front: Mapping[str, Any]) -> str:
    """The protocol version a front was evaluated under, or ``old protocol``."""
    return front.get("protocol_version") or OLD_PROTOCOL


def with_interval(value: float | None, interval: Sequence[float] | None) -> str:
    """``0.815 [0.80, 0.83]`` (or ``n/a``)."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def kl_range(front: Mapping[str, Any]) -> str:
    """KL to the base per token over a front's points: ``0.012-0.310`` (or ``n/a``)."""
    values = [v for v in front.get("kl_per_token") or [] if v is not None]
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    return f"{low:.3f}" if abs(high - low) < 5e-4 else f"{low:.3f}-{high:.3f}"


def front_for(
    info: ArtifactInfo, method: str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """The evaluated front of ``info`` served by ``method`` (default: its own), with indicators.

    The shipped ``front.json`` when it matches; otherwise evaluated once under the protocol and
    cached under :func:`app_data_dir` (the run folder may be read-only).
    """
    method = method or info.method
    progress = progress or noop
    cached = front_cached(info, method)
    if cached is not None:
        return cached
    with _FRONT_GUARD:
        lock = _FRONT_LOCKS.setdefault((str(info.run_dir), method), threading.Lock())
    with lock:  # many sessions asking at once: one evaluates, the others read its result
        cached = front_cached(info, method)
        return cached if cached is not None else _evaluate_front(info, method, progress)


_FRONT_GUARD = threading.Lock()
_FRONT_LOCKS: dict[tuple[str, str], threading.Lock] = {}


def _evaluate_front(info: ArtifactInfo, method: str, progress: Progress) -> dict[str, Any]:
    cache = front_cache_path(info, method)
    progress(f"evaluating the {method} front once (cached afterwards)", 0.1)
    set_threads(settings.ui_threads())
    progress("generating and scoring held-out prompts at each preference", 0.3)
    data = evaluation.evaluate_run(info.run_dir, method=method)
    _write_cache(cache, data)
    progress("front ready", 1.0)
    return data


def _write_cache(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, data)


def base_front(info: ArtifactInfo, progress: Progress | None = None) -> dict[str, Any]:
    """The base model (no adapter) on ``info``'s objectives, prompt set and preferences: the
    reference row of the Fronts page. Evaluated once, cached like a front; a demo's shipped
    :data:`BASE_FRONT` under the current protocol is used as it is."""
    shipped = evaluation.read_front(info.run_dir / BASE_FRONT)
    if shipped is not None and evaluation.is_current(shipped):
        return shipped
    from morl_core.methods.common import read_config  # imports torch

    config = read_config(info.run_dir)
    objectives = ",".join(config.objectives)
    key = slug(f"{config.model}|{config.prompt_set}|{objectives}|{config.n_preferences}")
    cache = app_data_dir() / "fronts" / f"base.{key}.json"
    if cache.exists():
        data = json.loads(cache.read_text())
        if evaluation.is_current(data):
            return data
    with _FRONT_GUARD:
        lock = _FRONT_LOCKS.setdefault((str(cache), "base"), threading.Lock())
    with lock:
        if cache.exists() and evaluation.is_current(data := json.loads(cache.read_text())):
            return data
        (progress or noop)("evaluating the base model once (cached afterwards)", 0.2)
        set_threads(settings.ui_threads())
        data = evaluation.evaluate_base(
            config.objectives, config.model, config.prompt_set, config.n_preferences
        )
        _write_cache(cache, data)
        return data


def front_cache_path(info: ArtifactInfo, method: str) -> Path:
    """Where the app caches the front of ``info`` served by ``method``."""
    return app_data_dir() / "fronts" / f"{slug(str(info.run_dir.resolve()))}.{method}.json"


def kl_to_base(
    shared: SharedSteerable, prompts: Sequence[str], texts: Sequence[str], weights
) -> float | None:
    """KL(policy || base) per token on sampled ``texts`` (the protocol's estimate), on a free
    replica, for every kind of steerable (about 0 for the base model); None under greedy
    decoding."""
    with shared.replica() as replica:
        found = estimate_kl(replica, prompts, texts, weights)
    return None if found is None else max(0.0, float(found[0].sum() / found[1].sum()))


# --- the Steer page's front, simplex map and report ------------------------------------------


def front_cached(info: ArtifactInfo, method: str) -> dict[str, Any] | None:
    """The front of ``info`` served by ``method`` if it is shipped or cached, else None.

    A front of the current protocol wins; a shipped one of an older protocol is still returned
    (shown as ``old protocol``) with its indicators recomputed.
    """
    is_current, read_front = evaluation.is_current, evaluation.read_front
    shipped = read_front(info.run_dir / "front.json")
    if shipped is not None and shipped.get("method", info.method) != method:
        shipped = None
    if shipped is not None and is_current(shipped):
        return shipped
    cached = read_front(front_cache_path(info, method))
    if cached is not None and is_current(cached):
        return cached
    if shipped is not None:
        shipped["indicators"] = front_indicators(shipped)
        return shipped
    return None


def steer_point(front: Mapping[str, Any], info: ArtifactInfo, method: str, weights, result):
    """One method's entry for the Steer figures: its front, the evaluated preference nearest
    to ``weights``, and the mean scores of the generations on screen."""
    return {
        "label": method if info.method == method else f"{method} (experts of {info.method})",
        "method": method,
        "points": front["points"],
        "preferences": front["preferences"],
        "nearest": nearest_preference(front["preferences"], weights),
        "now": [result.mean_scores[n] for n in info.objectives],
        "indicators": front.get("indicators") or front_indicators(front),
    }


def steer_figures(curves: Sequence[Mapping[str, Any]], names: Sequence[str], weights):
    """``(mini front, ternary map or None)`` for the Steer page."""
    fig = steer_front_figure(
        [{k: c[k] for k in ("label", "method", "points", "preferences")} for c in curves],
        names,
        nearest=[c["nearest"] for c in curves],
        now=[c["now"] for c in curves],
    )
    ternary = None
    if len(names) == 3:
        first = curves[0]
        ternary = ternary_figure(weights, names, first["preferences"], first["points"])
    return fig, ternary


def steer_report(info: ArtifactInfo, result, figure, indicators: Mapping[str, Any]) -> str:
    """The one-file trade-off report of what the Steer page shows."""
    flags = degeneration([g.text for g in result.generations]).flags
    return tradeoff_report(
        title=f"Trade-off: {', '.join(info.objectives)}",
        artifact=info.label,
        method=result.method,
        objectives=info.objectives,
        weights=result.weights,
        generations=result.generations,
        indicators=indicators,
        figure=figure,
        flags=flags,
        reference_note=REFERENCE_EXPLAINED,
    )


# --- the Fronts page -------------------------------------------------------------------------


@dataclass(frozen=True)
class FrontTable:
    """Several fronts of one objective set, flattened so a clicked row maps to its source.

    Attributes:
        objectives: Objective names.
        series: Per front: ``label``, ``method``, ``key``, ``points``, ``preferences``,
            ``offset`` (its first row in the flat arrays) and ``indicators``.
        points: (N, K) all points.
        preferences: (N, K) the preference each point was evaluated at.
        series_of: (N,) index into ``series`` per row.
    """

    objectives: tuple[str, ...]
    series: list[dict[str, Any]]
    points: np.ndarray
    preferences: np.ndarray
    series_of: np.ndarray

    def rows_of(self, s: int) -> np.ndarray:
        """Flat row indices of series ``s``."""
        return np.flatnonzero(self.series_of == s)

    def indicator_rows(self) -> list[dict[str, Any]]:
        """One row per front: HV and EU with their bootstrap intervals, KL to the base per
        token over its points, and the protocol it was evaluated under."""
        out = []
        for s in self.series:
            ind = s["indicators"]
            ci = ind.get("intervals") or {}
            out.append(
                {
                    "front": s["label"],
                    "HV [95% CI]": with_interval(ind.get("hypervolume"), ci.get("hypervolume")),
                    "EU [95% CI]": with_interval(
                        ind.get("expected_utility"), ci.get("expected_utility")
                    ),
                    "KL/token": s["kl_range"],
                    "sparsity": ind.get("sparsity"),
                    "IGD+": ind.get("igd_plus"),
                    "on front": ind.get("cardinality"),
                    "points": ind.get("n_points"),
                    "protocol": s["protocol"],
                }
            )
        return out

    def kl_figure(self):
        """Reward against KL to the base: each point's utility ``w . p`` at its own preference
        against its KL per token (methods compared at matched KL); None when no front has KL."""
        series = [
            {
                "label": s["label"],
                "method": s["method"],
                "kl": s["kl_per_token"],
                "utility": (np.asarray(s["points"]) * np.asarray(s["preferences"])).sum(1),
                "preferences": s["preferences"],
            }
            for s in self.series
        ]
        if not any(v is not None for s in series for v in s["kl"]):
            return None
        return reward_kl_figure(series)

    def project(self, axes: Sequence[int]) -> FrontTable:
        """The same table on a subset of the objectives (rows keep their indices)."""
        axes = [int(a) for a in axes]
        series = [{**s, "points": np.asarray(s["points"])[:, axes]} for s in self.series]
        names = tuple(self.objectives[a] for a in axes)
        return FrontTable(names, series, self.points[:, axes], self.preferences, self.series_of)

    def figure(self, selected: int | None = None, picked: int | None = None, matrix: bool = False):
        """The overlay: 2-D zoomed to the data, 3-D, or for 4+ objectives a scatter matrix
        (``matrix``) or parallel coordinates; use :meth:`project` to plot 2 or 3 of them."""
        names = list(self.objectives)
        k = len(names)
        legend = []
        for s in self.series:
            hv, eu = s["indicators"].get("hypervolume", 0), s["indicators"].get("expected_utility")
            legend.append({**s, "label": f"{s['label']}  (HV {hv:.3f}, EU {eu or 0:.3f})"})
        if k == 2:
            fig = overlay_fronts_figure(legend, names, ref=reference_point(names), zoom=True)
        elif k == 3:
            labels = [legend[s]["label"] for s in self.series_of]
            fig = front_3d_figure(self.points, names, methods=labels, preferences=self.preferences)
        elif matrix:
            return scatter_matrix_figure(legend, names, selected=selected)
        else:
            methods = [self.series[s]["method"] for s in self.series_of]
            return parallel_coordinates_figure(self.points, names, methods=methods)
        if picked is not None:
            highlight(fig, self.points[picked], "picked for you", names, "star")
        if selected is not None:
            highlight(fig, self.points[selected], "selected", names, "circle-open")
        legend = {"orientation": "h", "y": -0.15, "yanchor": "top", "x": 0}
        fig.update_layout(height=540, clickmode="event+select", legend=legend)
        return fig

    def neighbour(self, row: int) -> int | None:
        """The nearest other point of the same front (in objective space)."""
        rows = self.rows_of(int(self.series_of[row]))
        near = neighbour_index(self.points[rows], int(np.flatnonzero(rows == row)[0]))
        return None if near is None else int(rows[near])

    def describe(self, row: int) -> str:
        """``label, w = (...), KL x nats/token`` of a row."""
        w = ", ".join(f"{x:.2f}" for x in self.preferences[row])
        series = self.series[int(self.series_of[row])]
        kl = series["kl_per_token"][row - series["offset"]]
        tail = "" if kl is None else f", KL {kl:.3f} nats/token"
        return f"{series['label']}, w = ({w}){tail}"


def _short_label(info: ArtifactInfo, method: str) -> str:
    """``soups · demo`` / ``morlhf · run 1a2b3c`` (served by another method: ``mod · demo``)."""
    if method == "base":
        return "base model"
    if info.source == "run":
        return f"{method} · run {info.run_dir.name[-6:]}"
    return f"{method} · demo"


def front_table(entries: Sequence[tuple[ArtifactInfo, str, Mapping[str, Any]]]) -> FrontTable:
    """Flatten ``(artifact, method, front)`` entries of one objective set into a table.

    ``method == "base"`` marks the base model's front (:func:`base_front`).
    """
    series, points, prefs, owner = [], [], [], []
    offset = 0
    short = [_short_label(info, method) for info, method, _ in entries]
    for i, (info, method, front) in enumerate(entries):
        pts = np.asarray(front["points"], dtype=float)
        label = short[i] if short.count(short[i]) == 1 else f"{short[i]} ({info.run_dir.name})"
        series.append(
            {
                "label": label,
                "method": method,
                "source": info.source,
                "key": (info.key, method),
                "points": pts,
                "preferences": front["preferences"],
                "offset": offset,
                "indicators": front_indicators(front),
                "kl_per_token": list(front.get("kl_per_token") or [None] * len(pts)),
                "kl_range": kl_range(front),
                "protocol": protocol_label(front),
            }
        )
        points.append(pts)
        prefs.append(np.asarray(front["preferences"], dtype=float))
        owner += [i] * len(pts)
        offset += len(pts)
    return FrontTable(
        tuple(entries[0][0].objectives) if entries else (),
        series,
        np.concatenate(points) if points else np.zeros((0, 2)),
        np.concatenate(prefs) if prefs else np.zeros((0, 2)),
        np.asarray(owner, dtype=int),
    )


@dataclass(frozen=True)
class PointInspection:
    """What a policy at one front point writes, and how healthy that writing looks."""

    weights: tuple[float, ...]
    generations: list  # serving.Generation
    degeneration: Degeneration


def inspect_point(
    shared: SharedSteerable,
    weights: Sequence[float],
    *,
    n_prompts: int = 3,
    seed: int = 0,
    prompt_set: str = "default",
) -> PointInspection:
    """Generate for the first held-out prompts of ``prompt_set`` at ``weights``, score, and flag
    degeneration."""
    prompts = example_prompts(n_prompts, prompt_set)
    texts, _ = shared.generate_cached(prompts, list(weights), seed=seed, **shared.decoding)
    scores = score_texts(shared.objectives, prompts, texts)
    gens = [
        Generation(p, t, {n: float(v) for n, v in zip(shared.objectives, row, strict=True)})
        for p, t, row in zip(prompts, texts, scores, strict=True)
    ]
    kl = kl_to_base(shared, prompts, texts, weights)
    return PointInspection(tuple(float(w) for w in weights), gens, degeneration(texts, kl))


def selected_row(state: Mapping[str, Any] | None) -> int | None:
    """The table row (``customdata``) of the first clicked point in a plotly selection state;
    highlight and reference-point traces carry none, so clicking them selects nothing."""
    points = ((state or {}).get("selection") or {}).get("points") or []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        if isinstance(data, int | float) and not isinstance(data, bool):
            return int(data)
    return None
