"""Pure plot builders: numpy data in, ``plotly.graph_objects.Figure`` out.

No I/O and no Streamlit. Objective values follow the project's **maximisation** convention
(larger is better), which is what "dominated" means in the front plots. Colours come from
:mod:`morl_core.colors` (one per method, one per objective; dominated points grey). Every point
trace carries the input's row indices in ``customdata``, so a click maps back to its point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from numpy.typing import ArrayLike

from morl_core.array_checks import as_matrix, as_vector
from morl_core.colors import (
    DOMINATED_COLOR,
    NEGATIVE_COLOR,
    POSITIVE_COLOR,
    method_color,
    objective_color,
)
from morl_core.pareto import non_dominated

# --- shared helpers --------------------------------------------------------------------------


def _names(names: Sequence[str], k: int, what: str = "objective_names") -> list[str]:
    if isinstance(names, str) or len(names) != k:
        got = repr(names) if isinstance(names, str) else f"{len(names)} names"
        raise ValueError(f"{what}: expected {k} names, got {got}")
    return [str(name) for name in names]


def _per_point(values: str | Sequence[str] | None, n: int, what: str, default: str) -> list[str]:
    if values is None or isinstance(values, str):
        return [default if values is None else values] * n
    if len(values) != n:
        raise ValueError(f"{what}: expected one entry per point ({n}), got {len(values)}")
    return [str(value) for value in values]


def _hover(points, names, methods, runs, preferences) -> list[str]:
    lines = []
    for i, point in enumerate(points):
        parts = [f"method: {methods[i]}"]
        if runs is not None:
            parts.append(f"run: {runs[i]}")
        if preferences is not None:
            parts.append("w = (" + ", ".join(f"{w:.2f}" for w in preferences[i]) + ")")
        parts += [f"{name}: {value:.4g}" for name, value in zip(names, point, strict=True)]
        lines.append("<br>".join(parts))
    return lines


def _front_inputs(points, objective_names, k, methods, runs, preferences):
    """Validate front-plot inputs; drop NaN rows (failed evaluations cannot be drawn)."""
    pts = as_matrix(points, "points", k=k, allow_nan_rows=True)  # (n, k)
    n = pts.shape[0]
    names = _names(objective_names, k)
    method_list = _per_point(methods, n, "methods", "points")
    run_list = None if runs is None else _per_point(runs, n, "runs", "")
    prefs = None
    if preferences is not None:
        prefs = as_matrix(preferences, "preferences", min_k=1)
        if prefs.shape[0] != n:
            raise ValueError(f"preferences: expected {n} rows (one per point), got {prefs.shape}")
    hover = _hover(pts, names, method_list, run_list, prefs)
    keep = ~np.isnan(pts).any(axis=1)  # (n,)
    return pts, names, method_list, hover, keep


def _groups(method_list: list[str], keep: np.ndarray) -> Iterable[tuple[str, np.ndarray]]:
    """(method, row indices) in order of first appearance, NaN rows left out."""
    for method in dict.fromkeys(method_list):
        rows = np.flatnonzero((np.array(method_list) == method) & keep)
        if rows.size:
            yield method, rows


# --- fronts ----------------------------------------------------------------------------------


def front_2d_figure(
    points: ArrayLike,
    objective_names: Sequence[str],
    *,
    methods: str | Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    preferences: ArrayLike | None = None,
    title: str | None = None,
) -> go.Figure:
    """2-D front per method: the front as a line, dominated points grey (maximisation).

    Args:
        points: Objective vectors, shape (n, 2); larger is better. NaN rows are not drawn.
        objective_names: The two objective names (x then y), used as axis titles.
        methods: One method name for all points, one per point, or None.
        runs: Optional run label per point, shown on hover.
        preferences: Optional preference per point, shape (n, k), shown on hover.
        title: Figure title.

    Returns:
        Per method a ``"<method> front"`` trace (non-dominated within that method, sorted by x,
        lines+markers) and, if any, a grey ``"<method> dominated"`` trace.
    """
    pts, names, method_list, hover, keep = _front_inputs(
        points, objective_names, 2, methods, runs, preferences
    )
    fig = go.Figure()
    for method, rows in _groups(method_list, keep):
        on_front = non_dominated(pts[rows])  # (m,)
        front_rows = rows[on_front][np.argsort(pts[rows[on_front], 0], kind="stable")]
        colour = method_color(method)
        for part, sub, mode, style in (
            ("front", front_rows, "lines+markers", {"color": colour, "size": 9}),
            ("dominated", rows[~on_front], "markers", {"color": DOMINATED_COLOR, "size": 7}),
        ):
            if sub.size:
                common = _point_trace(f"{method} {part}", method, style, sub, hover)
                fig.add_scatter(
                    x=pts[sub, 0], y=pts[sub, 1], mode=mode, line={"color": colour}, **common
                )
    fig.update_layout(
        title=title, xaxis_title=names[0], yaxis_title=names[1], legend_title="method"
    )
    return fig


def _point_trace(name: str, group: str, marker: dict, rows: np.ndarray, hover: list[str]):
    """The trace properties every front trace shares: name, group, marker and hover by row."""
    return {
        "name": name,
        "legendgroup": group,
        "marker": marker,
        "customdata": rows,
        "hovertext": [hover[i] for i in rows],
        "hoverinfo": "text",
    }


def front_3d_figure(
    points: ArrayLike,
    objective_names: Sequence[str],
    *,
    methods: str | Sequence[str] | None = None,
    runs: Sequence[str] | None = None,
    preferences: ArrayLike | None = None,
    title: str | None = None,
) -> go.Figure:
    """3-D front per method: non-dominated points in the method's colour, dominated grey.

    As :func:`front_2d_figure` with points (n, 3), but ``Scatter3d`` markers only: a surface
    through sparse front points would suggest policies that were never evaluated.
    """
    pts, names, method_list, hover, keep = _front_inputs(
        points, objective_names, 3, methods, runs, preferences
    )
    fig = go.Figure()
    for method, rows in _groups(method_list, keep):
        on_front = non_dominated(pts[rows])
        for part, mask, colour, size in (
            ("front", on_front, method_color(method), 5),
            ("dominated", ~on_front, DOMINATED_COLOR, 3),
        ):
            sub = rows[mask]
            if sub.size:
                marker = {"color": colour, "size": size}
                common = _point_trace(f"{method} {part}", method, marker, sub, hover)
                fig.add_scatter3d(
                    x=pts[sub, 0], y=pts[sub, 1], z=pts[sub, 2], mode="markers", **common
                )
    fig.update_layout(
        title=title,
        scene={"xaxis_title": names[0], "yaxis_title": names[1], "zaxis_title": names[2]},
        legend_title="method",
    )
    return fig


def parallel_coordinates_figure(
    points: ArrayLike,
    objective_names: Sequence[str],
    *,
    methods: str | Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Parallel coordinates for any k (one axis per objective, one line per point).

    Lines take their method's colour; NaN rows are not drawn. Parcoords has no legend, so the
    method -> colour key is appended to ``title``.
    """
    pts = as_matrix(points, "points", min_k=2, allow_nan_rows=True)  # (n, k)
    names = _names(objective_names, pts.shape[1])
    method_list = _per_point(methods, pts.shape[0], "methods", "points")
    keep = ~np.isnan(pts).any(axis=1)
    pts, method_list = pts[keep], [m for m, ok in zip(method_list, keep, strict=True) if ok]
    order = list(dict.fromkeys(method_list)) or ["points"]
    code = np.array([order.index(m) for m in method_list], dtype=float)  # (n,)
    steps = len(order)
    scale = []
    for i, method in enumerate(order):  # a stepwise scale: one flat colour band per method
        scale += [[i / steps, method_color(method)], [(i + 1) / steps, method_color(method)]]
    key = ", ".join(f'<span style="color:{method_color(m)}">{m}</span>' for m in order)
    fig = go.Figure(
        go.Parcoords(
            line={"color": code, "colorscale": scale, "cmin": 0, "cmax": max(steps - 1, 1)},
            dimensions=[{"label": name, "values": pts[:, j]} for j, name in enumerate(names)],
            customdata=np.flatnonzero(keep),
        )
    )
    fig.update_layout(title=f"{title} ({key})" if title else key)
    return fig


