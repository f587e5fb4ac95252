"""Benchmark: the leaderboard from `morl bench` records, and a button to start a suite."""

import streamlit as st

from morl_core.app import figures, studies
from pages._widgets import PLOTLY_CONFIG, artifacts, export_figure, use_router

use_router()
st.title("Benchmark")
st.caption("Suites x methods x seeds, compared on quality (HV, EU, IGD+), cost and stability.")
records = studies.benchmark_records()
if records:
    board = studies.leaderboard(records)
    st.subheader(f"Leaderboard: {len(records)} records, mean ± std over seeds")
    st.dataframe(board.display_table(), hide_index=True)
    tabs = st.tabs(list(board.figures))
    for tab, (name, fig) in zip(tabs, board.figures.items(), strict=True):
        with tab:
            st.plotly_chart(fig, config=PLOTLY_CONFIG, key=f"bench:{name}")
            export_figure(fig, f"bench-{name}")
else:
    st.info("**No benchmark records yet.** " + studies.BENCH_HOWTO, icon=":material/info:")

st.subheader("Start a suite")
if studies.bench_available():
    suite = st.selectbox("Suite", studies.bench_suites(), key="bench-suite")
    if st.button("Start suite", icon=":material/play_arrow:", key="bench-start"):
        pid, log = studies.start_suite(suite)
        st.success(f"`morl bench {suite}` started (process {pid}); its runs show on the Train "
                   f"page, its log is `{log}`. Records appear here as runs finish.")  # fmt: skip
else:
    st.button("Start suite", disabled=True, help="morl_core.bench is not installed")

st.subheader("Evaluated runs available now")
rows = studies.evaluated_runs_table(artifacts())
if rows:
    st.dataframe(rows, hide_index=True)
    fig = figures.leaderboard_figure(rows, "hypervolume")
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="runs-hv")
    st.caption(
        "Hypervolume against the fixed reference point (-0.1, ..., -0.1); one bar per method."
    )
else:
    st.caption("No run has an evaluated front yet (`morl front RUN` writes one).")
