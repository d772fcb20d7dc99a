"""Export a reviewed audit: the corrections table (CSV, FiftyOne or Label Studio JSON) and corrected labels.

`only` picks the points (accepted: decided accept, edit or mirror; issues: flagged; all: every labelled point);
each gets its corrected position and its `source` (edited, mirrored, searched, shape, exchanged, predicted, or
consensus with `use="consensus"`). Only accept, edit and mirror are ever applied to labels. docs/review.md gives
the table of sources and the three file layouts.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote
from xml.sax.saxutils import quoteattr

import numpy as np
import pandas as pd

from auditor.atomic import atomic_directory, atomic_open, atomic_write_text
from auditor.audit_dir import (
    POINTS,
    Audit,
    audit_scheme,
    dataset_location,
    load_audit,
    load_audited_dataset,
    proposals,
)
from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.outputs import (
    check_apart,
    check_replaceable,
    check_writable_location,
    dataset_inputs,
    resolved,
    write_marker,
)
from auditor.schemes import LandmarkScheme
from auditor.triage import ORDERS, mirrored_positions, point_gains, queue_rank

ONLY = ("accepted", "issues", "all")
USE = ("proposals", "consensus")  # what an exported point's corrected position is
CONSENSUS_COLUMNS = ("x_consensus", "y_consensus")
TABLE_FORMATS = ("csv", "fiftyone", "labelstudio")
LABEL_FORMATS = ("pts", "wflw", "csv", "coco")
CSV_COLUMNS = ("image_id", "image_path", "point", "point_name", "group", "x_human", "y_human", "x_corrected",
               "y_corrected", "dx", "dy", "displacement_nme", "issue_type", "label_score", "decision", "source",
               "reviewer", "decided_at")
NEEDS_REVIEW = "needs_review"
APPLIED = ("accept", "edit", "mirror")  # the decisions that move a label
# FiftyOne's names of the sample fields' types (`str(field)`, what `Dataset.to_dict` writes in "sample_fields")
KEYPOINTS_FIELD = "fiftyone.core.fields.EmbeddedDocumentField(fiftyone.core.labels.Keypoints)"
STRINGS_FIELD = "fiftyone.core.fields.ListField(fiftyone.core.fields.StringField)"
LOCAL_FILES_URL = "/data/local-files/?d="


def check_consensus(audit: Audit, *, path: Path | None = None) -> None:
    """An InputError unless the audit's points.parquet (at `path`, for the message) holds consensus positions: the
    audit of a dataset that names its annotators."""
    if not set(CONSENSUS_COLUMNS) <= set(audit.points.columns):
        raise InputError("no consensus positions (points.parquet has no x_consensus, y_consensus): the audited dataset "
                         "names no annotators; export --use proposals, or audit a dataset that names who labelled "
                         "each face", path=path)


def corrections(audit: Audit, decisions: pd.DataFrame, *, only: str = "accepted", use: str = "proposals",
                order: str | None = None) -> pd.DataFrame:
    """One row per exported point: CSV_COLUMNS plus `face` and `is_label_issue`, in the review queue's `order`
    (`auditor.triage.ORDERS`), or the audit's for None.

    `decisions` is `ReviewStore.latest()`: one row per decided point; `use` the corrected positions (USE, the
    module docstring).
    """
    if only not in ONLY:
        raise InputError(f"unknown selection '{only}': expected one of {', '.join(ONLY)}")
    if use not in USE:
        raise InputError(f"unknown corrected positions '{use}': expected one of {', '.join(USE)}")
    if use == "consensus":
        check_consensus(audit)
    if order is not None and order not in ORDERS:
        raise InputError(f"unknown order '{order}': expected one of {', '.join(ORDERS)}")
    points = audit.points
    if order is not None:
        flip = audit_scheme(audit.manifest, ".").flip_permutation
        points = points.assign(rank=queue_rank(points, point_gains(points, audit.images, audit.manifest, flip),
                                               order=order))
    points = points[np.isfinite(points.x_human) & np.isfinite(points.y_human)]
    decided = decisions[["image_id", "point", "decision", "x", "y", "reviewer", "created_at"]].rename(
        columns={"x": "x_decided", "y": "y_decided", "created_at": "decided_at"})
    p = points.astype({"point": np.int64}).merge(decided.astype({"point": np.int64}), on=["image_id", "point"],
                                                 how="left")
    p = p.merge(audit.images[["image_id", "image_path", "normaliser"]], on="image_id", how="left")
    decision = p.decision.fillna("").to_numpy(dtype=object)
    chosen = np.isin(decision, ("accept", "edit")) & np.isfinite(p.x_decided) & np.isfinite(p.y_decided)
    x_prop, y_prop, proposed_from = proposals(p)
    x = np.where(chosen, p.x_decided, x_prop)
    y = np.where(chosen, p.y_decided, y_prop)
    # an accept stores the position proposed when it was made; say where that came from
    def at(name: str) -> np.ndarray:
        if f"x_{name}" not in p:
            return np.zeros(len(p), dtype=bool)
        return np.asarray(np.isclose(p.x_decided, p[f"x_{name}"]) & np.isclose(p.y_decided, p[f"y_{name}"]))

    accepted_from = np.select([at("shape"), at("pred"), at("partner")], ["shape", "predicted", "exchanged"],
                              "searched")
    source = np.select([decision == "edit", chosen], ["edited", accepted_from], proposed_from)
    mirror = decision == "mirror"
    if mirror.any():
        x_mirror, y_mirror = mirrored_positions(p, audit_scheme(audit.manifest, ".").flip_permutation).T
        partnered = np.isfinite(x_mirror) & np.isfinite(y_mirror)
        x = np.where(mirror, np.where(partnered, x_mirror, p.x_human), x)
        y = np.where(mirror, np.where(partnered, y_mirror, p.y_human), y)
        source = np.where(mirror, np.where(partnered, "mirrored", "label"), source)
    if use == "consensus":
        x_con, y_con = (p[c].to_numpy(dtype=np.float64) for c in CONSENSUS_COLUMNS)
        known = np.isfinite(x_con) & np.isfinite(y_con)
        x, y = np.where(known, x_con, p.x_human), np.where(known, y_con, p.y_human)
        source = np.where(known, "consensus", "label")
    dx, dy = x - p.x_human.to_numpy(), y - p.y_human.to_numpy()
    table = pd.DataFrame({
        "image_id": p.image_id, "image_path": p.image_path, "point": p.point, "point_name": p.point_name,
        "group": p.group, "x_human": p.x_human, "y_human": p.y_human, "x_corrected": x, "y_corrected": y,
        "dx": dx, "dy": dy, "displacement_nme": np.hypot(dx, dy) / p.normaliser.to_numpy(),
        "issue_type": p.issue_type.fillna(""), "label_score": p.label_score, "decision": decision, "source": source,
        "reviewer": p.reviewer.fillna(""), "decided_at": p.decided_at.fillna(""), "face": p.face,
        "is_label_issue": p.is_label_issue.astype(bool),
    })
    keep = {"accepted": np.isin(decision, APPLIED), "issues": table.is_label_issue.to_numpy(),
            "all": np.ones(len(table), bool)}[only]
    by = ["face", "point"] if order is None else ["rank", "point"]
    return (table.assign(rank=p["rank"].to_numpy() if order is not None else 0)[keep]
            .sort_values(by, kind="stable").drop(columns="rank").reset_index(drop=True))


def error_removed(audit: Audit, decisions: pd.DataFrame) -> pd.Series:
    """The error the accepted, edited and mirrored corrections remove, per face (image_id -> NME): the sum of their
    displacement_nme; faces without one are left out. `audit` may hold some faces only (those decided), whole: a
    mirrored point needs its partner's label."""
    table = corrections(audit, decisions, only="accepted")
    return table.groupby("image_id", sort=False).displacement_nme.sum()  # NaN (no label) counts 0


