"""The review app in a real browser: `streamlit run app/main.py` on a copy of sample_data/audit, driven by Playwright
through the system's Chromium (no browser download).

Set AUDITOR_SCREENSHOTS=DIR to also save the overview and review pages there (app_overview.png, app_review.png).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from auditor.review import ReviewStore

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (CI installs it with apt)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (the dev extra)")

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data" / "audit"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
STARTUP_S, UI_TIMEOUT_MS = 60, 60_000
VIEWPORT = {"width": 1500, "height": 1950}  # Streamlit scrolls inside the page: a full-page shot needs a tall window


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"streamlit exited with code {server.returncode}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"streamlit did not answer {url}/_stcore/health in {timeout_s} s")


@pytest.fixture
def app_url(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A running app on a copy of the sample audit: its URL and the copy."""
    audit = tmp_path / "audit"
    shutil.copytree(SAMPLE, audit, ignore=shutil.ignore_patterns("reviews.sqlite*"))
    (tmp_path / "faces").symlink_to(SAMPLE.parent / "faces")  # the manifest names the dataset as ../faces
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app/main.py", "--server.port", str(port),
         "--server.headless", "true", "--", "--audit", str(audit)],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"})
    url = f"http://localhost:{port}"
    try:
        wait_healthy(url, server, STARTUP_S)
        yield url, audit
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def current_item(url: str) -> tuple[str, int]:
    query = parse_qs(urlparse(url).query)
    return query["image"][0], int(query["point"][0])


def screenshot(page, tmp_path: Path, name: str) -> None:
    page.wait_for_timeout(1000)  # the charts draw after they appear
    page.screenshot(path=tmp_path / name)
    folder = os.environ.get("AUDITOR_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=Path(folder) / name)


def test_review_in_a_browser(app_url: tuple[str, Path], tmp_path: Path) -> None:
    url, audit = app_url
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=VIEWPORT)
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(url)
            page.get_by_text("Cumulative error distribution").wait_for()
            page.locator(".js-plotly-plot").nth(4).wait_for()
            screenshot(page, tmp_path, "app_overview.png")

            page.get_by_text("Review", exact=True).first.click()
            accept = page.get_by_role("button", name="Accept")
            accept.wait_for()
            page.wait_for_url("**image=*")
            first = current_item(page.url)
            page.locator(".js-plotly-plot").nth(3).wait_for()  # face, zoom, heatmap, surfaces
            screenshot(page, tmp_path, "app_review.png")

            accept.click()
            page.wait_for_function("before => location.href !== before", arg=page.url)
            latest = ReviewStore(audit).latest()
            assert list(zip(latest.image_id, latest.point, latest.decision, strict=True)) == [(*first, "accept")]
            assert current_item(page.url) != first

            # a click on the queue's fourth row (the grid draws on a canvas: rows of 35 px under a 35 px header)
            before = page.url
            grid = page.locator('[data-testid="stDataFrame"]').first.bounding_box()
            page.mouse.click(grid["x"] + 15, grid["y"] + 35 + 3 * 35 + 17)
            page.wait_for_function("before => location.href !== before", arg=before)
            page.get_by_text("item 4 of").wait_for()
        finally:
            browser.close()
