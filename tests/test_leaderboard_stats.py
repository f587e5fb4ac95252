"""Leaderboard statistics: t intervals over seeds, paired comparisons, tie marks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from morl_core.bench.figures import all_figures, hv_vs_samples, improvement_heatmap, kl_frontier
from morl_core.bench.leaderboard import (
    MIN_SHARED_SEEDS,
    aggregate,
    cannot_tell,
    mean_interval,
    paired,
    paired_comparisons,
    t_interval,
    wilson_interval,
)
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


@pytest.mark.parametrize("seeds", [3, 5])
def test_equal_methods_are_separated_as_rarely_as_the_level_says(seeds):
    """Two methods whose per-seed difference has mean 0 (normal noise): the paired interval
    excludes 0 in about 5 % of draws, the level it claims. A percentile bootstrap over seeds
    (what the leaderboard used) excludes it in about 25 % of draws with 3 seeds and 17 % with 5:
    its mean never leaves the values' range, so 3 same-sign seeds always looked separated."""
    rng = np.random.default_rng(11)
    draws = 3000
    separated = 0
    for _ in range(draws):
        d = rng.normal(0.0, 0.02, seeds)
        found = paired(d, np.zeros(seeds))
        separated += not found["difference_lo"] <= 0 <= found["difference_hi"]
    assert 0.035 < separated / draws < 0.065  # 5 %, +-1.5 points of simulation noise


def test_a_real_difference_is_separated_and_its_win_share_interval_stays_in_0_1():
    found = paired([0.80, 0.82, 0.81, 0.83, 0.80], [0.70, 0.71, 0.69, 0.72, 0.70])
    assert found["difference_lo"] > 0 and found["p_improvement"] == 1.0
    assert 0.5 < found["p_improvement_lo"] < 1.0 and found["p_improvement_hi"] == 1.0
    assert found["interval"] == "student_t"
    low, high = wilson_interval(0.5, 4)
    assert low > 0 and high < 1 and (low + high) / 2 == pytest.approx(0.5)
    assert t_interval(1.0, 0.5, 4) == pytest.approx((1.0 - 3.182 * 0.25, 1.0 + 3.182 * 0.25), 1e-3)


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
    # 5 wins of 5 seeds: Wilson's interval keeps room for chance, not a point at 1
    assert better["p_improvement_lo"] == pytest.approx(0.566, abs=1e-3)
    assert better["p_improvement_hi"] == 1.0
    # ... and the paired t interval still contains 0: the wins range from 0.01 to 0.25
    assert better["difference_lo"] < 0 < better["difference"] and better["seeds"] == 5
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
    assert single.startswith("0.79 ≈? |")  # no interval with one seed: cannot tell, a tie
    assert "**0.8" in text.split("| best | 5 | ")[1]
    assert "≈: not separated from the best" in text


def _marks(values: dict[str, list[float]]) -> tuple[dict, dict, str]:
    """HV marks, shared seeds with the best, and the Markdown of ``_records(values)``."""
    records = _records(values)
    table = aggregate(records)
    text = markdown(table, pairs=paired_comparisons(records))
    table = table.set_index("method")
    return table["hypervolume_vs_best"].to_dict(), table["hypervolume_shared_seeds"], text


def test_two_shared_seeds_cannot_separate_even_a_large_gap():
    assert MIN_SHARED_SEEDS == 3
    marks, shared, text = _marks({"best": [0.90, 0.91], "far": [0.50, 0.52]})
    assert paired([0.90, 0.91], [0.50, 0.52])["difference_lo"] > 0  # the interval excludes 0
    assert marks == {"best": "best", "far": "tied"} and shared["far"] == 2  # but: cannot tell
    assert "| far | 2 | 0.51 [0.383, 0.637] ≈? |" in text  # t(1) = 12.7: two seeds say little
    assert "≈?: cannot tell: fewer than 3 seeds shared with the best" in text


def test_three_shared_seeds_separate_a_clear_gap_but_not_overlapping_noise():
    marks, shared, text = _marks(
        {
            "best": [0.90, 0.91, 0.92],
            "far": [0.50, 0.52, 0.51],  # every seed 0.4 lower
            "close": [0.92, 0.88, 0.90],  # differences -0.02, +0.03, +0.02: straddle 0
        }
    )
    assert marks == {"best": "best", "far": "below", "close": "tied"}
    assert shared["far"] == shared["close"] == 3
    row = text.split("| close | 3 | ")[1].split(" |")[0]
    assert row.endswith(" ≈")  # a real tie: the paired interval contains 0, not "cannot tell"
    assert "≈" not in text.split("| far | 3 | ")[1].split("\n")[0]


