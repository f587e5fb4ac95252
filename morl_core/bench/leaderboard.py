"""Leaderboard statistics: records -> one row per (suite, method) and paired comparisons.

All statistics are over *training seeds*, the unit that varies between runs of a method:

* **Mean and 95 % interval**: the Student t interval of the mean, mean +- t(n-1) s / sqrt(n)
  with the std s at ddof = 1. One seed has no interval (NaN). Not the percentile bootstrap: a
  bootstrap mean never leaves the range of the values, so over a handful of seeds its "95 %"
  interval is too narrow. Simulated on normal data, the bootstrap's interval of a paired
  difference excluded a true difference of 0 in 25 % of draws with 3 seeds, 17 % with 5 and
  10 % with 10; the t interval in 5 % (``tests/test_leaderboard_stats.py`` checks 3 and 5).
* **Paired comparison** of methods A and B on the seeds both ran (the base model has no
  training seed, so its row counts at every seed): the mean difference A - B with its t
  interval (the paired t test at the 5 % level), the probability of improvement P(A > B)
  (share of seeds A wins, a tie counts 1/2) with its Wilson score interval, and the two-sided
  Wilcoxon signed-rank p-value (exact for small n).
* **Ties**: per suite the highest mean of a ``COMPARED`` metric is the best. A method is
  *separated* from it (``below``) only when they share at least ``MIN_SHARED_SEEDS`` seeds and
  the interval of their paired difference excludes 0; otherwise it is *tied*. With fewer shared
  seeds we cannot tell, and such a tie is flagged by ``METRIC_shared_seeds`` <
  ``MIN_SHARED_SEEDS``.

Pure pandas over record dicts (fields: :mod:`morl_core.bench.runner`). Higher is better for
hypervolume, expected utility, front gain (:func:`front_gain`), cardinality and mean rewards; lower for IGD/IGD+, sparsity, KL
and every cost column. Files and Markdown: :mod:`morl_core.bench.report`.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

BASE_METHOD = "base"  # the base model's row (see the runner): the same at every seed
PRIOR_METHOD = "metapolicy_prior"  # a meta-policy's experts mixed by its untrained mixer
LEVEL = 0.95
INTERVAL = "student_t"  # the interval over seeds (means, paired differences)
WIN_INTERVAL = "wilson"  # the interval of a probability of improvement
COMPARED = ("hypervolume", "expected_utility")  # paired comparisons and tie marks
MIN_SHARED_SEEDS = 3  # fewer seeds shared with the best: "cannot tell", marked tied
# fmt: off
METRICS = [  # aggregated over seeds, in this order
    "hypervolume", "expected_utility", "front_gain", "igd", "igd_plus", "sparsity",
    "cardinality", "distinct1", "distinct2", "kl_per_token", "training_samples", "wall_seconds",
    "search_seconds", "inference_seconds_per_reply", "passes_per_token", "models_kept",
    "peak_rss_mb",
]
# fmt: on


def read_records(out: Path, suites: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """Every record under ``out/SUITE/records/`` (optionally only some suites)."""
    wanted = set(suites or ())
    paths = sorted(Path(out).glob("*/records/*.json"))
    return [json.loads(p.read_text()) for p in paths if not wanted or p.parts[-3] in wanted]


def mean_interval(values: Iterable[float]) -> tuple[float, float]:
    """Student t interval of the mean at ``LEVEL`` (std at ddof = 1); ``(nan, nan)`` with fewer
    than two values. Equal values give a zero-width interval."""
    v = np.asarray(list(values), dtype=float)
    if v.size < 2:
        return np.nan, np.nan
    return t_interval(float(v.mean()), float(v.std(ddof=1)), v.size)


def t_interval(mean: float, std: float, n: int) -> tuple[float, float]:
    """``mean +- t(n - 1) std / sqrt(n)`` at ``LEVEL`` (from a row's mean, std and seeds)."""
    from scipy.stats import t

    if n < 2 or not np.isfinite(std):
        return np.nan, np.nan
    if std == 0:  # equal values: a zero-width interval (scipy gives NaN for scale 0)
        return mean, mean
    low, high = t.interval(LEVEL, n - 1, loc=mean, scale=std / np.sqrt(n))
    return float(low), float(high)


def wilson_interval(share: float, n: int) -> tuple[float, float]:
    """Wilson score interval at ``LEVEL`` of a proportion ``share`` observed over ``n`` trials
    (a tie counting 1/2); unlike mean +- t s / sqrt(n) it stays inside [0, 1] and is not a
    point when every seed won."""
    from scipy.stats import norm

    if n < 2:
        return np.nan, np.nan
    z = float(norm.ppf((1 + LEVEL) / 2))
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def paired(a: Iterable[float], b: Iterable[float]) -> dict[str, float]:
    """A vs B on the same seeds (higher is better): difference, P(A > B), Wilcoxon p."""
    d = np.asarray(list(a), dtype=float) - np.asarray(list(b), dtype=float)  # (n,)
    wins = (1 + np.sign(np.round(d, 12))) / 2  # 1 win, 1/2 tie, 0 loss per seed
    out = {"seeds": d.size, "difference": d.mean(), "p_improvement": wins.mean()}
    out["difference_lo"], out["difference_hi"] = mean_interval(d)
    out["p_improvement_lo"], out["p_improvement_hi"] = wilson_interval(wins.mean(), d.size)
    out["p_value"] = _wilcoxon(d)
    out["interval"] = INTERVAL
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


def front_gain(record: Mapping[str, Any]) -> float:
    """What a set of policies adds over one: the front's hypervolume over that of its best
    single point, minus 1 (0 when one point dominates the rest; NaN without a front).

    Where objectives conflict, no point serves every preference and the gain is large; where
    they do not, one policy nearly reaches the others' points."""
    points, ref = record.get("front"), record.get("reference_point")
    if not points or ref is None or not record.get("hypervolume"):
        return float("nan")
    boxes = np.prod(np.clip(np.asarray(points, float) - np.asarray(ref, float), 0, None), axis=1)
    best = float(boxes.max())
    return float(record["hypervolume"]) / best - 1 if best > 0 else float("nan")


def _values(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Succeeded records as a frame with numeric metric columns."""
    good = [r for r in records if r.get("status") == "succeeded"]
    frame = pd.DataFrame(good)
    if good:
        frame["front_gain"] = [front_gain(r) for r in good]
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
                        names = {"suite": suite, "metric": metric, "method": a, "other": b}
                        rows.append({**names, **paired(both[a], both[b])})
    return pd.DataFrame(rows)


def aggregate(records: list[dict[str, Any]], pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per (suite, method): seeds, failures, ``METRIC_mean``, ``_std`` (ddof=1),
    ``_lo``/``_hi`` (t interval) and ``METRIC_vs_best`` for the compared metrics
    (``pairs``: :func:`paired_comparisons` of the same records, computed when not given)."""
    if not records:
        return pd.DataFrame(columns=["suite", "method", "seeds", "failed"])
    ok = _values(records)
    rows = []
    for (suite, method), group in pd.DataFrame(records).groupby(["suite", "method"], sort=True):
        good = ok[(ok["suite"] == suite) & (ok["method"] == method)] if len(ok) else ok
        row = {"suite": suite, "method": method, "seeds": len(good)}
        row["failed"] = len(group) - len(good)
        for metric in METRICS:
            values = good[metric].dropna() if len(good) else pd.Series(dtype=float)
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else np.nan
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else np.nan
            row[f"{metric}_lo"], row[f"{metric}_hi"] = mean_interval(values)
        rows.append(row)
    return mark_ties(pd.DataFrame(rows), paired_comparisons(records) if pairs is None else pairs)


def cannot_tell(row: Mapping[str, Any], metric: str) -> bool:
    """Whether a row's tie with the best of ``metric`` rests on too few shared seeds."""
    shared = row.get(f"{metric}_shared_seeds")
    tied = row.get(f"{metric}_vs_best") == "tied"
    return tied and shared is not None and not pd.isna(shared) and shared < MIN_SHARED_SEEDS


def mark_ties(table: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    """``METRIC_vs_best``: ``best``, ``tied`` (not separated from the best) or ``below``, and
    ``METRIC_shared_seeds``: the seeds a row shares with the best (a tie with fewer than
    ``MIN_SHARED_SEEDS`` is "cannot tell", not evidence of equality)."""
    table = table.copy()
    keys = ["suite", "metric", "method", "other"]
    found = (
        pairs.set_index(keys)[["seeds", "difference_lo", "difference_hi"]] if len(pairs) else None
    )
    for metric in COMPARED:
        means = table[f"{metric}_mean"].dropna()
        best = dict(table.loc[means.groupby(table["suite"]).idxmax(), ["suite", "method"]].values)

        def mark(row: pd.Series, metric: str = metric, best: dict = best) -> tuple[str, int]:
            top = best.get(row["suite"])
            if pd.isna(row[f"{metric}_mean"]) or top is None:
                return "", 0
            if row["method"] == top:
                return "best", int(row["seeds"])
            key = (row["suite"], metric, top, row["method"])
            if found is None or key not in found.index:
                return "tied", 0  # no shared seed: nothing separates them
            seeds, low, high = found.loc[key]
            if seeds < MIN_SHARED_SEEDS or np.isnan(low) or low <= 0 <= high:
                return "tied", int(seeds)
            return "below", int(seeds)

        marks = [mark(row) for _, row in table.iterrows()]
        table[f"{metric}_vs_best"] = [m for m, _ in marks]
        table[f"{metric}_shared_seeds"] = [n for _, n in marks]
    return table
