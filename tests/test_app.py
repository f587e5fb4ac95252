"""Page tests with Streamlit's AppTest: every page renders, its main widgets are there, moving a
preference slider changes the generations, and bad form input shows an error naming the field.

The pages run against the shipped demo artifacts (``assets/demo``) on the embedded model, on
CPU; the job store lives in a temporary data directory.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from morl_core.app import catalog, serving  # noqa: E402

TIMEOUT = 300  # first runs load torch and the model (seconds on a 2-core CPU)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MORL_HEARTBEAT_S", "0.5")
    return tmp_path / "data"


def page(path: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if path:
        at.switch_page(path)
    return at.run()


def opened_by_link(params, path: str | None = None) -> AppTest:
    """The app (or page ``path``) opened from a link carrying the query ``params``."""
    link = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if path:
        link.switch_page(path)
    link.query_params.update(params)
    link.run()
    no_exceptions(link)
    return link


def no_exceptions(at: AppTest) -> None:
    assert not at.exception, [e.message for e in at.exception]


def generations(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown if 'class="gen-text"' in m.value]


def test_demo_artifacts_are_shipped():
    found = catalog.discover_artifacts(runs=False)
    assert [a.key for a in found][0] == "demo/soups-sentiment-brevity"
    soups = found[0]
    assert soups.steer_methods[:2] == ("soups", "mod")
    assert any(a.method == "morlhf" for a in found)
    assert any(len(a.objectives) == 3 for a in found)


def test_steer_renders_with_sliders_generations_and_front():
    at = page()
    no_exceptions(at)
    assert at.title[0].value == "Steer"
    assert [s.label for s in at.slider] == ["sentiment", "brevity"]
    assert len(at.checkbox) == 2  # one lock per slider
    assert len(generations(at)) == 2  # two samples of the landing method
    assert at.text_area(key="prompt").value
    charts = at.get("plotly_chart")
    assert charts, "the mini front is drawn"
    assert any("report" in b.label for b in at.get("download_button"))


def test_slider_move_changes_generations_and_stays_on_simplex():
    at = page()
    before = generations(at)
    at.slider[0].set_value(0.95).run()
    no_exceptions(at)
    assert [round(s.value, 2) for s in at.slider] == [0.95, 0.05]
    after = generations(at)
    assert after and after != before


def test_locked_slider_keeps_its_weight_with_three_objectives():
    at = page()
    labels = at.selectbox(key="artifact").options  # the formatted labels
    at.selectbox(key="artifact").select_index(
        labels.index("demo: soups-sentiment-brevity-readability")
    )
    at.run()
    no_exceptions(at)
    assert [s.label for s in at.slider] == ["sentiment", "brevity", "readability"]
    at.checkbox[2].check().run()  # lock readability at 0.33
    at.slider[0].set_value(0.6).run()
    no_exceptions(at)
    values = [s.value for s in at.slider]
    assert values[2] == pytest.approx(0.33)
    assert values[0] == pytest.approx(0.6)
    assert sum(values) == pytest.approx(1.0, abs=0.011)
    assert at.slider[2].disabled
    assert len(at.get("plotly_chart")) >= 2  # the front and the ternary simplex map


def test_compare_methods_side_by_side():
    at = page()
    at.toggle(key="compare").set_value(True).run()
    no_exceptions(at)
    shown = [h.value for h in at.subheader]
    assert {"soups", "mod", "morlhf"} <= set(shown)
    assert len(generations(at)) == 2 * len(shown)


def test_train_page_form_from_config():
    at = page("pages/train.py")
    no_exceptions(at)
    labels = {w.label for w in [*at.selectbox, *at.number_input, *at.multiselect]}
    assert {"method", "objectives", "steps", "seed", "model", "device"} <= labels
    assert at.selectbox(key="form:model").options == list(catalog.allowed_models())


def test_train_bad_input_shows_field_errors():
    at = page("pages/train.py")
    at.number_input(key="form:steps").set_value(0)
    at.multiselect(key="form:objectives").set_value(["sentiment"])
    at.button[0].click().run()
    no_exceptions(at)
    shown = " ".join(e.value for e in at.error)
    assert "**steps**" in shown and "at least two objectives" in shown
    assert "Traceback" not in shown


def test_train_form_shows_the_chosen_methods_declared_options(data_dir, tmp_path):
    from morl_core.options import METHOD_OPTIONS

    def options_shown(at: AppTest) -> dict:
        widgets = [*at.number_input, *at.selectbox, *at.text_input]
        prefix = "form:options."
        return {w.key[len(prefix) :]: w.value for w in widgets if (w.key or "").startswith(prefix)}

    at = page("pages/train.py")
    assert options_shown(at) == {}  # morlhf declares none
    at.selectbox(key="form:method").set_value("emorl").run()
    no_exceptions(at)
    assert options_shown(at) == {name: o.default for name, o in METHOD_OPTIONS["emorl"].items()}
    rounds = at.number_input(key="form:options.search_rounds")
    assert (rounds.min, rounds.max) == (1, 20)
    assert at.selectbox(key="form:options.mix_at").options == ["final", "pre_norm"]
    at.text_input(key="form:options.experts_from").set_value(str(tmp_path / "no-such-run"))
    at.button[0].click().run()
    no_exceptions(at)
    messages = [e.value for e in at.error]
    assert any("**options.experts_from**" in m and "no-such-run" in m for m in messages)
    assert not (data_dir / "runs").exists() or not list((data_dir / "runs").iterdir())


def cancel_submitted(at, data_dir):
    """The run the Train form just submitted, cancelled: (executor, run id, its config)."""
    from morl_core import jobs

    run_id = at.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    executor = jobs.get_executor(data_dir=data_dir)
    executor.cancel(run_id)
    return executor, run_id, json.loads((data_dir / "runs" / run_id / "config.json").read_text())


def test_train_form_options_reach_the_runs_config(data_dir):
    from morl_core.options import METHOD_OPTIONS

    at = page("pages/train.py")
    at.selectbox(key="form:method").set_value("emorl").run()
    at.number_input(key="form:options.search_rounds").set_value(3)
    at.selectbox(key="form:options.mix_at").set_value("pre_norm")
    at.button[0].click().run()
    no_exceptions(at)
    executor, run_id, config = cancel_submitted(at, data_dir)
    defaults = {name: o.default for name, o in METHOD_OPTIONS["emorl"].items()}
    assert config["method"] == "emorl" and defaults["mix_at"] == "final"
    assert config["options"] == {**defaults, "search_rounds": 3, "mix_at": "pre_norm"}
    wait_done(executor, run_id)


def test_train_form_brevity_target_names_the_objective_in_the_config(data_dir):
    at = page("pages/train.py")
    at.multiselect(key="form:objectives").set_value(["formality", "brevity"]).run()
    at.number_input(key="form:brevity").set_value(20)
    at.button[0].click().run()
    no_exceptions(at)
    executor, run_id, config = cancel_submitted(at, data_dir)
    assert config["objectives"] == ["formality", "brevity(target_words=20)"]
    wait_done(executor, run_id)
    at.multiselect(key="form:objectives").set_value(["formality", "readability"]).run()
    assert not [n for n in at.number_input if n.key == "form:brevity"]  # no brevity, no target


def test_train_submit_puts_run_in_url_and_cancel_ends_it(data_dir):
    at = page("pages/train.py")
    at.number_input(key="form:steps").set_value(2)
    at.button[0].click().run()
    no_exceptions(at)
    run_id = at.query_params.get("run")
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    assert run_id and (data_dir / "runs" / run_id / "config.json").exists()
    cancel = [b for b in at.button if b.label == "Cancel run"]
    if cancel:  # still queued or running
        cancel[0].click().run()
    from morl_core import jobs

    executor = jobs.get_executor(data_dir=data_dir)
    wait_done(executor, run_id)


def run_selector(at: AppTest):
    return next(s for s in at.selectbox if s.label == "Run")


def wait_done(executor, run_id: str) -> None:
    deadline = time.time() + 120
    while not executor.status(run_id).done and time.time() < deadline:
        time.sleep(0.5)
    assert executor.status(run_id).done


def test_runs_are_mine_by_default_and_can_be_resumed_logged_exported_and_deleted(data_dir):
    from morl_core import jobs

    at = page("pages/train.py")
    at.number_input(key="form:steps").set_value(2)
    at.button[0].click().run()
    run_id = at.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    executor = jobs.get_executor(data_dir=data_dir)
    executor.cancel(run_id)
    wait_done(executor, run_id)

    other = page("pages/train.py")  # another browser session on the same server
    no_exceptions(other)
    assert any("No runs of yours yet" in i.value for i in other.info)
    other.toggle(key="all-runs").set_value(True).run()
    assert run_selector(other).value == run_id  # everyone's runs, one click away

    at.run()
    no_exceptions(at)
    assert str(data_dir) not in " ".join(c.value for c in at.code), "log viewer shows no paths"
    labels = [b.label for b in at.get("download_button")]
    assert {"Metrics CSV", "Fronts CSV", "All (JSON)"} <= set(labels)
    at.button(key="resume").click().run()
    no_exceptions(at)
    assert str(executor.status(run_id).state) != "cancelled"
    executor.cancel(run_id)
    wait_done(executor, run_id)
    at.run()
    assert at.button(key="delete").disabled  # nothing deleted without typing the id
    at.text_input(key=f"delete:{run_id}").input(run_id).run()
    at.button(key="delete").click().run()
    no_exceptions(at)
    assert not (data_dir / "runs" / run_id).exists()
    assert run_id not in {s.run_id for s in executor.list()}


def test_someone_elses_live_run_needs_a_confirmation_to_cancel(data_dir, monkeypatch):
    from morl_core.app import runs

    at = page("pages/train.py")
    at.number_input(key="form:steps").set_value(50)
    at.button[0].click().run()
    run_id = at.query_params["run"]
    run_id = run_id[0] if isinstance(run_id, list) else run_id
    runs.record_owner(run_id, "someone-else")
    at.run()
    no_exceptions(at)
    from morl_core import jobs

    executor = jobs.get_executor(data_dir=data_dir)
    if not executor.status(run_id).done:
        assert not [b for b in at.button if b.label == "Cancel run"]
        assert at.button(key="cancel-other").disabled
    executor.cancel(run_id)
    wait_done(executor, run_id)


def broken_runs(data_dir: Path) -> dict[str, str]:
    """Two run folders the job store marks ``broken``: run id -> the reason it gives."""
    from morl_core.config import RunConfig
    from morl_core.jobs import RunStore

    store = RunStore(data_dir)
    config = RunConfig(method="morlhf", objectives=("sentiment", "brevity"), steps=2)
    unparsable, no_config = (store.create(config, "local").run_id for _ in range(2))
    (store.runs_dir / unparsable / "status.json").write_text("{not json")
    (store.runs_dir / no_config / "config.json").unlink()
    return {unparsable: "status.json does not parse", no_config: "config.json is missing"}


def test_train_page_shows_broken_runs_with_their_reason(data_dir):
    reasons = broken_runs(data_dir)
    at = page("pages/train.py")
    at.toggle(key="all-runs").set_value(True).run()
    no_exceptions(at)
    shown = " ".join(e.value for e in at.error)
    assert "Something went wrong" not in shown and "Traceback" not in shown
    assert str(data_dir) not in shown, "no server paths"
    selected = run_selector(at).value
    assert f"Run {selected} is broken" in shown and reasons[selected] in shown
    table = at.dataframe[-1].value.set_index("run")
    for run_id, reason in reasons.items():
        assert table.loc[run_id, "state"] == "broken" and reason in table.loc[run_id, "message"]
    other = next(r for r in reasons if r != selected)
    run_selector(at).set_value(other).run()  # a shared link to the other one works too
    no_exceptions(at)
    assert reasons[other] in " ".join(e.value for e in at.error)


def ended_run(data_dir: Path, state: str, message: str = "", fronts=(), **config) -> str:
    """A run the job store reads as ended, with two policies' metric rows and no worker."""
    from morl_core import runfolder
    from morl_core.config import RunConfig
    from morl_core.jobs import RunStore

    store = RunStore(data_dir)
    run_id = store.create(RunConfig(method="morlhf", steps=3, **config), "local").run_id
    rows = [
        {"step": s, "total_steps": 6, "samples": 16 * s, "stage": f"pref0{int(s > 3)}",
         "time": 100.0 + 2 * s, "attempt": 1, "reward/sentiment": 0.1 * s,
         "reward/brevity": 1 - 0.1 * s, "kl": 0.01 * s, "length": 10.0 + s % 2}
        for s in range(1, 5)
    ]  # fmt: skip
    runfolder.append_jsonl(store.run_dir(run_id) / runfolder.METRICS, rows)
    runfolder.append_jsonl(store.run_dir(run_id) / runfolder.FRONTS, fronts)
    changes = {"state": state, "step": 4, "total_steps": 6, "started": 100.0, "finished": 140.0}
    store.update(run_id, changes | {"message": message})
    return run_id


