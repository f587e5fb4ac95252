"""Benchmark suites, runner (through the real local executor), resume, and leaderboard tables."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from morl_core.bench import aggregate, available, load_suite, markdown, run_suite
from morl_core.bench.report import suite_notes
from morl_core.bench.suites import validate
from morl_core.config import ConfigError
from morl_core.jobs.records import RunStatus
from morl_core.pareto import igd, igd_plus

RECORD_FIELDS = {
    "hypervolume",
    "expected_utility",
    "sparsity",
    "igd",
    "igd_plus",
    "cardinality",
    "mean_reward",
    "distinct1",
    "distinct2",
    "training_samples",
    "wall_seconds",
    "search_seconds",
    "inference_seconds_per_reply",
    "passes_per_token",
    "models_kept",
    "peak_rss_mb",
    "options",
    "seed",
    "versions",
    "git",
    "trained_git",
    "front",
    "preferences",
    "status",
    "method",
    "suite",
    "protocol",
    "protocol_version",
    "intervals",
    "kl_per_token",
    "kl_per_sequence",
    "reference_point",
}


@pytest.mark.parametrize("name", available())
def test_every_published_suite_validates(name):
    suite = load_suite(name)
    assert len(suite.objectives) >= 2
    assert len(suite.reference_point) == len(suite.objectives)
    for method in suite.methods:
        config = suite.run_config(method, suite.seeds[0])
        assert config.objectives == suite.objectives


def test_required_suites_exist_and_relationships_differ():
    names = set(available())
    assert {
        "conflicting",
        "independent",
        "correlated",
        "synthetic_conflicting",
        "synthetic_independent",
        "synthetic_correlated",
        "three_objectives",
        "five_objectives",
        "quick",
    } <= names
    assert len(load_suite("three_objectives").objectives) == 3
    assert len(load_suite("five_objectives").objectives) == 5
    labels = {
        n: (load_suite(n).relationship or {}).get("label")
        for n in ("conflicting", "independent", "correlated")
    }
    assert labels == {
        "conflicting": "conflicting",
        "independent": "independent",
        "correlated": "correlated",
    }


def test_bad_suite_names_every_field():
    with pytest.raises(ConfigError) as err:
        validate(
            {
                "name": "x",
                "objectives": ["sentiment"],
                "methods": [],
                "seeds": [-1],
                "preferences": 1,
                "reference_point": [0, 0, 0],
                "colour": "red",
                "protocol": {"top_p": 0.5},  # a suite may set samples and reply length only
            }
        )
    assert {"objectives", "methods", "seeds", "preferences", "colour"} <= set(err.value.errors)
    assert "samples, max_new_tokens" in err.value.errors["protocol"]
    # the reference point is the evaluation protocol's: a suite cannot carry its own
    assert "reference_point" in err.value.errors
    with pytest.raises(ValueError, match="unknown suite"):
        load_suite("no_such_suite")


def test_method_options_reach_that_methods_cells_only():
    """The five-objective suites search EMORL one round deep (3^5 candidates a round); every
    other method's cells are built as before."""
    for name in ("five_objectives", "five_objectives_mixed"):
        suite = load_suite(name)
        assert suite.run_config("emorl", 1).options["search_rounds"] == 1
        for method in set(suite.methods) - {"emorl"}:
            assert "search_rounds" not in suite.run_config(method, 1).options, method
    assert "search_rounds" not in load_suite("three_objectives").run_config("emorl", 0).options


def test_bad_method_options_name_the_method_and_the_option():
    base = {"name": "x", "objectives": ["sentiment", "brevity"], "methods": ["emorl", "soups"]}
    base |= {"seeds": [0], "preferences": 3}
    with pytest.raises(ConfigError) as err:
        validate({**base, "method_options": {"ric": {"offline_share": 0.5}}})
    assert "does not run: ric" in err.value.errors["method_options"]
    with pytest.raises(ConfigError) as err:
        validate({**base, "method_options": {"emorl": {"search_rounds": 99}}})
    assert "[1, 20], got 99" in err.value.errors["options.search_rounds (method emorl)"]
    with pytest.raises(ConfigError) as err:
        validate({**base, "method_options": {"emorl": 1}})
    assert "method name -> object" in err.value.errors["method_options"]


