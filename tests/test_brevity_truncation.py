"""benchmarks/brevity_truncation.py: how much of brevity's signal is replies cut off by the budget."""

import json

import pytest
from script_support import load_script

from morl_core.policy import set_threads

set_threads(1)


def test_a_longer_budget_lets_more_replies_end_and_cut_off_ones_score_by_their_words(
    tmp_path, capsys
):
    """On the embedded model: more replies end inside 24 tokens than inside 8, a reply cut off
    at 8 tokens has at most 8 words (so 15-word brevity pays it 1), and the variance split is a
    share; bad arguments get a message."""
    script = load_script("benchmarks/brevity_truncation.py")
    out = tmp_path / "bt.json"
    args = ["--model", "embedded", "--replies", "1", "--max-new-tokens", "8,24", "--out", str(out)]
    assert script.main(args) == 0
    short, long = json.loads(out.read_text())["budgets"]
    assert short["replies"] == long["replies"] > 0
    assert long["ended_share"] > short["ended_share"]
    assert short["words_cut_off_p5_p50_p95"][2] <= 8 and short["brevity_cut_off"] == 1.0
    for row in (short, long):
        assert 0.0 <= row["variance_share_between_ended_and_cut_off"] <= 1.0
    for bad in (["--replies", "0"], ["--max-new-tokens", "10000"], ["--max-new-tokens", "x"]):
        with pytest.raises(SystemExit):
            script.main(["--model", "embedded", *bad])
    with pytest.raises(SystemExit):  # a model that is not here: a message, not a traceback
        script.main(["--model", str(tmp_path / "no-model"), "--replies", "1"])
    assert "error: --model: no model folder" in capsys.readouterr().err
