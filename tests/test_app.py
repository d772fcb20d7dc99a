"""The review app (app/main.py), driven by Streamlit's AppTest on a copy of sample_data/audit; and its pure helpers."""

from __future__ import annotations

import base64
import io
import json
import shutil
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from auditor.audit_dir import load_audit, proposals
from auditor.charts import annotator_ranking_figure
from auditor.errors import InputError
from auditor.export import corrections
from auditor.review import ReviewStore
from auditor.triage import FACE

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the `app` package lives beside `auditor`, which is the one installed

from app.audit_view import load_heatmaps  # noqa: E402
from app.figures import (  # noqa: E402
    heatmap_figure,
    ideal_window,
    zoom_box,
    zoom_edges,
    zoom_image,
    zoom_to_image,
)
from app.text import md_text  # noqa: E402

APP = ROOT / "app" / "main.py"
SAMPLE = ROOT / "sample_data" / "audit"
TIMEOUT = 60  # seconds per script run: the machine may be busy


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


@pytest.fixture
def audit_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the sample audit beside a link to the sample faces (the manifest names its dataset relative to the
    audit), opened by the app through $AUDITOR_AUDIT; caches cleared before and after."""
    copy = tmp_path / "audit"
    shutil.copytree(SAMPLE, copy, ignore=shutil.ignore_patterns("reviews.sqlite*"))
    (tmp_path / "faces").symlink_to(SAMPLE.parent / "faces")
    monkeypatch.setenv("AUDITOR_AUDIT", str(copy))
    clear_caches()
    yield copy
    clear_caches()


def run_app(page: str | None = None, **query: str) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=TIMEOUT)
    at.query_params.update(query)
    at.run()
    if page is not None:
        at.sidebar.radio(key="page").set_value(page).run()
    assert not at.exception, at.exception
    return at


def queue_table(at: AppTest) -> pd.DataFrame:
    return at.dataframe(key="queue").value


def item_at(queue: pd.DataFrame, position: int) -> tuple[str, int]:
    """The (image_id, point) of a row of the queue's table: point FACE for a whole face (its point is empty)."""
    point = queue.point[position]
    return str(queue.image_id[position]), FACE if pd.isna(point) else int(point)


def gross_errors_only(at: AppTest) -> AppTest:
    """The queue filtered to gross errors: points only (the sample's swapped faces, first by gain, are faces)."""
    at.multiselect(key="f_types").set_value(["gross_error"]).run()
    assert not at.exception, at.exception
    return at


def test_opens_the_sample_audit_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AUDITOR_AUDIT", raising=False)
    clear_caches()
    at = run_app()
    assert at.sidebar.text_input(key="audit_dir").value == str(SAMPLE)
    assert at.sidebar.radio(key="page").value == "Overview"
    assert {m.label: m.value for m in at.metric}["Faces"] == f"{len(load_audit(SAMPLE).images):,}"
    assert len(at.get("plotly_chart")) == 5
    assert not at.error
    clear_caches()


def test_overview_counts_the_audit(audit_copy: Path) -> None:
    points = load_audit(audit_copy).points
    metrics = {m.label: m.value for m in run_app().metric}
    assert metrics["Label issues"] == f"{int(points.is_label_issue.sum()):,}"
    assert metrics["Points"] == f"{len(points):,}"


def test_overview_states_the_calibrated_precision(audit_copy: Path) -> None:
    manifest = json.loads((audit_copy / "manifest.json").read_text())
    manifest["scoring"]["issue_threshold"] = 0.0123
    manifest["calibration"] = {"calibrated": True, "target_precision": 0.9, "threshold": 0.0123,
                               "expected_precision": 0.914, "expected_recall": 0.637, "planted": 4321}
    (audit_copy / "manifest.json").write_text(json.dumps(manifest))
    captions = " ".join(c.value for c in run_app().caption)
    assert "threshold 0.0123, calibrated to a precision of 90% on 4,321 errors" in captions
    assert "expected precision 91%, recall 64%" in captions
    manifest["calibration"] = {"calibrated": False, "target_precision": None, "reason": "no target precision"}
    (audit_copy / "manifest.json").write_text(json.dumps(manifest))
    assert "not calibrated: no target precision" in " ".join(c.value for c in run_app().caption)