def write_csv(table: pd.DataFrame, path: str | Path) -> None:
    """The corrections table as CSV (CSV_COLUMNS), written atomically; NaN as an empty cell."""
    with atomic_open(path, newline="") as f:
        table.loc[:, list(CSV_COLUMNS)].to_csv(f, index=False, float_format="%.6f")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) of an image from its header, without decoding it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"cannot read the image's size ({e})", path=path) from None


def _face_rows(table: pd.DataFrame, ds: Dataset) -> np.ndarray:
    """The dataset row of each row's face; an InputError for a face the dataset does not hold."""
    index = {image_id: i for i, image_id in enumerate(ds.image_ids)}
    unknown = sorted(set(table.image_id) - set(index))
    if unknown:
        raise InputError(f"face '{unknown[0]}' of the audit is not in the dataset ({len(unknown)} such faces)",
                         path=ds.root)
    return table.image_id.map(index).to_numpy(dtype=np.int64)


def _image_path(ds: Dataset, i: int) -> Path:
    """Face `i`'s image file as an absolute path without `.` or `..` (symbolic links kept)."""
    return Path(os.path.abspath(ds.image_paths[i]))


def _faces_by_image(table: pd.DataFrame, ds: Dataset) -> dict[Path, list[int]]:
    """The dataset faces holding rows of `table`, grouped by image file (`_image_path`), in the dataset's order."""
    by_image: dict[Path, list[int]] = {}
    for i in np.unique(_face_rows(table, ds)):
        by_image.setdefault(_image_path(ds, int(i)), []).append(int(i))
    return by_image