def test_live_view_of_an_early_cancel_one_line_per_policy_and_a_lone_snapshot(data_dir):
    from morl_core.config import default_steps

    snap = {"objectives": ["sentiment", "brevity"], "preferences": [[1, 0], [0, 1]],
            "points": [[0.9, 0.2], [0.3, 0.8]], "step": 2, "samples": 32}  # fmt: skip
    reason = "cancelled (worker process ended without a final state)"
    run_id = ended_run(data_dir, "cancelled", reason, fronts=[snap])
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/train.py")
    at.query_params["run"] = run_id  # a shared link
    at.run()
    no_exceptions(at)
    assert run_selector(at).options == [f"{run_id} · morlhf · cancelled 4/6"]
    assert at.get("progress")[0].proto.text.startswith("cancelled at step 4/6 after 40 s")
    assert "without a final state" not in " ".join(c.value for c in at.caption)
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    curves = next(s for s in specs if s["layout"]["annotations"][0]["text"] == "reward: sentiment")
    assert [t["name"] for t in curves["data"] if t.get("showlegend")] == ["pref00", "pref01"]
    assert any(t.get("opacity") == 0.25 for t in curves["data"])  # smoothed over the raw line
    hv = next(s for s in specs if "hypervolume" in str(s["layout"]["yaxis"].get("title")))
    assert hv["data"][0]["mode"] == "lines+markers"  # one point shows
    assert any("One front snapshot so far (step 2)" in c.value for c in at.caption)
    estimate = next(c.value for c in at.caption if c.value.startswith("Estimated time"))
    steps = 2 * default_steps("morlhf")  # the form's budget; two policies recorded per step
    assert f"from 1 past embedded run (device auto): 2.0 s/step × {steps} steps" in estimate
    at.slider(key="smoothing").set_value(0.0).run()
    specs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    assert not any(t.get("opacity") == 0.25 for s in specs for t in s["data"])
    at.number_input(key="form:steps").set_value(10)
    next(b for b in at.button if b.label == "Update estimate").click().run()
    assert any("2.0 s/step × 20 steps" in c.value for c in at.caption)  # nothing submitted
    assert len(list((data_dir / "runs").iterdir())) == 1