def test_base_row_is_shared_at_every_seed_so_it_can_be_separated():
    records = _records({"best": [0.90, 0.91, 0.92]})
    records.append({**_records({"base": [0.1]})[0], "seed": 0})
    table = aggregate(records).set_index("method")
    assert table.loc["base", "hypervolume_vs_best"] == "below"
    assert table.loc["base", "hypervolume_shared_seeds"] == 3
    assert not cannot_tell(table.loc["base"], "hypervolume")


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


def _kl_record(method: str, seed: int, kl: list | None, front: list) -> dict:
    """A two-preference record with per-preference KL (None: not recorded)."""
    return {"suite": "s", "method": method, "seed": seed, "status": "succeeded",
            "objectives": ["x", "y"], "preferences": [[1.0, 0.0], [0.0, 1.0]], "front": front,
            "front_kl_per_token": kl, "hypervolume": 0.5, "expected_utility": 0.5}  # fmt: skip


def _kl_records() -> list[dict]:
    return [
        _kl_record("far", 0, [0.04, 0.05], [[0.9, 0.1], [0.2, 0.8]]),
        _kl_record("far", 1, [0.06, 0.07], [[0.8, 0.1], [0.2, 0.6]]),
        _kl_record("near", 0, [0.01, 0.02], [[0.5, 0.3], [0.3, 0.4]]),
        _kl_record("near", 1, [0.01, 0.02], [[0.5, 0.3], [0.3, 0.4]]),
        _kl_record("mixture", 0, [None, None], [[0.7, 0.2], [0.2, 0.7]]),
        _kl_record("base", 0, [0.0, 0.0], [[0.3, 0.2], [0.3, 0.2]]),
    ]


def test_kl_frontier_plots_each_preference_from_the_records():
    fig = kl_frontier(_kl_records(), "s")
    assert [a.text for a in fig.layout.annotations] == ["w = (1, 0)", "w = (0, 1)"]
    at = {(t.name, t.xaxis): (t.x[0], t.y[0], t) for t in fig.data}  # x: first panel, x2: second
    assert set(at) == {(m, x) for m in ("far", "near", "base") for x in ("x", "x2")}
    far_x, far_y, far = at[("far", "x")]
    assert far_x == pytest.approx(0.05) and far_y == pytest.approx(0.85)  # means over 2 seeds
    assert at[("far", "x2")][:2] == pytest.approx((0.06, 0.7))  # w . p at w = (0, 1)
    assert at[("near", "x")][0] < far_x  # lower KL in the records: further left
    assert at[("base", "x")][:2] == (0.0, 0.3) and at[("base", "x2")][:2] == (0.0, 0.2)
    low, high = mean_interval([0.04, 0.06])
    assert far.error_x.array[0] == pytest.approx(high - 0.05)  # seeds as error bars
    assert far.error_x.arrayminus[0] == pytest.approx(0.05 - low)
    assert "no KL recorded for mixture" in fig.layout.title.text
    assert fig.layout.xaxis.title.text == "KL to base (nats/token)"
    only_base = [r for r in _kl_records() if r["method"] in ("base", "mixture")]
    assert "kl_frontier_s" in all_figures(_kl_records(), aggregate(_kl_records()))
    assert "kl_frontier_s" not in all_figures(only_base, aggregate(only_base))


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
    assert doc["statistics"] == {
        "level": 0.95,
        "interval": "student_t",
        "p_improvement_interval": "wilson",
        "ddof": 1,
    }
    assert {(p["method"], p["other"]) for p in doc["paired"]} >= {("a", "b"), ("b", "base")}
    assert doc["suites"]["s"]["gradient_conflict"]["cosine"][0][1] == -0.25
    text = paths["md"].read_text()
    assert "x/y -0.25" in text and "Paired hypervolume, a vs each method" in text
    assert "improvement_s" in paths and paths["improvement_s"].exists()
    assert "- [improvement_s](improvement_s.html): s: probability of improvement" in text


