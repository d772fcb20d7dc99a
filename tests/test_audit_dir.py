import json
import shutil

import pandas as pd
import pytest
from audit_fixture import build_audit, move_first_point

from auditor.audit_dir import load_audit, load_audited_dataset, load_manifest
from auditor.errors import InputError


def test_load_audit(audit):
    manifest, points, images = load_audit(audit)
    assert manifest["format_version"] == 1
    assert len(points) == 6 * 68 and len(images) == 6
    assert set(points.image_id) == set(images.image_id)


def edit_manifest(audit, **changes):
    manifest = json.loads((audit / "manifest.json").read_text())
    manifest.update(changes)
    (audit / "manifest.json").write_text(json.dumps(manifest))


def edit_table(audit, name, **columns):
    """Rewrite AUDIT/name.parquet with some columns replaced by a function of themselves."""
    table = pd.read_parquet(audit / f"{name}.parquet")
    for column, change in columns.items():
        table[column] = change(table[column])
    table.to_parquet(audit / f"{name}.parquet")


@pytest.mark.parametrize(("damage", "expected"), [
    (lambda a: shutil.rmtree(a), "no such audit directory"),
    (lambda a: (a / "manifest.json").unlink(), "missing manifest.json"),
    (lambda a: (a / "manifest.json").write_text("{not json"), "not valid JSON"),
    (lambda a: (a / "manifest.json").write_text("[1, 2]"), "expected a JSON object"),
    (lambda a: edit_manifest(a, format_version=2), "format version 2"),
    (lambda a: edit_manifest(a, dataset={"path": "x"}), "dataset.fingerprint"),
    (lambda a: (a / "points.parquet").unlink(), "points.parquet: missing"),
    (lambda a: (a / "images.parquet").write_bytes(b"garbage"), "not a readable parquet file"),
    (lambda a: pd.read_parquet(a / "images.parquet").drop(columns="normaliser").to_parquet(a / "images.parquet"),
     "missing column(s) normaliser"),
    (lambda a: edit_table(a, "points", x_human=lambda c: c.astype(str)), "[x_human]: expected numbers"),
    (lambda a: edit_table(a, "points", point=lambda c: c.astype(float).where(c != 3)), "[point]: expected integers"),
    (lambda a: edit_table(a, "points", point=lambda c: c + 100), "point 100 is not a point of the audit's scheme"),
    (lambda a: edit_table(a, "points", image_id=lambda c: c.where(c != "face_0001")), "[image_id]: expected text"),
    (lambda a: edit_table(a, "points", is_label_issue=lambda c: c.astype(str)), "[is_label_issue]: expected true"),
    (lambda a: edit_table(a, "points", label_score=lambda c: c * 5), "[label_score]: expected scores in [0, 1]"),
    (lambda a: edit_table(a, "points", y_searched=lambda c: c.where(c < 50, float("inf"))), "[y_searched]: expected"),
    (lambda a: edit_table(a, "images", normaliser=lambda c: c.astype(object).where(c > 1e9, "wide")),
     "[normaliser]: expected numbers"),
    (lambda a: pd.concat([pd.read_parquet(a / "images.parquet")] * 2).to_parquet(a / "images.parquet"),
     "images.parquet [image_id]: image_id 'face_0000' has 2 rows"),
    (lambda a: pd.concat([pd.read_parquet(a / "points.parquet")] * 2).to_parquet(a / "points.parquet"),
     "points.parquet [point]: point 0 of 'face_0000' has several rows"),
    (lambda a: pd.read_parquet(a / "points.parquet").iloc[:-1].to_parquet(a / "points.parquet"),
     "points.parquet: 407 rows; expected one per point of every face (6 x 68)"),
])
def test_bad_audits_name_the_file(audit, damage, expected):
    damage(audit)
    with pytest.raises(InputError) as e:
        load_audit(audit)
    assert expected in str(e.value) and str(audit) in str(e.value) and "\n" not in str(e.value)


def test_audited_dataset_is_checked_against_the_fingerprint(tmp_path):
    faces, audit = build_audit(tmp_path)
    assert len(load_audited_dataset(load_manifest(audit), audit)) == 6
    move_first_point(faces / "face_0002.pts")
    with pytest.raises(InputError, match="the dataset changed since the audit"):
        load_audited_dataset(load_manifest(audit), audit)


def test_a_bad_scheme_in_the_manifest_names_the_file(audit):
    edit_manifest(audit, scheme={"name": "mine", "points": [{"name": "a"}, {"name": "a"}]})
    with pytest.raises(InputError) as e:
        load_audited_dataset(load_manifest(audit), audit)
    assert str(e.value).startswith(f"{audit / 'manifest.json'} [scheme]: scheme 'mine': point names must be unique")
