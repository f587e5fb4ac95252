"""The one evaluation protocol: same numbers from every entry point, intervals, CRN, KL, base row."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import numpy as np
import pytest

from morl_core import evaluation
from morl_core import kl as base_kl
from morl_core.evaluation import EvalProtocol
from morl_core.pareto import hypervolume, prompt_bootstrap

OBJECTIVES = ("sentiment", "brevity")
# small enough for a 2-core CPU: 4 held-out prompts x 4 samples of 12 tokens, 3 preferences
SMALL = EvalProtocol(max_prompts=4, samples=4, max_new_tokens=12, bootstrap=100)


@pytest.fixture()
def small_protocol(monkeypatch):
    """Every entry point reads the protocol at call time: make it the small one."""
    monkeypatch.setattr(evaluation, "DEFAULT_PROTOCOL", SMALL)
    return SMALL


@pytest.fixture(scope="module")
def soups_run(tmp_path_factory) -> Path:
    """A soups run on the embedded model (two one-step experts), trained in this process."""
    from morl_core.config import RunConfig
    from morl_core.train_cli import run_training

    config = RunConfig.from_dict(
        {
            "method": "soups",
            "objectives": list(OBJECTIVES),
            "steps": 1,
            "batch_prompts": 2,
            "k_samples": 2,
            "max_new_tokens": 8,
            "eval_prompts": 2,
            "n_preferences": 3,
            "eval_every": 0,
            "device": "cpu",
            "threads": 1,
            "lr": 0.01,
        }
    )
    return run_training(config, tmp_path_factory.mktemp("evaluation") / "soups")


# --- the protocol itself ---------------------------------------------------------------------


def test_protocol_is_declared_once_and_recorded():
    data = evaluation.default_protocol().to_dict()
    assert data["protocol_version"] == evaluation.PROTOCOL_VERSION
    assert data["samples"] >= 4 and data["max_prompts"] == 0  # all held-out prompts
    assert json.loads(json.dumps(data)) == data
    assert len(evaluation.default_protocol().eu_preferences(2)) == 21
    assert len(evaluation.default_protocol().eu_preferences(7)) == len(
        evaluation.simplex_lattice(7, evaluation.EU_DIVISIONS_ABOVE)
    )
    np.testing.assert_allclose(evaluation.reference_point(["sentiment", "brevity"]), [-0.1, -0.1])
    np.testing.assert_allclose(evaluation.reference_point(3, margin=0.2), [-0.2] * 3)  # a count


@pytest.mark.parametrize(
    ("field", "value"),
    [("samples", 0), ("samples", 10_000), ("bootstrap", -1), ("level", 1.0), ("top_p", 0.0)],
)
def test_protocol_names_a_bad_field(field, value):
    with pytest.raises(ValueError, match=field):
        EvalProtocol(**{field: value})


# --- bootstrap over prompts ------------------------------------------------------------------


def _noisy_front(n_prompts: int, rng: np.random.Generator):
    """Sums and counts (P=3, N, K=2) of one sample per prompt around three fixed points."""
    centre = np.array([[0.2, 0.8], [0.5, 0.5], [0.8, 0.2]])  # (3, 2)
    scores = centre[:, None, :] + rng.normal(0, 0.15, size=(3, n_prompts, 2))
    return scores, np.ones_like(scores), scores.mean(axis=1)


def test_bootstrap_interval_contains_the_estimate_and_shrinks_with_more_prompts():
    ref = np.array([-0.1, -0.1])
    weights = EvalProtocol().eu_preferences(2)
    widths = []
    for n_prompts in (8, 128):
        sums, counts, points = _noisy_front(n_prompts, np.random.default_rng(1))
        found = prompt_bootstrap(
            sums, counts, ref, weights, draws=300, level=0.95, rng=np.random.default_rng(0)
        )
        hv = hypervolume(points, ref)
        low, high = found["hypervolume"]
        assert low <= hv <= high
        assert found["expected_utility"][0] <= found["expected_utility"][1]
        widths.append(high - low)
    assert widths[1] < widths[0] / 2  # 16x the prompts: about a quarter of the width


def test_bootstrap_with_every_prompt_once_reproduces_the_points():
    sums, counts, points = _noisy_front(5, np.random.default_rng(2))
    single = prompt_bootstrap(
        sums, counts, [-0.1, -0.1], None, draws=1, level=0.5, rng=np.random.default_rng(0)
    )
    assert set(single) == {"hypervolume"}
    assert prompt_bootstrap(sums[:, :1], counts[:, :1], [-0.1, -0.1], None, draws=5, level=0.9,
                            rng=np.random.default_rng(0)) == {}  # fmt: skip
    with pytest.raises(ValueError, match="draws"):
        prompt_bootstrap(sums, counts, [0, 0], None, draws=0, level=0.9, rng=None)


# --- common random numbers, base row, KL -----------------------------------------------------


def test_common_random_numbers_give_identical_points_on_the_same_policy(small_protocol):
    """The base model ignores the preference: with the same seeds at every preference, its
    points (and replies) must be identical; seeding per preference would make them differ."""
    base = evaluation.evaluate_base(OBJECTIVES, n_preferences=3, device="cpu")
    points = np.asarray(base["points"])
    assert points.shape == (3, 2)
    np.testing.assert_array_equal(points[0], points[1])
    np.testing.assert_array_equal(points[0], points[2])
    assert base["examples"][0] == base["examples"][2]
    assert base["kl_per_token"] == [0.0, 0.0, 0.0] and base["method"] == "base"
    assert base["protocol"] == small_protocol.to_dict()
    sums = np.asarray(base["prompt_sums"])
    assert sums.shape == (3, 4, 2) and np.asarray(base["prompt_counts"]).max() == 4


def test_the_base_row_draws_its_replies_once_and_other_steerables_at_every_preference(
    small_protocol,
):
    """The base model's replies do not depend on the preference, so they are drawn once and
    scored at every preference; a steerable evaluated without ``base`` is sampled at each one,
    with the same seeds (common random numbers), so one that ignores w gets the same points."""
    from morl_core.policy import load_policy

    calls = []

    class Counting(evaluation.BasePolicy):
        def generate(self, prompts, weights, **gen):
            calls.append(gen["seed"])
            return super().generate(prompts, weights, **gen)

    steerable = Counting(load_policy("embedded", device="cpu"), OBJECTIVES)
    prompts, preferences = ["The food was", "My day was"], evaluation.preference_grid(2, 3)
    protocol = dataclasses.replace(small_protocol, kl=False)
    base = evaluation.evaluate_front(
        steerable, prompts, preferences, OBJECTIVES, protocol=protocol, base=True
    )
    assert calls == [0, 1, 2, 3]  # one draw per sample seed, not per preference
    calls.clear()
    each = evaluation.evaluate_front(steerable, prompts, preferences, OBJECTIVES, protocol=protocol)
    assert calls == [0, 1, 2, 3] * 3
    np.testing.assert_array_equal(each["points"], base["points"])
    np.testing.assert_array_equal(np.asarray(each["points"])[0], np.asarray(each["points"])[2])


def test_front_records_kl_per_token_and_per_sequence(soups_run, small_protocol):
    front = evaluation.evaluate_run(soups_run, device="cpu")
    assert front["protocol_version"] == small_protocol.version
    assert front["replies"] == 3 * 4 * 4
    token, sequence = front["kl_per_token"], front["kl_per_sequence"]
    assert len(token) == len(sequence) == 3 and all(v is not None for v in token)
    # a trained expert moved away from the base: some KL, bounded by a few nats per token
    assert max(token) > 1e-4 and all(np.isfinite(token))
    assert all(abs(s) >= abs(t) for s, t in zip(sequence, token, strict=True))  # >= 1 token each
    assert front["indicators"]["intervals"]["hypervolume"][0] <= front["indicators"]["hypervolume"]

    class Mixture:  # no policy (tokenizer and base model): nothing to measure KL with
        objectives = OBJECTIVES

    assert base_kl.kl_to_base(Mixture(), ["a"], ["b"], [0.5, 0.5]) is None


# --- one number everywhere -------------------------------------------------------------------


def test_morl_front_fronts_page_and_leaderboard_print_the_same_hv_and_eu(
    soups_run, small_protocol, tmp_path, monkeypatch, capsys
):
    from morl_core.app import fronts
    from morl_core.app.catalog import ArtifactInfo
    from morl_core.bench.leaderboard import aggregate
    from morl_core.bench.runner import evaluate_record
    from morl_core.bench.suites import validate
    from morl_core.cli import main

    # the app evaluates on its own (no front.json yet) into its cache
    monkeypatch.setattr(fronts, "app_data_dir", lambda: tmp_path / "app")
    assert not (soups_run / "front.json").exists()
    info = ArtifactInfo("run/soups", "soups", soups_run, "soups", OBJECTIVES, ("soups",), "run")
    app_front = fronts.front_for(info, "soups")
    app_row = fronts.front_table([(info, "soups", app_front)]).series[0]["indicators"]

    # the leaderboard: a bench record of the same run, aggregated
    suite = validate(
        {"name": "same", "objectives": list(OBJECTIVES), "methods": ["soups"], "seeds": [0],
         "preferences": 3, "config": {"steps": 1}}
    )  # fmt: skip
    record = evaluate_record(suite, "soups", 0, soups_run, status=None)
    board = aggregate([record]).set_index("method").loc["soups"]

    # morl front, as a user runs it
    assert main(["front", str(soups_run), "--device", "cpu"]) == 0
    printed = dict(
        line.split(": ", 1) for line in capsys.readouterr().out.splitlines() if ": " in line
    )
    saved = json.loads((soups_run / "front.json").read_text())
    assert saved["protocol_version"] == small_protocol.version

    for key in ("hypervolume", "expected_utility"):
        values = [
            float(printed[key]),
            saved["indicators"][key],
            app_row[key],
            record[key],
            board[f"{key}_mean"],
        ]
        assert values == pytest.approx([values[0]] * 5, abs=1e-12), key
    assert app_row["intervals"] == saved["indicators"]["intervals"] == record["intervals"]
    assert app_front["protocol"] == saved["protocol"] == record["protocol"]
    assert app_row["eu_preferences"] == saved["indicators"]["eu_preferences"] == 21
    assert record["reference_point"] == saved["indicators"]["ref"] == [-0.1, -0.1]


def test_app_marks_a_front_written_before_the_protocol(tmp_path, monkeypatch):
    from morl_core.app import fronts
    from morl_core.app.catalog import ArtifactInfo

    monkeypatch.setattr(fronts, "app_data_dir", lambda: tmp_path / "app")
    old = {"method": "soups", "objectives": list(OBJECTIVES), "preferences": [[1, 0], [0, 1]],
           "points": [[0.6, 0.2], [0.3, 0.7]], "stderr": [[0.01, 0.01], [0.01, 0.01]],
           "indicators": {"hypervolume": 123.0}}  # fmt: skip
    (tmp_path / "front.json").write_text(json.dumps(old))
    info = ArtifactInfo("demo/x", "x", tmp_path, "soups", OBJECTIVES, ("soups",), "demo")
    front = fronts.front_cached(info, "soups")
    table = fronts.front_table([(info, "soups", front)])
    row = table.indicator_rows()[0]
    assert row["protocol"] == fronts.OLD_PROTOCOL and row["KL/token"] == "n/a"
    # its stale indicator is not trusted: recomputed by the protocol's one function
    expected = hypervolume(np.asarray(old["points"]), [-0.1, -0.1])
    assert table.series[0]["indicators"]["hypervolume"] == pytest.approx(expected)
    assert table.kl_figure() is None


def test_reward_kl_figure_one_line_per_front_with_kl():
    from morl_core.app.figures import reward_kl_figure

    fig = reward_kl_figure(
        [
            {"label": "a", "method": "soups", "kl": [0.3, None, 0.1], "utility": [0.5, 0.4, 0.6],
             "preferences": [[1, 0], [0.5, 0.5], [0, 1]]},
            {"label": "b", "method": "mod", "kl": [None], "utility": [0.2], "preferences": [[1, 0]]},
        ]
    )  # fmt: skip
    assert [t.name for t in fig.data] == ["a"]
    assert list(fig.data[0].x) == [0.1, 0.3] and list(fig.data[0].y) == [0.6, 0.5]
    assert "KL" in fig.layout.xaxis.title.text


CALLS = r"\b(hypervolume|expected_utility)\(|pareto import summary|import moocore"


def test_protocol_is_the_only_place_indicators_are_computed():
    """No second copy of the HV / EU computation anywhere in the project's code."""
    root = Path(__file__).resolve().parents[1]
    allowed = {
        root / "morl_core" / "pareto" / "hypervolume.py",
        root / "morl_core" / "pareto" / "indicators.py",
        root / "morl_core" / "pareto" / "dominance.py",
        root / "morl_core" / "evaluation.py",
        root / "benchmarks" / "pareto_speed.py",  # times the indicator itself
    }
    offenders = []
    for folder in ("morl_core", "pages", "benchmarks", "scripts"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            if path not in allowed and re.search(CALLS, text):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []


def test_protocol_replace_keeps_validation():
    with pytest.raises(ValueError, match="samples"):
        dataclasses.replace(SMALL, samples=0)
