"""The review app in a real browser: `streamlit run app/main.py` on a copy of sample_data/audit, driven by Playwright
through the system's Chromium (no browser download), then the export and the report of what was decided there.

The sample audit has faces whose left and right sides are swapped; the queue, by expected gain, opens on one of them.
The README's screenshots are taken by docs/make_screenshots.py.
"""

from __future__ import annotations

import re
import shutil
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
from audit_fixture import auditor
from PIL import Image

from auditor.audit_dir import audit_scheme, load_manifest
from auditor.review import ReviewStore

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (CI installs it with apt)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the `app` package lives beside `auditor`, which is the one installed

from app.figures import zoom_box, zoom_edges, zoom_to_image  # noqa: E402
from app.review import DEFAULT_ZOOM, MIN_ZOOM_HALF, ZOOM_WIDTH  # noqa: E402
from app.serve import CHROMIUM_ARGS, serving  # noqa: E402

SAMPLE = ROOT / "sample_data" / "audit"
STARTUP_S, UI_TIMEOUT_MS = 60, 60_000
VIEWPORT = {"width": 1500, "height": 1950}  # Streamlit scrolls inside the page: a tall window shows the whole panel
ZOOM = 'iframe[title="streamlit_image_coordinates.streamlit_image_coordinates"]'
PLACED = re.compile(r"placed at \((-?[\d.]+), (-?[\d.]+)\)")
CLICK_AT = (0.3, 0.65)  # where on the zoom the point is placed, as fractions of its width and height


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running app on a copy of the sample audit: its URL and the copy."""
    audit = tmp_path / "audit"
    shutil.copytree(SAMPLE, audit, ignore=shutil.ignore_patterns("reviews.sqlite*"))
    (tmp_path / "faces").symlink_to(SAMPLE.parent / "faces")  # the manifest names the dataset as ../faces
    with (tmp_path / "streamlit.log").open("w") as log, serving(audit, startup_s=STARTUP_S, log=log) as url:
        yield url, audit


@pytest.fixture
def browser() -> Iterator:
    """Chromium, through Playwright."""
    sync_api.expect.set_options(timeout=UI_TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, viewport: dict = VIEWPORT) -> tuple:
    """A page and the list its uncaught script errors and console errors are appended to."""
    page = browser.new_page(viewport=viewport)
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    return page, errors


def current_item(url: str) -> tuple[str, str]:
    """The (image, point) the URL names; point 'face' for the whole face."""
    query = parse_qs(urlparse(url).query)
    return query["image"][0], query["point"][0]


def next_item(page, action) -> tuple[str, str]:
    """Do `action` (a decision), wait for the next item to open; returns it."""
    before = page.url
    action()
    page.wait_for_function("before => location.href !== before", arg=before)
    return current_item(page.url)


def placed_at(page) -> tuple[float, float]:
    """The placed point's position (image px) under the zoom."""
    match = PLACED.search(page.get_by_text(PLACED).inner_text())
    return float(match[1]), float(match[2])


def wait_idle(page) -> None:
    """Wait for Streamlit's run to end: an element comes before the run's last ones, and a key pressed while the run
    goes on is lost."""
    sync_api.expect(page.get_by_test_id("stApp")).to_have_attribute("data-test-script-state", "notRunning")


def wait_placed(page, xy: tuple[float, float]) -> None:
    """Wait for the placed point to show `xy` and the run that drew it to end."""
    sync_api.expect(page.get_by_text(PLACED)).to_have_text(f"placed at ({xy[0]:.2f}, {xy[1]:.2f})")
    wait_idle(page)


def zoom_position(audit: Path, image_id: str, point: int, uv: tuple[int, int], shown: tuple[int, int]) -> tuple:
    """The image position (x, y) of the display pixel `uv` of the zoom on (image_id, point) at the default level,
    shown `shown` (width, height) display px large, and the size of one display pixel in image px."""
    points = pd.read_parquet(audit / "points.parquet").set_index(["image_id", "point"])
    images = pd.read_parquet(audit / "images.parquet").set_index("image_id")
    human = tuple(points.loc[(image_id, point), ["x_human", "y_human"]].to_numpy(dtype=np.float64))
    half = max(MIN_ZOOM_HALF, 0.5 * float(images.normaliser[image_id]) / DEFAULT_ZOOM)
    with Image.open(audit.parent / "faces" / images.image_path[image_id]) as image:
        edges = zoom_edges(zoom_box(human, half, image.size))
    return zoom_to_image(uv, edges, shown), (edges[2] - edges[0]) / shown[0]


def mirror_the_first_face(page, audit: Path) -> tuple[str, np.ndarray]:
    """Open the review page on the queue's first item, a swapped face, and accept its mirrored labels in one click;
    returns the face and the points the decision moves."""
    page.get_by_text("Review", exact=True).first.click()
    mirror = page.get_by_role("button", name="Accept mirrored labels")
    mirror.wait_for()
    image_id, point = current_item(page.url)
    images = pd.read_parquet(audit / "images.parquet").set_index("image_id")
    assert point == "face" and images.swapped_sides[image_id], (image_id, point)

    assert next_item(page, mirror.click) != (image_id, point)
    with sqlite3.connect(audit / "reviews.sqlite") as con:
        rows = con.execute("SELECT image_id, point, decision, x, y FROM decisions").fetchall()
    assert rows == [(image_id, None, "mirror", None, None)]  # one decision on the whole face
    store = ReviewStore(audit)
    moved = store.mirrored_points()
    latest = store.latest()
    assert latest.decision.eq("mirror").all() and latest.image_id.eq(image_id).all()
    assert latest.point.tolist() == moved.tolist()  # ... which every point with a left / right partner follows
    return image_id, moved


