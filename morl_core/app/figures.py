"""Figure builders the app needs beyond :mod:`morl_core.plots` (pure: data in, Figure out).

They follow the same rules: maximisation convention, one fixed colour per method and per
objective (:mod:`morl_core.colors`), ``customdata`` holding input row indices so a click maps
back to its point. Also here: PNG export through kaleido when it is installed (optional).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morl_core.colors import DOMINATED_COLOR, method_color, objective_color
from morl_core.pareto import non_dominated

COMPACT = {"margin": {"l": 50, "r": 20, "t": 40, "b": 45}}
HIGHLIGHT = {"symbol": "star", "size": 18, "color": "#FFD000", "line": {"width": 1.5}}
_DASHES = ("solid", "dash", "dot", "dashdot")


_SYMBOLS = ("circle", "square", "diamond", "triangle-up", "pentagon", "hexagon", "star-square")
SOURCE_DASH = {"demo": "dot", "run": "solid"}  # one dash per source, one colour per method


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
            dash) and ``offset`` (the row index of its first point in the caller's table,
            stored in ``customdata`` so a click maps back).
        objective_names: The two objective names (x, y).
        ref: The task's fixed reference point.
        title: Figure title.
        zoom: Axes fitted to the data, the reference point as an inset note (the Fronts page);
            otherwise fixed [r, 1] axes with the reference point drawn (comparable snapshots).

    Returns:
        Per series a ``"<label>"`` front trace (non-dominated, lines+markers, the method's
        colour, the source's dash, its own marker symbol so coinciding fronts stay visible)
        and a grey ``"<label> dominated"`` trace (not in the legend).
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
        hover = [
            f"{s['label']}<br>"
            + (f"w = ({', '.join(f'{x:.2f}' for x in prefs[i])})<br>" if prefs is not None and len(prefs) else "")
            + "<br>".join(f"{n}: {v:.3f}" for n, v in zip(objective_names, pts[i], strict=True))
            for i in range(len(pts))
        ]  # fmt: skip
        for part, rows, mode, marker in (
            ("", order, "lines+markers", {"color": colour, "size": 11, "symbol": symbol,
                                          "line": {"width": 1, "color": "white"}}),
            (" dominated", np.flatnonzero(~on_front), "markers",
             {"color": DOMINATED_COLOR, "size": 9, "symbol": symbol}),
        ):  # fmt: skip
            if rows.size:
                fig.add_trace(
                    go.Scatter(
                        x=pts[rows, 0], y=pts[rows, 1], mode=mode, name=s["label"] + part,
                        legendgroup=s["label"], line={"color": colour, "dash": dash},
                        marker=marker, customdata=rows + offset, showlegend=part == "",
                        hovertext=[hover[i] for i in rows], hoverinfo="text", opacity=0.9,
                    )
                )  # fmt: skip
    if ref is not None and zoom:
        every = np.concatenate([np.asarray(s["points"], dtype=float) for s in series] or
                               [np.zeros((0, 2))])  # fmt: skip
        if len(every):
            low, high = every.min(0), every.max(0)
            pad = np.maximum(0.06 * (high - low), 0.02)
            fig.update_xaxes(range=[low[0] - pad[0], high[0] + pad[0]])
            fig.update_yaxes(range=[low[1] - pad[1], high[1] + pad[1]])
        fig.add_annotation(
            text=f"HV reference point r = ({', '.join(f'{float(x):g}' for x in ref)}), "
            "outside this zoomed view",
            xref="paper", yref="paper", x=0.01, y=0.01, xanchor="left", yanchor="bottom",
            showarrow=False, font={"size": 11, "color": "#555"}, bgcolor="rgba(255,255,255,0.8)",
        )  # fmt: skip
    elif ref is not None:
        add_reference_point(fig, ref)
        # objectives live in [0, 1]: fixed axes keep snapshots and overlays comparable
        low = min(float(ref[0]), float(ref[1])) - 0.05
        fig.update_xaxes(range=[low, 1.05])
        fig.update_yaxes(range=[low, 1.05])
    fig.update_layout(
        title=title, xaxis_title=objective_names[0], yaxis_title=objective_names[1],
        legend={"orientation": "h", "y": -0.18, "yanchor": "top", "x": 0}, **COMPACT,
    )  # fmt: skip
    return fig


def add_reference_point(fig: go.Figure, ref: Sequence[float]) -> go.Figure:
    """Draw the hypervolume reference point of a 2-D front (an x marker and dotted guides)."""
    rx, ry = float(ref[0]), float(ref[1])
    fig.add_trace(
        go.Scatter(
            x=[rx], y=[ry], mode="markers+text", name="reference point",
            marker={"symbol": "x", "size": 11, "color": "#444"}, text=["r"],
            textposition="top right", hovertext=[f"reference point r = ({rx:g}, {ry:g})"],
            hoverinfo="text",
        )
    )  # fmt: skip
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
    marker = {**HIGHLIGHT, "symbol": symbol, "color": color or HIGHLIGHT["color"]}
    hover = [
        label + "<br>" + "<br>".join(f"{n}: {v:.3f}" for n, v in zip(names, p, strict=True))
        for p in pts
    ]
    if pts.shape[1] == 3:
        fig.add_trace(
            go.Scatter3d(
                x=pts[:, 0], y=pts[:, 1], z=pts[:, 2], mode="markers", name=label,
                marker={"size": 7, "color": marker["color"], "symbol": "diamond",
                        "line": {"width": 2, "color": "#222"}},
                hovertext=hover, hoverinfo="text",
            )
        )  # fmt: skip
    else:
        fig.add_trace(
            go.Scatter(
                x=pts[:, 0], y=pts[:, 1], mode="markers", name=label, marker=marker,
                hovertext=hover, hoverinfo="text",
            )
        )  # fmt: skip
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
    from morl_core.plots import front_3d_figure, parallel_coordinates_figure

    k = len(objective_names)
    if k == 2:
        fig = overlay_fronts_figure(fronts, objective_names)
    elif k == 3:
        pts = np.concatenate([np.asarray(f["points"], dtype=float) for f in fronts])
        methods = [f["method"] for f in fronts for _ in f["points"]]  # method colours
        fig = front_3d_figure(pts, objective_names, methods=methods)
    else:
        pts = np.concatenate([np.asarray(f["points"], dtype=float) for f in fronts])
        methods = [f["method"] for f in fronts for _ in f["points"]]
        return parallel_coordinates_figure(pts, objective_names, methods=methods)
    for f, i in zip(fronts, nearest, strict=False):
        highlight(
            fig, np.asarray(f["points"])[i], f"{f['label']}: evaluated near your w", objective_names
        )
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
        utility = pts @ w
        fig.add_trace(
            go.Scatterternary(
                a=prefs[:, 0], b=prefs[:, 1], c=prefs[:, 2], mode="markers",
                name="evaluated preferences",
                marker={"size": 11, "color": utility, "colorscale": "Viridis",
                        "colorbar": {"title": {"text": "w·r"}, "thickness": 12}},
                hovertext=[
                    "w = (" + ", ".join(f"{x:.2f}" for x in p) + ")<br>"
                    + "<br>".join(f"{n}: {v:.3f}" for n, v in zip(names, r, strict=True))
                    for p, r in zip(prefs, pts, strict=True)
                ],
                hoverinfo="text",
            )
        )  # fmt: skip
    fig.add_trace(
        go.Scatterternary(
            a=[w[0]], b=[w[1]], c=[w[2]], mode="markers", name="your preference",
            marker=HIGHLIGHT, hovertext=["your w = (" + ", ".join(f"{x:.2f}" for x in w) + ")"],
            hoverinfo="text",
        )
    )  # fmt: skip
    fig.update_layout(
        ternary={
            "aaxis": {"title": {"text": names[0]}, "color": objective_color(names[0])},
            "baxis": {"title": {"text": names[1]}, "color": objective_color(names[1])},
            "caxis": {"title": {"text": names[2]}, "color": objective_color(names[2])},
        },
        height=360, title="Preference simplex", showlegend=False, **COMPACT,
    )  # fmt: skip
    return fig


def training_curves_figure(rows: Sequence[Mapping[str, Any]], objective_names: Sequence[str]):
    """Per-objective reward curves, KL to the base and completion length over training samples.

    Args:
        rows: Flat metric rows (``step``, ``samples``, ``reward/<name>``, ``kl``, ``length``).
        objective_names: The run's objectives, one reward curve each (objective colours).
    """
    fig = make_subplots(
        rows=1, cols=3, horizontal_spacing=0.09,
        subplot_titles=("reward per objective", "KL to base", "length (tokens)"),
    )  # fmt: skip
    x = [r.get("samples", r.get("step")) for r in rows]
    for name in objective_names:
        fig.add_trace(
            go.Scatter(x=x, y=[r.get(f"reward/{name}") for r in rows], name=name,
                       mode="lines", line={"color": objective_color(name)}),
            row=1, col=1,
        )  # fmt: skip
    for col, key, colour in ((2, "kl", "#555"), (3, "length", "#888")):
        fig.add_trace(
            go.Scatter(x=x, y=[r.get(key) for r in rows], name=key, mode="lines",
                       line={"color": colour}, showlegend=False),
            row=1, col=col,
        )  # fmt: skip
    fig.update_xaxes(title_text="training samples")
    fig.update_layout(height=320, legend={"orientation": "h", "y": -0.3}, **COMPACT)
    return fig


def tour_figure(tour, index: int) -> go.Figure:
    """The scalarisation tour at swept preference ``index``: the non-convex front, what linear
    and Tchebycheff scalarisation pick there, and every point linear can ever reach."""
    front, w = tour.front, tour.weights[index]
    lin, tch = front[tour.linear[index]], front[tour.tchebycheff[index]]
    reach = np.unique(tour.linear)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=front[:, 0], y=front[:, 1], mode="lines", name="true front",
                             line={"color": "#999", "width": 3}))  # fmt: skip
    fig.add_trace(go.Scatter(x=front[reach, 0], y=front[reach, 1], mode="markers",
                             name="all linear can reach", marker={"size": 12, "color": "#1F77B4",
                             "symbol": "circle-open", "line": {"width": 3}}))  # fmt: skip
    # the linear utility's level line through its pick: w . r = w . lin
    level = float(w @ lin)
    xs = np.linspace(0, 1, 50)
    ys = (level - w[0] * xs) / w[1] if w[1] > 0 else np.full_like(xs, np.nan)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="linear level line",
                             line={"dash": "dash", "color": "#1F77B4"}))  # fmt: skip
    # Tchebycheff's pick lies where the ray from the ideal point along -(1/w) meets the front
    direction = 1.0 / np.maximum(w, 1e-9)
    direction = direction / np.linalg.norm(direction)
    ray = np.array([[1.0, 1.0], [1.0, 1.0] - 1.5 * direction])
    fig.add_trace(go.Scatter(x=ray[:, 0], y=ray[:, 1], mode="lines", name="Tchebycheff ray",
                             line={"dash": "dot", "color": "#D62728"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=[1], y=[1], mode="markers", name="ideal point",
                             marker={"symbol": "x", "size": 10, "color": "#444"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=[lin[0]], y=[lin[1]], mode="markers", name="linear picks",
                             marker={"size": 16, "color": "#1F77B4"}))  # fmt: skip
    fig.add_trace(go.Scatter(x=[tch[0]], y=[tch[1]], mode="markers", name="Tchebycheff picks",
                             marker={"size": 16, "color": "#D62728", "symbol": "diamond"}))  # fmt: skip
    fig.update_layout(
        xaxis={"title": tour.objectives[0], "range": [-0.05, 1.1]},
        yaxis={"title": tour.objectives[1], "range": [-0.05, 1.1], "scaleanchor": "x"},
        height=420, title=f"w = ({w[0]:.2f}, {w[1]:.2f})", **COMPACT,
    )  # fmt: skip
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
    from morl_core.plots import front_3d_figure, parallel_coordinates_figure

    names = snapshot["objectives"]
    pts = np.asarray(snapshot["points"], dtype=float)
    if len(names) == 2:
        series = [{"label": "front", "method": snapshot.get("method", "front"), "points": pts,
                   "preferences": snapshot.get("preferences")}]  # fmt: skip
        fig = overlay_fronts_figure(series, names, ref=ref, title=title)
    elif len(names) == 3:
        fig = front_3d_figure(pts, names, preferences=snapshot.get("preferences"), title=title)
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
    fig = go.Figure(
        go.Bar(x=names, y=means, error_y={"type": "data", "array": spread},
               marker_color=[method_color(n) for n in names])
    )  # fmt: skip
    fig.update_layout(xaxis_title=group, yaxis_title=metric, height=340, **COMPACT)
    return fig


def readable_graph(fig: go.Figure, height: int = 420) -> go.Figure:
    """Put each node label of :func:`morl_core.plots.dependency_graph_figure` outside the
    circle (above the top half, below the bottom half) so edges never cross the labels."""
    for trace in fig.data:
        if trace.name == "objectives":
            trace.textposition = [
                ("top" if y >= 0 else "bottom") + (" center" if abs(x) < 0.3 else
                                                     (" right" if x > 0 else " left"))
                for x, y in zip(trace.x, trace.y, strict=True)
            ]  # fmt: skip
    fig.update_layout(height=height, xaxis={"range": [-1.8, 1.8]}, yaxis={"range": [-1.5, 1.5]},
                      margin={"l": 10, "r": 10, "t": 10, "b": 10})  # fmt: skip
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
        fig.add_trace(
            go.Splom(
                dimensions=[{"label": n, "values": pts[:, j]} for j, n in enumerate(names)],
                name=s["label"], customdata=rows, showupperhalf=False, diagonal_visible=False,
                marker={"color": method_color(s["method"]), "size": 7,
                        "symbol": _SYMBOLS[index % len(_SYMBOLS)],
                        "line": {"width": [2 if r == selected else 0 for r in rows],
                                 "color": "#222"}},
            )
        )  # fmt: skip
    fig.update_layout(height=max(460, 150 * len(names)), dragmode="select",
                      legend={"orientation": "h", "y": -0.08, "yanchor": "top", "x": 0},
                      **COMPACT)  # fmt: skip
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
            f"{s['label']}<br>w = ({', '.join(f'{x:.2f}' for x in s['preferences'][i])})<br>"
            f"KL {s['kl'][i]:.3f} nats/token<br>w . p = {s['utility'][i]:.3f}"
            for i in order
        ]
        fig.add_trace(
            go.Scatter(
                x=[s["kl"][i] for i in order], y=[float(s["utility"][i]) for i in order],
                mode="lines+markers", name=s["label"], hovertext=hover, hoverinfo="text",
                line={"color": method_color(s["method"])}, marker={"size": 9},
            )
        )  # fmt: skip
    fig.update_layout(
        xaxis_title="KL to the base model (nats per token)",
        yaxis_title="reward at its preference (w . p)",
        legend={"orientation": "h", "y": -0.2, "yanchor": "top", "x": 0}, **COMPACT,
    )  # fmt: skip
    return fig