def test_runs_table_filters_tags_diff_and_overlay(data_dir):
    first = ended_run(data_dir, "succeeded")
    second = ended_run(data_dir, "failed", "disk full", seed=1)
    at = page("pages/train.py")
    at.toggle(key="all-runs").set_value(True).run()
    no_exceptions(at)
    table = lambda: at.dataframe[-1].value  # noqa: E731
    assert set(table()["run"]) == {first, second}
    at.multiselect(key="f-state").set_value(["failed"]).run()
    assert list(table()["run"]) == [second]
    at.multiselect(key="f-state").set_value([]).run()
    at.text_input(key="f-text").input("DISK").run()
    assert list(table()["run"]) == [second]
    at.text_input(key="f-text").input("").run()

    run_selector(at).set_value(first).run()
    at.text_input(key=f"tags:{first}").input("baseline, lr/high")
    save = next(b for b in at.button if b.label == "Save tags and note")
    save.click().run()
    assert any(e.value.startswith("tags: ['lr/high']") for e in at.error)
    at.text_input(key=f"tags:{first}").input("baseline, lr-high")
    at.text_area(key=f"note:{first}").input("the reference run")
    next(b for b in at.button if b.label == "Save tags and note").click().run()
    no_exceptions(at)
    saved = json.loads((data_dir / "runs" / first / "notes.json").read_text())
    assert saved == {"tags": ["baseline", "lr-high"], "note": "the reference run"}
    at.multiselect(key="f-tags").set_value(["baseline"]).run()
    assert list(table()["run"]) == [first] and table()["note"][0] == "the reference run"

    at.multiselect(key="compare").set_value([first, second]).run()
    no_exceptions(at)
    diff = at.dataframe[0].value
    assert diff.to_dict("records") == [{"field": "seed", "A": "0", "B": "1"}]
    at.radio[0].set_value("wall time (s)").run()
    overlay = json.loads(at.get("plotly_chart")[-1].proto.spec)
    names = {t["name"] for t in overlay["data"] if "name" in t}  # the raw lines have none
    assert names == {f"{r} · pref0{i}" for r in (first, second) for i in (0, 1)}
    assert overlay["layout"]["xaxis"]["title"]["text"] == "wall time (s)"


