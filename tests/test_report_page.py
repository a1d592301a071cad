"""report.html in a real browser: Debian's headless Chromium, driven by Playwright, opens the page of
an evaluated sweep at a phone's width (390x844, as a phone lays it out) and a desktop's (1280x900).

What a string test of the HTML cannot tell: whether the page scrolls sideways on a phone, whether each
embedded PNG decodes, whether the wide tables scroll inside their own box. The screenshots are saved
under the test's tmp_path, to look at. Skipped only where /usr/bin/chromium is missing (`.ci/run`
installs it); Playwright's own browsers are never downloaded.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from test_report import write_evaluated_sweep, write_regression_sweep

from sweeper.report import write_report

CHROMIUM = Path("/usr/bin/chromium")
# A closed network: no background requests, updates or QUIC (each floods errors and delays the start).
# Playwright starts it with a fresh temporary profile (--user-data-dir) of its own, removed on close.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
PHONE, DESKTOP = (390, 844), (1280, 900)

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(),
                                reason=f"{CHROMIUM} not found (apt-get install chromium; .ci/run does)")

MEASURE = """() => ({
    innerWidth: window.innerWidth,
    scrollWidth: document.documentElement.scrollWidth,
    images: [...document.images].map(img => ({file: img.dataset.file, complete: img.complete,
        natural: img.naturalWidth, right: img.getBoundingClientRect().right})),
    sections: [...document.querySelectorAll("h2")].map(h => h.textContent),
    tables: [...document.querySelectorAll(".table")].map(box => ({
        first: box.querySelector("th").textContent, right: box.getBoundingClientRect().right,
        scrolls: box.scrollWidth > box.clientWidth})),
})"""


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """report.html of a classification sweep and of a regression sweep, both evaluated on a test split."""
    root = tmp_path_factory.mktemp("results")
    classification = write_report(write_evaluated_sweep(root / "classification" / "evaluated"))
    regression = write_report(write_regression_sweep(root / "regression" / "evaluated")[0])
    return {"classification": classification, "regression": regression}


def _open(browser, page: Path, size: tuple[int, int], screenshot: Path) -> dict:
    """The page as the browser laid it out at this size (a phone's: mobile, touch), with a full-page screenshot."""
    phone = size == PHONE
    context = browser.new_context(viewport={"width": size[0], "height": size[1]}, is_mobile=phone, has_touch=phone)
    try:
        tab = context.new_page()
        tab.goto(page.as_uri(), wait_until="load")
        measured = tab.evaluate(MEASURE)
        tab.screenshot(path=screenshot, full_page=True)
    finally:
        context.close()
    return measured


@pytest.mark.parametrize("kind", ["classification", "regression"])
@pytest.mark.parametrize("size", [PHONE, DESKTOP], ids=["phone", "desktop"])
def test_the_report_reads_at_a_phones_width_and_a_desktops(browser, pages, kind, size, tmp_path):
    screenshot = tmp_path / f"report_{kind}_{size[0]}x{size[1]}.png"
    measured = _open(browser, pages[kind], size, screenshot)
    # A phone lays the page out at its own width only with the viewport meta tag (else at 980 px, shrunk).
    assert measured["innerWidth"] == size[0]
    assert measured["scrollWidth"] <= measured["innerWidth"]  # the page itself never scrolls sideways
    assert measured["sections"] == ["Test evaluation", "Charts", "Leaderboard", "Data"]
    plot = "evaluation/confusion_matrix.png" if kind == "classification" else "evaluation/predicted_vs_true.png"
    files = [image["file"] for image in measured["images"]]
    assert files == [plot, "learning_curves.png", "asha_rungs.png", "param_importance.png",
                     "objective_vs_latency.png"]
    for image in measured["images"]:
        assert image["complete"] and image["natural"] > 0, image["file"]  # the PNG decoded
        assert image["right"] <= size[0], image["file"]  # and shrank to the width
    assert all(table["right"] <= size[0] for table in measured["tables"])
    # The leaderboard's 27 columns are wider than either: its box scrolls, not the page; at a desktop's
    # width the other tables fit.
    scrolling = [table["first"] for table in measured["tables"] if table["scrolls"]]
    assert "rank" in scrolling and (size == PHONE or scrolling == ["rank"])
    assert screenshot.stat().st_size > 10_000
