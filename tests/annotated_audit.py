"""An audit of a dataset that names its annotators, written directly (no model): tests/audit_fixture.py's audit of
synthetic faces labelled by several annotators, plus the annotator columns (x_consensus, y_consensus and
annotator_agreement per point; annotator, subject and annotator_agreement per face) and AUDIT/annotators.parquet,
computed by `auditor.consensus`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from audit_fixture import write_audit

from auditor.consensus import annotator_table, estimate_consensus, face_agreement
from auditor.dataset import Dataset
from auditor.io import read_dataset
from auditor.noise import AnnotatorConfig
from auditor.synth import generate

ANNOTATORS = "annotators.parquet"


def add_annotator_columns(ds: Dataset, audit_dir: Path) -> None:
    """Add the consensus of `ds`'s annotators to the audit of `ds` in `audit_dir` (written by `write_audit`)."""
    subject = ds.subjects()
    normaliser = np.zeros(subject.max() + 1)
    normaliser[subject] = ds.normaliser()  # one face's per subject: they are one person in one image
    consensus = estimate_consensus(ds.landmarks, subject, ds.annotators, ds.scheme, normaliser)
    xy = consensus.xy[subject]  # (N, K, 2): every label set of a subject gets its subject's consensus
    points = pd.read_parquet(audit_dir / "points.parquet")
    points["x_consensus"], points["y_consensus"] = xy[..., 0].ravel(), xy[..., 1].ravel()
    points["annotator_agreement"] = consensus.agreement.ravel()
    points.to_parquet(audit_dir / "points.parquet", index=False)
    images = pd.read_parquet(audit_dir / "images.parquet")
    images["annotator"], images["subject"] = ds.annotators, subject.astype(np.int64)
    images["annotator_agreement"] = face_agreement(consensus)
    images.to_parquet(audit_dir / "images.parquet", index=False)
    table = annotator_table(consensus, ds.landmarks, subject, ds.annotators, ds.scheme, normaliser, bootstrap=50)
    table.to_parquet(audit_dir / ANNOTATORS, index=False)


def build_annotated_audit(root: Path, *, n: int = 4) -> tuple[Path, Path]:
    """Synthetic faces in `root/syn/faces`, each labelled by two of three annotators (a pts tree
    `faces/<annotator>/<face>.pts`), and an audit of them with the annotator columns in `root/audit`: (faces,
    audit)."""
    generate(root / "syn", n=n, seed=1, size=128, annotators=AnnotatorConfig(num_annotators=3, per_face=2))
    faces = root / "syn" / "faces"
    ds = read_dataset(faces, annotators_from="folder")
    audit_dir = root / "audit"
    write_audit(ds, faces, audit_dir)
    manifest = json.loads((audit_dir / "manifest.json").read_text())
    manifest["dataset"]["annotators_from"] = "folder"
    manifest["scoring"]["issue_threshold"] = 0.1
    (audit_dir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    add_annotator_columns(ds, audit_dir)
    return faces, audit_dir
