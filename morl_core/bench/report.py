"""Leaderboard files: CSV, JSON, Markdown and HTML figures from the records of ``morl bench``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from morl_core.bench import figures
from morl_core.bench.curves import FLAT_SHARE, flattened_summary, record_curve
from morl_core.bench.leaderboard import (
    BASE_METHOD,
    INTERVAL,
    LEVEL,
    METRICS,
    MIN_SHARED_SEEDS,
    PRIOR_METHOD,
    WIN_INTERVAL,
    aggregate,
    cannot_tell,
    paired_comparisons,
    read_records,
    t_interval,
)

# fmt: off
SHOWN = [  # the Markdown columns
    "hypervolume", "expected_utility", "front_gain", "igd_plus", "kl_per_token",
    "training_samples", "wall_seconds", "inference_seconds_per_reply", "models_kept",
]
# fmt: on
LEGEND = (
    f"Cells: mean over training seeds [{LEVEL:.0%} Student t interval over seeds, mean +- "
    "t(n-1) s / sqrt(n)]; one seed has no interval. **Bold**: the best mean of the suite; "
    "≈: not separated from the best (the t interval of the paired difference over shared seeds "
    "contains 0: the paired t test at 5 %). P(improvement) intervals: Wilson score. The base "
    "model is one evaluation, compared at every seed. Wilcoxon p: "
    "two-sided signed-rank test on the paired differences (with 5 seeds it cannot go below "
    "0.0625). Training samples count every completion a method scored to become usable: RL "
    "steps, the per-objective experts of every method built on them (soups, mod, emorl, "
    "metapolicy; each is charged for its experts even where they could be shared), EMORL's "
    "grid search (on training prompts) and the meta-policy's upper level. front_gain: the "
    "front's hypervolume over that of its best single point, minus 1: what a set of policies "
    "adds over one (near 0 where one policy serves every preference)."
)
CANNOT_TELL = (
    f"≈?: cannot tell: fewer than {MIN_SHARED_SEEDS} seeds shared with the best, too few to "
    "separate them, so counted as tied."
)

CARRIED = (
    "\nCarried over: {} (rows, comparisons and figures kept from the leaderboard this one "
    "updated; their records were not among the records read). Their intervals of means are "
    "recomputed as t intervals from the kept means, stds and seeds; their paired comparisons and "
    "≈ marks are kept as computed then, from a percentile bootstrap over seeds, which separates "
    "methods more often than its level says (`interval` in the JSON).\n"
)
CURVES = (
    "flattened: whether the training reward had stopped rising at the suite's budget. Each "
    "stage of a method (one trained policy, expert or upper level) is judged on its mean curve "
    "over seeds: it has flattened when less than "
    f"{FLAT_SHARE:.0%} of its gain (mean of the last quarter of its steps minus mean of the "
    "first) came in the last quarter (last minus third quarter's mean; a straight rise makes a "
    "third there), or when it gained no more than noise (two standard errors); "
    '"no" gives the median share over the stages still rising; "yes: no gain above noise": no '
    "stage gained (flat or falling from the start: not learning, rather than converged). "
    '"no curve": the record predates stored curves and its run folder was not found (pass '
    "--data-dir). Curves: learning_curves_SUITE.html."
).replace("%", " %")


def with_curves(table: pd.DataFrame, records: list[dict[str, Any]]) -> pd.DataFrame:
    """``table`` with the learning-curve columns of each (suite, method) row
    (:func:`morl_core.bench.curves.flattened_summary` of its records' ``learning_curve``);
    the base model, which is not trained, gets ``n/a``."""
    rows = []
    for _, row in table.iterrows():
        curves = [
            r.get("learning_curve")
            for r in records
            if r.get("suite") == row["suite"] and r.get("method") == row["method"]
        ]
        summary = flattened_summary(curves)
        del summary["flattened_short"]  # the figure's panel titles
        if row["method"] == BASE_METHOD:
            summary["flattened"] = "n/a"
        rows.append(summary)
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(rows)], axis=1)


def _cell(row: pd.Series, metric: str) -> str:
    """``mean [low, high]``, bold when best, ``≈`` when tied with the best."""
    mean, low, high = row[f"{metric}_mean"], row[f"{metric}_lo"], row[f"{metric}_hi"]
    if pd.isna(mean):
        return "n/a"
    text = f"{mean:.4g}"
    if not pd.isna(low) and low != high:
        text += f" [{low:.3g}, {high:.3g}]"
    mark = row.get(f"{metric}_vs_best", "")
    if mark == "best":
        return f"**{text}**"
    if mark == "tied":
        return text + (" ≈?" if cannot_tell(row, metric) else " ≈")
    return text


def suite_notes(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per suite: the base model's gradient conflict (from the base row), when measured, and
    the options the suite file gives single methods (``method_options``), when it gives any."""
    notes: dict[str, dict[str, Any]] = {}
    for r in records:
        if r.get("method") == BASE_METHOD and r.get("gradient_conflict"):
            notes.setdefault(r["suite"], {})["gradient_conflict"] = r["gradient_conflict"]
    for suite in sorted({r["suite"] for r in records}):
        if options := _method_options(suite):
            notes.setdefault(suite, {})["method_options"] = options
    return notes


def _method_options(suite: str) -> dict[str, dict[str, Any]]:
    """A published suite's ``method_options`` ({} for a suite that is not in
    ``benchmarks/suites``, such as a test's)."""
    from morl_core.bench.suites import load_suite

    try:
        return load_suite(suite).method_options
    except ValueError:
        return {}


def _options_line(options: dict[str, dict[str, Any]]) -> str:
    listed = "; ".join(
        f"{method} " + ", ".join(f"{key}={value}" for key, value in sorted(given.items()))
        for method, given in sorted(options.items())
    )
    return f"Method options (the suite's; every other option at its default): {listed}."


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


def _range(row: pd.Series, name: str, spec: str) -> str:
    """``[low, high]`` of ``NAME_lo`` / ``NAME_hi``, or ``[n/a]`` (fewer than two seeds)."""
    low, high = row[f"{name}_lo"], row[f"{name}_hi"]
    return "[n/a]" if pd.isna(low) else f"[{low:{spec}}, {high:{spec}}]"


def _paired_lines(vs: pd.DataFrame, name: str) -> list[str]:
    """The paired hypervolume table of the best method ``name`` against each other method."""
    lines = [
        "",
        f"Paired hypervolume, {name} vs each method on shared seeds:",
        "",
        "| method | seeds | HV difference | P(improvement) | Wilcoxon p |",
        "|---|---|---|---|---|",
    ]
    for _, p in vs.iterrows():
        difference = f"{p['difference']:+.3g} " + _range(p, "difference", "+.3g")
        improvement = f"{p['p_improvement']:.2f} " + _range(p, "p_improvement", ".2f")
        p_value = "n/a" if pd.isna(p["p_value"]) else f"{p['p_value']:.3g}"
        lines.append(f"| {p['other']} | {p['seeds']} | {difference} | {improvement} | {p_value} |")
    return lines


def markdown(
    table: pd.DataFrame,
    metrics: list[str] | None = None,
    pairs: pd.DataFrame | None = None,
    notes: dict[str, dict[str, Any]] | None = None,
    figure_titles: Mapping[str, str] | None = None,
) -> str:
    """A Markdown table per suite (ranked by hypervolume), the best method's paired
    hypervolume comparisons (when ``pairs`` are given), the figures written next to it
    (``figure_titles``: name -> title, each linked as ``NAME.html``) and the legend."""
    metrics = metrics or SHOWN
    curves = "flattened" in table.columns
    header = ["method", "seeds", *metrics, *(["flattened"] if curves else [])]
    parts = []
    for suite, group in table.groupby("suite", sort=True):
        lines = [f"### {suite}", ""]
        note = (notes or {}).get(suite, {})
        if "gradient_conflict" in note:
            lines += [_conflict_line(note["gradient_conflict"]), ""]
        if note.get("method_options"):
            lines += [_options_line(note["method_options"]), ""]
        lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        ranked = group.sort_values("hypervolume_mean", ascending=False, na_position="last")
        for _, row in ranked.iterrows():
            cells = [row["method"], str(row["seeds"]), *(_cell(row, m) for m in metrics)]
            cells += [row["flattened"]] if curves else []
            lines.append("| " + " | ".join(cells) + " |")
        best = ranked[ranked.get("hypervolume_vs_best", pd.Series(dtype=str)) == "best"]
        if pairs is not None and len(pairs) and len(best):
            name = best["method"].iloc[0]
            mine = (pairs["suite"] == suite) & (pairs["metric"] == "hypervolume")
            lines += _paired_lines(pairs[mine & (pairs["method"] == name)], name)
        parts.append("\n".join(lines))
    if figure_titles:
        links = [f"- [{name}]({name}.html): {title}" for name, title in figure_titles.items()]
        parts.append("\n".join(["Figures (HTML, next to this file):", "", *links]))
    return "\n\n".join([*parts, LEGEND, CANNOT_TELL, *([CURVES] if curves else [])]) + "\n"


def write_leaderboard(
    out: Path,
    suites: Iterable[str] | None = None,
    dest: Path | None = None,
    data_dirs: Sequence[Path] = (),
    update: bool = False,
) -> dict[str, Path]:
    """Write leaderboard.csv/.json/.md (and figures as HTML) into ``dest`` (default ``out``).

    Learning curves come from the records, or for records written before curves were stored,
    from ``DATA_DIR/runs/RUN_ID/metrics.jsonl`` in the first of ``data_dirs`` that has the run.
    ``update``: the suites of the leaderboard already in ``dest`` that these records do not
    cover are kept as they are (rows, comparisons, notes, figures), and named in ``carried``."""
    records = read_records(out, suites)
    if not records:
        raise ValueError(f"no benchmark records under {out}; run `morl bench SUITE` first")
    records = _with_run_curves(records, data_dirs)
    pairs, notes = paired_comparisons(records), suite_notes(records)
    table = with_curves(aggregate(records, pairs), records)
    dest = Path(dest or out)
    titles: dict[str, str] = {}
    carried: list[str] = []
    if update and (dest / "leaderboard.json").exists():
        old_rows, old_pairs, old_notes, titles = carried_suites(dest, set(table["suite"]))
        carried = sorted(set(old_rows["suite"])) if len(old_rows) else []
        table = pd.concat([old_rows, table], ignore_index=True).sort_values(
            ["suite", "method"], kind="stable", ignore_index=True
        )
        pairs = pd.concat([old_pairs, pairs], ignore_index=True)
        notes = dict(sorted({**old_notes, **notes}.items()))
    dest.mkdir(parents=True, exist_ok=True)
    paths = {ext: dest / f"leaderboard.{ext}" for ext in ("csv", "json", "md")}
    table.to_csv(paths["csv"], index=False)
    document = {
        "statistics": {
            "level": LEVEL,
            "interval": INTERVAL,
            "p_improvement_interval": WIN_INTERVAL,
            "ddof": 1,
        },
        "legend": LEGEND + " " + CANNOT_TELL + " " + CURVES,
        "rows": json.loads(table.to_json(orient="records")),  # NaN -> null
        "paired": json.loads(pairs.to_json(orient="records")),
        "suites": notes,
        "carried": carried,
    }
    paths["json"].write_text(json.dumps(document, indent=1))
    figs = figures.all_figures(records, table, pairs)
    titles |= {name: _plain_title(fig) for name, fig in figs.items()}
    suites = sorted(set(table["suite"]), key=len, reverse=True)  # longest first: the suffix

    def order(name: str) -> tuple[str, str]:  # the figures of every suite first, then by suite
        return next((s for s in suites if name.endswith(f"_{s}")), ""), name

    titles = {name: titles[name] for name in sorted(titles, key=order)}
    text = markdown(table, pairs=pairs, notes=notes, figure_titles=titles)
    if carried:
        text += CARRIED.format(", ".join(carried))
    paths["md"].write_text(text)
    for name, fig in figs.items():
        paths[name] = dest / f"{name}.html"
        fig.write_html(paths[name], include_plotlyjs="cdn")
    return paths


def carried_suites(
    dest: Path, covered: set[str]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, str]]:
    """The rows, paired comparisons, suite notes and figure titles (``NAME_SUITE.html`` files
    already in ``dest``) of the suites of the leaderboard in ``dest`` not in ``covered``."""
    old = json.loads((dest / "leaderboard.json").read_text())
    rows = pd.DataFrame([r for r in old["rows"] if r["suite"] not in covered])
    for column in rows.columns:  # JSON null -> NaN in the number columns
        if column.endswith(("_mean", "_std", "_lo", "_hi")):
            rows[column] = pd.to_numeric(rows[column])
    for metric in METRICS:  # the kept mean, std (ddof = 1) and seeds give the t interval
        if f"{metric}_mean" in rows and f"{metric}_std" in rows:
            stats = zip(rows[f"{metric}_mean"], rows[f"{metric}_std"], rows["seeds"], strict=True)
            bounds = [t_interval(m, sd, int(n)) for m, sd, n in stats]
            rows[f"{metric}_lo"] = [lo for lo, _ in bounds]
            rows[f"{metric}_hi"] = [hi for _, hi in bounds]
    # comparisons from before the t interval were percentile bootstraps: say so where unsaid
    old_pairs = [{"interval": "bootstrap", **p} for p in old["paired"] if p["suite"] not in covered]
    pairs = pd.DataFrame(old_pairs)
    notes = {suite: n for suite, n in old.get("suites", {}).items() if suite not in covered}
    kept = set(rows["suite"]) if len(rows) else set()
    titles = {}
    for line in (dest / "leaderboard.md").read_text().splitlines():
        link = re.fullmatch(r"- \[(\w+)\]\(\1\.html\): (.*)", line)
        kept_suite = link and any(link[1].endswith(f"_{suite}") for suite in kept)
        if kept_suite and (dest / f"{link[1]}.html").exists():
            titles[link[1]] = link[2]
    return rows, pairs, notes, titles


def _with_run_curves(records: list[dict[str, Any]], data_dirs: Sequence[Path]) -> list[dict]:
    """Every trained record with its ``learning_curve`` (None when not found). A curve belongs
    to a run: a record without one takes the stored curve of another record of the same run
    (the prior row shares its meta-policy's run), else its run folder's in ``data_dirs``."""
    by_run = {r["run_id"]: r["learning_curve"] for r in records if r.get("learning_curve")}
    out = []
    for record in records:
        if record.get("status") == "succeeded" and record.get("method") != BASE_METHOD:
            shared = {"learning_curve": by_run.get(record.get("run_id"))} | record
            record = record | {"learning_curve": record_curve(shared, data_dirs, PRIOR_METHOD)}
        out.append(record)
    return out


def _plain_title(fig: Any) -> str:
    """A figure's title without its HTML subtitle."""
    return (fig.layout.title.text or "").split("<br>")[0]
