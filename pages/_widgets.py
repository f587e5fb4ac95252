"""Streamlit pieces shared by the pages: the process-wide model pool, progress boxes, the simplex
sliders with locks, generation cards, figure export and field errors.

Only Streamlit glue lives here; everything it calls is in ``morl_core.app``.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import streamlit as st

from morl_core import jobs
from morl_core.app import catalog, figures, serving
from morl_core.app.points import degeneration
from morl_core.app.report import generation_html
from morl_core.weights import sliders_to_weights

if TYPE_CHECKING:
    from streamlit.navigation.page import StreamlitPage


# The app's pages in menu order: (file in pages/, title, icon). The first one is the landing page.
PAGES = (
    ("steer.py", "Steer", ":material/tune:"),
    ("train.py", "Train", ":material/model_training:"),
    ("fronts.py", "Fronts", ":material/scatter_plot:"),
    ("relations.py", "Relations", ":material/hub:"),
    ("benchmark.py", "Benchmark", ":material/leaderboard:"),
    ("learn.py", "Learn", ":material/school:"),
)
_ROUTED = "router:routed"  # session state: this session has run through app.py's router


def app_pages() -> list[StreamlitPage]:
    """``st.Page`` objects for :data:`PAGES` (absolute paths: valid whichever script is main)."""
    here = Path(__file__).resolve().parent
    return [
        st.Page(here / file, title=title, icon=icon, default=index == 0)
        for index, (file, title, icon) in enumerate(PAGES)
    ]


def navigation(position: Literal["sidebar", "hidden", "top"] = "sidebar") -> StreamlitPage:
    """``st.navigation`` over :func:`app_pages`; the session counts as routed from now on."""
    st.session_state[_ROUTED] = True
    return st.navigation(app_pages(), position=position)


def use_router() -> None:
    """Make sure the page runs inside ``app.py``'s ``st.navigation``.

    Streamlit keeps a legacy mode for a ``pages/`` folder next to the main script: until some
    script calls ``st.navigation``, a fresh server runs a page URL (``/fronts``) as that file
    alone, without ``app.py``, and lists every file of the folder in the sidebar. Every page
    calls this first. In a session that has not been through the router yet it calls
    ``st.navigation`` itself (hidden), which switches the legacy mode off for the server, and
    reruns, so the rerun goes through ``app.py``. Later runs return at once, so a rerun never
    eats a button click.
    """
    if st.session_state.get(_ROUTED):
        return
    navigation(position="hidden")
    st.rerun()


# The toolbar shows on hover only: on a phone it otherwise covers the chart titles.
PLOTLY_CONFIG = {
    "displaylogo": False,
    "displayModeBar": "hover",
    "toImageButtonOptions": {"format": "png", "scale": 2},
}


@st.cache_resource(show_spinner=False)
def pool() -> serving.ModelPool:
    """One model pool per server process, shared by every session."""
    return serving.ModelPool(device="auto")


_CLASSROOM = "classroom"  # session state: only artifacts of the embedded model, on every page


def artifacts() -> list[catalog.ArtifactInfo]:
    """Demo artifacts and finished runs of this server's data directory (re-listed every 20 s).

    Where artifacts of a larger model sit beside the embedded model's, a sidebar toggle keeps
    only the embedded ones: the fast classroom mode, one click away on every page.
    """
    found = _artifacts(str(catalog.data_dir()))
    small = [a for a in found if a.embedded]
    if not small or len(small) == len(found):
        return found
    on = st.sidebar.toggle(
        "Classroom mode (fast)",
        value=st.session_state.get(_CLASSROOM, False),
        key="classroom-toggle",
        help="only the artifacts of the embedded 6.9M model: replies at once on a laptop CPU, "
        "review-style text instead of an assistant's answers",
    )
    st.session_state[_CLASSROOM] = on
    return small if on else found


def artifact_key(name: str) -> str:
    """A widget key for a pick among :func:`artifacts`: its own per mode, so switching the
    classroom mode opens on that mode's default instead of an artifact no longer listed."""
    return f"{name}:classroom" if st.session_state.get(_CLASSROOM) else name


@st.cache_data(ttl=20, show_spinner=False)
def _artifacts(data_dir: str) -> list[catalog.ArtifactInfo]:
    return catalog.discover_artifacts(data_dir)


