"""Relations: do the objectives conflict, ignore each other, or move together on these prompts?"""

import streamlit as st

from morl_core import plots, prompts
from morl_core.app import catalog, figures, relations
from pages._widgets import PLOTLY_CONFIG, artifacts, computed, export_figure, model, use_router

use_router()


@st.cache_data(show_spinner="Computing per-objective gradients (a few seconds)...", max_entries=8)
def conflict(names, seed):
    return relations.gradient_conflict_study(list(names), seed=seed)


st.title("Relations")
st.caption(
    "Correlations of per-sample rewards: negative = conflicting (good on one, bad on the other)."
)
found = artifacts()
left, right = st.columns([1, 2], gap="large")
with left:
    sources = [None, *found]
    source = st.selectbox(
        "Generations from",
        sources,
        key="rel-source",
        format_func=lambda a: "the base model" if a is None else a.label,
    )
    default = ["sentiment", "brevity", "readability", "diversity"]
    names = st.multiselect(
        "Objectives", catalog.ui_objectives(), default=default, key="rel-objectives"
    )
    prompt_set = st.selectbox("Prompt set", prompts.available(), key="rel-prompts")
    n_prompts = st.slider("Prompts", 4, 22, 16, key="rel-n")
    per_prompt = st.slider("Samples per prompt", 1, 8, 4, key="rel-k")
    kind = st.radio(
        "Correlation",
        ["spearman", "pearson"],
        horizontal=True,
        key="rel-kind",
        format_func=str.capitalize,
    )
    seed = st.number_input("Seed", 0, 10_000, 0, key="rel-seed")

with right:
    if len(names) < 2:
        st.info("Pick at least two objectives.")
        st.stop()
    method = source.method if source is not None else "base"
    shared = model(source, method)
    if shared is None:
        st.stop()
    key = source.key if source is not None else "base"
    data = computed(
        ("relations", key, tuple(names), prompt_set, n_prompts, per_prompt, seed),
        "Generating and scoring samples",
        lambda progress: relations.relation_samples(
            shared,
            names,
            prompt_set=prompt_set,
            n_prompts=n_prompts,
            samples=per_prompt,
            seed=seed,
            progress=progress,
        ),
    )
    try:
        rel = relations.relate(data, kind, seed=seed)
    except ValueError as exc:
        st.warning(str(exc))
        st.stop()
    c = rel.correlations
    title = f"{kind.capitalize()} correlation, {c.n_samples} samples from {data.source}"
    heat = plots.correlation_heatmap_figure(
        c.coefficient, names, lower=c.lower, upper=c.upper, title=title
    )
    heat.update_layout(height=max(420, 70 * len(names)))  # 7 objectives stay readable
    st.plotly_chart(heat, config=PLOTLY_CONFIG, key="heatmap")
    st.info(relations.whose_samples_note(data.source), icon=":material/info:")
    export_figure(heat, f"correlation-{kind}")
    st.caption(
        f"Hover a cell for its {c.confidence:.0%} bootstrap interval ({c.n_boot} resamples)."
    )
    st.dataframe(rel.pair_rows(), hide_index=True)
    graph, grad = st.columns(2)
    with graph:
        st.markdown("**Dependency graph** (partial correlations: direct links only)")
        fig = plots.dependency_graph_figure(rel.edges, names)
        st.plotly_chart(figures.readable_graph(fig), config=PLOTLY_CONFIG, key="graph")
        st.caption(rel.graph_note or "Blue: move together; red: direct trade-off; width: strength.")
    with grad:
        st.markdown("**Gradient conflict** (cosine of per-objective policy gradients)")
        if st.button("Compute at the base model", key="grad-go") or st.session_state.get(
            "grad-shown"
        ):
            st.session_state["grad-shown"] = True
            cos, norms = conflict(tuple(names), seed)
            g = plots.correlation_heatmap_figure(cos, names, colorbar_title="cosine")
            st.plotly_chart(g.update_layout(height=420), config=PLOTLY_CONFIG, key="grad")
            st.caption(
                "Negative: a step that helps one objective hurts the other. Gradient norms: "
                + ", ".join(f"{n} {v:.2g}" for n, v in zip(names, norms, strict=True))
            )
        else:
            st.caption("A fresh LoRA adapter on the embedded model, averaged over 3 batches.")
    with st.expander("The samples"):
        st.dataframe(
            {
                "prompt": data.prompts,
                "completion": data.texts,
                **{n: data.rewards[:, i] for i, n in enumerate(names)},
            }
        )