def test_an_update_keeps_the_suites_the_new_records_do_not_cover(tmp_path):
    """A suite whose records are gone keeps its published rows, comparisons and figures; a
    suite with records is recomputed; without --update the old suite is dropped."""

    def write(out, suite, values):
        folder = out / suite / "records"
        folder.mkdir(parents=True)
        for i, record in enumerate(_records(values, suite)):
            (folder / f"{i}.json").write_text(json.dumps(record))

    first, second, dest = tmp_path / "first", tmp_path / "second", tmp_path / "lb"
    write(first, "old", {"a": [0.8, 0.9, 0.85], "b": [0.5, 0.6, 0.55]})
    write(first, "both", {"a": [0.1, 0.2, 0.3]})
    write_leaderboard(first, dest=dest)
    # as a leaderboard from before the t interval: bootstrap bounds, pairs without "interval"
    old = json.loads((dest / "leaderboard.json").read_text())
    for row in old["rows"]:
        row["hypervolume_lo"], row["hypervolume_hi"] = 0.0, 1.0
    for pair in old["paired"]:
        del pair["interval"]
    (dest / "leaderboard.json").write_text(json.dumps(old))
    write(second, "new", {"c": [0.3, 0.4, 0.35]})
    write(second, "both", {"a": [0.6, 0.7, 0.8]})
    paths = write_leaderboard(second, dest=dest, update=True)
    doc = json.loads(paths["json"].read_text())
    rows = {(r["suite"], r["method"]): r for r in doc["rows"]}
    assert set(rows) == {("old", "a"), ("old", "b"), ("both", "a"), ("new", "c")}
    assert rows[("old", "a")]["hypervolume_mean"] == pytest.approx(0.85)
    # a carried row's interval is the t interval of its kept mean, std and seeds
    assert rows[("old", "a")]["hypervolume_lo"] == pytest.approx(mean_interval([0.8, 0.9, 0.85])[0])
    assert rows[("both", "a")]["hypervolume_mean"] == pytest.approx(0.7)  # recomputed
    assert doc["carried"] == ["old"]
    assert {p["interval"] for p in doc["paired"]} == {
        "bootstrap"
    }  # the kept ones say what they are
    assert {p["suite"] for p in doc["paired"]} == {"old"}  # "new" and "both": one method each
    text = paths["md"].read_text()
    assert "### old" in text and "### new" in text and "Carried over: old" in text
    assert "- [improvement_old](improvement_old.html)" in text
    assert (dest / "improvement_old.html").exists()
    assert "old" in (dest / "hv_vs_samples.html").read_text()  # the cross-suite figures too
    paths = write_leaderboard(second, dest=dest)  # no update: the old suite goes
    assert {r["suite"] for r in json.loads(paths["json"].read_text())["rows"]} == {"new", "both"}


def test_write_leaderboard_writes_and_lists_the_kl_frontier(tmp_path):
    folder = tmp_path / "s" / "records"
    folder.mkdir(parents=True)
    for i, record in enumerate(_kl_records()):
        (folder / f"{i}.json").write_text(json.dumps(record))
    paths = write_leaderboard(tmp_path)
    assert paths["kl_frontier_s"] == tmp_path / "kl_frontier_s.html"
    assert paths["kl_frontier_s"].exists()
    text = paths["md"].read_text()
    assert "- [kl_frontier_s](kl_frontier_s.html): s: utility vs KL to the base model" in text


def test_front_gain_is_what_a_front_adds_over_its_best_point():
    from morl_core.bench.leaderboard import front_gain

    ref = [0.0, 0.0]
    one = {"front": [[0.5, 0.5]] * 3, "reference_point": ref, "hypervolume": 0.25}
    assert front_gain(one) == pytest.approx(0.0)
    # three points on x + y = 1: the staircase is 0.1875 + 0.125 + 0.0625, the best box 0.25
    trade = {"front": [[0.25, 0.75], [0.5, 0.5], [0.75, 0.25]], "reference_point": ref,
             "hypervolume": 0.375}  # fmt: skip
    assert front_gain(trade) == pytest.approx(0.5)
    below = {"front": [[-0.1, 0.5]], "reference_point": ref, "hypervolume": 0.0}
    assert np.isnan(front_gain(below)) and np.isnan(front_gain({"front": []}))
    rows = aggregate([
        {**trade, "suite": "s", "method": "m", "seed": s, "status": "succeeded"} for s in (0, 1)
    ])  # fmt: skip
    assert rows.loc[0, "front_gain_mean"] == pytest.approx(0.5)
