"""Figure builders the app needs beyond :mod:`morl_core.plots` (pure: data in, Figure out).

Same rules as there: maximisation, one fixed colour per method and per objective, and
``customdata`` holding the caller's row indices. Also PNG export through kaleido (optional).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

from morl_core.colors import DOMINATED_COLOR, method_color, objective_color
from morl_core.pareto import non_dominated
from morl_core.plots import front_3d_figure, parallel_coordinates_figure

COMPACT = {"margin": {"l": 50, "r": 20, "t": 40, "b": 45}}
HIGHLIGHT = {"symbol": "star", "size": 18, "color": "#FFD000", "line": {"width": 1.5}}
_DASHES = ("solid", "dash", "dot", "dashdot")
_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "pentagon", "hexagon", "star-square")
SOURCE_DASH = {"demo": "dot", "run": "solid"}  # one dash per source, one colour per method
_TEXT = {"hoverinfo": "text"}


def _legend_below(y: float) -> dict:
    return {"legend": {"orientation": "h", "y": y, "yanchor": "top", "x": 0}}


def _values(names: Sequence[str], values: Sequence[float]) -> str:
    """``name: value`` lines for hover text."""
    return "<br>".join(f"{n}: {v:.3f}" for n, v in zip(names, values, strict=True))


def _w(weights: Sequence[float]) -> str:
    return "w = (" + ", ".join(f"{x:.2f}" for x in weights) + ")"


def overlay_fronts_figure(
    series: Sequence[Mapping[str, Any]],
    objective_names: Sequence[str],
    *,
    ref: Sequence[float] | None = None,
    title: str | None = None,
    zoom: bool = False,
) -> go.Figure:
    """Fronts of several runs/methods on one 2-D plot (maximisation).

    Args:
        series: One mapping per front: ``label``, ``method`` (for the colour), ``points``
            (P, 2), optional ``preferences`` (P, K), ``source`` (``demo`` / ``run``: the line
            dash) and ``offset`` (the caller's row index of its first point, for ``customdata``).
        objective_names: The two objective names (x, y).
        ref: The task's fixed reference point.
        title: Figure title.
        zoom: Axes fitted to the data, the reference point as an inset note (the Fronts page);
            otherwise fixed [r, 1] axes with the reference point drawn (comparable snapshots).

    Returns:
        Per series a ``"<label>"`` front trace (lines+markers, the method's colour, the source's
        dash, its own marker symbol so coinciding fronts stay visible) and a grey
        ``"<label> dominated"`` trace (not in the legend).
    """
    fig = go.Figure()
    seen: dict[str, int] = {}
    for index, s in enumerate(series):
        pts = np.asarray(s["points"], dtype=float)  # (P, 2)
        prefs = s.get("preferences")
        offset = int(s.get("offset", 0))
        colour = method_color(s["method"])
        if s.get("source") in SOURCE_DASH:
            dash = SOURCE_DASH[s["source"]]
        else:
            dash = _DASHES[seen.get(s["method"], 0) % len(_DASHES)]
        seen[s["method"]] = seen.get(s["method"], 0) + 1
        symbol = _SYMBOLS[index % len(_SYMBOLS)]
        on_front = non_dominated(pts)
        order = np.flatnonzero(on_front)[np.argsort(pts[on_front, 0], kind="stable")]
        with_w = prefs is not None and len(prefs)
        hover = [
            f"{s['label']}<br>"
            + (f"{_w(prefs[i])}<br>" if with_w else "")
            + _values(objective_names, pts[i])
            for i in range(len(pts))
        ]
        front_marker = {"color": colour, "size": 11, "line": {"width": 1, "color": "white"}}
        dominated_marker = {"color": DOMINATED_COLOR, "size": 9}
        for part, rows, mode, marker in (
            ("", order, "lines+markers", front_marker),
            (" dominated", np.flatnonzero(~on_front), "markers", dominated_marker),
        ):
            if rows.size:
                fig.add_scatter(
                    x=pts[rows, 0],
                    y=pts[rows, 1],
                    mode=mode,
                    name=s["label"] + part,
                    legendgroup=s["label"],
                    line={"color": colour, "dash": dash},
                    marker=marker | {"symbol": symbol},
                    customdata=rows + offset,
                    showlegend=part == "",
                    hovertext=[hover[i] for i in rows],
                    opacity=0.9,
                    **_TEXT,
                )
    if ref is not None and zoom:
        every = np.concatenate([np.zeros((0, 2))] + [np.asarray(s["points"]) for s in series])
        if len(every):
            low, high = every.min(0), every.max(0)
            pad = np.maximum(0.06 * (high - low), 0.02)
            fig.update_xaxes(range=[low[0] - pad[0], high[0] + pad[0]])
            fig.update_yaxes(range=[low[1] - pad[1], high[1] + pad[1]])
        ref_text = ", ".join(f"{float(x):g}" for x in ref)
        fig.add_annotation(
            text=f"HV reference point r = ({ref_text}), outside this zoomed view",
            xref="paper",
            yref="paper",
            x=0.01,
            y=0.01,
            xanchor="left",
            yanchor="bottom",
            showarrow=False,
            font={"size": 11, "color": "#555"},
            bgcolor="rgba(255,255,255,0.8)",
        )
    elif ref is not None:
        add_reference_point(fig, ref)
        # objectives live in [0, 1]: fixed axes keep snapshots and overlays comparable
        low = min(float(ref[0]), float(ref[1])) - 0.05
        fig.update_xaxes(range=[low, 1.05])
        fig.update_yaxes(range=[low, 1.05])
    names = {"xaxis_title": objective_names[0], "yaxis_title": objective_names[1]}
    fig.update_layout(title=title, **names, **_legend_below(-0.18), **COMPACT)
    return fig


def add_reference_point(fig: go.Figure, ref: Sequence[float]) -> go.Figure:
    """Draw the hypervolume reference point of a 2-D front (an x marker and dotted guides)."""
    rx, ry = float(ref[0]), float(ref[1])
    fig.add_scatter(
        x=[rx],
        y=[ry],
        mode="markers+text",
        name="reference point",
        marker={"symbol": "x", "size": 11, "color": "#444"},
        text=["r"],
        textposition="top right",
        hovertext=[f"reference point r = ({rx:g}, {ry:g})"],
        **_TEXT,
    )
    fig.add_hline(y=ry, line={"dash": "dot", "color": "#999", "width": 1})
    fig.add_vline(x=rx, line={"dash": "dot", "color": "#999", "width": 1})
    return fig


def highlight(
    fig: go.Figure,
    points: np.ndarray,
    label: str,
    names: Sequence[str],
    symbol: str = "star",
    color: str | None = None,
) -> go.Figure:
    """Add highlighted markers (2-D or 3-D) for ``points`` (n, k) under ``label``.

    The default colour is the highlight yellow; pass a method colour when several methods are
    highlighted at once (the black outline still marks them as highlights).
    """
    pts = np.atleast_2d(np.asarray(points, dtype=float))
    colour = color or HIGHLIGHT["color"]
    hover = {"hovertext": [f"{label}<br>{_values(names, p)}" for p in pts], **_TEXT}
    if pts.shape[1] == 3:
        outline = {"width": 2, "color": "#222"}
        marker = {"size": 7, "color": colour, "symbol": "diamond", "line": outline}
        fig.add_scatter3d(x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", marker=marker)
    else:
        marker = {**HIGHLIGHT, "symbol": symbol, "color": colour}
        fig.add_scatter(x=pts[:, 0], y=pts[:, 1], mode="markers", marker=marker)
    fig.update_traces(selector=-1, name=label, **hover)
    return fig


def steer_front_figure(
    fronts: Sequence[Mapping[str, Any]],
    objective_names: Sequence[str],
    *,
    nearest: Sequence[int] = (),
    now: Sequence[Sequence[float]] = (),
) -> go.Figure:
    """The Steer page's mini front: evaluated fronts, the evaluated point nearest to the
    current preference (star) and the current generations' mean scores (diamond).

    Args:
        fronts: One mapping per method: ``label``, ``method``, ``points`` (P, K),
            ``preferences`` (P, K).
        objective_names: K names.
        nearest: Per front, the index of the evaluated preference nearest to the current one.
        now: Per front, the mean scores of the generations on screen (K,).

    Returns:
        A 2-D overlay (K = 2), a 3-D scatter (K = 3) or parallel coordinates (K > 3).
    """
    k = len(objective_names)
    if k == 2:
        fig = overlay_fronts_figure(fronts, objective_names)
    else:
        pts = np.concatenate([np.asarray(f["points"], dtype=float) for f in fronts])
        methods = [f["method"] for f in fronts for _ in f["points"]]  # method colours
        if k > 3:
            return parallel_coordinates_figure(pts, objective_names, methods=methods)
        fig = front_3d_figure(pts, objective_names, methods=methods)
    for f, i in zip(fronts, nearest, strict=False):
        near = np.asarray(f["points"])[i]
        highlight(fig, near, f"{f['label']}: evaluated near your w", objective_names)
    for f, p in zip(fronts, now, strict=False):
        highlight(fig, np.asarray(p), f"{f['label']}: on screen now", objective_names, "diamond")
    fig.update_layout(height=360, title="Front (evaluated) and your preference", **COMPACT)
    return fig


def ternary_figure(
    weights: Sequence[float],
    objective_names: Sequence[str],
    preferences: Sequence[Sequence[float]] = (),
    points: Sequence[Sequence[float]] = (),
) -> go.Figure:
    """The preference simplex of three objectives: evaluated preferences and the current one.

    Evaluated preferences are coloured by how well their policy serves the current preference
    (linear utility ``w . r`` of their evaluated scores), so the map shows where on the
    simplex the good policies for you were trained.
    """
    names = list(objective_names)
    if len(names) != 3:
        raise ValueError(f"objective_names: the ternary map needs 3 objectives, got {len(names)}")
    w = np.asarray(weights, dtype=float)
    fig = go.Figure()
    if len(preferences):
        prefs = np.asarray(preferences, dtype=float)  # (P, 3)
        pts = np.asarray(points, dtype=float)  # (P, 3)
        colorbar = {"title": {"text": "w·r"}, "thickness": 12}
        fig.add_scatterternary(
            a=prefs[:, 0],
            b=prefs[:, 1],
            c=prefs[:, 2],
            mode="markers",
            name="evaluated preferences",
            marker={"size": 11, "color": pts @ w, "colorscale": "Viridis", "colorbar": colorbar},
            hovertext=[f"{_w(p)}<br>{_values(names, r)}" for p, r in zip(prefs, pts, strict=True)],
            **_TEXT,
        )
    fig.add_scatterternary(a=[w[0]], b=[w[1]], c=[w[2]], mode="markers", marker=HIGHLIGHT)
    fig.update_traces(selector=-1, name="your preference", hovertext=[f"your {_w(w)}"], **_TEXT)
    axes = {
        f"{axis}axis": {"title": {"text": name}, "color": objective_color(name)}
        for axis, name in zip("abc", names, strict=True)
    }
    fig.update_layout(
        ternary=axes, height=360, title="Preference simplex", showlegend=False, **COMPACT
    )
    return fig


def tour_figure(tour, index: int) -> go.Figure:
    """The scalarisation tour at swept preference ``index``: the non-convex front, what linear
    and Tchebycheff scalarisation pick there, and every point linear can ever reach."""
    front, w = tour.front, tour.weights[index]
    lin, tch = front[tour.linear[index]], front[tour.tchebycheff[index]]
    reach = np.unique(tour.linear)
    blue, red = "#1F77B4", "#D62728"
    fig = go.Figure()
    fig.add_scatter(x=front[:, 0], y=front[:, 1], mode="lines", name="true front")
    fig.update_traces(selector=-1, line={"color": "#999", "width": 3})
    reachable = {"size": 12, "color": blue, "symbol": "circle-open", "line": {"width": 3}}
    fig.add_scatter(x=front[reach, 0], y=front[reach, 1], mode="markers", marker=reachable)
    fig.update_traces(selector=-1, name="all linear can reach")
    # the linear utility's level line through its pick: w . r = w . lin
    level = float(w @ lin)
    xs = np.linspace(0, 1, 50)
    ys = (level - w[0] * xs) / w[1] if w[1] > 0 else np.full_like(xs, np.nan)
    fig.add_scatter(x=xs, y=ys, mode="lines", name="linear level line")
    fig.update_traces(selector=-1, line={"dash": "dash", "color": blue})
    # Tchebycheff's pick lies where the ray from the ideal point along -(1/w) meets the front
    direction = 1.0 / np.maximum(w, 1e-9)
    direction = direction / np.linalg.norm(direction)
    ray = np.array([[1.0, 1.0], [1.0, 1.0] - 1.5 * direction])
    fig.add_scatter(x=ray[:, 0], y=ray[:, 1], mode="lines", name="Tchebycheff ray")
    fig.update_traces(selector=-1, line={"dash": "dot", "color": red})
    for name, (x, y), marker in (
        ("ideal point", (1, 1), {"symbol": "x", "size": 10, "color": "#444"}),
        ("linear picks", lin, {"size": 16, "color": blue}),
        ("Tchebycheff picks", tch, {"size": 16, "color": red, "symbol": "diamond"}),
    ):
        fig.add_scatter(x=[x], y=[y], mode="markers", name=name, marker=marker)
    fig.update_layout(
        xaxis={"title": tour.objectives[0], "range": [-0.05, 1.1]},
        yaxis={"title": tour.objectives[1], "range": [-0.05, 1.1], "scaleanchor": "x"},
        height=420,
        title=f"w = ({w[0]:.2f}, {w[1]:.2f})",
        **COMPACT,
    )
    return fig


def png_available() -> bool:
    """Whether PNG export works here (kaleido installed; it drives a local Chrome/Chromium)."""
    return importlib.util.find_spec("kaleido") is not None


def figure_png(fig: go.Figure, width: int = 900, height: int = 520) -> bytes:
    """PNG bytes of ``fig`` through kaleido (about 4 s: it starts a headless browser).

    Raises:
        ValueError: kaleido is missing or cannot start a browser.
    """
    if not png_available():
        raise ValueError("PNG export needs kaleido: pip install 'kaleido>=1' (and Chrome/Chromium)")
    try:
        return fig.to_image(format="png", width=width, height=height)
    except Exception as exc:  # noqa: BLE001 -- kaleido raises many kinds; the UI shows the reason
        raise ValueError(f"PNG export failed: {type(exc).__name__}: {exc}") from None


def figure_html(fig: go.Figure) -> str:
    """A standalone HTML file of ``fig`` with plotly.js inlined (works offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True)


def snapshot_figure(snapshot: dict, ref: Sequence[float] | None = None, title: str | None = None):
    """One front snapshot of a training run: 2-D with the reference point, 3-D, or parallel."""
    names = snapshot["objectives"]
    pts = np.asarray(snapshot["points"], dtype=float)
    prefs = snapshot.get("preferences")
    if len(names) == 2:
        method = snapshot.get("method", "front")
        series = [{"label": "front", "method": method, "points": pts, "preferences": prefs}]
        fig = overlay_fronts_figure(series, names, ref=ref, title=title)
    elif len(names) == 3:
        fig = front_3d_figure(pts, names, preferences=prefs, title=title)
    else:
        fig = parallel_coordinates_figure(pts, names, title=title)
    fig.update_layout(height=380)
    return fig


def leaderboard_figure(rows: Sequence[Mapping[str, Any]], metric: str, group: str = "method"):
    """Bar chart of ``metric`` per ``group`` (mean over rows, error bar = spread over seeds)."""
    groups: dict[str, list[float]] = {}
    for row in rows:
        value = row.get(metric)
        if isinstance(value, int | float) and np.isfinite(value):
            groups.setdefault(str(row.get(group)), []).append(float(value))
    names = list(groups)
    means = [float(np.mean(groups[n])) for n in names]
    spread = [float(np.std(groups[n])) if len(groups[n]) > 1 else 0.0 for n in names]
    fig = go.Figure(go.Bar(x=names, y=means, error_y={"type": "data", "array": spread}))
    fig.update_traces(marker_color=[method_color(n) for n in names])
    fig.update_layout(xaxis_title=group, yaxis_title=metric, height=340, **COMPACT)
    return fig


def readable_graph(fig: go.Figure, height: int = 420) -> go.Figure:
    """Put each node label of :func:`morl_core.plots.dependency_graph_figure` outside the
    circle (above the top half, below the bottom half) so edges never cross the labels."""
    for trace in fig.data:
        if trace.name == "objectives":
            trace.textposition = [
                ("top" if y >= 0 else "bottom")
                + (" center" if abs(x) < 0.3 else (" right" if x > 0 else " left"))
                for x, y in zip(trace.x, trace.y, strict=True)
            ]
    fig.update_layout(height=height, xaxis={"range": [-1.8, 1.8]}, yaxis={"range": [-1.5, 1.5]})
    fig.update_layout(margin={"l": 10, "r": 10, "t": 10, "b": 10})
    return fig


def scatter_matrix_figure(
    series: Sequence[Mapping[str, Any]],
    objective_names: Sequence[str],
    selected: int | None = None,
) -> go.Figure:
    """Every pair of objectives at once (a scatter matrix), one colour per method.

    Args:
        series: As for :func:`overlay_fronts_figure` (``label``, ``method``, ``points`` (P, K),
            ``offset``); ``customdata`` holds the caller's row indices.
        objective_names: K >= 2 names.
        selected: A caller row to outline, if any.
    """
    names = list(objective_names)
    fig = go.Figure()
    for index, s in enumerate(series):
        pts = np.asarray(s["points"], dtype=float)  # (P, K)
        rows = np.arange(len(pts)) + int(s.get("offset", 0))
        outline = {"width": [2 if r == selected else 0 for r in rows], "color": "#222"}
        symbol = _SYMBOLS[index % len(_SYMBOLS)]
        fig.add_splom(
            dimensions=[{"label": n, "values": pts[:, j]} for j, n in enumerate(names)],
            name=s["label"],
            customdata=rows,
            showupperhalf=False,
            diagonal_visible=False,
            marker={"color": method_color(s["method"]), "size": 7, "symbol": symbol},
        )
        fig.update_traces(selector=-1, marker_line=outline)
    height = max(460, 150 * len(names))
    fig.update_layout(height=height, dragmode="select", **_legend_below(-0.08), **COMPACT)
    return fig


def reward_kl_figure(series: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Reward against KL to the base model, one line per front (maximise y, read at equal x).

    Args:
        series: One mapping per front: ``label``, ``method`` (the colour), ``kl`` (P,) KL per
            token (None where not measured: the point is left out), ``utility`` (P,) the
            point's ``w . p`` at its own preference, ``preferences`` (P, K).

    Returns:
        A Figure with one ``lines+markers`` trace per front that has any KL.
    """
    fig = go.Figure()
    for s in series:
        rows = [i for i, v in enumerate(s["kl"]) if v is not None]
        if not rows:
            continue
        order = sorted(rows, key=lambda i: s["kl"][i])
        hover = [
            f"{s['label']}<br>{_w(s['preferences'][i])}<br>"
            f"KL {s['kl'][i]:.3f} nats/token<br>w . p = {s['utility'][i]:.3f}"
            for i in order
        ]
        fig.add_scatter(
            x=[s["kl"][i] for i in order],
            y=[float(s["utility"][i]) for i in order],
            mode="lines+markers",
            name=s["label"],
            hovertext=hover,
            line={"color": method_color(s["method"])},
            marker={"size": 9},
            **_TEXT,
        )
    fig.update_layout(
        xaxis_title="KL to the base model (nats per token)",
        yaxis_title="reward at its preference (w . p)",
        **_legend_below(-0.2),
        **COMPACT,
    )
    return fig