def _corrected_landmarks(ds: Dataset, table: pd.DataFrame) -> np.ndarray:
    """(N, K, 2) the labels with every point of `table` at its corrected position."""
    landmarks = ds.landmarks.copy()
    landmarks[_face_rows(table, ds), table.point.to_numpy(dtype=np.int64)] = table[["x_corrected",
                                                                                    "y_corrected"]].to_numpy()
    return landmarks


def _keypoints(ds: Dataset, xy: np.ndarray, faces: list[int], size: tuple[int, int]) -> dict:
    """FiftyOne `Keypoints` of `faces` from landmarks (N, K, 2), in [0, 1] of the image `size` (width, height); each
    face's annotator too when the dataset names them."""
    scale = np.asarray(size, dtype=np.float64)
    keypoints = []
    for i in faces:
        face = {"_cls": "Keypoint", "label": "face", "image_id": ds.image_ids[i]}
        if ds.annotators is not None:
            face["annotator"] = ds.annotators[i]
        keypoints.append({**face, "points": (xy[i] / scale).tolist()})
    return {"_cls": "Keypoints", "keypoints": keypoints}


def fiftyone_skeleton(scheme: LandmarkScheme) -> dict:
    """The scheme as a serialised `fo.KeypointSkeleton`: the point names in the scheme's order and one edge list per
    contour chain (a closed one ends where it starts)."""
    edges = [[*c.points, c.points[0]] if c.closed and len(c.points) > 2 else list(c.points) for c in scheme.contours]
    return {"_cls": "KeypointSkeleton", "labels": list(scheme.point_names), "edges": edges}


def to_fiftyone(table: pd.DataFrame, ds: Dataset, *, needs_review: set[str], name: str = "landmark-auditor") -> dict:
    """The exported points as a FiftyOne dataset for `fo.Dataset.from_dict` (the shape in this module's docstring);
    images holding a face of `needs_review` (ids) are tagged."""
    corrected = _corrected_landmarks(ds, table)
    samples = []
    for path, faces in _faces_by_image(table, ds).items():
        size = image_size(path)
        sample = {
            "filepath": str(path), "tags": [NEEDS_REVIEW] if needs_review & {ds.image_ids[i] for i in faces} else [],
            "metadata": {"_cls": "ImageMetadata", "width": size[0], "height": size[1]},
            "human": _keypoints(ds, ds.landmarks, faces, size), "keypoints": _keypoints(ds, corrected, faces, size)}
        if ds.annotators is not None:
            sample["annotators"] = sorted({ds.annotators[i] for i in faces})
        samples.append(sample)
    fields = {"human": KEYPOINTS_FIELD, "keypoints": KEYPOINTS_FIELD}
    if ds.annotators is not None:
        fields["annotators"] = STRINGS_FIELD
    return {"name": name, "media_type": "image", "sample_fields": fields,
            "default_skeleton": fiftyone_skeleton(ds.scheme), "samples": samples}


def labelstudio_config(scheme: LandmarkScheme) -> str:
    """The Label Studio labelling config of the exported tasks: one keypoint label per point name, its `model_index`
    the point's place in the scheme (the keypoint order of Label Studio's COCO export, which fails without it)."""
    labels = "".join(f"    <Label value={quoteattr(name)} model_index=\"{k}\"/>\n"
                     for k, name in enumerate(scheme.point_names))
    return ('<View>\n  <Image name="image" value="$image" zoom="true"/>\n'
            f'  <KeyPointLabels name="keypoints" toName="image">\n{labels}  </KeyPointLabels>\n</View>\n')


