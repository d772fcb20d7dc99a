"""Reading an audit directory (docs/audit_format.md): the manifest, the points and images tables, the audited dataset.

Every reader validates: a missing directory, a bad manifest, a missing or unreadable table or column, another format
version, or a dataset that changed since the audit is an `InputError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from auditor.dataset import Dataset
from auditor.errors import InputError

FORMAT_VERSION = 1
MANIFEST, POINTS, IMAGES, REVIEWS = "manifest.json", "points.parquet", "images.parquet", "reviews.sqlite"

# the columns review and export rely on; an audit may hold more (docs/audit_format.md lists them all)
POINT_COLUMNS = ("image_id", "face", "point", "point_name", "group", "x_human", "y_human", "x_searched", "y_searched",
                 "x_pred", "y_pred", "label_score", "issue_type", "is_label_issue")
IMAGE_COLUMNS = ("image_id", "face", "image_path", "normaliser")


class Audit(NamedTuple):
    """A loaded audit: the manifest, one row per (face, point), one row per face."""

    manifest: dict
    points: pd.DataFrame
    images: pd.DataFrame


def audit_path(audit_dir: str | Path) -> Path:
    """The audit directory, or an InputError when it is not one."""
    audit_dir = Path(audit_dir)
    if not audit_dir.is_dir():
        raise InputError("no such audit directory" if not audit_dir.exists() else "not an audit directory (a file)",
                         path=audit_dir)
    return audit_dir


def load_manifest(audit_dir: str | Path) -> dict:
    """`AUDIT/manifest.json`, checked: a JSON object of this format version with the dataset's fingerprint."""
    path = audit_path(audit_dir) / MANIFEST
    if not path.is_file():
        raise InputError("missing manifest.json: not an audit directory (written by `auditor audit`)", path=path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not valid JSON ({e})", path=path) from None
    if not isinstance(manifest, dict):
        raise InputError("expected a JSON object", path=path)
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise InputError(f"audit format version {version!r}; this auditor reads version {FORMAT_VERSION} (re-run "
                         "`auditor audit`)", path=path, field="format_version")
    dataset = manifest.get("dataset")
    if not isinstance(dataset, dict):
        raise InputError("expected an object", path=path, field="dataset")
    if not isinstance(dataset.get("fingerprint"), str) or not dataset["fingerprint"]:
        raise InputError("expected a non-empty string", path=path, field="dataset.fingerprint")
    return manifest


def _read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not path.is_file():
        raise InputError("missing: the audit is incomplete (re-run `auditor audit`)", path=path)
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged or foreign file
        raise InputError(f"not a readable parquet file ({type(e).__name__}: {e})".replace("\n", " "),
                         path=path) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", path=path)
    return table


def load_audit(audit_dir: str | Path) -> Audit:
    """The manifest, `points.parquet` and `images.parquet` of an audit directory, validated."""
    audit_dir = audit_path(audit_dir)
    manifest = load_manifest(audit_dir)
    points = _read_table(audit_dir / POINTS, POINT_COLUMNS)
    images = _read_table(audit_dir / IMAGES, IMAGE_COLUMNS)
    unknown = sorted(set(points.image_id) - set(images.image_id))
    if unknown:
        raise InputError(f"image_id '{unknown[0]}' is not in images.parquet ({len(unknown)} such ids)",
                         path=audit_dir / POINTS)
    return Audit(manifest, points, images)


PREDICTED_ISSUES = ("gross_error", "off_contour", "swapped_sides")


def proposals(points: pd.DataFrame, mode_ratio: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The corrected position the audit proposes for each point (x, y) and where it comes from ('searched' or
    'predicted').

    The search stays near the label by design (its prior), which suits a contour slide but not a label that is
    plainly wrong: gross errors, off-contour labels and swapped sides get the model's prediction instead, and a
    gross error the model's local peak in the search window when that peak is strong (at least `mode_ratio` of the
    heatmap's maximum; it avoids the prediction's left/right confusions). On the sample set's flagged gross
    errors that local peak is 0.065 NME from the truth on average, the prediction 0.100, the search 0.076 and the
    labels 0.092; on off-contour labels the prediction is best (0.020, the search 0.036).
    """
    kind = points["issue_type"].fillna("").to_numpy(dtype=object)
    searched = np.isfinite(points["x_searched"].to_numpy(float)) & np.isfinite(points["y_searched"].to_numpy(float))
    x, y = points["x_pred"].to_numpy(float).copy(), points["y_pred"].to_numpy(float).copy()
    if {"x_mode", "y_mode", "mode_peak", "confidence"} <= set(points.columns):
        local = (kind == "gross_error") & np.isfinite(points["x_mode"].to_numpy(float)) & (
            points["mode_peak"].to_numpy(float) >= mode_ratio * points["confidence"].to_numpy(float))
        x, y = np.where(local, points["x_mode"], x), np.where(local, points["y_mode"], y)
    use_search = searched & ~np.isin(kind, PREDICTED_ISSUES)
    x, y = np.where(use_search, points["x_searched"], x), np.where(use_search, points["y_searched"], y)
    return x.astype(float), y.astype(float), np.where(use_search, "searched", "predicted").astype(object)


def dataset_location(manifest: dict, audit_dir: str | Path) -> tuple[Path, Path | None]:
    """The audited dataset's annotation path and images root (or None): the manifest stores them relative to the
    audit directory (an absolute path stays as it is)."""
    info = manifest.get("dataset") or {}
    path = Path(audit_dir) / str(info.get("path") or ".")
    root = info.get("images_root")
    return path, None if root is None else Path(audit_dir) / str(root)


def load_audited_dataset(manifest: dict, audit_dir: str | Path) -> Dataset:
    """The dataset the manifest names (paths relative to the audit directory), read as the audit read it; an
    InputError when its labels changed since."""
    from auditor.io import read_dataset
    from auditor.schemes import scheme_from_json

    info = manifest["dataset"]
    for key in ("path", "format"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise InputError("the audit does not say where its dataset is: expected a non-empty string",
                             path=MANIFEST, field=f"dataset.{key}")
    scheme = scheme_from_json(manifest["scheme"]) if isinstance(manifest.get("scheme"), dict) else info.get("scheme")
    path, images_root = dataset_location(manifest, audit_dir)
    ds = read_dataset(path, format=info["format"], scheme=scheme, images_root=images_root)
    if ds.fingerprint() != info["fingerprint"]:
        raise InputError("the dataset changed since the audit (its fingerprint differs from the manifest's): re-run "
                         "`auditor audit` before exporting corrections", path=path)
    return ds
