"""Reading an audit directory (docs/audit_format.md): the manifest, the points and images tables, the audited dataset.

Every reader validates: a missing directory, a bad manifest, a missing or unreadable table or column, another format
version, or a dataset that changed since the audit is an `InputError` naming the file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.io import is_regular_file
from auditor.io.wflw import IMAGES_SUBFOLDER
from auditor.schemes import LandmarkScheme, get_scheme, scheme_from_json

FORMAT_VERSION = 1
MANIFEST, POINTS, IMAGES, REVIEWS = "manifest.json", "points.parquet", "images.parquet", "reviews.sqlite"
ANNOTATORS, TOLERANCES = "annotators.parquet", "tolerances.parquet"  # auditor.annotators
CALIBRATION_DIR = "calibration"  # a shard's planted copy, measured (auditor.calibration), read by merge

# the columns review and export rely on; an audit may hold more (docs/audit_format.md lists them all)
POINT_COLUMNS = ("image_id", "face", "point", "point_name", "group", "x_human", "y_human", "x_searched", "y_searched",
                 "x_pred", "y_pred", "label_score", "issue_type", "is_label_issue")
IMAGE_COLUMNS = ("image_id", "face", "image_path", "normaliser")
ANNOTATOR_COLUMNS = ("annotator", "faces", "points", "mean_error", "mean_error_lo", "mean_error_hi", "gross_rate",
                     "spread", "label_issues_per_100")
TOLERANCE_COLUMNS = ("point", "point_name", "spread_along", "spread_across", "sigma", "source")
TOLERANCE_SOURCES = ("annotators", "searched")


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


def is_audit_directory(folder: str | Path) -> bool:
    """True for a folder whose manifest.json is an audit's (a JSON object with `format_version` and `tool_version`),
    whatever its version: a folder an audit may replace."""
    path = Path(folder) / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > 1 << 24:
            return False
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return False
    return isinstance(manifest, dict) and {"format_version", "tool_version"} <= set(manifest)


def load_manifest(audit_dir: str | Path) -> dict:
    """`AUDIT/manifest.json`, checked: a JSON object of this format version with the dataset's fingerprint."""
    path = audit_path(audit_dir) / MANIFEST
    if not path.is_file():
        raise InputError("missing manifest.json: not an audit directory (written by `auditor audit`)", path=path)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not valid JSON ({' '.join(str(e).split())[:160]})", path=path) from None
    except (RecursionError, ValueError):
        raise InputError("not valid JSON (nested too deeply or a number too long)", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror or type(e).__name__}", path=path) from None
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


# the kind of every documented column (docs/audit_format.md); a column present must hold its kind
_TEXT_OR_EMPTY = ("issue_type", "worst_point_name")
_POSITIONS = tuple(f"{axis}_{name}" for name in ("human", "searched", "searched_broad", "pred", "mode", "partner",
                                                  "shape", "consensus") for axis in "xy")
_KINDS = {
    "image_id": "text", "point_name": "text", "group": "text", "image_path": "text", "issue_type": "text",
    "worst_point_name": "text", "annotator": "text", "source": "text",
    "face": "integer", "point": "integer", "num_label_issues": "integer", "worst_point": "integer",
    "partner": "integer", "subject": "integer", "faces": "integer", "points": "integer", "labels": "integer",
    "is_contour": "bool", "is_label_issue": "bool", "swapped_sides": "bool",
    **{name: "number" for name in (*_POSITIONS, "searched_nme", "pred_err_nme", "mode_peak", "peak", "anisotropy",
                                   "angle", "gaussianity_human", "gaussianity_searched", "flat_hat", "confidence",
                                   "search_gain", "tangential_nme", "normal_nme", "shape_residual_nme",
                                   "pca_residual_nme", "label_score", "normaliser", "nme_searched", "nme_pred",
                                   "image_label_score", "swap_ratio", "annotator_agreement", "face_area",
                                   "mean_error", "mean_error_lo", "mean_error_hi", "gross_rate", "spread",
                                   "label_issues_per_100", "spread_along", "spread_across", "sigma")},
}


