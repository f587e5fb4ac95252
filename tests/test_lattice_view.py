"""The browser-side lattice: every precomputed reply of a prompt in one escaped HTML page, a
control that stands only on lattice points, shown by the Steer page on lattice prompts only,
and a move in the browser that changes the text without a round trip to the server."""

from __future__ import annotations

import html
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from app_server import streamlit_app

from morl_core.app import catalog, lattice, lattice_view, serving

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ["soups-sentiment-brevity", "soups-sentiment-brevity-readability"]  # embedded model


def demo_lattice(name: str, prompt: int = 0) -> lattice.PromptLattice:
    run_dir = catalog.DEMO_DIR / name
    data = lattice.read_lattice(run_dir)
    return lattice.prompt_lattice(
        run_dir,
        next(iter(data["methods"])),
        data["prompts"][prompt],
        samples=data["samples"],
        seed=data["seed"],
    )


def made_up(texts: list[str], objectives=("sentiment", "brevity")) -> lattice.PromptLattice:
    """A lattice of one reply per point (two objectives: 0.0, 0.5, 1.0 on the first)."""
    k = len(objectives)
    points = lattice.lattice_points(k)[: len(texts)]
    replies = [[serving.Generation("p", text, dict.fromkeys(objectives, 0.5))] for text in texts]
    return lattice.PromptLattice("soups", "p", tuple(objectives), points, replies, 1, 1)


@pytest.mark.parametrize("demo", DEMOS)
def test_the_view_holds_every_lattice_point_replies_for_the_prompt(demo):
    found = demo_lattice(demo, prompt=1)
    page = lattice_view.view_html(found, 0)
    assert len(found.preferences) == len(lattice.lattice_points(len(found.objectives)))
    assert len(re.findall(r'class="lv-point( on)?"', page)) == len(found.preferences)
    for point, replies in enumerate(found.replies):
        assert len(replies) == 2  # the lattice's samples
        for g in replies:
            assert html.escape(g.text) in page, (point, g.text)
    cards = re.findall(r'<div class="gen-text"[^>]*>(.*?)</div>', page)
    assert [html.unescape(c) for c in cards] == [g.text for r in found.replies for g in r]


def test_replies_are_escaped_never_markup():
    evil = "<script>alert(1)</script><img src=x onerror=alert(2)>"
    found = made_up([evil, "a & b", "fine"], objectives=("sentiment", "<b>brevity</b>"))
    page = lattice_view.view_html(found, 0)
    assert page.count("<script") == 1  # the view's own script only
    assert "<img" not in page and "<b>brevity" not in page
    assert html.escape(evil) in page and "a &amp; b" in page
    assert "&lt;b&gt;brevity&lt;/b&gt;" in page
    triangle = lattice_view.view_html(made_up([evil] * 3, ("sentiment", "brevity", "<i>r</i>")))
    assert triangle.count("<script") == 1 and "<img" not in triangle and "<i>r" not in triangle


def test_two_objectives_slider_snaps_to_lattice_points_ordered_by_the_first_weight():
    found = demo_lattice(DEMOS[0])
    start, distance = lattice.nearest_point(found.preferences, [0.52, 0.48])
    assert np.allclose(found.preferences[start], [0.5, 0.5]) and distance == pytest.approx(0.02)
    page = lattice_view.view_html(found, start)
    slider = re.search(r'<input type="range"[^>]*>', page).group(0)
    m = len(found.preferences)
    assert 'min="0"' in slider and f'max="{m - 1}"' in slider and 'step="1"' in slider
    order = lattice_view.slider_order(found.preferences)
    assert sorted(order) == list(range(m))  # every position is a lattice point, and back
    assert np.all(np.diff(found.preferences[order, 0]) > 0)  # left: all on the second
    assert lattice_view.slider_order(found.preferences[::-1]) == list(range(m))[::-1]
    assert f'value="{order.index(start)}"' in slider
    assert 'aria-valuetext="sentiment 0.50 · brevity 0.50"' in slider
    assert re.search(r'<label for="lattice-view-range"[^>]*>Instant preview</label>', page)
    shown = re.findall(r'class="lv-point( on)?"', page)
    assert [i for i, on in enumerate(shown) if on] == [start]  # only the start point shows
    with pytest.raises(ValueError, match="start"):
        lattice_view.view_html(found, m)