def test_a_missing_audit_shows_an_error(audit_copy: Path) -> None:
    at = run_app()
    at.sidebar.text_input(key="audit_dir").set_value(str(audit_copy / "nowhere")).run()
    assert not at.exception
    assert "Cannot open" in at.error[0].value
    assert "no such audit directory" in at.code[0].value


def test_queue_groups_swapped_faces_orders_by_gain_and_filters(audit_copy: Path) -> None:
    points = load_audit(audit_copy).points
    swapped = points.issue_type == "swapped_sides"
    at = run_app("Review")
    queue = queue_table(at)
    faces = queue[queue.point.isna()]
    assert set(faces.image_id) == set(points.image_id[swapped]) and (faces.issue_type == "swapped_sides").all()
    assert len(queue) == points.image_id[swapped].nunique() + int((points.is_label_issue & ~swapped).sum())
    assert queue.gain.is_monotonic_decreasing
    assert at.session_state["current"] == item_at(queue, 0) and at.session_state["current"][1] == FACE
    at.radio(key="f_order").set_value("score").run()
    assert queue_table(at).label_score.is_monotonic_increasing

    at.checkbox(key="f_issues_only").uncheck()
    at.multiselect(key="f_groups").set_value(["mouth"]).run()
    queue = queue_table(at)
    mouth = points.group == "mouth"
    assert len(queue) == int((mouth & ~swapped).sum()) + points.image_id[mouth & swapped].nunique()
    assert set(queue.group) == {"mouth", ""}  # a whole face has no group

    at.multiselect(key="f_types").set_value(["gross_error"])
    at.text_input(key="f_image").set_value("face_001").run()
    queue = queue_table(at)
    expected = points[mouth & (points.issue_type == "gross_error")
                      & points.image_id.str.contains("face_001", regex=False)]
    assert len(queue) == len(expected) > 0
    assert at.session_state["current"] == item_at(queue, 0)  # the selection follows the queue


def test_accept_records_at_once_and_moves_on(audit_copy: Path) -> None:
    at = gross_errors_only(run_app("Review"))
    queue = queue_table(at)
    first = (queue.image_id[0], int(queue.point[0]))
    assert at.session_state["current"] == first
    assert (at.query_params["image"], at.query_params["point"]) == (first[0], str(first[1]))
    assert {m.label: m.value for m in at.metric}["Error removed so far (NME)"] == "0.000"

    at.button(key="accept").click().run()
    latest = ReviewStore(audit_copy).latest()
    assert list(zip(latest.image_id, latest.point, latest.decision, strict=True)) == [(*first, "accept")]
    points = load_audit(audit_copy).points
    row = np.flatnonzero((points.image_id == first[0]) & (points.point == first[1]))[0]
    xs, ys, _ = proposals(points)
    assert (latest.x[0], latest.y[0]) == pytest.approx((xs[row], ys[row]))  # the proposal: searched or predicted
    assert at.session_state["current"] == (queue.image_id[1], int(queue.point[1]))
    assert queue_table(at).decision[0] == "accept"
    assert "1 of" in at.get("progress")[0].proto.text
    removed = corrections(load_audit(audit_copy), latest, only="accepted").displacement_nme.sum()
    assert {m.label: m.value for m in at.metric}["Error removed so far (NME)"] == f"{removed:.3f}" != "0.000"


def test_reject_and_edit(audit_copy: Path) -> None:
    at = gross_errors_only(run_app("Review"))
    queue = queue_table(at)
    at.button(key="reject").click().run()
    at.number_input(key="edit_x").set_value(12.5)
    at.number_input(key="edit_y").set_value(34.25)
    next(b for b in at.button if b.label == "Edit").click().run()
    latest = ReviewStore(audit_copy).latest().set_index(["image_id", "point"])
    assert latest.loc[(queue.image_id[0], queue.point[0]), "decision"] == "reject"
    edited = latest.loc[(queue.image_id[1], queue.point[1])]
    assert (edited.decision, edited.x, edited.y) == ("edit", 12.5, 34.25)
    assert at.session_state["current"] == (queue.image_id[2], int(queue.point[2]))


