"""benchmarks/ric_tag_reading.py: whether a RiC run reads its tags, and whether its pool has the
tags inference writes."""

import json

import numpy as np
import pytest
from known_support import KNOWN
from script_support import load_script

from morl_core.config import RunConfig
from morl_core.methods import METHODS
from morl_core.policy import set_threads

set_threads(1)


@pytest.fixture(scope="module")
def script():
    return load_script("benchmarks/ric_tag_reading.py")


def test_coverage_counts_the_tags_inference_writes(script):
    """Relabelled to the pool's range: (1, 0) leaves the first tag out and writes the second at
    0.0, the tags of the first objective's end; (1, 1) writes none (the front's middle)."""
    objectives = ("warm_word", "cold_word")
    norm = np.asarray([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [0.5, 0.5], [0.0, 0.0]])
    covered = script.coverage(norm, objectives, "minmax")
    # kept: at the 0.7-quantile (1.0) somewhere; (0.5, 0.5) and (0, 0) are not
    assert covered["kept"] == 3
    assert covered["untagged/warm_word"] == covered["untagged/cold_word"] == pytest.approx(2 / 3)
    assert covered["untagged/all"] == pytest.approx(1 / 3)
    assert covered["end/warm_word"] == covered["end/cold_word"] == pytest.approx(1 / 3)
    # in words the ends are "Make your reply very warm." and "... very cold.": the same rows
    # (rows and ends written alike; a mismatch would find none)
    words = script.coverage(norm, objectives, "minmax", "words")
    assert words["end/warm_word"] == words["end/cold_word"] == pytest.approx(1 / 3)


@pytest.fixture(scope="module")
def known_ric(tmp_path_factory):
    """A RiC run on the known-answer pair with four supervised steps a round, which separates
    its ends (tests/test_known_answers.py): (run folder, its config)."""
    config = {**KNOWN, "method": "ric", "lr": 1e-3, "steps": 10}
    config["options"] = {"sft_updates": 4}
    run = tmp_path_factory.mktemp("known") / "ric"
    run.mkdir()
    checked = RunConfig.from_dict(config)
    (run / "config.json").write_text(json.dumps(checked.to_dict()))
    METHODS["ric"].train(checked, run)
    return run, checked


