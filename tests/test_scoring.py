from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from auditor.audit_dir import proposals
from auditor.scoring import (
    ScoringConfig,
    face_model_scale,
    frame_components,
    mirror_ratio,
    prediction_weight,
    score_points,
    student_score,
)
from auditor.shape_model import conditional_residuals


def tables(human: np.ndarray, pred: np.ndarray, scheme, *, searched: np.ndarray | None = None):
    """Unscored audit tables as audit.py builds them, from labels and predictions (N, K, 2)."""
    n, k = human.shape[:2]
    searched = human if searched is None else searched
    norm = scheme.normaliser(human)
    points = pd.DataFrame({
        "image_id": np.repeat([f"f{i}" for i in range(n)], k), "face": np.repeat(np.arange(n), k),
        "point": np.tile(np.arange(k), n),
        "x_human": human[..., 0].ravel(), "y_human": human[..., 1].ravel(),
        "x_searched": searched[..., 0].ravel(), "y_searched": searched[..., 1].ravel(),
        "x_pred": pred[..., 0].ravel(), "y_pred": pred[..., 1].ravel(),
        "x_mode": pred[..., 0].ravel(), "y_mode": pred[..., 1].ravel(),
        "searched_nme": (np.linalg.norm(searched - human, axis=-1) / norm[:, None]).ravel(),
        "confidence": 1.0, "mode_peak": 1.0,
    })
    images = pd.DataFrame({"image_id": [f"f{i}" for i in range(n)], "normaliser": norm})
    return points, images


def noisy_case(truth, seed=0):
    rng = np.random.default_rng(seed)
    iod = truth.normaliser()[:, None, None]
    pred = truth.landmarks + rng.normal(0, 0.006, truth.landmarks.shape) * iod
    human = truth.landmarks + rng.normal(0, 0.006, truth.landmarks.shape) * iod
    tangents = np.nan_to_num(truth.scheme.contour_tangents(truth.landmarks))
    slide = truth.scheme.contour_mask[None, :, None] * rng.normal(0, 0.04, (len(truth), 68, 1)) * iod * tangents
    return human + slide, pred, tangents, iod


def test_scores_find_planted_errors_and_type_them(truth):
    scheme = truth.scheme
    human, pred, tangents, iod = noisy_case(truth)
    human[3, 36] += np.array([0.15, 0.05]) * iod[3, 0]  # an eye corner far off: gross
    jaw = 5
    normal = np.array([-tangents[7, jaw, 1], tangents[7, jaw, 0]])
    human[7, jaw] = truth.landmarks[7, jaw] + 0.07 * normal * iod[7, 0]  # off the jaw line
    human[11] = human[11, scheme.flip_permutation]  # left and right exchanged
    points, images = score_points(*tables(human, pred, scheme), scheme)
    score = points["label_score"].to_numpy().reshape(len(truth), 68)
    kind = points["issue_type"].to_numpy().reshape(len(truth), 68)
    assert kind[3, 36] == "gross_error" and score[3, 36] < 1e-3
    assert kind[7, jaw] == "off_contour" and points["is_label_issue"].to_numpy().reshape(-1, 68)[7, jaw]
    assert images["swapped_sides"].tolist() == [i == 11 for i in range(len(truth))]
    moved = scheme.flip_permutation != np.arange(68)
    assert (kind[11, moved] == "swapped_sides").all() and not (kind[11, ~moved] == "swapped_sides").any()
    others = np.ones_like(score, dtype=bool)
    others[3, 36] = others[7, jaw] = False
    others[11] = False
    # the planted errors rank below nearly every other label; slides along the jaw are harmless, not issues
    assert (score[others] > score[7, jaw]).mean() > 0.99
    slides = kind[others] == "contour_slide"
    assert slides.sum() > 100 and not points["is_label_issue"].to_numpy().reshape(-1, 68)[others][slides].any()
    assert images.loc[3, "worst_point"] == 36 and images.loc[3, "image_label_score"] == score[3].min()
    assert ((score >= 0) & (score <= 1)).all()
    # the shape model's conditional mean is where shape_residual_nme measures from, and it puts the far eye corner
    # back near its true place
    shape = points[["x_shape", "y_shape"]].to_numpy().reshape(len(truth), 68, 2)
    np.testing.assert_allclose(np.linalg.norm(human - shape, axis=-1) / images["normaliser"].to_numpy()[:, None],
                               points["shape_residual_nme"].to_numpy().reshape(len(truth), 68), atol=1e-9)
    assert np.linalg.norm(shape[3, 36] - truth.landmarks[3, 36]) < 0.5 * np.linalg.norm(human[3, 36]
                                                                                       - truth.landmarks[3, 36])


