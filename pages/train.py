"""Train: start a run in a worker process, watch it live, cancel, resume or delete it; filter,
tag, diff and overlay runs. Your own runs by default (everyone's one click away); the run id is in
the URL."""

import uuid

import streamlit as st

from morl_core.app import run_table, runs, serving
from morl_core.config import ConfigError
from morl_core.jobs import StoreError
from morl_core.objectives.lexical import DEFAULT_TARGET_WORDS, MAX_TARGET_WORDS
from morl_core.objectives.registry import objective_text
from pages._widgets import PLOTLY_CONFIG, executor, export_figure, form_widget, use_router

use_router()
st.title("Train")
st.caption(
    "Runs train in a separate worker process (the job system), so this page and every other "
    "session stay responsive. Leave and come back: the run id in the URL brings you here."
)
jobs = executor()
me = st.session_state.setdefault("owner", uuid.uuid4().hex[:12])
errors = st.session_state.get("train-errors", {})
form_col, live_col = st.columns([2, 3], gap="large")
ERROR = ":material/error:"


@st.cache_data(ttl=60, show_spinner=False)
def past_timings(_jobs, data_dir: str, model: str, device: str) -> list[run_table.StepTiming]:
    return run_table.past_timings(_jobs, model, device)


def history_of(run_id: str) -> runs.RunHistory:
    """The run's history, read incrementally and kept for this session."""
    if (key := f"history:{run_id}") not in st.session_state:
        st.session_state[key] = runs.RunHistory(jobs.store.run_dir(run_id))
    return st.session_state[key].update()


def runs_table(statuses) -> None:
    """The runs table, filtered and sorted; tags and notes come from each run folder."""
    st.subheader("Runs")
    notes = {s.run_id: run_table.read_notes(jobs.store.run_dir(s.run_id)) for s in statuses}
    rows = run_table.table_rows(statuses, notes)
    *cols, sort_col = st.columns(5)
    picked = {
        name: col.multiselect(name, choices, key=f"f-{name}")
        for col, (name, choices) in zip(cols, run_table.filter_choices(rows).items(), strict=True)
    }
    sort = sort_col.selectbox("sort by", run_table.SORTS, key="f-sort")
    text = st.text_input("Search runs", key="f-text", placeholder="id, method, tag, note, message")
    shown = run_table.filter_rows(rows, picked, text, sort, sort in ("created", "progress"))
    st.dataframe(shown, hide_index=True)
    st.caption(f"{len(shown)} of {len(rows)} runs; a column header sorts by it too.")


def unreadable(run_id: str, reason: str) -> None:
    """Say in one line why a run cannot be shown (the store marks such a folder broken)."""
    st.error(f"Run {run_id} is broken: {serving.user_message(reason)}", icon=ERROR)
    st.caption("The job system skips it and keeps running the others; `morl runs` lists it too.")


with form_col:  # method and objectives outside the form: the widgets they decide follow at once
    values = {f.name: form_widget(f, errors) for f in runs.form_fields(runs.MAIN_FIELDS[:2])}
    if st.session_state.get("form:steps-of") != values["method"]:  # a new method: its budget
        st.session_state.pop("form:steps", None)
        st.session_state["form:steps-of"] = values["method"]
with form_col, st.form("train-form"):
    if "brevity" in values["objectives"]:  # the config names brevity(target_words=N), N != 8
        words = st.number_input(
            "Brevity target (words)",
            1,
            MAX_TARGET_WORDS,
            DEFAULT_TARGET_WORDS,
            key="form:brevity",
            help="brevity scores 1 up to this many words, then target / words",
        )
        values["objectives"] = [
            objective_text(o, target_words=words) if o == "brevity" else o
            for o in values["objectives"]
        ]
    main = runs.form_fields(runs.MAIN_FIELDS[2:], values["method"])
    main += runs.option_fields(values["method"])
    values |= {f.name: form_widget(f, errors) for f in main}
    advanced_errors = {k: v for k, v in errors.items() if k.split(".")[0] in runs.ADVANCED_FIELDS}
    with st.expander("Advanced settings", expanded=bool(advanced_errors)):
        values |= {f.name: form_widget(f, errors) for f in runs.form_fields(runs.ADVANCED_FIELDS)}
    for name, message in advanced_errors.items():  # visible even with the expander closed
        st.error(f"Advanced settings · **{name}**: {message}", icon=ERROR)
    try:
        timings = past_timings(jobs, str(jobs.store.data_dir), values["model"], values["device"])
        st.caption("Estimated time: " + run_table.estimate_cost(values, timings)[1])
    except (TypeError, ValueError, KeyError):  # a field the form will name on Start
        st.caption("Estimated time: fix the fields first.")
    start, estimate = st.columns([3, 2])
    if start.form_submit_button("Start training", type="primary", icon=":material/play_arrow:"):
        try:
            run_id = runs.submit_run(values, jobs)
        except ConfigError as exc:
            st.session_state["train-errors"] = exc.errors
        else:
            st.session_state["train-errors"] = {}
            runs.record_owner(run_id, me)
            st.query_params["run"] = run_id
        st.rerun()
    estimate.form_submit_button("Update estimate", help="the estimate for the values above")
if errors:
    form_col.error("Fix these fields: " + "; ".join(f"**{k}**: {v}" for k, v in errors.items()))

