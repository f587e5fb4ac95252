"""Fronts for the app: the fixed reference point, indicators, fronts served by any method, KL
to the base per point, the Steer page's front and report, and the Fronts page's table. The
pure point choosers and degeneration flags live in :mod:`morl_core.app.points`.

Maximisation convention throughout: every objective maps to [0, 1], larger is better.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from morl_core.app.points import (  # noqa: F401  (pages reach them as fronts.*)
    Degeneration,
    Pick,
    degeneration,
    knee_point,
    nearest_preference,
    neighbour_index,
    pseudo_weight_pick,
)
from morl_core.app.serving import (
    ArtifactInfo,
    Progress,
    SharedSteerable,
    app_data_dir,
    noop,
    slug,
    ui_threads,
)


def reference_point(objectives: int | Sequence[str]) -> np.ndarray:
    """The fixed per-task reference point: 10% of each objective's range below its low end.

    Built-in objectives live in [0, 1]; an imported one (a TRL reward) on its own given or
    declared range (:func:`morl_core.objectives.front_bounds`, the same source ``morl front``
    uses). A bare count ``k`` means k objectives in [0, 1].
    """
    from morl_core.pareto import reference_point_from_bounds
    from morl_core.train_cli import REFERENCE_MARGIN

    if isinstance(objectives, int):
        low, high = np.zeros(objectives), np.ones(objectives)
    else:
        from morl_core.objectives import front_bounds

        names = list(objectives)
        try:
            low, high = front_bounds(names, allow_import=False)
        except ValueError:  # an imported objective this server may not import: its [0, 1] map
            low, high = np.zeros(len(names)), np.ones(len(names))
    return reference_point_from_bounds(low, high, REFERENCE_MARGIN)


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
    """HV, EU, sparsity, cardinality (and IGD/IGD+ where a true front is known) of a front dict."""
    from morl_core.pareto import summary

    points = np.asarray(front["points"], dtype=float)  # (P, K)
    k = points.shape[1]
    true = None
    names = list(front["objectives"])
    if k == 2:
        from morl_core.objectives import OBJECTIVES, true_front

        if all(OBJECTIVES.get(n) is not None and OBJECTIVES[n].kind == "synthetic" for n in names):
            try:
                true = true_front(names[0], names[1])
            except ValueError:
                true = None
    prefs = np.asarray(front.get("preferences") or [], dtype=float)
    return summary(
        points, reference_point(names), weights=prefs if prefs.size else None, true_front=true
    ).to_dict()


INTERVAL_DRAWS = 200  # parametric bootstrap draws for the HV / EU intervals


def indicator_intervals(
    front: Mapping[str, Any], level: float = 0.9, draws: int = INTERVAL_DRAWS, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """``level`` intervals of HV and EU from the evaluation's per-point standard errors.

    The protocol stores each point's mean and standard error over the held-out prompts
    (``stderr``); the points are redrawn from N(mean, stderr) ``draws`` times (fixed seed, so
    the page shows the same numbers every time) and HV / EU recomputed on each draw. Fronts
    without standard errors get no interval (an empty dict).
    """
    from morl_core.pareto import expected_utility, hypervolume

    points = np.asarray(front["points"], dtype=float)  # (P, K)
    stderr = np.asarray(front.get("stderr") or [], dtype=float)
    if stderr.shape != points.shape or not np.all(np.isfinite(stderr)):
        return {}
    draws = int(min(max(draws, 10), 2000))
    rng = np.random.default_rng(seed)
    ref = reference_point(list(front.get("objectives") or []) or points.shape[1])
    prefs = np.asarray(front.get("preferences") or [], dtype=float)
    hv, eu = [], []
    for _ in range(draws):
        noisy = np.clip(points + rng.normal(size=points.shape) * stderr, ref + 1e-9, None)
        hv.append(hypervolume(noisy, ref))
        if prefs.size:
            eu.append(expected_utility(noisy, prefs))
    tail = 100 * (1 - level) / 2
    out = {"hypervolume": tuple(float(x) for x in np.percentile(hv, [tail, 100 - tail]))}
    if eu:
        out["expected_utility"] = tuple(float(x) for x in np.percentile(eu, [tail, 100 - tail]))
    return out


def with_interval(value: float | None, interval: tuple[float, float] | None) -> str:
    """``0.815 [0.80, 0.83]`` (or ``n/a``)."""
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")


def front_for(
    info: ArtifactInfo, method: str | None = None, progress: Progress | None = None
) -> dict[str, Any]:
    """The evaluated front of ``info`` served by ``method`` (default: its own), with indicators.

    The shipped ``front.json`` is used when it matches; otherwise the front is evaluated once
    with the shared protocol on a private copy of the model (so no session waits on it) and
    cached under :func:`app_data_dir`, never written into the (possibly read-only) run folder.
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
    from morl_core.methods.common import load_steerable, read_config, snapshot
    from morl_core.policy import set_threads

    set_threads(ui_threads())
    steerable = load_steerable(info.run_dir, method=method)
    progress("generating and scoring held-out prompts at each preference", 0.3)
    data = snapshot(steerable, read_config(info.run_dir))
    data["method"] = method
    data["indicators"] = front_indicators(data)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data))
    tmp.replace(cache)
    progress("front ready", 1.0)
    return data


