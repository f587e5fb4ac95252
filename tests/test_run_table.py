"""Managing runs: tags and notes, the filtered runs table, config diff, smoothing, one line per
policy, overlays and the cost estimate (pure functions, no Streamlit)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from morl_core.app import run_table, runs
from morl_core.jobs import RunState, RunStatus


def two_policy_rows(t0: float = 1000.0) -> list[dict]:
    """A MORLHF-like run: policy pref00 then pref01, 3 steps each of 16 samples, 2 s a step."""
    rows = []
    for step in range(1, 7):
        stage = "pref00" if step <= 3 else "pref01"
        reward = 0.1 * step if stage == "pref00" else 0.9 - 0.1 * (step - 3)
        rows.append({"step": step, "total_steps": 6, "samples": 16 * step, "stage": stage,
                     "time": t0 + 2.0 * step, "attempt": 1, "reward/a": reward, "kl": 0.01 * step,
                     "length": 10.0 + step % 2})  # fmt: skip
    return rows


# --- tags and notes ---


def test_tags_parse_dedupe_and_refuse_bad_ones_by_field():
    assert run_table.parse_tags(" baseline, lr-high  baseline,v1.2 ") == [
        "baseline",
        "lr-high",
        "v1.2",
    ]
    with pytest.raises(ValueError, match=r"^tags: \['a/b'\]"):
        run_table.parse_tags("ok, a/b")
    with pytest.raises(ValueError, match="tags: 13 given; at most 12"):
        run_table.parse_tags(",".join(f"t{i}" for i in range(13)))


def test_notes_round_trip_bounded_and_refuse_a_symlink(tmp_path):
    assert run_table.read_notes(tmp_path) == {"tags": [], "note": ""}
    run_table.write_notes(tmp_path, "baseline, seed0", "first try")
    assert run_table.read_notes(tmp_path) == {"tags": ["baseline", "seed0"], "note": "first try"}
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # written atomically
    with pytest.raises(ValueError, match="note: 2001 characters; at most 2000"):
        run_table.write_notes(tmp_path, "", "x" * 2001)
    assert run_table.read_notes(tmp_path)["note"] == "first try"  # unchanged
    (tmp_path / run_table.NOTES).write_text('{"tags": "not a list", "note": 3}')
    assert run_table.read_notes(tmp_path) == {"tags": [], "note": ""}
    outside = tmp_path / "outside.json"
    outside.write_text("{}")
    (tmp_path / run_table.NOTES).unlink()
    (tmp_path / run_table.NOTES).symlink_to(outside)
    with pytest.raises(ValueError, match="symlink"):
        run_table.write_notes(tmp_path, "x", "y")
    assert outside.read_text() == "{}"
    assert run_table.read_notes(tmp_path) == {"tags": [], "note": ""}  # not followed either


# --- the runs table ---


def statuses() -> list[RunStatus]:
    return [
        RunStatus("r1", RunState.SUCCEEDED, "morlhf", ("sentiment", "brevity"), step=6,
                  total_steps=6, created=3.0),
        RunStatus("r2", RunState.CANCELLED, "soups", ("sentiment", "brevity", "readability"),
                  step=2, total_steps=9, created=2.0, message="cancelled after step 2"),
        RunStatus("r3", RunState.RUNNING, "morlhf", ("sentiment", "readability"), step=1,
                  total_steps=4, created=1.0),
    ]  # fmt: skip


def test_filter_rows_by_each_column_text_and_sort():
    notes = {
        "r1": {"tags": ["baseline", "lr"], "note": "Good run"},
        "r3": {"tags": ["lr"], "note": ""},
    }
    rows = run_table.table_rows(statuses(), notes)
    assert rows[1]["step"] == "2/9" and rows[1]["tags"] == [] and rows[0]["note"] == "Good run"

    def ids(**kw):
        return [r["run"] for r in run_table.filter_rows(rows, **kw)]

    assert ids() == ["r1", "r2", "r3"]  # newest first
    assert ids(filters={"method": ["morlhf"]}) == ["r1", "r3"]
    assert ids(filters={"state": ["cancelled", "running"]}) == ["r2", "r3"]
    assert ids(filters={"objectives": ["brevity", "readability"]}) == ["r2"]  # has all of them
    assert ids(filters={"tags": ["lr"], "method": ["morlhf"]}) == ["r1", "r3"]
    assert ids(filters={"tags": ["baseline", "lr"]}) == ["r1"]
    assert ids(text="GOOD") == ["r1"] and ids(text="after step") == ["r2"] and ids(text="zz") == []
    assert ids(sort="progress", descending=False) == ["r2", "r3", "r1"]  # 2/9 < 1/4 < 1
    assert run_table.filter_choices(rows)["tags"] == ["baseline", "lr"]
    with pytest.raises(ValueError, match="allowed filters method, state"):
        run_table.filter_rows(rows, {"colour": ["red"]})
    with pytest.raises(ValueError, match="sorts created"):
        run_table.filter_rows(rows, sort="size")


def test_config_diff_lists_only_differing_fields_options_one_by_one():
    a = {"method": "emorl", "seed": 0, "lr": 1e-3, "objectives": ["a", "b"],
         "options": {"search_rounds": 3, "mix_at": "final"}}  # fmt: skip
    b = {**a, "seed": 1, "objectives": ["a", "c"], "options": {"search_rounds": 3}}
    assert run_table.config_diff(a, b) == [
        {"field": "objectives", "A": "a, b", "B": "a, c"},
        {"field": "options.mix_at", "A": "final", "B": "—"},
        {"field": "seed", "A": "0", "B": "1"},
    ]
    assert run_table.config_diff(a, dict(a)) == []


# --- curves ---


def test_smooth_is_tensorboards_debiased_ema():
    assert run_table.smooth([1.0, 5.0, 2.0], 0.0).tolist() == [1.0, 5.0, 2.0]
    out = run_table.smooth([1.0, None, 3.0, 3.0], 0.5)
    # debiased EMA m_n / (1 - 0.5^n): m = 0.5, 1.75, 2.375 over n = 1, 2, 3 values seen
    assert out[0] == 1.0 and np.isnan(out[1])
    assert out[2:] == pytest.approx([(0.25 + 1.5) / 0.75, (0.875 + 1.5) / 0.875])
    assert run_table.smooth([4.0] * 5, 0.9) == pytest.approx([4.0] * 5)  # no pull towards 0
    with pytest.raises(ValueError, match="smoothing: 1.0; allowed: 0 <= smoothing < 1"):
        run_table.smooth([1.0], 1.0)


def test_policy_lines_one_per_policy_on_the_runs_axis():
    lines = run_table.policy_lines(two_policy_rows(), "reward/a", "samples")
    assert list(lines) == ["pref00", "pref01"]
    x, raw, _ = lines["pref01"]
    assert x.tolist() == [64, 80, 96] and raw == pytest.approx([0.8, 0.7, 0.6])
    x, _, _ = run_table.policy_lines(two_policy_rows(), "kl", "time")["pref01"]
    assert x.tolist() == [6.0, 8.0, 10.0]  # seconds since the run's first record
    single = [dict(r, stage="policy") for r in two_policy_rows()]
    (x, raw, _), = run_table.policy_lines(single, "reward/a", "step").values()  # fmt: skip
    assert x.tolist() == [1, 2, 3, 4, 5, 6] and len(raw) == 6
    with pytest.raises(ValueError, match="x_axis: 'epoch'"):
        run_table.policy_lines(single, "kl", "epoch")


def test_training_figure_draws_a_line_per_policy_never_one_zigzag():
    fig = run_table.training_figure(two_policy_rows(), ["a"], "step", smoothing=0.0)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["reward: a", "KL to base", "length (tokens)"]
    rewards = [t for t in fig.data if t.xaxis == "x"]
    assert [t.name for t in rewards] == ["pref00", "pref01"]
    assert [len(t.y) for t in rewards] == [3, 3]
    assert [t.name for t in fig.data if t.showlegend] == ["pref00", "pref01"]  # one legend each
    smoothed = run_table.training_figure(two_policy_rows(), ["a"], "step", smoothing=0.6)
    faint = [t for t in smoothed.data if t.opacity == 0.25]
    assert len(faint) == 6 and len(smoothed.data) == 12  # raw behind every smoothed line


def test_overlay_figure_one_line_per_run_and_chosen_x_axis():
    one = [dict(r, stage="") for r in two_policy_rows()]
    fig = run_table.overlay_figure(
        {"run A": one, "run B": two_policy_rows(50.0)}, "kl", "time", 0.0
    )
    assert [t.name for t in fig.data] == ["run A", "run B · pref00", "run B · pref01"]
    assert fig.layout.xaxis.title.text == "wall time (s)"
    assert len({t.line.color for t in fig.data}) == 3
    lone = run_table.overlay_figure({"r": one[:1]}, "kl", "step", 0.0)
    assert lone.data[0].mode == "lines+markers"  # one point is drawn, not an empty chart
    assert run_table.metric_keys(one) == ["reward/a", "kl", "length"]


# --- the live view's lines ---


def test_run_label_and_a_cancelled_runs_line():
    running = RunStatus("r", RunState.STARTING, "morlhf", step=13, total_steps=60)
    assert runs.run_label(running) == "r · morlhf · running 13/60"
    cancelled = RunStatus("r", RunState.CANCELLED, "morlhf", step=13, total_steps=60, started=100.0,
                          finished=140.0, message="cancelled (worker process ended without a final state)")  # fmt: skip
    assert runs.progress_eta(cancelled)[1] == "cancelled at step 13/60 after 40 s"
    assert runs.shown_message(cancelled) == ""
    failed = RunStatus("r", RunState.FAILED, message="disk full")
    assert runs.shown_message(failed) == "disk full"


def test_visible_runs_are_mine_unless_everyones_with_a_shared_link_first(tmp_path, monkeypatch):
    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path))
    ids = [f"20260101-00000{i}-0000000{i}" for i in range(3)]
    listed = [RunStatus(i, RunState.SUCCEEDED) for i in ids]
    runs.record_owner(ids[0], "me")
    runs.record_owner(ids[2], "you")

    def shown(everyone=False, current=None):
        return [s.run_id for s in runs.visible_runs(listed, "me", everyone, current)]

    assert shown() == [ids[0]] and shown(everyone=True) == ids
    assert shown(current=ids[2]) == [ids[2], ids[0]]  # a shared link to someone else's run
    assert shown(current=ids[0]) == [ids[0]] and shown(current="gone") == [ids[0]]


def test_downloads_and_snapshot_figures_of_a_run_history(tmp_path):
    history = runs.RunHistory(tmp_path)
    assert [d[1] for d in history.downloads("r")][:2] == ["", ""]  # nothing recorded yet
    history.metrics = two_policy_rows()[:2]
    history.fronts = [{"step": 2, "samples": 32, "partial": False, "objectives": ["a", "b"],
                       "preferences": [[1, 0], [0, 1]], "points": [[0.9, 0.2], [0.3, 0.8]]}]  # fmt: skip
    (label, metrics, name, mime), fronts, everything = history.downloads("r")
    assert (label, name, mime) == ("Metrics CSV", "r-metrics.csv", "text/csv")
    assert metrics.splitlines()[0].startswith("step,total_steps,samples,stage")
    assert fronts[1].splitlines() == [
        "step,samples,w_a,w_b,a,b",
        "2,32,1,0,0.9,0.2",
        "2,32,0,1,0.3,0.8",
    ]
    assert json.loads(everything[1])["fronts"][0]["points"][1] == [0.3, 0.8]
    front, curve, lone = history.snapshot_figures(0, "r", "morlhf")
    assert front.layout.title.text == "front at step 2"
    assert curve.data[0].mode == "lines+markers" and list(curve.data[0].x) == [32.0]
    assert lone.startswith("One front snapshot so far (step 2): hypervolume")
    history.fronts *= 2
    assert history.snapshot_figures(1, "r", "morlhf")[2] == ""  # a line, no caption


# --- the cost estimate ---


def config(**kw) -> dict:
    base = {"method": "morlhf", "model": "embedded", "device": "cpu", "steps": 3,
            "batch_prompts": 2, "k_samples": 4, "max_new_tokens": 8}  # fmt: skip
    return base | kw


def test_step_timing_from_the_longest_attempt():
    rows = two_policy_rows()
    timing = run_table.step_timing(config(), rows)
    assert timing == run_table.StepTiming("morlhf", 2.0, 64, 2.0)
    resumed = rows[:2] + [dict(r, attempt=2, time=r["time"] + 500) for r in rows[2:]]
    assert run_table.step_timing(config(), resumed).seconds_per_step == 2.0  # no pause counted
    assert run_table.step_timing(config(), rows[:2]) is None


def test_estimate_scales_with_step_size_and_counts_policies():
    timings = [
        run_table.StepTiming("morlhf", 2.0, 64, 2.0),
        run_table.StepTiming("soups", 4.0, 64, 3.0),
    ]
    seconds, line = run_table.estimate_cost(config(steps=30), timings)
    # median of 2/64 and 4/64 s per unit = 3/64; x 64 units = 3 s/step; 30 x 2 policies = 60 steps
    assert seconds == pytest.approx(180.0)
    assert line == "≈ 3 min from 2 past embedded runs (device cpu): 3.0 s/step × 60 steps"
    double, _ = run_table.estimate_cost(config(steps=30, k_samples=8), timings)
    assert double == pytest.approx(360.0)
    _, other = run_table.estimate_cost(config(steps=30, method="panacea"), timings)
    assert "× 30 steps per policy" in other
    guess, line = run_table.estimate_cost(config(steps=100), [])
    assert guess == pytest.approx(100 * 64 * run_table.GUESS_SECONDS_PER_UNIT)
    assert "a guess: no past embedded runs (device cpu) here yet; 0.3 s/step" in line


def test_past_timings_read_finished_runs_on_the_same_model_and_device(tmp_path):
    def run(run_id, state, **kw):
        folder = tmp_path / run_id
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config(**kw)))
        (folder / "metrics.jsonl").write_text(
            "".join(json.dumps(r) + "\n" for r in two_policy_rows())
        )
        return SimpleNamespace(run_id=run_id, done=state != "running")

    listed = [run("a", "succeeded"), run("b", "running"), run("c", "failed", device="cuda"),
              run("d", "cancelled", model="gpt2"), run("e", "cancelled")]  # fmt: skip
    executor = SimpleNamespace(
        list=lambda: listed, store=SimpleNamespace(run_dir=lambda i: tmp_path / i)
    )
    assert len(run_table.past_timings(executor, "embedded", "cpu")) == 2  # a and e
    assert len(run_table.past_timings(executor, "embedded", "cpu", limit=1)) == 1
    assert run_table.past_timings(executor, "embedded", "cuda")[0].seconds_per_step == 2.0
