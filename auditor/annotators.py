"""Several annotators in an audit: the consensus columns of points.parquet and images.parquet, AUDIT/annotators.parquet
(each annotator against the consensus) and AUDIT/tolerances.parquet (each point's tolerance, COCO-style sigmas), from
an audit's tables; the maths is `auditor.consensus`'s (docs/audit_format.md lists the columns).

The label sets of one subject (a person in an image, `Dataset.subjects`) are the audit's faces that share its
`subject`. The annotators' labels go in as observations; the model's prediction and the semantic search's position,
each the median over the subject's label sets, as two further witnesses, and the labels' own shape as a third
(`auditor.consensus.SHAPE`). A subject's normaliser is the mean of its label sets' normalisers, its scale (for the
sigmas) the mean of their sqrt(face area).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from auditor.atomic import atomic_open, atomic_write_text
from auditor.audit_dir import (
    ANNOTATORS,
    TOLERANCES,
    audit_path,
    dataset_location,
    load_annotators,
    load_audit,
    load_manifest,
    load_tolerances,
)
from auditor.consensus import (
    Consensus,
    ConsensusConfig,
    annotator_table,
    estimate_consensus,
    face_agreement,
    point_tolerances,
    tolerances_from_single,
)
from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.outputs import check_apart, check_writable_location
from auditor.schemes import LandmarkScheme, scheme_from_json

WITNESSES = {"model": ("x_pred", "y_pred"), "search": ("x_searched", "y_searched")}  # name -> points.parquet columns
FACE_AREA = "face_area"  # a shard's images.parquet column: each face's area, px², for `merge_audits`' sigmas
_TOLERANCE_COLUMNS = ("point", "point_name", "group", "is_contour", "labels", "spread_along", "spread_across", "sigma",
                      "source")


@dataclass(frozen=True)
class AnnotatorAudit:
    """What `audit_annotators` adds to an audit directory besides the tables' columns."""

    annotators: pd.DataFrame | None  # annotators.parquet's rows; None without annotators and in a shard
    tolerances: pd.DataFrame  # tolerances.parquet's rows, one per point
    manifest: dict  # the manifest's `annotators` and `tolerances` entries


