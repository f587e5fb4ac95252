"""Leaderboard: records -> per (suite, method) means with bootstrap intervals over seeds, paired
comparisons on shared seeds, ties with the best marked; CSV, JSON, Markdown, figures.

Statistics (all over *training seeds*, the unit that varies between runs of a method):

* **Mean and 95 % interval**: percentile bootstrap of the mean (``N_BOOT`` resamples, seeded,
  so a leaderboard is reproducible); std with ddof = 1. One seed has no interval (NaN, "n/a").
* **Paired comparison** of methods A and B on the seeds both ran (records matched by seed; the
  base model has no training seed, so its row counts at every seed): the mean difference A - B
  with a bootstrap interval, the probability of improvement P(A > B) = the share of seeds on
  which A beats B (a tie counts 1/2) with a bootstrap interval, and the two-sided Wilcoxon
  signed-rank p-value (exact for small n; with 5 seeds it cannot go below 0.0625).
* **Ties**: in each suite the method with the highest mean of a compared metric is the best; a
  method is *tied* with it when the 95 % interval of their paired difference contains 0, or
  when they share fewer than 2 seeds (nothing separates them).

Pure pandas over record dicts (see :mod:`morl_core.bench.runner` for the record fields). Higher
is better for hypervolume, expected utility, cardinality and mean rewards; lower is better for
IGD/IGD+, sparsity, KL and every cost column.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BASE_METHOD = "base"  # the base model's row (see the runner): the same at every seed
N_BOOT = 2000
LEVEL = 0.95
BOOT_SEED = 0
COMPARED = ("hypervolume", "expected_utility")  # paired comparisons and tie marks
# fmt: off
METRICS = [  # aggregated over seeds, in this order
    "hypervolume", "expected_utility", "igd", "igd_plus", "sparsity", "cardinality",
    "distinct1", "distinct2", "kl_per_token", "training_samples", "wall_seconds",
    "search_seconds", "inference_seconds_per_reply", "passes_per_token", "models_kept",
    "peak_rss_mb",
]
SHOWN = [  # the Markdown columns
    "hypervolume", "expected_utility", "igd_plus", "kl_per_token", "training_samples",
    "wall_seconds", "inference_seconds_per_reply", "models_kept",
]
# fmt: on
LEGEND = (
    f"Cells: mean over training seeds [{LEVEL:.0%} percentile bootstrap interval over seeds, "
    f"{N_BOOT} resamples]; one seed has no interval. **Bold**: the best mean of the suite; "
    "≈: not separated from the best (the interval of the paired difference over shared seeds "
    "contains 0, or fewer than 2 shared seeds). The base model is one evaluation, compared at "
    "every seed. Wilcoxon p: two-sided signed-rank test on the paired differences (with 5 "
    "seeds it cannot go below 0.0625). Training samples count every completion a method scored to become usable: RL "
    "steps, the per-objective experts of every method built on them (soups, mod, emorl, "
    "metapolicy; each is charged for its experts even where they could be shared), EMORL's grid "
    "search (on training prompts) and the meta-policy's upper level."
)


def read_records(out: Path, suites: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every record under ``out/SUITE/records/`` (optionally only some suites)."""
    wanted = set(suites) if suites else None
    records = []
    for path in sorted(Path(out).glob("*/records/*.json")):
        if wanted is None or path.parent.parent.name in wanted:
            records.append(json.loads(path.read_text()))
    return records


# --- statistics over seeds ---
def mean_interval(values: Iterable[float], n_boot: int = N_BOOT) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean; ``(nan, nan)`` with fewer than two values.

    The draws depend only on ``BOOT_SEED`` and the number of values, so two series over the
    same seeds (a difference and its win indicator) are resampled identically."""
    v = np.asarray(list(values), dtype=float)
    if v.size < 2:
        return np.nan, np.nan
    draws = np.random.default_rng(BOOT_SEED).integers(0, v.size, (n_boot, v.size))
    low, high = np.quantile(v[draws].mean(1), [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(low), float(high)


def paired(a: Iterable[float], b: Iterable[float]) -> dict[str, float]:
    """A vs B on the same seeds (higher is better): difference, P(A > B), Wilcoxon p."""
    d = np.asarray(list(a), dtype=float) - np.asarray(list(b), dtype=float)  # (n,)
    wins = (1 + np.sign(np.round(d, 12))) / 2  # 1 win, 1/2 tie, 0 loss per seed
    out = {"seeds": d.size, "difference": d.mean(), "p_improvement": wins.mean()}
    out["difference_lo"], out["difference_hi"] = mean_interval(d)
    out["p_improvement_lo"], out["p_improvement_hi"] = mean_interval(wins)
    out["p_value"] = _wilcoxon(d)
    return out


def _wilcoxon(d: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value; 1 when every difference is 0, NaN for n < 2."""
    if d.size < 2:
        return np.nan
    if not np.any(np.round(d, 12)):
        return 1.0
    from scipy.stats import wilcoxon

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # small-n notes: the exact test is what we want
        return float(wilcoxon(d).pvalue)