def test_a_suite_evaluates_under_its_own_samples_and_reply_length(monkeypatch, tmp_path):
    """known_answer's policies write one token: its records are evaluated on that token, with
    64 samples per prompt, and every other rule stays the protocol's."""
    from morl_core import evaluation
    from morl_core.bench import runner

    suite = load_suite("known_answer")
    seen = []
    monkeypatch.setattr(
        evaluation, "evaluate_run", lambda run_dir, method, protocol: seen.append(protocol)
    )
    monkeypatch.setattr(runner, "_evaluated", lambda *a, **k: None)
    (tmp_path / "artifact.json").write_text("{}")
    runner.evaluate_record(suite, "morlhf", 0, tmp_path, None)
    default = evaluation.default_protocol()
    assert seen[0].samples == 64 and seen[0].max_new_tokens == 1
    assert seen[0].to_dict() | {"samples": 4, "max_new_tokens": 24} == default.to_dict()
    assert load_suite("conflicting").eval_protocol() == default


def test_synthetic_suites_true_front_has_zero_igd():
    for name in ("synthetic_conflicting", "synthetic_independent", "synthetic_correlated"):
        front = load_suite(name).true_front()
        assert front is not None and front.shape[1] == 2
        assert igd(front, front) == pytest.approx(0.0, abs=1e-12)
        assert igd_plus(front, front) == pytest.approx(0.0, abs=1e-12)


def _record(method, seed, hv, samples, suite="s"):
    return {
        "suite": suite,
        "method": method,
        "seed": seed,
        "status": "succeeded",
        "hypervolume": hv,
        "expected_utility": hv / 2,
        "training_samples": samples,
        "wall_seconds": 10.0 * (seed + 1),
    }


def test_leaderboard_aggregates_hand_made_records():
    records = [
        _record("soups", 0, 0.5, 100),
        _record("soups", 1, 0.7, 100),
        _record("mod", 0, 0.4, 50),
        {"suite": "s", "method": "mod", "seed": 1, "status": "failed", "message": "boom"},
    ]
    table = aggregate(records).set_index("method")
    assert table.loc["soups", "hypervolume_mean"] == pytest.approx(0.6)
    assert table.loc["soups", "hypervolume_std"] == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert table.loc["soups", "wall_seconds_mean"] == pytest.approx(15.0)
    assert table.loc["mod", "seeds"] == 1 and table.loc["mod", "failed"] == 1
    assert np.isnan(table.loc["mod", "hypervolume_std"])  # one seed: no spread to report
    assert np.isnan(table.loc["mod", "igd_mean"])
    text = markdown(aggregate(records))
    assert "| soups | 2 | **0.6 [-0.671, 1.87]** |" in text  # t interval, t(1) = 12.7
    assert text.index("\n| soups |") < text.index("\n| mod |")  # sorted by hypervolume
    assert "Method options" not in text


def test_leaderboard_names_a_suites_method_options():
    """A published suite that changes one method's options says so above its table."""
    records = [_record("emorl", 0, 0.3, 100, suite="five_objectives")]
    records += [_record("emorl", 0, 0.3, 100, suite="conflicting")]
    notes = suite_notes(records)
    assert notes["five_objectives"]["method_options"] == {"emorl": {"search_rounds": 1}}
    assert "conflicting" not in notes  # it gives no method options (and no base row here)
    text = markdown(aggregate(records), notes=notes)
    line = "Method options (the suite's; every other option at its default): emorl search_rounds=1."
    assert text.count(line) == 1
    assert text.index("### five_objectives") < text.index(line)


