"""Steer: move the preference sliders, watch a trained model's answer change; or answer
"which reply is better?" and let the app infer your preference. The view is kept in the URL."""

import time

import streamlit as st

from morl_core import plots
from morl_core.app import catalog, choices, fronts, lattice, lattice_view, serving
from pages._widgets import (
    PLOTLY_CONFIG,
    artifact_key,
    artifacts,
    computed,
    export_figure,
    generation_cards,
    live_replies,
    model,
    progress_box,
    simplex_sliders,
    url_state,
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
url = url_state(found)

pick, ask = st.columns([2, 3], gap="large")
with pick:
    info = st.selectbox(
        "Trained artifact",
        found,
        index=url.artifact_index,
        format_func=lambda a: a.label,
        key=artifact_key("artifact"),
    )
    compare = st.toggle(
        "Compare methods", key="compare", help="same prompt and preference, side by side"
    )
    same = [a for a in found if a.objectives == info.objectives]
    options = sorted(
        ((a, m) for a in same for m in a.steer_methods), key=lambda c: c[1] != c[0].method
    )
    if compare:
        distinct = list({m: (a, m) for a, m in reversed(options)}.values())[::-1]
        picked = st.multiselect(
            "Methods",
            options,
            default=distinct[:3],
            key="methods",
            format_func=lambda c: f"{c[1]} · {c[0].label}",
        )
    else:
        default = url.method if url.method in info.steer_methods else info.method
        method = (
            st.segmented_control(
                "Method", info.steer_methods, default=default, key=f"method:{info.key}"
            )
            or info.method
        )
        picked = [(info, method)]
        st.toggle(
            "Which reply is better?",
            key="ask",
            help="pick the better of two replies ~10 times; the app infers your weights",
        )
with ask:
    examples = catalog.example_prompts(prompt_set=info.prompt_set)
    st.session_state.setdefault("prompt", url.prompt or examples[0])
    st.pills(
        "Example prompts",
        examples,
        key="example",
        on_change=lambda: st.session_state.update(
            prompt=st.session_state.example or st.session_state.prompt
        ),
    )
    prompt = st.text_area("Prompt", key="prompt", height=68)
names = list(info.objectives)
slider_key = f"pref:{','.join(names)}"
url.seed_sliders(slider_key, names)


def choice_panel(info, method, prompt) -> None:
    """Two replies from different preferences; each pick updates the posterior and sliders."""
    shared = model(info, method)
    if shared is None:
        return
    key = ("choices", info.key, method, prompt)
    try:
        replies = computed(
            key,
            "Writing replies at spread-out preferences",
            lambda progress: choices.write_replies(shared, prompt, progress=progress),
        )
    except ValueError as exc:
        st.warning(serving.user_message(exc))
        return
    session = st.session_state.setdefault(f"elicit:{key}", choices.ChoiceSession.start(replies))
    a, b = session.pair()

    def chose(winner: int, loser: int) -> None:
        session.choose(winner, loser)
        for name, w in zip(names, session.estimate().mean, strict=True):
            st.session_state[f"{slider_key}:w:{name}"] = round(float(w), 2)

    st.markdown(f"**Which reply is better?** (choice {session.posterior.choices + 1})")
    for column, (me, other), label in zip(st.columns(2), [(a, b), (b, a)], "AB", strict=True):
        with column, st.container(border=True):
            st.markdown(f"**Reply {label}**")
            st.write(replies.texts[me] or "(empty reply)")
            st.button(
                f"{label} is better",
                key=f"choose-{label}",
                on_click=chose,
                args=(me, other),
                width="stretch",
            )
    estimate = session.estimate()
    fig = plots.preference_posterior_figure(
        session.posterior.particles,
        session.posterior.probabilities,
        names,
        estimate.mean,
        estimate.lower,
        estimate.upper,
    )
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key="posterior")
    if session.done:
        st.success(
            f"**Your inferred weights** (90% interval): {session.summary(names)}. "
            "The sliders below are set to this estimate; the reply there is below."
        )
    else:
        st.caption(
            f"{session.posterior.choices} of {choices.ENOUGH_CHOICES} choices; "
            f"current estimate: {session.summary(names)}"
        )


if not compare and st.session_state.get("ask"):
    choice_panel(info, picked[0][1], prompt)


# A slider move's replies go to the browser before the front is built: building it holds the
# GIL for ~70 ms of CPU, which keeps Streamlit's sending thread from the queued replies, and a
# chart that lands in the same browser update as the replies delays their paint by its render.
REPLIES_OUT_S = 0.03


