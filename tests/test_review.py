import json
import multiprocessing
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
from audit_fixture import (
    OFFSET,
    assert_one_line_error,
    auditor,
    corrupt,
    foreign,
    newer_schema,
    other_dataset_version,
    swap_sides,
    write_v1_reviews,
)

from auditor.audit_dir import load_audit
from auditor.errors import InputError
from auditor.review import ReviewStore, bulk_decisions, in_queue_order, select_points
from auditor.triage import FACE


def test_latest_decision_wins_and_history_keeps_all(audit):
    store = ReviewStore(audit)
    assert not store.path.exists() and store.latest().empty  # no file until the first decision
    store.record("face_0001", 3, "reject", reviewer="ann")
    store.record("face_0001", 3, "edit", x=10.0, y=20.5, reviewer="bob", note="eye corner")
    store.record("face_0002", 0, "accept")
    latest = store.latest()
    assert len(latest) == 2
    row = latest.set_index(["image_id", "point"]).loc[("face_0001", 3)]
    assert (row.decision, row.x, row.y, row.reviewer, row.note) == ("edit", 10.0, 20.5, "bob", "eye corner")
    assert np.isnan(latest.set_index("image_id").loc["face_0002", "x"])
    history = store.history("face_0001", 3)
    assert list(history.decision) == ["reject", "edit"] and history.id.is_monotonic_increasing
    stamp = datetime.fromisoformat(history.created_at[0])
    assert stamp.utcoffset() == timedelta(0) and len(history.created_at[0].split(".")[1]) == len("123456+00:00")


def test_schema_wal_and_fingerprint(audit):
    ReviewStore(audit).record("face_0000", 0, "accept")
    con = sqlite3.connect(audit / "reviews.sqlite")
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert con.execute("SELECT version FROM schema_version").fetchall() == [(2,)]
    fingerprint = json.loads((audit / "manifest.json").read_text())["dataset"]["fingerprint"]
    assert con.execute("SELECT value FROM meta WHERE key = 'dataset_fingerprint'").fetchone() == (fingerprint,)
    for values in ("'a', 0, 'maybe'", "'a', NULL, 'accept'", "'a', 3, 'mirror'"):
        with pytest.raises(sqlite3.IntegrityError):  # the table itself refuses an unknown or misplaced decision
            con.execute(f"INSERT INTO decisions (image_id, point, decision, reviewer, created_at) "
                        f"VALUES ({values}, 'r', 't')")


def test_bad_decisions_are_refused(audit):
    store = ReviewStore(audit)
    for kwargs in ({"decision": "maybe"}, {"decision": "edit"}, {"decision": "edit", "x": 1.0},
                   {"decision": "edit", "x": np.inf, "y": 1.0}, {"decision": "accept", "point": -1},
                   {"decision": "mirror"}, {"decision": "accept", "point": None}):
        with pytest.raises(ValueError):
            store.record(kwargs.pop("image_id", "face_0000"), kwargs.pop("point", 0), **kwargs)
    for decision in ("accept", "reject"):
        with pytest.raises(ValueError, match="whole face"):
            store.record_face("face_0000", decision)
    with pytest.raises(ValueError, match="whole face"):
        store.record_many([{"image_id": "face_0000", "point": 3, "decision": "mirror"}])
    assert store.latest().empty


def test_a_mirror_decides_every_partnered_point_until_a_later_decision_on_one(audit):
    moved = swap_sides(audit, "face_0001")
    store = ReviewStore(audit)
    np.testing.assert_array_equal(store.mirrored_points(), moved)  # every point with a flip partner
    store.record("face_0001", int(moved[0]), "edit", x=1.0, y=2.0)
    store.record("face_0001", 30, "reject")  # the nose's tip: no partner, untouched by the mirror
    face_id = store.record_face("face_0001", reviewer="ann", note="sides swapped")
    store.record("face_0001", int(moved[1]), "reject")
    latest = store.latest().set_index("point")
    assert len(latest) == len(moved) + 1 and latest.loc[30, "decision"] == "reject"
    mirrored = latest[latest.decision == "mirror"]
    assert sorted(mirrored.index) == sorted(set(moved) - {moved[1]}) and (mirrored.id == face_id).all()
    assert mirrored.x.isna().all() and set(mirrored.reviewer) == {"ann"}
    assert latest.loc[moved[1], "decision"] == "reject"
    assert list(store.history("face_0001", int(moved[0])).decision) == ["edit", "mirror"]
    assert list(store.history("face_0001", 30).decision) == ["reject"]
    face_rows = store.history("face_0001", None)
    assert list(zip(face_rows.point, face_rows.decision, face_rows.note, strict=True)) == [
        (FACE, "mirror", "sides swapped")]
    progress = store.progress(load_audit(audit).points.query("is_label_issue"))
    assert (progress["mirror"], progress["edit"]) == (len(moved) - 1, 0)
    con = sqlite3.connect(audit / "reviews.sqlite")
    assert con.execute("SELECT point, x, y FROM decisions WHERE decision = 'mirror'").fetchall() == [
        (None, None, None)]  # one row for the face


