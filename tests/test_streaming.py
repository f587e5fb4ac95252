"""Steer replies streamed as they are written: the same text as without streaming, the first
token's and the whole reply's time, and a reply length that follows the artifact.

Runs the shipped demo artifacts on the embedded model, on CPU.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from morl_core.app import catalog, lattice, serving

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "The coffee was"


@pytest.fixture(scope="module")
def pool():
    return serving.ModelPool(device="cpu", threads=1, replicas=1)


def test_the_sampling_loop_shows_each_step_in_order_and_changes_nothing():
    import torch

    from morl_core.policy import load_policy

    policy = load_policy("embedded", device="cpu")
    steps = []
    watched = policy.rollout(
        ["Hi", "Tell me a story"],
        n=2,
        max_new_tokens=6,
        seed=3,
        on_step=lambda tokens, live: steps.append((tokens.clone(), live.clone())),
    )
    plain = policy.rollout(["Hi", "Tell me a story"], n=2, max_new_tokens=6, seed=3)
    assert torch.equal(watched.completion_ids, plain.completion_ids)
    assert len(steps) == watched.completion_ids.shape[1] > 1  # one call per step
    assert torch.equal(torch.stack([t for t, _ in steps], 1), watched.completion_ids)
    assert torch.equal(torch.stack([m for _, m in steps], 1), watched.completion_mask)


@pytest.mark.parametrize(
    ("demo", "method"),
    [("morlhf-sentiment-brevity", "morlhf"), ("soups-sentiment-brevity", "mod")],
)
def test_streamed_replies_are_the_unstreamed_replies(pool, demo, method):
    shared = pool.get(catalog.DEMO_DIR / demo, method)
    weights, seed = [0.63, 0.37], 7  # off the lattice: generated live
    shown: list[list[str]] = []
    result = serving.steer(
        shared, PROMPT, weights, samples=2, seed=seed, on_text=shown.append, stream_interval=0
    )
    texts = [g.text for g in result.generations]
    unstreamed = shared.steerable.generate([PROMPT] * 2, weights, seed=seed, **shared.decoding)
    assert texts == unstreamed
    assert any(texts) and len(shown) > 1  # drawn as it was written, not once at the end
    assert shown[-1] == texts
    for before, after in zip(shown, shown[1:], strict=False):  # in order: each one grows
        for old, new in zip(before, after, strict=True):
            assert new.startswith(old)
    assert not result.cached and not result.precomputed
    assert 0 < result.first_token_seconds <= result.reply_seconds <= result.seconds
    assert result.timing.startswith("first token ") and "whole reply" in result.timing

    shown.clear()
    again = serving.steer(shared, PROMPT, weights, samples=2, seed=seed, on_text=shown.append)
    assert [g.text for g in again.generations] == texts
    assert again.cached and again.first_token_seconds is None and shown == []
    assert again.timing.startswith("cached · ")


def write_length(run_dir: Path, max_new_tokens) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    if max_new_tokens is None:
        config.pop("max_new_tokens", None)
    else:
        config["max_new_tokens"] = max_new_tokens
    (run_dir / "config.json").write_text(json.dumps(config))


def test_reply_length_follows_the_artifacts_training_length(tmp_path):
    run_dir = tmp_path / "demo"
    shutil.copytree(catalog.DEMO_DIR / "morlhf-sentiment-brevity", run_dir)
    assert serving.steer_decoding(None) == serving.STEER_DECODING
    for trained, served in [
        (40, 40),
        (10_000, serving.STEER_MAX_NEW_TOKENS),
        (None, serving.STEER_DECODING["max_new_tokens"]),
        ("many", serving.STEER_DECODING["max_new_tokens"]),
    ]:
        write_length(run_dir, trained)
        decoding = serving.steer_decoding(run_dir)
        assert decoding["max_new_tokens"] == served, trained
        assert decoding["top_p"] == serving.STEER_DECODING["top_p"]

    seen = []

    class Recorder:
        objectives = ("sentiment", "brevity")

        def generate(self, prompts, weights, **gen):
            seen.append(gen)
            return ["ok" for _ in prompts]

    write_length(run_dir, 40)
    serving.steer(serving.SharedSteerable(Recorder(), "morlhf", run_dir), PROMPT, [0.5, 0.5])
    assert seen[-1]["max_new_tokens"] == 40


def test_a_long_reply_is_cut_only_at_the_artifacts_length(pool, tmp_path):
    run_dir = tmp_path / "demo"
    shutil.copytree(catalog.DEMO_DIR / "morlhf-sentiment-brevity", run_dir)
    write_length(run_dir, 40)
    shared = pool.get(run_dir, "morlhf")
    steps: list[list[str]] = []  # one call per decoding step (no redraw skipped)
    serving.steer(
        shared, PROMPT, [0.63, 0.37], samples=4, seed=1, on_text=steps.append, stream_interval=0
    )
    assert 24 < len(steps) <= 40  # the old fixed 24 tokens would have stopped it there


def test_the_lattice_decodes_as_steer_does(tmp_path):
    run_dir = tmp_path / "demo"
    shutil.copytree(
        catalog.DEMO_DIR / "soups-sentiment-brevity",
        run_dir,
        ignore=shutil.ignore_patterns(lattice.LATTICE),
    )
    write_length(run_dir, 6)
    data = lattice.build_lattice(run_dir, prompts=[PROMPT], samples=1, seed=0)
    assert data["decoding"] == serving.steer_decoding(run_dir)
    assert data["decoding"]["max_new_tokens"] == 6
    assert lattice.precomputed(run_dir, "soups", PROMPT, [0.5, 0.5], samples=1, seed=0)
    write_length(run_dir, 8)  # retrained longer: the saved replies no longer match
    assert lattice.precomputed(run_dir, "soups", PROMPT, [0.5, 0.5], samples=1, seed=0) is None


def test_steer_page_shows_first_token_and_whole_reply_times(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    assert not at.exception, [e.message for e in at.exception]
    captions = [c.value for c in at.caption]
    assert any("precomputed · " in c for c in captions)  # the sliders start on the lattice
    at.slider[0].set_value(0.93).run()
    assert not at.exception, [e.message for e in at.exception]
    captions = [c.value for c in at.caption]
    assert any("first token " in c and " ms · whole reply " in c for c in captions), captions
    assert len([m for m in at.markdown if 'class="gen-text"' in m.value]) == 2  # no stream left


@pytest.mark.parametrize("run", ["soups-sentiment-brevity", None])
def test_the_ui_keeps_its_own_thread_count_after_loading_a_run(run):
    """Loading a model (its own ``set_threads`` call, with no count) must not reset the UI's
    replies to ``MORL_THREADS``: the UI draws with ``MORL_UI_THREADS``."""
    import torch

    from morl_core.policy import set_threads

    before = torch.get_num_threads()
    try:
        pool = serving.ModelPool(device="cpu", threads=2, replicas=1)
        pool.get(None if run is None else catalog.DEMO_DIR / run, "soups" if run else "base")
        assert torch.get_num_threads() == 2
    finally:
        set_threads(before)  # the count later loads in this process keep
