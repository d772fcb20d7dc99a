import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from urllib.parse import parse_qs, urlparse
from xml.etree import ElementTree

import numpy as np
import pandas as pd
import pytest
from audit_fixture import (
    OFFSET,
    assert_one_line_error,
    auditor,
    build_audit,
    corrupt,
    move_first_point,
    other_dataset_version,
    swap_sides,
    write_audit,
)

from auditor.audit_dir import audit_scheme, load_audit, proposals
from auditor.errors import InputError
from auditor.export import (
    CSV_COLUMNS,
    KEYPOINTS_FIELD,
    corrections,
    error_removed,
    export_corrections,
    labelstudio_config,
    local_files_url,
)
from auditor.io import read_dataset, write_dataset
from auditor.review import ReviewStore, bulk_decisions
from auditor.schemes import LandmarkScheme, scheme_from_json


def decide(audit):
    """An edit, an accept, a reject (all on issues) and an accept of a point whose search failed."""
    store = ReviewStore(audit)
    store.record("face_0000", 0, "edit", x=30.0, y=40.0, reviewer="ann")   # issue
    store.record("face_0000", 11, "accept", reviewer="ann")                # issue, no stored position
    store.record("face_0000", 22, "reject", reviewer="ann")                # issue
    store.record("face_0000", 1, "accept", reviewer="bob")                 # searched is NaN: the prediction
    return store


def test_selections_sources_and_columns(audit):
    decide(audit)
    a = load_audit(audit)
    latest = ReviewStore(audit).latest()
    accepted = corrections(a, latest, only="accepted").set_index("point")
    assert list(accepted.index) == [0, 1, 11]
    assert tuple(accepted.loc[0, ["x_corrected", "y_corrected", "source", "decision"]]) == (30.0, 40.0, "edited",
                                                                                          "edit")
    human = a.points.set_index(["image_id", "point"])
    np.testing.assert_allclose(accepted.loc[11, ["dx", "dy"]].astype(float), OFFSET)
    assert accepted.loc[11, "source"] == "searched"
    assert accepted.loc[1, "source"] == "predicted"
    assert accepted.loc[1, "x_corrected"] == human.loc[("face_0000", 1), "x_pred"]
    normaliser = a.images.set_index("image_id").normaliser["face_0000"]
    assert accepted.loc[11, "displacement_nme"] == pytest.approx(np.hypot(*OFFSET) / normaliser)
    issues = corrections(a, latest, only="issues")
    assert len(issues) == a.points.is_label_issue.sum() and issues.is_label_issue.all()
    rejected = issues.set_index(["image_id", "point"]).loc[("face_0000", 22)]
    assert rejected.decision == "reject" and rejected.source == "searched" and rejected.dx == OFFSET[0]
    undecided = issues[issues.decision == ""]
    assert len(undecided) == len(issues) - 3 and (undecided.source == "searched").all()
    assert len(corrections(a, latest, only="all")) == len(a.points)
    with pytest.raises(InputError, match="unknown selection"):
        corrections(a, latest, only="some")


def test_csv(audit, tmp_path):
    decide(audit)
    summary = export_corrections(audit, out=tmp_path / "c.csv", only="issues")
    table = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert tuple(table.columns) == CSV_COLUMNS and len(table) == summary["rows"]
    edited = table[table.decision == "edit"].iloc[0]
    assert (edited.image_id, edited.image_path, edited.point, edited.x_corrected, edited.reviewer) == (
        "face_0000", "face_0000.jpg", 0, 30.0, "ann")
    assert edited.decided_at.endswith("+00:00") and (table.decided_at[table.decision == ""] == "").all()


@pytest.mark.parametrize("fmt", ["pts", "csv", "coco"])
def test_write_labels_round_trip(base, audit, tmp_path, fmt):
    decide(audit)
    out = tmp_path / "corrected"
    summary = export_corrections(audit, labels_dir=out, format=fmt)
    assert summary["applied"] == 3 and "table" not in summary
    original = read_dataset(base[0])
    back = read_dataset(summary["labels"])
    assert back.image_ids == original.image_ids
    expected = original.landmarks.copy()
    points = load_audit(audit).points.set_index(["image_id", "point"])
    expected[0, 0] = (30.0, 40.0)
    expected[0, 11] += OFFSET
    expected[0, 1] = points.loc[("face_0000", 1), ["x_pred", "y_pred"]].to_numpy(dtype=float)
    np.testing.assert_allclose(back.landmarks, expected, atol=1e-6)
    assert [p.resolve() for p in back.image_paths] == [p.resolve() for p in original.image_paths]


