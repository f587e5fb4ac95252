"""Config input that used to take the host down or escape the store: bounds, types, paths.

Each test here reproduces one defect of the reliability report (unbounded numbers, wrong JSON
types, relative paths stored as given, files outside the store) and checks the refusal: a
:class:`ConfigError` naming the field from the library, exit 2 with the field named and nothing
written from the CLI. The property-based sweep over every field is ``test_hostile_configs.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
from pathlib import Path

import pytest

from morl_core import cli
from morl_core.checks import HUB_CONTEXT, INT64_MAX, model_context
from morl_core.config import FLOAT_RANGES, ConfigError, RunConfig, int_ranges
from morl_core.config_cli import add_config_options, config_from_args
from morl_core.jobs.paths import ALLOWED_PATHS_ENV
from morl_core.methods import METHODS
from morl_core.options import Option
from morl_core.policy.model import embedded_model_path
from morl_core.prompts import load_prompts


def refused(data) -> dict[str, str]:
    """The field errors of ``data`` (fails the test when it is accepted or raises otherwise)."""
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data)
    assert isinstance(info.value, ValueError)
    return info.value.errors


def run_cli(*argv: str) -> tuple[int, str]:
    """``morl ARGV`` in this process: exit code and stderr."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        code = cli.main(list(argv))
    return code, err.getvalue()


def files_under(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


# --- every number has a range, named in the message ---
def test_every_integer_field_has_a_finite_range():
    ranges = int_ranges()
    ints = {name for name, value in RunConfig().to_dict().items() if type(value) is int}
    assert ints == set(ranges)
    for name, (low, high) in ranges.items():
        assert low <= getattr(RunConfig(), name) <= high <= INT64_MAX, name


@pytest.mark.parametrize("name", sorted(int_ranges()))
def test_integer_one_past_either_end_is_refused_with_the_range(name):
    low, high = int_ranges()[name]
    for value in (low - 1, high + 1):
        errors = refused({name: value})
        assert set(errors) == {name}
        assert f"[{low}, {high}]" in errors[name] and str(value) in errors[name]
    assert getattr(RunConfig.from_dict({name: high}), name) == high


@pytest.mark.parametrize("name", sorted(FLOAT_RANGES))
def test_float_fields_refuse_nan_inf_and_huge_ints(name):
    for value in (math.nan, math.inf, -math.inf, 10**400, True, "0.5"):
        assert set(refused({name: value})) == {name}


def test_unbounded_numbers_of_the_report_are_refused_at_validation():
    # threads spawned until the host's process limit; k = 10**30 ran out of memory in a worker;
    # batch, rank, preferences and seed above 2**63 failed only inside the worker
    assert "host's CPU count" in refused({"threads": 1_000_000})["threads"]
    assert f"[1, {os.cpu_count()}]" in refused({"threads": os.cpu_count() + 1})["threads"]
    assert set(refused({"k_samples": 10**30})) == {"k_samples"}
    for name in ("batch_prompts", "lora_r", "n_preferences", "seed", "steps"):
        assert set(refused({name: 2**63})) == {name}
    assert RunConfig.from_dict({"seed": INT64_MAX}).seed == INT64_MAX


def test_max_new_tokens_is_bounded_by_the_models_context(tmp_path):
    context = json.loads((embedded_model_path() / "config.json").read_text())["n_positions"]
    assert model_context("embedded") == context
    assert RunConfig.from_dict({"max_new_tokens": context - 1}).max_new_tokens == context - 1
    assert "context" in refused({"max_new_tokens": context})["max_new_tokens"]
    # a local folder is read from its config.json, no weights needed
    folder = tmp_path / "small-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": 64}))
    assert model_context(str(folder)) == 64
    assert "[1, 63]" in refused({"model": str(folder), "max_new_tokens": 64})["max_new_tokens"]
    # a hub model that is not cached: a generous cap, the worker checks the real context
    assert model_context("nobody-here/not-cached-model") == HUB_CONTEXT


def test_every_numeric_method_option_is_bounded():
    built_in = [m for m in METHODS.values() if m.module.startswith("morl_core.methods.")]
    assert len(built_in) >= 8
    for method in built_in:  # test stand-ins and plugins get the default bounds instead
        for key in method.options:
            spec = method.options[key]
            if spec.kind not in (int, float):
                continue
            assert spec.low is not None and spec.high is not None, f"{method.name}.{key}"
            over = spec.high + (1 if spec.kind is int else 1e-3)
            for value in (over, 10**30, math.nan, math.inf, True, "1", [1]):
                data = {"method": method.name, "options": {key: value}}
                assert set(refused(data)) == {f"options.{key}"}, (method.name, key, value)


