"""Train: start a run in a worker process, watch it live, cancel it. The run id is in the URL."""

import streamlit as st

from morl_core.app import figures, fronts, runs
from morl_core.config import ConfigError
from pages._widgets import (
    PLOTLY_CONFIG,
    executor,
    export_figure,
    field_errors,
    form_widget,
    use_router,
)

use_router()
st.title("Train")
st.caption(
    "Runs train in a separate worker process (the job system), so this page and every other "
    "session stay responsive. Leave and come back: the run id in the URL brings you here."
)
jobs = executor()
errors = st.session_state.get("train-errors", {})
form_col, live_col = st.columns([2, 3], gap="large")

with form_col, st.form("train-form"):
    values = {f.name: form_widget(f, errors) for f in runs.form_fields()}
    with st.expander("Advanced settings"):
        values |= {f.name: form_widget(f, errors) for f in runs.form_fields(runs.ADVANCED_FIELDS)}
        values["options"] = st.text_input("options (JSON)", "{}", help="method-specific options")
        field_errors(errors, "options")
    if st.form_submit_button("Start training", type="primary", icon=":material/play_arrow:"):
        try:
            run_id = runs.submit_run(values, jobs)
        except ConfigError as exc:
            st.session_state["train-errors"] = exc.errors
        else:
            st.session_state["train-errors"] = {}
            st.query_params["run"] = run_id
        st.rerun()
if errors:
    form_col.error("Fix these fields: " + "; ".join(f"**{k}**: {v}" for k, v in errors.items()))

statuses = jobs.list()
with live_col:
    if not statuses:
        st.info("No runs yet. Fill in the form and press **Start training**.")
        st.stop()
    ids = [s.run_id for s in statuses]
    current = st.query_params.get("run") or st.session_state.get("train-run")
    run_id = st.selectbox(
        "Run", ids, index=ids.index(current) if current in ids else 0,
        format_func=lambda i: next(f"{i} · {s.method} · {s.state}" for s in statuses if s.run_id == i),
    )  # fmt: skip
    st.query_params["run"] = st.session_state["train-run"] = run_id
    started_live = not jobs.status(run_id).done

    @st.fragment(run_every=2.0 if started_live else None)
    def live_view() -> None:
        status = jobs.status(run_id)
        history = st.session_state.setdefault(
            f"history:{run_id}", runs.RunHistory(runs.run_folder(jobs, run_id))
        )
        history.update()
        fraction, line = runs.progress_eta(status)
        st.progress(fraction, text=line)
        if status.message:
            st.caption(status.message)
        if not status.done:
            st.button("Cancel run", on_click=jobs.cancel, args=(run_id,), icon=":material/stop:")
        if history.metrics:
            curves = figures.training_curves_figure(history.metrics, status.objectives)
            st.plotly_chart(curves, config=PLOTLY_CONFIG, key="curves")
        if history.fronts:
            n = len(history.fronts)
            index = (
                st.slider("Replay front snapshots", 1, n, n, key=f"replay:{run_id}:{n}")
                if n > 1
                else 1
            )
            snap = history.fronts[index - 1]
            ref = fronts.reference_point(len(snap["objectives"]))
            title = f"front at step {snap['step']}" + (" (partial)" if snap["partial"] else "")
            front_fig = figures.snapshot_figure(snap | {"method": status.method}, ref, title)
            st.plotly_chart(front_fig, config=PLOTLY_CONFIG, key="snapshot")
            export_figure(front_fig, f"front-{run_id}-step{snap['step']}")
            samples, hv = history.hypervolume_curve()
            from morl_core.plots import hypervolume_curve_figure

            hv_fig = hypervolume_curve_figure({run_id: (samples, hv)}, methods={run_id: status.method},
                                              ref=ref, x_title="training samples")  # fmt: skip
            st.plotly_chart(hv_fig.update_layout(height=300), config=PLOTLY_CONFIG, key="hv")
        elif not status.done:
            st.caption("The front appears at the first evaluation (see eval_every).")
        if status.done and started_live:
            st.rerun()  # the run ended: redraw the page once, without polling

    live_view()
    with st.expander("All runs"):
        st.dataframe(runs.runs_table(statuses), hide_index=True)