@contextlib.contextmanager
def progress_box(label: str):
    """A status box with a progress bar while something slow runs; it disappears when done.

    Yields ``progress(message, fraction)``.
    """
    holder = st.empty()
    box = holder.status(label, expanded=True)
    bar = box.progress(0.0, text="starting")

    def progress(message: str, fraction: float) -> None:
        bar.progress(min(1.0, max(0.0, fraction)), text=message)

    try:
        yield progress
    finally:
        holder.empty()  # on an error the caller says what went wrong


def model(info: catalog.ArtifactInfo | None, method: str) -> serving.SharedSteerable | None:
    """The shared model for ``info`` served by ``method`` (None: the base model).

    Shows a progress bar while it loads (once per process); a load error is shown, not raised.
    """
    run_dir = info.run_dir if info is not None else None
    models = pool()
    try:
        if models.loaded(run_dir, method):
            return models.get(run_dir, method)
        with progress_box(f"Loading {method} (first use on this server)") as progress:
            return models.get(run_dir, method, progress=progress)
    except (ValueError, OSError) as exc:
        logging.getLogger("morl_studio").warning("%s cannot serve %s: %s", method, run_dir, exc)
        st.info(
            f"**{method}** cannot serve this artifact: {serving.user_message(exc)}",
            icon=":material/info:",
        )
        return None


def computed(key: tuple, label: str, fn):
    """``fn(progress)`` computed once per session for ``key``, with a progress box meanwhile."""
    cache = st.session_state.setdefault("computed", {})
    if key not in cache:
        with progress_box(label) as progress:
            cache[key] = fn(progress)
    return cache[key]


def simplex_sliders(names: list[str], key: str) -> list[float]:
    """One slider per objective kept on the simplex, each with a lock; returns the weights.

    Moving a slider rescales the unlocked others so the weights still sum to 1
    (:func:`morl_core.weights.sliders_to_weights`); a locked slider keeps its value.
    """

    keys = [f"{key}:w:{name}" for name in names]
    locks = [f"{key}:lock:{name}" for name in names]
    for k in keys:
        st.session_state.setdefault(k, round(1.0 / len(names), 2))

    def moved(index: int) -> None:
        values = [st.session_state[k] for k in keys]
        locked = [i for i, k in enumerate(locks) if st.session_state.get(k) and i != index]
        try:
            weights = sliders_to_weights(values, locked=locked, moved=index)
        except ValueError as exc:
            st.session_state[f"{key}:error"] = str(exc)
            return
        st.session_state.pop(f"{key}:error", None)
        for k, w in zip(keys, weights, strict=True):
            st.session_state[k] = round(float(w), 2)

    for i, name in enumerate(names):
        left, right = st.columns([3, 1], vertical_alignment="center")
        left.slider(
            name,
            0.0,
            1.0,
            step=0.01,
            key=keys[i],
            on_change=moved,
            args=(i,),
            disabled=bool(st.session_state.get(locks[i])),
        )
        right.checkbox("lock", key=locks[i], help=f"keep {name}'s weight fixed")
    if st.session_state.get(f"{key}:error"):
        st.warning(st.session_state[f"{key}:error"])
    values = [float(st.session_state[k]) for k in keys]
    total = sum(values) or 1.0
    return [v / total for v in values]


def generation_cards(result, key: str = "") -> None:
    """Each generation with its per-objective score bars and any degeneration flag, then what
    it cost. ``key`` tells apart cards of one method shown twice (two artifacts)."""
    for i, g in enumerate(result.generations):
        with st.container(key=f"gen-{key or result.method}-{i}"):
            st.markdown(generation_html(g.text, g.scores), unsafe_allow_html=True)
            for flag in degeneration([g.text]).flags:
                st.warning(f"Check this text: {flag}", icon=":material/flag:")
    weights = ", ".join(f"{w:.2f}" for w in result.weights)
    st.caption(
        f"w = ({weights}) · {result.timing} · {result.passes_per_token} forward pass(es) per "
        f"token · {result.models_kept} model(s) kept"
    )


