"""Leaderboard: records -> mean +- std over seeds per suite and method; CSV, JSON, Markdown, plots.

Pure pandas over record dicts (see :mod:`morl_core.bench.runner` for the record fields); figure
builders return plotly Figures. Higher is better for hypervolume, expected utility, cardinality
and mean rewards; lower is better for IGD/IGD+, sparsity and every cost column.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

METRICS = [
    "hypervolume",
    "expected_utility",
    "igd",
    "igd_plus",
    "sparsity",
    "cardinality",
    "distinct1",
    "distinct2",
    "kl_per_token",
    "training_samples",
    "wall_seconds",
    "search_seconds",
    "inference_seconds_per_reply",
    "passes_per_token",
    "models_kept",
    "peak_rss_mb",
]


def read_records(out: Path, suites: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every record under ``out/SUITE/records/`` (optionally only some suites)."""
    wanted = set(suites) if suites else None
    records = []
    for path in sorted(Path(out).glob("*/records/*.json")):
        if wanted is None or path.parent.parent.name in wanted:
            records.append(json.loads(path.read_text()))
    return records


def aggregate(records: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (suite, method): ``METRIC_mean``, ``METRIC_std`` (ddof=0), seeds, failures."""
    if not records:
        return pd.DataFrame(columns=["suite", "method", "seeds", "failed"])
    frame = pd.DataFrame(records)
    ok = frame[frame["status"] == "succeeded"]
    rows = []
    for (suite, method), group in frame.groupby(["suite", "method"], sort=True):
        good = ok[(ok["suite"] == suite) & (ok["method"] == method)]
        row: dict[str, Any] = {
            "suite": suite,
            "method": method,
            "seeds": int(len(good)),
            "failed": int(len(group) - len(good)),
        }
        for metric in METRICS:
            values = (
                pd.to_numeric(good[metric], errors="coerce")
                if metric in good
                else pd.Series(dtype=float)
            )
            values = values.dropna()
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{metric}_std"] = float(values.std(ddof=0)) if len(values) else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame, metrics: list[str] | None = None) -> str:
    """A Markdown table per suite with ``mean +- std`` cells."""
    metrics = metrics or [
        "hypervolume",
        "expected_utility",
        "igd",
        "cardinality",
        "training_samples",
        "wall_seconds",
        "inference_seconds_per_reply",
        "models_kept",
    ]
    parts = []
    for suite, group in table.groupby("suite", sort=True):
        header = ["method", "seeds", *metrics]
        lines = [f"### {suite}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for _, row in group.sort_values("hypervolume_mean", ascending=False).iterrows():
            cells = [row["method"], str(row["seeds"])]
            for m in metrics:
                mean, std = row[f"{m}_mean"], row[f"{m}_std"]
                cells.append("n/a" if pd.isna(mean) else f"{mean:.4g} ± {std:.2g}")
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def write_leaderboard(
    out: Path, suites: Iterable[str] | None = None, dest: Path | None = None
) -> dict[str, Path]:
    """Write leaderboard.csv/.json/.md (and figures as HTML) into ``dest`` (default ``out``)."""
    records = read_records(out, suites)
    if not records:
        raise ValueError(f"no benchmark records under {out}; run `morl bench SUITE` first")
    table = aggregate(records)
    dest = Path(dest or out)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": dest / "leaderboard.csv",
        "json": dest / "leaderboard.json",
        "md": dest / "leaderboard.md",
    }
    table.to_csv(paths["csv"], index=False)
    paths["json"].write_text(table.to_json(orient="records", indent=1))
    paths["md"].write_text(markdown(table))
    from morl_core.bench import figures

    for name, fig in figures.all_figures(records, table).items():
        paths[name] = dest / f"{name}.html"
        fig.write_html(paths[name], include_plotlyjs="cdn")
    return paths