with live_col:
    mine_only = "by default only the runs this browser session started"
    everyone = st.toggle("Show everyone's runs", key="all-runs", help=mine_only)
    current = st.query_params.get("run") or st.session_state.get("train-run")
    statuses = runs.visible_runs(jobs.list(), me, everyone, current)
    if not statuses:
        also = "" if everyone else ", or show everyone's runs"
        st.info(f"No runs of yours yet. Fill in the form and press **Start training**{also}.")
        st.stop()
    by_id = {s.run_id: s for s in statuses}
    ids = list(by_id)
    index = ids.index(current) if current in ids else 0
    run_id = st.selectbox("Run", ids, index, format_func=lambda i: runs.run_label(by_id[i]))
    st.query_params["run"] = st.session_state["train-run"] = run_id
    selected = by_id[run_id]
    if str(selected.state) == "broken":
        unreadable(run_id, selected.message)
        runs_table(statuses)
        st.stop()
    owner, started_live = runs.owner_of(run_id), not selected.done
    x_col, smooth_col = st.columns(2)
    x_axis = run_table.X_AXES[x_col.radio("x-axis", list(run_table.X_AXES), horizontal=True)]
    ema = "exponential moving average of the curves, as in TensorBoard (0: raw)"
    smoothing = smooth_col.slider("Smoothing", 0.0, 0.99, 0.6, 0.01, key="smoothing", help=ema)

    @st.fragment(run_every=2.0 if started_live else None)
    def live_view() -> None:
        try:
            status = jobs.status(run_id)
        except StoreError as exc:  # the folder went bad since the list was read
            return unreadable(run_id, str(exc))
        history = history_of(run_id)
        st.progress(*runs.progress_eta(status))
        if message := runs.shown_message(status):
            st.caption(message)
        cancel = {"on_click": jobs.cancel, "args": (run_id,), "icon": ":material/stop:"}
        if not status.done and owner == me:
            st.button("Cancel run", **cancel)
        elif not status.done:  # someone else's run: only after a confirmation
            sure = st.checkbox("I know this run was started by someone else", key=f"sure:{run_id}")
            st.button("Cancel someone else's run", disabled=not sure, key="cancel-other", **cancel)
        if history.metrics:
            fig = run_table.training_figure(history.metrics, status.objectives, x_axis, smoothing)
            st.plotly_chart(fig, config=PLOTLY_CONFIG, key="curves")
        if history.fronts:
            n = len(history.fronts)
            replay = "Replay front snapshots"
            index = st.slider(replay, 1, n, n, key=f"replay:{run_id}:{n}") if n > 1 else 1
            front, curve, lone = history.snapshot_figures(index - 1, run_id, status.method)
            st.plotly_chart(front, config=PLOTLY_CONFIG, key="snapshot")
            export_figure(front, f"front-{run_id}-step{history.fronts[index - 1]['step']}")
            st.plotly_chart(curve, config=PLOTLY_CONFIG, key="hv")
            if lone:
                st.caption(lone)
        elif not status.done:
            st.caption("The front appears at the first evaluation (see eval_every).")
        if started_live and status.state != selected.state:  # redraw the selector and the rest
            if status.done:
                st.toast(f"Run {run_id} ended: {status.state}", icon=":material/notifications:")
            st.rerun()

    live_view()
    try:
        status = jobs.status(run_id)
    except StoreError:  # live_view said why
        runs_table(statuses)
        st.stop()
    folder = jobs.store.run_dir(run_id)
    resume_col, *download_cols = st.columns(4)
    if status.done and str(status.state) != "succeeded":
        resume = {"on_click": jobs.resume, "args": (run_id,), "icon": ":material/replay:"}
        resume_col.button("Resume", key="resume", **resume)
    downloads = history_of(run_id).downloads(run_id)  # metrics CSV, fronts CSV, everything JSON
    for col, (label, *export) in zip(download_cols, downloads, strict=True):
        col.download_button(label, *export, key=label)
    with st.expander("Tags and note"), st.form(f"notes:{run_id}"):
        saved, limit = run_table.read_notes(folder), run_table.MAX_NOTE_CHARS
        listed = ", ".join(saved["tags"])
        tags = st.text_input("Tags", listed, key=f"tags:{run_id}", help="comma-separated")
        note = st.text_area("Note", saved["note"], max_chars=limit, key=f"note:{run_id}")
        if st.form_submit_button("Save tags and note"):
            try:
                run_table.write_notes(folder, tags, note)
                st.success("Saved.")
            except (ValueError, OSError) as exc:
                st.error(serving.user_message(exc))
    with st.expander("Worker log (the end)"):
        st.code(runs.log_tail(jobs, run_id) or "(empty)", language=None)
    if status.done:
        with st.expander("Delete this run"):
            confirm = st.text_input("Type the run id to confirm", key=f"delete:{run_id}")
            if st.button("Delete run", key="delete", disabled=confirm != run_id, type="primary"):
                try:
                    runs.delete_run(jobs, run_id)
                    st.query_params.pop("run", None)
                    st.session_state.pop("train-run", None)
                    st.rerun()
                except (ValueError, OSError) as exc:
                    st.error(serving.user_message(exc))

st.subheader("Compare runs")
chosen = st.multiselect("Runs", ids, default=[run_id], key="compare", max_selections=8)
if len(chosen) == 2:
    configs = [run_table.read_config(jobs.store.run_dir(i)) for i in chosen]
    if diff := run_table.config_diff(*configs):
        st.dataframe(diff, hide_index=True)
    else:
        st.caption("The two configs are the same.")
metrics = {i: history_of(i).metrics for i in chosen}
keys = run_table.metric_keys([r for rows in metrics.values() for r in rows])
if keys:
    key = st.selectbox("Metric", keys, key="overlay-metric")
    overlay = run_table.overlay_figure(metrics, key, x_axis, smoothing)
    st.plotly_chart(overlay, config=PLOTLY_CONFIG, key="overlay")
runs_table(statuses)