def labelstudio_config_path(out: Path) -> Path:
    """Where the export writes the labelling config of the tasks file `out`: beside it, `NAME.label_config.xml`."""
    return out.with_name(f"{out.stem}.label_config.xml")


def local_files_url(path: Path, document_root: Path) -> str:
    """The URL under which Label Studio's local-files storage serves the image `path`: `/data/local-files/?d=` and its
    path below `document_root`, percent-encoded; an InputError for an image outside that folder."""
    # lexical first, as `relative_image_path`: an image that is a symbolic link keeps its place under the root
    for image, root in ((Path(os.path.abspath(path)), Path(os.path.abspath(document_root))),
                        (path.resolve(), document_root.resolve())):
        try:
            return LOCAL_FILES_URL + quote(image.relative_to(root).as_posix(), safe="/")
        except ValueError:
            continue
    raise InputError(f"the image is outside the Label Studio document root {document_root}: give "
                     "--ls-document-root a folder that holds every image", path=path)


def to_labelstudio(table: pd.DataFrame, ds: Dataset, *, document_root: str | Path | None = None) -> list[dict]:
    """The exported points as Label Studio tasks with keypoint pre-annotations (the shape in the module docstring), one
    per face, in the order of `table`'s faces; image URLs for a local-files storage of `document_root` (default: the
    dataset's root).

    One task per face, not per image: Label Studio's COCO export makes one keypoint annotation of all the points of a
    task's annotation, so two faces in one task would come out as one.
    """
    root = ds.root if document_root is None else Path(document_root)
    finite = table[np.isfinite(table.x_corrected) & np.isfinite(table.y_corrected)]
    face_row = dict(zip(finite.image_id, _face_rows(finite, ds), strict=True))
    images: dict[Path, tuple[str, tuple[int, int]]] = {}
    tasks = []
    for image_id, rows in finite.groupby("image_id", sort=False):
        i = int(face_row[image_id])
        path = _image_path(ds, i)
        if path not in images:
            images[path] = (local_files_url(path, root), image_size(path))
        url, (width, height) = images[path]
        result = [{"id": f"{r.image_id}/{r.point}", "type": "keypointlabels", "from_name": "keypoints",
                   "to_name": "image", "original_width": width, "original_height": height, "image_rotation": 0,
                   "value": {"x": 100.0 * r.x_corrected / width, "y": 100.0 * r.y_corrected / height, "width": 0.5,
                             "keypointlabels": [r.point_name]}}
                  for r in rows.itertuples(index=False)]
        data = {"image": url, "image_id": image_id}
        if ds.annotators is not None:
            data["annotator"] = ds.annotators[i]
        tasks.append({"data": data, "predictions": [{"model_version": "landmark-auditor", "result": result}]})
    return tasks