def test_three_objectives_points_on_a_triangle_one_radio_per_lattice_point():
    found = demo_lattice(DEMOS[1])
    start, _ = lattice.nearest_point(found.preferences, [0.33, 0.33, 0.34])
    assert np.allclose(found.preferences[start], [1 / 3] * 3)
    page = lattice_view.view_html(found, start)
    dots = re.findall(r'<circle cx="([\d.]+)" cy="([\d.]+)"[^>]*role="radio"[^>]*>', page)
    xy = lattice_view.triangle_xy(found.preferences)
    assert np.allclose(np.array(dots, dtype=float), xy, atol=0.06)  # one dot per point, only
    assert np.allclose(xy[np.argmax(found.preferences[:, 0])], lattice_view.TRIANGLE[0])
    assert page.count('aria-checked="true"') == 1 and page.count('tabindex="0"') == 1
    assert 'role="radiogroup"' in page
    assert 'aria-label="sentiment 0.33 · brevity 0.33 · readability 0.33"' in page


# --- the Steer page --------------------------------------------------------------------------


def steer_page(tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("MORL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(  # off the lattice the page generates: a stand-in keeps it fast
        serving.SharedSteerable,
        "generate_cached",
        lambda self, prompts, weights, **gen: (["a live reply"] * len(prompts), False),
    )
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300).run()
    assert not at.exception, [e.message for e in at.exception]
    if at.selectbox(key="artifact").value.key != f"demo/{DEMOS[0]}":
        labels = at.selectbox(key="artifact").options
        at.selectbox(key="artifact").select_index(labels.index(f"demo: {DEMOS[0]}")).run()
    return at


def views(at) -> list[str]:
    return [e.proto.srcdoc for e in at.get("iframe") if "lattice-view" in e.proto.srcdoc]


def test_steer_page_shows_the_view_on_a_lattice_prompt_only(tmp_path, monkeypatch):
    at = steer_page(tmp_path, monkeypatch)
    prompt = at.text_area(key="prompt").value
    found = lattice.prompt_lattice(catalog.DEMO_DIR / DEMOS[0], "soups", prompt, samples=2, seed=0)
    assert found is not None, "the page opens on an example prompt of the lattice"
    shown = views(at)
    assert len(shown) == 1
    assert all(html.escape(g.text) in shown[0] for r in found.replies for g in r)
    assert 'data-start="5"' in shown[0]  # the sliders' (0.5, 0.5)
    assert any("instant preview" in c.value for c in at.caption)
    at.slider[0].set_value(0.97).run()  # off the lattice: cards generated live
    assert not at.exception
    assert views(at) == shown  # the same page: the browser keeps the preview where it was
    assert any("a live reply" in m.value for m in at.markdown if "gen-text" in m.value)
    at.text_area(key="prompt").set_value("A prompt the lattice does not hold.").run()
    assert not at.exception
    assert views(at) == []
    assert any("a live reply" in m.value for m in at.markdown if "gen-text" in m.value)
    assert not any("instant preview" in c.value for c in at.caption)
    another = lattice.read_lattice(catalog.DEMO_DIR / DEMOS[0])["prompts"][1]
    at.text_area(key="prompt").set_value(another).run()  # a new prompt opens at the sliders'
    assert not at.exception
    assert len(views(at)) == 1 and 'data-start="10"' in views(at)[0]  # 0.97: nearest is 1.0


# --- in a real browser -----------------------------------------------------------------------

CHROMIUM = os.environ.get("MORL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
# Before the app's scripts: count what the browser sends on the app's websocket.
COUNT_SENDS_JS = """
window.__sent = 0;
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  send(data) { window.__sent += 1; return super.send(data); }
};
"""


@pytest.fixture
def server(tmp_path):
    with streamlit_app(tmp_path / "data") as url:
        yield url


@pytest.mark.slow  # a Streamlit server and Chromium: ~30 s on 2 cores
@pytest.mark.parametrize(
    ("demo", "key"), [(DEMOS[0], "ArrowRight"), (DEMOS[1], "ArrowLeft")], ids=["2", "3"]
)
def test_a_move_in_the_browser_changes_the_reply_without_a_round_trip(server, demo, key):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM} (run .ci/install_browser.sh)")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"])
        try:
            tab = browser.new_page(viewport={"width": 1400, "height": 1600})
            tab.add_init_script(COUNT_SENDS_JS)
            tab.goto(f"{server}/?artifact=demo/{demo}")
            tab.wait_for_selector("iframe[srcdoc*='lattice-view']", timeout=240_000)
            view = tab.frame_locator("iframe[srcdoc*='lattice-view']")
            shown = view.locator(".lv-point.on .gen-text").first
            before, label = shown.inner_text(), view.locator(".lv-w").inner_text()
            control = view.locator("input[type=range], circle[tabindex='0']").first
            control.focus()
            time.sleep(2)  # let the page finish its first runs before counting
            sent = tab.evaluate("window.__sent")
            tab.keyboard.press(key)
            sync_api.expect(view.locator(".lv-w")).not_to_have_text(label, timeout=2_000)
            after = shown.inner_text()
            assert after != before
            assert view.locator(".lv-point.on").count() == 1
            assert tab.evaluate("window.__sent") == sent, "the move went to the server"
        finally:
            browser.close()