def test_a_jaw_slide_costs_less_than_the_same_shift_off_the_contour(truth):
    scheme = truth.scheme
    human, pred, tangents, iod = noisy_case(truth, seed=1)
    jaw = 4
    t = tangents[20, jaw]
    along, across = human.copy(), human.copy()
    along[20, jaw] += 0.05 * t * iod[20, 0]
    across[20, jaw] += 0.05 * np.array([-t[1], t[0]]) * iod[20, 0]
    s_along = score_points(*tables(along, pred, scheme), scheme)[0]["label_score"].to_numpy()[20 * 68 + jaw]
    s_across = score_points(*tables(across, pred, scheme), scheme)[0]["label_score"].to_numpy()[20 * 68 + jaw]
    assert s_across < s_along / 4 and s_along > ScoringConfig().issue_threshold


def test_a_search_across_the_contour_costs_more_than_one_along_it(truth):
    """The search moves slid jaw labels back along the jaw as a matter of course; moving one across is news."""
    scheme = truth.scheme
    human, pred, tangents, iod = noisy_case(truth, seed=3)
    searched = truth.landmarks + np.random.default_rng(4).normal(0, 0.004, human.shape) * iod
    jaw = 6
    t = tangents[12, jaw]
    scores = []
    for direction in (t, np.array([-t[1], t[0]])):
        moved = searched.copy()
        moved[12, jaw] = human[12, jaw] + 0.05 * direction * iod[12, 0]
        points, _ = score_points(*tables(human, pred, scheme, searched=moved), scheme)
        scores.append(points["label_score"].to_numpy()[12 * 68 + jaw])
    assert scores[1] < scores[0] / 2


def test_the_score_reads_the_broad_search_not_the_proposal(truth):
    """The label's offset from the search under its broad prior is the evidence; the proposal only proposes."""
    scheme = truth.scheme
    human, pred, tangents, iod = noisy_case(truth, seed=3)
    jaw = 6
    t = tangents[12, jaw]
    across = human.copy()
    across[12, jaw] = human[12, jaw] + 0.05 * np.array([-t[1], t[0]]) * iod[12, 0]
    points, images = tables(human, pred, scheme)  # the proposal: every label where it is
    points["x_searched_broad"], points["y_searched_broad"] = across[..., 0].ravel(), across[..., 1].ravel()
    scored, _ = score_points(points.copy(), images.copy(), scheme)
    one_search, _ = score_points(*tables(human, pred, scheme, searched=across), scheme)
    np.testing.assert_array_equal(scored["label_score"], one_search["label_score"])
    unmoved, _ = score_points(*tables(human, pred, scheme), scheme)
    assert scored["label_score"][12 * 68 + jaw] < unmoved["label_score"][12 * 68 + jaw] / 2


def test_a_second_peak_under_the_label_is_the_models_confusion_not_the_labels(truth):
    scheme = truth.scheme
    human, pred, _, _ = noisy_case(truth, seed=2)
    flip = scheme.flip_permutation
    pred[5, 36] = pred[5, flip[36]]  # the model put the eye corner on the other eye ...
    points, images = tables(human, pred, scheme)
    blamed = score_points(points, images, scheme)[0]["label_score"].to_numpy()[5 * 68 + 36]
    row = 5 * 68 + 36
    points.loc[row, ["x_mode", "y_mode"]] = human[5, 36] + 0.3  # ... but its heatmap also peaks at the label
    points.loc[row, "mode_peak"] = 0.8
    spared = score_points(points, images, scheme)[0]["label_score"].to_numpy()[row]
    assert blamed < 1e-3 < 0.1 < spared


def test_missing_labels_and_component_frames(truth):
    scheme = truth.scheme
    human, pred, _, _ = noisy_case(truth, seed=3)
    human[2, 10] = np.nan
    points, _ = score_points(*tables(human, pred, scheme), scheme)
    row = points.iloc[2 * 68 + 10]
    assert np.isnan(row["label_score"]) and row["issue_type"] == "" and not row["is_label_issue"]
    residual = np.array([[[3.0, 4.0], [3.0, 4.0]]])
    tangents = np.array([[[0.0, 1.0], [np.nan, np.nan]]])
    np.testing.assert_allclose(frame_components(residual, tangents), [[[4.0, -3.0], [3.0, 4.0]]])


