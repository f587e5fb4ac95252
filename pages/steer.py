"""Steer: move the preference sliders, watch a trained model's answer change."""

import streamlit as st

from morl_core.app import fronts, serving
from pages._widgets import (
    PLOTLY_CONFIG,
    artifacts,
    export_figure,
    generation_cards,
    model,
    progress_box,
    simplex_sliders,
    use_router,
)

use_router()
st.title("Steer")
st.caption(
    "Pick a trained artifact, set how much each objective matters, and read what the policy "
    "says. The sampling seed stays fixed, so a change in the text comes from your preference."
)
found = artifacts()
if not found:
    st.warning("No trained artifacts: run `python scripts/build_demo_artifacts.py` or train one.")
    st.stop()

pick, ask = st.columns([2, 3], gap="large")
with pick:
    info = st.selectbox("Trained artifact", found, format_func=lambda a: a.label, key="artifact")
    compare = st.toggle(
        "Compare methods", key="compare", help="same prompt and preference, side by side"
    )
    same = [a for a in found if a.objectives == info.objectives]
    choices = sorted(
        ((a, m) for a in same for m in a.steer_methods), key=lambda c: c[1] != c[0].method
    )
    if compare:
        picked = st.multiselect("Methods", choices, default=choices[:3], key="methods",
                                format_func=lambda c: f"{c[1]} · {c[0].label}")  # fmt: skip
    else:
        method = st.segmented_control("Method", info.steer_methods, default=info.method,
                                      key=f"method:{info.key}") or info.method  # fmt: skip
        picked = [(info, method)]
with ask:
    examples = serving.example_prompts()
    st.session_state.setdefault("prompt", examples[0])
    st.pills("Example prompts", examples, key="example",
             on_change=lambda: st.session_state.update(prompt=st.session_state.example or st.session_state.prompt))  # fmt: skip
    prompt = st.text_area("Prompt", key="prompt", height=68)


@st.fragment  # a slider move reruns only this part of the page
def steer_view(info, picked, prompt) -> None:
    sliders, output = st.columns([2, 3], gap="large")
    with sliders:
        st.markdown("**Preference** (weights sum to 1)")
        weights = simplex_sliders(list(info.objectives), key=f"pref:{','.join(info.objectives)}")
        with st.expander("Decoding"):
            samples = st.number_input("Samples per method", 1, 4, 2, key="samples")
            seed = st.number_input("Seed", 0, 10_000, 0, key="seed")
    shown = []
    with output:
        for column, (art, method) in zip(st.columns(max(1, len(picked))), picked, strict=False):
            with column:
                st.subheader(method)
                shared = model(art, method)
                if shared is None:
                    continue
                try:
                    result = serving.steer(shared, prompt, weights, samples=samples, seed=seed)
                except ValueError as exc:
                    st.warning(str(exc))
                    continue
                generation_cards(result)
                shown.append((art, method, result))
        if not shown:
            return
        curves = []
        for art, method, result in shown:
            front = fronts.front_cached(art, method)
            if front is None:
                with progress_box(f"Evaluating the {method} front (once per server)") as progress:
                    front = fronts.front_for(art, method, progress=progress)
            curves.append(fronts.steer_point(front, art, method, weights, result))
        fig, ternary = fronts.steer_figures(curves, list(info.objectives), weights)
        tabs = st.tabs(["Front", "Preference simplex"] if ternary else ["Front"])
        with tabs[0]:
            st.plotly_chart(fig, config=PLOTLY_CONFIG, key="mini-front")
            export_figure(fig, "steer-front")
        if ternary:
            with tabs[1]:
                st.plotly_chart(ternary, config=PLOTLY_CONFIG, key="ternary")
        art, _, result = shown[0]
        st.download_button(
            "Download trade-off report (HTML)",
            lambda: fronts.steer_report(art, result, fig, curves[0]["indicators"]),
            "tradeoff-report.html", mime="text/html", type="primary",
        )  # fmt: skip


steer_view(info, picked, prompt)