# --- relations -------------------------------------------------------------------------------


def correlation_heatmap_figure(
    matrix: ArrayLike,
    objective_names: Sequence[str],
    *,
    lower: ArrayLike | None = None,
    upper: ArrayLike | None = None,
    title: str | None = None,
    colorbar_title: str = "correlation",
) -> go.Figure:
    """Heatmap of a (K, K) matrix in [-1, 1] (correlations, gradient cosines), values on cells.

    Diverging RdBu scale centred at 0: red is negative (conflicting objectives), blue positive;
    NaN cells are labelled ``n/a``. ``lower``/``upper`` (K, K) confidence bounds, both or
    neither, are shown on hover.
    """
    z = as_matrix(matrix, "matrix", min_k=1, allow_nan_rows=True)
    k = z.shape[1]
    if z.shape[0] != k:
        raise ValueError(f"matrix: expected a square (K, K) array, got shape {z.shape}")
    names = _names(objective_names, k)
    text = [[("n/a" if np.isnan(v) else f"{v:.2f}") for v in row] for row in z]
    hover = [[f"{names[i]} vs {names[j]}: {text[i][j]}" for j in range(k)] for i in range(k)]
    if (lower is None) != (upper is None):
        raise ValueError("lower/upper: expected both confidence bounds or neither, got one")
    if lower is not None:
        lo = as_matrix(lower, "lower", k=k, allow_nan_rows=True)
        hi = as_matrix(upper, "upper", k=k, allow_nan_rows=True)
        hover = [
            [f"{hover[i][j]}<br>CI [{lo[i, j]:.2f}, {hi[i, j]:.2f}]" for j in range(k)]
            for i in range(k)
        ]
    diverging = {"colorscale": "RdBu", "zmid": 0, "zmin": -1, "zmax": 1}
    fig = go.Figure(go.Heatmap(z=z, x=names, y=names, text=text, texttemplate="%{text}"))
    fig.update_traces(hovertext=hover, hoverinfo="text", **diverging)
    fig.update_traces(colorbar={"title": {"text": colorbar_title}})
    fig.update_layout(title=title, xaxis_title="objective", yaxis_title="objective")
    fig.update_yaxes(autorange="reversed")
    return fig


