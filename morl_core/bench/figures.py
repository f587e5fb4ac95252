"""Benchmark figures (pure: records/table in, plotly Figures out), one colour per method."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from morl_core.bench.curves import flattened_summary, stage_means
from morl_core.bench.leaderboard import BASE_METHOD, LEVEL, mean_interval, paired_comparisons
from morl_core.colors import method_color
from morl_core.pareto import non_dominated
from morl_core.scalarize import linear

KL_PANELS_PER_ROW = 5  # preference panels of the KL frontier before it wraps
CURVE_PANELS_PER_ROW = 3  # method panels of the learning curves before they wrap
HOVER_STEP = "step %{x}<br>reward %{y:.4f}<extra></extra>"


def _labelled(x, y, name: str, text, marker: dict[str, Any], **kw: Any) -> go.Scatter:
    """Markers with a text label above each."""
    return go.Scatter(
        x=x,
        y=y,
        mode="markers+text",
        name=name,
        text=text,
        textposition="top center",
        marker=marker,
        **kw,
    )


def hv_vs_samples(table: pd.DataFrame) -> go.Figure:
    """Hypervolume against training samples, one marker per (suite, method); error bars: the
    t interval over seeds (none with one seed)."""
    fig = go.Figure()
    for method, group in table.groupby("method", sort=True):
        mean = group["hypervolume_mean"]
        error = {
            "type": "data",
            "array": group["hypervolume_hi"] - mean,
            "arrayminus": mean - group["hypervolume_lo"],
        }
        marker = {"color": method_color(method), "size": 11}
        x = group["training_samples_mean"]
        fig.add_trace(_labelled(x, mean, method, group["suite"], marker, error_y=error))
    fig.update_layout(
        title="Front quality vs training cost",
        xaxis_title="training samples (scored completions)",
        yaxis_title="hypervolume (fixed reference point)",
    )
    return fig


def fronts_overlay(records: list[dict[str, Any]], suite: str) -> go.Figure:
    """Every succeeded run's front of one two-objective suite, one colour per method."""
    fig = go.Figure()
    shown = set()
    names = None
    for rec in records:
        if rec.get("suite") != suite or rec.get("status") != "succeeded":
            continue
        pts = np.asarray(rec["front"], dtype=float)
        names, method = rec["objectives"], rec["method"]
        # only non-dominated points are joined: a line through dominated ones zig-zags
        pts = pts[non_dominated(pts)]
        pts = pts[np.argsort(pts[:, 0])]
        fig.add_trace(
            go.Scatter(
                x=pts[:, 0],
                y=pts[:, 1],
                mode="lines+markers",
                name=method,
                legendgroup=method,
                showlegend=method not in shown,
                line={"color": method_color(method)},
                hovertext=[f"{method} seed {rec['seed']}"] * len(pts),
            )
        )
        shown.add(method)
    if names:
        fig.update_layout(xaxis_title=names[0], yaxis_title=names[1])
    fig.update_layout(title=f"Fronts: {suite}")
    return fig


def cost_vs_quality(table: pd.DataFrame) -> go.Figure:
    """Wall seconds (lower better) vs hypervolume (higher better); non-dominated methods ringed."""
    fig = go.Figure()
    for suite, group in table.groupby("suite", sort=True):
        seconds, hv = group["wall_seconds_mean"], group["hypervolume_mean"]
        pts = np.stack([-seconds.to_numpy(), hv.to_numpy()], 1)
        valid = ~np.isnan(pts).any(1)
        best = np.zeros(len(pts), dtype=bool)
        if valid.any():
            best[valid] = non_dominated(pts[valid])
        marker = {
            "size": 12,
            "color": [method_color(m) for m in group["method"]],
            "line": {"width": [3 if b else 0 for b in best], "color": "black"},
        }
        fig.add_trace(_labelled(seconds, hv, suite, group["method"], marker))
    fig.update_layout(
        title="Cost vs quality (ringed: not dominated within its suite)",
        xaxis_title="training wall-clock seconds",
        yaxis_title="hypervolume",
    )
    return fig


def improvement_heatmap(pairs: pd.DataFrame, suite: str, metric: str = "hypervolume") -> go.Figure:
    """P(row method > column method) on shared seeds (0.5 = no difference), one suite."""
    rows = pairs[(pairs["suite"] == suite) & (pairs["metric"] == metric)]
    grid = rows.pivot(index="method", columns="other", values="p_improvement")
    methods = grid.index.union(grid.columns)
    grid = grid.reindex(index=methods, columns=methods)
    fig = go.Figure(
        go.Heatmap(
            z=grid.to_numpy(),
            x=list(grid.columns),
            y=list(grid.index),
            zmin=0,
            zmax=1,
            colorscale="RdBu",
            text=grid.round(2).to_numpy(),
            texttemplate="%{text}",
            colorbar={"title": "P(row > column)"},
        )
    )
    fig.update_layout(
        title=f"{suite}: probability of improvement in {metric} (paired over seeds)",
        xaxis_title="column method",
        yaxis_title="row method",
    )
    return fig


