"""MORL Studio: the Streamlit router. Every page lives in ``pages/``; run ``streamlit run app.py``."""

import logging

import streamlit as st

from pages._widgets import navigation

st.set_page_config(page_title="MORL Studio", page_icon=":material/tune:", layout="wide")
page = navigation()  # the pages and their order: pages/_widgets.PAGES
# Phones: the plotly toolbar would cover chart titles (export stays on the download buttons),
# and long equations scroll inside their box instead of widening the page.
st.html(
    "<style>@media (max-width: 640px) { .js-plotly-plot .modebar-container { display: none; } }"
    " .katex-display { overflow-x: auto; overflow-y: hidden; max-width: 100%; }</style>"
)
# st.stop() and st.rerun() raise BaseExceptions, so they pass through this handler untouched.
try:
    page.run()
except Exception as exc:  # noqa: BLE001  (the user gets one plain line; details go to the log)
    logging.getLogger("morl_studio").exception("page %s failed", page.title)
    st.error(
        f"Something went wrong on this page ({type(exc).__name__}). The details are in the "
        "server log; reload the page or pick other settings.",
        icon=":material/error:",
    )
