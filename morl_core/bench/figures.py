"""Benchmark figures (pure: records/table in, plotly Figures out), one colour per method."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from morl_core.colors import method_color
from morl_core.pareto import non_dominated


def _interval(group: pd.DataFrame, metric: str) -> dict[str, Any]:
    """Plotly error bars from a leaderboard's ``_lo``/``_hi`` interval columns."""
    mean = group[f"{metric}_mean"]
    return {
        "type": "data",
        "array": group[f"{metric}_hi"] - mean,
        "arrayminus": mean - group[f"{metric}_lo"],
    }


def hv_vs_samples(table: pd.DataFrame) -> go.Figure:
    """Hypervolume against training samples, one marker per (suite, method); error bars: the
    95 % bootstrap interval over seeds (none with one seed)."""
    fig = go.Figure()
    for method, group in table.groupby("method", sort=True):
        fig.add_trace(
            go.Scatter(
                x=group["training_samples_mean"],
                y=group["hypervolume_mean"],
                mode="markers+text",
                error_y=_interval(group, "hypervolume"),
                name=method,
                text=group["suite"],
                textposition="top center",
                marker={"color": method_color(method), "size": 11},
            )
        )
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
        names = rec["objectives"]
        # only non-dominated points are joined: a line through dominated ones zig-zags
        pts = pts[non_dominated(pts)]
        order = np.argsort(pts[:, 0])
        fig.add_trace(
            go.Scatter(
                x=pts[order, 0],
                y=pts[order, 1],
                mode="lines+markers",
                name=rec["method"],
                legendgroup=rec["method"],
                showlegend=rec["method"] not in shown,
                line={"color": method_color(rec["method"])},
                hovertext=[f"{rec['method']} seed {rec['seed']}"] * len(pts),
            )
        )
        shown.add(rec["method"])
    if names:
        fig.update_layout(xaxis_title=names[0], yaxis_title=names[1])
    fig.update_layout(title=f"Fronts: {suite}")
    return fig


def cost_vs_quality(table: pd.DataFrame) -> go.Figure:
    """Wall seconds (lower better) vs hypervolume (higher better); non-dominated methods ringed."""
    fig = go.Figure()
    for suite, group in table.groupby("suite", sort=True):
        pts = np.stack(
            [-group["wall_seconds_mean"].to_numpy(), group["hypervolume_mean"].to_numpy()], 1
        )
        valid = ~np.isnan(pts).any(1)
        best = np.zeros(len(pts), dtype=bool)
        if valid.any():
            best[valid] = non_dominated(pts[valid])
        fig.add_trace(
            go.Scatter(
                x=group["wall_seconds_mean"],
                y=group["hypervolume_mean"],
                mode="markers+text",
                name=suite,
                text=group["method"],
                textposition="top center",
                marker={
                    "size": 12,
                    "color": [method_color(m) for m in group["method"]],
                    "line": {"width": [3 if b else 0 for b in best], "color": "black"},
                },
            )
        )
    fig.update_layout(
        title="Cost vs quality (ringed: not dominated within its suite)",
        xaxis_title="training wall-clock seconds",
        yaxis_title="hypervolume",
    )
    return fig


def stability(table: pd.DataFrame) -> go.Figure:
    """Spread (std over seeds, ddof = 1) of hypervolume per method and suite."""
    fig = go.Figure()
    for method, group in table.groupby("method", sort=True):
        fig.add_trace(
            go.Bar(
                x=group["suite"],
                y=group["hypervolume_std"],
                name=method,
                marker_color=method_color(method),
            )
        )
    fig.update_layout(
        title="Stability over seeds",
        barmode="group",
        xaxis_title="suite",
        yaxis_title="hypervolume std over seeds",
    )
    return fig


def improvement_heatmap(pairs: pd.DataFrame, suite: str, metric: str = "hypervolume") -> go.Figure:
    """P(row method > column method) on shared seeds (0.5 = no difference), one suite."""
    rows = pairs[(pairs["suite"] == suite) & (pairs["metric"] == metric)]
    grid = rows.pivot(index="method", columns="other", values="p_improvement")
    grid = grid.reindex(
        index=grid.index.union(grid.columns), columns=grid.index.union(grid.columns)
    )
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
    """Every leaderboard figure (``pairs``: the paired comparisons, computed when not given)."""
    from morl_core.bench.leaderboard import paired_comparisons

    pairs = paired_comparisons(records) if pairs is None else pairs
    figs = {
        "hv_vs_samples": hv_vs_samples(table),
        "cost_vs_quality": cost_vs_quality(table),
        "stability": stability(table),
    }
    for suite in sorted({r["suite"] for r in records}):
        two = [r for r in records if r["suite"] == suite and len(r.get("objectives", [])) == 2]
        if two:
            figs[f"fronts_{suite}"] = fronts_overlay(records, suite)
        if len(pairs) and (pairs["suite"] == suite).any():
            figs[f"improvement_{suite}"] = improvement_heatmap(pairs, suite)
    return figs