def _checked_column(values: pd.Series, name: str, path: Path) -> pd.Series:
    """`values` of column `name` as its documented kind (_KINDS); an InputError naming the file and column for a
    value of another kind."""
    kind = _KINDS[name]

    def refuse(expected: str) -> InputError:
        bad = values[values.notna()].head(1).tolist() if kind != "bool" else values.head(1).tolist()
        example = f" (e.g. {str(bad[0])[:40]!r})" if bad else ""
        return InputError(f"expected {expected}, got {values.dtype} values{example}", path=path, field=name)

    if kind == "text":
        if name in _TEXT_OR_EMPTY:
            values = values.astype(object).where(values.notna(), "")
        typed = isinstance(values.dtype, pd.StringDtype)
        if values.isna().any() or not (typed or values.map(lambda v: isinstance(v, str)).all()):
            raise refuse("text in every row")
        return values.astype("string")
    if kind == "bool":
        if not pd.api.types.is_bool_dtype(values) or values.isna().any():
            raise refuse("true / false in every row")
        return values.astype(bool)
    if pd.api.types.is_bool_dtype(values) or not pd.api.types.is_numeric_dtype(values):
        raise refuse("numbers")
    numbers = values.astype(np.float64)
    if kind == "integer":
        finite = np.isfinite(numbers)
        if not finite.all() or (numbers != np.round(numbers)).any() or (numbers.abs() > 2**31).any():
            raise refuse("integers in every row")
        return numbers.astype(np.int64) if not pd.api.types.is_integer_dtype(values) else values
    if name in _POSITIONS or name == "normaliser":
        if np.isinf(numbers).any() or (numbers.abs() > 1e9).any():
            raise refuse("finite positions (NaN where there is none)")
    if name in ("label_score", "annotator_agreement") and ((numbers < 0) | (numbers > 1)).any():
        raise refuse("scores in [0, 1]")
    return numbers if values.dtype == object else values


def read_table(path: Path, columns: tuple[str, ...]) -> pd.DataFrame:
    if not is_regular_file(path):
        raise InputError("missing: the audit is incomplete (re-run `auditor audit`)", path=path)
    try:
        table = pd.read_parquet(path)
    except Exception as e:  # pyarrow raises several types for a damaged or foreign file
        raise InputError(f"not a readable parquet file ({type(e).__name__}: {' '.join(str(e).split())[:200]})",
                         path=path) from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InputError(f"missing column(s) {', '.join(missing)}", path=path)
    if len(set(map(str, table.columns))) != len(table.columns):
        raise InputError("duplicated column names", path=path)
    for name in table.columns:
        if name in _KINDS:
            table[name] = _checked_column(table[name], name, path)
    return table.reset_index(drop=True)


def load_audit(audit_dir: str | Path) -> Audit:
    """The manifest, `points.parquet` and `images.parquet` of an audit directory, validated."""
    audit_dir = audit_path(audit_dir)
    manifest = load_manifest(audit_dir)
    points = read_table(audit_dir / POINTS, POINT_COLUMNS)
    images = read_table(audit_dir / IMAGES, IMAGE_COLUMNS)
    repeated = images.image_id[images.image_id.duplicated()]
    if len(repeated):
        raise InputError(f"image_id '{repeated.iloc[0]}' has {int((images.image_id == repeated.iloc[0]).sum())} rows; "
                         "expected one row per face", path=audit_dir / IMAGES, field="image_id")
    twice = points[points.duplicated(["image_id", "point"])]
    if len(twice):
        raise InputError(f"point {twice.point.iloc[0]} of '{twice.image_id.iloc[0]}' has several rows; expected one "
                         "row per (image_id, point)", path=audit_dir / POINTS, field="point")
    unknown = sorted(set(points.image_id) - set(images.image_id))
    if unknown:
        raise InputError(f"image_id '{unknown[0]}' is not in images.parquet ({len(unknown)} such ids)",
                         path=audit_dir / POINTS)
    if ("annotator" in images.columns) != ("subject" in images.columns):
        raise InputError("expected both columns annotator and subject, or neither", path=audit_dir / IMAGES)
    k = _scheme_size(manifest)
    if (points.point < 0).any() or (k is not None and (points.point >= k).any()):
        bad = points.point[(points.point < 0) | (points.point >= (k or 2**31))].iloc[0]
        raise InputError(f"point {bad} is not a point of the audit's scheme ({k} points)", path=audit_dir / POINTS,
                         field="point")
    if k is not None and len(points) != len(images) * k:
        raise InputError(f"{len(points)} rows; expected one per point of every face ({len(images)} x {k})",
                         path=audit_dir / POINTS)
    return Audit(manifest, points, images)


