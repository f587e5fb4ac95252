"""What the Streamlit pages need from the library, so a page stays widgets -> one call -> render.

Nothing here imports Streamlit, and torch loads only when a model is first needed.

Modules:
    serving: demo artifacts and finished runs, the shared model pool, ``steer``.
    fronts: reference point, indicators, fronts per method, degeneration flags, knee and
        pseudo-weight picks.
    runs: the Train page's form, submission and live run history.
    relations: the Relations page (correlations, pairs, dependency graph, gradient conflict).
    benchmark: the Benchmark page (records, leaderboards, starting a suite, evaluated runs).
    learn: the Learn page (taxonomy, equations, method sources, the scalarisation tour).
    figures: plotly builders the pages need beyond :mod:`morl_core.plots`.
    report: the one-file HTML trade-off report.
"""