def kl_utility_points(records: list[dict[str, Any]], suite: str) -> pd.DataFrame:
    """Every front point of ``suite`` that has a KL: one row per (record, preference).

    Columns: ``method``, ``seed``, ``preference`` (tuple), ``kl`` (per token, to the base model;
    0 for the base model by definition), ``utility`` (``w . p``, the point's linear utility at
    its own preference ``w``, the scalarisation of expected utility). Points whose KL was not
    recorded (decoding-time mixtures, prompt-conditioned policies) or whose point is not finite
    are left out."""
    rows = []
    for rec in records:
        if rec.get("suite") != suite or rec.get("status") != "succeeded":
            continue
        base = rec.get("method") == BASE_METHOD
        preferences, points = rec.get("preferences") or [], rec.get("front") or []
        kls = rec.get("front_kl_per_token") or [None] * len(points)
        for w, p, kl in zip(preferences, points, kls, strict=False):
            w, p = np.asarray(w, dtype=float), np.asarray(p, dtype=float)  # (K,), (K,)
            if (kl is None and not base) or not np.isfinite(p).all():
                continue
            utility = float(linear(p[None], w)[0])
            preference = tuple(round(float(x), 6) for x in w)
            kl = 0.0 if base else float(kl)
            row = {"method": rec["method"], "seed": rec.get("seed"), "preference": preference}
            rows.append(row | {"kl": kl, "utility": utility})
    return pd.DataFrame(rows, columns=["method", "seed", "preference", "kl", "utility"])


def _interval_bars(values: pd.Series) -> tuple[float, dict[str, Any]]:
    """Mean over seeds and its t interval as plotly error bars (none with one seed)."""
    mean = float(values.mean())
    low, high = mean_interval(values)
    return mean, {"type": "data", "array": [high - mean], "arrayminus": [mean - low]}


