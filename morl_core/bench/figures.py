"""Benchmark figures (pure: records/table in, plotly Figures out), one colour per method."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from morl_core.bench.leaderboard import paired_comparisons
from morl_core.colors import method_color
from morl_core.pareto import non_dominated


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
    bootstrap interval over seeds (none with one seed)."""
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


def all_figures(
    records: list[dict[str, Any]], table: pd.DataFrame, pairs: pd.DataFrame | None = None
) -> dict[str, go.Figure]:
    """Every leaderboard figure (``pairs``: the paired comparisons, computed when not given).

    Spread over seeds is shown by the interval error bars of ``hv_vs_samples``."""
    pairs = paired_comparisons(records) if pairs is None else pairs
    figs = {"hv_vs_samples": hv_vs_samples(table), "cost_vs_quality": cost_vs_quality(table)}
    for suite in sorted({r["suite"] for r in records}):
        if any(r["suite"] == suite and len(r.get("objectives", [])) == 2 for r in records):
            figs[f"fronts_{suite}"] = fronts_overlay(records, suite)
        if len(pairs) and (pairs["suite"] == suite).any():
            figs[f"improvement_{suite}"] = improvement_heatmap(pairs, suite)
    return figs
