"""Learn: the taxonomy of MORL methods for language models, their maths and their real code."""

import streamlit as st

from morl_core.app import figures, learn
from pages._widgets import PLOTLY_CONFIG, use_router

use_router()
st.title("Learn")
st.caption(
    "A preference w on the simplex says how much each objective matters. MORL methods differ in "
    "when w is applied (training or inference) and how many models they keep."
)
st.subheader("Taxonomy")
rows = learn.taxonomy()
st.dataframe(rows, hide_index=True)

st.subheader("Methods")
names = [r["method"] for r in rows]
name = st.segmented_control("Method", names, default=names[0], key="learn-method") or names[0]
row = next(r for r in rows if r["method"] == name)
family = row["family"].split(".")[0]
st.markdown(f"**Family {row['family']}** · {row['idea']} · *{row['paper']}*")
equation = learn.method_equation(name, family)
if equation:
    st.latex(equation)
if name in learn.METHOD_NOTES:
    st.info(learn.METHOD_NOTES[name])
doc, source = learn.method_source(name)
st.code(doc, language=None, wrap_lines=True)
with st.expander(f"The real source of `{name}` ({len(source.splitlines())} lines)"):
    st.code(source, language="python", line_numbers=True)

st.subheader("Guided tour: why linear scalarisation misses part of the front")
tour = learn.scalarisation_tour()
text, chart = st.columns([2, 3], gap="large")
with text:
    st.markdown(
        "The grey curve is a known **non-convex** front (two synthetic objectives, "
        "`sqrt(x) + sqrt(y) = 1`). Slide the preference and watch which point each "
        "scalarisation picks.\n\n"
        "* **Linear** `w · r` slides its level line (dashed) until it last touches the "
        "front. On a curve that bends inwards that is always an **end point**: every "
        "preference gives one of the two extremes (blue circles are all it ever reaches).\n"
        "* **Tchebycheff** `-max_i w_i |1 - r_i|` follows the ray (dotted) from the ideal point "
        "and stops where it meets the front, so it reaches **every** point.\n\n"
        "That is why MORLHF with a linear sum cannot give a balanced policy here, and why the "
        "Train page offers `scalarization = tchebycheff`."
    )
    index = st.select_slider(
        "Weight on the first objective",
        range(len(tour.weights)),
        value=len(tour.weights) // 2 - 3,
        format_func=lambda i: f"{tour.weights[i][0]:.3f}",
        key="tour",
    )
    reached = len(set(tour.linear.tolist()))
    st.caption(
        f"Over {len(tour.weights)} preferences, linear reaches {reached} distinct "
        f"points; Tchebycheff {len(set(tour.tchebycheff.tolist()))}."
    )
with chart:
    st.plotly_chart(figures.tour_figure(tour, index), config=PLOTLY_CONFIG, key="tour-fig")