def load_annotators(audit_dir: str | Path) -> pd.DataFrame | None:
    """`AUDIT/annotators.parquet` (one row per annotator, best first), validated; None where the audit has none."""
    path = audit_path(audit_dir) / ANNOTATORS
    if not os.path.lexists(path):
        return None
    table = read_table(path, ANNOTATOR_COLUMNS)
    repeated = table.annotator[table.annotator.duplicated()]
    if len(repeated):
        raise InputError(f"annotator '{repeated.iloc[0]}' has several rows; expected one per annotator", path=path,
                         field="annotator")
    return table


def load_tolerances(audit_dir: str | Path, num_points: int) -> pd.DataFrame | None:
    """`AUDIT/tolerances.parquet` in point order, validated: one row per point of a scheme of `num_points`; None for
    an audit written before it."""
    path = audit_path(audit_dir) / TOLERANCES
    if not os.path.lexists(path):
        return None
    table = read_table(path, TOLERANCE_COLUMNS)
    if sorted(table.point.tolist()) != list(range(num_points)):
        raise InputError(f"expected one row for each point 0..{num_points - 1} of the audit's scheme, got "
                         f"{len(table)} rows", path=path, field="point")
    unknown = sorted(set(table.source) - set(TOLERANCE_SOURCES))
    if unknown:
        raise InputError(f"unknown source '{unknown[0]}'; expected one of {', '.join(TOLERANCE_SOURCES)}", path=path,
                         field="source")
    return table.sort_values("point", kind="stable").reset_index(drop=True)


def _scheme_size(manifest: dict) -> int | None:
    """The number of points of the manifest's scheme, when it names them."""
    scheme = manifest.get("scheme")
    points = scheme.get("points") if isinstance(scheme, dict) else None
    return len(points) if isinstance(points, list) and points else None


PREDICTED_ISSUES = ("gross_error", "off_contour", "swapped_sides", "duplicate")  # never the search's position
SHAPE_ISSUES = ("gross_error", "off_contour", "duplicate")  # the labels' shape's position


def proposals(points: pd.DataFrame, mode_ratio: float = 0.5) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The corrected position the audit proposes for each point (x, y), image px, and where it comes from
    ('searched', 'shape', 'exchanged' or 'predicted').

    - gross errors, off-contour labels and duplicates: the labels' own shape, the point's conditional mean given
      the face's other labels (`x_shape`, `y_shape`); on real faces it is twice as close to the labels before
      planting as the model's position (benchmarks/README.md, "Real faces"); on a face whose sides are swapped
      (its other labels mirrored) the model's position instead;
    - a chain swap: the label its neighbour was given (`x_partner`, `y_partner`);
    - swapped sides: the model's prediction (on a swapped face the labels' shape is mirrored too);
    - anything else, low confidence included (a faint heatmap makes its peak no better a guess): the semantic
      search's position, which stays near the label by design (its prior) and suits a contour slide; the
      prediction where the search had no valid candidate.
    An audit without the shape columns proposes the prediction for gross errors and off-contour labels, or for a
    gross error the model's local peak in the search window when that peak is strong (at least `mode_ratio` of
    the heatmap's maximum).
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
    source = np.where(use_search, "searched", "predicted").astype(object)
    # on a face labelled mirrored the labels' shape is mirrored too: its other flags keep the model's position
    mirrored = points["image_id"].isin(points.loc[kind == "swapped_sides", "image_id"]).to_numpy()
    for kinds, columns, name in ((SHAPE_ISSUES, ("x_shape", "y_shape"), "shape"),
                                 (("chain_swap",), ("x_partner", "y_partner"), "exchanged")):
        if set(columns) <= set(points.columns):
            finite = np.isfinite(points[columns[0]].to_numpy(float)) & np.isfinite(points[columns[1]].to_numpy(float))
            chosen = np.isin(kind, kinds) & ~(mirrored & (name == "shape")) & finite
            x, y = np.where(chosen, points[columns[0]], x), np.where(chosen, points[columns[1]], y)
            source = np.where(chosen, name, source).astype(object)
    return x.astype(float), y.astype(float), source


