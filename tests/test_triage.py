import numpy as np
import pandas as pd
import pytest
from audit_fixture import swap_sides

from auditor.audit_dir import audit_scheme, load_audit, proposals
from auditor.triage import FACE, error_probability, mirrored_positions, point_gains, queue_items, queue_rank


def gains_of(audit):
    a = load_audit(audit)
    flip = audit_scheme(a.manifest, audit).flip_permutation
    return a, flip, point_gains(a.points, a.images, a.manifest, flip)


def test_mirrored_positions_take_the_partners_label():
    flip = np.array([1, 0, 2])
    points = pd.DataFrame({"image_id": ["a", "a", "a", "b", "b"], "point": [0, 1, 2, 0, 2],
                           "x_human": [1.0, 2.0, 3.0, 4.0, 5.0], "y_human": [10.0, 20.0, 30.0, 40.0, 50.0]})
    mirrored = mirrored_positions(points, flip)
    np.testing.assert_array_equal(mirrored[:3], [[2.0, 20.0], [1.0, 10.0], [3.0, 30.0]])  # point 2: no partner
    assert np.isnan(mirrored[3]).all() and (mirrored[4] == [5.0, 50.0]).all()  # b's point 1 has no row


def test_error_probability_falls_with_the_score_and_meets_the_calibration_at_the_threshold():
    scores = np.array([1e-9, 1e-4, 1e-3, 1e-2, 0.5, 1.0, np.nan])
    calibration = {"calibrated": True, "threshold": 1e-3, "expected_precision": 0.9}
    p = error_probability(scores, calibration)
    assert np.all(np.diff(p[:-1]) < 0) and p[-1] == 0.0
    assert p[2] == pytest.approx(0.9) and p[0] > 0.999 and p[5] < 0.01
    np.testing.assert_allclose(error_probability(scores[:-1], None), 1 - scores[:-1])
    np.testing.assert_allclose(error_probability(scores[:-1], {"calibrated": False}), 1 - scores[:-1])


def test_gain_is_probability_times_the_fixs_displacement(audit):
    a, _, gains = gains_of(audit)
    xs, ys, _ = proposals(a.points)
    normaliser = a.points.image_id.map(a.images.set_index("image_id").normaliser)
    expected = np.hypot(xs - a.points.x_human, ys - a.points.y_human) / normaliser
    np.testing.assert_allclose(gains.displacement_nme, np.nan_to_num(expected.to_numpy()))
    np.testing.assert_allclose(gains.gain, gains.p_wrong * gains.displacement_nme)
    assert not gains.whole_face.any()


def test_a_swapped_face_is_one_item_whose_fix_is_the_mirror(audit):
    moved = swap_sides(audit, "face_0002")
    a, flip, gains = gains_of(audit)
    issues = a.points.is_label_issue.to_numpy()
    items = queue_items(a.points, gains, issues, order="gain")
    face = items[items.point == FACE]
    assert list(face.image_id) == ["face_0002"] and face["size"].iloc[0] == len(moved)
    others = a.points[issues & (a.points.issue_type != "swapped_sides").to_numpy()]
    assert len(items) == len(others) + 1 and (items.point[items.point != FACE] >= 0).all()
    rows = np.flatnonzero((a.points.image_id == "face_0002").to_numpy())
    mirrored = mirrored_positions(a.points.iloc[rows], flip)
    members = gains.whole_face.to_numpy()[rows]
    np.testing.assert_allclose(gains[["x_fix", "y_fix"]].to_numpy()[rows][members], mirrored[members])
    assert face.gain.iloc[0] == pytest.approx(gains.gain.to_numpy()[rows][members].sum())
    assert items.gain.iloc[0] == items.gain.max()  # a whole mirrored face moves far more than any one point
    # a filter that keeps only some of its points still shows the whole face
    one = issues & (a.points.image_id == "face_0002").to_numpy() & (a.points.point == moved[0]).to_numpy()
    only = queue_items(a.points, gains, one, order="score")
    assert list(only.point) == [FACE] and only["size"].iloc[0] == len(moved)


def test_orders_and_ranks(audit):
    swap_sides(audit, "face_0001")
    a, _, gains = gains_of(audit)
    issues = a.points.is_label_issue.to_numpy()
    by_gain = queue_items(a.points, gains, issues, order="gain")
    by_score = queue_items(a.points, gains, issues, order="score")
    assert by_gain.gain.is_monotonic_decreasing and by_score.label_score.is_monotonic_increasing
    keys = [sorted(zip(q.image_id, q.point, strict=True)) for q in (by_gain, by_score)]
    assert keys[0] == keys[1]
    with pytest.raises(ValueError, match="order"):
        queue_items(a.points, gains, issues, order="random")
    rank = queue_rank(a.points, gains, order="gain")
    face = (a.points.image_id == "face_0001").to_numpy() & gains.whole_face.to_numpy()
    assert len(set(rank[face])) == 1  # the face's points share its place
    single = by_gain[by_gain.point != FACE]
    assert (np.diff(rank[single.row.to_numpy()]) > 0).all()  # the point items in the queue's order