def test_an_option_declared_without_bounds_still_gets_finite_ones():
    spec = Option(float, 0.0, "a plugin's unbounded knob")
    assert spec.error(1.0) is None
    assert "[-1e+12, 1e+12]" in spec.error(1e300)
    assert "a number in [-1e+12, 1e+12], got inf" in spec.error(math.inf)


# --- wrong JSON types are field errors, never TypeError/AttributeError ---
HOSTILE_DOCUMENTS = [
    ({"method": ["soups"]}, "method"),
    ({"method": None}, "method"),
    ({"objectives": None}, "objectives"),
    ({"objectives": ["sentiment", 3]}, "objectives"),
    ({"objectives": {"a": 1}}, "objectives"),
    ({"objectives": 7}, "objectives"),
    ({"model": ["embedded"]}, "model"),
    ({"device": {"x": 1}}, "device"),
    ({"steps": "30"}, "steps"),
    ({"steps": 30.0}, "steps"),
    ({"steps": None}, "steps"),
    ({"steps": [30]}, "steps"),
    ({"lr": "fast"}, "lr"),
    ({"prompt_set": 3}, "prompt_set"),
    ({"prompt_set": None}, "prompt_set"),
    ({"weights": {"a": 1}}, "weights"),
    ({"weights": [0.5, None]}, "weights"),
    ({"weights": 0.5}, "weights"),
    ({"options": [1, 2]}, "options"),
    ({"options": "gamma=1"}, "options"),
    ({"method": "dynaopt", "options": {"gamma": {"a": 1}}}, "options.gamma"),
    ({"method": "soups", "options": {"experts_from": 5}}, "options.experts_from"),
    ([], "config"),
    ("x", "config"),
    (None, "config"),
    (3, "config"),
]


@pytest.mark.parametrize(("data", "field"), HOSTILE_DOCUMENTS, ids=lambda v: repr(v)[:30])
def test_wrong_json_types_are_field_errors(data, field):
    assert field in refused(data)


@pytest.mark.parametrize(("data", "field"), HOSTILE_DOCUMENTS, ids=lambda v: repr(v)[:30])
def test_wrong_json_types_in_a_config_file_exit_2_and_write_nothing(data, field, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps(data))
    store, out = tmp_path / "store", tmp_path / "out"
    code, err = run_cli("submit", "--data-dir", str(store), "--config", str(config))
    assert code == 2 and field in err and "Traceback" not in err
    code, err = run_cli("train", "--config", str(config), "--out", str(out))
    assert code == 2 and field in err and "Traceback" not in err
    assert not store.exists() and not out.exists()


