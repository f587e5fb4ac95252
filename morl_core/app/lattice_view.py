"""The browser-side lattice: every precomputed reply of one prompt in one small HTML page.

The Steer page sends :func:`view_html` to the browser once per artifact, method and prompt
(``st.iframe``, sized to its content). It holds the replies of every lattice point as generation
cards (built by :func:`morl_core.app.report.generation_html`, which escapes the text: replies
are model output) stacked in one grid cell, and a preference control that can only stand on a
lattice point: a slider over the points for two objectives, clickable points on a triangle for
three (arrow keys move to the nearest point in that direction), a slider over the listed
points beyond. Moving it shows that point's cards in JavaScript, with no server round trip.

Every card is in the page from the start (a few kB per point), so nothing is fetched on a move;
the grid cell is as tall as the tallest point, so the frame keeps one height while you drag.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence

import numpy as np

from morl_core.app.lattice import PromptLattice
from morl_core.app.report import generation_html

VIEW_ID = "lattice-view"  # the root element's id (the benchmark and the browser test find it)
TRIANGLE = np.array([[100.0, 16.0], [16.0, 160.0], [184.0, 160.0]])  # objective i's corner (x, y)

PRIMARY = "#2C7BB6"  # the app's theme colour (.streamlit/config.toml), as on its sliders
_STYLE = """
body{margin:0;font-family:"Source Sans Pro","Source Sans 3",system-ui,-apple-system,"Segoe UI",
sans-serif;color:#31333f;font-size:14px}
.lv-head{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 12px;margin:0 0 4px 0}
.lv-head label,.lv-head .lv-title{font-weight:600}
.lv-hint{color:#808495;font-size:.85em}
.lv-control{margin:2px 0 6px 0}
.lv-control input[type=range]{-webkit-appearance:none;appearance:none;width:100%;height:4px;
border-radius:2px;background:#e6e8ee;margin:12px 0 6px 0;cursor:pointer}
.lv-control input[type=range]::-webkit-slider-thumb{-webkit-appearance:none;width:14px;
height:14px;border-radius:50%;background:PRIMARY;border:none}
.lv-control input[type=range]::-moz-range-thumb{width:14px;height:14px;border-radius:50%;
background:PRIMARY;border:none}
.lv-control input[type=range]:focus-visible{outline:2px solid PRIMARY;outline-offset:4px}
.lv-ends{display:flex;justify-content:space-between;color:#808495;font-size:.8em}
.lv-w{font-size:.9em;margin:0 0 6px 0;display:block}
.lv-triangle svg{width:260px;max-width:100%;height:auto;display:block}
.lv-triangle circle{fill:#fff;stroke:#808495;stroke-width:1.5;cursor:pointer}
.lv-triangle circle[aria-checked=true]{fill:PRIMARY;stroke:PRIMARY}
.lv-triangle circle:focus{outline:none}
.lv-triangle circle:focus-visible{stroke:#31333f;stroke-width:3}
.lv-triangle text{font-size:11px;fill:#555}
.lv-points{display:grid}
.lv-point{grid-area:1/1;visibility:hidden}
.lv-point.on{visibility:visible}
.lv-caption{color:#808495;font-size:.8em;margin:2px 0 0 0}
""".replace("PRIMARY", PRIMARY)

# Shows one point's cards; the control calls show(i).
_SCRIPT = """
(() => {
  const root = document.getElementById("VIEW_ID");
  const points = [...root.querySelectorAll(".lv-point")];
  const readout = root.querySelector(".lv-w");
  const range = root.querySelector("input[type=range]");
  const dots = [...root.querySelectorAll("circle[role=radio]")];
  const order = JSON.parse(root.dataset.order);  // range position -> point index
  let current = -1;
  const show = (i, focus) => {
    if (i === current || i < 0 || i >= points.length) return;
    points.forEach((p, j) => p.classList.toggle("on", j === i));
    readout.textContent = points[i].dataset.label;
    if (range) {
      range.value = order.indexOf(i);
      range.setAttribute("aria-valuetext", points[i].dataset.label);
    }
    dots.forEach((d, j) => {
      d.setAttribute("aria-checked", j === i ? "true" : "false");
      d.setAttribute("tabindex", j === i ? "0" : "-1");
    });
    if (focus && dots[i]) dots[i].focus();
    current = i;
  };
  if (range) range.addEventListener("input", () => show(order[+range.value], false));
  const xy = dots.map((d) => [+d.getAttribute("cx"), +d.getAttribute("cy")]);
  const towards = {ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowUp: [0, -1], ArrowDown: [0, 1]};
  const step = (from, [dx, dy]) => {  // the nearest point in that direction, or none
    let best = -1, bestScore = Infinity;
    xy.forEach(([x, y], j) => {
      const along = (x - xy[from][0]) * dx + (y - xy[from][1]) * dy;
      const across = Math.abs((x - xy[from][0]) * dy - (y - xy[from][1]) * dx);
      const score = along + 2 * across;
      if (along > 1e-6 && score < bestScore) { best = j; bestScore = score; }
    });
    return best;
  };
  dots.forEach((d, j) => {
    d.addEventListener("click", () => show(j, true));
    d.addEventListener("keydown", (e) => {
      if (e.key in towards) { e.preventDefault(); show(step(current, towards[e.key]), true); }
      else if (e.key === " " || e.key === "Enter") { e.preventDefault(); show(j, true); }
    });
  });
  show(+root.dataset.start, false);
})();
"""


def point_label(objectives: Sequence[str], weights: Sequence[float]) -> str:
    """``sentiment 0.70 · brevity 0.30``: a lattice point in words."""
    return " · ".join(f"{name} {w:.2f}" for name, w in zip(objectives, weights, strict=True))


def triangle_xy(preferences: np.ndarray) -> np.ndarray:
    """Where each 3-objective preference (M, 3) sits on the :data:`TRIANGLE` (M, 2): the
    weighted mean of the corners (a corner is all weight on its objective)."""
    return np.asarray(preferences, dtype=float) @ TRIANGLE


def slider_order(preferences: np.ndarray) -> list[int]:
    """The point shown at each slider position: for two objectives by the first objective's
    weight (left: all on the second), otherwise in the lattice's own order."""
    preferences = np.asarray(preferences, dtype=float)
    if preferences.shape[1] == 2:
        return [int(i) for i in np.argsort(preferences[:, 0], kind="stable")]
    return list(range(len(preferences)))


def _range_control(found: PromptLattice, order: list[int], start: int) -> str:
    names = found.objectives
    ends = (
        f"<span>all {html.escape(names[1])}</span><span>all {html.escape(names[0])}</span>"
        if len(names) == 2
        else "<span>first lattice point</span><span>last</span>"
    )
    label = point_label(names, found.preferences[start])
    return (
        '<div class="lv-control">'
        f'<input type="range" id="{VIEW_ID}-range" min="0" max="{len(order) - 1}" step="1" '
        f'value="{order.index(start)}" aria-valuetext="{html.escape(label)}">'
        f'<div class="lv-ends" aria-hidden="true">{ends}</div></div>'
    )


def _triangle_control(found: PromptLattice, start: int) -> str:
    names = found.objectives
    corners = "".join(
        f'<text x="{x:.0f}" y="{y + (-6 if i == 0 else 14):.0f}" text-anchor="middle">'
        f"{html.escape(name)}</text>"
        for i, (name, (x, y)) in enumerate(zip(names, TRIANGLE, strict=True))
    )
    outline = " ".join(f"{x:.0f},{y:.0f}" for x, y in TRIANGLE)
    dots = "".join(
        f'<circle cx="{x:.1f}" cy="{y:.1f}" r="6.5" role="radio" '
        f'aria-checked="{"true" if i == start else "false"}" '
        f'tabindex="{0 if i == start else -1}" '
        f'aria-label="{html.escape(point_label(names, w))}"></circle>'
        for i, ((x, y), w) in enumerate(
            zip(triangle_xy(found.preferences), found.preferences, strict=True)
        )
    )
    return (
        '<div class="lv-control lv-triangle">'
        f'<svg viewBox="-30 -4 260 182" role="radiogroup" aria-labelledby="{VIEW_ID}-title">'
        f'<polygon points="{outline}" fill="#f0f2f6" stroke="#d6d6d9"></polygon>'
        f"{corners}{dots}</svg></div>"
    )


def view_html(found: PromptLattice, start: int = 0) -> str:
    """The whole view for ``found``, showing lattice point ``start`` first (a full HTML page).

    Every text from the lattice (replies, objective and method names) is escaped.
    """
    if not 0 <= start < len(found.preferences):
        raise ValueError(f"start: expected a lattice point 0..{len(found.preferences) - 1}")
    k, order = len(found.objectives), slider_order(found.preferences)
    label = point_label(found.objectives, found.preferences[start])
    if k == 3:
        title = f'<span class="lv-title" id="{VIEW_ID}-title">Instant preview</span>'
        hint = "click a point or use the arrow keys"
        control = _triangle_control(found, start)
    else:
        title = f'<label for="{VIEW_ID}-range" id="{VIEW_ID}-title">Instant preview</label>'
        hint = "drag or use the arrow keys"
        control = _range_control(found, order, start)
    cost = (
        f"precomputed · {found.passes_per_token} forward pass(es) per token · "
        f"{found.models_kept} model(s) kept"
    )
    points = "".join(
        f'<div class="lv-point{" on" if i == start else ""}" '
        f'data-label="{html.escape(point_label(found.objectives, w))}">'
        + "".join(generation_html(g.text, g.scores) for g in replies)
        + f'<p class="lv-caption">w = ({", ".join(f"{x:.2f}" for x in w)}) · '
        f"{html.escape(cost)}</p></div>"
        for i, (w, replies) in enumerate(zip(found.preferences, found.replies, strict=True))
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><style>{_STYLE}</style>'
        f'</head><body><div id="{VIEW_ID}" data-start="{start}" '
        f'data-order="{html.escape(json.dumps(order))}">'
        f'<div class="lv-head">{title}<span class="lv-hint">{hint}</span></div>'
        f'{control}<output class="lv-w" aria-live="polite">{html.escape(label)}</output>'
        f'<div class="lv-points">{points}</div></div>'
        f"<script>{_SCRIPT.replace('VIEW_ID', VIEW_ID)}</script></body></html>"
    )
