"""Speed of the review app on a large audit: time to open it and time to move to the next item; with --report, the
size of `auditor report`'s page and the time to write it.

    .venv/bin/python benchmarks/app_speed.py [--faces 10000] [--repeats 10] [--workdir DIR] [--report | --browser]

Builds a synthetic audit of `--faces` faces of 68 points (docs/audit_format.md; W = 17 heatmap windows, written as
a memory map in chunks) whose faces reuse the positions, affines and images of sample_data/audit cyclically and
whose scores, issues and windows are random; then drives `app/main.py` with Streamlit's AppTest (a whole script
run each time: AppTest has no fragment-only reruns, so a click in a browser, which reruns the review panel alone,
costs less). Prints a table and, last, one line of key=value pairs.

- open: the first run of a fresh app on the audit, empty caches (the Overview page: reading and indexing the
  tables, the overview's aggregates and charts), and the first run of the Review page after it.
- next item: a click on Accept (a decision written to SQLite, then the next undecided item drawn; on a whole face,
  Accept all proposals) and on Next, each the median over `--repeats` clicks with the caches warm.
- browser (`--browser`, instead of AppTest): the app served as `streamlit run` serves it and driven in Chromium
  (Playwright, the system's /usr/bin/chromium) through a scripted review of `--decisions` items: on the Review
  page, from a fresh reviews.sqlite, click Accept (Accept all proposals on a whole face) and time, by the page's
  clock, from the click event to the next item ready: the URL names it, the panel shows its title, Streamlit no
  longer shows the script as running, and the panel's charts have drawn (their last change, once they have been
  still for QUIET_MS). The time the driver sees is printed beside it: it adds Playwright's own work before the
  click (scrolling, waiting for the button to hold still) and the quiet wait. Then every decision is checked in
  reviews.sqlite.
- report (`--report`, instead of the app): `auditor report AUDIT -o report.html` run as a user runs it (a new
  process, imports included), with the default 24 worst faces; the manifest is pointed at sample_data/faces first,
  so that the thumbnails are cut from real images.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from auditor.audit_dir import load_audit
from auditor.geometry import apply_affine
from auditor.review import REVIEWS
from auditor.triage import FACE

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data" / "audit"
APP = REPO / "app" / "main.py"
SIDE = 17  # the store's window side at R = 64
ISSUE_TYPES = np.array(["gross_error", "off_contour", "swapped_sides", "low_confidence"])


def build_audit(out: Path, faces: int, *, seed: int = 0, swaps: bool = True) -> Path:
    """Write a synthetic audit of `faces` faces into `out` (a new folder); returns it. Without `swaps` no point is
    `swapped_sides`, so that every item of the queue is one point."""
    rng = np.random.default_rng(seed)
    sample = load_audit(SAMPLE)
    s_points, s_images = sample.points.sort_values(["face", "point"]), sample.images.sort_values("face")
    k = int(s_points.point.max()) + 1
    base = len(s_images)
    source = np.arange(faces) % base  # the sample face each synthetic face copies
    rows = (source[:, None] * k + np.arange(k)).ravel()
    n = faces * k
    image_ids = np.array([f"face_{i:05d}" for i in range(faces)], dtype=object)
    score = rng.random(n) ** 3
    issue = score < 0.09**3  # 9 % of the points, as in sample_data/audit
    kinds = ISSUE_TYPES if swaps else ISSUE_TYPES[ISSUE_TYPES != "swapped_sides"]
    issue_type = np.where(issue, rng.choice(kinds, n), np.where(rng.random(n) < 0.4, "contour_slide", ""))
    points = pd.DataFrame({
        "image_id": np.repeat(image_ids, k), "face": np.repeat(np.arange(faces, dtype=np.int32), k),
        "point": np.tile(np.arange(k, dtype=np.int16), faces),
        **{c: s_points[c].to_numpy()[rows] for c in ("point_name", "group", "is_contour", "x_human", "y_human",
                                                      "x_searched", "y_searched", "x_pred", "y_pred")},
        "searched_nme": rng.random(n) * 0.05, "pred_err_nme": rng.random(n) * 0.1,
        "tangential_nme": rng.normal(0, 0.02, n), "normal_nme": rng.normal(0, 0.01, n),
        **{c: rng.random(n).astype(np.float32) for c in ("peak", "anisotropy", "angle", "gaussianity_human",
                                                          "gaussianity_searched", "confidence")},
        "flat_hat": (1 + 5 * rng.random(n)).astype(np.float32),
        "label_score": score, "issue_type": issue_type, "is_label_issue": issue,
    })
    per_face = score.reshape(faces, k)
    images = pd.DataFrame({
        "image_id": image_ids, "face": np.arange(faces, dtype=np.int32),
        "image_path": s_images.image_path.to_numpy()[source], "normaliser": s_images.normaliser.to_numpy()[source],
        "nme_searched": rng.random(faces) * 0.03, "nme_pred": 0.02 + rng.random(faces) * 0.06,
        "worst_point": per_face.argmin(axis=1).astype(np.int16),
        "worst_point_name": s_points.point_name.to_numpy()[:k][per_face.argmin(axis=1)],
        "image_label_score": per_face.min(axis=1), "num_label_issues": issue.reshape(faces, k).sum(axis=1),
        "swapped_sides": np.zeros(faces, bool), "swap_ratio": np.ones(faces),
    })
    manifest = {**sample.manifest, "shard": None,
                "dataset": {**sample.manifest["dataset"], "faces": faces, "images": faces,
                            "fingerprint": f"synthetic-{faces}-{seed}"},
                "counts": {"faces": faces, "points": n, "label_issues": int(issue.sum())},
                "heatmaps": {**sample.manifest.get("heatmaps", {}), "window": SIDE,
                             "bytes_per_face": k * SIDE * SIDE * 2}}
    (out / "heatmaps").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    points.to_parquet(out / "points.parquet", index=False)
    images.to_parquet(out / "images.parquet", index=False)

    affines = np.load(SAMPLE / "heatmaps" / "to_heatmap.npy")[source]  # (N, 3, 3)
    human = points[["x_human", "y_human"]].to_numpy().reshape(faces, k, 2)
    origins = np.floor(apply_affine(affines, human) + 0.5) - SIDE // 2
    np.save(out / "heatmaps" / "to_heatmap.npy", affines)
    np.save(out / "heatmaps" / "origins.npy", origins.astype(np.int16))
    windows = np.lib.format.open_memmap(out / "heatmaps" / "windows.npy", mode="w+", dtype=np.float16,
                                        shape=(faces, k, SIDE, SIDE))
    r = np.arange(SIDE) - SIDE // 2
    bump = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / (2 * 1.5**2)).astype(np.float32)  # (W, W)
    for start in range(0, faces, 1000):
        stop = min(start + 1000, faces)
        noise = rng.random((stop - start, k, SIDE, SIDE), dtype=np.float32) * 0.1
        windows[start:stop] = (0.8 * bump + noise).astype(np.float16)
    windows.flush()
    del windows
    return out


def median_ms(times: list[float]) -> float:
    return 1000 * statistics.median(times)


def measure(audit_dir: Path, repeats: int) -> dict[str, float]:
    """Seconds to open the app and milliseconds per next item (see the module docstring)."""
    os.environ["AUDITOR_AUDIT"] = str(audit_dir)
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP), default_timeout=120)
    t = time.perf_counter()
    at.run()
    open_s = time.perf_counter() - t
    assert not at.exception, at.exception
    at.sidebar.radio(key="page").set_value("Review")
    t = time.perf_counter()
    at.run()
    review_s = time.perf_counter() - t
    assert not at.exception, at.exception
    queue = len(at.dataframe[0].value)
    timings: dict[str, list[float]] = {"accept": [], "next": []}
    for _ in range(repeats):
        for name in timings:
            before = at.session_state["current"]
            key = "accept_face" if name == "accept" and before[1] == FACE else name  # a whole face: Accept all
            t = time.perf_counter()
            at.button(key=key).click().run()
            timings[name].append(time.perf_counter() - t)
            assert not at.exception and at.session_state["current"] != before, (at.exception, before)
    return {"open_s": open_s, "review_open_s": review_s, "next_item_ms": median_ms(timings["accept"]),
            "next_button_ms": median_ms(timings["next"]), "queue_rows": queue}


def use_sample_images(audit_dir: Path) -> None:
    """Point the synthetic audit's manifest at sample_data/faces, whose images its faces reuse."""
    manifest = json.loads((audit_dir / "manifest.json").read_text())
    manifest["dataset"]["path"] = str((SAMPLE / manifest["dataset"]["path"]).resolve())
    (audit_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))