@pytest.fixture(scope="module")
def tiny_suite(tmp_path_factory):
    base = tmp_path_factory.mktemp("bench")
    path = base / "tiny.json"
    path.write_text(
        json.dumps(
            {
                "name": "tiny",
                "objectives": ["synth_nature", "synth_city"],
                "methods": ["soups"],
                "seeds": [0],
                "preferences": 2,
                "config": {
                    "steps": 1,
                    "batch_prompts": 1,
                    "k_samples": 2,
                    "max_new_tokens": 4,
                    "eval_every": 0,
                    "eval_prompts": 1,
                    "checkpoint_every": 1,
                },
            }
        )
    )
    return load_suite(str(path)), base


def test_runner_refuses_a_data_dir_without_the_suites_runs(tiny_suite, tmp_path):
    suite, _ = tiny_suite
    out = tmp_path / "out"
    (out / "tiny").mkdir(parents=True)
    listed = {"soups__seed0": "20261205-110948-d36ba0a2"}  # submitted to another job store
    (out / "tiny" / "runs.json").write_text(json.dumps(listed))
    with pytest.raises(
        ValueError, match=r"--data-dir .*no run 20261205-110948-d36ba0a2.*soups__seed0"
    ):
        run_suite(suite, out, data_dir=tmp_path / "other", poll_seconds=0.1, progress=print)
    assert json.loads((out / "tiny" / "runs.json").read_text()) == listed  # nothing submitted
    assert not list((out / "tiny" / "records").iterdir())


def test_runner_writes_complete_records_and_resumes(tiny_suite, monkeypatch):
    from morl_core import evaluation

    small = evaluation.EvalProtocol(max_prompts=2, samples=4, max_new_tokens=8, bootstrap=50)
    monkeypatch.setattr(evaluation, "DEFAULT_PROTOCOL", small)
    monkeypatch.setattr("morl_core.jobs.records.git_hash", lambda: "the evaluator's commit")
    suite, base = tiny_suite
    out, data = base / "out", base / "data"
    first = run_suite(suite, out, data_dir=data, poll_seconds=0.5, progress=lambda _: None)
    assert len(first) == 2 and first[0]["status"] == "succeeded", first
    record, base_row = first
    assert record["protocol"] == small.to_dict() == base_row["protocol"]
    # the base model's row: same protocol, no training, no KL, one point repeated (CRN)
    assert base_row["method"] == "base" and base_row["training_samples"] == 0
    assert base_row["kl_per_token"] == 0.0 and base_row["front"][0] == base_row["front"][1]
    assert set(record) >= RECORD_FIELDS
    # the commit that trained the run is the worker's (result.json), kept beside the evaluator's
    trained = json.loads((data / "runs" / record["run_id"] / "result.json").read_text())["git"]
    assert record["git"] == "the evaluator's commit" != trained
    assert record["trained_git"] == trained and base_row["trained_git"] is None
    # its cost in seconds: the time it ran, from the job store's history of its attempts
    status = RunStatus.from_dict(
        json.loads((data / "runs" / record["run_id"] / "status.json").read_text())
    )
    assert 0 < record["wall_seconds"] == pytest.approx(status.running_seconds())
    assert record["training_samples"] == 2 * 1 * 2  # two experts x one step x (1 prompt x k=2)
    assert record["models_kept"] == 1 and record["passes_per_token"] == 1
    assert np.asarray(record["front"]).shape == (2, 2)
    assert record["igd"] is not None and record["igd"] >= 0  # synthetic: the true front is known
    runs = json.loads((out / "tiny" / "runs.json").read_text())
    # a second call with one more seed trains only the missing cell and keeps the first record
    second = run_suite(
        suite, out, seeds=[0, 1], data_dir=data, poll_seconds=0.5, progress=lambda _: None
    )
    runs_after = json.loads((out / "tiny" / "runs.json").read_text())
    assert runs_after["soups__seed0"] == runs["soups__seed0"]
    assert set(runs_after) == {"soups__seed0", "soups__seed1"}
    assert second[0]["recorded"] == record["recorded"]
    assert second[1]["status"] == "succeeded" and second[1]["seed"] == 1
    assert second[2]["recorded"] == base_row["recorded"]  # the base row is evaluated once
    conflict = base_row["gradient_conflict"]  # measured once per suite, at the base model
    assert conflict["objectives"] == list(suite.objectives) and conflict["batches"] == 3
    assert np.asarray(conflict["cosine"], dtype=float).shape == (2, 2)


