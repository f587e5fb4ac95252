"""``morl train`` / ``morl front`` / ``morl generate`` as subprocesses: run folders and bad input."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from morl_core.config import RunConfig
from morl_core.evaluation import PROTOCOL_VERSION, reference_point
from morl_core.methods import METHODS
from morl_core.methods.experts import expert_names
from morl_core.pareto import hypervolume

OBJECTIVES = ["sentiment", "formality"]
TINY_ARGS = [
    "--objectives", ",".join(OBJECTIVES),
    "--steps", "2",
    "--batch-prompts", "2",
    "--k-samples", "2",
    "--max-new-tokens", "8",
    "--eval-prompts", "2",
    "--n-preferences", "3",
    "--eval-every", "0",
    "--device", "cpu",
]  # fmt: skip
# the methods a fresh ``morl`` process knows (test fixtures such as the jobs' stub register
# themselves in this process only)
SHIPPED = sorted(n for n, spec in METHODS.items() if spec.module.startswith("morl_core."))
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MORL_THREADS": "1",
    "OMP_NUM_THREADS": "1",
}


def morl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the ``morl`` command (``python -m morl_core.cli``, what the console script calls)."""
    return subprocess.run(
        [sys.executable, "-m", "morl_core.cli", *args],
        capture_output=True,
        text=True,
        env=ENV,
        timeout=timeout,
    )


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def soups_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "soups"
    done = morl("train", "--method", "soups", *TINY_ARGS, "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"trained soups into {out}" in done.stdout
    return out


# --- morl train ---


def test_train_writes_config_metrics_front_artifact_and_adapters(soups_run):
    config = json.loads((soups_run / "config.json").read_text())
    expected = RunConfig(
        method="soups",
        objectives=tuple(OBJECTIVES),
        steps=2,
        batch_prompts=2,
        k_samples=2,
        max_new_tokens=8,
        eval_prompts=2,
        n_preferences=3,
        eval_every=0,
        device="cpu",
    ).to_dict()
    assert config == expected

    metrics = read_jsonl(soups_run / "metrics.jsonl")
    assert [m["step"] for m in metrics] == [1, 2, 3, 4]  # two experts x two steps
    assert [m["samples"] for m in metrics] == [4, 8, 12, 16]
    assert [m["stage"] for m in metrics] == [n for n in expert_names(OBJECTIVES) for _ in "ab"]
    for m in metrics:
        for name in OBJECTIVES:
            assert 0.0 <= m[f"reward/{name}"] <= 1.0
        for key in ("kl", "entropy", "length", "distinct2", "time/generate", "time/update"):
            assert key in m
        assert 1 <= m["length"] <= 8
    # each expert optimises its own objective alone
    assert [m["weight/sentiment"] for m in metrics] == [1.0, 1.0, 0.0, 0.0]

    fronts = read_jsonl(soups_run / "front.jsonl")
    assert len(fronts) == 1 and fronts[0]["step"] == 4  # the soup front exists once both are
    front = fronts[0]
    assert front["objectives"] == OBJECTIVES
    assert np.asarray(front["preferences"]).shape == (3, 2)
    points = np.asarray(front["points"])
    assert points.shape == (3, 2) and ((points >= 0) & (points <= 1)).all()

    artifact = json.loads((soups_run / "artifact.json").read_text())
    assert artifact["method"] == "soups" and artifact["objectives"] == OBJECTIVES
    assert artifact["experts"] == expert_names(OBJECTIVES)
    for name in expert_names(OBJECTIVES):
        folder = soups_run / "adapters" / name
        assert (folder / "adapter_config.json").is_file()
        assert (folder / "adapter_model.safetensors").stat().st_size > 0


@pytest.mark.parametrize("method", [None, "mod"], ids=["soups", "as-mod"])
def test_front_writes_front_json_with_indicators(soups_run, method):
    extra = ["--method", method] if method else []
    done = morl("front", str(soups_run), "--device", "cpu", *extra)
    assert done.returncode == 0, done.stderr
    assert "hypervolume:" in done.stdout and "expected_utility:" in done.stdout
    front = json.loads((soups_run / "front.json").read_text())
    assert front["method"] == (method or "soups")
    assert front["objectives"] == OBJECTIVES
    points = np.asarray(front["points"])
    assert points.shape == (3, 2)
    assert np.asarray(front["stderr"]).shape == (3, 2)
    indicators = front["indicators"]
    for key in ("hypervolume", "expected_utility", "sparsity", "cardinality", "n_points"):
        assert key in indicators
    assert indicators["n_points"] == 3
    # the saved hypervolume is that of the saved (mean) points w.r.t. the fixed per-task reference
    ref = reference_point(OBJECTIVES)
    assert indicators["hypervolume"] == pytest.approx(hypervolume(points, ref))
    assert indicators["ref"] == [-0.1, -0.1] and front["protocol_version"] == PROTOCOL_VERSION
    low, high = indicators["intervals"]["hypervolume"]  # bootstrap over the held-out prompts
    assert low <= indicators["hypervolume"] <= high
    assert len(front["kl_per_token"]) == 3
    assert "interval (bootstrap over prompts)" in done.stdout and "KL/token" in done.stdout
    assert 0 < indicators["hypervolume"] <= 1.1**2


def test_generate_prints_one_line_per_completion(soups_run):
    args = ["generate", str(soups_run), "--weights", "0.5,0.5", "--device", "cpu"]
    args += ["--prompt", "The hotel was", "--prompt", "The museum was"]
    args += ["-n", "2", "--seed", "3", "--max-new-tokens", "8"]
    done = morl(*args)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4  # 2 prompts x 2 completions
    assert any(line.strip() for line in lines)
    assert morl(*args).stdout == done.stdout  # seeded


# --- bad input: exit 2, the field and its allowed values, no traceback ---

BAD_TRAIN = [
    (["--method", "nope"], ["method", "allowed: " + ", ".join(SHIPPED)]),
    (["--objectives", "sentiment,nope"], ["objectives", "unknown ['nope']", "allowed:", "brevity"]),
    (["--objectives", "sentiment"], ["objectives", "at least two objectives, got 1"]),
    (["--objectives", "sentiment,sentiment"], ["objectives", "distinct"]),
    (["--weights", "0.2,0.3,0.5"], ["weights", "need 2 weights (one per objective), got 3"]),
    (["--weights", "0.5,0.3"], ["weights", "must sum to 1 (a point on the simplex)"]),
    (["--weights", "1.5,-0.5"], ["weights", "must be finite and >= 0"]),
    (["--weights", "a,b"], ["weights", "must be numbers"]),
    (["--steps", "0"], ["steps", "must be an integer in [1, 100000], got 0"]),
    (["--steps", "-3"], ["steps", "must be an integer in [1, 100000], got -3"]),
    (["--steps", "two"], ["steps", "integer", "got 'two'"]),
    (["--option", "nope=1"], ["options.nope", "unknown option for morlhf; allowed: none"]),
    (
        ["--method", "soups", "--option", "nope=1"],
        ["options.nope", "unknown option for soups; allowed: experts_from"],
    ),
    (["--option", "no-equals-sign"], ["options", "expected KEY=VALUE"]),
    (
        ["--method", "dynaopt", "--option", "gamma=abc"],
        ["options.gamma", "must be a number in (0, 1], got 'abc'"],
    ),
    (["--scalarization", "max"], ["scalarization", "linear, logsum, tchebycheff"]),
]


@pytest.mark.parametrize(("args", "expected"), BAD_TRAIN, ids=[" ".join(a) for a, _ in BAD_TRAIN])
def test_bad_train_input_exits_2_naming_the_field(args, expected, tmp_path):
    out = tmp_path / "run"
    done = morl("train", *args, "--out", str(out), timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("morl train: error: ")
    for text in expected:
        assert text in done.stderr
    assert not out.exists()  # nothing written for a config that never validated


def test_option_out_of_range_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "run"
    done = morl(
        "train", "--method", "dynaopt", "--option", "gamma=2.0", *TINY_ARGS, "--out", str(out)
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "options.gamma: must be a number in (0, 1], got 2.0" in done.stderr
    assert not out.exists()  # validated with the config, before the run folder is made


def test_out_folder_that_is_not_a_run_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    done = morl("train", *TINY_ARGS, "--out", str(tmp_path), timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--out" in done.stderr and "not a run folder" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("0.5,0.3", "weights: expected each preference to sum to 1"),
        ("1", "weights: expected k=2 entries"),
        ("x,y", "--weights must be comma-separated numbers"),
    ],
)
def test_bad_generate_weights_exit_2(soups_run, weights, expected):
    done = morl("generate", str(soups_run), "--weights", weights, "--prompt", "Hi", timeout=60)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert expected in done.stderr


def test_generate_checks_the_weights_before_loading_the_model(soups_run, tmp_path):
    """A preference of the wrong length is refused from the run's config alone: a copy of the
    run without its adapters (a load would fail on them) still gets the weights message."""
    run = tmp_path / "soups"
    shutil.copytree(soups_run, run)
    shutil.rmtree(run / "adapters")
    done = morl("generate", str(run), "--weights", "0.2,0.3,0.5", "--prompt", "Hi", timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "weights: expected k=2 entries" in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["front", "generate"])
def test_commands_on_a_folder_that_is_not_a_run_exit_2(command, tmp_path):
    args = [command, str(tmp_path)] + (
        ["--weights", "0.5,0.5", "--prompt", "Hi"] if command == "generate" else []
    )
    done = morl(*args, timeout=60)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "is not a run folder (no config.json)" in done.stderr


def test_progress_bar_labels_objectives_without_their_settings():
    from morl_core.train_cli import reward_postfix

    metrics = {
        "reward/brevity(target_words=20)": 0.41234,
        "reward/readability": 0.7,
        "reward/scalarized": 0.5,
        "kl": 0.1,
    }
    assert reward_postfix(metrics) == {"brevity": 0.412, "readabili": 0.7}
