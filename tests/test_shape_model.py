import numpy as np
import pytest

from auditor.shape_model import _conditional, conditional_field_residuals, conditional_residuals, shape_residuals


def posed(landmarks: np.ndarray, seed: int) -> np.ndarray:
    """Faces (N, K, 2) each rotated, scaled and shifted at random."""
    rng = np.random.default_rng(seed)
    n = len(landmarks)
    angle, scale = rng.uniform(-0.5, 0.5, n), rng.uniform(0.5, 2.0, n)
    rot = np.stack([np.stack([np.cos(angle), -np.sin(angle)], -1), np.stack([np.sin(angle), np.cos(angle)], -1)], -2)
    return np.einsum("nij,nkj->nki", rot * scale[:, None, None], landmarks) + rng.uniform(-50, 50, (n, 1, 2))


def test_shape_model_residual_marks_the_moved_point_and_ignores_pose(truth):
    landmarks = truth.landmarks.copy()
    iod = truth.normaliser()
    landmarks[9, 48] += np.array([0.12, -0.05]) * iod[9]
    moved = posed(landmarks, 4)
    residual = np.linalg.norm(shape_residuals(moved, truth.scheme.normaliser(moved)), axis=-1)
    assert np.argmax(residual[9]) == 48 and residual[9, 48] > 0.08
    others = np.delete(residual.ravel(), 9 * 68 + 48)
    assert np.percentile(others, 99) < 0.05
    np.testing.assert_allclose(residual, np.linalg.norm(shape_residuals(landmarks, iod), axis=-1), atol=2e-3)



@pytest.mark.parametrize("face, point", [(9, 5), (30, 12), (50, 20), (70, 40)])
def test_conditional_residual_sees_a_contour_point_pushed_off_its_contour(truth, face, point):
    landmarks = truth.landmarks.copy()
    iod = truth.normaliser()
    tangent = truth.scheme.contour_tangents(landmarks)[face, point]
    landmarks[face, point] += 0.04 * iod[face] * np.array([-tangent[1], tangent[0]])
    conditional = np.linalg.norm(conditional_residuals(landmarks, iod), axis=-1)
    pca = np.linalg.norm(shape_residuals(landmarks, iod), axis=-1)
    rank_conditional = (conditional > conditional[face, point]).sum()
    rank_pca = (pca > pca[face, point]).sum()
    assert rank_conditional < 30 < rank_pca  # of 8,160 labels; the PCA fit absorbs most of the push
    assert conditional[face, point] == pytest.approx(0.04, abs=0.02)


def test_conditional_residual_ignores_pose_and_one_bad_neighbour(truth):
    landmarks = truth.landmarks.copy()
    iod = truth.normaliser()
    clean = np.linalg.norm(conditional_residuals(landmarks, iod), axis=-1)
    landmarks[9, 48] += np.array([0.15, 0.1]) * iod[9]  # a gross error beside the mouth's other points
    moved = posed(landmarks, 5)
    residual = np.linalg.norm(conditional_residuals(moved, truth.scheme.normaliser(moved)), axis=-1)
    np.testing.assert_allclose(residual, np.linalg.norm(conditional_residuals(landmarks, iod), axis=-1), atol=2e-3)
    assert np.argmax(residual[9]) == 48 and residual[9, 48] > 0.12
    neighbours = [49, 59, 60, 67]  # predicted from the others, not from the wrong point
    np.testing.assert_allclose(residual[9, neighbours], clean[9, neighbours], atol=0.01)


def test_conditional_residual_of_missing_and_few_faces(truth):
    landmarks = truth.landmarks.copy()
    iod = truth.normaliser()
    landmarks[3, 10] = np.nan
    residual = conditional_residuals(landmarks, iod)
    assert np.isnan(residual[3, 10]).all() and np.isfinite(np.delete(residual.reshape(-1, 2), 3 * 68 + 10, 0)).all()
    few = landmarks[:2], iod[:2]
    np.testing.assert_array_equal(conditional_residuals(*few), shape_residuals(*few))


def test_conditional_matches_the_textbook_formula():
    rng = np.random.default_rng(0)
    k, m = 5, 7
    a = rng.normal(size=(2 * k, 2 * k))
    covariance = a @ a.T + 0.5 * np.eye(2 * k)
    mean = rng.normal(size=2 * k)
    vectors = rng.multivariate_normal(mean, covariance, size=m)
    observed = np.stack([vectors[:, :k], vectors[:, k:]], -1)
    fast = _conditional(vectors, observed, np.ones((m, k), bool), mean, np.linalg.inv(covariance), iterations=1)
    for i in range(k):
        own = [i, k + i]
        rest = [j for j in range(2 * k) if j not in own]
        gain = covariance[np.ix_(own, rest)] @ np.linalg.inv(covariance[np.ix_(rest, rest)])  # Σ_ir Σ_rr⁻¹
        expected = mean[own] + (vectors[:, rest] - mean[rest]) @ gain.T  # (m, 2)
        np.testing.assert_allclose(fast[:, i], observed[:, i] - expected, atol=1e-9)


def test_conditional_field_removes_what_the_neighbours_share_and_keeps_a_point_of_its_own():
    rng = np.random.default_rng(3)
    n, k = 300, 10
    field = rng.normal(0, 0.003, size=(n, k, 2))
    field[:, :5] += rng.normal(0, 0.03, size=(n, 1, 2))  # points 0-4 slide together, face by face
    field[7, 2] += [0.03, 0.0]  # one point's own error, as large as a usual slide
    field[9, 6] = np.nan
    residual = conditional_field_residuals(field)
    assert np.isnan(residual[9, 6]).all() and np.isfinite(np.delete(residual.reshape(-1, 2), 9 * k + 6, 0)).all()
    shared = np.linalg.norm(residual[:, :5], axis=-1)
    assert np.median(shared) < 0.01 < np.median(np.linalg.norm(field[:, :5], axis=-1))
    assert np.linalg.norm(residual[7, 2]) > 0.02  # the neighbours do not explain it
    assert np.linalg.norm(residual[7, 2]) > 5 * np.median(shared)
    few = conditional_field_residuals(field[:2])
    np.testing.assert_array_equal(np.isnan(few), np.isnan(field[:2]))
    np.testing.assert_allclose(few[0], field[0])
