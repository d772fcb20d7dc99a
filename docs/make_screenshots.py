"""Retake the README's screenshots of the review app on sample_data/audit: docs/app_overview.png (the overview page)
and docs/app_review.png (the review page, its queue filtered to chain swaps, on the first of them, its point placed by
a click on the zoom), each 1500 px wide and as tall as the page.

    python docs/make_screenshots.py

It starts `streamlit run app/main.py -- --audit sample_data/audit` on a free port and drives it with the system's
Chromium (/usr/bin/chromium; no browser is downloaded) through Playwright (the dev extra). It records no decision, and
stops when the sample audit holds some (sample_data/audit/reviews.sqlite): the pictures show a fresh audit.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the `app` package lives beside `auditor`, which is the one installed

from app.serve import CHROMIUM, CHROMIUM_ARGS, serving  # noqa: E402
from auditor.audit_dir import REVIEWS  # noqa: E402

AUDIT = Path("sample_data") / "audit"  # relative to ROOT: the sidebar shows this
OUT = ROOT / "docs"
WIDTH, MIN_HEIGHT, MAX_HEIGHT, BOTTOM_MARGIN = 1500, 800, 2400, 48
ISSUE_TYPE = "chain_swap"  # the review page's queue: its first item, two neighbours exchanged
CLICK_AT = (0.5, 0.56)  # where the zoom is clicked, as fractions of its width and height: just below the label
STARTUP_S, TIMEOUT_MS, SETTLE_MS = 60, 120_000, 1500  # SETTLE_MS: plotly's charts draw after they appear


def screenshot(page, path: Path) -> None:
    """The page as tall as its content (Streamlit scrolls inside the page: the window must hold it all)."""
    page.wait_for_timeout(SETTLE_MS)
    bottom = page.locator('[data-testid="stMainBlockContainer"] > [data-testid="stVerticalBlock"]').bounding_box()
    height = round(bottom["y"] + bottom["height"]) + BOTTOM_MARGIN
    page.set_viewport_size({"width": WIDTH, "height": min(max(height, MIN_HEIGHT), MAX_HEIGHT)})
    page.wait_for_timeout(SETTLE_MS)  # the charts follow the new size
    page.screenshot(path=path)
    print(f"wrote {path.relative_to(ROOT)}")


def review_a_point(page) -> None:
    """Filter the queue to one issue type, whose first item opens, and place the point by a click on its zoom."""
    page.get_by_label("Issue type").click()
    page.keyboard.type(ISSUE_TYPE)
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    page.wait_for_url(re.compile(r"point=\d+"))
    zoom = page.frame_locator('iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]').locator("img")
    expect(zoom).not_to_have_js_property("naturalWidth", 0)
    before = page.get_by_text("placed at").inner_text()
    box = zoom.bounding_box()
    zoom.click(position={"x": round(CLICK_AT[0] * box["width"]), "y": round(CLICK_AT[1] * box["height"])})
    expect(page.get_by_text("placed at")).not_to_have_text(before)
    page.mouse.move(0, 0)
    page.get_by_text("3-D surfaces").click()  # off by default
    page.locator(".js-plotly-plot").nth(2).wait_for()  # the face, the heatmap and its surface


def main() -> None:
    if (ROOT / AUDIT / REVIEWS).exists():
        sys.exit(f"{AUDIT / REVIEWS} holds decisions: move it away to take the screenshots of a fresh audit")
    with serving(AUDIT, startup_s=STARTUP_S, env={"LOGNAME": "curator"}) as url, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": WIDTH, "height": MAX_HEIGHT})
        page.set_default_timeout(TIMEOUT_MS)
        expect.set_options(timeout=TIMEOUT_MS)
        page.goto(url)
        page.get_by_text("Cumulative error distribution").wait_for()
        page.locator(".js-plotly-plot").nth(4).wait_for()
        screenshot(page, OUT / "app_overview.png")

        page.set_viewport_size({"width": WIDTH, "height": MAX_HEIGHT})
        page.get_by_text("Review", exact=True).first.click()
        page.get_by_role("button", name="Accept mirrored labels").wait_for()  # the queue opens on a swapped face
        review_a_point(page)
        screenshot(page, OUT / "app_review.png")
        browser.close()


if __name__ == "__main__":
    main()
