import base64
import html
import io
import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest
from audit_fixture import assert_one_line_error, auditor
from PIL import Image
from plotly.offline import get_plotlyjs

from auditor.audit_dir import load_audit
from auditor.errors import InputError
from auditor.report import thumbnail, worst_faces, write_report
from auditor.review import ReviewStore

PLANTED = '<script>alert("planted")</script>'
CHARTS = ("chart-scores", "chart-by-type", "chart-by-group", "chart-ced")


class Page(HTMLParser):
    """The tags a report holds that the tests read: scripts, images, element ids, external references."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.scripts, self.images, self.ids, self.external = 0, [], set(), []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attrs = dict(attrs)
        self.scripts += tag == "script"
        if tag == "img":
            self.images.append(attrs["src"])
        if attrs.get("id"):
            self.ids.add(attrs["id"])
        links = [v for k, v in attrs.items() if k in ("src", "href") and v]
        self.external += [v for v in links if not v.startswith(("data:", "#"))]


def calibrate(audit):
    manifest = json.loads((audit / "manifest.json").read_text())
    manifest["scoring"]["issue_threshold"] = 0.0123
    manifest["calibration"] = {"calibrated": True, "target_precision": 0.9, "threshold": 0.0123,
                               "expected_precision": 0.914, "expected_recall": 0.637, "planted": 4321}
    (audit / "manifest.json").write_text(json.dumps(manifest))


def test_report_holds_summary_charts_thumbnails_and_decisions(audit, tmp_path):
    calibrate(audit)
    store = ReviewStore(audit)
    store.record("face_0000", 0, "edit", x=30.0, y=40.0, reviewer="ann")   # issues (every 11th point)
    store.record("face_0000", 11, "accept", reviewer="ann")
    store.record("face_0000", 22, "reject", reviewer="bob")
    store.record("face_0000", 1, "accept", reviewer="bob")                 # not an issue
    out = tmp_path / "shared" / "report.html"
    result = write_report(audit, out, worst=3)

    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert result["worst"] == 3 and result["bytes"] == len(text.encode("utf-8"))
    assert text.count(get_plotlyjs()) == 1 and page.scripts == 2 + len(CHARTS)  # PlotlyConfig, plotly.js, a figure each
    assert set(CHARTS) <= page.ids and not page.external
    assert len(page.images) == 3
    for uri in page.images:
        prefix = "data:image/jpeg;base64,"
        assert uri.startswith(prefix)
        with Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):]))) as thumb:
            assert thumb.format == "JPEG" and thumb.size == (160, 160)

    points = load_audit(audit).points
    issues = int(points.is_label_issue.sum())
    for fact in ("<th>Faces</th><td>6</td>", f"{len(points):,} ({len(points):,} labelled)", f"<td>{issues:,} (",
                 "<th>Issue threshold</th><td>0.0123</td>", "<th>Expected precision</th><td>91.4%</td>",
                 "<th>Expected recall</th><td>63.7%</td>", "<th>Errors planted to calibrate</th><td>4,321</td>",
                 "expected precision 91%, recall 64%"):
        assert fact in text, fact
    assert "<td>accepted</td><td>2</td><td>1</td>" in text  # all decided points, the audit's issues
    assert "<td>rejected</td><td>1</td><td>1</td>" in text and "<td>edited</td><td>1</td><td>1</td>" in text
    assert f"3 of the audit's {issues} label issues decided" in text and "<td>ann</td><td>2</td>" in text


def test_dataset_strings_are_escaped(audit, tmp_path):
    for name in ("points", "images"):
        table = pd.read_parquet(audit / f"{name}.parquet")
        table["image_id"] = table.image_id.replace("face_0000", f"face {PLANTED}")
        if name == "images":
            table.loc[1, "image_path"] = f"{PLANTED}.jpg"
        else:
            table.loc[table.point == 0, "group"] = PLANTED
        table.to_parquet(audit / f"{name}.parquet", index=False)
    out = tmp_path / "report.html"
    write_report(audit, out, worst=6)

    text = out.read_text(encoding="utf-8")
    page = Page(text)
    assert PLANTED not in text and page.scripts == 2 + len(CHARTS)
    assert f"<b>face {html.escape(PLANTED)}</b>" in text  # the image id, shown as text
    assert f"<br>{html.escape(PLANTED)}.jpg<br>" in text and "image not found" in text  # the image path
    assert f"<td>{html.escape(PLANTED)}</td>" in text  # the group, in the table of rates
    assert len(page.images) == 6 and not (audit / "reviews.sqlite").exists()
    assert "No decision recorded yet" in text


def test_cli_writes_the_report_and_refuses_a_non_audit(audit, tmp_path):
    out = tmp_path / "report.html"
    r = auditor("report", audit, "-o", out, "--worst", "2")
    assert r.returncode == 0, r.stderr
    assert "wrote the report on 6 faces" in r.stdout and "the 2 worst faces shown" in r.stdout
    assert len(Page(out.read_text(encoding="utf-8")).images) == 2

    (tmp_path / "plain").mkdir()
    assert_one_line_error(auditor("report", tmp_path / "plain", "-o", tmp_path / "other.html"), "missing manifest.json")
    assert not (tmp_path / "other.html").exists()
    before = (audit / "points.parquet").read_bytes()
    assert_one_line_error(auditor("report", audit, "-o", audit / "points.parquet"), "input of the command")
    assert (audit / "points.parquet").read_bytes() == before


def test_refuses_to_write_over_the_audit_or_the_dataset(base, audit, tmp_path):
    faces = base[0]
    ReviewStore(audit).record("face_0000", 0, "reject")
    for target in (audit / "manifest.json", audit / "reviews.sqlite", faces / "face_0001.pts",
                   faces / "face_0002.jpg", faces / "report.html"):
        before = target.read_bytes() if target.exists() else None
        with pytest.raises(InputError, match="input of the command"):
            write_report(audit, target)
        assert (target.read_bytes() if target.exists() else None) == before
    with pytest.raises(InputError, match="is a folder"):
        write_report(audit, tmp_path)
    write_report(audit, audit / "report.html", worst=1)  # beside the audit's files: allowed, as for exports


def test_thumbnail_draws_labels_green_and_flagged_proposals_red():
    human = np.array([[30.0, 40.0], [70.0, 40.0], [50.0, 70.0]])
    proposed = human + [0.0, 12.0]

    def colours(image, flagged):
        pixels = np.asarray(Image.open(io.BytesIO(thumbnail(image, human, proposed, flagged))).convert("RGB"),
                            dtype=int)
        r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
        return int(((g > r + 40) & (g > b + 40)).sum()), int(((r > g + 60) & (r > b + 60)).sum())

    grey = Image.new("RGB", (100, 100), (128, 128, 128))
    green, red = colours(grey, np.array([True, False, False]))
    assert green > 5 and red > 5
    green, red = colours(grey, np.zeros(3, bool))
    assert green > 5 and red == 0
    green, red = colours(None, np.ones(3, bool))  # no image: the marks on grey
    assert green > 5 and red > 5


def test_worst_faces_are_lowest_score_then_most_issues():
    points = pd.DataFrame({"image_id": np.repeat(["a", "b", "c", "d"], 3),
                           "label_score": [0.9, 0.5, 0.9, 0.01, 0.9, 0.9, 0.01, 0.02, 0.9, np.nan, np.nan, np.nan],
                           "is_label_issue": np.array([0, 0, 0, 1, 0, 0, 1, 1, 0, 0, 0, 0], bool)})
    worst = worst_faces(points, 3)
    assert worst.image_id.tolist() == ["c", "b", "a"] and worst.issues.tolist() == [2, 1, 0]