def test_a_version_1_file_is_read_then_migrated_by_the_first_decision(audit):
    write_v1_reviews(audit, [("face_0000", 3, "accept", 1.0, 2.0), ("face_0000", 3, "edit", 5.0, 6.0),
                             ("face_0002", 0, "reject", None, None)])
    store = ReviewStore(audit)
    before = store.latest()
    assert list(zip(before.image_id, before.point, before.decision, before.x, strict=True))[:1] == [
        ("face_0000", 3, "edit", 5.0)] and len(before) == 2
    con = sqlite3.connect(audit / "reviews.sqlite")
    assert con.execute("SELECT version FROM schema_version").fetchone() == (1,)  # reading writes nothing
    con.close()
    new_id = store.record_face("face_0001")
    con = sqlite3.connect(audit / "reviews.sqlite")
    assert con.execute("SELECT version FROM schema_version").fetchone() == (2,)
    assert [i for (i,) in con.execute("SELECT id FROM decisions ORDER BY id")] == [1, 2, 3, new_id] and new_id == 4
    assert con.execute("SELECT tbl_name FROM sqlite_master WHERE name = 'decisions_by_point'").fetchone() == (
        "decisions",)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()
    after = store.latest()
    pd.testing.assert_frame_equal(after[after.image_id != "face_0001"].reset_index(drop=True), before)
    assert set(after.decision[after.image_id == "face_0001"]) == {"mirror"}
    assert store.record("face_0000", 4, "accept") == 5  # ids go on after the copied rows


def test_bulk_and_progress(audit):
    points = load_audit(audit).points
    selected = select_points(points, "issue_type == 'low_confidence' and label_score < 0.2")
    assert len(selected) > 0 and (selected.label_score < 0.2).all()
    store = ReviewStore(audit)
    assert store.record_many(bulk_decisions(selected, "accept", reviewer="bulk", note="q1")) == len(selected)
    latest = store.latest()
    assert (latest.decision == "accept").all() and (latest.note == "q1").all()
    merged = latest.merge(points, on=["image_id", "point"])
    np.testing.assert_allclose(merged[["x", "y"]].to_numpy(), merged[["x_searched", "y_searched"]].to_numpy())
    issues = points[points.is_label_issue]
    store.record(issues.image_id.iloc[-1], int(issues.point.iloc[-1]), "reject")
    progress = store.progress(issues)
    decided = len(selected) + 1
    assert progress == {"total": len(issues), "decided": decided, "remaining": len(issues) - decided,
                        "accept": len(selected), "reject": 1, "edit": 0, "mirror": 0}
    assert store.progress(1000)["decided"] == len(selected) + 1
    keys = pd.MultiIndex.from_arrays([issues.image_id.astype(str).to_numpy(dtype=object),
                                      issues.point.to_numpy(dtype=np.int64)])
    assert store.progress(keys, latest=store.latest()) == progress  # the app's form: keys indexed once, one read


def test_a_version_1_file_the_new_rules_refuse_is_left_as_it_was(audit):
    write_v1_reviews(audit, [("face_0000", 3, "accept", 1.0, 2.0)])
    con = sqlite3.connect(audit / "reviews.sqlite")
    con.execute("PRAGMA ignore_check_constraints = 1")  # as another program might
    con.execute("INSERT INTO decisions (image_id, point, decision, x, y, reviewer, created_at) "
                "VALUES ('face_0000', 4, 'edit', 1.0, NULL, 'r', 't')")
    con.commit()
    con.close()
    with pytest.raises(InputError, match="cannot upgrade the reviews database") as e:
        ReviewStore(audit).record("face_0000", 5, "reject")
    assert "reviews.sqlite" in str(e.value)
    con = sqlite3.connect(audit / "reviews.sqlite")
    assert con.execute("SELECT version FROM schema_version").fetchone() == (1,)
    assert con.execute("SELECT COUNT(*) FROM decisions").fetchone() == (2,)