@pytest.mark.slow  # three runs through the job system and EMORL's search: minutes on 2 cores
def test_training_samples_count_experts_search_and_meta_policy(tmp_path, monkeypatch):
    """Real records: every method is charged for every completion it scored to become usable."""
    from morl_core import evaluation

    small = evaluation.EvalProtocol(max_prompts=2, samples=4, max_new_tokens=8, bootstrap=50)
    monkeypatch.setattr(evaluation, "DEFAULT_PROTOCOL", small)
    monkeypatch.setattr("morl_core.bench.runner.gradient_conflict_record", lambda s: {})
    suite = validate(
        {"name": "cost", "objectives": ["synth_nature", "synth_city"],
         "methods": ["soups", "emorl", "metapolicy"], "seeds": [0], "preferences": 2,
         "method_options": {"emorl": {"search_rounds": 1}},
         "config": {"steps": 1, "batch_prompts": 1, "k_samples": 2, "max_new_tokens": 4,
                    "eval_every": 0, "eval_prompts": 1}}
    )  # fmt: skip
    records = run_suite(
        suite, tmp_path / "out", data_dir=tmp_path / "data", poll_seconds=0.5,
        progress=lambda _: None,
    )  # fmt: skip
    by_method = {r["method"]: r for r in records}
    assert all(r["status"] == "succeeded" for r in records), records
    experts = 2 * 1 * (1 * 2)  # two experts x one step x (1 prompt x k=2)
    assert by_method["soups"]["training_samples"] == experts
    search = by_method["emorl"]["search_samples"]
    assert search > 0 and by_method["emorl"]["training_samples"] == experts + search
    # each record names the method options its run trained with (the suite's, for its method)
    assert by_method["emorl"]["options"]["search_rounds"] == 1
    assert "search_rounds" not in by_method["metapolicy"]["options"]
    assert by_method["metapolicy"]["training_samples"] == experts + 1 * 2  # + one meta step
    # the ablation row: the same run's experts mixed by the untrained mixer, charged the experts
    prior = by_method["metapolicy_prior"]
    assert prior["run_id"] == by_method["metapolicy"]["run_id"] and prior["status"] == "succeeded"
    assert prior["training_samples"] == experts and prior["search_samples"] == 0
    assert 0 < prior["wall_seconds"] < by_method["metapolicy"]["wall_seconds"]


def test_a_prior_is_evaluated_for_meta_policies_only(monkeypatch):
    from morl_core import evaluation

    class Mixer:
        adjust = True

    class Soup:
        pass

    class Meta:
        mixer = Mixer()

    served = []
    monkeypatch.setattr(evaluation, "read_config", lambda run_dir: SimpleNamespace(
        method="x", objectives=("a", "b"), prompt_set="default", n_preferences=2))  # fmt: skip
    monkeypatch.setattr(evaluation, "read_metrics", lambda run_dir: ([], []))
    monkeypatch.setattr(evaluation, "evaluate_steerable", lambda s, *a, **k: served.append(s) or {})
    monkeypatch.setattr(evaluation, "get", lambda m: SimpleNamespace(load=lambda d, device: Soup()))
    with pytest.raises(ValueError, match="prior: only a meta-policy"):
        evaluation.evaluate_run("run", prior=True)
    monkeypatch.setattr(evaluation, "get", lambda m: SimpleNamespace(load=lambda d, device: Meta()))
    evaluation.evaluate_run("run", prior=True)
    assert served[-1].mixer.adjust is False