@contextlib.contextmanager
def live_replies():
    """An ``on_text`` for :func:`morl_core.app.serving.steer`: replies drawn as they are
    written, in a placeholder cleared on exit (the finished cards take its place)."""
    box = st.empty()

    def show(texts: list[str]) -> None:
        with box.container():
            for text in texts:
                st.markdown(generation_html(text + " ▍", {}), unsafe_allow_html=True)

    try:
        yield show
    finally:
        box.empty()


def export_figure(fig, name: str) -> None:
    """Download buttons for a figure: HTML (offline, plotly.js inlined) and PNG via kaleido."""
    left, right = st.columns(2)
    left.download_button(
        "Download HTML",
        lambda: figures.figure_html(fig),
        file_name=f"{name}.html",
        mime="text/html",
        key=f"html:{name}",
    )
    if figures.png_available():
        right.download_button(
            "Download PNG",
            lambda: figures.figure_png(fig),
            file_name=f"{name}.png",
            mime="image/png",
            key=f"png:{name}",
        )
    else:
        right.caption("PNG: use the camera icon on the chart (kaleido is not installed).")


def field_errors(errors: dict[str, str], name: str) -> None:
    """Show the error for one form field, if any, right under its widget."""
    for field, message in errors.items():
        if field == name or field.startswith(f"{name}."):
            st.error(f"**{field}**: {message}", icon=":material/error:")


def executor():
    """The job system's executor, one per server process and data directory (it tracks its
    worker processes)."""
    return _executor(str(catalog.data_dir()))


@st.cache_resource(show_spinner=False)
def _executor(data_dir: str):
    return jobs.get_executor(data_dir=data_dir)


def form_widget(field, errors: dict[str, str]):
    """The widget for one :class:`morl_core.app.runs.FormField`; its error shows under it.

    Numbers get min/max only where declared (``low``/``high``: a method option's range); the
    config validates every value and names the field.
    """
    key = f"form:{field.name}"
    if field.kind == "multichoice":
        value = st.multiselect(
            field.label, field.choices, default=field.default, help=field.help, key=key
        )
    elif field.kind == "choice":
        index = field.choices.index(field.default) if field.default in field.choices else 0
        value = st.selectbox(field.label, field.choices, index=index, help=field.help, key=key)
    elif field.kind in ("int", "float"):
        number, fmt = (int, None) if field.kind == "int" else (float, "%g")
        default = number(field.default)
        value = st.number_input(
            field.label, field.low, field.high, default, format=fmt, help=field.help, key=key
        )
    else:
        value = st.text_input(field.label, value=str(field.default), help=field.help, key=key)
    field_errors(errors, field.name)
    return value


class UrlState:
    """The view in the URL (``st.query_params``): artifact, method, preference, prompt and the
    selected point, so a link opens the same view. Read once per session, written every run."""

    def __init__(self, found) -> None:
        first = "url-read" not in st.session_state
        st.session_state["url-read"] = True
        params = st.query_params if first else {}
        keys = [a.key for a in found]
        self.artifact_index = (
            keys.index(params["artifact"]) if params.get("artifact") in keys else 0
        )
        self.method = params.get("method")
        self.prompt = params.get("prompt")
        self.point = params.get("point")
        try:
            self.weights = [float(x) for x in params.get("w", "").split(",") if x.strip()]
        except ValueError:
            self.weights = []

    def seed_sliders(self, key: str, names: list[str]) -> None:
        """Start the sliders at the URL's preference (when it fits these objectives)."""
        if len(self.weights) == len(names) and all(0 <= w <= 1 for w in self.weights):
            total = sum(self.weights) or 1.0
            for name, w in zip(names, self.weights, strict=True):
                st.session_state.setdefault(f"{key}:w:{name}", round(w / total, 2))
        self.weights = []

    def write(self, info, method: str, weights=None, prompt: str | None = None, **extra) -> None:
        """Put the current view into the URL."""
        params = {"artifact": info.key, "method": method, **extra}
        if weights is not None:
            params["w"] = ",".join(f"{w:.2f}" for w in weights)
        if prompt:
            params["prompt"] = prompt[:500]
        for name, value in params.items():
            if st.query_params.get(name) != str(value):
                st.query_params[name] = str(value)


def url_state(found) -> UrlState:
    """The view the URL asks for (see :class:`UrlState`)."""
    return UrlState(found)