def test_student_score_and_mirror_ratio():
    assert student_score(np.array([0.0]), 4.0)[0] == 1.0
    s = student_score(np.array([1.0, 10.0, 1e6]), 4.0)
    assert (np.diff(s) < 0).all() and s[-1] > 0
    human = np.array([[[0.0, 0.0], [10.0, 0.0], [5.0, 5.0]]])
    flip = np.array([1, 0, 2])
    direct, ratio = mirror_ratio(human[:, flip], human, np.array([10.0]), flip)
    assert direct[0] == pytest.approx(20 / 3 / 10) and ratio[0] == 0


def test_a_face_the_model_missed_whole_is_not_blamed_on_its_labels(truth):
    scheme = truth.scheme
    human, pred, _, iod = noisy_case(truth, seed=3)
    pred[8] += np.array([0.06, -0.04]) * iod[8, 0]  # the model misplaced the whole face
    human[8, 30] += np.array([0.12, 0.0]) * iod[8, 0]  # and one of its labels is wrong
    scores = {}
    for face_scale in (False, True):
        points, _ = score_points(*tables(human, pred, scheme), scheme, ScoringConfig(face_scale=face_scale))
        scores[face_scale] = points["label_score"].to_numpy().reshape(-1, 68)
    others = np.delete(scores[True][8], 30)
    assert (np.delete(scores[False][8], 30) < ScoringConfig().issue_threshold).sum() > 20
    assert (others < ScoringConfig().issue_threshold).sum() == 0
    assert scores[True][8, 30] < ScoringConfig().issue_threshold and scores[True][8].argmin() == 30
    z = np.zeros((3, 68, 2))
    z[..., 0] = np.sqrt(2 * np.log(2))  # the median norm of a 2-D standard normal: a face fitted as usual
    z[1:] *= 5
    np.testing.assert_allclose(face_model_scale(z, np.array([False, False, True])), [1.0, 5.0, 1.0])


def test_an_imprecise_model_weighs_less_than_the_labels_shape(truth):
    scheme = truth.scheme
    human, pred, _, iod = noisy_case(truth, seed=4)
    rng = np.random.default_rng(4)
    poor = truth.landmarks + rng.standard_t(3, truth.landmarks.shape) * 0.05 * iod  # a model worse than the labels
    human[6, 48] += np.array([0.06, 0.03]) * iod[6, 0]  # a moderate error at a mouth corner
    shape = conditional_residuals(human, iod[:, 0, 0])
    weights, ranks = [], []
    for prediction, weight in ((pred, None), (poor, None), (poor, 1.0)):
        weights.append(prediction_weight((human - prediction) / iod, shape, np.zeros(len(truth), bool)))
        score = score_points(*tables(human, prediction, scheme), scheme,
                             ScoringConfig(pred_weight=weight))[0]["label_score"].to_numpy().reshape(-1, 68)
        ranks.append((score < score[6, 48]).sum())
    assert weights[0] > 0.7 and weights[1] < 0.5
    assert ranks[1] < 30 and ranks[1] < ranks[2] / 2  # of 8,160 labels: the labels' shape carries it
    assert prediction_weight(np.ones((2, 3, 2)), np.ones((2, 3, 2)), np.array([False, False])) == 1.0
    # precisions, not spreads: a prediction twice as far off as the labels' shape weighs a quarter
    assert prediction_weight(np.ones((2, 3, 2)), 0.5 * np.ones((2, 3, 2)), np.array([False, False])) == 0.25


def test_config_round_trips_to_json():
    config = ScoringConfig(issue_threshold=0.01)
    assert ScoringConfig(**config.to_json()) == config


def test_a_weak_heatmap_is_low_confidence(truth):
    scheme = truth.scheme
    human, pred, _, iod = noisy_case(truth, seed=5)
    human[4, 30] += np.array([0.12, 0.0]) * iod[4, 0]
    points, images = tables(human, pred, scheme)
    points.loc[4 * 68 + 30, "confidence"] = 0.05  # e.g. an occluded nose tip
    points.loc[6 * 68 + 30, "confidence"] = 0.05
    scored, _ = score_points(points, images, scheme)
    kind = scored["issue_type"].to_numpy().reshape(-1, 68)
    issue = scored["is_label_issue"].to_numpy().reshape(-1, 68)
    assert kind[4, 30] == kind[6, 30] == "low_confidence"
    assert issue[4, 30] and not issue[6, 30]  # still an issue where the label is far off, not where it is fine


