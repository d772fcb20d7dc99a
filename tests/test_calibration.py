"""The threshold calibrated on the audited dataset's own planted copy (auditor.calibration)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from auditor.calibration import CALIBRATION_NOISE, MIN_PLANTED, calibrate, planted_copy
from auditor.io import read_dataset
from auditor.synth import generate


def _points(scores: np.ndarray) -> pd.DataFrame:
    """Scored points of faces of 50 points each, from `scores` (n,)."""
    n = len(scores)
    return pd.DataFrame({"image_id": [f"f{i // 50}" for i in range(n)], "point": np.arange(n) % 50,
                         "x_human": np.ones(n), "label_score": scores, "is_label_issue": scores < 0.005,
                         "issue_type": np.where(scores < 0.005, "gross_error", "")})


def test_expected_precision_and_recall_match_the_truth_of_a_known_mixture():
    rng = np.random.default_rng(0)
    # errors score low (log-uniform down to 1e-7), clean labels mostly high with a tail reaching down to 1e-3
    def errors(n):
        return 10 ** rng.uniform(-7, -1, n)

    def clean(n):
        return np.where(rng.random(n) < 0.97, rng.uniform(0.05, 1, n), 10 ** rng.uniform(-4, -1, n))

    truth = np.r_[np.ones(300, bool), np.zeros(20_000, bool)]
    points = _points(np.where(truth, errors(len(truth)), clean(len(truth))))
    planted_truth = np.r_[np.ones(400, bool), np.zeros(20_000, bool)]
    planted_points = _points(np.where(planted_truth, errors(len(planted_truth)), clean(len(planted_truth))))
    planted = planted_points.loc[planted_truth, ["image_id", "point"]].assign(kind="gross")
    result = calibrate(points, planted_points, planted, target_precision=0.9)
    assert result is not None and result.planted == 400
    flagged = points["label_score"].to_numpy() < result.threshold
    precision = (flagged & truth).sum() / flagged.sum()
    recall = (flagged & truth).sum() / truth.sum()
    assert precision >= 0.85 and abs(result.expected_precision - precision) < 0.05
    assert abs(result.expected_recall - recall) < 0.08
    assert result.estimated_errors == pytest.approx(300, rel=0.15)
    # a looser target flags more
    loose = calibrate(points, planted_points, planted, target_precision=0.5)
    assert loose.threshold > result.threshold and loose.expected_recall > result.expected_recall


def test_too_few_planted_errors_do_not_calibrate():
    points = _points(np.full(100, 0.5))
    planted = points.iloc[: MIN_PLANTED - 1][["image_id", "point"]].assign(kind="gross")
    assert calibrate(points, points, planted) is None


def test_the_planted_copy_is_seeded_and_leaves_the_dataset_alone(tmp_path):
    generate(tmp_path / "syn", n=6, seed=3, size=96)
    ds = read_dataset(tmp_path / "syn" / "faces")
    before = ds.landmarks.copy()
    copy, table = planted_copy(ds)
    again, table_again = planted_copy(ds)
    np.testing.assert_array_equal(ds.landmarks, before)
    np.testing.assert_array_equal(copy.landmarks, again.landmarks)
    pd.testing.assert_frame_equal(table, table_again)
    moved = ~np.isclose(copy.landmarks, before).all(-1)
    assert moved.any() and set(table["kind"]) <= {"gross", "moderate", "off_contour", "chain_swap", "duplicate"}
    assert CALIBRATION_NOISE.slide_sigma == 0 and CALIBRATION_NOISE.jitter_sigma == 0