def place_and_edit_a_point(page, audit: Path) -> tuple[str, int, tuple[float, float]]:
    """From the face view, open its first flagged point alone, place the point by a click on the zoom, nudge it two
    image pixels right with the arrow keys, and record the edit; returns the point and the position recorded."""
    table = page.locator(".st-key-face_points")
    image_id, _ = current_item(page.url)
    page.get_by_text(f"{image_id}, the whole face").wait_for()  # the face view of the next face, not the last one's
    box = table.bounding_box()
    image_id, point = next_item(page, lambda: page.mouse.click(box["x"] + 15, box["y"] + 35 + 17))  # row 1's marker
    point = int(point)

    zoom = page.frame_locator(ZOOM).locator("img#image")
    sync_api.expect(zoom).to_have_js_property("naturalWidth", ZOOM_WIDTH)  # the zoom's image has loaded
    shown = zoom.evaluate("img => [img.width, img.height]")
    uv = (round(CLICK_AT[0] * shown[0]), round(CLICK_AT[1] * shown[1]))
    before = page.get_by_text(PLACED).inner_text()
    zoom.click(position={"x": uv[0], "y": uv[1]})
    sync_api.expect(page.get_by_text(PLACED)).not_to_have_text(before)
    clicked = placed_at(page)
    expected, tolerance = zoom_position(audit, image_id, point, uv, tuple(shown))
    assert clicked == pytest.approx(expected, abs=tolerance + 0.01)

    # the click left the keyboard's focus in the zoom's iframe, whose keys Streamlit does not hear: a click beside it
    # gives the focus back to the page. A key pressed while the last one is still being handled is lost: one at a time.
    page.get_by_text(PLACED).click()
    wait_idle(page)
    for step in (1, 2):
        page.keyboard.press("ArrowRight")
        wait_placed(page, (clicked[0] + step, clicked[1]))
    assert float(page.get_by_label("x (image px)").input_value()) == pytest.approx(clicked[0] + 2)

    assert next_item(page, page.get_by_role("button", name="Edit").click) != (image_id, str(point))
    latest = ReviewStore(audit).latest().set_index(["image_id", "point"])
    edit = latest.loc[(image_id, point)]
    assert edit.decision == "edit"
    assert (edit.x, edit.y) == pytest.approx((clicked[0] + 2, clicked[1]), abs=1e-6)
    return image_id, point, (edit.x, edit.y)


def check_export(audit: Path, tmp_path: Path, mirrored: tuple[str, np.ndarray], edited: tuple) -> None:
    """`auditor export-corrections` writes the mirrored face's points at their partners' labels, and the edit."""
    out = tmp_path / "corrections.csv"
    r = auditor("export-corrections", audit, "-o", out)
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out)
    face, moved = mirrored
    rows = table[table.image_id == face].set_index("point")
    assert rows.index.tolist() == moved.tolist()
    assert rows.decision.eq("mirror").all() and rows.source.eq("mirrored").all()
    flip = audit_scheme(load_manifest(audit), audit).flip_permutation
    human = pd.read_parquet(audit / "points.parquet").query("image_id == @face").set_index("point")
    partners = human.loc[flip[moved], ["x_human", "y_human"]].to_numpy()
    assert rows[["x_corrected", "y_corrected"]].to_numpy() == pytest.approx(partners, abs=1e-5)

    image_id, point, xy = edited
    edit = table[(table.image_id == image_id) & (table.point == point)]
    assert edit[["decision", "source"]].to_numpy().tolist() == [["edit", "edited"]]
    assert edit[["x_corrected", "y_corrected"]].to_numpy()[0] == pytest.approx(xy, abs=1e-5)
    assert len(table) == len(moved) + 1


def check_report(browser, audit: Path, tmp_path: Path) -> None:
    """`auditor report` writes a page that opens from file:// with every chart drawn and the decisions counted."""
    out = tmp_path / "report.html"
    r = auditor("report", audit, "-o", out, "--worst", "8")
    assert r.returncode == 0, r.stderr
    page, errors = new_page(browser, {"width": 1280, "height": 800})
    page.goto(out.as_uri())
    charts = page.locator('div[id^="chart-"]')
    names = charts.evaluate_all("divs => divs.map(div => div.id)")
    assert {"chart-scores", "chart-by-type", "chart-by-group", "chart-ced"} <= set(names), names
    for name in names:  # plotly drew each: its SVG, and at least one trace in it
        page.locator(f"#{name}.js-plotly-plot .main-svg .trace").first.wait_for(state="attached")
    assert page.locator("img[src^='data:image/jpeg;base64,']").count() == 8  # the worst faces, inline
    issues = pd.read_parquet(audit / "points.parquet").query("is_label_issue")[["image_id", "point"]]
    decided = len(ReviewStore(audit).latest().merge(issues.astype({"point": np.int64})))
    page.get_by_text(f"{decided:,} of the audit's {len(issues):,} label issues decided").wait_for()
    assert errors == []


def test_review_export_and_report_in_a_browser(app_url: tuple[str, Path], browser, tmp_path: Path) -> None:
    url, audit = app_url
    page, errors = new_page(browser)
    page.goto(url)
    page.get_by_text("Cumulative error distribution").wait_for()
    page.locator(".js-plotly-plot").nth(4).wait_for()  # the overview's charts

    mirrored = mirror_the_first_face(page, audit)
    edited = place_and_edit_a_point(page, audit)
    assert errors == []
    check_export(audit, tmp_path, mirrored, edited)
    check_report(browser, audit, tmp_path)