def test_the_error_removed_follows_a_changed_decision(audit_copy: Path) -> None:
    at = gross_errors_only(run_app("Review"))
    first = at.session_state["current"]
    at.button(key="accept").click().run()
    assert {m.label: m.value for m in at.metric}["Error removed so far (NME)"] != "0.000"
    at.button(key="previous").click().run()
    assert at.session_state["current"] == first
    at.button(key="reject").click().run()  # the same face, decided again: its share is computed anew
    assert {m.label: m.value for m in at.metric}["Error removed so far (NME)"] == "0.000"


def test_the_next_undecided_item_scan_agrees_with_every_items_decision(audit_copy: Path) -> None:
    from app.audit_view import build_view
    from app.review import SCAN, _next_undecided, build_queue, item_decisions

    view = build_view(audit_copy)
    filters = (("groups", ()), ("image_query", ""), ("issue_types", ()), ("issues_only", False), ("order", "gain"),
               ("point_names", ()))
    queue = build_queue(view, filters)
    rng = np.random.default_rng(0)
    assert len(queue) > 4 * SCAN and (queue.points == FACE).any()
    items = [queue.item(i) for i in range(len(queue))]
    points = [(image_id, int(p)) for image_id, point in items
              for p in (queue.members[image_id] if point == FACE else [point])]
    for fraction in (0.0, 0.3, 0.97, 1.0):  # at 0.97 the next undecided item is mostly beyond SCAN
        chosen = [points[i] for i in np.flatnonzero(rng.random(len(points)) < fraction)]
        decisions = pd.DataFrame({"image_id": [c[0] for c in chosen], "point": [c[1] for c in chosen],
                                  "decision": "accept"})
        _, done = item_decisions(queue, decisions)
        for start in [None, *rng.choice(len(queue), 20)]:
            first = 0 if start is None else start + 1
            following = np.flatnonzero(~done[first:])
            expected = queue.item(first + following[0]) if len(following) else None
            assert _next_undecided(queue, None if start is None else items[start], decisions) == expected


def test_next_and_previous_walk_the_queue(audit_copy: Path) -> None:
    at = run_app("Review")
    queue = queue_table(at)
    at.button(key="next").click().run()
    at.button(key="next").click().run()
    assert at.session_state["current"] == item_at(queue, 2)
    at.button(key="previous").click().run()
    assert at.session_state["current"] == item_at(queue, 1)
    assert ReviewStore(audit_copy).latest().empty