def _values(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Succeeded records as a frame with numeric metric columns."""
    frame = pd.DataFrame([r for r in records if r.get("status") == "succeeded"])
    for metric in METRICS:
        frame[metric] = pd.to_numeric(frame.get(metric), errors="coerce")
    return frame


def paired_comparisons(
    records: list[dict[str, Any]], metrics: Iterable[str] = COMPARED
) -> pd.DataFrame:
    """Every ordered pair of methods per suite and metric, on the seeds both ran."""
    rows = []
    frame = _values(records)
    for suite, group in frame.groupby("suite", sort=True) if len(frame) else []:
        for metric in metrics:
            wide = group.pivot_table(index="seed", columns="method", values=metric)  # (S, M)
            if BASE_METHOD in wide:  # no training seed: the one evaluation counts at every seed
                wide[BASE_METHOD] = wide[BASE_METHOD].mean()
            for a in wide.columns:
                for b in wide.columns.drop(a):
                    both = wide[[a, b]].dropna()
                    if len(both):
                        stats = paired(both[a], both[b])
                        rows.append({"suite": suite, "metric": metric, "method": a, "other": b})
                        rows[-1].update(stats)
    return pd.DataFrame(rows)


def aggregate(records: list[dict[str, Any]], pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (suite, method): ``METRIC_mean``, ``_std`` (ddof=1), ``_lo``/``_hi`` (95 %
    bootstrap interval), seeds, failures, and ``METRIC_vs_best`` for the compared metrics
    (``pairs``: :func:`paired_comparisons` of the same records, computed when not given)."""
    if not records:
        return pd.DataFrame(columns=["suite", "method", "seeds", "failed"])
    frame, ok = pd.DataFrame(records), _values(records)
    rows = []
    for (suite, method), group in frame.groupby(["suite", "method"], sort=True):
        good = ok[(ok["suite"] == suite) & (ok["method"] == method)] if len(ok) else ok
        row: dict[str, Any] = {
            "suite": suite,
            "method": method,
            "seeds": int(len(good)),
            "failed": int(len(group) - len(good)),
        }
        for metric in METRICS:
            values = good[metric].dropna() if len(good) else pd.Series(dtype=float)
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            row[f"{metric}_lo"], row[f"{metric}_hi"] = mean_interval(values)
        rows.append(row)
    pairs = paired_comparisons(records) if pairs is None else pairs
    return mark_ties(pd.DataFrame(rows), pairs)


def mark_ties(table: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """``METRIC_vs_best``: ``best``, ``tied`` (not separated from the best) or ``below``."""
    table = table.copy()
    keys = ["suite", "metric", "method", "other"]
    intervals = pairs.set_index(keys)[["difference_lo", "difference_hi"]] if len(pairs) else None
    for metric in COMPARED:
        means = table[f"{metric}_mean"].dropna()
        best = table.loc[means.groupby(table["suite"]).idxmax(), ["suite", "method"]]
        best = dict(best.itertuples(index=False))  # suite -> best method
        marks = []
        for _, row in table.iterrows():
            top = best.get(row["suite"])
            key = (row["suite"], metric, top, row["method"])
            if pd.isna(row[f"{metric}_mean"]) or top is None:
                marks.append("")
            elif row["method"] == top:
                marks.append("best")
            else:
                found = intervals is not None and key in intervals.index
                low, high = intervals.loc[key] if found else (np.nan, np.nan)
                marks.append("tied" if np.isnan(low) or low <= 0 <= high else "below")
        table[f"{metric}_vs_best"] = marks
    return table


# --- outputs ---
def _cell(row: pd.Series, metric: str) -> str:
    mean, low, high = row[f"{metric}_mean"], row[f"{metric}_lo"], row[f"{metric}_hi"]
    if pd.isna(mean):
        return "n/a"
    text = f"{mean:.4g}"
    if not pd.isna(low) and low != high:
        text += f" [{low:.3g}, {high:.3g}]"
    mark = row.get(f"{metric}_vs_best", "")
    return f"**{text}**" if mark == "best" else (text + " ≈" if mark == "tied" else text)


def suite_notes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per suite: the base model's gradient conflict (from the base row), when measured."""
    return {
        r["suite"]: {"gradient_conflict": r["gradient_conflict"]}
        for r in records
        if r.get("method") == BASE_METHOD and r.get("gradient_conflict")
    }


def _conflict_line(conflict: dict[str, Any]) -> str:
    if "cosine" not in conflict:
        return f"Gradient conflict: not measured ({conflict.get('skipped', 'no data')})."
    names, cos = conflict["objectives"], np.asarray(conflict["cosine"], dtype=float)
    pairs = [
        f"{names[i]}/{names[j]} {cos[i, j]:+.2f}"
        for i in range(len(names))
        for j in range(i + 1, len(names))
    ]
    return (
        "Gradient conflict at the base model (cosine of per-objective policy gradients, "
        f"{conflict['batches']} batches; < 0 conflicting): " + ", ".join(pairs) + "."
    )


def markdown(
    table: pd.DataFrame,
    metrics: list[str] | None = None,
    pairs: pd.DataFrame | None = None,
    notes: dict[str, dict[str, Any]] | None = None,
) -> str:
    """A Markdown table per suite (cells ``mean [low, high]``, best bold, ties ≈), the paired
    hypervolume comparison with the best, and the legend."""
    metrics = metrics or SHOWN
    parts = []
    for suite, group in table.groupby("suite", sort=True):
        header = ["method", "seeds", *metrics]
        lines = [f"### {suite}", ""]
        if notes and suite in notes:
            lines += [_conflict_line(notes[suite]["gradient_conflict"]), ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        ranked = group.sort_values("hypervolume_mean", ascending=False, na_position="last")
        for _, row in ranked.iterrows():
            cells = [row["method"], str(row["seeds"]), *(_cell(row, m) for m in metrics)]
            lines.append("| " + " | ".join(cells) + " |")
        best = ranked[ranked.get("hypervolume_vs_best", pd.Series(dtype=str)) == "best"]
        if pairs is not None and len(pairs) and len(best):
            name = best["method"].iloc[0]
            vs = pairs[
                (pairs["suite"] == suite)
                & (pairs["metric"] == "hypervolume")
                & (pairs["method"] == name)
            ]
            lines += [
                "",
                f"Paired hypervolume, {name} vs each method on shared seeds:",
                "",
                "| method | seeds | HV difference | P(improvement) | Wilcoxon p |",
                "|---|---|---|---|---|",
            ]
            for _, p in vs.iterrows():
                lines.append(
                    f"| {p['other']} | {p['seeds']} | {p['difference']:+.3g} "
                    f"[{p['difference_lo']:+.3g}, {p['difference_hi']:+.3g}] | "
                    f"{p['p_improvement']:.2f} [{p['p_improvement_lo']:.2f}, "
                    f"{p['p_improvement_hi']:.2f}] | {p['p_value']:.3g} |"
                )
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n\n" + LEGEND + "\n"


def write_leaderboard(
    out: Path, suites: Iterable[str] | None = None, dest: Path | None = None
) -> dict[str, Path]:
    """Write leaderboard.csv/.json/.md (and figures as HTML) into ``dest`` (default ``out``)."""
    records = read_records(out, suites)
    if not records:
        raise ValueError(f"no benchmark records under {out}; run `morl bench SUITE` first")
    pairs, notes = paired_comparisons(records), suite_notes(records)
    table = aggregate(records, pairs)
    dest = Path(dest or out)
    dest.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": dest / "leaderboard.csv",
        "json": dest / "leaderboard.json",
        "md": dest / "leaderboard.md",
    }
    table.to_csv(paths["csv"], index=False)
    rows = json.loads(table.to_json(orient="records"))  # NaN -> null
    document = {
        "statistics": {"level": LEVEL, "bootstrap": N_BOOT, "seed": BOOT_SEED, "ddof": 1},
        "legend": LEGEND,
        "rows": rows,
        "paired": json.loads(pairs.to_json(orient="records")),
        "suites": notes,
    }
    paths["json"].write_text(json.dumps(document, indent=1))
    paths["md"].write_text(markdown(table, pairs=pairs, notes=notes))
    from morl_core.bench import figures

    for name, fig in figures.all_figures(records, table, pairs).items():
        paths[name] = dest / f"{name}.html"
        fig.write_html(paths[name], include_plotlyjs="cdn")
    return paths