@pytest.mark.parametrize(
    "text", ["[" * 100_000, '{"steps": NaN}', "not json", "\x00\x01", '{"options": null}']
)
def test_unreadable_config_files_are_config_errors(text, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(text)
    code, err = run_cli("submit", "--data-dir", str(tmp_path / "store"), "--config", str(config))
    assert code == 2 and "Traceback" not in err
    assert not (tmp_path / "store").exists()


def test_huge_step_count_on_submit_exits_2_without_an_orphan_folder(tmp_path):
    # it was an OverflowError traceback that left a queued folder outside the index
    store = tmp_path / "store"
    code, err = run_cli("submit", "--data-dir", str(store), "--steps", "9223372036854775808")
    assert code == 2
    assert "steps: must be an integer in [1, 100000]" in err and "Traceback" not in err
    assert files_under(store) == []


@pytest.mark.parametrize(
    "flags",
    [
        ["--threads", "1000000"],
        ["--k-samples", str(10**30)],
        ["--seed", str(2**63)],
        ["--max-new-tokens", "100000"],
        ["--prompt-set", "missing-prompts.txt"],
        ["--model", "./no-such-model"],
        ["--method", "soups", "--option", "experts_from=./no-such-run"],
        ["--option", "x=" + "[" * 50_000],
    ],
)
def test_bad_train_flags_exit_2_before_the_out_folder_exists(flags, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    code, err = run_cli("train", *flags, "--out", str(out))
    assert code == 2 and "Traceback" not in err
    assert not out.exists()


# --- paths: resolved once, absolute, checked to exist ---
def parsed(*argv: str) -> RunConfig:
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir")
    add_config_options(parser)
    return config_from_args(parser.parse_args(list(argv)))


def test_method_options_get_flags_generated_from_their_declarations():
    config = parsed("--method", "emorl", "--search-rounds", "3", "--mix-at", "pre_norm")
    assert dict(config.options) == {"search_rounds": 3, "mix_at": "pre_norm"}
    with pytest.raises(ConfigError) as refused_flags:
        parsed("--method", "dynaopt", "--gamma", "0", "--window", "two", "--search-rounds", "3")
    errors = refused_flags.value.errors
    assert errors["options.gamma"] == "must be a number in (0, 1], got 0.0"
    assert errors["options.window"] == "must be an integer in [1, 100000], got 'two'"
    assert errors["options.search_rounds"].startswith("unknown option for dynaopt; allowed: gamma")


def test_a_bad_method_option_flag_exits_2_naming_it(tmp_path):
    out = tmp_path / "out"
    # steps=0 as well, so a widened range fails here instead of starting a training
    argv = ["--method", "emorl", "--search-rounds", "21", "--steps", "0", "--out", str(out)]
    code, err = run_cli("train", *argv)
    assert code == 2 and "steps: must be an integer in [1, 100000], got 0" in err
    assert "options.search_rounds: must be an integer in [1, 20], got 21" in err
    assert not out.exists()


def test_relative_paths_are_stored_absolute_and_work_from_another_directory(tmp_path, monkeypatch):
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    (work / "model").mkdir(parents=True)
    elsewhere.mkdir()
    (work / "my_prompts.txt").write_text("Tell me about rivers.\nDescribe a city.\n")
    (work / "model" / "config.json").write_text(json.dumps({"n_positions": 128}))
    (work / "experts" / "adapters").mkdir(parents=True)
    (work / "experts" / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    monkeypatch.chdir(work)
    config = parsed(
        "--prompt-set", "my_prompts.txt", "--model", "./model", "--method", "soups",
        "--option", "experts_from=experts",
    )  # fmt: skip
    assert config.prompt_set == str(work / "my_prompts.txt")
    assert config.model == str(work / "model")
    assert config.options["experts_from"] == str(work / "experts")
    stored = json.loads(json.dumps(config.to_dict()))  # what config.json holds
    monkeypatch.chdir(elsewhere)  # a retry started from another directory
    again = RunConfig.from_dict(stored)
    assert again == config
    assert load_prompts(again.prompt_set) == ["Tell me about rivers.", "Describe a city."]


def test_a_relative_path_in_a_config_built_in_python_is_made_absolute(tmp_path, monkeypatch):
    (tmp_path / "p.jsonl").write_text('{"text": "Hello there"}\n')
    monkeypatch.chdir(tmp_path)
    config = RunConfig(prompt_set="p.jsonl").validated()
    assert config.prompt_set == str(tmp_path / "p.jsonl")


def test_shipped_prompt_set_names_stay_names():
    assert RunConfig.from_dict({"prompt_set": "default"}).prompt_set == "default"
    # a name never joins the assets folder as a path
    assert "prompt_set" in refused({"prompt_set": "../embedded-model/config"})


# --- files outside the store, the assets and the allow-list are refused ---
@pytest.fixture
def locked(tmp_path, monkeypatch):
    """No allow-list, the store in tmp_path/store: tmp_path/outside is outside everything."""
    monkeypatch.delenv(ALLOWED_PATHS_ENV, raising=False)
    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "store"))
    outside = tmp_path / "outside"
    outside.mkdir()
    return outside


def test_prompt_set_outside_the_allowed_folders_is_refused(locked, tmp_path):
    for path in ("/etc/passwd", str(locked / "mine.txt")):
        Path(path).exists() or Path(path).write_text("a prompt\n")
        message = refused({"prompt_set": path})["prompt_set"]
        assert "outside the folders runs may read" in message
        assert ALLOWED_PATHS_ENV in message
    code, err = run_cli("submit", "--data-dir", str(tmp_path / "s"), "--prompt-set", "/etc/passwd")
    assert code == 2 and "prompt_set:" in err and ALLOWED_PATHS_ENV in err
    code, err = run_cli("train", "--prompt-set", "/etc/passwd", "--out", str(tmp_path / "out"))
    assert code == 2 and "prompt_set:" in err
    assert not (tmp_path / "s").exists() and not (tmp_path / "out").exists()


def test_the_allow_list_admits_a_folder(locked, monkeypatch):
    prompts = locked / "mine.txt"
    prompts.write_text("a prompt\n")
    monkeypatch.setenv(ALLOWED_PATHS_ENV, os.pathsep.join(["/nonexistent", str(locked)]))
    assert RunConfig.from_dict({"prompt_set": str(prompts)}).prompt_set == str(prompts)


def test_experts_from_outside_the_store_is_refused_without_listing_it(locked, tmp_path):
    source = locked / "run"
    (source / "adapters" / "secret-name").mkdir(parents=True)
    (source / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    for method in ("soups", "mod", "emorl", "metapolicy"):
        data = {"method": method, "options": {"experts_from": str(source)}}
        message = refused(data)["options.experts_from"]
        assert "outside the folders runs may read" in message and "secret-name" not in message
    code, err = run_cli(
        "submit", "--data-dir", str(tmp_path / "s"), "--method", "soups",
        "--option", "experts_from=/etc",
    )  # fmt: skip
    assert code == 2 and "options.experts_from" in err and not (tmp_path / "s").exists()


def test_a_run_folder_in_the_store_is_allowed_for_experts_from(locked, tmp_path):
    source = tmp_path / "store" / "runs" / "20260101-000000-abcdef01"
    source.mkdir(parents=True)
    (source / "config.json").write_text(json.dumps(RunConfig().to_dict()))
    config = RunConfig.from_dict({"method": "soups", "options": {"experts_from": str(source)}})
    assert config.options["experts_from"] == str(source)


def test_a_symlink_inside_an_allowed_folder_counts_where_it_points(locked, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    (locked / "p.txt").write_text("a prompt\n")
    (store / "p.txt").symlink_to(locked / "p.txt")
    assert "outside" in refused({"prompt_set": str(store / "p.txt")})["prompt_set"]


def test_model_folder_outside_the_allowed_folders_is_refused(locked):
    (locked / "config.json").write_text(json.dumps({"n_positions": 64}))
    assert "outside" in refused({"model": str(locked)})["model"]


# --- objectives: built-ins with settings ---
def test_a_builtin_with_settings_is_a_valid_objective_and_round_trips():
    objectives = ("formality", "brevity(target_words=20)")
    config = RunConfig.from_dict({"objectives": list(objectives)})
    assert config.objectives == objectives
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert parsed("--objectives", "formality,brevity(target_words=20)").objectives == objectives


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("brevity(target_words=0)", ["brevity(target_words=0)", "target_words", "[1, 1000]"]),
        ("brevity(words=3)", ["no setting 'words'", "its settings: target_words"]),
        ("nosuch(x=1)", ["unknown", "nosuch(x=1)", "allowed: sentiment"]),
    ],
)
def test_a_bad_builtin_setting_is_an_objectives_error(name, parts, tmp_path):
    errors = refused({"objectives": ["formality", name]})
    assert set(errors) == {"objectives"}
    assert all(part in errors["objectives"] for part in parts), errors["objectives"]
    out = tmp_path / "out"
    code, err = run_cli("train", "--objectives", f"formality,{name}", "--out", str(out))
    assert code == 2 and "objectives" in err and parts[0] in err and "Traceback" not in err
    assert not out.exists()


def test_a_run_on_a_builtin_with_settings_names_it_in_its_results(tmp_path):
    out, name = tmp_path / "run", "brevity(target_words=3)"
    tiny = ["--steps", "1", "--batch-prompts", "2", "--k-samples", "2", "--max-new-tokens", "8"]
    tiny += ["--eval-prompts", "2", "--n-preferences", "2", "--eval-every", "0"]
    code, err = run_cli(
        "train", "--method", "panacea", "--objectives", f"formality,{name}", *tiny,
        "--device", "cpu", "--out", str(out),
    )  # fmt: skip
    assert code == 0, err
    assert json.loads((out / "config.json").read_text())["objectives"] == ["formality", name]
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert 0.0 <= metrics[-1][f"reward/{name}"] <= 1.0
    front = json.loads((out / "front.jsonl").read_text().splitlines()[-1])
    assert front["objectives"] == ["formality", name]