def test_advanced_field_errors_show_outside_the_closed_expander():
    at = page("pages/train.py")
    at.number_input(key="form:lr").set_value(-1.0)
    at.button[0].click().run()
    no_exceptions(at)
    assert any(e.value.startswith("Advanced settings · **lr**") for e in at.error)
    assert at.expander[0].proto.expanded


def test_fronts_page_overlay_inspect_and_knee():
    at = page("pages/fronts.py")
    no_exceptions(at)
    assert at.get("plotly_chart")
    assert at.dataframe, "indicator table"
    assert len(generations(at)) >= 2  # selected point and its neighbour
    at.radio[0].set_value("knee").run()
    no_exceptions(at)
    assert any("knee" in s.value for s in at.success)


def test_relations_page_heatmap_pairs_and_graph():
    at = page("pages/relations.py")
    no_exceptions(at)
    assert len(at.get("plotly_chart")) >= 2  # heatmap and dependency graph
    at.radio(key="rel-kind").set_value("pearson").run()
    no_exceptions(at)
    assert any("Pearson" in str(c.proto.spec) for c in at.get("plotly_chart"))
    charts = len(at.get("plotly_chart"))
    at.button(key="grad-go").click().run()  # gradient conflict on demand
    no_exceptions(at)
    assert len(at.get("plotly_chart")) == charts + 1


