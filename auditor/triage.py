"""The review queue: what a curator decides on, one item at a time, and in which order.

An item is one point, except that a face whose left and right sides are swapped (its points' `issue_type` is
`swapped_sides`) is one item for all its swapped points: one decision, its mirrored labels (`mirrored_positions`),
fixes them all.

Orders (ORDERS):
    gain    the largest expected gain first: P(label wrong) x the displacement its fix brings, NME (`point_gains`)
    score   the lowest label_score first (a whole face: its lowest point's), the most suspicious label first
Ties go to the lower label_score, then the audit's order (face, point); points without a score come last.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from auditor.audit_dir import proposals

FACE = -1  # the `point` of an item that is a whole face
ORDERS = ("gain", "score")
SWAPPED = "swapped_sides"
MAX_PRECISION = 0.999  # a calibration that expects no false flag at all still leaves unflagged labels some doubt


def mirrored_positions(points: pd.DataFrame, flip: np.ndarray) -> np.ndarray:
    """(P, 2) each point's mirrored label, image px: the label of its flip partner (`LandmarkScheme.flip_permutation`,
    (K,)) in the same face; a point without a partner keeps its own, NaN where the partner is not among `points` or
    has no label."""
    faces, _ = pd.factorize(points["image_id"])
    point = points["point"].to_numpy(dtype=np.int64)
    human = np.full((faces.max() + 1 if len(faces) else 0, len(flip), 2), np.nan)  # (F, K, 2)
    human[faces, point] = points[["x_human", "y_human"]].to_numpy(dtype=np.float64)
    return human[faces, np.asarray(flip)[point]]


def error_probability(label_score: np.ndarray, calibration: dict | None) -> np.ndarray:
    """(P,) the probability that each label is wrong, from its `label_score` (P,) and the manifest's `calibration`,
    as `point_gains` defines it."""
    score = np.asarray(label_score, dtype=np.float64)
    calibration = calibration or {}
    threshold, precision = calibration.get("threshold"), calibration.get("expected_precision")
    if calibration.get("calibrated") and isinstance(threshold, int | float) and threshold > 0 and isinstance(
            precision, int | float) and precision > 0:
        p = min(float(precision), MAX_PRECISION)
        wrong = 1.0 / (1.0 + (1.0 - p) / p * score / threshold)
    else:
        wrong = 1.0 - score
    return np.where(np.isfinite(score), np.clip(wrong, 0.0, 1.0), 0.0)


def point_gains(points: pd.DataFrame, images: pd.DataFrame, manifest: dict, flip: np.ndarray) -> pd.DataFrame:
    """The expected gain of a decision on each point of `points` (points.parquet), with the faces' `images` and the
    audit's `manifest`: a frame on `points`' index. The review queue's order is this gain (a face's item: the sum
    over its points).

    gain = P(label wrong) x displacement, the error in NME a decision is expected to remove if the displacement is
    the error when the label is wrong, and nothing is lost when it is right (the curator rejects):

    - P(label wrong) (`p_wrong`, `error_probability`): a calibrated audit knows the precision p its threshold t is
      expected to have (manifest `calibration`: `expected_precision`, `threshold`); label_score s, a tail
      probability, is read as proportional to the odds that the label is right, anchored there:
      P = 1 / (1 + (1 - p) / p · s / t): p at the threshold, near 1 far below it, near 0 for a typical label (s
      near 1). p is the precision of all the flagged points, so the anchor errs towards trusting a flag; p is
      capped at MAX_PRECISION. Uncalibrated, P = 1 - s. A point without a score: 0.
    - displacement (`displacement_nme`): |fix - label| / the face's normaliser (NME), the fix being the audit's
      proposal (`audit_dir.proposals`), or on a swapped face (`whole_face`) the mirrored label
      (`mirrored_positions`, flip (K,)); 0 where there is none.

    Columns: p_wrong, displacement_nme, gain, whole_face (the point belongs to its face's item, `swapped_sides`),
    x_fix, y_fix (the fix, image px; NaN where there is none).
    """
    normaliser = points["image_id"].map(images.set_index("image_id")["normaliser"]).to_numpy(dtype=np.float64)
    whole_face = (points["issue_type"].fillna("").astype(str) == SWAPPED).to_numpy()
    xs, ys, _ = proposals(points)
    fix = np.where(whole_face[:, None], mirrored_positions(points, flip), np.stack([xs, ys], axis=-1))
    human = points[["x_human", "y_human"]].to_numpy(dtype=np.float64)
    displacement = np.linalg.norm(fix - human, axis=-1) / normaliser
    displacement = np.where(np.isfinite(displacement), displacement, 0.0)
    wrong = error_probability(points["label_score"].to_numpy(dtype=np.float64, na_value=np.nan),
                              manifest.get("calibration"))
    return pd.DataFrame({"p_wrong": wrong, "displacement_nme": displacement, "gain": wrong * displacement,
                         "whole_face": whole_face, "x_fix": fix[:, 0], "y_fix": fix[:, 1]}, index=points.index)


def _sorted(items: pd.DataFrame, order: str) -> pd.DataFrame:
    if order not in ORDERS:
        raise ValueError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    keys = (["gain", "label_score", "face", "point"] if order == "gain" else ["label_score", "face", "point"])
    ascending = [False, True, True, True] if order == "gain" else [True, True, True]
    return items.sort_values(keys, ascending=ascending, kind="stable", na_position="last").reset_index(drop=True)


def queue_items(points: pd.DataFrame, gains: pd.DataFrame, keep: np.ndarray, *, order: str = "gain") -> pd.DataFrame:
    """The queue of the labelled points `keep` (P,) of `points`, with their `point_gains`, in `order`: one row per
    item.

    A face with a swapped point kept is one item (`point` FACE) of all its swapped points, kept or not: its gain,
    displacement_nme and `size` are their sum and count, its label_score their lowest. Columns: image_id, point,
    point_name, group, issue_type, label_score, searched_nme, p_wrong, displacement_nme, gain, size, face and
    `row`, the row of `points` (position) of a point item, -1 for a face.
    """
    labelled = np.isfinite(points["x_human"].to_numpy(dtype=np.float64)) & np.isfinite(
        points["y_human"].to_numpy(dtype=np.float64))
    keep = np.asarray(keep, dtype=bool) & labelled
    whole_face = gains["whole_face"].to_numpy(dtype=bool) & labelled
    image_ids = points["image_id"].to_numpy(dtype=object)
    shown = pd.unique(image_ids[keep & whole_face])
    members = np.flatnonzero(whole_face & pd.Series(image_ids).isin(shown).to_numpy())
    singles = np.flatnonzero(keep & ~whole_face)
    def column(name: str, rows: np.ndarray) -> np.ndarray:
        if name in ("p_wrong", "displacement_nme", "gain"):
            return gains[name].to_numpy(dtype=np.float64)[rows]
        if name not in points:
            return np.full(len(rows), np.nan)
        values = points[name].iloc[rows]
        if name in ("point", "face"):
            return values.to_numpy(dtype=np.int64)
        if name in ("label_score", "searched_nme"):
            return values.to_numpy(dtype=np.float64, na_value=np.nan)
        return values.fillna("").astype(str).to_numpy(dtype=object)

    names = ("image_id", "point", "point_name", "group", "issue_type", "label_score", "searched_nme", "p_wrong",
             "displacement_nme", "gain", "face")
    single = pd.DataFrame({c: column(c, singles) for c in names}).assign(size=1, row=singles)
    grouped = pd.DataFrame({c: column(c, members) for c in ("image_id", "label_score", "p_wrong", "displacement_nme",
                                                           "gain", "face")})
    faces = grouped.groupby("image_id", sort=False).agg(
        label_score=("label_score", "min"), p_wrong=("p_wrong", "max"), displacement_nme=("displacement_nme", "sum"),
        gain=("gain", "sum"), face=("face", "first"), size=("face", "size")).reset_index()
    faces = faces.assign(point=FACE, point_name=[f"whole face ({n} points)" for n in faces["size"]], group="",
                         issue_type=SWAPPED, searched_nme=np.nan, row=-1)
    items = pd.concat([single, faces[single.columns]], ignore_index=True) if len(faces) else single
    return _sorted(items.astype({"point": np.int64, "size": np.int64, "row": np.int64, "face": np.int64}), order)


def queue_rank(points: pd.DataFrame, gains: pd.DataFrame, *, order: str = "gain") -> np.ndarray:
    """(P,) each row's place in the queue of every labelled point of `points` in `order` (`queue_items`): the rows of
    a face's item share its place; a point without a label comes after them all."""
    labelled = np.isfinite(points["x_human"].to_numpy(dtype=np.float64))
    items = queue_items(points, gains, labelled, order=order)
    rank = np.full(len(points), len(items), dtype=np.int64)
    single = items["row"].to_numpy() >= 0
    rank[items["row"].to_numpy()[single]] = np.flatnonzero(single)
    face_rank = pd.Series(np.flatnonzero(~single), index=items["image_id"][~single].to_numpy())
    whole_face = gains["whole_face"].to_numpy(dtype=bool) & labelled
    rank[whole_face] = face_rank.reindex(points["image_id"].to_numpy()[whole_face]).to_numpy(dtype=np.int64)
    return rank