def dataset_location(manifest: dict, audit_dir: str | Path) -> tuple[Path, Path | None]:
    """The audited dataset's annotation path and images root (or None): the manifest stores them relative to the
    audit directory (an absolute path stays as it is)."""
    info = manifest.get("dataset") or {}
    path = Path(audit_dir) / str(info.get("path") or ".")
    root = info.get("images_root")
    return path, None if root is None else Path(audit_dir) / str(root)


def image_roots(manifest: dict, audit_dir: str | Path) -> list[Path]:
    """The folders a face's `image_path` (images.parquet) may be relative to, tried in this order: the dataset's
    images root when it has one, the pts folder, the annotation file's folder and its WFLW images subfolder."""
    annotations, images_root = dataset_location(manifest, audit_dir)
    roots = [images_root] if images_root is not None else []
    return [*roots, annotations, annotations.parent, annotations.parent / IMAGES_SUBFOLDER]


def locate_image(roots: list[Path], image_path: str | Path) -> Path | None:
    """The image file of a face where it lies now (the first of `roots`, from `image_roots`, that holds
    `image_path`), or None when none does."""
    return next((root / image_path for root in roots if (root / image_path).is_file()), None)


def audit_scheme(manifest: dict, audit_dir: str | Path) -> LandmarkScheme:
    """The landmark scheme of an audit: the manifest's `scheme` object, else the built-in `dataset.scheme` names; an
    InputError naming the manifest when it has neither."""
    scheme, name = manifest.get("scheme"), (manifest.get("dataset") or {}).get("scheme")
    if isinstance(scheme, dict):
        return scheme_from_json(scheme, source=Path(audit_dir) / MANIFEST, field="scheme")
    if not isinstance(name, str):
        raise InputError("expected the scheme as an object (or its name in dataset.scheme)",
                         path=Path(audit_dir) / MANIFEST, field="scheme")
    return get_scheme(name)


def load_audited_dataset(manifest: dict, audit_dir: str | Path) -> Dataset:
    """The dataset the manifest names (paths relative to the audit directory), read as the audit read it; an
    InputError when its labels changed since."""
    from auditor.io import read_dataset
    from auditor.schemes import scheme_from_json

    info = manifest["dataset"]
    for key in ("path", "format"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise InputError("the audit does not say where its dataset is: expected a non-empty string",
                             path=Path(audit_dir) / MANIFEST, field=f"dataset.{key}")
    scheme = manifest.get("scheme")
    if isinstance(scheme, dict):
        scheme = scheme_from_json(scheme, source=Path(audit_dir) / MANIFEST, field="scheme")
    elif not isinstance(info.get("scheme"), str):
        raise InputError("expected the scheme as an object (or its name in dataset.scheme)",
                         path=Path(audit_dir) / MANIFEST, field="scheme")
    else:
        scheme = info["scheme"]
    path, images_root = dataset_location(manifest, audit_dir)
    annotators_from = info.get("annotators_from")
    if annotators_from is not None and not isinstance(annotators_from, str):
        raise InputError("expected a string or null", path=Path(audit_dir) / MANIFEST, field="dataset.annotators_from")
    ds = read_dataset(path, format=info["format"], scheme=scheme, images_root=images_root,
                      annotators_from=annotators_from)
    if ds.fingerprint() != info["fingerprint"]:
        raise InputError("the dataset changed since the audit (its fingerprint differs from the manifest's): re-run "
                         "`auditor audit` before exporting corrections", path=path)
    return ds
