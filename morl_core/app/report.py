"""The one-file trade-off report for stakeholders, and the small score bars the app shows.

The report is a single self-contained HTML file (plotly.js inlined, opens offline).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

from morl_core.colors import objective_color

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:980px;margin:2em auto;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0} td,th{border:1px solid #ddd;padding:4px 10px;text-align:left}
.gen{border:1px solid #e3e3e3;border-radius:8px;padding:10px 14px;margin:8px 0;background:#fafafa}
.prompt{color:#666;font-size:.9em} .flag{color:#a33} .muted{color:#777;font-size:.9em}
"""


def score_bars_html(scores: Mapping[str, float]) -> str:
    """Compact horizontal bars, one per objective (objective colours, values in [0, 1])."""
    rows = []
    for name, value in scores.items():
        width = max(0.0, min(1.0, float(value))) * 100
        rows.append(
            '<div style="display:flex;align-items:center;gap:6px;font-size:0.8em;line-height:1.35">'
            f'<span style="flex:0 0 6.5em;color:#555;overflow:hidden;text-overflow:ellipsis">'
            f"{html.escape(name)}</span>"
            '<span style="flex:1 1 auto;min-width:2.5em;max-width:10em;height:7px;'
            'background:#e8e8e8;border-radius:4px">'
            f'<span style="display:block;height:7px;width:{width:.0f}%;border-radius:4px;'
            f'background:{objective_color(name)}"></span></span>'
            f'<span style="flex:0 0 2.4em;color:#333">{float(value):.2f}</span></div>'
        )
    return "".join(rows)


CARD = (
    "border:1px solid #e3e3e3;border-radius:8px;padding:8px 12px;margin:0 0 8px 0;"
    "background:#fbfbfb"
)


def generation_html(text: str, scores: Mapping[str, float], prompt: str | None = None) -> str:
    """One generation card: optional prompt (grey), the (escaped) text, its score bars (inline
    styles, so the card looks the same in the app and in an exported report)."""
    head = (
        f'<div class="prompt" style="color:#777;font-size:0.85em;font-style:italic">'
        f"{html.escape(prompt)}</div>"
        if prompt
        else ""
    )
    body = html.escape(text) if text else "<i>(empty completion)</i>"
    return (
        f'<div class="gen" style="{CARD}">{head}'
        f'<div class="gen-text" style="margin:2px 0 6px 0">{body}</div>'
        f"{score_bars_html(scores)}</div>"
    )


def _table(rows: Sequence[Sequence[Any]], header: Sequence[str]) -> str:
    def cell(v: Any) -> str:
        return f"{v:.4g}" if isinstance(v, float) else html.escape(str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def tradeoff_report(
    *,
    title: str,
    artifact: str,
    method: str,
    objectives: Sequence[str],
    weights: Sequence[float],
    generations: Sequence[Any],
    indicators: Mapping[str, Any] | None = None,
    figure: Any = None,
    flags: Sequence[str] = (),
    reference_note: str = "",
    notes: str = "",
) -> str:
    """A single self-contained HTML page describing one chosen trade-off.

    ``generations`` are objects with ``prompt``, ``text`` and ``scores`` (name -> value);
    ``weights`` is the chosen preference (K,); ``figure`` an optional plotly front with the
    chosen point; ``reference_note`` says how the hypervolume reference point was chosen.
    Returns the HTML (about 4 MB with a figure: plotly.js is inlined).
    """
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    means = {
        n: sum(g.scores[n] for g in generations) / max(1, len(generations)) for n in objectives
    }
    chosen = [[n, float(w)] for n, w in zip(objectives, weights, strict=True)]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="muted">MORL Studio trade-off report, {stamp}. Artifact: '
        f"{html.escape(artifact)}; method: {html.escape(method)}.</p>",
        "<h2>Chosen preference</h2>",
        _table(chosen, ["objective", "weight"]),
        "<h2>Scores at this preference</h2>",
        f"<p>Mean over {len(generations)} generation(s); every objective maps to [0, 1], higher "
        "is better.</p>",
        score_bars_html(means),
        "<h2>Example generations</h2>",
        *[generation_html(g.text, g.scores, g.prompt) for g in generations],
    ]
    if flags:
        parts += ["<h2>Warnings</h2><ul>"]
        parts += [f'<li class="flag">{html.escape(f)}</li>' for f in flags]
        parts += ["</ul>"]
    if figure is not None:
        parts += ["<h2>The front</h2>", figure.to_html(include_plotlyjs=True, full_html=False)]
    if indicators:
        rows = [[k, v if not isinstance(v, list) else str(v)] for k, v in indicators.items()]
        parts += ["<h2>Front indicators</h2>", _table(rows, ["indicator", "value"])]
        if reference_note:
            parts += [f'<p class="muted">{html.escape(reference_note)}</p>']
    if notes:
        parts += ["<h2>Notes</h2>", f"<p>{html.escape(notes)}</p>"]
    parts += ["</body></html>"]
    return "\n".join(parts)