# the next item is ready: the URL has moved on from `before` and names an item, the panel's title names that item,
# Streamlit's script is not running (no running icon, no element left stale by the last run), and the panel's charts
# are drawn (no change inside a plotly chart or a component for QUIET_MS); the time returned is the later of the
# moment the rest held and the charts' last change, in milliseconds since the click, by the page's clock
QUIET_MS = 150
_CLICK_JS = """window.addEventListener('click', () => {
  window.__clickAt = performance.now();
  window.__shownAt = null;
}, true);
new MutationObserver((changes) => {
  if (changes.some(m => (m.target.nodeType === 1 ? m.target : m.target.parentElement)?.closest(
        '[data-testid="stPlotlyChart"], [data-testid="stCustomComponentV1"], [data-testid="stImage"]')))
    window.__chartAt = performance.now();
}).observe(document, {subtree: true, childList: true, attributes: true, characterData: true});"""
_READY_JS = """([before, quiet]) => {
  if (location.href === before) return false;
  const url = new URL(location.href);
  const image = url.searchParams.get("image"), point = url.searchParams.get("point");
  if (image === null || point === null) return false;
  if (document.querySelector('[data-testid="stStatusWidgetRunningIcon"], [data-testid="stStatusWidgetRunningManIcon"], '
                             + '[data-stale="true"]'))
    return false;
  const title = point === "face" ? `${image}, the whole face` : `${image}, point ${point} `;
  if (![...document.querySelectorAll('[data-testid="stMarkdownContainer"]')].some(el => el.innerText.startsWith(title)))
    return false;
  const now = performance.now();
  window.__shownAt ??= now;
  const drawn = Math.max(window.__chartAt ?? 0, window.__shownAt);
  return now - drawn >= quiet && drawn - window.__clickAt;
}"""