def _edge_tuple(edge: object) -> tuple[str, str, float]:
    if hasattr(edge, "partial_correlation"):
        return str(edge.source), str(edge.target), float(edge.partial_correlation)
    if isinstance(edge, Mapping):
        return str(edge["source"]), str(edge["target"]), float(edge["partial_correlation"])
    source, target, weight = edge  # type: ignore[misc]
    return str(source), str(target), float(weight)


def dependency_graph_figure(
    edges: Iterable[object],
    objective_names: Sequence[str],
    *,
    title: str | None = None,
) -> go.Figure:
    """Draw the objective dependency graph (from :func:`morl_core.relations.dependency_graph`).

    Nodes sit on a fixed circle in the order of ``objective_names`` (so the picture does not
    jump between reruns), in their objective colours. An edge's colour is its sign (blue
    positive, red negative) and its width grows with |partial correlation|.

    Args:
        edges: ``Edge`` records, dicts with the same keys, or ``(source, target, weight)``.
        objective_names: All K objective names (objectives without edges are still drawn).
        title: Figure title.

    Returns:
        One line trace per edge and a final ``"objectives"`` marker trace.

    Raises:
        ValueError: If an edge names an objective missing from ``objective_names``.
    """
    names = [str(name) for name in objective_names]
    angle = np.pi / 2 - 2 * np.pi * np.arange(len(names)) / max(len(names), 1)
    xy = {name: (float(np.cos(a)), float(np.sin(a))) for name, a in zip(names, angle, strict=True)}
    fig = go.Figure()
    for edge in edges:
        source, target, weight = _edge_tuple(edge)
        for end in (source, target):
            if end not in xy:
                raise ValueError(f"edges: expected objectives from {names}, got {end!r}")
        (x0, y0), (x1, y1) = xy[source], xy[target]
        label = f"{source} - {target}: partial r = {weight:.2f}"
        line = {"color": POSITIVE_COLOR if weight > 0 else NEGATIVE_COLOR}
        line["width"] = 1 + 8 * abs(weight)
        hover = {"hovertext": [label] * 3, "hoverinfo": "text", "showlegend": False}
        fig.add_scatter(x=[x0, (x0 + x1) / 2, x1], y=[y0, (y0 + y1) / 2, y1], mode="lines")
        fig.update_traces(selector=-1, name=label, line=line, **hover)
    fig.add_scatter(
        x=[xy[n][0] for n in names],
        y=[xy[n][1] for n in names],
        mode="markers+text",
        text=names,
        textposition="top center",
        name="objectives",
        hoverinfo="text",
        marker={"size": 22, "color": [objective_color(n) for n in names]},
        showlegend=False,
    )
    hidden = {"visible": False, "range": [-1.4, 1.4]}
    fig.update_layout(title=title, xaxis=hidden, yaxis=hidden | {"scaleanchor": "x"})
    return fig


# --- training curves -------------------------------------------------------------------------

