"""benchmarks/ric_tag_wording.py: which way of writing RiC's targets a model follows."""

import json

import pytest
from known_support import KNOWN
from script_support import load_script

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.policy import set_threads

set_threads(1)


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/ric_tag_wording.py")


def test_a_ric_trained_in_words_follows_them_where_its_base_model_does_not(
    script, tmp_path_factory, monkeypatch
):
    """RiC trained on the known-answer pair with its targets in words: sampled at its two ends,
    the trained policy's warm end says far more warm words than its cold end and fewer cold
    ones; the same model with the adapter off, given the same words, does not. A run's figures
    are saved under the run's name, beside (not over) the base model's."""
    config = {**KNOWN, "method": "ric", "lr": 1e-3, "steps": 40, "options": {"tags": "words"}}
    run = tmp_path_factory.mktemp("ric") / "run"
    run.mkdir()
    checked = RunConfig.from_dict(config)
    (run / "config.json").write_text(json.dumps(checked.to_dict()))
    METHODS["ric"].train(checked, run)
    monkeypatch.setattr(script, "ROOT", run.parent)
    args = ["--run", str(run), "--prompts", "8", "--replies", "8", "--max-new-tokens", "1"]
    assert script.main([*args, "--styles", "none,words"]) == 0
    out = run.parent / "benchmarks/results/ric_tag_wording_run.json"
    saved = json.loads(out.read_text())
    policy, base = saved["policy"]["words"], saved["base"]["words"]
    assert policy["prefixes"] == ["Make your reply very warm.\n", "Make your reply very cold.\n"]
    assert policy["gap"][0] > base["gap"][0] + 0.3 and policy["gap"][1] < base["gap"][1] - 0.3
    assert policy["gap"][0] > 4 * policy["se"][0]  # paired over 8 prompts
    assert saved["policy"]["none"]["gap"] == [0.0, 0.0]  # same prefix, same seeds: no gap


def test_bad_input_is_refused_before_anything_runs(script, tmp_path, capsys):
    cases = [
        (["--prompts", "100000"], "--prompts must be an integer in [2, 256]"),
        (["--replies", "0"], "--replies must be an integer in [1, 32]"),
        (["--styles", "none,shouty"], "--styles must be among none, relaxed, all, words"),
        (["--objectives", "formality,nope"], "--objectives: unknown"),
        (["--objectives", "formality,synth_city"], "has no adjective"),
        (["--model", str(tmp_path / "nowhere"), "--styles", "none"], "--model: "),
        (["--run", str(tmp_path)], "not a RiC run folder"),
    ]
    for argv, message in cases:
        with pytest.raises(SystemExit):
            script.main(argv)
        assert message in capsys.readouterr().err, argv