def test_bulk_review_in_queue_order_with_a_limit(audit):
    moved = swap_sides(audit, "face_0003")
    a = load_audit(audit)
    selected = select_points(a.points, "is_label_issue")
    by_gain = in_queue_order(a, selected, order="gain")
    assert sorted(by_gain.index) == sorted(selected.index)
    assert (by_gain.image_id.iloc[:20] == "face_0003").all()  # the mirrored face first: the most error to remove
    by_score = in_queue_order(a, selected, order="score")
    assert by_score[by_score.image_id != "face_0003"].label_score.is_monotonic_increasing
    first = in_queue_order(a, selected, order="gain", limit=3)
    assert first.image_id.iloc[0] == "face_0003" and len(first) == len(moved) + 2  # the face: one item
    with pytest.raises(InputError, match="unknown order"):
        in_queue_order(a, selected, order="random")


def test_cli_order_and_limit(audit):
    query = "issue_type == 'low_confidence' and label_score < 0.2"
    points = load_audit(audit).points
    r = auditor("review", audit, "--accept-where", query, "--dry-run", "--order", "score", "--limit", "4")
    assert r.returncode == 0, r.stderr
    assert "4 points match" in r.stdout and "beyond --limit" in r.stdout and "--order score" in r.stdout
    listed = [line.split()[:2] for line in r.stdout.splitlines()[3:]]
    lowest = points.query(query).sort_values(["label_score", "face", "point"], kind="stable").head(4)
    assert listed == [[i, str(k)] for i, k in zip(lowest.image_id, lowest.point, strict=True)]
    r = auditor("review", audit, "--accept-where", query, "--order", "score", "--limit", "4", "--yes")
    assert r.returncode == 0 and "recorded 4" in r.stdout
    decided = ReviewStore(audit).latest()
    assert sorted(zip(decided.image_id, decided.point, strict=True)) == sorted(zip(lowest.image_id, lowest.point,
                                                                                   strict=True))
    assert_one_line_error(auditor("review", audit, "--accept-where", query, "--order", "best"), "unknown order")


@pytest.mark.parametrize("query", ["label_score <", "no_such_column > 1", "label_score", ""])
def test_invalid_queries(audit, query):
    with pytest.raises(InputError, match="invalid query") as e:
        select_points(load_audit(audit).points, query)
    assert "\n" not in str(e.value)


def _decide_many(audit, reviewer, n):
    store = ReviewStore(audit)
    for i in range(n):
        store.record(f"face_{i % 6:04d}", i % 68, ("accept", "reject", "edit")[i % 3], x=float(i), y=float(i),
                     reviewer=reviewer)


def test_two_processes_lose_no_decision(audit):
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_decide_many, args=(audit, f"r{j}", 500)) for j in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert [w.exitcode for w in workers] == [0, 0]
    con = sqlite3.connect(audit / "reviews.sqlite")
    assert dict(con.execute("SELECT reviewer, COUNT(*) FROM decisions GROUP BY reviewer")) == {"r0": 500, "r1": 500}
    ids = [i for (i,) in con.execute("SELECT id FROM decisions ORDER BY id")]
    assert ids == list(range(1, 1001))


BAD_REVIEWS = [(corrupt, "not a SQLite database"), (foreign, "not a reviews database"),
               (newer_schema, "reviews schema version 3"), (other_dataset_version, "another version of the dataset")]


@pytest.mark.parametrize(("damage", "expected"), BAD_REVIEWS)
def test_bad_review_files_are_refused(audit, damage, expected):
    damage(audit)
    with pytest.raises(InputError, match=expected) as e:
        ReviewStore(audit).record("face_0000", 1, "reject")
    assert "reviews.sqlite" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(("damage", "expected"), BAD_REVIEWS)
def test_cli_bad_review_files_one_line_exit_2(audit, damage, expected):
    damage(audit)
    r = auditor("review", audit, "--accept-where", "label_score < 0.2", "--dry-run")
    assert_one_line_error(r, expected, "reviews.sqlite")


def test_cli_missing_audit_and_bad_query(audit, tmp_path):
    assert_one_line_error(auditor("review", tmp_path / "nope", "--accept-where", "point == 1"),
                          "no such audit directory")
    r = auditor("review", audit, "--accept-where", "label_score <<< 0.2", "--dry-run")
    assert_one_line_error(r, "invalid query", "label_score <<< 0.2")
    assert_one_line_error(auditor("review", audit, "--dry-run"), "--accept-where")