def front_cache_path(info: ArtifactInfo, method: str) -> Path:
    """Where the app caches the front of ``info`` served by ``method``."""
    return app_data_dir() / "fronts" / f"{slug(str(info.run_dir.resolve()))}.{method}.json"


def kl_to_base(
    shared: SharedSteerable, prompts: Sequence[str], texts: Sequence[str], weights
) -> float | None:
    """Monte-Carlo KL(policy || base) per token on sampled ``texts``; None when not cheap.

    Cheap for single-model servers (an adapter or a soup: one forward pass with and one
    without the adapter). Decoding-time mixtures (MOD: K models per token) and the base model
    itself return None. The texts were sampled with top-p, so this is an estimate.
    """
    steerable = shared.steerable
    policy = getattr(steerable, "policy", None)
    if policy is None or not hasattr(steerable, "choose") or not texts:
        return None
    import torch

    from morl_core.rl.losses import token_logprobs
    from morl_core.weights import check_weights

    tok = policy.tokenizer
    rows = []
    for prompt, text in zip(prompts, texts, strict=True):
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(" " + text, add_special_tokens=False)["input_ids"] if text else []
        rows.append((p_ids, c_ids))
    width = max(len(c) for _, c in rows)
    if width == 0:
        return None
    ids, mask, cmask = [], [], []
    total = max(len(p) for p, _ in rows) + width
    for p_ids, c_ids in rows:  # left-pad the prompt, right-pad the completion
        body = p_ids + c_ids + [policy.pad_id] * (width - len(c_ids))
        pad = total - len(body)
        ids.append([policy.pad_id] * pad + body)
        mask.append([0] * pad + [1] * (len(p_ids) + len(c_ids)) + [0] * (width - len(c_ids)))
        cmask.append([1] * len(c_ids) + [0] * (width - len(c_ids)))
    input_ids = torch.tensor(ids, device=policy.device)
    attention = torch.tensor(mask, device=policy.device)
    completion_mask = torch.tensor(cmask, dtype=torch.float32, device=policy.device)
    w = check_weights(weights, k=len(shared.objectives))
    with shared.replica() as replica, torch.no_grad():  # the same weights as every replica
        model = replica.policy.model
        model.set_adapter(replica.choose(w))
        logp, _ = token_logprobs(model, input_ids, attention, width)
        with model.disable_adapter():
            ref, _ = token_logprobs(model, input_ids, attention, width)
    per_token = ((logp - ref) * completion_mask).sum() / completion_mask.sum().clamp(min=1)
    return max(0.0, float(per_token))


# --- the Steer page's front, simplex map and report ------------------------------------------


