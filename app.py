"""MORL Studio: the Streamlit router. Every page lives in ``pages/``; run ``streamlit run app.py``."""

import streamlit as st

st.set_page_config(page_title="MORL Studio", page_icon=":material/tune:", layout="wide")
st.navigation(
    [
        st.Page("pages/steer.py", title="Steer", icon=":material/tune:", default=True),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/fronts.py", title="Fronts", icon=":material/scatter_plot:"),
        st.Page("pages/relations.py", title="Relations", icon=":material/hub:"),
        st.Page("pages/benchmark.py", title="Benchmark", icon=":material/leaderboard:"),
        st.Page("pages/learn.py", title="Learn", icon=":material/school:"),
    ]
).run()