BENCH_RECORD = {
    "suite": "pair",
    "method": "soups",
    "seed": 0,
    "status": "succeeded",
    "objectives": ["sentiment", "brevity"],
    "front": [[0.9, 0.4], [0.5, 0.9]],
    "hypervolume": 0.8,
    "expected_utility": 0.7,
    "training_samples": 960,
    "wall_seconds": 100.0,
}


def test_benchmark_empty_state_then_records(tmp_path, monkeypatch):
    monkeypatch.setenv("MORL_BENCH_OUT", str(tmp_path / "bench"))
    at = page("pages/benchmark.py")
    no_exceptions(at)
    assert any("No benchmark records on this server yet" in i.value for i in at.info)
    records = tmp_path / "bench" / "pair" / "records"
    records.mkdir(parents=True)
    # soups is best; mod's paired differences (-0.01, +0.03, +0.02) straddle 0; ric ran one
    # seed (cannot tell); soups recorded KL per preference (the KL frontier)
    soups = [("soups", 0, 0.8), ("soups", 1, 0.84), ("soups", 2, 0.82)]
    mod = [("mod", 0, 0.81), ("mod", 1, 0.81), ("mod", 2, 0.8)]
    kl = {"preferences": [[1.0, 0.0], [0.0, 1.0]], "front_kl_per_token": [0.02, 0.03]}
    for method, seed, hv in [*soups, *mod, ("ric", 0, 0.8)]:
        record = BENCH_RECORD | {"method": method, "seed": seed, "hypervolume": hv}
        record |= kl if method == "soups" else {}
        (records / f"{method}-{seed}.json").write_text(json.dumps(record))
    at = page("pages/benchmark.py")
    no_exceptions(at)
    assert not any("No benchmark records on this server" in i.value for i in at.info)
    table = at.dataframe[0].value.set_index("method")
    assert table.loc["soups", "hypervolume"] == "0.82 [0.77, 0.87] best"  # t(2) = 4.3
    assert table.loc["mod", "hypervolume"].endswith(" ≈ best") and "nan" not in str(table)
    assert table.loc["ric", "hypervolume"] == "0.8 [n/a] ≈? best"  # one seed: cannot tell
    assert any("≈? best: cannot tell" in c.value for c in at.caption)
    assert any("≈ best" in c.value and "n/a with one seed" in c.value for c in at.caption)
    assert "Kl frontier pair" in [t.label for t in at.tabs]
    assert len(at.get("plotly_chart")) >= 3


def test_learn_page_lists_every_registered_method_with_source():
    from morl_core.methods import METHODS

    at = page("pages/learn.py")
    no_exceptions(at)
    shown = {row for row in at.dataframe[0].value["method"]}
    assert shown == set(METHODS)
    assert any("def load" in c.value for c in at.code)
    assert at.get("plotly_chart")  # the guided tour


# --- defects found in a real browser, each reproduced here first -----------------------------