def _first_item(page) -> tuple[str, str]:
    """(image, point) of the item the review panel shows, from its title ('face' for a whole face)."""
    import re

    title = page.locator('[data-testid="stMarkdownContainer"]').filter(
        has_text=re.compile(r", (the whole face|point \d+ )")).first.inner_text()
    match = re.match(r"(.+?), (?:the whole (face)|point (\d+) )", title)
    return match[1], match[2] or match[3]


def measure_browser(audit_dir: Path, decisions: int) -> dict[str, float]:
    """Milliseconds from each decision's click to the next item ready in Chromium (median and 90th percentile over
    `decisions`), and whether every decision was stored; see the module docstring."""
    import sqlite3
    from urllib.parse import parse_qs, urlparse

    from playwright.sync_api import sync_playwright

    sys.path.insert(0, str(REPO))  # the `app` package lives beside `auditor`
    from app.serve import CHROMIUM, CHROMIUM_ARGS, serving

    use_sample_images(audit_dir)
    for stale in audit_dir.glob(f"{REVIEWS}*"):  # every run reviews from a fresh store
        stale.unlink()

    def current(url: str) -> tuple[str, str]:
        query = parse_qs(urlparse(url).query)
        return query["image"][0], query["point"][0]

    timings, in_page, decided = [], [], []
    with (serving(audit_dir, startup_s=120) as url, sync_playwright() as playwright):
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1950})
        page.add_init_script(_CLICK_JS)
        page.set_default_timeout(120_000)
        t = time.perf_counter()
        page.goto(url)
        page.get_by_text("Review", exact=True).first.click()
        page.locator(".st-key-accept button, .st-key-accept_face button").first.wait_for()
        review_s = time.perf_counter() - t
        for _ in range(decisions):
            before = page.url
            # the queue's first item is shown before any URL names it: the panel's title names it
            item = current(before) if "point=" in before else _first_item(page)
            key = "accept_face" if item[1] == "face" else "accept"
            button = page.locator(f'.st-key-{key}:not([data-stale="true"]) button').first
            t = time.perf_counter()
            button.click()
            in_page.append(page.wait_for_function(_READY_JS, arg=[before, QUIET_MS]).json_value() / 1000)
            timings.append(time.perf_counter() - t)
            decided.append(item)
        browser.close()
    with sqlite3.connect(audit_dir / "reviews.sqlite") as con:
        rows = con.execute("SELECT image_id, point FROM decisions WHERE decision = 'accept'").fetchall()
    stored = {(image, str(point)) for image, point in rows} | {(image, "face") for image, _ in rows}
    return {"browser_review_s": review_s, "browser_next_ms": median_ms(in_page),
            "browser_next_p90_ms": 1000 * float(np.quantile(in_page, 0.9)), "driver_next_ms": median_ms(timings),
            "decisions": len(decided),
            "stored": int(all(item in stored for item in decided))}


