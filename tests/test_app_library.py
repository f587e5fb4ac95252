"""The app's library side (morl_core.app): pure helpers, tested without Streamlit or a model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from morl_core import settings
from morl_core.app import benchmark, catalog, figures, fronts, learn, report, runs, serving
from morl_core.config import ConfigError


def test_app_modules_do_not_import_streamlit_or_torch():
    code = (
        "import sys; import morl_core.app.serving, morl_core.app.fronts, morl_core.app.runs, "
        "morl_core.app.relations, morl_core.app.benchmark, morl_core.app.learn, "
        "morl_core.app.report; "
        "print('streamlit' in sys.modules, 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# --- picks -----------------------------------------------------------------------------------


def test_knee_point_is_the_bulge_of_a_bent_front():
    points = [[0.0, 1.0], [0.8, 0.8], [0.9, 0.3], [1.0, 0.0], [0.5, 0.5]]  # last is dominated
    pick = fronts.knee_point(points)
    assert pick.index == 1 and pick.rule == "knee"
    assert "bulge" in pick.reason


def test_knee_point_with_two_points_says_why():
    pick = fronts.knee_point([[0.0, 1.0], [0.6, 0.7]])
    assert pick.index == 1
    assert "no bend" in pick.reason


def test_pseudo_weights_follow_the_preference():
    points = [[0.0, 1.0], [0.25, 0.75], [0.5, 0.5], [0.75, 0.25], [1.0, 0.0]]
    assert fronts.pseudo_weight_pick(points, [0.75, 0.25]).index == 3
    assert fronts.pseudo_weight_pick(points, [0.0, 1.0]).index == 0
    assert "closest" in fronts.pseudo_weight_pick(points, [0.5, 0.5]).reason


def test_neighbour_and_nearest_preference():
    pts = [[0.0, 1.0], [0.5, 0.5], [0.6, 0.4]]
    assert fronts.neighbour_index(pts, 1) == 2
    assert fronts.neighbour_index([[1.0, 1.0]], 0) is None
    assert fronts.nearest_preference([[1, 0], [0.5, 0.5], [0, 1]], [0.4, 0.6]) == 1


# --- degeneration ----------------------------------------------------------------------------


def test_degeneration_flags_repetition_shortness_and_kl():
    healthy = fronts.degeneration(["The staff were kind and the soup was warm."])
    assert healthy.flags == ()
    looped = fronts.degeneration(["a friend of mine likes a friend of mine likes a friend of mine"])
    assert any("repetitive" in f for f in looped.flags)
    garbled = fronts.degeneration(["The owner...... is....m drug. Epic data."])
    assert any("garbled" in f for f in garbled.flags)
    short = fronts.degeneration(["..", ""], kl=2.0)
    assert any("very short" in f for f in short.flags)
    assert any("KL" in f for f in short.flags)
    assert not any("made-up" in f for f in short.flags)  # no words at all: not "made up"
    made_up = fronts.degeneration(["Zomhool! the itineradul hikal"])  # a brevity exploit
    assert made_up.flags == ("made-up words: 75% of its words are not English",)
    some = fronts.degeneration(["Zomhool! the itineradul hikal", "Pack a map and water."])
    assert some.flags == ("made-up words in 1 of 2 texts",)
    # an ordinary reply with a name and a rare word in it is not flagged
    assert (
        fronts.degeneration(["Try apps such as Duolingo; a fleam is a small lancet."]).flags == ()
    )


# --- selection, records ----------------------------------------------------------------------


def test_selected_row_reads_customdata_and_ignores_other_traces():
    state = {"selection": {"points": [{"curve_number": 3}, {"customdata": 7}]}}
    assert fronts.selected_row(state) == 7
    assert fronts.selected_row({"selection": {"points": [{"customdata": [4, "x"]}]}}) == 4
    assert fronts.selected_row(None) is None
    assert fronts.selected_row({"selection": {"points": []}}) is None


def test_run_history_reads_incrementally_and_skips_a_torn_line(tmp_path):
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(json.dumps({"step": 1, "samples": 16, "kl": 0.0}) + "\n")
    snap = {"step": 1, "samples": 16, "objectives": ["a", "b"], "preferences": [[1, 0], [0, 1]],
            "points": [[0.9, 0.1], [0.2, 0.8]]}  # fmt: skip
    (tmp_path / "front.jsonl").write_text(json.dumps(snap) + "\n")
    history = runs.RunHistory(tmp_path).update()
    assert history.metrics == [{"step": 1, "samples": 16, "kl": 0.0}]
    assert history.fronts[0]["samples"] == 16 and history.fronts[0]["partial"] is False
    with metrics.open("a") as handle:
        handle.write(json.dumps({"step": 2, "samples": 32}) + "\n" + '{"step": 3')
    history.update()
    assert [m["step"] for m in history.metrics] == [1, 2]
    samples, hv = history.hypervolume_curve()
    assert samples.tolist() == [16.0] and hv[0] > 0


def test_progress_eta_line():
    from morl_core.jobs import RunState, RunStatus

    status = RunStatus("x", RunState.RUNNING, step=10, total_steps=40, started=100.0)
    fraction, line = runs.progress_eta(status, now=120.0)
    assert fraction == 0.25 and "2.0 s/step" in line and "60 s left" in line


# --- the Train form --------------------------------------------------------------------------


def test_form_fields_derive_from_run_config():
    from morl_core.methods import METHODS

    by_name = {f.name: f for f in runs.form_fields()}
    assert set(by_name) == set(runs.MAIN_FIELDS)
    assert by_name["steps"].kind == "int" and by_name["method"].choices == tuple(METHODS)
    assert by_name["objectives"].kind == "multichoice"
    assert by_name["model"].choices == catalog.allowed_models()
    advanced = {f.name: f for f in runs.form_fields(runs.ADVANCED_FIELDS)}
    assert advanced["lr"].kind == "float" and "AdamW" in advanced["lr"].help


def test_submit_run_names_every_bad_field(monkeypatch):
    class NoExecutor:
        def submit(self, config):  # pragma: no cover - must not be reached
            raise AssertionError("submitted a bad config")

    monkeypatch.setenv(settings.UI_MODELS, "embedded")
    values = {"method": "soups", "objectives": ["sentiment", "os.path:join"], "steps": 0,
              "model": "gpt2", "options": "{not json"}  # fmt: skip
    with pytest.raises(ConfigError) as info:
        runs.submit_run(values, NoExecutor())
    assert {"steps", "model", "objectives", "options"} <= set(info.value.errors)


def test_submit_run_hands_a_valid_config_to_the_executor():
    seen = {}

    class Recorder:
        def submit(self, config):
            seen["config"] = config
            return "20260101-000000-00000000"

    run_id = runs.submit_run({"method": "dynaopt", "steps": 3, "options.gamma": 0.3}, Recorder())
    assert run_id.startswith("2026") and seen["config"].options == {"gamma": 0.3}


# --- artifacts, learn, benchmark, figures, report ------------------------------------------


def test_steer_methods_come_from_the_registry():
    assert catalog.steer_methods_for("morlhf", {"adapters": {}}) == ("morlhf",)
    with_experts = catalog.steer_methods_for("soups", {"experts": ["e1", "e2"]})
    assert with_experts[0] == "soups" and "mod" in with_experts


def test_scalarisation_tour_linear_reaches_only_the_ends():
    tour = learn.scalarisation_tour(21)
    assert len(set(tour.linear.tolist())) == 2
    assert len(set(tour.tchebycheff.tolist())) > 10
    assert len(figures.tour_figure(tour, 10).data) >= 5


def test_taxonomy_and_real_sources_cover_every_method():
    from morl_core.methods import METHODS

    rows = learn.taxonomy()
    assert {r["method"] for r in rows} == set(METHODS)
    families = [r["family"].split(".")[0] for r in rows]
    assert families == sorted(families, key=["A", "B", "C", "D1", "D2", "D3", "E"].index)
    doc, source = learn.method_source("soups")
    assert "Rewarded" in doc and "def load" in source


def test_benchmark_records_and_leaderboard(tmp_path):
    pytest.importorskip("morl_core.bench")
    assert benchmark.benchmark_records(tmp_path) == []
    (tmp_path / "s" / "records").mkdir(parents=True)
    for seed, hv in ((0, 0.6), (1, 0.8)):
        record = {"suite": "s", "method": "mod", "seed": seed, "status": "succeeded",
                  "objectives": ["a", "b"], "front": [[1.0, 0.0]], "hypervolume": hv}  # fmt: skip
        (tmp_path / "s" / "records" / f"mod-{seed}.json").write_text(json.dumps(record))
    board = benchmark.leaderboard(benchmark.benchmark_records(tmp_path))
    row = board.display_table()[0]
    assert row["method"] == "mod" and row["seeds"] == 2
    assert row["hypervolume"] == "0.7 [-0.571, 1.97] best"  # mean [t interval], one method
    one_seed = {"hypervolume_mean": 0.5, "hypervolume_lo": np.nan, "hypervolume_hi": np.nan}
    assert benchmark.metric_cell(one_seed | {"hypervolume_vs_best": "tied"}, "hypervolume") == (
        "0.5 [n/a] ≈ best"
    )
    too_few = one_seed | {"hypervolume_vs_best": "tied", "hypervolume_shared_seeds": 2}
    assert benchmark.metric_cell(too_few, "hypervolume") == "0.5 [n/a] ≈? best"  # cannot tell
    assert "≈? best: cannot tell" in benchmark.TABLE_LEGEND
    older = {"hypervolume_mean": 0.803, "hypervolume_std": 0.009}  # findings.json: no interval
    assert benchmark.metric_cell(older, "hypervolume") == "0.803 ± 0.009"
    assert benchmark.metric_cell({"training_samples": 960.0}, "training_samples") == "960"
    assert "fronts_s" in board.figures


def test_front_indicators_use_the_fixed_reference_and_know_synthetic_fronts():
    front = {"objectives": ["synth_nature", "synth_city"], "preferences": [[1, 0], [0, 1]],
             "points": [[1.0, 0.0], [0.0, 1.0]]}  # fmt: skip
    ind = fronts.front_indicators(front)
    assert ind["ref"] == [-0.1, -0.1] and ind["igd_plus"] is not None
    assert ind["hypervolume"] == pytest.approx(2 * 1.1 * 0.1 - 0.1 * 0.1)  # two boxes, overlap once


def test_ternary_and_overlay_figures():
    fig = figures.ternary_figure([0.2, 0.3, 0.5], ["a", "b", "c"], [[1, 0, 0]], [[0.5, 0.2, 0.1]])
    assert [t.type for t in fig.data] == ["scatterternary", "scatterternary"]
    over = figures.overlay_fronts_figure(
        [{"label": "x", "method": "soups", "points": [[0.1, 0.9], [0.9, 0.1], [0.05, 0.05]],
          "offset": 10}], ["a", "b"], ref=[-0.1, -0.1],
    )  # fmt: skip
    front = next(t for t in over.data if t.name == "x")
    assert sorted(front.customdata.tolist()) == [10, 11]
    assert any(t.name == "reference point" for t in over.data)


def test_report_is_one_escaped_html_file():
    gen = serving.Generation("Hi <b>", "ok & <script>", {"a": 0.5, "b": 1.0})
    html = report.tradeoff_report(
        title="T", artifact="demo", method="soups", objectives=["a", "b"], weights=[0.3, 0.7],
        generations=[gen], indicators={"hypervolume": 0.8}, flags=["very short"],
    )  # fmt: skip
    assert html.startswith("<!doctype html>") and "&lt;script&gt;" in html
    assert "<script>" not in html.split("</style>", 1)[1]  # no figure: no script at all
    assert "very short" in html and "0.7" in html


def test_figure_html_is_standalone():
    html = figures.figure_html(figures.leaderboard_figure([{"method": "mod", "hv": 1.0}], "hv"))
    assert "Plotly.newPlot" in html and '<script src="http' not in html


@pytest.mark.skipif(not figures.png_available(), reason="kaleido not installed")
@pytest.mark.slow
def test_png_export_through_kaleido():
    data = figures.figure_png(figures.leaderboard_figure([{"method": "mod", "hv": 1.0}], "hv"))
    assert data[:8] == b"\x89PNG\r\n\x1a\n"


def test_shared_steerable_caches_and_locks():
    calls = []

    class Fake:
        objectives = ("brevity", "diversity")

        def generate(self, prompts, weights, **gen):
            calls.append(tuple(weights))
            return [f"{weights[0]:.2f}" for _ in prompts]

    shared = serving.SharedSteerable(Fake(), "fake", None, cache_size=2)
    assert shared.generate_cached(["p"], [0.5, 0.5], seed=0) == (["0.50"], False)
    assert shared.generate_cached(["p"], [0.5, 0.5], seed=0) == (["0.50"], True)
    shared.generate_cached(["p"], [0.1, 0.9], seed=0)
    shared.generate_cached(["p"], [0.2, 0.8], seed=0)
    assert shared.generate_cached(["p"], [0.5, 0.5], seed=0)[1] is False  # evicted (LRU of 2)
    assert len(calls) == 4
    result = serving.steer(shared, "p", np.array([0.25, 0.75]), samples=2)
    assert [g.text for g in result.generations] == ["0.25", "0.25"]
    with pytest.raises(ValueError, match="prompt"):
        serving.steer(shared, "  ", [0.5, 0.5])


def test_shared_replicas_serve_concurrent_sessions():
    import threading
    import time

    busy, overlap = [], []

    class Slow:
        objectives = ("brevity", "diversity")

        def generate(self, prompts, weights, **gen):
            busy.append(self)
            overlap.append(len(busy))
            time.sleep(0.05)
            busy.remove(self)
            return ["x" for _ in prompts]

    shared = serving.SharedSteerable(Slow(), "slow", None, replicas=[Slow()])
    threads = [
        threading.Thread(target=shared.generate_cached, args=(["p"], [w, 1 - w]))
        for w in (0.1, 0.2, 0.3, 0.4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlap) == 2  # two replicas busy at once, never the same one twice
    assert shared._free.qsize() == 2


def test_model_pool_remembers_a_method_that_cannot_serve(monkeypatch):
    pool = serving.ModelPool(device="cpu")
    calls = []

    def failing(run_dir, method, progress):
        calls.append(method)
        raise ValueError("no trained meta-policy")

    monkeypatch.setattr(pool, "_load", failing)
    for _ in range(2):
        with pytest.raises(ValueError, match="meta-policy"):
            pool.get(None, "metapolicy")
    assert calls == ["metapolicy"] and pool.loaded(None, "metapolicy")


def test_published_leaderboard_matches_docs_findings():
    """The shipped data is the table of docs/findings.md (so the two cannot drift apart): every
    published HV, with its interval, is quoted there, and the best row is marked."""
    about, rows = benchmark.published_leaderboard()
    text = (benchmark.PUBLISHED.parents[2] / "docs" / "findings.md").read_text()
    data = json.loads(benchmark.PUBLISHED.read_text())["rows"]
    assert about["source"] == "docs/findings.md" and len(rows) == len(data) >= 9
    for row, raw in zip(rows, data, strict=True):
        cell = row["HV"]
        for mark in (benchmark.TIE_MARKS["tied"], benchmark.CANNOT_TELL_MARK):  # before " best"
            cell = cell.removesuffix(mark)
        cell = cell.removesuffix(benchmark.TIE_MARKS["best"])
        assert cell.removesuffix(" [n/a]") in text, (raw["method"], cell)
        tied = row["HV"].endswith((benchmark.TIE_MARKS["tied"], benchmark.CANNOT_TELL_MARK))
        if row["HV"].endswith(benchmark.TIE_MARKS["best"]) and not tied:
            assert f"**{cell}**" in text, raw["method"]
    # KL is shown beside the rewards, from the data, in every suite
    for row, raw in zip(rows, data, strict=True):
        shown = row["KL/token"]
        if raw["method"] == "base":
            assert shown == "0 [n/a]"
        else:
            assert shown.startswith(f"{raw['kl_per_token_mean']:.4g}"), (raw["suite"], shown)


def test_evaluated_runs_group_by_objective_set():
    rows = benchmark.evaluated_runs_table(catalog.discover_artifacts(runs=False))
    fronts = {r["front"] for r in rows}
    assert (
        "soups · sentiment, brevity" in fronts
        and "soups · sentiment, brevity, readability" in fronts
    )


def test_benchmark_front_lines_join_only_non_dominated_points():
    from morl_core.bench.figures import fronts_overlay

    record = {"suite": "s", "status": "succeeded", "objectives": ["a", "b"], "method": "mod",
              "seed": 0, "front": [[0.1, 0.9], [0.5, 0.5], [0.4, 0.4], [0.9, 0.1]]}  # fmt: skip
    line = fronts_overlay([record], "s").data[0]
    assert list(line.x) == [0.1, 0.5, 0.9]  # (0.4, 0.4) is dominated: no zig-zag through it


def test_learn_says_emorl_is_mod_up_to_temperature_and_shows_pmix_own_equation():
    assert "temperature 1/sum(a)" in learn.METHOD_NOTES["emorl"]
    assert learn.method_equation("pmix", "D2") != learn.method_equation("mod", "D2")
    assert r"\sum_i w_i\, \pi_i" in learn.method_equation("pmix", "D2")


def test_app_reference_point_puts_an_imported_reward_on_its_own_scale():
    """The app's fronts use the same bounds as ``morl front``: a TRL penalty in [-1, 0] gets a
    reference point below -1, a built-in objective one below 0."""
    from morl_core.app.fronts import reference_point

    penalty = "trl.rewards:get_repetition_penalty_reward(ngram_size=3,max_penalty=-1.0)"
    ref = reference_point([penalty, "sentiment"])
    assert ref[0] < -1.0 and -0.2 < ref[1] < 0.0
    np.testing.assert_allclose(reference_point(2), reference_point(["sentiment", "brevity"]))


def test_an_artifacts_example_prompts_come_from_its_own_prompt_set(tmp_path):
    from morl_core.prompts import load_prompts

    demo = catalog.DEMO_DIR / "soups-sentiment-brevity"
    (tmp_path / "artifact.json").write_text((demo / "artifact.json").read_text())
    config = json.loads((demo / "config.json").read_text()) | {"prompt_set": "assistant"}
    (tmp_path / "config.json").write_text(json.dumps(config))
    info = catalog.read_artifact_info(tmp_path, "run/x", "x", "run")
    assert info.prompt_set == "assistant"
    assert catalog.example_prompts(3, info.prompt_set) == load_prompts("assistant", "eval")[:3]
    assert catalog.example_prompts(3) != catalog.example_prompts(3, info.prompt_set)
    shipped = catalog.read_artifact_info(demo, "demo/s", "s", "demo")
    assert shipped.prompt_set == "default"


def test_a_clicked_points_replies_use_the_artifacts_prompt_set():
    from morl_core.prompts import load_prompts

    shared = serving.ModelPool(device="cpu", threads=1).get(
        catalog.DEMO_DIR / "soups-sentiment-brevity", "soups"
    )
    seen = fronts.inspect_point(shared, [0.5, 0.5], n_prompts=2, prompt_set="assistant")
    assert [g.prompt for g in seen.generations] == load_prompts("assistant", "eval")[:2]
    assert all(g.text.strip() for g in seen.generations)


def test_fronts_and_relations_decode_like_steer():
    """A clicked point's replies and the relation samples use the artifact's Steer decoding
    (its training length), not a fixed one: shortening it shortens their replies."""
    from morl_core.app import relations

    shared = serving.ModelPool(device="cpu", threads=1).get(
        catalog.DEMO_DIR / "soups-sentiment-brevity", "soups"
    )
    shared.decoding = {**shared.decoding, "max_new_tokens": 3}
    prompts = catalog.example_prompts(2)
    short, _ = shared.generate_cached(prompts, [0.5, 0.5], seed=0, **shared.decoding)
    seen = fronts.inspect_point(shared, [0.5, 0.5], n_prompts=2)
    assert [g.text for g in seen.generations] == short
    assert all(len(t.split()) <= 3 for t in short)
    samples = relations.relation_samples(shared, shared.objectives, n_prompts=2, samples=1)
    assert all(len(t.split()) <= 3 for t in samples.texts)


def test_a_demo_ships_its_base_front(tmp_path, monkeypatch):
    """The Fronts page's base-model row comes from a demo's base_front.json when it is under the
    current protocol (SmolLM2's takes minutes to evaluate), else it is evaluated."""
    from morl_core import evaluation
    from morl_core.app import fronts

    demo = tmp_path / "demo"
    shutil.copytree(catalog.DEMO_DIR / "soups-sentiment-brevity", demo)
    info = catalog.read_artifact_info(demo, "demo/x", "x", "demo")
    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "data"))
    shipped = {"points": [[0.5, 0.5]], "protocol_version": evaluation.default_protocol().version}
    (demo / fronts.BASE_FRONT).write_text(json.dumps(shipped))
    monkeypatch.setattr(evaluation, "evaluate_base", lambda *a, **k: {"evaluated": True})
    assert fronts.base_front(info) == shipped
    (demo / fronts.BASE_FRONT).write_text(json.dumps(shipped | {"protocol_version": "eval-0"}))
    assert fronts.base_front(info)["evaluated"]
    shipped_smollm2 = catalog.DEMO_DIR / catalog.DEMO_FIRST[0] / fronts.BASE_FRONT
    assert evaluation.is_current(json.loads(shipped_smollm2.read_text()))


