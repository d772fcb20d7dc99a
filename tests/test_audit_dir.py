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