@st.fragment  # a slider move reruns only this part of the page
def steer_view(info, picked, prompt) -> None:
    sliders, output = st.columns([2, 3], gap="large")
    with sliders:
        st.markdown("**Preference** (weights sum to 1)")
        weights = simplex_sliders(names, key=slider_key)
        settings = st.container()  # filled after the replies: a move shows them first
    # the decoding widgets below hold these keys; they are drawn after the replies
    samples, seed = int(st.session_state.get("samples", 2)), int(st.session_state.get("seed", 0))
    with output:
        shown = replies(picked, prompt, weights, samples, seed)
    with settings:
        decoding_settings(info)
        if not compare:
            lattice_preview(info, picked[0][1], prompt, weights, samples, seed)
    url.write(info, picked[0][1], weights, prompt)
    if shown:
        time.sleep(REPLIES_OUT_S)
        with output:
            front_view(shown, weights)


def decoding_settings(info) -> None:
    with st.expander("Decoding"):
        st.number_input("Samples per method", 1, 4, 2, key="samples")
        st.number_input("Seed", 0, 10_000, 0, key="seed")
        decoding = serving.steer_decoding(info.run_dir)
        st.caption(
            f"Up to {decoding['max_new_tokens']} tokens per reply (the artifact's training "
            f"length, at most {serving.STEER_MAX_NEW_TOKENS}), temperature "
            f"{decoding['temperature']}, top-p {decoding['top_p']}."
        )


def lattice_preview(info, method, prompt, weights, samples, seed) -> None:
    """On an example prompt of the lattice, every point's replies go to the browser at once,
    and the preview's own control moves between them there (no rerun)."""
    found = lattice.prompt_lattice(info.run_dir, method, prompt, samples=samples, seed=seed)
    if found is None:
        return
    # it opens at the sliders' lattice point, then stays where it is left: the same HTML on
    # every rerun, so the browser keeps the frame (no reload, no jump)
    starts = st.session_state.setdefault("preview-start", {})
    view = (info.key, method, prompt)
    starts.setdefault(view, lattice.nearest_point(found.preferences, weights)[0])
    st.iframe(lattice_view.view_html(found, starts[view]))  # escaped: see its module
    st.caption(
        "The instant preview flips through the precomputed replies; the sliders above "
        "generate live at any preference and place the diamond on the front."
    )


def replies(picked, prompt, weights, samples, seed) -> list:
    """Each picked method's replies at ``weights``: ``[(artifact, method, result), ...]``."""
    shown = []
    columns = st.columns(max(1, len(picked)))
    for index, (column, (art, method)) in enumerate(zip(columns, picked, strict=False)):
        with column:
            st.subheader(method)
            if compare:
                st.caption(art.label)
            if note := catalog.one_policy_note(method):
                st.caption(note)
            if note := catalog.conditioning_note(art, method, weights):
                st.caption(note)
            # on a lattice point the replies were precomputed: shown without a model
            result = lattice.precomputed(
                art.run_dir, method, prompt, weights, samples=samples, seed=seed
            )
            shared = None if result else model(art, method)
            if result is None and shared is None:
                continue
            try:
                if result is None:
                    with live_replies() as on_text:  # a reply not cached streams as written
                        result = serving.steer(
                            shared, prompt, weights, samples=samples, seed=seed, on_text=on_text
                        )
            except ValueError as exc:
                st.warning(serving.user_message(exc))
                continue
            generation_cards(result, key=f"{index}-{method}")
            if shared is None:
                st.caption("precomputed at this lattice point; other preferences generate live")
            shown.append((art, method, result))
    return shown


def front_view(shown, weights) -> None:
    """The front of each shown method with the replies' mean scores on it, and the report."""
    curves = []
    for art, method, result in shown:
        front = fronts.front_cached(art, method)
        if front is None:
            with progress_box(f"Evaluating the {method} front (once per server)") as progress:
                front = fronts.front_for(art, method, progress=progress)
        curves.append(fronts.steer_point(front, art, method, weights, result))
    fig, ternary = fronts.steer_figures(curves, names, weights)
    tabs = st.tabs(["Front", "Preference simplex"] if ternary else ["Front"])
    with tabs[0]:
        st.plotly_chart(fig, config=PLOTLY_CONFIG, key="mini-front")
        st.caption(fronts.ON_SCREEN_NOTE)
        export_figure(fig, "steer-front")
    if ternary:
        with tabs[1]:
            st.plotly_chart(ternary, config=PLOTLY_CONFIG, key="ternary")
    art, _, result = shown[0]
    st.download_button(
        "Download trade-off report (HTML)",
        lambda: fronts.steer_report(art, result, fig, curves[0]["indicators"]),
        "tradeoff-report.html",
        mime="text/html",
        type="primary",
    )


steer_view(info, picked, prompt)