def face_areas(ds: Dataset, faces: np.ndarray) -> np.ndarray:
    """(n,) px² the area of each of `faces`' box, of its labels' extent where it has none (NaN where neither)."""

    def area(box: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore"):
            size = np.prod(box[:, 2:] - box[:, :2], axis=1)
        return np.where(size > 0, size, np.nan)

    extent = area(ds.label_extents()[faces])
    if ds.boxes is None:
        return extent
    boxed = area(ds.boxes[faces])
    return np.where(np.isfinite(boxed), boxed, extent)


def add_subject_columns(images: pd.DataFrame, ds: Dataset, faces: np.ndarray) -> pd.DataFrame:
    """images.parquet's `annotator` (str) and `subject` (int64, `Dataset.subjects` over the whole dataset) of `faces`,
    added in place; nothing where the dataset names no annotators."""
    if ds.annotators is not None:
        images["annotator"] = pd.array([ds.annotators[i] for i in faces], dtype="string")
        images["subject"] = ds.subjects()[faces]
    return images


def take_face_areas(images: pd.DataFrame, points: pd.DataFrame, k: int) -> np.ndarray:
    """(N,) px² the shards' `face_area` column, removed from the merged images; the labels' extent's where shards
    written before that column lack it."""
    if FACE_AREA in images.columns:
        return images.pop(FACE_AREA).to_numpy(dtype=np.float64)
    human = _grid(points, len(images), k, ("x_human", "y_human"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a face without any label
        size = np.nanmax(human, axis=1) - np.nanmin(human, axis=1)  # (N, 2)
    area = np.prod(size, axis=1)
    return np.where(area > 0, area, np.nan)


def _grid(points: pd.DataFrame, n: int, k: int, columns: tuple[str, str]) -> np.ndarray:
    """(N, K, 2) px the (x, y) columns of a face-major points table."""
    return np.stack([points[c].to_numpy(dtype=np.float64).reshape(n, k) for c in columns], axis=-1)


def _filled(values: np.ndarray) -> np.ndarray:
    """values (n,) px with each non-finite or non-positive entry the median of the others (1 where none is good)."""
    good = np.isfinite(values) & (values > 0)
    return np.where(good, values, np.median(values[good]) if good.any() else 1.0)


def _subject_mean(values: np.ndarray, subject: np.ndarray, s: int) -> np.ndarray:
    """(S, ...) the mean of values (M, ...) over each subject's rows, NaN skipped (NaN where a subject has none)."""
    finite = np.isfinite(values)
    total = np.zeros((s, *values.shape[1:]))
    count = np.zeros((s, *values.shape[1:]))
    np.add.at(total, subject, np.where(finite, values, 0.0))
    np.add.at(count, subject, finite)
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / count


def _subject_median(values: np.ndarray, subject: np.ndarray, s: int) -> np.ndarray:
    """(S, ...) the median of values (M, ...) over each subject's rows, NaN skipped (NaN where a subject has none)."""
    flat = pd.DataFrame(values.reshape(len(values), -1)).groupby(subject).median()
    return flat.reindex(range(s)).to_numpy(dtype=np.float64).reshape(s, *values.shape[1:])


@dataclass(frozen=True)
class _Subjects:
    """An audit's label sets grouped by subject: the inputs of `estimate_consensus`."""

    labels: np.ndarray  # (M, K, 2) px
    index: np.ndarray  # (M,) each label set's subject in [0, S)
    annotator: list[str]  # (M,)
    normaliser: np.ndarray  # (S,) px
    scale: np.ndarray  # (S,) px, the mean sqrt(face area)
    witnesses: dict[str, np.ndarray]  # name -> (S, K, 2) px


def _subjects(points: pd.DataFrame, images: pd.DataFrame, k: int, scale: np.ndarray) -> _Subjects:
    """The label sets of an audit's tables (with `annotator` and `subject`) grouped by subject; scale (M,) px."""
    m = len(images)
    _, index = np.unique(images["subject"].to_numpy(dtype=np.int64), return_inverse=True)
    s = int(index.max()) + 1
    normaliser = _subject_mean(_filled(images["normaliser"].to_numpy(dtype=np.float64)), index, s)
    # the median: the search stays near each label, so a mean would carry a third of one annotator's gross error
    witnesses = {name: _subject_median(_grid(points, m, k, columns), index, s) for name, columns in WITNESSES.items()}
    return _Subjects(labels=_grid(points, m, k, ("x_human", "y_human")), index=index,
                     annotator=images["annotator"].astype(str).tolist(), normaliser=normaliser,
                     scale=_subject_mean(scale, index, s), witnesses=witnesses)


def _searched_tolerances(points: pd.DataFrame, images: pd.DataFrame, scheme: LandmarkScheme,
                         scale: np.ndarray) -> pd.DataFrame:
    """Each point's tolerance from the labels' spread around the semantic search's position (the model's where the
    search found no candidate, as the audit's proposals do), scale (N,) px."""
    n, k = len(images), scheme.num_points
    searched = _grid(points, n, k, ("x_searched", "y_searched"))
    predicted = _grid(points, n, k, WITNESSES["model"])
    reference = np.where(np.isfinite(searched).all(-1, keepdims=True), searched, predicted)
    table = tolerances_from_single(_grid(points, n, k, ("x_human", "y_human")), reference, scheme, scale,
                                   normaliser=_filled(images["normaliser"].to_numpy(dtype=np.float64)),
                                   source="searched")
    return table.rename(columns={"name": "point_name"})[list(_TOLERANCE_COLUMNS)]


def _annotator_tolerances(subjects: _Subjects, consensus: Consensus, scheme: LandmarkScheme,
                          searched: pd.DataFrame) -> pd.DataFrame:
    """Each point's tolerance from the annotators' spread around the consensus; a point never labelled twice on one
    subject takes the searched row."""
    table = point_tolerances(subjects.labels, subjects.index, consensus, scheme, subjects.scale,
                             normaliser=subjects.normaliser).rename(columns={"name": "point_name"})
    table = table[list(_TOLERANCE_COLUMNS)]
    missing = ~np.isfinite(table["sigma"].to_numpy(dtype=np.float64))
    for column in ("labels", "spread_along", "spread_across", "sigma", "source"):
        table[column] = np.where(missing, searched[column].to_numpy(), table[column].to_numpy())
    return table


def audit_annotators(points: pd.DataFrame, images: pd.DataFrame, scheme: LandmarkScheme, areas: np.ndarray, *,
                     shard: bool = False, config: ConsensusConfig | None = None) -> AnnotatorAudit:
    """The consensus columns added in place to an audit's points (N·K rows, face-major) and images (N rows) tables
    whose images name each face's `annotator` and `subject` (none in a shard, whose subjects may span shards), the
    rows of annotators.parquet and tolerances.parquet, and the manifest's entries; areas (N,) px² each face's.

    Points gain `x_consensus, y_consensus` (the subject's consensus, px) and `annotator_agreement` (posterior
    probability that the label is not a gross error; NaN where missing); images gain `annotator_agreement` (the
    face's mean). The tolerances come from the annotators' spread where a subject is labelled more than once, else
    from the labels' spread around the search's positions (`source`)."""
    k = scheme.num_points
    scale = _filled(np.sqrt(np.asarray(areas, dtype=np.float64)))
    searched = _searched_tolerances(points, images, scheme, scale)
    if "annotator" not in images.columns:
        return AnnotatorAudit(None, searched, {"annotators": None, "tolerances": {"source": "searched"}})
    subjects = _subjects(points, images, k, scale)
    times, count = np.unique(np.bincount(subjects.index), return_counts=True)
    block = {"count": len(set(subjects.annotator)), "subjects": len(subjects.normaliser),
             "labelled_k_times": {str(t): int(c) for t, c in zip(times, count, strict=True)},
             "witnesses": list(WITNESSES), "iterations": None}
    if shard:
        return AnnotatorAudit(None, searched, {"annotators": block, "tolerances": {"source": "searched"}})
    consensus = estimate_consensus(subjects.labels, subjects.index, subjects.annotator, scheme, subjects.normaliser,
                                   witnesses=subjects.witnesses, config=config)
    xy = consensus.xy[subjects.index]  # (N, K, 2)
    points["x_consensus"], points["y_consensus"] = xy[..., 0].ravel(), xy[..., 1].ravel()
    points["annotator_agreement"] = consensus.agreement.ravel()
    images["annotator_agreement"] = face_agreement(consensus)
    table = annotator_table(consensus, subjects.labels, subjects.index, subjects.annotator, scheme,
                            subjects.normaliser)
    several = bool(times.max() > 1)
    tolerances = _annotator_tolerances(subjects, consensus, scheme, searched) if several else searched
    block["iterations"] = consensus.iterations
    block["witnesses"] = list(consensus.witness_spread)
    return AnnotatorAudit(table, tolerances, {"annotators": block,
                                              "tolerances": {"source": "annotators" if several else "searched"}})


def write_annotator_files(folder: Path, result: AnnotatorAudit) -> None:
    """annotators.parquet (when there is a table) and tolerances.parquet into an audit's (temp) folder."""
    if result.annotators is not None:
        result.annotators.to_parquet(folder / ANNOTATORS, index=False)
    result.tolerances.to_parquet(folder / TOLERANCES, index=False)


def departures(points: pd.DataFrame, images: pd.DataFrame, *, top: int = 1) -> pd.DataFrame:
    """The `top` faces of each annotator farthest from the consensus: annotator, image_id, subject and mean_error
    (mean distance of the face's labels to the consensus, normaliser units), farthest first."""
    n = len(images)
    k = len(points) // max(n, 1)
    distance = np.linalg.norm(_grid(points, n, k, ("x_human", "y_human"))
                              - _grid(points, n, k, ("x_consensus", "y_consensus")), axis=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a face without any label
        error = np.nanmean(distance, axis=1) / images["normaliser"].to_numpy(dtype=np.float64)
    table = pd.DataFrame({"annotator": images["annotator"].astype(str), "image_id": images["image_id"].astype(str),
                          "subject": images["subject"].to_numpy(dtype=np.int64), "mean_error": error})
    table = table[np.isfinite(error)].sort_values("mean_error", ascending=False, kind="stable")
    return table.groupby("annotator", sort=True).head(top).reset_index(drop=True)


def _check_output(out: Path, audit_dir: Path, manifest: dict) -> None:
    """An InputError unless `out` may be written as a file: not a folder, apart from the audit and its dataset."""
    check_writable_location(out, field="--out")
    if out.is_dir():
        raise InputError("is a folder; expected a file to write", path=out, field="--out")
    check_apart(out, [audit_dir, dataset_location(manifest, audit_dir)[0]], field="--out")


def report_annotators(audit_dir: str | Path, out: str | Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Write AUDIT/annotators.parquet's rows to the CSV `out` (atomically); return them and each annotator's face
    farthest from the consensus (`departures`)."""
    audit_dir, out = audit_path(audit_dir), Path(out)
    manifest = load_manifest(audit_dir)
    table = load_annotators(audit_dir)
    if table is None:
        if manifest.get("shard") is not None and isinstance(manifest.get("annotators"), dict):
            raise InputError("a shard has no consensus (a subject may span shards): merge the shards with "
                             "`auditor merge` first", path=audit_dir)
        raise InputError("the audit has no annotators (its dataset names nobody who labelled the faces; see "
                         "--annotators-from)", path=audit_dir)
    _check_output(out, audit_dir, manifest)
    audit = load_audit(audit_dir)
    if not {"x_consensus", "y_consensus", "annotator", "subject"} <= set(audit.points.columns) | set(
            audit.images.columns):
        raise InputError("annotators.parquet without the consensus columns in points.parquet and images.parquet "
                         "(re-run `auditor audit`)", path=audit_dir)
    with atomic_open(out, newline="") as f:
        table.to_csv(f, index=False, lineterminator="\n")
    return table, departures(audit.points, audit.images)


def export_sigmas(audit_dir: str | Path, out: str | Path) -> dict:
    """Write the audit's per-keypoint sigmas as JSON to `out` (atomically), in the scheme's point order, for
    pycocotools' `COCOeval.params.kpt_oks_sigmas` or FiftyOne's OKS; return what was written."""
    audit_dir, out = audit_path(audit_dir), Path(out)
    manifest = load_manifest(audit_dir)
    scheme = scheme_from_json(manifest.get("scheme"), source=audit_dir / "manifest.json", field="scheme")
    table = load_tolerances(audit_dir, scheme.num_points)
    if table is None:
        raise InputError(f"no {TOLERANCES}: the audit was written by an older auditor (re-run `auditor audit`)",
                         path=audit_dir)
    sigma = table["sigma"].to_numpy(dtype=np.float64)
    bad = ~(np.isfinite(sigma) & (sigma > 0))
    if bad.any():
        name = scheme.point_names[int(np.flatnonzero(bad)[0])]
        more = f" (and {bad.sum() - 1} more points)" if bad.sum() > 1 else ""
        raise InputError(f"point '{name}' has no tolerance{more}: no face labels it, and COCO's OKS needs a positive "
                         "sigma for every point", path=audit_dir / TOLERANCES, field="sigma")
    _check_output(out, audit_dir, manifest)

    def numbers(column: str) -> list[float | None]:
        return [float(v) if np.isfinite(v) else None for v in table[column].to_numpy(dtype=np.float64)]

    sources = set(table["source"].astype(str))
    result = {"scheme": scheme.name, "keypoints": list(scheme.point_names), "sigmas": numbers("sigma"),
              "source": "annotators" if "annotators" in sources else "searched",
              "spread_along": numbers("spread_along"), "spread_across": numbers("spread_across")}
    atomic_write_text(out, json.dumps(result, indent=1) + "\n")
    return result