def test_points_sliding_alone_stand_out_where_their_neighbours_slide_together(truth):
    scheme = truth.scheme
    rng = np.random.default_rng(4)
    iod = truth.normaliser()[:, None, None]
    n = len(truth)
    pred = truth.landmarks + rng.normal(0, 0.006, truth.landmarks.shape) * iod
    human = truth.landmarks + rng.normal(0, 0.006, truth.landmarks.shape) * iod
    tangents = np.nan_to_num(scheme.contour_tangents(truth.landmarks))
    run = np.arange(17)  # the jaw points, which an annotator slides together by a face's own amount
    human[:, run] += rng.normal(0, 0.04, (n, 1, 1)) * iod * tangents[:, run]
    faces, points = np.arange(0, 100, 10), rng.choice(run, 10)
    human[faces, points] += 0.06 * tangents[faces, points] * iod[faces, 0]  # these alone, as far again
    planted = np.zeros((n, 68), dtype=bool)
    planted[faces, points] = True

    def found(config: ScoringConfig) -> int:
        """How many of the 10 most suspicious jaw labels (of 2,040) are the 10 planted ones."""
        score = score_points(*tables(human, pred, scheme), scheme, config)[0]["label_score"].to_numpy()
        order = np.argsort(score.reshape(n, 68)[:, run].ravel())[:10]
        return int(planted[:, run].ravel()[order].sum())

    alone = ScoringConfig(shape_weight=0.0, search_weight=0.0)  # the prediction's term alone
    assert found(alone) >= 9 and found(ScoringConfig()) >= 9
    assert found(replace(alone, condition_on_face=False)) <= 5


def test_chain_swaps_and_duplicates_are_found_typed_and_get_their_partner(truth):
    scheme = truth.scheme
    human, pred, _, _ = noisy_case(truth, seed=4)
    human[5, [3, 4]] = human[5, [4, 3]]  # two jaw neighbours clicked in the wrong order
    human[9, [37, 38]] = human[9, [38, 37]]  # two upper-lid neighbours
    human[13, 50] = human[13, 49]  # the outer lip's point clicked twice
    points, _ = score_points(*tables(human, pred, scheme), scheme)
    grid = {c: points[c].to_numpy().reshape(len(truth), 68) for c in ("label_score", "issue_type", "partner",
                                                                      "is_label_issue")}
    for face, a, b in ((5, 3, 4), (9, 37, 38)):
        assert grid["issue_type"][face, a] == grid["issue_type"][face, b] == "chain_swap"
        assert (grid["partner"][face, a], grid["partner"][face, b]) == (b, a)
    assert grid["issue_type"][13, 50] == "duplicate" and grid["partner"][13, 50] == 49
    assert not grid["is_label_issue"][13, 49]  # the label it sits on is not blamed
    planted = np.zeros((len(truth), 68), bool)
    planted[5, [3, 4]] = planted[9, [37, 38]] = planted[13, 50] = True
    assert grid["label_score"][planted].max() < np.quantile(grid["label_score"][~planted], 0.005)
    assert (grid["partner"][~planted] >= 0).mean() < 0.002  # independent slides of 0.04 NME meet now and then
    x, y, source = proposals(points)
    row = 5 * 68 + 3
    assert source[row] == "exchanged" and (x[row], y[row]) == tuple(human[5, 4])
    assert source[13 * 68 + 50] == "shape"  # the labels' shape puts it back between its neighbours
    assert np.hypot(x[13 * 68 + 50] - truth.landmarks[13, 50, 0], y[13 * 68 + 50] - truth.landmarks[13, 50, 1]) < (
        0.5 * np.linalg.norm(human[13, 50] - truth.landmarks[13, 50]))


def test_labels_that_meet_on_many_faces_meet_by_convention_not_by_a_double_click(truth):
    scheme = truth.scheme
    human, pred, _, _ = noisy_case(truth, seed=6)
    closed = np.arange(len(truth)) % 3 == 0  # a third of the mouths labelled closed, the model opens them all
    human[closed, 61] = human[closed, 67]
    human[4, 21] = human[4, 20]  # and one brow point clicked twice
    points, _ = score_points(*tables(human, pred, scheme), scheme)
    kind = points["issue_type"].to_numpy().reshape(len(truth), 68)
    assert not (kind[:, [61, 67]] == "duplicate").any()
    assert kind[4, 21] == "duplicate"


def test_coinciding_points_of_the_scheme_are_not_duplicates(truth):
    scheme = truth.scheme
    human, pred, _, _ = noisy_case(truth, seed=5)
    human[:, 60] = human[:, 48]  # this dataset's labels put the inner lip corner on the outer one, every face
    pred[:, 60] = pred[:, 48]
    points, _ = score_points(*tables(human, pred, scheme), scheme)
    assert not ((points["issue_type"] == "duplicate") & points["point"].isin([48, 60])).any()
