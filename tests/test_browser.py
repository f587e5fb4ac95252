"""Real-browser smoke test: Debian's Chromium driven by Playwright against ``streamlit run app.py``.

Opens every page, moves a preference slider and waits for the generation to change, clicks a
point on the Fronts chart and waits for its generations, and saves a screenshot of each step
to ``tests/screenshots/`` (git-ignored; CI keeps them as artifacts).

Skipped, with the reason, when Playwright or a Chromium binary is missing; ``.ci/install_browser.sh``
installs both (the Playwright browser download is not used: it needs network access to a CDN).
Set ``MORL_CHROMIUM`` to use another Chromium/Chrome binary.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from app_server import streamlit_app

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "tests" / "screenshots"
CHROMIUM = os.environ.get("MORL_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# A page URL first: a fresh server must still route it through app.py (not legacy pages/ mode).
PAGES = {
    "train": "train",
    "steer": "",
    "fronts": "fronts",
    "relations": "relations",
    "benchmark": "benchmark",
    "learn": "learn",
}

playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed (run .ci/install_browser.sh)"
)
if not Path(CHROMIUM).exists():
    pytest.skip(
        f"no Chromium at {CHROMIUM} (run .ci/install_browser.sh or set MORL_CHROMIUM)",
        allow_module_level=True,
    )


def twenty_point_front(data: Path) -> None:
    """A 20-point 2-objective front of the soups demo served by MOD, in the app's front cache
    (what the app writes after evaluating it), so a click on every point can be tried."""
    import json

    import numpy as np

    from morl_core.app import catalog
    from morl_core.evaluation import default_protocol

    demo = catalog.DEMO_DIR / "soups-sentiment-brevity"
    t = np.linspace(0.0, 1.0, 20)
    x = 0.3 + 0.6 * t
    front = {
        "method": "mod",
        "objectives": ["sentiment", "brevity"],
        "preferences": np.stack([t, 1 - t], 1).round(4).tolist(),
        "points": np.stack([x, 0.3 + 0.6 * np.sqrt(1 - t**2)], 1).tolist(),
        "protocol_version": default_protocol().version,  # an older cached front is re-evaluated
    }
    cache = data / "app" / "fronts" / f"{catalog.slug(str(demo.resolve()))}.mod.json"
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(front))


def second_morlhf_run(data: Path) -> None:
    """A finished morlhf run (a copy of the demo's artifact), as after someone trained one."""
    from morl_core.app import catalog
    from morl_core.config import RunConfig
    from morl_core.jobs import RunStore

    store = RunStore(data)
    status = store.create(
        RunConfig(method="morlhf", objectives=("sentiment", "brevity"), steps=2), executor="local"
    )
    folder = store.run_dir(status.run_id)
    demo = catalog.DEMO_DIR / "morlhf-sentiment-brevity"
    for name in ("artifact.json", "front.json", "front.jsonl", "metrics.jsonl"):
        if (demo / name).exists():
            shutil.copy(demo / name, folder / name)
    shutil.copytree(demo / "adapters", folder / "adapters")
    store.update(status.run_id, {"state": "succeeded", "finished": time.time()})


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``streamlit run app.py`` on a free port with a fresh data directory (plus a 20-point
    front and a second morlhf artifact)."""
    data = tmp_path_factory.mktemp("data")
    twenty_point_front(data)
    second_morlhf_run(data)
    with streamlit_app(data) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab = browser.new_page(viewport={"width": 1400, "height": 1800})
    yield tab
    tab.close()


def settle(tab, timeout: float = 240.0) -> None:
    """Wait until the page has a title and the app has stopped running for a moment."""
    tab.wait_for_selector('[data-testid="stMainBlockContainer"] h1', timeout=timeout * 1000)
    quiet, deadline = 0, time.time() + timeout
    while quiet < 6 and time.time() < deadline:
        running = tab.query_selector('[data-testid="stStatusWidget"]') is not None
        quiet = 0 if running else quiet + 1
        time.sleep(0.25)


def no_exception(tab) -> None:
    errors = tab.query_selector_all('[data-testid="stException"]')
    assert not errors, errors[0].inner_text()


def first_generation(tab) -> str:
    return tab.locator(".gen-text").first.inner_text()


@pytest.mark.parametrize("name", list(PAGES))
def test_page_opens_without_exception(server, page, name):
    page.goto(f"{server}/{PAGES[name]}")
    settle(page)
    no_exception(page)
    nav = page.locator('[data-testid="stSidebarNav"]').inner_text()
    assert "Steer" in nav and "widgets" not in nav.lower(), "not routed through app.py"
    page.screenshot(path=SHOTS / f"{name}.png")


def test_slider_move_changes_the_generation(server, page):
    page.goto(server)
    settle(page)
    page.wait_for_selector(".gen-text")
    before = first_generation(page)
    thumb = page.locator('[data-testid="stSlider"] input[type="range"]').first
    thumb.focus()
    page.keyboard.press("End")  # sentiment 0.50 -> 1.00: the sentiment expert alone
    page.wait_for_function(
        "(old) => { const g = document.querySelector('.gen-text');"
        " return g && g.innerText !== old; }",
        arg=before,
        timeout=60_000,
    )
    settle(page)
    no_exception(page)
    assert first_generation(page) != before
    page.screenshot(path=SHOTS / "steer-after-slider.png")


def selected_point(tab) -> str:
    return tab.get_by_text("selected:", exact=False).first.inner_text()


def test_click_a_front_point_shows_its_generations(server, page):
    page.goto(f"{server}/fronts")
    settle(page)
    before = selected_point(page)
    points = page.locator(".js-plotly-plot .scatterlayer .trace").first.locator(".points path")
    assert points.count() >= 2
    box = points.nth(1).bounding_box()  # plotly listens on its drag layer: click the spot
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_function(
        "(old) => [...document.querySelectorAll('p')]"
        ".some(e => e.innerText.startsWith('selected:') && e.innerText !== old)",
        arg=before,
        timeout=60_000,
    )
    settle(page)
    no_exception(page)
    assert selected_point(page) != before
    assert page.locator(".gen-text").count() >= 2
    page.screenshot(path=SHOTS / "fronts-after-click.png")


def test_every_point_of_a_20_point_front_can_be_clicked_at_1366x768(server, browser):
    tab = browser.new_page(viewport={"width": 1366, "height": 768})
    try:
        tab.goto(
            f"{server}/fronts?objectives=sentiment,brevity&fronts=demo/soups-sentiment-brevity:mod"
        )
        settle(tab)
        no_exception(tab)
        trace = tab.locator(".js-plotly-plot .scatterlayer .trace").first.locator(".points path")
        assert trace.count() == 20
        seen = {selected_point(tab)}
        for i in range(20):
            trace = tab.locator(".js-plotly-plot .scatterlayer .trace").first.locator(
                ".points path"
            )
            trace.nth(i).scroll_into_view_if_needed()
            box = trace.nth(i).bounding_box()
            before = selected_point(tab)
            tab.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
            if i:  # the first point is selected on arrival
                tab.wait_for_function(
                    "(old) => [...document.querySelectorAll('p')]"
                    ".some(e => e.innerText.startsWith('selected:') && e.innerText !== old)",
                    arg=before,
                    timeout=60_000,
                )
            settle(tab)
            no_exception(tab)
            seen.add(selected_point(tab))
        assert len(seen) == 20, seen
        tab.screenshot(path=SHOTS / "fronts-20-points.png")
    finally:
        tab.close()


def test_compare_two_artifacts_of_one_method(server, page):
    page.goto(server)
    settle(page)
    page.get_by_text("Compare methods").click()
    page.wait_for_selector('[data-testid="stMultiSelect"]', timeout=60_000)
    settle(page)
    page.locator('[data-testid="stMultiSelect"] input').first.click()
    page.keyboard.type("morlhf · run")  # the second morlhf artifact (a trained run)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_function(
        "() => [...document.querySelectorAll('h3')].filter(h => h.innerText.trim() === 'morlhf')"
        ".length === 2",
        timeout=180_000,
    )
    settle(page)
    no_exception(page)
    assert page.get_by_text("Something went wrong").count() == 0
    assert page.locator(".gen-text").count() >= 6  # 3 methods x 2 samples
    page.screenshot(path=SHOTS / "steer-compare.png")


def test_start_cancel_and_resume_a_run(server, page):
    page.goto(f"{server}/train")
    settle(page)
    page.get_by_role("button", name="Start training").click()
    page.get_by_role("button", name="Cancel run").click(timeout=120_000)
    page.get_by_role("button", name="Resume").click(timeout=120_000)
    settle(page)
    no_exception(page)
    cancel = page.get_by_role("button", name="Cancel run")
    if cancel.count():  # resumed and queued or running again: end it, leave nothing behind
        cancel.click()
    page.get_by_role("button", name="Resume").wait_for(timeout=120_000)
    no_exception(page)
    page.get_by_text("Worker log (the end)").click()
    assert "/tmp/" not in page.locator('[data-testid="stCode"]').last.inner_text()
    page.screenshot(path=SHOTS / "train-cancel-resume.png")


def test_phone_width_learn_page_does_not_overflow(server, browser):
    tab = browser.new_page(viewport={"width": 390, "height": 844})
    try:
        tab.goto(f"{server}/learn")
        settle(tab)
        no_exception(tab)
        assert tab.evaluate("document.documentElement.scrollWidth") <= 392
        tab.screenshot(path=SHOTS / "learn-phone.png")
    finally:
        tab.close()


# --- the landing page on a fresh machine ------------------------------------------------------

SMOLLM2_DEMO = "smollm2-soups-formality-readability"  # what the README's two commands land on


def collapsed(text: str) -> str:
    """``text`` with its whitespace runs as single spaces, as a card's ``innerText`` shows it."""
    return " ".join(text.split())


@pytest.fixture(scope="module")
def unpinned_server(tmp_path_factory):
    """``streamlit run app.py`` as the README starts it: every shipped demo listed (no
    ``MORL_UI_DEMO_MODELS`` pin) and a fresh, empty data directory."""
    from morl_core.app import catalog

    if not catalog.model_here("smollm2-135m"):
        pytest.skip("the SmolLM2 wheel is not installed: the app lands on the embedded demo")
    data = tmp_path_factory.mktemp("fresh-data")
    with streamlit_app(data, unset=("MORL_UI_DEMO_MODELS",), start_s=120) as url:
        yield url


@pytest.mark.slow
def test_landing_page_shows_smollm2_replies_steered_by_the_preview(unpinned_server, page):
    """A fresh app opens Steer on the SmolLM2 demo with its lattice replies for the default
    prompt (no model loaded), and one arrow key in the instant preview shows the next point's."""
    import json

    from morl_core.app import catalog

    demo = catalog.DEMO_DIR / SMOLLM2_DEMO
    assert json.loads((demo / "config.json").read_text())["model"] == "smollm2-135m"
    lattice = json.loads((demo / "lattice.json").read_text())
    preferences = [tuple(w) for w in lattice["preferences"]]
    replies = lattice["methods"]["soups"]["replies"]  # [prompt][point][sample] = [text, scores]
    prompt = catalog.example_prompts(prompt_set="assistant")[0]  # the Steer default prompt

    def texts(point: tuple[float, float]) -> list[str]:
        row = replies[lattice["prompts"].index(prompt)][preferences.index(point)]
        return [collapsed(text) for text, _ in row]

    centre, next_right = texts((0.5, 0.5)), texts((0.6, 0.4))  # sliders start at the centre
    assert centre != next_right

    page.goto(unpinned_server)
    page.wait_for_selector("iframe[srcdoc*='lattice-view']", timeout=300_000)
    settle(page, timeout=300.0)
    no_exception(page)
    picked = page.get_by_role("combobox", name="Trained artifact").input_value()
    assert picked == f"demo: {SMOLLM2_DEMO}", picked
    assert SMOLLM2_DEMO in page.url, page.url  # the view is kept in the URL
    assert page.locator('[data-testid="stTextArea"] textarea').first.input_value() == prompt

    # the cards: the lattice's replies at the centre, shown with no model loaded
    cards = [collapsed(t) for t in page.locator(".gen-text").all_inner_texts()]
    assert cards == centre, cards
    assert page.get_by_text("precomputed at this lattice point").count() == 1

    # the instant preview opens at the same point; one arrow key moves to formality 0.6
    view = page.frame_locator("iframe[srcdoc*='lattice-view']")
    shown = view.locator(".lv-point.on .gen-text")
    assert [collapsed(t) for t in shown.all_inner_texts()] == centre
    view.locator("input[type=range]").focus()
    page.keyboard.press("ArrowRight")
    playwright.expect(view.locator(".lv-w")).to_have_text(
        "formality 0.60 · readability 0.40", timeout=10_000
    )
    assert [collapsed(t) for t in shown.all_inner_texts()] == next_right
    no_exception(page)
    page.screenshot(path=SHOTS / "steer-landing-smollm2.png")
