"""A small audit directory for the review and export tests, written directly (no model): synthetic faces, searched =
human + a small offset, some points flagged as issues; the layout of docs/audit_format.md."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from auditor.audit_dir import audit_scheme
from auditor.io import read_dataset, relative_image_path
from auditor.review import SCHEMA_VERSION, ReviewStore
from auditor.synth import generate

ISSUE_EVERY = 11  # every 11th (face, point) is flagged as an issue, so every face of 68 points has issues
OFFSET = np.array([1.5, -1.0])  # searched - human, image pixels


def write_audit(ds, dataset_path: Path, audit_dir: Path, *, fmt: str = "pts") -> None:
    """Write manifest.json, points.parquet and images.parquet of a plausible audit of `ds` into `audit_dir`."""
    n, k = len(ds), ds.num_points
    rng = np.random.default_rng(0)
    human = ds.landmarks
    searched = human + OFFSET
    searched[0, 1] = np.nan  # one point without a valid search: its corrected position falls back to the prediction
    pred = human + rng.normal(0, 0.5, human.shape)
    normaliser = ds.normaliser()
    flat = np.arange(n * k).reshape(n, k)
    issue = flat % ISSUE_EVERY == 0
    searched_nme = np.linalg.norm(searched - human, axis=-1) / normaliser[:, None]
    label_score = np.where(issue, 0.05 + 0.3 * (flat % 3) / 2, 0.9)
    points = pd.DataFrame({
        "image_id": np.repeat(ds.image_ids, k), "face": np.repeat(np.arange(n, dtype=np.int32), k),
        "point": np.tile(np.arange(k, dtype=np.int16), n),
        "point_name": np.tile(ds.scheme.point_names, n), "group": np.tile(ds.scheme.groups, n),
        "is_contour": np.tile(ds.scheme.contour_flags, n),
        "x_human": human[..., 0].ravel(), "y_human": human[..., 1].ravel(),
        "x_searched": searched[..., 0].ravel(), "y_searched": searched[..., 1].ravel(),
        "x_pred": pred[..., 0].ravel(), "y_pred": pred[..., 1].ravel(),
        "searched_nme": searched_nme.ravel(),
        "pred_err_nme": (np.linalg.norm(pred - human, axis=-1) / normaliser[:, None]).ravel(),
        "tangential_nme": np.zeros(n * k), "normal_nme": np.zeros(n * k),
        "peak": np.full(n * k, 0.8, np.float32), "anisotropy": np.full(n * k, 0.2, np.float32),
        "angle": np.zeros(n * k, np.float32), "gaussianity_human": np.full(n * k, 0.7, np.float32),
        "gaussianity_searched": np.full(n * k, 0.8, np.float32), "flat_hat": np.ones(n * k, np.float32),
        "confidence": np.full(n * k, 0.9, np.float32), "label_score": label_score.ravel(),
        "issue_type": np.where(issue, "low_confidence", "").ravel(), "is_label_issue": issue.ravel(),
    })
    worst = label_score.argmin(axis=1)
    images = pd.DataFrame({
        "image_id": ds.image_ids, "face": np.arange(n, dtype=np.int32),
        "image_path": [relative_image_path(ds, i).as_posix() for i in range(n)], "normaliser": normaliser,
        "nme_searched": np.nanmean(searched_nme, axis=1), "nme_pred": np.zeros(n),
        "worst_point": worst.astype(np.int16), "worst_point_name": [ds.scheme.point_names[w] for w in worst],
        "image_label_score": label_score.min(axis=1), "num_label_issues": issue.sum(axis=1).astype(np.int32),
        "swapped_sides": np.zeros(n, bool), "swap_ratio": np.ones(n),
    })
    manifest = {
        "format_version": 1, "tool_version": "0.1.0", "created_at": "2024-01-01T00:00:00.000000+00:00",
        "dataset": {"path": str(dataset_path.absolute()), "format": fmt, "images_root": None,
                    "scheme": ds.scheme.name, "fingerprint": ds.fingerprint(), "faces": n, "images": ds.num_images},
        "scheme": ds.scheme.to_json(),
        "model": {"path": "model.pt", "sha256": "0" * 64, "config": {}},
        "search": {}, "scoring": {}, "shard": None,
        "counts": {"faces": n, "points": n * k, "label_issues": int(issue.sum()),
                   "issues_by_type": {"gross_error": int(issue.sum())}},
        "timing": {"seconds": 1.0, "faces_per_second": float(n)},
        "heatmaps": {"window": 27, "dtype": "float16", "bytes_per_face": 99144},
    }
    audit_dir.mkdir(parents=True)
    (audit_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    points.to_parquet(audit_dir / "points.parquet", index=False)
    images.to_parquet(audit_dir / "images.parquet", index=False)


def build_audit(root: Path, *, n: int = 6) -> tuple[Path, Path]:
    """Synthetic faces in `root/syn/faces` (.pts + jpg) and an audit of them in `root/audit`: (faces, audit)."""
    generate(root / "syn", n=n, seed=1, size=128)
    faces = root / "syn" / "faces"
    write_audit(read_dataset(faces), faces, root / "audit")
    return faces, root / "audit"


def auditor(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run the `auditor` command in a subprocess, as a user would."""
    return subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], capture_output=True, text=True,
                          input=stdin, timeout=120)