def two_morlhf_demos(tmp_path, monkeypatch):
    """The demo folder plus a second morlhf artifact of the same objectives (as after anyone
    trains a morlhf run)."""
    demo = tmp_path / "demo"
    demo.mkdir()
    for folder in catalog.DEMO_DIR.iterdir():
        (demo / folder.name).symlink_to(folder)
    (demo / "morlhf-copy").symlink_to(catalog.DEMO_DIR / "morlhf-sentiment-brevity")
    monkeypatch.setattr(catalog, "DEMO_DIR", demo)


def test_compare_with_two_artifacts_of_one_method_does_not_crash(tmp_path, monkeypatch):
    two_morlhf_demos(tmp_path, monkeypatch)
    at = page()
    at.toggle(key="compare").set_value(True).run()
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    methods = at.multiselect(key="methods")
    morlhf = [o for o in methods.options if o.startswith("morlhf")]
    assert len(morlhf) == 2
    methods.set_value([methods.options[0], *morlhf]).run()  # hmm: values are the tuples
    no_exceptions(at)
    assert not at.error, [e.value for e in at.error]
    assert [h.value for h in at.subheader].count("morlhf") == 2
    assert any("report" in b.label for b in at.get("download_button"))


def test_steer_offers_only_methods_that_can_serve():
    at = page()
    no_exceptions(at)
    offered = at.get("button_group")[0].proto.options
    labels = [o.content for o in offered]
    assert "metapolicy" not in labels and "soups" in labels and "mod" in labels
    assert "metapolicy" not in catalog.steer_methods_for("soups", {"experts": ["a", "b"]})
    assert "metapolicy" in catalog.steer_methods_for("metapolicy", {"experts": ["a", "b"]})


def test_error_messages_never_show_server_paths():
    message = serving.user_message(
        ValueError("no trained meta-policy at /srv/x/y/meta.safetensors")
    )
    assert "/srv" not in message and "meta.safetensors" in message


def test_steer_flags_degenerate_text_on_its_card(monkeypatch):
    garbled = "......i is.... Lupism."
    monkeypatch.setattr(
        serving.SharedSteerable,
        "generate_cached",
        lambda self, prompts, weights, **gen: ([garbled] * len(prompts), False),
    )
    from morl_core.app import lattice

    monkeypatch.setattr(lattice, "precomputed", lambda *args, **kwargs: None)  # live replies
    at = page()
    no_exceptions(at)
    assert garbled in " ".join(generations(at))
    flags = [w.value for w in at.warning if "Check this text" in w.value]
    # two cards, each flagged for punctuation debris and for a made-up word ("Lupism")
    assert sorted(f.split(":")[1].strip() for f in flags) == ["garbled"] * 2 + ["made-up words"] * 2
    assert any("held-out prompt" in c.value for c in at.caption), "why the diamond is off"


def test_a_page_error_is_a_plain_message_without_paths(monkeypatch):
    def broken(n: int = 8):
        raise RuntimeError("cannot read /srv/secret/morl/assets/prompts.json")

    monkeypatch.setattr(catalog, "example_prompts", broken)
    at = page()
    no_exceptions(at)
    shown = " ".join(e.value for e in at.error)
    assert "Something went wrong" in shown and "/srv" not in shown and "Traceback" not in shown


def test_server_config_hides_error_details():
    import tomllib

    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    # errors inside fragments never reach app.py's handler: Streamlit itself must redact them
    assert config["client"]["showErrorDetails"] == "none"


def test_steer_view_is_in_the_url_and_a_link_opens_it():
    at = page()
    at.slider[0].set_value(0.8).run()
    no_exceptions(at)
    params = {k: at.query_params[k] for k in at.query_params}
    flat = {k: v[0] if isinstance(v, list) else v for k, v in params.items()}
    assert flat["artifact"] == "demo/soups-sentiment-brevity" and flat["method"] == "soups"
    assert flat["w"] == "0.80,0.20" and flat["prompt"]
    link = opened_by_link(
        dict(
            artifact="demo/morlhf-sentiment-brevity",
            method="morlhf",
            w="0.30,0.70",
            prompt="Tell me about the sea.",
        )
    )
    assert link.selectbox(key="artifact").value.key == "demo/morlhf-sentiment-brevity"
    assert [s.value for s in link.slider] == [0.3, 0.7]
    assert link.text_area(key="prompt").value == "Tell me about the sea."