def measure_report(audit_dir: Path, out: Path) -> dict[str, float]:
    """Seconds to write `auditor report` of the audit to `out` (a new process), and the page's size in MB."""
    use_sample_images(audit_dir)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "auditor.cli", "report", str(audit_dir), "-o", str(out)], check=True)
    return {"report_s": time.perf_counter() - t, "report_mb": out.stat().st_size / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=10_000, help="faces of the synthetic audit")
    parser.add_argument("--repeats", type=int, default=10, help="clicks timed per button")
    parser.add_argument("--workdir", type=Path, default=None, help="where to build the audit (default: a temp dir, "
                        "removed afterwards)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--report", action="store_true", help="measure `auditor report` instead of the app")
    mode.add_argument("--browser", action="store_true", help="a scripted review in Chromium instead of AppTest")
    parser.add_argument("--decisions", type=int, default=50, help="decisions of the scripted browser review")
    parser.add_argument("--items", choices=("faces", "points"), default="faces",
                        help="the queue's items: whole faces (most faces of the synthetic audit have a point with "
                             "swapped sides, which makes the face one item) or single points (no swapped sides: the "
                             "point panel, with its zoom and heatmaps)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="app-speed-")) if args.workdir is None else args.workdir
    audit_dir = work / (f"audit-{args.faces}" + ("-points" if args.items == "points" else ""))
    try:
        t = time.perf_counter()
        if not (audit_dir / "manifest.json").is_file():
            shutil.rmtree(audit_dir, ignore_errors=True)
            build_audit(audit_dir, args.faces, swaps=args.items == "faces")
        build_s = time.perf_counter() - t
        if args.report:
            result = measure_report(audit_dir, work / "report.html")
        elif args.browser:
            result = measure_browser(audit_dir, args.decisions)
        else:
            result = measure(audit_dir, args.repeats)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    if args.report:
        print(f"report: {args.faces:,} faces x 68 points, built in {build_s:.1f} s, {os.cpu_count()} CPUs, load "
              f"average {os.getloadavg()[0]:.2f}")
        print(f"{'report.html size':42} {result['report_mb']:>7.1f} MB {'<= 15 MB':>8}")
        print(f"{'report.html written (new process)':42} {result['report_s']:>8.1f} s {'<= 20 s':>8}")
        print(f"report_mb={result['report_mb']:.2f} report_s={result['report_s']:.2f} faces={args.faces}")
        return
    if args.browser:
        print(f"scripted review in Chromium: {args.faces:,} faces x 68 points, {result['decisions']} decisions on "
              f"{'whole faces' if args.items == 'faces' else 'single points'}, "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
        print(f"{'open the Review page (first item ready)':42} {result['browser_review_s']:>8.2f} s {'':>8}")
        print(f"{'decision -> next item ready (median)':42} {result['browser_next_ms']:>7.0f} ms {'<= 300 ms':>8}")
        print(f"{'decision -> next item ready (90th pct)':42} {result['browser_next_p90_ms']:>7.0f} ms {'':>8}")
        print(f"{'  the same from the driver (median)':42} {result['driver_next_ms']:>7.0f} ms {'':>8}")
        print(f"{'every decision stored':42} {'yes' if result['stored'] else 'NO':>10}")
        print(" ".join(f"{k}={v:.1f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items())
              + f" faces={args.faces} items={args.items}")
        return
    print(f"app speed: {args.faces:,} faces x 68 points, W = {SIDE}, built in {build_s:.1f} s, "
          f"{result['queue_rows']:,} points in the review queue, load average {os.getloadavg()[0]:.2f}")
    header = f"{'measure':42} {'time':>10} {'target':>8}"
    print(header)
    print("-" * len(header))
    print(f"{'open (first run, empty caches, Overview)':42} {result['open_s']:>8.2f} s {'< 3 s':>8}")
    print(f"{'open the Review page (first run)':42} {result['review_open_s']:>8.2f} s {'':>8}")
    print(f"{'next item: Accept (median)':42} {result['next_item_ms']:>7.0f} ms {'< 300 ms':>8}")
    print(f"{'next item: Next button (median)':42} {result['next_button_ms']:>7.0f} ms {'< 300 ms':>8}")
    print(f"open_s={result['open_s']:.3f} review_open_s={result['review_open_s']:.3f} "
          f"next_item_ms={result['next_item_ms']:.1f} next_button_ms={result['next_button_ms']:.1f} "
          f"faces={args.faces} queue_rows={result['queue_rows']}")


if __name__ == "__main__":
    main()
