"""Leaderboard statistics: bootstrap intervals over seeds, paired comparisons, tie marks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from morl_core.bench.figures import all_figures, hv_vs_samples, improvement_heatmap
from morl_core.bench.leaderboard import aggregate, mean_interval, paired, paired_comparisons
from morl_core.bench.report import markdown, write_leaderboard


def _records(values: dict[str, list[float]], suite: str = "s") -> list[dict]:
    """One succeeded record per (method, seed); EU = HV / 2."""
    return [
        {
            "suite": suite,
            "method": method,
            "seed": seed,
            "status": "succeeded",
            "hypervolume": hv,
            "expected_utility": hv / 2,
            "training_samples": 100,
        }
        for method, hvs in values.items()
        for seed, hv in enumerate(hvs)
    ]


def test_interval_contains_the_mean_and_shrinks_with_more_seeds():
    rng = np.random.default_rng(3)
    widths = []
    for n in (5, 50):
        values = rng.normal(0.8, 0.05, n)
        low, high = mean_interval(values)
        assert low < values.mean() < high
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # ~ 1/sqrt(n): 50 seeds give a 3x narrower interval
    assert np.isnan(mean_interval([0.8])).all()  # one seed: no interval, not a fake one


def test_std_uses_ddof_1_and_table_carries_intervals():
    hvs = [0.5, 0.7, 0.65, 0.55, 0.6]
    row = aggregate(_records({"soups": hvs})).iloc[0]
    assert row["hypervolume_std"] == pytest.approx(np.std(hvs, ddof=1))
    assert row["hypervolume_std"] != pytest.approx(np.std(hvs, ddof=0))
    assert row["hypervolume_lo"] < row["hypervolume_mean"] < row["hypervolume_hi"]
    one = aggregate(_records({"mod": [0.4]})).iloc[0]
    assert np.isnan(one["hypervolume_std"]) and np.isnan(one["hypervolume_lo"])


def test_probability_of_improvement():
    a, b = np.array([0.8, 0.7, 0.9, 0.75, 0.85]), np.array([0.7, 0.69, 0.8, 0.7, 0.6])
    better = paired(a, b)
    assert better["p_improvement"] == 1.0
    assert better["p_improvement_lo"] == better["p_improvement_hi"] == 1.0
    assert better["difference_lo"] > 0 and better["seeds"] == 5
    assert better["p_value"] == pytest.approx(0.0625)  # exact Wilcoxon, 5 seeds: its minimum
    assert paired(b, a)["p_improvement"] == 0.0
    same = paired(a, a)
    assert same["p_improvement"] == 0.5 and same["p_value"] == 1.0
    assert same["difference_lo"] == same["difference_hi"] == 0.0
    mixed = paired(a, a + np.array([0.01, -0.01, 0.02, -0.02, 0.0]))  # noise both ways
    assert mixed["p_improvement"] == 0.5
    assert mixed["p_improvement_lo"] < 0.5 < mixed["p_improvement_hi"]


def test_pairs_match_by_seed_and_the_base_row_counts_at_every_seed():
    records = _records({"a": [0.8, 0.9, 0.7], "b": [0.7, 0.8, 0.95]})
    records = [r for r in records if not (r["method"] == "b" and r["seed"] == 1)]
    records.append({**_records({"base": [0.1]})[0], "seed": 0})
    pairs = paired_comparisons(records).set_index(["metric", "method", "other"])
    ab = pairs.loc[("hypervolume", "a", "b")]
    assert ab["seeds"] == 2  # seeds 0 and 2 only: b has no seed 1
    assert ab["difference"] == pytest.approx(((0.8 - 0.7) + (0.7 - 0.95)) / 2)
    assert pairs.loc[("hypervolume", "a", "base"), "seeds"] == 3
    assert pairs.loc[("hypervolume", "a", "base"), "p_improvement"] == 1.0


def test_ties_marked_when_not_separated_and_not_when_separated():
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.05, 5)
    records = _records(
        {
            "best": list(0.80 + noise),
            "close": list(0.79 + noise[::-1]),  # 0.01 lower, same spread: overlapping
            "far": list(0.50 + noise),
            "single": [0.79],  # one seed cannot be separated from anything
        }
    )
    table = aggregate(records).set_index("method")
    marks = table["hypervolume_vs_best"].to_dict()
    assert marks == {"best": "best", "close": "tied", "far": "below", "single": "tied"}
    assert table["expected_utility_vs_best"].to_dict() == marks
    text = markdown(table.reset_index(), pairs=paired_comparisons(records))
    assert "| far | 5 | 0.5" in text and "≈ |" not in text.split("| far |")[1].split("\n")[0]
    single = text.split("| single | 1 | ")[1].split("\n")[0]
    assert single.startswith("0.79 ≈ |")  # no interval with one seed, tie marked
    assert "**0.8" in text.split("| best | 5 | ")[1]
    assert "≈: not separated from the best" in text


def test_figures_use_intervals_and_paired_heatmap():
    records = _records({"a": [0.8, 0.9, 0.85], "b": [0.5, 0.6, 0.55]})
    table, pairs = aggregate(records), paired_comparisons(records)
    bars = hv_vs_samples(table).data
    a = table.set_index("method").loc["a"]
    trace = next(t for t in bars if t.name == "a")
    assert trace.error_y.array[0] == pytest.approx(a["hypervolume_hi"] - a["hypervolume_mean"])
    assert trace.error_y.arrayminus[0] == pytest.approx(a["hypervolume_mean"] - a["hypervolume_lo"])
    heat = improvement_heatmap(pairs, "s").data[0]
    z = dict(zip(heat.y, heat.z, strict=True))
    assert z["a"][list(heat.x).index("b")] == 1.0 and z["b"][list(heat.x).index("a")] == 0.0
    assert "improvement_s" in all_figures(records, table)


def test_write_leaderboard_json_has_intervals_pairs_ties_and_gradient_conflict(tmp_path):
    records = _records({"a": [0.8, 0.9, 0.85], "b": [0.5, 0.6, 0.55]})
    base = {**_records({"base": [0.1]})[0], "gradient_conflict": {
        "objectives": ["x", "y"], "batches": 3, "cosine": [[1.0, -0.25], [-0.25, 1.0]]}}  # fmt: skip
    folder = tmp_path / "s" / "records"
    folder.mkdir(parents=True)
    for i, record in enumerate([*records, base]):
        (folder / f"{i}.json").write_text(json.dumps(record))
    paths = write_leaderboard(tmp_path)
    doc = json.loads(paths["json"].read_text())
    rows = {r["method"]: r for r in doc["rows"]}
    assert rows["a"]["seeds"] == 3 and rows["a"]["hypervolume_lo"] < rows["a"]["hypervolume_hi"]
    assert rows["a"]["hypervolume_vs_best"] == "best" and rows["base"]["hypervolume_lo"] is None
    assert doc["statistics"] == {"level": 0.95, "bootstrap": 2000, "seed": 0, "ddof": 1}
    assert {(p["method"], p["other"]) for p in doc["paired"]} >= {("a", "b"), ("b", "base")}
    assert doc["suites"]["s"]["gradient_conflict"]["cosine"][0][1] == -0.25
    text = paths["md"].read_text()
    assert "x/y -0.25" in text and "Paired hypervolume, a vs each method" in text
    assert "improvement_s" in paths and paths["improvement_s"].exists()