def test_which_reply_is_better_moves_the_sliders_to_the_estimate():
    at = page()
    at.toggle(key="ask").set_value(True).run()
    no_exceptions(at)
    assert at.button(key="choose-A") and at.button(key="choose-B")
    for _ in range(10):
        at.button(key="choose-A").click().run()
    no_exceptions(at)
    assert any("inferred weights" in s.value for s in at.success)
    values = [s.value for s in at.slider]
    assert sum(values) == pytest.approx(1.0, abs=0.011) and values != [0.5, 0.5]


def chart_spec(at: AppTest, index: int = 0) -> dict:
    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_fronts_read_at_a_glance_and_keep_the_view_in_the_url(tmp_path, monkeypatch):
    two_morlhf_demos(tmp_path, monkeypatch)
    at = page("pages/fronts.py")
    no_exceptions(at)
    picked = at.multiselect(key=at.multiselect[0].key)
    assert len(picked.value) == 1  # this set's first front, whatever others evaluated
    morlhf = [o for o in picked.options if o.startswith("morlhf")]
    picked.set_value([picked.options[0], *morlhf]).run()
    no_exceptions(at)
    spec = chart_spec(at)
    layout, data = spec["layout"], spec["data"]
    assert layout["height"] >= 450
    assert layout["legend"]["orientation"] == "h" and layout["legend"]["y"] < 0  # below
    assert layout["xaxis"]["range"][0] > -0.1, "zoomed to the data, not from the reference point"
    assert any("reference point" in a["text"] for a in layout["annotations"])
    fronts = [t for t in data if t.get("showlegend", True) and "customdata" in t]
    assert all("HV" in t["name"] and "EU" in t["name"] for t in fronts)
    assert {t["line"]["dash"] for t in fronts} == {"dot"}  # all demos: one dash per source
    assert len({t["marker"]["symbol"] for t in fronts}) == len(fronts)  # coinciding stay visible
    rows = at.dataframe[0].value
    # HV with its bootstrap interval (a front.json from before the protocol is marked instead)
    assert "[" in rows["HV [95% CI]"].iloc[0] or rows["protocol"].iloc[0] == "old protocol"
    assert "KL/token" in rows
    at.selectbox(key=at.selectbox[-1].key).select_index(3).run()
    no_exceptions(at)
    assert at.query_params["point"] in ("3", ["3"])
    link = opened_by_link({k: at.query_params[k] for k in at.query_params}, "pages/fronts.py")
    assert link.selectbox(key="inspect:3").value == 3  # the shared point is selected
    assert len(link.multiselect[0].value) == 3


def test_benchmark_shows_the_published_leaderboard_and_confirms_before_running(monkeypatch):
    from morl_core.app import benchmark

    started = []
    monkeypatch.setattr(
        benchmark, "start_suite", lambda suite, out=None: started.append(suite) or (999_999, None)
    )
    monkeypatch.delenv("MORL_BENCH_OUT", raising=False)
    at = page("pages/benchmark.py")
    no_exceptions(at)
    published = at.dataframe[0].value  # a fresh clone: no records, the findings still show
    assert (
        "emorl" in published["method"].tolist()
        and "Conflicting pair" in published["suite"].tolist()
    )
    at.button(key="bench-start").click().run()
    no_exceptions(at)
    assert started == [], "one click starts nothing"
    plan = benchmark.plan_suite(at.selectbox(key="bench-suite").value)
    assert any(f"{plan.runs} runs" in w.value and "min" in w.value for w in at.warning)
    at.button(key="bench-yes").click().run()
    no_exceptions(at)
    assert started == [plan.suite]
    assert at.button(key="bench-stop")
    assert benchmark.bench_out().is_relative_to(catalog.data_dir()), "never into the repository"


def test_relations_says_whose_samples_it_measures():
    at = page("pages/relations.py")
    no_exceptions(at)
    note = " ".join(i.value for i in at.info)
    assert "measured on samples from **base model**" in note and "trained" in note
    assert chart_spec(at)["layout"]["height"] >= 420


def test_phone_width_styles_are_installed():
    at = page()  # app.py installs them for every page
    no_exceptions(at)
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert ".katex-display" in styles and "overflow-x: auto" in styles
    assert "max-width: 640px" in styles and "modebar" in styles


def test_a_page_url_first_runs_through_the_router():
    """A fresh server runs a page URL in Streamlit's legacy ``pages/`` mode (AppTest starts
    every session that way): the page must send itself through app.py's ``st.navigation``."""
    at = page("pages/learn.py")
    no_exceptions(at)
    assert at.title[0].value == "Learn"
    styles = " ".join(h.proto.body for h in at.get("html"))
    assert "max-width: 640px" in styles, "app.py ran: its styles are on the page"
    alone = AppTest.from_file(str(ROOT / "pages" / "learn.py"), default_timeout=TIMEOUT).run()
    no_exceptions(alone)  # a page file run as the main script still works
    assert alone.title[0].value == "Learn"


