"""How well an audit finds planted label errors (and, with the truth, how close its positions are to it).

Positives of a kind are the points that kind of error was planted on (`noise.csv`, from `auditor synth`
or `auditor plant-noise`); negatives are the points no error was planted on (harmless slides and jitter
count as negatives). Scorers, higher = more suspicious:
- `auditor`: 1 - label_score;
- `prediction`: the distance from the label to the model's prediction (`pred_err_nme`), the residual any
  detector gives;
- `shape model`: the residual of the label from a robust PCA shape model of the labels alone
  (`pca_residual_nme`);
- `conditional shape`: the auditor's own shape evidence alone, the residual of the label from its mean given
  the face's other labels (`shape_residual_nme`), to show what the rest of the evidence adds.
A scorer whose column an older audit lacks is left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from auditor.audit_dir import Audit, audit_scheme, proposals
from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.noise import ERROR_KINDS, NOISE_COLUMNS
from auditor.triage import FACE, point_gains, queue_items

SCORERS = {"auditor": "label_score", "prediction": "pred_err_nme", "shape model": "pca_residual_nme",
           "conditional shape": "shape_residual_nme"}


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve of scores (n,) (higher = positive) for boolean labels (n,); ties count half."""
    from scipy.stats import rankdata

    n1 = int(positive.sum())
    n0 = len(positive) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _curve(scores: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct threshold, from the highest score down."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], positive[order]
    last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # the last index of each run of tied scores
    tp = np.cumsum(y)[last]
    flagged = last + 1
    return tp / flagged, tp / max(int(positive.sum()), 1)


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision: the sum over thresholds of precision times the recall gained there."""
    if not positive.any():
        return float("nan")
    precision, recall = _curve(scores, positive)
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def recall_at_precision(scores: np.ndarray, positive: np.ndarray, precision: float = 0.9) -> float:
    """The largest recall at any threshold whose precision is at least `precision` (0 if none)."""
    if not positive.any():
        return float("nan")
    p, r = _curve(scores, positive)
    ok = p >= precision
    return float(r[ok].max()) if ok.any() else 0.0


def read_noise(path: str | Path) -> pd.DataFrame:
    """A noise table (image_id, point, kind, dx, dy, magnitude_nme), or an InputError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such noise file", path=path)
    try:
        table = pd.read_csv(path, dtype={"image_id": str})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as e:
        raise InputError(f"unreadable noise table ({str(e).splitlines()[0]})", path=path) from None
    missing = [c for c in NOISE_COLUMNS[:3] if c not in table.columns]
    if missing:
        raise InputError(f"not a noise table: missing column(s) {', '.join(missing)}", path=path)
    return table


def label_kinds(points: pd.DataFrame, noise: pd.DataFrame) -> np.ndarray:
    """(len(points),) the error kind planted on each point, or '' where none was."""
    errors = noise[noise["kind"].isin(ERROR_KINDS)]
    keys = pd.MultiIndex.from_arrays([points["image_id"].astype(str), points["point"].astype(int)])
    kinds = pd.Series(errors["kind"].to_numpy(), index=pd.MultiIndex.from_arrays(
        [errors["image_id"].astype(str), errors["point"].astype(int)])).groupby(level=[0, 1]).first()
    return kinds.reindex(keys).fillna("").to_numpy(dtype=object)


def detection_table(points: pd.DataFrame, noise: pd.DataFrame) -> pd.DataFrame:
    """One row per (scorer, kind): positives, AUROC, AP and recall at 90 % precision; kind 'all' pools them."""
    labelled = np.isfinite(points["x_human"].to_numpy())
    points = points[labelled]
    kinds = label_kinds(points, noise)
    if not (kinds != "").any():
        raise InputError("no planted error in the noise table matches a point of the audit (other image ids?)")
    negative = kinds == ""
    rows = []
    for scorer, column in SCORERS.items():
        if column not in points:
            continue
        values = points[column].to_numpy(dtype=np.float64)
        suspicion = 1 - values if column == "label_score" else values
        suspicion = np.nan_to_num(suspicion, nan=0.0)
        for kind in (*ERROR_KINDS, "all"):
            positive = kinds != "" if kind == "all" else kinds == kind
            if not positive.any():
                continue
            keep = positive | negative
            s, y = suspicion[keep], positive[keep]
            rows.append({"scorer": scorer, "kind": kind, "positives": int(y.sum()), "negatives": int((~y).sum()),
                         "auroc": auroc(s, y), "ap": average_precision(s, y),
                         "recall_at_90p": recall_at_precision(s, y)})
    return pd.DataFrame(rows)


def swap_table(images: pd.DataFrame, noise: pd.DataFrame) -> dict[str, float]:
    """Faces with swapped sides planted: how many the audit flags, and how many other faces it flags."""
    planted = set(noise.loc[noise["kind"] == "swap", "image_id"].astype(str))
    truth = images["image_id"].astype(str).isin(planted).to_numpy()
    flagged = images["swapped_sides"].to_numpy(dtype=bool)
    return {"swapped_faces": int(truth.sum()),
            "swap_found": float((flagged & truth).sum() / truth.sum()) if truth.any() else float("nan"),
            "swap_false_flags": float((flagged & ~truth).sum() / max((~truth).sum(), 1))}


def truth_table(points: pd.DataFrame, images: pd.DataFrame, truth: Dataset,
                noise: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean error vs truth (NME) of the human, searched and predicted positions on contour and crisp points, and of
    the labels with every flagged point's proposal accepted (`corrected`: `audit_dir.proposals` where
    `is_label_issue`); with `noise`, also over the points no error was planted on (`*_clean`)."""
    index = {face_id: i for i, face_id in enumerate(truth.image_ids)}
    missing = [i for i in images["image_id"] if i not in index]
    if missing:
        raise InputError(f"{len(missing)} audited faces are not in the truth (e.g. '{missing[0]}')", path=truth.root)
    rows = np.array([index[i] for i in points["image_id"]])
    true_xy = truth.landmarks[rows, points["point"].to_numpy()]
    norm = images.set_index("image_id")["normaliser"].reindex(points["image_id"]).to_numpy()
    contour = points["is_contour"].to_numpy(dtype=bool)
    clean = None if noise is None else label_kinds(points, noise) == ""
    x, y, _ = proposals(points)
    flagged = points["is_label_issue"].to_numpy(dtype=bool)[:, None]
    positions = {what: points[[f"x_{what}", f"y_{what}"]].to_numpy(dtype=np.float64)
                 for what in ("human", "searched", "pred")}
    positions["corrected"] = np.where(flagged, np.stack([x, y], 1), positions["human"])
    out = []
    for what, xy in positions.items():
        err = np.linalg.norm(xy - true_xy, axis=1) / norm
        row = {"position": {"pred": "predicted"}.get(what, what), "all": float(np.nanmean(err)),
               "contour": float(np.nanmean(err[contour])), "crisp": float(np.nanmean(err[~contour]))}
        if clean is not None:
            row.update(contour_clean=float(np.nanmean(err[contour & clean])),
                       crisp_clean=float(np.nanmean(err[~contour & clean])))
        out.append(row)
    return pd.DataFrame(out)


def planted_offsets(points: pd.DataFrame, noise: pd.DataFrame) -> np.ndarray:
    """(P, 2) the planted error of each point of `points`, image px: the sum of its noise rows of ERROR_KINDS (0 where
    none), so that the label before them was human - offset."""
    errors = noise[noise["kind"].isin(ERROR_KINDS)]
    summed = errors.groupby([errors["image_id"].astype(str), errors["point"].astype(int)])[["dx", "dy"]].sum()
    keys = pd.MultiIndex.from_arrays([points["image_id"].astype(str), points["point"].astype(int)])
    return summed.reindex(keys).fillna(0.0).to_numpy(dtype=np.float64)


def error_removed_by_queue(audit: Audit, noise: pd.DataFrame, *, order: str, fraction: float = 0.1,
                           group_faces: bool = True) -> dict:
    """The planted error (`noise`, as `read_noise`) removed by working the first `fraction` of the app's default
    review queue (the label issues, `auditor.triage.queue_items`) in `order`, NME.

    Two curators: one who accepts every item's fix (a point's proposal, a swapped face's mirrored labels), and one
    who puts every wrong label of an item right and leaves the right ones (accepting, editing or rejecting). A fix f
    of a point with planted offset e (`planted_offsets`) removes (|e| - |f - (human - e)|) / normaliser: negative
    where it moves a right label; the second curator removes |e| / normaliser. `group_faces=False` is the queue
    before face items: a swapped face's points are items of their own, fixed by their proposals.

    Returns the queue's `items`, the `reviewed` ones, `accepted_nme` and `fixed_nme` (the two curators), the parts of
    them outside swapped faces' items (`accepted_points_nme`, `fixed_points_nme`), and `planted_nme`,
    `planted_points_nme`: the audit's whole planted error and the part of it not planted by a swap of sides.
    """
    manifest, points, images = audit
    flip = audit_scheme(manifest, ".").flip_permutation
    gains = point_gains(points, images, manifest, flip)
    if not group_faces:
        xs, ys, _ = proposals(points)
        gains = gains.assign(whole_face=False, x_fix=xs, y_fix=ys)
    items = queue_items(points, gains, points["is_label_issue"].to_numpy(dtype=bool), order=order)
    reviewed = items.iloc[:int(np.ceil(fraction * len(items)))]
    faces = reviewed["image_id"][reviewed["point"] == FACE]
    face_rows = np.flatnonzero(gains["whole_face"].to_numpy() & points["image_id"].isin(faces).to_numpy())
    point_rows = reviewed["row"][reviewed["point"] != FACE].to_numpy()
    offset = planted_offsets(points, noise)
    human = points[["x_human", "y_human"]].to_numpy(dtype=np.float64)
    normaliser = points["image_id"].map(images.set_index("image_id")["normaliser"]).to_numpy(dtype=np.float64)
    planted = np.linalg.norm(offset, axis=-1) / normaliser
    fix = gains[["x_fix", "y_fix"]].to_numpy(dtype=np.float64)
    accepted = planted - np.linalg.norm(fix - (human - offset), axis=-1) / normaliser
    accepted = np.where(np.isfinite(accepted), accepted, 0.0)  # no fix: nothing moves
    labelled = np.isfinite(planted)
    swaps = noise[noise["kind"] == "swap"]
    swapped = pd.MultiIndex.from_arrays([points["image_id"].astype(str), points["point"].astype(int)]).isin(
        pd.MultiIndex.from_arrays([swaps["image_id"].astype(str), swaps["point"].astype(int)]))
    rows = np.r_[face_rows, point_rows]
    return {"items": len(items), "reviewed": len(reviewed), "accepted_nme": float(accepted[rows].sum()),
            "fixed_nme": float(np.nansum(planted[rows])), "accepted_points_nme": float(accepted[point_rows].sum()),
            "fixed_points_nme": float(np.nansum(planted[point_rows])), "planted_nme": float(planted[labelled].sum()),
            "planted_points_nme": float(planted[labelled & ~swapped].sum())}