def apply_corrections(ds: Dataset, table: pd.DataFrame, *, use: str = "proposals") -> tuple[Dataset, int]:
    """`ds` with points of `table` (finite ones) at their corrected position, and how many: the accepted, edited and
    mirrored ones with `use="proposals"`, every one with `use="consensus"`."""
    applied = table[np.isfinite(table.x_corrected) & np.isfinite(table.y_corrected)]
    applied = applied[applied.decision.isin(APPLIED) if use == "proposals"
                      else applied.source == "consensus"]
    return ds.with_landmarks(_corrected_landmarks(ds, applied)), len(applied)


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def backup_annotations(source: Path, fmt: str) -> Path:
    """Copy the dataset's annotation file (or, for pts, its folder's .pts files) to a timestamped backup beside it."""
    backup = source.with_name(f"{source.name}.backup-{_stamp()}")
    tmp = backup.with_name(f".{backup.name}.tmp")
    if fmt == "pts" and source.is_dir():
        for f in sorted(p for p in source.rglob("*") if p.suffix.lower() == ".pts"):
            (tmp / f.relative_to(source)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(f, tmp / f.relative_to(source))
    else:
        shutil.copy2(source, tmp)
    tmp.rename(backup)
    return backup


def check_labels_target(ds: Dataset, manifest: dict, out: Path | None, *, format: str | None = None,
                        in_place: bool = False) -> str:
    """The format `write_labels` would write in; an InputError, before anything is written, when it must not."""
    info = manifest["dataset"]
    source = Path(info["path"]).absolute()  # made absolute by export_corrections
    location = source if source.is_dir() else source.parent
    fmt = format or info["format"]
    if fmt not in LABEL_FORMATS:
        raise InputError(f"unknown label format '{fmt}': expected one of {', '.join(LABEL_FORMATS)}")
    if in_place:
        if fmt != info["format"]:
            raise InputError(f"--in-place writes the input's format ({info['format']}), not {fmt}")
        if out is not None and out.resolve() != location.resolve():
            raise InputError("--in-place writes over the input dataset; --write-labels names another folder",
                             path=out)
        if fmt == "pts":
            odd = [i for i in ds.image_ids if not (location / f"{i}.pts").is_file()]
            if odd:
                raise InputError(f"cannot write in place: face '{odd[0]}' is not in a lower-case .pts file",
                                 path=source)
        elif info.get("images_root") is not None or ds.root.resolve() != location.resolve():
            raise InputError("cannot write in place: the image paths are relative to another folder than the "
                             "annotation file's; write a new copy with --write-labels DIR", path=source)
        return fmt
    if out is None:
        raise InputError("no output folder: give --write-labels DIR (or --in-place)")
    inside = fmt == "pts" and location.resolve() in out.resolve().parents  # the pts reader would read them as input
    if out.resolve() in (source.resolve(), location.resolve()) or inside:
        raise InputError("this is the input dataset's location: pass --in-place to overwrite it (a backup is made "
                         "first), or choose another folder", path=out)
    if out.exists() and not out.is_dir():
        raise InputError("expected a folder for the corrected labels, got a file", path=out)
    return fmt


def write_labels(ds: Dataset, manifest: dict, out: Path | None, *, format: str | None = None,
                 in_place: bool = False) -> tuple[Path, Path | None]:
    """Write `ds` (corrected) as a whole dataset: into the folder `out`, or over the input with `in_place` after a
    backup; returns what was written and the backup (None unless in place).

    In place, the annotations are rewritten by this project's writer: what it does not keep (e.g. a COCO file's
    other fields) survives only in the backup.
    """
    from auditor.io import write_dataset

    fmt = check_labels_target(ds, manifest, out, format=format, in_place=in_place)
    source = Path(manifest["dataset"]["path"]).absolute()
    if in_place:
        backup = backup_annotations(source, fmt)
        return write_dataset(ds, source.parent if fmt == "pts" and source.is_file() else source, format=fmt,
                             link_images=False), backup
    name = source.name if fmt == manifest["dataset"]["format"] and source.is_file() else ""
    # the folder appears whole or not at all, and replaces only an earlier export
    check_replaceable(out, force=True, command="export-corrections", field="--write-labels")
    with atomic_directory(out) as tmp:
        written = write_dataset(ds, tmp / name if name else tmp, format=fmt)
        write_marker(tmp, "export-corrections")
    return out / written.relative_to(tmp), None


def audit_files(audit_dir: str | Path) -> list[Path]:
    """The files of an audit directory that an export must never write over."""
    from auditor.audit_dir import IMAGES, MANIFEST, POINTS, REVIEWS

    return [Path(audit_dir) / name for name in (MANIFEST, POINTS, IMAGES, REVIEWS, "heatmaps")]


def check_table_target(out: Path, inputs: list[Path]) -> None:
    """An InputError unless `out` can take the corrections table: not a folder, not under a file, not an input."""
    check_writable_location(out, field="--out")
    if os.path.isdir(out):
        raise InputError("is a folder; give the path of the table file to write", path=out, field="--out")
    out_r = resolved(out, field="--out")
    for path in inputs:
        if resolved(path) == out_r:
            raise InputError(f"this is an input of the command ({path}); choose another output", path=out,
                             field="--out")


def export_corrections(audit_dir: str | Path, *, out: str | Path | None = None, only: str = "accepted",
                       format: str | None = None, labels_dir: str | Path | None = None,
                       in_place: bool = False, use: str = "proposals",
                       ls_document_root: str | Path | None = None, order: str = "gain") -> dict:
    """Export an audit's reviewed corrections: the table to `out` (CSV, or `format` fiftyone / labelstudio, the
    latter with its labelling config beside it) and, with `labels_dir` or `in_place`, the whole corrected dataset
    (`format` pts / wflw / csv / coco, else the input's); `use` the corrected positions (USE, the module docstring);
    `ls_document_root` the folder Label Studio serves the images from (default: the dataset's root); `order` the
    table's, the review queue's (`auditor.triage.ORDERS`). Returns counts and the paths written."""
    from auditor.review import ReviewStore, undecided

    if use not in USE:
        raise InputError(f"unknown corrected positions '{use}': expected one of {', '.join(USE)}")
    if format is not None and format not in TABLE_FORMATS + LABEL_FORMATS:
        known = ", ".join(dict.fromkeys(TABLE_FORMATS + LABEL_FORMATS))
        raise InputError(f"unknown format '{format}': expected one of {known}")
    writes_labels = labels_dir is not None or in_place
    if format in ("pts", "wflw", "coco") and not writes_labels:
        raise InputError(f"--format {format} is a label format: it needs --write-labels DIR or --in-place")
    table_format = format if format in ("fiftyone", "labelstudio") else "csv"
    if out is None and (table_format != "csv" or not writes_labels):
        raise InputError(f"no output: give -o FILE for the {table_format} table"
                         + ("" if table_format != "csv" else ", or --write-labels DIR"))
    if ls_document_root is not None:
        if table_format != "labelstudio":
            raise InputError("--ls-document-root is for the Label Studio tasks: add --format labelstudio")
        if not os.path.isdir(ls_document_root):
            raise InputError("expected the folder Label Studio serves the images from", path=ls_document_root,
                             field="--ls-document-root")
    audit = load_audit(audit_dir)
    source, images_root = dataset_location(audit.manifest, audit_dir)
    dataset = dict(audit.manifest["dataset"], path=str(source.absolute()),
                   images_root=None if images_root is None else str(images_root.absolute()))
    audit = audit._replace(manifest=dict(audit.manifest, dataset=dataset))
    if use == "consensus":
        check_consensus(audit, path=Path(audit_dir) / POINTS)
    decisions = ReviewStore(audit_dir).latest()
    table = corrections(audit, decisions, only=only, use=use, order=order)
    ds = load_audited_dataset(audit.manifest, audit_dir) if writes_labels or table_format != "csv" else None
    summary: dict = {"rows": len(table), "faces": int(table.image_id.nunique()), "use": use}
    labels_dir = None if labels_dir is None else Path(labels_dir)
    label_format = format if format in LABEL_FORMATS else None
    inputs = [*audit_files(audit_dir), *(dataset_inputs(ds, source) if ds is not None else [resolved(source)])]
    if writes_labels:
        applied = table if use == "consensus" else corrections(audit, decisions, only="accepted")
        corrected, summary["applied"] = apply_corrections(ds, applied, use=use)
        check_labels_target(corrected, audit.manifest, labels_dir, format=label_format, in_place=in_place)
        if not in_place:
            check_apart(labels_dir, [*inputs, Path(audit_dir)], field="--write-labels")
            check_replaceable(labels_dir, force=True, command="export-corrections", field="--write-labels")
    if out is not None:
        out = Path(out)
        check_table_target(out, inputs)
        if table_format == "labelstudio":
            check_table_target(labelstudio_config_path(out), inputs)
        if table_format == "csv":
            write_csv(table, out)
        elif table_format == "fiftyone":
            issues = audit.points[audit.points.is_label_issue.astype(bool)]
            needs_review = set(undecided(issues, decisions).image_id)
            samples = to_fiftyone(table, ds, needs_review=needs_review, name=Path(audit_dir).name)
            atomic_write_text(out, json.dumps(samples, indent=1))
        else:
            tasks = to_labelstudio(table, ds, document_root=ls_document_root)
            summary["config"] = labelstudio_config_path(out)
            atomic_write_text(summary["config"], labelstudio_config(ds.scheme))
            atomic_write_text(out, json.dumps(tasks, indent=1))
        summary["table"] = out
    if writes_labels:
        summary["labels"], summary["backup"] = write_labels(corrected, audit.manifest, labels_dir,
                                                            format=label_format, in_place=in_place)
    return summary