def kl_frontier(records: list[dict[str, Any]], suite: str) -> go.Figure:
    """Utility against KL to the base model, one panel per preference ``w`` of one suite.

    At each preference a method is one marker: x its KL per token to the base model, y its
    point's utility ``w . p``, both the mean over training seeds with the t interval
    over seeds as error bars. Methods are compared at matched KL within a panel (up and to the
    left is better); the base model sits at KL 0. Methods whose KL was not recorded are named
    in the subtitle."""
    data = kl_utility_points(records, suite)
    mine = [r for r in records if r.get("suite") == suite and r.get("status") == "succeeded"]
    missing = sorted({r["method"] for r in mine} - set(data["method"]))
    names = next((r["objectives"] for r in mine if r.get("objectives")), None)
    panels = sorted(set(data["preference"]), reverse=True)
    cols = max(1, min(len(panels), KL_PANELS_PER_ROW))
    rows = max(1, math.ceil(len(panels) / cols))
    titles = ["w = (" + ", ".join(f"{x:g}" for x in w) + ")" for w in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or None)
    shown = set()
    for i, w in enumerate(panels):
        where = {"row": i // cols + 1, "col": i % cols + 1}
        here = data[data["preference"] == w]
        for method, group in here.groupby("method", sort=True):
            kl, error_x = _interval_bars(group["kl"])
            utility, error_y = _interval_bars(group["utility"])
            base = method == BASE_METHOD
            hover = (
                f"{method} at {titles[i]}<br>{len(group)} seed(s)<br>"
                f"KL {kl:.4f} nats/token<br>w . p = {utility:.4f}"
            )
            marker = {"color": method_color(method), "size": 10}
            fig.add_trace(
                go.Scatter(
                    x=[kl],
                    y=[utility],
                    mode="markers",
                    name=method,
                    legendgroup=method,
                    showlegend=method not in shown,
                    marker=marker | {"symbol": "diamond" if base else "circle"},
                    error_x=error_x,
                    error_y=error_y,
                    hovertext=[hover],
                    hoverinfo="text",
                ),
                **where,
            )
            shown.add(method)
    objectives = f"({', '.join(names)})" if names else "p"
    fig.update_xaxes(title_text="KL to base (nats/token)", matches="x", rangemode="tozero")
    fig.update_yaxes(title_text=f"w . {objectives}", col=1)
    note = f"mean over seeds, bars: {LEVEL:.0%} t interval over seeds"
    if missing:
        note += f"; no KL recorded for {', '.join(missing)} (evaluated before protocol eval-3)"
    fig.update_layout(
        title=f"{suite}: utility vs KL to the base model at each preference<br><sup>{note}</sup>",
        height=340 * rows + 80,
    )
    return fig


def learning_curves(records: list[dict[str, Any]], suite: str) -> go.Figure:
    """The training reward against the step within each stage, one panel per method of one
    suite (records carry ``learning_curve``: :mod:`morl_core.bench.curves`).

    Bold: the mean over seeds and stages; faint: each stage (a MORLHF preference, an expert,
    the meta-policy's upper level) as its mean over seeds, drawn only for methods with several
    stages. A panel's title says whether every stage's mean curve had flattened at the suite's
    budget (:func:`morl_core.bench.curves.flattened_summary`).
    Methods without a curve (records written before curves were stored, run folder not
    found) are named in the subtitle."""
    mine = [r for r in records if r.get("suite") == suite and r.get("status") == "succeeded"]
    trained = sorted({r["method"] for r in mine} - {BASE_METHOD})
    methods = [m for m in trained if any(r.get("learning_curve") for r in mine if r["method"] == m)]
    missing = sorted(set(trained) - set(methods))
    cols = max(1, min(len(methods), CURVE_PANELS_PER_ROW))
    rows = max(1, math.ceil(len(methods) / cols))
    curves = {m: [r.get("learning_curve") for r in mine if r["method"] == m] for m in methods}
    titles = [f"{m}: {flattened_summary(curves[m])['flattened_short']}" for m in methods]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or None)
    for i, method in enumerate(methods):
        where = {"row": i // cols + 1, "col": i % cols + 1}
        stages = stage_means(curves[method])  # stage -> mean over seeds
        color = method_color(method)
        for stage, one in stages.items() if len(stages) > 1 else []:
            fig.add_trace(
                go.Scatter(
                    x=one["step"],
                    y=one["reward"],
                    mode="lines",
                    name=f"{method} {stage}",
                    legendgroup=method,
                    showlegend=False,
                    opacity=0.3,
                    line={"color": color, "width": 1},
                    hovertemplate=f"{method} {stage}<br>{HOVER_STEP}",
                ),
                **where,
            )
        points = [
            (x, y)
            for one in stages.values()
            for x, y in zip(one["step"], one["reward"], strict=True)
        ]
        mean = pd.DataFrame(points, columns=["step", "reward"]).groupby("step")["reward"].mean()
        fig.add_trace(
            go.Scatter(
                x=mean.index,
                y=mean.to_numpy(),
                mode="lines",
                name=method,
                legendgroup=method,
                line={"color": color, "width": 3},
                hovertemplate=f"{method} (mean)<br>{HOVER_STEP}",
            ),
            **where,
        )
    fig.update_xaxes(title_text="step within stage", row=rows)
    fig.update_yaxes(title_text="training reward", col=1)
    note = "bold: mean over seeds and stages; faint: each stage (policy / expert), mean over seeds"
    if missing:
        note += f"; no curve for {', '.join(missing)} (run folder not found: pass --data-dir)"
    fig.update_layout(
        title=f"{suite}: training reward (scalarised) per step at the suite's budget<br>"
        f"<sup>{note}</sup>",
        height=300 * rows + 120,
        showlegend=False,
    )
    fig.update_annotations(font_size=12)
    return fig


def all_figures(
    records: list[dict[str, Any]], table: pd.DataFrame, pairs: pd.DataFrame | None = None
) -> dict[str, go.Figure]:
    """Every leaderboard figure (``pairs``: the paired comparisons, computed when not given):
    per suite its fronts (two objectives), the improvement heatmap and, when a trained method
    recorded KL, the KL frontier (``kl_frontier_SUITE``), and when a record carries a learning
    curve, the learning curves (``learning_curves_SUITE``).

    Spread over seeds is shown by the interval error bars of ``hv_vs_samples`` and
    ``kl_frontier``."""
    pairs = paired_comparisons(records) if pairs is None else pairs
    figs = {"hv_vs_samples": hv_vs_samples(table), "cost_vs_quality": cost_vs_quality(table)}
    for suite in sorted({r["suite"] for r in records}):
        if any(r["suite"] == suite and len(r.get("objectives", [])) == 2 for r in records):
            figs[f"fronts_{suite}"] = fronts_overlay(records, suite)
        if len(pairs) and (pairs["suite"] == suite).any():
            figs[f"improvement_{suite}"] = improvement_heatmap(pairs, suite)
        methods = set(kl_utility_points(records, suite)["method"])
        if methods - {BASE_METHOD}:  # a trained method with KL: the base alone says nothing
            figs[f"kl_frontier_{suite}"] = kl_frontier(records, suite)
        if any(r["suite"] == suite and r.get("learning_curve") for r in records):
            figs[f"learning_curves_{suite}"] = learning_curves(records, suite)
    return figs