def front_cached(info: ArtifactInfo, method: str) -> dict[str, Any] | None:
    """The front of ``info`` served by ``method`` if it is shipped or cached, else None."""
    shipped = info.run_dir / "front.json"
    if shipped.exists():
        data = json.loads(shipped.read_text())
        if data.get("method", info.method) == method:
            if "indicators" not in data:
                data["indicators"] = front_indicators(data)
            return data
    cache = front_cache_path(info, method)
    return json.loads(cache.read_text()) if cache.exists() else None


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
    from morl_core.app.figures import steer_front_figure, ternary_figure

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
    from morl_core.app.report import tradeoff_report

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
        """One row per front for the indicator table (HV and EU with their 90% intervals)."""
        out = []
        for s in self.series:
            ind, ci = s["indicators"], s.get("intervals") or {}
            out.append(
                {
                    "front": s["label"],
                    "HV [90%]": with_interval(ind.get("hypervolume"), ci.get("hypervolume")),
                    "EU [90%]": with_interval(
                        ind.get("expected_utility"), ci.get("expected_utility")
                    ),
                    "sparsity": ind.get("sparsity"),
                    "IGD+": ind.get("igd_plus"),
                    "on front": ind.get("cardinality"),
                    "points": ind.get("n_points"),
                }
            )
        return out

    def project(self, axes: Sequence[int]) -> FrontTable:
        """The same table on a subset of the objectives (rows keep their indices)."""
        axes = [int(a) for a in axes]
        series = [{**s, "points": np.asarray(s["points"])[:, axes]} for s in self.series]
        names = tuple(self.objectives[a] for a in axes)
        return FrontTable(names, series, self.points[:, axes], self.preferences, self.series_of)

    def figure(self, selected: int | None = None, picked: int | None = None, matrix: bool = False):
        """The overlay: 2-D zoomed to the data, 3-D, or for 4+ objectives a scatter matrix
        (``matrix``) or parallel coordinates; use :meth:`project` to plot 2 or 3 of them."""
        from morl_core.app.figures import highlight, overlay_fronts_figure, scatter_matrix_figure
        from morl_core.plots import front_3d_figure, parallel_coordinates_figure

        names = list(self.objectives)
        k = len(names)
        legend = [
            {**s, "label": f"{s['label']}  (HV {s['indicators'].get('hypervolume', 0):.3f}, "
                           f"EU {s['indicators'].get('expected_utility') or 0:.3f})"}
            for s in self.series
        ]  # fmt: skip
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
        fig.update_layout(height=540, clickmode="event+select",
                          legend={"orientation": "h", "y": -0.15, "yanchor": "top", "x": 0})  # fmt: skip
        return fig

    def neighbour(self, row: int) -> int | None:
        """The nearest other point of the same front (in objective space)."""
        rows = self.rows_of(int(self.series_of[row]))
        near = neighbour_index(self.points[rows], int(np.flatnonzero(rows == row)[0]))
        return None if near is None else int(rows[near])

    def describe(self, row: int) -> str:
        """``label, w = (...)`` of a row."""
        w = ", ".join(f"{x:.2f}" for x in self.preferences[row])
        return f"{self.series[int(self.series_of[row])]['label']}, w = ({w})"


def _short_label(info: ArtifactInfo, method: str) -> str:
    """``soups · demo`` / ``morlhf · run 1a2b3c`` (served by another method: ``mod · demo``)."""
    if info.source == "run":
        return f"{method} · run {info.run_dir.name[-6:]}"
    return f"{method} · demo"


def front_table(entries: Sequence[tuple[ArtifactInfo, str, Mapping[str, Any]]]) -> FrontTable:
    """Flatten ``(artifact, method, front)`` entries of one objective set into a table."""
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
                "intervals": indicator_intervals(front),
                "key": (info.key, method),
                "points": pts,
                "preferences": front["preferences"],
                "offset": offset,
                "indicators": front.get("indicators") or front_indicators(front),
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
    shared: SharedSteerable, weights: Sequence[float], *, n_prompts: int = 3, seed: int = 0
) -> PointInspection:
    """Generate for the first held-out prompts at ``weights``, score, and flag degeneration."""
    from morl_core.app.serving import STEER_DECODING, Generation, example_prompts, score_texts

    prompts = example_prompts(n_prompts)
    texts, _ = shared.generate(prompts, list(weights), seed=seed, **STEER_DECODING)
    scores = score_texts(shared.objectives, prompts, texts)
    gens = [
        Generation(p, t, {n: float(v) for n, v in zip(shared.objectives, row, strict=True)})
        for p, t, row in zip(prompts, texts, scores, strict=True)
    ]
    kl = kl_to_base(shared, prompts, texts, weights)
    return PointInspection(tuple(float(w) for w in weights), gens, degeneration(texts, kl))


def selected_row(state: Mapping[str, Any] | None) -> int | None:
    """The table row of the first clicked point in a plotly selection state, if any.

    Front traces carry their table row in ``customdata``; highlight and reference-point traces
    carry none, so clicking them selects nothing.
    """
    points = ((state or {}).get("selection") or {}).get("points") or []
    for point in points:
        data = point.get("customdata")
        if isinstance(data, list | tuple):
            data = data[0] if data else None
        if isinstance(data, int | float) and not isinstance(data, bool):
            return int(data)
    return None