def test_deep_link_opens_the_item(audit_copy: Path) -> None:
    points = load_audit(audit_copy).points
    quiet = points[~points.is_label_issue].iloc[5]  # not in the default queue: shown all the same
    at = run_app(image=str(quiet.image_id), point=str(quiet.point))
    assert at.sidebar.radio(key="page").value == "Review"
    assert at.session_state["current"] == (quiet.image_id, int(quiet.point))
    assert any("not in the queue" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2  # face, heatmap; the 3-D surfaces wait for their toggle
    assert len(at.get("component_instance")) == 1  # the zoom to click on
    assert not at.warning  # the face's image was found through the manifest's relative dataset path


def test_the_3d_surfaces_toggle_stays_from_one_item_to_the_next(audit_copy: Path) -> None:
    at = gross_errors_only(run_app("Review"))
    assert len(at.get("plotly_chart")) == 2
    at.toggle(key="surfaces").set_value(True).run()
    assert len(at.get("plotly_chart")) == 3  # face, heatmap, surfaces
    at.button(key="open_face").click().run()  # a whole face has no heatmaps, and no toggle
    assert not at.toggle and len(at.get("plotly_chart")) == 1
    at.button(key="next").click().run()  # the face is not in this queue: its first item, a point
    assert at.session_state["current"][1] != FACE
    assert at.toggle(key="surfaces").value and len(at.get("plotly_chart")) == 3


def test_review_without_heatmaps_or_images(audit_copy: Path) -> None:
    shutil.rmtree(audit_copy / "heatmaps")
    manifest = json.loads((audit_copy / "manifest.json").read_text())
    manifest["dataset"]["path"] = str(audit_copy / "moved")
    (audit_copy / "manifest.json").write_text(json.dumps(manifest))
    at = gross_errors_only(run_app("Review"))
    assert "No heatmap store" in at.info[0].value
    assert "Image not found" in at.warning[0].value
    assert len(at.get("plotly_chart")) == 1 and len(at.get("component_instance")) == 1  # face and zoom, points alone
    at.button(key="accept").click().run()
    assert len(ReviewStore(audit_copy).latest()) == 1


def test_decisions_of_another_dataset_are_refused(audit_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(audit_copy, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["dataset"]["fingerprint"] = "another version of the labels"
    (other / "manifest.json").write_text(json.dumps(manifest))
    ReviewStore(other).record("face_0000", 0, "reject")
    shutil.copy(other / "reviews.sqlite", audit_copy / "reviews.sqlite")
    at = run_app("Review")
    assert "Cannot read this audit's decisions" in at.error[0].value
    assert "another version of the dataset" in at.code[0].value


def test_another_audit_from_the_sidebar(audit_copy: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    shutil.copytree(audit_copy, other)
    at = run_app("Review")
    at.button(key="next").click().run()
    at.sidebar.text_input(key="audit_dir").set_value(str(other)).run()
    assert not at.exception
    assert at.session_state["current"] == item_at(queue_table(at), 0)
    gross_errors_only(at).button(key="accept").click().run()
    assert len(ReviewStore(other).latest()) == 1
    assert ReviewStore(audit_copy).latest().empty


def test_export_offers_the_accepted_corrections(audit_copy: Path) -> None:
    at = gross_errors_only(run_app("Review"))
    first = queue_table(at).iloc[0]
    at.button(key="accept").click().run()
    at.sidebar.radio(key="page").set_value("Export").run()
    at.radio(key="export_only").set_value("accepted")
    at.button(key="export").click().run()
    assert not at.exception and not at.error
    assert at.get("download_button")
    table = pd.read_csv(io.BytesIO(at.session_state["export_result"]["data"]), keep_default_na=False)
    assert list(zip(table.image_id, table.point, table.decision, strict=True)) == [
        (first.image_id, first.point, "accept")]
    assert not any(audit_copy.glob("*.csv"))  # the audit directory holds no export


def decision_rows(audit: Path) -> list[tuple]:
    """Every row of the decisions table: (image_id, point, decision)."""
    with sqlite3.connect(audit / "reviews.sqlite") as con:
        return con.execute("SELECT image_id, point, decision FROM decisions ORDER BY id").fetchall()


def test_a_swapped_face_is_fixed_in_one_action(audit_copy: Path) -> None:
    at = run_app("Review")
    queue = queue_table(at)
    face = at.session_state["current"][0]
    assert at.session_state["current"] == (face, FACE) and at.query_params["point"] == "face"
    at.button(key="mirror_face").click().run()
    assert decision_rows(audit_copy) == [(face, None, "mirror")]  # one decision, on the face
    a = load_audit(audit_copy)
    latest = ReviewStore(audit_copy).latest()
    swapped = a.points[(a.points.image_id == face) & (a.points.issue_type == "swapped_sides")]
    assert sorted(latest.point) == sorted(swapped.point) and set(latest.decision) == {"mirror"}
    assert at.session_state["current"] == item_at(queue, 1)  # and on to the next item
    assert queue_table(at).decision[0] == "mirror"
    removed = corrections(a, latest, only="accepted").displacement_nme.sum()
    assert {m.label: m.value for m in at.metric}["Error removed so far (NME)"] == f"{removed:.3f}"
    assert f"mirrored {len(swapped):,})" in at.get("progress")[0].proto.text and removed > 1.0


def test_accept_all_and_reject_all_decide_a_face_in_one_action(audit_copy: Path) -> None:
    points = load_audit(audit_copy).points
    at = gross_errors_only(run_app("Review"))
    for button, decision in (("accept_face", "accept"), ("reject_face", "reject")):
        image_id = at.session_state["current"][0]
        at.button(key="open_face").click().run()
        assert at.session_state["current"] == (image_id, FACE)
        flagged = points[(points.image_id == image_id) & points.is_label_issue]
        assert len(at.dataframe(key="face_points").value) == len(flagged)
        before = len(decision_rows(audit_copy)) if (audit_copy / "reviews.sqlite").exists() else 0
        at.button(key=button).click().run()
        rows = decision_rows(audit_copy)[before:]
        assert sorted(rows) == sorted((image_id, int(k), decision) for k in flagged.point)  # one click: all of them
        assert at.session_state["current"][0] != image_id


def test_a_click_places_the_point_arrows_nudge_it_and_the_zoom_stays(audit_copy: Path) -> None:
    at = gross_errors_only(run_app("Review"))
    at.radio(key="zoom").set_value(8).run()
    item, edges = at.session_state["zoom_shown"]
    assert item == at.session_state["current"]
    at.session_state["zoom_click"] = {"x": 90, "y": 270, "width": 360, "height": 360, "unix_time": 1}
    at.run()
    x, y = zoom_to_image((90, 270), edges, (360, 360))
    assert (at.number_input(key="edit_x").value, at.number_input(key="edit_y").value) == pytest.approx(
        (round(x, 2), round(y, 2)))
    at.button(key="nudge_right").click().run()
    at.button(key="nudge_up").click().run()
    next(b for b in at.button if b.label == "Edit").click().run()
    edited = ReviewStore(audit_copy).latest().set_index(["image_id", "point"]).loc[item]
    assert (edited.decision, edited.x, edited.y) == ("edit", pytest.approx(x + 1, abs=0.01),
                                                     pytest.approx(y - 1, abs=0.01))
    following, zoom = at.session_state["zoom_shown"]
    assert following == at.session_state["current"] != item
    assert at.radio(key="zoom").value == 8 and (zoom[2] - zoom[0]) == pytest.approx(edges[2] - edges[0], abs=2)
    at.sidebar.radio(key="page").set_value("Overview").run()
    at.sidebar.radio(key="page").set_value("Review").run()
    assert at.radio(key="zoom").value == 8  # and across pages
    # a click made on another item's zoom, or one already placed, moves nothing
    placed = (at.number_input(key="edit_x").value, at.number_input(key="edit_y").value)
    at.run()
    assert (at.number_input(key="edit_x").value, at.number_input(key="edit_y").value) == placed


def test_the_zoom_maps_display_pixels_back_to_the_image() -> None:
    edges = zoom_edges((10, 20, 30, 35))  # 20 x 15 image px
    assert edges == (9.5, 19.5, 29.5, 34.5)
    image = zoom_image(None, edges, [("placed", np.array([14.0, 22.0]))], width=200)
    assert image.size == (200, 150)  # 10 display px an image px
    # the mark at (14, 22) is drawn at the display position (45, 25); a click there, on its pixel's centre
    assert zoom_to_image((45, 25), edges, image.size) == pytest.approx((14.05, 22.05))
    pixels = np.asarray(image)
    assert tuple(pixels[25, 45]) != tuple(pixels[5, 5])  # the mark is drawn there


def test_ideal_window_peaks_at_its_centre() -> None:
    g = ideal_window(17, (8.0, 5.0), 1.5, peak=0.7)
    assert g.shape == (17, 17)
    assert np.unravel_index(g.argmax(), g.shape) == (5, 8)  # (row = y, column = x)
    assert g.max() == pytest.approx(0.7)
    np.testing.assert_allclose(g[5, 8 - 3], g[5, 8 + 3])


def test_the_heatmap_shows_the_scored_search_only_where_it_is_not_the_proposal() -> None:
    window, origin = np.zeros((17, 17)), np.array([10.0, 10.0])
    marks = {"human": np.array([18.0, 18.0]), "searched": np.array([18.5, 18.0]), "pred": np.array([19.0, 17.0])}
    names = [t.name for t in heatmap_figure(window, origin, {**marks, "searched_broad": np.array([18.5, 19.5])},
                                            anisotropy=0.5, angle=0.3).data]
    assert names == [None, "searched, broad prior (scored)", "predicted", "searched", "human", "principal axis"]
    for broad in (marks["searched"], np.array([np.nan, np.nan])):
        names = [t.name for t in heatmap_figure(window, origin, {**marks, "searched_broad": broad},
                                                anisotropy=0.5, angle=0.3).data]
        assert "searched, broad prior (scored)" not in names and "searched" in names


def test_zoom_box_stays_in_the_image() -> None:
    assert zoom_box((2.0, 250.0), 10.0, (256, 256)) == (0, 240, 13, 256)
    left, top, right, bottom = zoom_box((100.4, 50.6), 8.0, (256, 256))
    assert (right - left, bottom - top) == (17, 17)


def test_heatmap_store_side_comes_from_the_array(tmp_path: Path) -> None:
    for side in (17, 27):
        store = tmp_path / str(side)
        store.mkdir()
        np.save(store / "windows.npy", np.zeros((2, 3, side, side), np.float16))
        np.save(store / "origins.npy", np.zeros((2, 3, 2), np.int16))
        np.save(store / "to_heatmap.npy", np.tile(np.eye(3), (2, 1, 1)))
        assert load_heatmaps(store, faces=2, points=3).side == side
    with pytest.raises(InputError, match="expected"):
        load_heatmaps(store, faces=4, points=3)


def test_markdown_text_is_inert() -> None:
    assert md_text("face_01 *x* [a](b) <b>") == r"face\_01 \*x\* \[a\]\(b\) \<b\>"


@pytest.fixture
def annotated_audit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An audit of faces each labelled by two of three annotators, with the annotator columns and annotators.parquet
    (tests/annotated_audit.py), opened by the app through $AUDITOR_AUDIT; caches cleared before and after."""
    from annotated_audit import build_annotated_audit

    _, audit = build_annotated_audit(tmp_path)
    monkeypatch.setenv("AUDITOR_AUDIT", str(audit))
    clear_caches()
    yield audit
    clear_caches()


def plotted(values: dict | list) -> np.ndarray:
    """A plotly trace's array as plotly.js receives it: a list, or typed base64 (`bdata`)."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), dtype=values["dtype"])
    return np.asarray(values, dtype=np.float64)


def test_annotators_page_without_annotators_says_how_to_name_them(audit_copy: Path) -> None:
    at = run_app("Annotators")
    text = at.info[0].value
    assert "names no annotators" in text and "`annotator` column" in text and "--annotators-from folder" in text
    assert not at.get("plotly_chart") and not at.dataframe and not at.error

    (audit_copy / "annotators.parquet").write_bytes(b"not a parquet file")
    at = run_app("Annotators")
    assert "Cannot read this audit's annotator table" in at.error[0].value
    assert "annotators.parquet" in at.code[0].value


def test_annotators_page_ranks_the_annotators_and_lists_where_they_depart(annotated_audit: Path) -> None:
    expected = pd.read_parquet(annotated_audit / "annotators.parquet")
    at = run_app("Annotators")
    assert not at.error and not at.warning
    pd.testing.assert_frame_equal(at.dataframe[0].value, expected, check_dtype=False)
    trace = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert trace["y"] == expected.annotator.tolist()  # best first, from the top
    np.testing.assert_allclose(plotted(trace["x"]), expected.mean_error)
    np.testing.assert_allclose(plotted(trace["error_x"]["array"]), expected.mean_error_hi - expected.mean_error)
    np.testing.assert_allclose(plotted(trace["error_x"]["arrayminus"]), expected.mean_error - expected.mean_error_lo)

    best = expected.iloc[0]
    groups = at.dataframe[1].value.set_index("group")  # the per-group columns <measure>_<group>, one row per group
    assert list(groups.index) == ["jaw", "brows", "nose", "eyes", "mouth"] and "bias_along" in groups.columns
    for measure in groups.columns:
        np.testing.assert_allclose(groups[measure], [best[f"{measure}_{g}"] for g in groups.index])
    departures = at.dataframe(key="departures").value
    assert len(departures) == best.faces and departures.mean_error.is_monotonic_decreasing
    assert all(i.startswith(f"{best.annotator}/") for i in departures.image_id)

    at.selectbox(key="annotator_choice").set_value(expected.annotator.iloc[-1]).run()
    departures = at.dataframe(key="departures").value
    assert all(i.startswith(f"{expected.annotator.iloc[-1]}/") for i in departures.image_id)
    # the face's worst point is its largest departure from the consensus
    points = load_audit(annotated_audit).points.set_index(["image_id", "point"])
    face = points.loc[departures.image_id[0]]
    distance = np.hypot(face.x_human - face.x_consensus, face.y_human - face.y_consensus)
    assert departures.worst_point[0] == distance.idxmax()


def test_a_departure_selected_opens_its_worst_point_for_review(annotated_audit: Path) -> None:
    def select_second_row() -> None:
        import pandas as pd
        import streamlit as st

        from app.annotators import DEPARTURES, _open_face

        st.session_state["current"] = ("another face", 1)
        st.session_state[DEPARTURES] = {"selection": {"rows": [1], "columns": [], "cells": []}}
        _open_face(pd.DataFrame({"image_id": ["a/face_1", "b/face_2"], "worst_point": [3, 7]}))

    at = AppTest.from_function(select_second_row, default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert (at.query_params["image"], at.query_params["point"]) == ("b/face_2", "7")
    assert at.session_state["page"] == "Review" and "current" not in at.session_state

    # what the review page does with that state, after a visit that chose another item
    departures = run_app("Annotators").dataframe(key="departures").value
    at = run_app("Review")
    item = (departures.image_id[0], int(departures.worst_point[0]))
    assert at.session_state["current"] != item
    at.sidebar.radio(key="page").set_value("Annotators").run()
    del at.session_state["current"]
    at.query_params.update(image=item[0], point=str(item[1]))
    at.sidebar.radio(key="page").set_value("Review").run()
    assert not at.exception and at.session_state["current"] == item


def test_the_ranking_shows_annotator_names_as_text() -> None:
    table = pd.DataFrame({"annotator": ["<b>ann</b>", "bob"], "faces": [3, 2], "mean_error": [0.01, 0.02],
                          "mean_error_lo": [0.008, np.nan], "mean_error_hi": [0.013, np.nan]})
    trace = annotator_ranking_figure(table).data[0]
    assert list(trace.y) == ["&lt;b&gt;ann&lt;/b&gt;", "bob"]
    np.testing.assert_allclose(trace.error_x.array, [0.003, 0.0], atol=1e-12)  # no interval: no bar


def test_export_offers_the_consensus_when_the_dataset_names_annotators(annotated_audit: Path) -> None:
    at = run_app("Export")
    at.radio(key="export_only").set_value("all")
    at.radio(key="export_use").set_value("consensus")
    at.button(key="export").click().run()
    assert not at.exception and not at.error
    table = pd.read_csv(io.BytesIO(at.session_state["export_result"]["data"]))
    points = load_audit(annotated_audit).points
    assert len(table) == len(points) and set(table.source) == {"consensus"}
    table = table.merge(points[["image_id", "point", "x_consensus"]], on=["image_id", "point"])  # in queue order
    np.testing.assert_allclose(table.x_corrected, table.x_consensus, atol=1e-5)
    at.sidebar.text_input(key="audit_dir").set_value(str(SAMPLE)).run()
    assert not at.exception and not [r for r in at.radio if r.key == "export_use"]  # no annotators: no choice
