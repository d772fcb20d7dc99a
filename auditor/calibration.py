"""The issue threshold, calibrated on the audited dataset itself: errors planted into a copy of its labels.

The copy (`CALIBRATION_NOISE`, as `auditor plant-noise` plants them, one seed), measured on the same heatmaps and
scored as a dataset of its own, gives the recall r(t) of a threshold t on `label_score`. The real labels' flag count
F(t) mixes their own E errors, found at the same rate, with false flags, so the expected precision of t is
r(t) E / F(t) (the positive-unlabelled estimate); the calibrated threshold is the loosest that meets the target.
It assumes the dataset's own errors are found like the planted ones: plain mistakes (docs/method.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from auditor.dataset import Dataset
from auditor.noise import ERROR_KINDS, NoiseConfig, plant_noise
from auditor.schemes import LandmarkScheme
from auditor.scoring import ScoringConfig, score_points

# point errors only: a swapped face is flagged by its own test whatever the threshold
CALIBRATION_NOISE = NoiseConfig(swap_rate=0.0, chain_swap_rate=0.005, duplicate_rate=0.005).errors_only()
CALIBRATION_SEED = 20_190_601
DEFAULT_TARGET_PRECISION = 0.9
MIN_RECALL, MAX_RECALL = 0.3, 0.6  # E's anchors: below, too few found to divide by; above, false flags creep in
MIN_PLANTED = 20  # fewer planted errors than this (a handful of faces): no calibration
THRESHOLDS = np.geomspace(1e-8, 0.5, 161)  # candidate thresholds on label_score


@dataclass(frozen=True)
class Calibration:
    """The calibrated threshold and what it is expected to give on the audited dataset."""

    target_precision: float
    threshold: float
    expected_precision: float
    expected_recall: float
    estimated_errors: float  # E: the dataset's own errors that a flag finds like the planted ones
    planted: int  # points with a planted error in the copy

    def to_json(self) -> dict:
        return {"target_precision": self.target_precision, "threshold": self.threshold,
                "expected_precision": self.expected_precision, "expected_recall": self.expected_recall,
                "estimated_errors": self.estimated_errors, "planted": self.planted,
                "noise": {k: v for k, v in CALIBRATION_NOISE.__dict__.items()}, "seed": CALIBRATION_SEED}


def planted_copy(ds: Dataset, *, seed: int = CALIBRATION_SEED) -> tuple[Dataset, pd.DataFrame]:
    """A copy of `ds` with CALIBRATION_NOISE planted into its labels, and the planted rows (noise.csv's columns)."""
    noisy, table = plant_noise(ds.landmarks, ds.scheme, ds.image_ids, np.random.default_rng(seed),
                               CALIBRATION_NOISE, labelled=ds.labelled, boxes=ds.boxes)
    return ds.with_landmarks(noisy), table


def _counted(points: pd.DataFrame) -> np.ndarray:
    """(N·K,) the points a threshold decides: labelled and not moved by a swapped face's mirror test (flagged
    whatever the threshold)."""
    swapped = (points["issue_type"].astype(str) == "swapped_sides").to_numpy()
    return np.isfinite(points["x_human"].to_numpy(dtype=np.float64)) & ~swapped


def _flagged(points: pd.DataFrame, thresholds: np.ndarray) -> np.ndarray:
    """(T, N·K) whether each point's score is below each threshold."""
    return points["label_score"].to_numpy(dtype=np.float64)[None, :] < thresholds[:, None]


def calibrate(points: pd.DataFrame, planted_points: pd.DataFrame, planted: pd.DataFrame, *,
              target_precision: float = DEFAULT_TARGET_PRECISION) -> Calibration | None:
    """The calibrated threshold from the scored audit's points and the scored planted copy's with its planted rows
    (`planted_copy`); None when too few errors were planted to say (a handful of faces). Precision and recall are
    those of the points a threshold decides (swapped faces apart: their own test flags them).

    E <= F(t) / r(t), nearly equal where the threshold is strict; E is the median of F(t) / r(t) over the
    thresholds that find MIN_RECALL to MAX_RECALL of the planted errors (the least ratio would be biased low by
    the counts' noise). Errors much subtler than the planted ones count as false flags."""
    keys = pd.MultiIndex.from_arrays([planted_points["image_id"].astype(str),
                                      planted_points["point"].astype(np.int64)])
    errors = planted[planted["kind"].isin(ERROR_KINDS)]
    planted_keys = pd.MultiIndex.from_arrays([errors["image_id"].astype(str), errors["point"].astype(np.int64)])
    positive = keys.isin(planted_keys) & _counted(planted_points)
    if positive.sum() < MIN_PLANTED:
        return None
    recall = _flagged(planted_points, THRESHOLDS)[:, positive].mean(axis=1)  # (T,)
    flags = _flagged(points, THRESHOLDS)[:, _counted(points)].sum(axis=1).astype(np.float64)  # (T,)
    anchor = (recall >= MIN_RECALL) & (recall <= MAX_RECALL) & (flags > 0)
    if not anchor.any():
        anchor = (recall >= MIN_RECALL) & (flags > 0)
        if not anchor.any():
            return None
        anchor &= recall == recall[anchor].min()
    errors_found = float(np.median(flags[anchor] / recall[anchor]))
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(flags > 0, np.minimum(1.0, recall * errors_found / flags), 1.0)
    i = int(np.flatnonzero(precision >= target_precision).max())  # an anchor's ratio at most E gives precision 1
    return Calibration(float(target_precision), float(THRESHOLDS[i]), float(precision[i]), float(recall[i]),
                       errors_found, int(positive.sum()))


NO_TARGET = "no target precision (--target-precision 0)"


def uncalibrated(target_precision: float | None, reason: str) -> dict:
    """The manifest's `calibration` block of an audit whose threshold was not calibrated, and why."""
    return {"target_precision": target_precision or None, "calibrated": False, "reason": reason}


def calibrated(points: pd.DataFrame, images: pd.DataFrame, planted_points: pd.DataFrame,
               planted_images: pd.DataFrame, planted: pd.DataFrame, scheme: LandmarkScheme, scoring: ScoringConfig,
               target_precision: float) -> tuple[pd.DataFrame, pd.DataFrame, ScoringConfig, dict]:
    """The audit's tables scored at the calibrated threshold, the scoring applied and the manifest's `calibration`
    block, from the scored tables (points, images), the unscored tables of the planted copy and its planted rows.

    With too few planted errors to calibrate on, the tables and scoring are returned as they are and the block
    says why."""
    planted_points, planted_images = score_points(planted_points, planted_images, scheme, scoring)
    result = calibrate(points, planted_points, planted, target_precision=target_precision)
    if result is None:
        return points, images, scoring, uncalibrated(target_precision, f"fewer than {MIN_PLANTED} planted errors "
                                                     "found a threshold (too few faces to calibrate on)")
    scoring = replace(scoring, issue_threshold=result.threshold)
    points, images = score_points(points, images, scheme, scoring)
    return points, images, scoring, {"calibrated": True, **result.to_json()}