def assert_one_line_error(r: subprocess.CompletedProcess, *fragments: str) -> None:
    """Exit code 2 and one line on stderr holding every fragment, no traceback."""
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr


# ways to spoil AUDIT/reviews.sqlite: bytes that are no database, another program's database, a newer schema,
# decisions made on another version of the dataset


def corrupt(audit):
    (audit / "reviews.sqlite").write_bytes(b"this is not a database, just some bytes " * 100)


def foreign(audit):
    con = sqlite3.connect(audit / "reviews.sqlite")
    con.execute("CREATE TABLE photos (name TEXT)")
    con.commit()
    con.close()


def newer_schema(audit):
    ReviewStore(audit).record("face_0000", 0, "accept")
    con = sqlite3.connect(audit / "reviews.sqlite")
    con.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    con.commit()
    con.close()


def other_dataset_version(audit):
    ReviewStore(audit).record("face_0000", 0, "accept")
    manifest = json.loads((audit / "manifest.json").read_text())
    manifest["dataset"]["fingerprint"] = "f" * 64
    (audit / "manifest.json").write_text(json.dumps(manifest))


def swap_sides(audit_dir: Path, image_id: str) -> np.ndarray:
    """Flag the face `image_id` of the audit as one whose left and right sides are swapped, as the scoring does (every
    labelled point with a flip partner: issue_type swapped_sides, a label issue); returns those points."""
    points = pd.read_parquet(audit_dir / "points.parquet")
    flip = audit_scheme(json.loads((audit_dir / "manifest.json").read_text()), audit_dir).flip_permutation
    moved = (points.image_id == image_id) & (flip[points.point] != points.point)
    points.loc[moved, "issue_type"], points.loc[moved, "is_label_issue"] = "swapped_sides", True
    points.to_parquet(audit_dir / "points.parquet", index=False)
    images = pd.read_parquet(audit_dir / "images.parquet")
    images.loc[images.image_id == image_id, "swapped_sides"] = True
    images.to_parquet(audit_dir / "images.parquet", index=False)
    return points.point[moved].to_numpy()


def write_v1_reviews(audit_dir: Path, rows: list[tuple]) -> None:
    """AUDIT/reviews.sqlite as the auditor wrote it before face-level decisions (schema version 1), holding `rows`
    (image_id, point, decision, x, y)."""
    fingerprint = json.loads((audit_dir / "manifest.json").read_text())["dataset"]["fingerprint"]
    con = sqlite3.connect(audit_dir / "reviews.sqlite")
    con.executescript("""
        CREATE TABLE schema_version (version INTEGER NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE decisions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            image_id TEXT NOT NULL,
            point INTEGER NOT NULL,
            decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'edit')),
            x REAL,
            y REAL,
            reviewer TEXT NOT NULL,
            note TEXT,
            created_at TEXT NOT NULL,
            CHECK (decision != 'edit' OR (x IS NOT NULL AND y IS NOT NULL)));
        CREATE INDEX decisions_by_point ON decisions (image_id, point, id);
        INSERT INTO schema_version (version) VALUES (1);
        PRAGMA journal_mode = WAL;""")
    con.execute("INSERT INTO meta (key, value) VALUES ('dataset_fingerprint', ?)", (fingerprint,))
    con.executemany("INSERT INTO decisions (image_id, point, decision, x, y, reviewer, note, created_at) VALUES "
                    "(?, ?, ?, ?, ?, 'old', NULL, '2024-01-01T00:00:00.000000+00:00')", rows)
    con.commit()
    con.close()


def move_first_point(pts):
    """Another version of the labels: the first point of a .pts file moved."""
    lines = pts.read_text().splitlines()
    assert lines[2] == "{"
    lines[3] = "10.5 10.5"
    pts.write_text("\n".join(lines) + "\n")
