"""Learning curves in benchmark records and the leaderboard: the plateau rule, downsampling,
curves read from run folders for records written before curves were stored."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from morl_core.bench.curves import (
    MAX_POINTS,
    downsample,
    flattened_summary,
    learning_curve,
    plateau,
    record_curve,
)
from morl_core.bench.report import write_leaderboard


def _noisy(curve: np.ndarray, seed: int = 0, scale: float = 0.01) -> np.ndarray:
    return curve + np.random.default_rng(seed).normal(0, scale, curve.size)


def _rows(reward, stage: str | None = None, start: int = 1) -> list[dict]:
    """``metrics.jsonl`` rows of one stage."""
    rows = [
        {"step": start + i, "reward/scalarized": float(r), "samples": 16 * (start + i)}
        for i, r in enumerate(reward)
    ]
    return [r | {"stage": stage} for r in rows] if stage else rows


def test_a_rising_curve_has_not_flattened():
    steps = np.arange(30)
    p = plateau(_noisy(steps / 30))  # a straight rise: a third of the gain in the last quarter
    assert p["flattened"] is False and p["steps"] == 30
    assert p["last_quarter_share"] == pytest.approx(1 / 3, abs=0.05)
    assert p["gain"] > p["noise"] > 0


def test_a_curve_flat_after_its_rise_has_flattened():
    steps = np.arange(30)
    p = plateau(_noisy(np.minimum(steps / 10, 1.0)))  # up by step 10, then flat
    assert p["flattened"] is True
    assert abs(p["last_quarter_share"]) < 0.1 and p["gain"] > 0.5


def test_noise_without_gain_has_flattened_and_a_short_stage_is_not_judged():
    p = plateau(_noisy(np.full(30, 0.5), scale=0.05))
    assert p["flattened"] is True and p["last_quarter_share"] is None and p["gain"] <= p["noise"]
    assert plateau([0.1, 0.2, 0.3])["flattened"] is None


def test_downsampling_keeps_first_and_last_and_the_plateau_sees_every_step():
    idx = downsample(1000)
    assert idx[0] == 0 and idx[-1] == 999 and len(idx) <= MAX_POINTS
    assert (np.diff(idx) > 0).all()
    assert downsample(7).tolist() == list(range(7))
    reward = np.linspace(0, 1, 200)
    curve = learning_curve(_rows(reward))
    points = curve["stages"]["training"]
    assert points["step"][0] == 1 and points["step"][-1] == 200 and len(points["step"]) <= 60
    assert points["reward"][0] == 0.0 and points["reward"][-1] == 1.0
    assert curve["plateau"]["training"]["steps"] == 200  # judged before downsampling


def test_stages_keep_training_order_and_a_resumed_step_counts_once():
    flat, rising = np.full(20, 0.9), np.linspace(0.2, 0.8, 20)
    rows = _rows(flat, "expert_a") + _rows(rising, "meta-policy", start=21)
    rows.append({"step": 40, "stage": "meta-policy", "reward/scalarized": 0.8, "attempt": 2})
    curve = learning_curve(rows)
    assert list(curve["stages"]) == ["expert_a", "meta-policy"]
    assert curve["stages"]["meta-policy"]["step"] == list(range(1, 21))  # within the stage
    assert curve["plateau"]["meta-policy"]["steps"] == 20
    assert learning_curve(rows, keep_stage="expert")["stages"].keys() == {"expert_a"}
    summary = flattened_summary([curve])
    assert summary["rising_stages"] == 1 and summary["curve_stages"] == 2
    assert summary["flattened"].startswith("no: ") and "(1 of 2 stages)" in summary["flattened"]
    assert flattened_summary([None])["flattened"] == "no curve"
    falling = learning_curve(_rows(np.linspace(0.9, 0.5, 20), "dynaopt"))
    assert flattened_summary([falling])["flattened"] == "yes: no gain above noise"


def _write_run(data_dir, run_id: str, rows: list[dict]) -> None:
    folder = data_dir / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _record(method: str, seed: int, run_id: str | None, hv: float) -> dict:
    return {
        "suite": "s",
        "method": method,
        "seed": seed,
        "run_id": run_id,
        "status": "succeeded",
        "hypervolume": hv,
        "expected_utility": hv / 2,
        "training_samples": 100,
    }


def test_leaderboard_reads_old_records_curves_from_the_data_dir(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    folder = out / "s" / "records"
    folder.mkdir(parents=True)
    steps = np.arange(40)
    for seed in range(3):
        _write_run(data, f"rise{seed}", _rows(_noisy(steps / 40, seed), "soups"))
        _write_run(data, f"flat{seed}", _rows(_noisy(np.minimum(steps / 8, 1), seed), "mod"))
        records = [
            _record("soups", seed, f"rise{seed}", 0.8),
            _record("mod", seed, f"flat{seed}", 0.7),
            _record("panacea", seed, f"gone{seed}", 0.6),  # its run folder is not there
        ]
        for record in records:
            (folder / f"{record['method']}__seed{seed}.json").write_text(json.dumps(record))
    (folder / "base.json").write_text(json.dumps(_record("base", 0, None, 0.1)))
    paths = write_leaderboard(out, dest=tmp_path / "lb", data_dirs=[tmp_path / "none", data])

    rows = {r["method"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    assert rows["mod"]["flattened"] == "yes"
    assert rows["soups"]["flattened"].startswith("no: 3")  # ~ a third of the gain
    assert rows["soups"]["flattened"].endswith("of the gain in the last quarter (1 of 1 stage)")
    assert rows["panacea"]["flattened"] == "no curve" and rows["base"]["flattened"] == "n/a"
    assert rows["soups"]["seed_curves"] == 3
    text = paths["md"].read_text()
    assert "| models_kept | flattened |" in text
    assert "| mod | 3 | " in text and text.split("| mod | 3 | ")[1].split("\n")[0].endswith(
        "| yes |"
    )
    assert '"no curve": the record predates stored curves' in text
    assert "- [learning_curves_s](learning_curves_s.html): s: training reward" in text
    assert "flattened" in paths["csv"].read_text().splitlines()[0].split(",")

    html = paths["learning_curves_s"].read_text()
    assert "suite's budget" in html and "no curve for panacea" in html


def test_learning_curves_figure_has_a_panel_per_method_and_a_line_per_stage():
    from morl_core.bench.figures import learning_curves

    steps = np.arange(20)
    stages = _rows(steps / 20, "pref00") + _rows(np.full(20, 0.5), "pref01", start=21)
    records = [
        {**_record("morlhf", seed, None, 0.5), "learning_curve": learning_curve(stages)}
        for seed in range(2)
    ] + [{**_record("ric", 0, None, 0.4), "learning_curve": learning_curve(_rows(steps / 20))}]
    fig = learning_curves(records, "s")
    names = [t.name for t in fig.data]
    assert names == ["morlhf pref00", "morlhf pref01", "morlhf", "ric"]  # one stage: no faint
    mean = next(t for t in fig.data if t.name == "morlhf")
    assert mean.y[0] == pytest.approx((0.0 + 0.5) / 2)  # over stages, then seeds
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["morlhf: still rising (1 of 2 stages)", "ric: still rising"]
    assert "training reward" in fig.layout.title.text and "budget" in fig.layout.title.text


def test_a_stored_curve_wins_and_the_prior_keeps_the_experts(tmp_path):
    rows = _rows(np.full(20, 0.9), "expert_a") + _rows(np.full(20, 0.5), "meta-policy", 21)
    _write_run(tmp_path, "run", rows)
    old = _record("metapolicy_prior", 0, "run", 0.5)
    prior = record_curve(old, [tmp_path], prior_method="metapolicy_prior")
    assert list(prior["stages"]) == ["expert_a"]
    meta = record_curve(old | {"method": "metapolicy"}, [tmp_path], "metapolicy_prior")
    assert list(meta["stages"]) == ["expert_a", "meta-policy"]
    stored = {"metric": "m", "stages": {}, "plateau": {}}
    assert record_curve(old | {"method": "x", "learning_curve": stored}, [tmp_path]) is stored
    assert record_curve(old | {"run_id": None}, [tmp_path]) is None


def test_evaluate_record_stores_the_runs_curve(tmp_path, monkeypatch):
    import morl_core.evaluation
    import morl_core.methods.common
    from morl_core.bench.runner import evaluate_record

    front = {
        "points": [[0.5, 0.5]],
        "indicators": {"ref": [0, 0], "intervals": {}, "hypervolume": 0.25},
        "protocol": {},
        "protocol_version": 1,
        "preferences": [[0.5, 0.5]],
        "kl_per_token": [None],
        "kl_per_sequence": [None],
        "eval_seconds": 1.0,
        "replies": 1,
        "passes_per_token": 1,
        "models_kept": 1,
    }
    monkeypatch.setattr(morl_core.evaluation, "evaluate_run", lambda *a, **k: front)
    monkeypatch.setattr(morl_core.methods.common, "read_artifact", lambda run_dir: {})
    _write_run(tmp_path, "r1", _rows(np.linspace(0, 1, 30), "soups"))
    suite = SimpleNamespace(name="s", version=1, objectives=("a", "b"), eval_protocol=lambda: None)
    status = SimpleNamespace(samples=480)
    record = evaluate_record(suite, "soups", 0, tmp_path / "runs" / "r1", status)
    assert record["learning_curve"]["stages"]["soups"]["step"][-1] == 30
    assert record["learning_curve"]["plateau"]["soups"]["flattened"] is False
    assert record["run_id"] == "r1" and record["hypervolume"] == 0.25


def test_cli_names_a_data_dir_without_runs(tmp_path, capsys):
    from morl_core.cli import main

    folder = tmp_path / "out" / "s" / "records"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps(_record("soups", 0, "r", 0.5)))
    args = ["leaderboard", "--out", str(tmp_path / "out"), "--dest", str(tmp_path / "lb")]
    assert main([*args, "--data-dir", str(tmp_path / "nowhere")]) != 0
    assert "--data-dir" in capsys.readouterr().err and not (tmp_path / "lb").exists()
    assert main(args) == 0
    assert "| no curve |" in (tmp_path / "lb" / "leaderboard.md").read_text()


def test_the_prior_row_takes_the_experts_of_its_meta_policys_stored_curve(tmp_path):
    expert = _noisy(np.minimum(np.arange(20) / 5, 1))  # up, then flat
    rows = _rows(expert, "expert_a") + _rows(np.linspace(0, 1, 20), "meta-policy", 21)
    meta = _record("metapolicy", 0, "run", 0.6) | {"learning_curve": learning_curve(rows)}
    prior = _record("metapolicy_prior", 0, "run", 0.5)  # the runner stores no curve here
    folder = tmp_path / "s" / "records"
    folder.mkdir(parents=True)
    for record in (meta, prior):
        (folder / f"{record['method']}.json").write_text(json.dumps(record))
    paths = write_leaderboard(tmp_path, dest=tmp_path / "lb")  # no data dir
    rows = {r["method"]: r for r in json.loads(paths["json"].read_text())["rows"]}
    assert rows["metapolicy_prior"]["flattened"] == "yes"  # its flat expert only
    assert rows["metapolicy"]["flattened"].startswith("no: ")  # the rising upper level
