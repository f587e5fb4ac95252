"""The ``morl`` command, run as a user runs it: a subprocess with the hub switched off.

Checks the foundation subcommands (objectives, score, generate) and that bad input gives exit
code 2, one message naming the problem, and no traceback.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ENV = {
    **os.environ,
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
    "MORL_THREADS": "1",
    "TOKENIZERS_PARALLELISM": "false",
}
WARM = "What a lovely, warm day with my friends."
HOSTILE = "I hate you, you stupid idiot."


def morl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "morl_core.cli", *args],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_objectives_lists_every_registered_name():
    from morl_core.objectives import OBJECTIVES

    result = morl("objectives")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["name", "kind", "range"]
    listed = [line.split()[0] for line in lines[2:]]
    assert listed == list(OBJECTIVES)
    assert "sentiment" in listed and "nontoxic" in listed


def test_score_prints_the_matrix_in_objective_order():
    result = morl("score", "--objectives", "nontoxic,sentiment", WARM, HOSTILE)
    assert result.returncode == 0, result.stderr
    header, _, warm_row, hostile_row = result.stdout.splitlines()
    assert header.split() == ["text", "nontoxic", "sentiment"]
    warm = [float(v) for v in warm_row.split()[-2:]]
    hostile = [float(v) for v in hostile_row.split()[-2:]]
    assert warm_row.startswith(WARM) and hostile_row.startswith(HOSTILE)
    assert warm[0] > hostile[0] and warm[1] > hostile[1]
    assert warm[1] > 0.75 and hostile[1] < 0.25  # VADER (c + 1) / 2
    assert all(0 <= v <= 1 for v in warm + hostile)


def test_score_json_matches_the_library():
    import json

    from morl_core.objectives import score

    result = morl("score", "--json", "--objectives", "sentiment,brevity", WARM, HOSTILE)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["objectives"] == ["sentiment", "brevity"]
    expected = score(["sentiment", "brevity"], ["", ""], [WARM, HOSTILE])
    assert len(record["scores"]) == 2
    for got, want in zip(record["scores"], expected.tolist(), strict=True):
        assert got == pytest.approx(want, abs=1e-9)


def test_generate_prints_n_lines_and_is_reproducible():
    args = ("generate", "--prompt", "The hotel was", "-n", "2", "--seed", "1")
    args += ("--max-new-tokens", "24")
    first = morl(*args)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert len(lines) == 2
    assert all(line.strip() for line in lines) and lines[0] != lines[1]
    assert morl(*args).stdout == first.stdout


def test_generate_matches_the_library():
    from morl_core.policy import load_policy

    result = morl("generate", "--prompt", "Hi", "--prompt", "The park", "-n", "2", "--greedy")
    assert result.returncode == 0, result.stderr
    policy = load_policy("embedded", device="cpu", threads=1)
    expected = policy.generate(["Hi", "The park"], n=2, greedy=True, max_new_tokens=48)
    assert result.stdout.splitlines() == [t.replace("\n", "\\n") for t in expected]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["score", "--objectives", "sentiment,bogus", "x"],
            "unknown objective 'bogus'; available: sentiment",
        ),
        (["score", "--objectives", ",", "x"], "names is empty"),
        (
            ["generate", "--model", "no-such-org/no-such-model", "--prompt", "x"],
            "cannot load model 'no-such-org/no-such-model'",
        ),
        (
            ["generate", "--model", "/no/such/folder", "--prompt", "x"],
            "no model folder at '/no/such/folder'",
        ),
        (["generate"], "give at least one --prompt"),
        (
            ["generate", "--prompt", "x", "--weights", "a,b"],
            "--weights must be comma-separated numbers, got 'a,b'",
        ),
        (
            ["generate", "--prompt", "x", "--weights", "0.5,nan"],
            "--weights must be comma-separated numbers",
        ),
        (
            ["generate", "--prompt", "x", "--weights", "0.5,0.5"],
            "--weights needs a trained run folder",
        ),
        (["generate", "--prompt", "x", "-n", "0"], r"-n .* must be in \[1, 64\], got 0"),
        (["generate", "--prompt", "x", "-n", "100000000"], r"-n .* must be in \[1, 64\]"),
        (["generate", *["--prompt", "x"] * 257], "--prompt: at most 256, got 257"),
        (["generate", "--prompt", "x", "--threads", "100000"], r"threads must be in \[1, 1024\]"),
        (["generate", "--prompt", "x", "--top-p", "0"], r"top_p must be in \(0, 1\]"),
        (
            ["generate", "--prompt", "x", "--max-new-tokens", "400"],
            "below the model's context length 256",
        ),
        (
            ["generate", "--prompt", "x", "--device", "tpu"],
            "device must be 'auto', 'cpu' or 'cuda'",
        ),
    ],
)
def test_bad_input_exits_2_with_a_message(args, message):
    import re

    result = morl(*args)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert re.search(message, result.stderr), result.stderr
    assert result.stderr.startswith(f"morl {args[0]}: error: ")
    assert result.stdout == ""


def test_argument_errors_exit_2_without_traceback():
    result = morl("generate", "--prompt", "x", "-n", "two")
    assert result.returncode == 2
    assert "invalid int value: 'two'" in result.stderr
    assert "Traceback" not in result.stderr