def test_only_a_method_that_trains_one_policy_says_the_sliders_do_not_steer_it():
    note = catalog.one_policy_note("dynaopt")
    assert note and "one policy" in note and "do not change" in note
    assert all(catalog.one_policy_note(m) is None for m in ("soups", "mod", "morlhf", "ric"))


def test_a_ric_card_says_what_its_sliders_write_before_the_prompt(tmp_path):
    """RiC steers through its prompt: the Steer card quotes the request or tags the artifact's
    own style writes at the sliders' preference, so a reader sees what the model was asked."""
    objectives = ("formality", "readability")

    def info(method: str, tags: str | None) -> catalog.ArtifactInfo:
        run = tmp_path / f"{method}-{tags}"
        run.mkdir()
        artifact = {"method": method, "objectives": list(objectives)}
        (run / "artifact.json").write_text(
            json.dumps(artifact | ({} if tags is None else {"tags": tags}))
        )
        (run / "config.json").write_text(json.dumps({"method": method}))
        return catalog.read_artifact_info(run, "run/x", "x", "run")

    words = info("ric", "words")
    assert catalog.conditioning_note(words, "ric", [1.0, 0.0]).endswith(
        "“Make your reply very formal.”"
    )
    assert "very formal and a little simple" in catalog.conditioning_note(words, "ric", [0.8, 0.2])
    relaxed = info("ric", "relaxed")
    assert catalog.conditioning_note(relaxed, "ric", [1.0, 0.0]).endswith("“<readability=0.0>”")
    assert "nothing" in catalog.conditioning_note(relaxed, "ric", [0.5, 0.5])
    older = info("ric", None)  # artifacts before the relaxed tags wrote every objective
    assert "<formality=1.0><readability=0.0>" in catalog.conditioning_note(older, "ric", [1, 0])
    assert catalog.conditioning_note(info("soups", None), "soups", [1.0, 0.0]) is None