def test_write_labels_refuses_the_input_location_and_a_changed_dataset(tmp_path):
    faces, audit = build_audit(tmp_path)
    decide(audit)
    for out in (faces, faces / "sub"):
        with pytest.raises(InputError, match="input dataset's location"):
            export_corrections(audit, out=tmp_path / "c.csv", labels_dir=out)
    assert not (tmp_path / "c.csv").exists()  # checked before anything is written
    r = auditor("export-corrections", audit, "--write-labels", faces)
    assert_one_line_error(r, "--in-place")
    move_first_point(faces / "face_0003.pts")
    with pytest.raises(InputError, match="the dataset changed since the audit"):
        export_corrections(audit, labels_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_in_place_backs_up_first(tmp_path):
    faces, audit = build_audit(tmp_path)
    decide(audit)
    before = {p.name: p.read_text() for p in faces.glob("*.pts")}
    summary = export_corrections(audit, in_place=True)
    backup = summary["backup"]
    assert backup.parent == faces.parent and backup.name.startswith("faces.backup-")
    assert {p.name: p.read_text() for p in backup.glob("*.pts")} == before
    after = read_dataset(faces)
    assert after.landmarks[0, 0].tolist() == [30.0, 40.0]
    assert {p.name for p in faces.glob("*.pts") if p.read_text() != before[p.name]} == {"face_0000.pts"}


def test_in_place_for_an_annotation_file(tmp_path):
    faces, _ = build_audit(tmp_path)
    ds = read_dataset(faces)
    table = write_dataset(ds, tmp_path / "csvset" / "faces.csv", format="csv")
    write_audit(read_dataset(table), table, tmp_path / "csv_audit", fmt="csv")
    decide(tmp_path / "csv_audit")
    original = table.read_text()
    with pytest.raises(InputError, match="--in-place writes the input's format"):
        export_corrections(tmp_path / "csv_audit", in_place=True, format="coco")
    summary = export_corrections(tmp_path / "csv_audit", in_place=True)
    assert summary["backup"].parent == table.parent and summary["backup"].read_text() == original
    after = read_dataset(table)
    assert after.image_ids == ds.image_ids and after.landmarks[0, 0].tolist() == [30.0, 40.0]
    np.testing.assert_allclose(after.landmarks[1:], ds.landmarks[1:], atol=1e-6)


def test_fiftyone_and_labelstudio_coordinates(audit, tmp_path):
    decide(audit)
    export_corrections(audit, out=tmp_path / "fo.json", format="fiftyone")
    fo = json.loads((tmp_path / "fo.json").read_text())
    assert fo["media_type"] == "image" and len(fo["samples"]) == 1  # only face_0000 has accepted points
    sample = fo["samples"][0]
    assert sample["filepath"].endswith("face_0000.jpg") and os.path.isabs(sample["filepath"])
    assert sample["tags"] == ["needs_review"] and sample["metadata"]["width"] == 128
    face = sample["keypoints"]["keypoints"][0]
    assert face["_cls"] == "Keypoint" and face["image_id"] == "face_0000" and len(face["points"]) == 68
    assert face["points"][0] == [30.0 / 128, 40.0 / 128]
    human = read_dataset(load_audit(audit).manifest["dataset"]["path"]).landmarks[0]
    np.testing.assert_allclose(sample["human"]["keypoints"][0]["points"], human / 128)
    np.testing.assert_allclose(face["points"][5], human[5] / 128)  # not exported: the label

    export_corrections(audit, out=tmp_path / "ls.json", format="labelstudio", only="issues")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    by_face = {t["data"]["image_id"]: t for t in tasks}
    assert len(tasks) == 6 and sorted(by_face) == [f"face_{i:04d}" for i in range(6)]  # one task per face
    result = by_face["face_0000"]["predictions"][0]["result"]
    edited = next(r for r in result if r["id"] == "face_0000/0")
    assert edited["type"] == "keypointlabels" and (edited["from_name"], edited["to_name"]) == ("keypoints", "image")
    assert (edited["original_width"], edited["original_height"]) == (128, 128)
    assert edited["value"]["x"] == pytest.approx(100 * 30.0 / 128)
    assert edited["value"]["y"] == pytest.approx(100 * 40.0 / 128)
    assert edited["value"]["keypointlabels"] == ["jaw_0"]


def served_path(task: dict) -> str:
    """The image path below the document root that a task's local-files URL names, decoded as Label Studio does."""
    url = urlparse(task["data"]["image"])
    assert url.path == "/data/local-files/"
    d, = parse_qs(url.query)["d"]
    return d


def _config_labels(config: str) -> dict[str, int]:
    """A Label Studio config's keypoint labels: value -> model_index, checking the tags the tasks name."""
    view = ElementTree.fromstring(config)
    image, = view.iter("Image")
    keypoints, = view.iter("KeyPointLabels")
    assert (image.get("name"), image.get("value")) == ("image", "$image")
    assert (keypoints.get("name"), keypoints.get("toName")) == ("keypoints", "image")
    return {label.get("value"): int(label.get("model_index")) for label in keypoints.iter("Label")}


def test_labelstudio_config_numbers_every_point_in_the_schemes_order(audit, tmp_path):
    summary = export_corrections(audit, out=tmp_path / "tasks.json", format="labelstudio", only="all")
    assert summary["config"] == tmp_path / "tasks.label_config.xml"
    labels = _config_labels(summary["config"].read_text())
    scheme = load_audit(audit).manifest["scheme"]
    assert list(labels) == [p["name"] for p in scheme["points"]] and list(labels.values()) == list(range(68))
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert len(tasks) == 6 and all(len(t["predictions"][0]["result"]) == 68 for t in tasks)
    for task in tasks:  # every pre-annotation names a label of the config, the one of its point
        for r in task["predictions"][0]["result"]:
            assert (r["from_name"], r["to_name"], r["type"]) == ("keypoints", "image", "keypointlabels")
            assert labels[r["value"]["keypointlabels"][0]] == int(r["id"].rsplit("/", 1)[1])
            assert 0 <= r["value"]["x"] <= 100 and 0 <= r["value"]["y"] <= 100

    odd = LandmarkScheme("odd", ('left "eye" <1> & more', "nose"), ("g", "g"), (False, False), (), ())
    assert _config_labels(labelstudio_config(odd)) == {'left "eye" <1> & more': 0, "nose": 1}


def test_labelstudio_image_urls_are_local_files_urls(base, audit, tmp_path):
    faces = base[0]
    export_corrections(audit, out=tmp_path / "tasks.json", format="labelstudio", only="issues")
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert {t["data"]["image"] for t in tasks} == {f"/data/local-files/?d=face_{i:04d}.jpg" for i in range(6)}
    root = faces.parent.parent  # default above: the dataset's root
    export_corrections(audit, out=tmp_path / "tasks.json", format="labelstudio", only="issues", ls_document_root=root)
    for task in json.loads((tmp_path / "tasks.json").read_text()):
        d = served_path(task)
        assert d == f"syn/faces/{task['data']['image_id']}.jpg" and (root / d).is_file()

    odd = tmp_path / "images" / "set 1" / "a b#1&c.jpg"
    odd.parent.mkdir(parents=True)
    odd.touch()
    url = local_files_url(odd, tmp_path / "images")
    assert url == "/data/local-files/?d=set%201/a%20b%231%26c.jpg"
    assert parse_qs(urlparse(url).query)["d"] == ["set 1/a b#1&c.jpg"]

    (tmp_path / "elsewhere").mkdir()
    for kwargs, message in (({"ls_document_root": tmp_path / "elsewhere"}, "outside the Label Studio document root"),
                            ({"ls_document_root": tmp_path / "nope"}, "expected the folder Label Studio serves"),
                            ({"ls_document_root": root, "format": "fiftyone"}, "add --format labelstudio")):
        with pytest.raises(InputError, match=message):
            export_corrections(audit, out=tmp_path / "other.json", only="issues", **{"format": "labelstudio", **kwargs})
    assert not (tmp_path / "other.json").exists() and not (tmp_path / "other.label_config.xml").exists()


LS_TO_COCO = textwrap.dedent("""
    import sys
    from label_studio_sdk.converter import Converter

    config, tasks, out = sys.argv[1:]
    Converter(config, project_dir=None).convert_to_coco(tasks, out, is_dir=False)
""")


def test_labelstudio_export_converts_to_coco_keypoints_with_label_studios_converter(base, audit, tmp_path):
    """Label Studio's own COCO export (label-studio-sdk's converter, which the server runs) of the tasks once an
    annotator submits the pre-annotations, the images read through the local-files storage."""
    pytest.importorskip("label_studio_sdk.converter.converter")
    decide(audit)
    root = base[0].parent
    summary = export_corrections(audit, out=tmp_path / "tasks.json", format="labelstudio", only="all",
                                 ls_document_root=root)
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    for n, task in enumerate(tasks):  # what Label Studio's JSON export holds once each pre-annotation is submitted
        task["id"] = n + 1
        task["annotations"] = [{"id": n + 1, "result": task["predictions"][0]["result"], "was_cancelled": False}]
    (tmp_path / "annotated.json").write_text(json.dumps(tasks))
    env = {**os.environ, "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(root)}
    r = subprocess.run([sys.executable, "-c", LS_TO_COCO, str(summary["config"]), str(tmp_path / "annotated.json"),
                        str(tmp_path / "coco")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    coco = json.loads((tmp_path / "coco" / "result.json").read_text())
    category, = coco["categories"]
    assert category["keypoints"] == [p["name"] for p in load_audit(audit).manifest["scheme"]["points"]]
    assert len(coco["images"]) == len(coco["annotations"]) == 6
    for image in coco["images"]:  # copied from the local-files storage's document root
        assert (image["width"], image["height"]) == (128, 128) and (tmp_path / "coco" / image["file_name"]).is_file()
    table = corrections(load_audit(audit), ReviewStore(audit).latest(), only="all").set_index("image_id")
    for annotation in coco["annotations"]:
        image_id = tasks[annotation["image_id"]]["data"]["image_id"]  # COCO images are numbered in task order
        keypoints = np.reshape(annotation["keypoints"], (68, 3))
        assert (keypoints[:, 2] == 2).all() and annotation["num_keypoints"] == 68
        xy = table.loc[image_id].sort_values("point")[["x_corrected", "y_corrected"]].to_numpy()
        np.testing.assert_allclose(keypoints[:, :2], xy, atol=0.5 + 1e-6)  # the converter rounds to whole pixels
        if image_id == "face_0000":
            assert keypoints[0, :2].tolist() == [30, 40]  # the edit


FIFTYONE_DEFAULT_FIELDS = {"id", "filepath", "tags", "metadata", "created_at", "last_modified_at"}
FIFTYONE_FIELD = re.compile(r"fiftyone\.core\.fields\.\w+(\(fiftyone\.core\.\w+\.\w+\))?")


def filter_keypoints(points: list, skeleton: dict, labels: list[str]) -> list:
    """FiftyOne's `filter_keypoints(field, labels=...)` on one keypoint: the points whose skeleton label is not in
    `labels` become NaN."""
    keep = {i for i, label in enumerate(skeleton["labels"]) if label in set(labels)}
    return [p if i in keep else [np.nan, np.nan] for i, p in enumerate(points)]


@pytest.mark.parametrize("fixture", ["audit", "annotated"])
def test_fiftyone_dataset_declares_its_fields_and_the_skeleton(request, tmp_path, fixture):
    """The layout `fo.Dataset.from_dict` reads: it adds samples without expanding the schema, so every field beyond
    an image sample's defaults must be declared, as `str(field)`; the default skeleton names the points."""
    audit = request.getfixturevalue(fixture)
    export_corrections(audit, out=tmp_path / "fo.json", format="fiftyone", only="all")
    d = json.loads((tmp_path / "fo.json").read_text())
    assert set(d) == {"name", "media_type", "sample_fields", "default_skeleton", "samples"}
    for sample in d["samples"]:
        assert set(sample) - FIFTYONE_DEFAULT_FIELDS <= set(d["sample_fields"])
    assert all(FIFTYONE_FIELD.fullmatch(f) for f in d["sample_fields"].values())
    assert d["sample_fields"]["human"] == d["sample_fields"]["keypoints"] == KEYPOINTS_FIELD
    assert ("annotators" in d["sample_fields"]) == (fixture == "annotated")

    scheme = scheme_from_json(load_audit(audit).manifest["scheme"])
    skeleton = d["default_skeleton"]
    assert skeleton["_cls"] == "KeypointSkeleton" and skeleton["labels"] == list(scheme.point_names)
    pairs = {tuple(sorted(ab)) for edge in skeleton["edges"] for ab in zip(edge, edge[1:], strict=False)}
    assert pairs == set(map(tuple, scheme.chain_pairs().tolist()))  # the contours' lines, each chain one list

    points = d["samples"][0]["keypoints"]["keypoints"][0]["points"]
    kept = filter_keypoints(points, skeleton, [scheme.point_names[0], scheme.point_names[30]])
    assert [k for k, p in enumerate(kept) if np.isfinite(p).all()] == [0, 30]
    assert kept[30] == points[30]


def test_needs_review_marks_only_images_with_an_undecided_issue(audit, tmp_path):
    points = load_audit(audit).points
    issues = points[points.is_label_issue]
    store = ReviewStore(audit)
    store.record_many(bulk_decisions(issues[issues.image_id == "face_0000"], "reject"))  # face_0000: all decided
    store.record_many(bulk_decisions(issues[issues.image_id == "face_0001"].iloc[:1], "accept"))  # one of face_0001
    export_corrections(audit, out=tmp_path / "fo.json", format="fiftyone", only="all")
    tagged = {s["keypoints"]["keypoints"][0]["image_id"]: s["tags"]
              for s in json.loads((tmp_path / "fo.json").read_text())["samples"]}
    assert tagged == {"face_0000": [], **{f"face_{i:04d}": ["needs_review"] for i in range(1, 6)}}


def test_exported_image_paths_are_normalised(base, audit, tmp_path):
    manifest = json.loads((audit / "manifest.json").read_text())
    manifest["dataset"]["path"] = os.path.relpath(base[0], audit)  # as the audit stores it: '../..' from the audit
    (audit / "manifest.json").write_text(json.dumps(manifest))
    export_corrections(audit, out=tmp_path / "fo.json", format="fiftyone", only="issues")
    export_corrections(audit, out=tmp_path / "ls.json", format="labelstudio", only="issues")
    paths = sorted(s["filepath"] for s in json.loads((tmp_path / "fo.json").read_text())["samples"])
    assert paths == [str(base[0].absolute() / f"face_{i:04d}.jpg") for i in range(6)]
    assert all(os.path.isabs(p) and os.path.normpath(p) == p and ".." not in p.split(os.sep) for p in paths)
    served = sorted(served_path(t) for t in json.loads((tmp_path / "ls.json").read_text()))
    assert served == [f"face_{i:04d}.jpg" for i in range(6)]


def test_cli_labelstudio(base, audit, tmp_path):
    r = auditor("export-corrections", audit, "-o", tmp_path / "tasks.json", "--format", "labelstudio", "--only",
                "issues", "--ls-document-root", base[0].parent)
    assert r.returncode == 0, r.stderr
    assert f"labelling config to {tmp_path / 'tasks.label_config.xml'}" in r.stdout
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert {served_path(t) for t in tasks} == {f"faces/face_{i:04d}.jpg" for i in range(6)}
    r = auditor("export-corrections", audit, "-o", tmp_path / "t.json", "--format", "labelstudio", "--only", "issues",
                "--ls-document-root", tmp_path)
    assert_one_line_error(r, "outside the Label Studio document root", "faces/face_", "--ls-document-root")


def test_option_errors(audit, tmp_path):
    for kwargs, message in (({}, "no output"), ({"format": "pts"}, "--write-labels"),
                            ({"format": "fiftyone", "labels_dir": tmp_path / "x"}, "-o FILE"),
                            ({"out": tmp_path / "c.csv", "format": "xml"}, "unknown format")):
        with pytest.raises(InputError, match=message):
            export_corrections(audit, **kwargs)


KILLED_EXPORT = textwrap.dedent("""
    import sys, time
    import pandas as pd
    from auditor.export import export_corrections

    def stalled_to_csv(self, f, **kwargs):  # writes half a table, then hangs until killed
        f.write("image_id,half a table\\n")
        f.flush()
        print("writing", flush=True)
        time.sleep(300)

    pd.DataFrame.to_csv = stalled_to_csv
    export_corrections(sys.argv[1], out=sys.argv[2], only="all")
""")


def test_sigkill_during_export_leaves_the_previous_output(audit, tmp_path):
    out = tmp_path / "c.csv"
    export_corrections(audit, out=out, only="all")
    previous = out.read_bytes()
    decide(audit)
    child = subprocess.Popen([sys.executable, "-c", KILLED_EXPORT, str(audit), str(out)], stdout=subprocess.PIPE,
                             text=True)
    try:
        assert child.stdout.readline().strip() == "writing"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    assert out.read_bytes() == previous
    export_corrections(audit, out=out, only="all")  # and the next export replaces it
    assert (pd.read_csv(out).decision == "edit").sum() == 1


@pytest.mark.parametrize(("damage", "expected"), [(corrupt, "not a SQLite database"),
                                                  (other_dataset_version, "another version of the dataset")])
def test_cli_bad_reviews_one_line_exit_2(audit, tmp_path, damage, expected):
    damage(audit)
    assert_one_line_error(auditor("export-corrections", audit, "-o", tmp_path / "c.csv"), expected, "reviews.sqlite")
    assert not (tmp_path / "c.csv").exists()


def test_cli_export(audit, tmp_path):
    assert_one_line_error(auditor("export-corrections", tmp_path / "nope", "-o", tmp_path / "c.csv"),
                          "no such audit directory")
    decide(audit)
    r = auditor("export-corrections", audit, "-o", tmp_path / "c.csv", "--write-labels", tmp_path / "labels",
                "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert "wrote 3 points" in r.stdout and "applied 3" in r.stdout
    assert len(pd.read_csv(tmp_path / "c.csv")) == 3
    assert read_dataset(tmp_path / "labels" / "annotations.csv").landmarks[0, 0].tolist() == [30.0, 40.0]


def test_gross_errors_and_swaps_propose_the_prediction(audit):
    points = load_audit(audit).points.copy()
    points.loc[0, "issue_type"] = "gross_error"
    points.loc[1, "issue_type"] = "swapped_sides"
    points.loc[2, ["x_searched", "y_searched"]] = np.nan
    x, y, source = proposals(points)
    assert list(source[:4]) == ["predicted", "predicted", "predicted", "searched"]
    np.testing.assert_allclose(x[:3], points.x_pred[:3])
    np.testing.assert_allclose(y[3], points.y_searched[3])
    selected = points.iloc[:2]
    rows = bulk_decisions(selected, "accept")
    np.testing.assert_allclose([r["x"] for r in rows], points.x_pred[:2])


def test_a_gross_error_proposes_the_strong_local_peak_over_the_prediction(audit):
    points = load_audit(audit).points.copy()
    points["issue_type"] = "gross_error"
    points["x_mode"], points["y_mode"] = points.x_pred + 3.0, points.y_pred - 2.0
    points["confidence"] = 1.0
    points["mode_peak"] = np.where(np.arange(len(points)) % 2 == 0, 0.9, 0.2)  # strong, weak, strong, ...
    x, y, source = proposals(points)
    np.testing.assert_allclose(x[0::2], points.x_mode[0::2])
    np.testing.assert_allclose(y[1::2], points.y_pred[1::2])
    assert set(source) == {"predicted"}


def test_a_chain_swap_proposes_its_neighbours_label_and_a_duplicate_the_prediction(audit):
    points = load_audit(audit).points.copy()
    points.loc[[0, 1], "issue_type"] = ["chain_swap", "duplicate"]
    points.loc[0, ["partner", "x_partner", "y_partner"]] = [1, 11.5, 12.5]
    points.loc[1, ["partner", "x_partner", "y_partner"]] = [0, 3.0, 4.0]
    x, y, source = proposals(points)
    assert list(source[:2]) == ["exchanged", "predicted"]
    assert (x[0], y[0]) == (11.5, 12.5)
    np.testing.assert_allclose((x[1], y[1]), points.loc[1, ["x_pred", "y_pred"]].astype(float))


def test_plain_errors_propose_the_labels_shape_and_swaps_the_prediction(audit):
    points = load_audit(audit).points.copy()
    points["x_shape"], points["y_shape"] = points.x_human + 2.0, points.y_human - 3.0
    points.loc[0:4, "issue_type"] = ["gross_error", "off_contour", "duplicate", "contour_slide", "gross_error"]
    points.loc[4, "x_shape"] = np.nan  # no shape position: the prediction
    second = np.flatnonzero(points.image_id != points.image_id[0])[:2]  # another face, swapped: its shape mirrored
    points.loc[second, "issue_type"] = ["swapped_sides", "gross_error"]
    x, y, source = proposals(points)
    assert list(source[[0, 1, 2, 4, *second]]) == ["shape", "shape", "shape", "predicted", "predicted", "predicted"]
    np.testing.assert_allclose(x[:3], points.x_shape[:3])
    np.testing.assert_allclose(y[[4, *second]], points.y_pred[[4, *second]])


@pytest.fixture(scope="module")
def annotated_base(tmp_path_factory):
    """An audit of faces each labelled by two of three annotators, with the consensus columns
    (tests/annotated_audit.py), once per module: (faces, audit dir)."""
    from annotated_audit import build_annotated_audit

    return build_annotated_audit(tmp_path_factory.mktemp("annotated"))


@pytest.fixture
def annotated(annotated_base, tmp_path):
    """A fresh copy of `annotated_base`'s audit directory for one test."""
    shutil.copytree(annotated_base[1], tmp_path / "annotated")
    return tmp_path / "annotated"


def test_use_consensus_writes_every_label_at_its_subjects_consensus(annotated, tmp_path):
    ReviewStore(annotated).record(load_audit(annotated).points.image_id[0], 0, "edit", x=1.0, y=2.0)  # not applied
    summary = export_corrections(annotated, out=tmp_path / "c.csv", only="all", use="consensus",
                                 labels_dir=tmp_path / "labels")
    a = load_audit(annotated)
    points = a.points.set_index(["image_id", "point"])
    table = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert len(table) == summary["rows"] == summary["applied"] == len(a.points) and set(table.source) == {"consensus"}
    consensus = points.loc[list(zip(table.image_id, table.point, strict=True)), ["x_consensus", "y_consensus"]]
    np.testing.assert_allclose(table[["x_corrected", "y_corrected"]], consensus, atol=1e-5)
    np.testing.assert_allclose(table.dx, table.x_corrected - table.x_human, atol=1e-5)

    back = read_dataset(summary["labels"], annotators_from="folder")
    original = read_dataset(a.manifest["dataset"]["path"], annotators_from="folder")
    assert back.image_ids == original.image_ids and back.annotators == original.annotators
    xy = points[["x_consensus", "y_consensus"]].to_numpy().reshape(len(back), -1, 2)  # the audit's face order
    np.testing.assert_allclose(back.landmarks, xy, atol=1e-5)
    subject = a.images.subject.to_numpy()
    for s in np.unique(subject):  # every label set of one subject is the same consensus
        np.testing.assert_allclose(back.landmarks[subject == s], np.broadcast_to(back.landmarks[subject == s][0],
                                                                                back.landmarks[subject == s].shape))
    assert len(np.unique(subject)) < len(subject)  # the fixture labels subjects twice


def test_use_consensus_selects_the_exported_points_and_keeps_the_default(annotated, tmp_path):
    store = ReviewStore(annotated)
    first = load_audit(annotated).points.image_id[0]
    store.record(first, 0, "edit", x=1.0, y=2.0)
    issues = export_corrections(annotated, out=tmp_path / "i.csv", only="issues", use="consensus",
                                labels_dir=tmp_path / "labels")
    assert issues["applied"] == issues["rows"] == load_audit(annotated).points.is_label_issue.sum()
    default = export_corrections(annotated, out=tmp_path / "d.csv", labels_dir=tmp_path / "default")
    table = pd.read_csv(tmp_path / "d.csv")
    assert default["applied"] == 1 and (table.x_corrected[0], table.source[0]) == (1.0, "edited")


def test_use_consensus_needs_an_audit_with_annotators(audit, tmp_path):
    with pytest.raises(InputError, match="no consensus positions"):
        export_corrections(audit, out=tmp_path / "c.csv", only="all", use="consensus")
    with pytest.raises(InputError, match="unknown corrected positions"):
        export_corrections(audit, out=tmp_path / "c.csv", use="majority")
    r = auditor("export-corrections", audit, "-o", tmp_path / "c.csv", "--only", "all", "--use", "consensus",
                "--write-labels", tmp_path / "labels")
    assert_one_line_error(r, "no consensus positions", "points.parquet", "--use proposals")
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "labels").exists()


def test_cli_use_consensus(annotated, tmp_path):
    r = auditor("export-corrections", annotated, "--only", "all", "--use", "consensus", "--write-labels",
                tmp_path / "labels", "--format", "csv")
    assert r.returncode == 0, r.stderr
    assert f"applied {len(load_audit(annotated).points)} labels moved to their consensus" in r.stdout


def test_fiftyone_and_labelstudio_carry_the_annotator(annotated, audit, tmp_path):
    export_corrections(annotated, out=tmp_path / "fo.json", format="fiftyone", only="all")
    samples = json.loads((tmp_path / "fo.json").read_text())["samples"]
    images = load_audit(annotated).images
    assert len(samples) == images.image_path.nunique()
    for sample in samples:
        faces = sample["human"]["keypoints"] + sample["keypoints"]["keypoints"]
        assert all(face["annotator"] == face["image_id"].split("/")[0] for face in faces)  # ids: annotator/face
        assert sample["annotators"] == sorted({face["annotator"] for face in faces})

    export_corrections(annotated, out=tmp_path / "ls.json", format="labelstudio", only="all")
    tasks = json.loads((tmp_path / "ls.json").read_text())
    assert len(tasks) == len(images)  # one per face
    assert {(t["data"]["annotator"], os.path.basename(served_path(t))) for t in tasks} == set(
        zip(images.annotator, images.image_path, strict=True))
    for task in tasks:
        assert task["data"]["image_id"].split("/")[0] == task["data"]["annotator"]
        assert {r["id"].rsplit("/", 1)[0] for r in task["predictions"][0]["result"]} == {task["data"]["image_id"]}

    export_corrections(audit, out=tmp_path / "plain_fo.json", format="fiftyone", only="all")
    export_corrections(audit, out=tmp_path / "plain_ls.json", format="labelstudio", only="all")
    sample = json.loads((tmp_path / "plain_fo.json").read_text())["samples"][0]
    assert "annotators" not in sample and "annotator" not in sample["keypoints"]["keypoints"][0]
    assert all("annotator" not in t["data"] for t in json.loads((tmp_path / "plain_ls.json").read_text()))


def test_a_mirrored_face_exports_and_writes_every_partners_label(base, audit, tmp_path):
    moved = swap_sides(audit, "face_0001")
    store = decide(audit)
    store.record_face("face_0001")
    a = load_audit(audit)
    flip = audit_scheme(a.manifest, audit).flip_permutation
    human = a.points.set_index(["image_id", "point"])[["x_human", "y_human"]]
    accepted = corrections(a, store.latest(), only="accepted", order=None)
    mirrored = accepted[accepted.image_id == "face_0001"].set_index("point")
    assert sorted(mirrored.index) == sorted(moved) and set(mirrored.source) == {"mirrored"}
    assert set(mirrored.decision) == {"mirror"}
    np.testing.assert_allclose(mirrored[["x_corrected", "y_corrected"]].to_numpy(),
                               human.loc["face_0001"].loc[flip[mirrored.index]].to_numpy())
    removed = error_removed(a, store.latest())  # per face, as the app sums it
    assert sorted(removed.index) == ["face_0000", "face_0001"]
    assert removed["face_0001"] == pytest.approx(mirrored.displacement_nme.sum()) and removed["face_0001"] > 0
    assert removed.sum() == pytest.approx(accepted.displacement_nme.sum())
    one = a.points.image_id == "face_0001"  # one face's rows alone give its share: a mirror needs no other face
    assert error_removed(type(a)(a.manifest, a.points[one], a.images), store.latest())["face_0001"] == \
        pytest.approx(removed["face_0001"])
    summary = export_corrections(audit, out=tmp_path / "c.csv", labels_dir=tmp_path / "labels", format="pts")
    assert summary["applied"] == 3 + len(moved)
    table = pd.read_csv(tmp_path / "c.csv", keep_default_na=False)
    assert (table.source == "mirrored").sum() == len(moved)
    original, back = read_dataset(base[0]), read_dataset(summary["labels"])
    np.testing.assert_allclose(back.landmarks[1], original.landmarks[1][flip], atol=1e-6)  # the face, mirrored
    np.testing.assert_allclose(back.landmarks[2:], original.landmarks[2:], atol=1e-6)


def test_the_export_follows_the_review_queues_order(audit, tmp_path):
    moved = swap_sides(audit, "face_0004")
    r = auditor("export-corrections", audit, "-o", tmp_path / "gain.csv", "--only", "issues")
    assert r.returncode == 0, r.stderr
    by_gain = pd.read_csv(tmp_path / "gain.csv", keep_default_na=False)
    first = by_gain.iloc[:len(moved)]  # the swapped face: the most error to remove, its points together, in order
    assert (first.image_id == "face_0004").all() and first.point.is_monotonic_increasing
    r = auditor("export-corrections", audit, "-o", tmp_path / "score.csv", "--only", "issues", "--order", "score")
    assert r.returncode == 0, r.stderr
    by_score = pd.read_csv(tmp_path / "score.csv", keep_default_na=False)
    assert sorted(zip(by_score.image_id, by_score.point, strict=True)) == sorted(
        zip(by_gain.image_id, by_gain.point, strict=True))
    assert by_score[by_score.image_id != "face_0004"].label_score.is_monotonic_increasing
    assert_one_line_error(auditor("export-corrections", audit, "-o", tmp_path / "x.csv", "--order", "best"),
                          "unknown order")