def smollm2_demo(tmp_path, monkeypatch) -> Path:
    """A demo folder holding the shipped embedded demos plus one labelled as trained on SmolLM2
    (its files are the embedded soup's: only discovery and the front are read, nothing loads)."""
    import shutil

    demos = tmp_path / "demo"
    big = demos / catalog.DEMO_FIRST[0]  # the SmolLM2 landing demo
    shutil.copytree(catalog.DEMO_DIR, demos, ignore=shutil.ignore_patterns("smollm2-*"))
    shutil.copytree(catalog.DEMO_DIR / "soups-sentiment-brevity", big)
    config = json.loads((big / "config.json").read_text()) | {"model": "smollm2-135m"}
    (big / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(catalog, "DEMO_DIR", demos)
    monkeypatch.delenv("MORL_UI_DEMO_MODELS")  # the suite's pin to the embedded demos
    return big


def test_the_smollm2_demo_lands_first_when_its_model_is_installed(tmp_path, monkeypatch):
    smollm2_demo(tmp_path, monkeypatch)
    monkeypatch.setattr(catalog, "wheel_file", lambda spec: tmp_path / "model.gguf")
    found = catalog.discover_artifacts(runs=False)
    assert found[0].key == f"demo/{catalog.DEMO_FIRST[0]}"
    assert (found[0].model, found[0].embedded) == ("smollm2-135m", False)
    assert found[1].key == "demo/soups-sentiment-brevity" and found[1].embedded
    monkeypatch.setattr(catalog, "wheel_file", lambda spec: None)  # the wheel is not installed
    found = catalog.discover_artifacts(runs=False)
    assert found[0].key == "demo/soups-sentiment-brevity"
    assert found[-1].key == f"demo/{catalog.DEMO_FIRST[0]}"
    monkeypatch.setenv("MORL_UI_DEMO_MODELS", "embedded")  # a classroom server's choice
    found = catalog.discover_artifacts(runs=False)
    assert found and all(a.embedded for a in found)
    assert found[0].key == "demo/soups-sentiment-brevity"


def test_classroom_mode_is_one_click_from_the_smollm2_demos(tmp_path, monkeypatch):
    """Fronts opens on the SmolLM2 demo; the sidebar toggle leaves only embedded artifacts."""
    import streamlit as st

    smollm2_demo(tmp_path, monkeypatch)
    monkeypatch.setattr(catalog, "wheel_file", lambda spec: tmp_path / "model.gguf")
    st.cache_data.clear()
    at = page("pages/fronts.py")
    no_exceptions(at)
    picked = at.multiselect[0].value
    assert [a.key for a, _ in picked] == [f"demo/{catalog.DEMO_FIRST[0]}"]
    assert any("smollm2" in option for option in at.multiselect[0].options)
    toggle = at.sidebar.toggle(key="classroom-toggle")
    assert toggle.value is False
    toggle.set_value(True).run()
    no_exceptions(at)
    picked = at.multiselect[0].value
    assert [a.key for a, _ in picked] == ["demo/soups-sentiment-brevity"]
    assert not any("smollm2" in option for option in at.multiselect[0].options)


def test_a_one_policy_demo_says_on_its_card_that_the_sliders_do_not_steer_it(monkeypatch):
    """DynaOpt's SmolLM2 demo, opened by a link at a lattice point (its replies precomputed, so
    no model loads): the card says the sliders do not change its replies; a soup's does not."""
    monkeypatch.setenv("MORL_UI_DEMO_MODELS", "embedded,smollm2-135m")
    link = opened_by_link(
        dict(
            artifact="demo/smollm2-dynaopt-formality-readability",
            method="dynaopt",
            w="1.00,0.00",
            prompt="How many hours of sleep does an adult need?",
        )
    )
    assert link.selectbox(key="artifact").value.key == "demo/smollm2-dynaopt-formality-readability"
    assert any("trains one policy" in c.value for c in link.caption)
    assert generations(link)
    monkeypatch.setenv("MORL_UI_DEMO_MODELS", "embedded")
    soup = page()
    assert not any("trains one policy" in c.value for c in soup.caption)
