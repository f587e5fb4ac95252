"""Fronts: overlay the fronts of several runs and methods, click a point to read its policy."""

import streamlit as st

from morl_core.app import fronts, serving
from morl_core.app.report import generation_html
from pages._widgets import (
    PLOTLY_CONFIG,
    artifact_key,
    artifacts,
    export_figure,
    model,
    progress_box,
    simplex_sliders,
    use_router,
)

use_router()
st.title("Fronts")
st.caption("Every point is one policy (one preference) evaluated on the same held-out prompts.")
found = artifacts()
if not found:
    st.warning("No trained artifacts yet: build the demos or train a run first.")
    st.stop()
sets = list(dict.fromkeys(a.objectives for a in found))
params = st.query_params
url_set = (
    tuple(params.get("objectives", "").split(",")) if "front-set" not in st.session_state else None
)
objectives = st.selectbox(
    "Objectives",
    sets,
    format_func=", ".join,
    key="front-set",
    index=sets.index(url_set) if url_set in sets else 0,
)
choices = [(a, m) for a in found if a.objectives == objectives for m in a.steer_methods]
keys = [f"{a.key}:{m}" for a, m in choices]
# The default overlay comes from the URL or is this set's first front: never from what other
# sessions happened to evaluate.
wanted = [k for k in params.get("fronts", "").split("|") if k in keys]
default = [choices[keys.index(k)] for k in wanted] or choices[:1]
picked = st.multiselect(
    "Fronts to overlay",
    choices,
    default=default,
    format_func=lambda c: f"{c[1]} · {c[0].label}",
    key=artifact_key(f"front-picked:{objectives}"),
)
entries = []
for art, method in picked:
    try:
        front = fronts.front_cached(art, method)
        if front is None:
            with progress_box(f"Evaluating the {method} front (once per server)") as progress:
                front = fronts.front_for(art, method, progress=progress)
    except (ValueError, OSError) as exc:
        st.info(
            f"**{method}** cannot serve {art.label}: {serving.user_message(exc)}",
            icon=":material/info:",
        )
        continue
    entries.append((art, method, front))
if not entries:
    st.info("Pick at least one front.")
    st.stop()
if st.toggle("Show the base model (no training) as a reference front", key="front-base"):
    with progress_box("Evaluating the base model (once per server)") as progress:
        entries.append((entries[0][0], "base", fronts.base_front(entries[0][0], progress)))
table = fronts.front_table(entries)

st.dataframe(table.indicator_rows(), hide_index=True, width="stretch")
if any(s["protocol"] == fronts.OLD_PROTOCOL for s in table.series):
    st.info(
        "Fronts marked *old protocol* were evaluated before the evaluation protocol had a "
        "version (fewer samples, no intervals, no KL): compare them with care.",
        icon=":material/history:",
    )
plotted, matrix = table, False
if len(objectives) >= 4:
    view = st.radio(
        "View",
        ["scatter matrix", "two or three objectives", "parallel coordinates"],
        horizontal=True,
        key="front-view",
    )
    matrix = view == "scatter matrix"
    if view == "two or three objectives":
        axes = st.multiselect(
            "Objectives to plot",
            list(objectives),
            default=list(objectives[:2]),
            max_selections=3,
            key="front-axes",
        )
        if len(axes) >= 2:
            plotted = table.project([objectives.index(a) for a in axes])
with st.expander("Pick a point for me (knee, pseudo-weights)"):
    rule = st.radio("Rule", ["none", "knee", "pseudo-weights"], horizontal=True)
    picked_row = None
    if rule != "none":
        s = st.selectbox(
            "On front", range(len(table.series)), format_func=lambda i: table.series[i]["label"]
        )
        points = table.series[s]["points"]
        if rule == "knee":
            pick = fronts.knee_point(points)
        else:
            pick = fronts.pseudo_weight_pick(
                points, simplex_sliders(list(objectives), key="pseudo")
            )
        picked_row = table.series[s]["offset"] + pick.index
        st.success(f"**{rule}**: {table.describe(picked_row)} - {pick.reason}")
clicked = fronts.selected_row(st.session_state.get("front-chart"))
url_point = params.get("point", "")
from_url = int(url_point) if url_point.isdigit() and int(url_point) < len(table.points) else 0
default = clicked if clicked is not None else (picked_row if picked_row is not None else from_url)
fig = plotted.figure(selected=int(default), picked=picked_row, matrix=matrix)
st.plotly_chart(
    fig,
    on_select="rerun",
    selection_mode="points",
    key="front-chart",
    config=PLOTLY_CONFIG,
    width="stretch",
)
st.caption(
    "Colour: method · line: solid = trained run, dotted = demo · grey: dominated points. "
    "HV and EU in the legend and the table; the interval is a 95% bootstrap over the "
    "held-out prompts. KL/token: KL to the base model per generated token. "
    + fronts.REFERENCE_EXPLAINED
)
row = st.selectbox(
    "Inspect point (or click one on the chart)",
    range(len(table.points)),
    index=int(default),
    format_func=table.describe,
    key=f"inspect:{default}",
)
export_figure(fig, "fronts")
kl_fig = table.kl_figure()
if kl_fig is not None:
    with st.expander("Reward against KL to the base model"):
        st.plotly_chart(kl_fig, config=PLOTLY_CONFIG, width="stretch", key="front-kl")
st.query_params.update(
    objectives=",".join(objectives),
    point=str(row),
    fronts="|".join(f"{a.key}:{m}" for a, m, _ in entries),
)

st.subheader("What these policies write")
neighbour = table.neighbour(row)
for column, r, title in zip(
    st.columns(2), [row, neighbour], ["selected", "nearest neighbour"], strict=True
):
    with column:
        if r is None:
            st.caption("This front has a single point: no neighbour.")
            continue
        series = table.series[int(table.series_of[r])]
        st.markdown(f"**{title}**: {table.describe(r)}")
        if series["method"] == "base":
            st.caption("The base model: the same replies at every preference.")
            continue
        art = next(a for a, m, _ in entries if (a.key, m) == series["key"])
        shared = model(art, series["method"])
        if shared is None:
            continue
        seen = fronts.inspect_point(shared, table.preferences[r], prompt_set=art.prompt_set)
        for g in seen.generations:
            st.markdown(generation_html(g.text, g.scores, g.prompt), unsafe_allow_html=True)
        d = seen.degeneration
        kl = "n/a (greedy decoding)" if d.kl is None else f"{d.kl:.3f} nats/token"
        st.caption(
            f"{d.words:.1f} words · repetition {d.repetition:.0%} · distinct-1 {d.distinct1:.2f} · "
            f"distinct-2 {d.distinct2:.2f} · garbled {d.garbled:.0%} · KL to base {kl}"
        )
        for flag in d.flags:
            st.warning(flag, icon=":material/flag:")
        if not d.flags:
            st.success("No degeneration flags.", icon=":material/check:")