_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def hypervolume_curve_figure(
    curves: Mapping[str, tuple[ArrayLike, ArrayLike]],
    *,
    methods: Mapping[str, str] | None = None,
    ref: ArrayLike | None = None,
    x_title: str = "training step",
    title: str | None = None,
) -> go.Figure:
    """Hypervolume over training, one line per run.

    Args:
        curves: Run label -> ``(steps, hypervolume)``, two equal-length 1-D arrays.
        methods: Run label -> method name, for the colour (a missing label is its own method);
            runs of the same method share the colour and differ in dash style.
        ref: The task's reference point, shown in the y-axis title.
        x_title: X-axis title (e.g. ``"training samples"``).
        title: Figure title.
    """
    methods = methods or {}
    seen: dict[str, int] = {}
    fig = go.Figure()
    for label, (steps, values) in curves.items():
        x = as_vector(steps, f"curves[{label!r}] steps", min_k=0)
        y = as_vector(values, f"curves[{label!r}] hypervolume", k=x.shape[0])
        method = methods.get(label, label)
        dash = _DASHES[seen.get(method, 0) % len(_DASHES)]
        seen[method] = seen.get(method, 0) + 1
        line = {"color": method_color(method), "dash": dash}
        fig.add_scatter(x=x, y=y, mode="lines", name=str(label), legendgroup=method, line=line)
    y_title = "hypervolume"
    if ref is not None:
        ref_vec = as_vector(ref, "ref", min_k=1)
        y_title += " (ref = (" + ", ".join(f"{r:g}" for r in ref_vec) + "))"
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, legend_title="run")
    return fig


def preference_posterior_figure(
    particles,
    probabilities,
    objective_names: Sequence[str],
    estimate: Sequence[float],
    lower: Sequence[float] | None = None,
    upper: Sequence[float] | None = None,
    truth: Sequence[float] | None = None,
) -> go.Figure:
    """The posterior over preferences on the simplex, with the estimate (and its interval).

    ``particles`` (M, K) with ``probabilities`` (M,); ``estimate``, ``lower``, ``upper`` and
    ``truth`` (known in a simulation) are (K,). Two objectives: the density of the first weight
    on [0, 1] with the interval shaded. Three: a ternary map of the particles coloured by
    probability. More: one bar per objective with its interval as error bars.
    """
    pts = np.asarray(particles, dtype=float)  # (M, K)
    prob = np.asarray(probabilities, dtype=float)  # (M,)
    names = _names(objective_names, pts.shape[1])
    mean = np.asarray(estimate, dtype=float)
    blue, red = "#2C7BB6", "#B2182B"
    fig = go.Figure()
    if len(names) == 2:
        order = np.argsort(pts[:, 0])
        density = {"mode": "lines", "fill": "tozeroy", "line": {"color": blue}}
        fig.add_scatter(x=pts[order, 0], y=prob[order], name="posterior", **density)
        if lower is not None and upper is not None:
            fig.add_vrect(x0=lower[0], x1=upper[0], fillcolor=blue, opacity=0.12, line_width=0)
        fig.add_vline(x=mean[0], line_dash="dash", annotation_text=f"estimate {mean[0]:.2f}")
        if truth is not None:
            fig.add_vline(x=truth[0], line_dash="dot", line_color=red, annotation_text="truth")
        fig.update_layout(
            xaxis_title=f"weight on {names[0]} (1 - weight on {names[1]})",
            yaxis_title="posterior probability",
            xaxis_range=[0, 1],
        )
    elif len(names) == 3:
        particles_marker = {"size": 5, "color": prob, "colorscale": "Blues", "showscale": False}
        star = {"size": 14, "symbol": "star", "color": red}
        fig.add_scatterternary(a=pts[:, 0], b=pts[:, 1], c=pts[:, 2], marker=particles_marker)
        fig.add_scatterternary(a=[mean[0]], b=[mean[1]], c=[mean[2]], marker=star)
        fig.update_traces(mode="markers")
        fig.update_traces(selector=0, name="posterior", hoverinfo="skip")
        fig.update_traces(selector=1, name="estimate")
        axes = {f"{a}axis": {"title": {"text": n}} for a, n in zip("abc", names, strict=True)}
        fig.update_layout(ternary=axes)
    else:
        error = None
        if lower is not None and upper is not None:
            up, low = np.asarray(upper) - mean, mean - np.asarray(lower)
            error = {"type": "data", "array": up, "arrayminus": low}
        colours = [objective_color(n) for n in names]
        fig.add_bar(x=names, y=mean, error_y=error, name="estimate", marker_color=colours)
        fig.update_layout(yaxis_title="weight", yaxis_range=[0, 1])
    fig.update_layout(
        title="What your choices say about your preference",
        height=320,
        showlegend=False,
        margin={"l": 40, "r": 20, "t": 50, "b": 40},
    )
    return fig