def test_cli_dry_run_confirm_and_yes(audit):
    query = "issue_type == 'low_confidence' and label_score < 0.2"
    points = load_audit(audit).points
    expected = len(points.query(query))
    r = auditor("review", audit, "--accept-where", query, "--dry-run")
    assert r.returncode == 0 and f"{expected} points match" in r.stdout
    assert not (audit / "reviews.sqlite").exists()
    r = auditor("review", audit, "--accept-where", query, stdin="n\n")
    assert r.returncode != 0 and not (audit / "reviews.sqlite").exists()
    r = auditor("review", audit, "--accept-where", query, "--reviewer", "cli", "--note", "bulk", stdin="y\n")
    assert r.returncode == 0, r.stderr
    latest = ReviewStore(audit).latest()
    assert len(latest) == expected and set(latest.reviewer) == {"cli"} and set(latest.decision) == {"accept"}
    # decided points are skipped unless --overwrite; a reject then supersedes the accepts
    r = auditor("review", audit, "--reject-where", query, "--yes")
    assert r.returncode == 0 and "0 points match" in r.stdout and f"{expected} already decided" in r.stdout
    r = auditor("review", audit, "--reject-where", query, "--yes", "--overwrite")
    assert r.returncode == 0, r.stderr
    latest = ReviewStore(audit).latest()
    assert set(latest.decision) == {"reject"} and latest.x.isna().all()
    assert len(ReviewStore(audit).history("face_0000", 0)) == 2


def test_accept_stores_the_searched_position(audit):
    points = load_audit(audit).points
    rows = bulk_decisions(points.iloc[[0]], "accept")
    assert rows[0]["x"] == pytest.approx(points.x_human[0] + OFFSET[0])
    assert "x" not in bulk_decisions(points.iloc[[0]], "reject")[0]


def test_help():
    for command in ("review", "export-corrections"):
        r = auditor(command, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout


def _spoil_row(audit, column, value):
    ReviewStore(audit).record("face_0000", 3, "accept", x=1.0, y=2.0)
    con = sqlite3.connect(audit / "reviews.sqlite")
    con.execute("PRAGMA ignore_check_constraints = 1")
    con.execute(f"UPDATE decisions SET {column} = ?", (value,))
    con.commit()
    con.close()


@pytest.mark.parametrize(("column", "value", "expected"), [
    ("point", "three", "decision id 1 has point 'three'; expected a non-negative integer"),
    ("image_id", b"face_0000", "expected text"), ("point", b"3", "has point"),
    ("point", 2.5, "has point '2.5'"), ("point", -1, "has point '-1'"), ("x", "left", "has x 'left'"),
    ("decision", "maybe", "has decision 'maybe'"), ("x", float("inf"), "has x 'inf'"),
])
def test_a_review_row_of_the_wrong_type_names_the_row(audit, column, value, expected):
    _spoil_row(audit, column, value)
    with pytest.raises(InputError, match="reviews.sqlite") as e:
        ReviewStore(audit).latest()
    assert expected in str(e.value)
    assert_one_line_error(auditor("export-corrections", audit, "-o", audit.parent / "c.csv"), expected)


def test_closed_stdin_asks_for_yes(audit):
    r = auditor("review", audit, "--accept-where", "label_score < 0.2", stdin="")
    assert r.returncode == 2 and "pass --yes" in r.stderr.splitlines()[-1] and "Traceback" not in r.stderr
    assert not (audit / "reviews.sqlite").exists()


def _read_only_mounts() -> bool:
    """True when this process may make a read-only bind mount in a mount namespace of its own (root in most CI)."""
    with tempfile.TemporaryDirectory() as folder:
        script = f"mount --bind {folder} {folder} && mount -o remount,bind,ro {folder} && ! touch {folder}/x"
        try:
            probe = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return probe.returncode == 0


@pytest.mark.skipif(not _read_only_mounts(), reason="cannot make a read-only mount here (unshare -m)")
def test_a_read_only_audit_can_be_exported_not_reviewed(audit, tmp_path):
    ReviewStore(audit).record("face_0000", 3, "reject")
    view = tmp_path / "view"
    view.mkdir()
    script = (f"mount --bind {audit} {view} && mount -o remount,bind,ro {view} && "
              f"{sys.executable} -m auditor.cli review {view} --accept-where 'label_score < 0.2' --yes; "
              f"echo rc=$?; {sys.executable} -m auditor.cli export-corrections {view} --only all -o {tmp_path}/c.csv")
    r = subprocess.run(["unshare", "-m", "bash", "-c", script], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "rc=2" in r.stdout and "the audit folder is read-only" in r.stderr and "Traceback" not in r.stderr
    table = pd.read_csv(tmp_path / "c.csv")
    assert (table.decision == "reject").sum() == 1


def test_a_reviews_file_that_is_a_link_is_refused(audit, tmp_path):
    (audit / "reviews.sqlite").symlink_to(tmp_path / "elsewhere.db")
    with pytest.raises(InputError, match="is a symbolic link"):
        ReviewStore(audit).record("face_0000", 1, "reject")
    assert not (tmp_path / "elsewhere.db").exists()