def test_a_ric_that_learned_its_tags_reads_them_and_the_base_model_does_not(
    script, known_ric, tmp_path
):
    """Its rewards are 0 or 1, so its pool's tags are the ends' tags themselves, and the replies
    the base model sampled are ranked by the ends' tags as their rewards say, within prompts
    too, where the base model wearing the same tags does not rank them. (The contrast 0.9 vs
    0.2 is a value its pool never has: not asserted.)"""
    run, checked = known_ric
    _, _, norm, _ = script.load_pool(run)
    covered = script.coverage(norm, checked.objectives)
    assert covered["end/warm_word"] > 0.2 and covered["end/cold_word"] > 0.2, covered
    read = script.reading(run, probe=64)
    policy, base = read["policy/ends"], read["base/ends"]
    assert policy["corr_within_prompt"] > 0.5 > base["corr_within_prompt"] + 0.2, read
    assert policy["mean_abs_gap_nats"] > 10 * base["mean_abs_gap_nats"], read
    out = tmp_path / "out.json"
    assert script.main([str(run), "--probe", "32", "--out", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["relabel"] == "quantiles" and "policy/contrast" in saved["reading"]
    assert saved["coverage"]["quantiles"]["kept"] == saved["coverage"]["minmax"]["kept"] > 0
    with pytest.raises(SystemExit):
        script.main([str(run), "--probe", "100000"])
    with pytest.raises(SystemExit):  # no run folder: a message, not a traceback
        script.main([str(tmp_path / "nowhere")])


def test_the_sft_probe_reads_tags_on_prompts_it_never_trained_on(known_ric, tmp_path, capsys):
    """benchmarks/ric_sft_probe.py: a fresh adapter trained by RiC's supervised step on the
    known-answer run's pool, less a quarter of its prompts, reads the ends' tags on the
    held-out prompts' replies as on the trained ones (the known answer does not depend on the
    prompt), where the base model does not; bad arguments get a message."""
    probe = load_script("benchmarks/ric_sft_probe.py")
    run, _ = known_ric
    out = tmp_path / "probe.json"
    assert (
        probe.main([str(run), "--steps", "40", "--every", "20", "--probe", "32", "--out", str(out)])
        == 0
    )
    saved = json.loads(out.read_text())
    held = set(saved["held_out_prompts"])
    assert len(held) == 2 and saved["trained_pool_rows"] < 10 * KNOWN["batch_prompts"] * 4
    last = saved["points"][-1]
    for name in ("trained", "held_out"):
        assert last[name]["corr_within_prompt"] > 0.5, saved
        assert saved["base"][name]["corr_within_prompt"] < 0.3, saved
    assert last["held_out"]["prompts"] == 2
    for bad in (["--steps", "0"], ["--probe", "100000"], ["--every", "50", "--steps", "10"]):
        with pytest.raises(SystemExit):
            probe.main([str(run), *bad])
    with pytest.raises(SystemExit):  # no run folder: a message, not a traceback
        probe.main([str(tmp_path / "nowhere")])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text('{"method": "soups"}')
    with pytest.raises(SystemExit):  # not a RiC run
        probe.main([str(tmp_path / "other")])
    assert "not a RiC run" in capsys.readouterr().err


def test_the_pool_is_read_with_its_guard_scores_and_kept_as_the_run_kept_it(script, tmp_path):
    """``load_pool`` returns each reply's fluency guard score (a pool saved before the guard
    reads as fluent); coverage keeps what the run's rejection sampling kept, a failed reply
    counted ``fluency_penalty`` lower, while the labels stay what each reply achieved."""
    import torch

    from morl_core import runfolder
    from morl_core.methods import ric

    rewards = [[0.9, 0.9], [0.8, 0.1], [0.1, 0.8], [0.0, 0.0]]  # the first reply fails the guard
    tensors = {
        "pool/ids": torch.tensor([[5, 6], [7, -1], [8, -1], [9, -1]]),
        "pool/prompt": torch.tensor([0, 1, 1, 0]),
        "pool/norm": torch.tensor(rewards, dtype=torch.float64),
        "pool/fluency": torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64),
    }
    runfolder.save_checkpoint(tmp_path, 1, tensors, {})
    prompts, ids, norm, fluency = script.load_pool(tmp_path)
    assert (prompts, ids) == ([0, 1, 1, 0], [[5, 6], [7], [8], [9]])
    np.testing.assert_allclose(norm, rewards)
    np.testing.assert_allclose(fluency, [0.0, 1.0, 1.0, 1.0])
    objectives = ("formality", "readability")
    # unguarded, the failed reply tops both objectives and is the only one kept; guarded, the
    # two it outscored are kept, labelled as they scored (each low on one objective)
    unguarded = script.coverage(norm, objectives, "minmax")
    assert (unguarded["kept"], unguarded["untagged/all"]) == (1, 1.0)
    guarded = script.coverage(norm, objectives, "minmax", guarded=ric.judged(norm, fluency, 1.0))
    assert (guarded["kept"], guarded["untagged/all"]) == (2, 0.0)
    del tensors["pool/fluency"]
    runfolder.save_checkpoint(tmp_path, 2, tensors, {})
    np.testing.assert_allclose(script.load_pool(tmp_path)[3], [1.0, 1.0, 1.0, 1.0])


def test_the_sft_probe_trains_on_each_replys_guard_score(known_ric, tmp_path, monkeypatch):
    """benchmarks/ric_sft_probe.py hands its trainer the pool's guard scores, so its rejection
    sampling keeps what the run kept (here every other reply failed the guard)."""
    from morl_core.methods import ric

    probe = load_script("benchmarks/ric_sft_probe.py")
    run, _ = known_ric
    real_load, real_step = probe.reading.load_pool, ric.SupervisedRounds.supervised_step

    def every_other_failed(run_dir):
        prompt, ids, norm, fluency = real_load(run_dir)
        return prompt, ids, norm, np.arange(len(ids)) % 2.0

    seen: list[np.ndarray] = []
    monkeypatch.setattr(probe.reading, "load_pool", every_other_failed)
    monkeypatch.setattr(
        ric.SupervisedRounds,
        "supervised_step",
        lambda self, *a, **k: seen.append(self.pool_fluency.copy()) or real_step(self, *a, **k),
    )
    argv = [str(run), "--steps", "1", "--every", "1", "--probe", "8"]
    assert probe.main([*argv, "--out", str(tmp_path / "probe.json")]) == 0
    assert seen and set(seen[0].tolist()) == {0.0, 1.0}
