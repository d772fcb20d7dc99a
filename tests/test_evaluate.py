import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.audit_dir import load_audit
from auditor.errors import InputError
from auditor.evaluate import (
    auroc,
    average_precision,
    detection_table,
    error_removed_by_queue,
    label_kinds,
    planted_offsets,
    read_noise,
    recall_at_precision,
    swap_table,
)

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"


def brute_auroc(scores, positive):
    pairs = list(itertools.product(scores[positive], scores[~positive]))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in pairs) / len(pairs)


@settings(deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.booleans()), min_size=2, max_size=30))
def test_auroc_matches_counting_pairs(rows):
    scores = np.array([r[0] for r in rows], dtype=float)
    positive = np.array([r[1] for r in rows])
    if positive.all() or not positive.any():
        assert np.isnan(auroc(scores, positive))
    else:
        assert auroc(scores, positive) == pytest.approx(brute_auroc(scores, positive))


def test_average_precision_and_recall_at_precision():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positive = np.array([True, False, True, False, False])
    assert average_precision(scores, positive) == pytest.approx((1.0 + 2 / 3) / 2)
    assert recall_at_precision(scores, positive, 0.9) == 0.5
    assert recall_at_precision(scores, positive, 0.6) == 1.0
    assert average_precision(np.array([1.0, 1.0]), np.array([True, False])) == 0.5  # tied: one threshold
    assert average_precision(scores, ~positive & positive) != average_precision(scores, positive)


def test_detection_table_per_kind(tmp_path):
    points = pd.DataFrame({"image_id": ["a"] * 4 + ["b"] * 4, "point": list(range(4)) * 2,
                           "x_human": [1.0] * 7 + [np.nan],
                           "label_score": [0.01, 0.9, 0.8, 0.05, 0.7, 0.95, 0.02, 0.5],
                           "pred_err_nme": [0.2, 0.0, 0.01, 0.05, 0.02, 0.01, 0.1, 0.0],
                           "pca_residual_nme": [0.1, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0],
                           "shape_residual_nme": [0.3, 0.0, 0.0, 0.1, 0.0, 0.0, 0.2, 0.0]})
    noise = pd.DataFrame({"image_id": ["a", "a", "a", "b", "b"], "point": [0, 3, 1, 2, 3],
                          "kind": ["gross", "off_contour", "slide", "gross", "moderate"]})
    assert list(label_kinds(points, noise)) == ["gross", "", "", "off_contour", "", "", "gross", "moderate"]
    table = detection_table(points, noise).set_index(["scorer", "kind"])
    assert table.loc[("auditor", "gross"), "auroc"] == 1.0 and table.loc[("auditor", "gross"), "positives"] == 2
    assert table.loc[("auditor", "all"), "positives"] == 3  # the unlabelled point (b, 3) is left out
    assert table.loc[("shape model", "gross"), "auroc"] < 1.0
    assert table.loc[("conditional shape", "gross"), "auroc"] == 1.0
    older = detection_table(points.drop(columns="pca_residual_nme"), noise)  # an audit from before the column
    assert "shape model" not in set(older["scorer"]) and "conditional shape" in set(older["scorer"])
    with pytest.raises(InputError, match="no planted error"):
        detection_table(points, noise.assign(image_id="zzz"))


def test_swap_table_and_noise_reading(tmp_path):
    images = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "swapped_sides": [True, False, True, False]})
    noise = pd.DataFrame({"image_id": ["a", "a", "b"], "point": [0, 1, 0], "kind": ["swap", "swap", "swap"]})
    assert swap_table(images, noise) == {"swapped_faces": 2, "swap_found": 0.5, "swap_false_flags": 0.5}
    noise.to_csv(tmp_path / "noise.csv", index=False)
    assert len(read_noise(tmp_path / "noise.csv")) == 3
    (tmp_path / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="missing column"):
        read_noise(tmp_path / "bad.csv")


def test_truth_table_measures_each_position_and_the_accepted_proposals(tmp_path):
    from helpers import make_dataset

    from auditor.evaluate import truth_table

    truth = make_dataset(tmp_path, ["a.png", "b.png"], scheme="aflw_19", seed=3)
    n, k = 2, 19
    true_xy = truth.landmarks.reshape(-1, 2)
    human = true_xy + 1.0  # every label 1 px right and down
    points = pd.DataFrame({
        "image_id": np.repeat(truth.image_ids, k), "point": np.tile(np.arange(k), n),
        "is_contour": np.tile(truth.scheme.contour_mask, n),
        "x_human": human[:, 0], "y_human": human[:, 1],
        "x_searched": true_xy[:, 0], "y_searched": true_xy[:, 1],  # the search found the truth
        "x_pred": true_xy[:, 0] + 3.0, "y_pred": true_xy[:, 1],
        "issue_type": "", "is_label_issue": np.arange(n * k) < 5,  # five flagged points, proposals = searched
    })
    images = pd.DataFrame({"image_id": truth.image_ids, "normaliser": [10.0, 10.0]})
    table = truth_table(points, images, truth).set_index("position")
    assert table.loc["human", "all"] == pytest.approx(np.sqrt(2) / 10)
    assert table.loc["searched", "all"] == pytest.approx(0.0)
    assert table.loc["predicted", "all"] == pytest.approx(0.3)
    assert table.loc["corrected", "all"] == pytest.approx(np.sqrt(2) / 10 * (n * k - 5) / (n * k))


def test_planted_offsets_sum_the_errors_only():
    points = pd.DataFrame({"image_id": ["a", "a", "b"], "point": [0, 1, 0]})
    noise = pd.DataFrame({"image_id": ["a", "a", "a", "b"], "point": [0, 0, 1, 0],
                          "kind": ["jitter", "gross", "slide", "swap"], "dx": [1.0, 2.0, 3.0, 4.0],
                          "dy": [0.5, -1.0, 0.0, 2.0], "magnitude_nme": [0.0] * 4})
    np.testing.assert_array_equal(planted_offsets(points, noise), [[2.0, -1.0], [0.0, 0.0], [4.0, 2.0]])


def test_the_queue_removes_planted_error_first_where_it_is_largest():
    audit = load_audit(SAMPLE / "audit")
    noise = read_noise(SAMPLE / "truth" / "noise.csv")
    runs = {(order, grouped): error_removed_by_queue(audit, noise, order=order, group_faces=grouped)
            for order in ("gain", "score") for grouped in (True, False)}
    grouped = runs["gain", True]
    assert grouped["reviewed"] == int(np.ceil(0.1 * grouped["items"]))
    assert grouped["items"] < runs["gain", False]["items"]
    # a swapped face fixed by one mirror removes more than any point: the first tenth of the grouped queue, in either
    # order, removes most of all the planted error, several times what one item per point does
    for order in ("gain", "score"):
        assert runs[order, True]["fixed_nme"] > 0.8 * grouped["planted_nme"]
        assert runs[order, True]["accepted_nme"] > 2 * runs[order, False]["accepted_nme"]
    assert runs["gain", False]["accepted_nme"] > runs["score", False]["accepted_nme"]
    whole = error_removed_by_queue(audit, noise, order="gain", fraction=1.0)
    assert whole["fixed_nme"] == pytest.approx(whole["planted_nme"], rel=0.1)  # the issues hold most of the error
