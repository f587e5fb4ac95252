"""Benchmark: the published leaderboard, this server's `morl bench` records, and starting a
suite after a confirmation that says how many runs and how long."""

import streamlit as st

from morl_core.app import benchmark, figures, serving
from pages._widgets import PLOTLY_CONFIG, artifacts, export_figure, use_router

use_router()
st.title("Benchmark")
st.caption(
    "Suites x methods x seeds, compared on quality (HV, EU, IGD+), cost and stability. "
    "Hypervolume is compared within a suite only: a 2- and a 3-objective HV are "
    "different quantities."
)
records = benchmark.benchmark_records()
if records:
    board = benchmark.leaderboard(records)
    st.subheader(f"This server's records: {len(records)}, mean [interval] over seeds")
    st.dataframe(board.display_table(), hide_index=True)
    st.caption(benchmark.TABLE_LEGEND)
    names = list(board.figures)
    tabs = st.tabs([n.replace("_", " ").replace("-", " ").capitalize() for n in names])
    for tab, name in zip(tabs, names, strict=True):
        with tab:
            st.plotly_chart(board.figures[name], config=PLOTLY_CONFIG, key=f"bench:{name}")
            export_figure(board.figures[name], f"bench-{name}")
else:
    st.info(
        "**No benchmark records on this server yet.** " + benchmark.BENCH_HOWTO,
        icon=":material/info:",
    )

about, published = benchmark.published_leaderboard()
if published:
    st.subheader("Published leaderboard")
    st.caption(f"From `{about['source']}` ({about['date']}): {about['setting']}.")
    st.dataframe(published, hide_index=True, width="stretch")

st.subheader("Start a suite")
if benchmark.bench_available():
    suite = st.selectbox("Suite", benchmark.bench_suites(), key="bench-suite")
    try:
        plan = benchmark.plan_suite(suite)
    except ValueError as exc:
        st.warning(serving.user_message(exc))
        st.stop()
    if st.button("Start suite…", icon=":material/play_arrow:", key="bench-start"):
        st.session_state["bench-confirm"] = suite
    if st.session_state.get("bench-confirm") == suite:
        with st.container(border=True):
            st.warning(
                f"**{suite}** will start {plan.describe()}. Records go to the server's "
                "data folder; the runs show on the Train page."
            )
            yes, no = st.columns(2)
            if yes.button(f"Yes, start {plan.runs} runs", type="primary", key="bench-yes"):
                pid, _ = benchmark.start_suite(suite)
                st.session_state["bench-pid"] = pid
                st.session_state.pop("bench-confirm")
                st.rerun()
            if no.button("Cancel", key="bench-no"):
                st.session_state.pop("bench-confirm")
                st.rerun()
    if st.session_state.get("bench-pid"):
        st.success("The suite is running; records appear above as its runs finish.")
        if st.button("Stop the suite", icon=":material/stop:", key="bench-stop"):
            benchmark.stop_suite(st.session_state.pop("bench-pid"))
            st.info("Stopped: no new runs start; cancel queued ones on the Train page.")
else:
    st.button("Start suite", disabled=True, help="morl_core.bench is not installed")

st.subheader("Evaluated runs available now")
rows = benchmark.evaluated_runs_table(artifacts())
if rows:
    st.dataframe(rows, hide_index=True)
    fig = figures.leaderboard_figure(rows, "hypervolume", group="front")
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="runs-hv")
    st.caption(
        "Hypervolume against the fixed reference point (-0.1, ..., -0.1); one bar per method "
        "and objective set."
    )
else:
    st.caption("No run has an evaluated front yet (`morl front RUN` writes one).")
