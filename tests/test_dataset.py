import numpy as np
import pytest

from auditor.dataset import MISSING, OCCLUDED, VISIBLE, Dataset
from auditor.errors import InputError
from auditor.schemes import BUILTIN_SCHEMES

AFLW = BUILTIN_SCHEMES["aflw_19"]


def make(n=3, **kw):
    xy = np.arange(n * 19 * 2, dtype=float).reshape(n, 19, 2)
    vis = np.full((n, 19), VISIBLE)
    args = dict(root="/data", image_ids=[f"im{i}" for i in range(n)],
                image_paths=[f"/data/im{i}.png" for i in range(n)], landmarks=xy, visibility=vis, scheme=AFLW)
    args.update(kw)
    return Dataset(**args)


def test_duplicate_ids_are_refused():
    with pytest.raises(InputError, match="duplicate image id 'a'"):
        make(2, image_ids=["a", "a"])


def test_subset_and_with_landmarks_copy():
    ds = make(3, boxes=np.zeros((3, 4)))
    sub = ds.subset([2, 0])
    assert sub.image_ids == ["im2", "im0"] and np.array_equal(sub.landmarks[0], ds.landmarks[2])
    moved = ds.with_landmarks(ds.landmarks + 1)
    moved.visibility[0, 0] = MISSING
    assert ds.visibility[0, 0] == VISIBLE and np.array_equal(moved.landmarks, ds.landmarks + 1)


def test_summary_counts():
    vis = np.full((3, 19), VISIBLE)
    vis[0, :2] = MISSING
    vis[1, 5] = OCCLUDED
    s = make(3, visibility=vis).summary()
    assert s["faces"] == 3 and s["images"] == 3 and s["points"] == 55 and s["missing_points"] == 2
    assert s["occluded_points"] == 1 and s["missing_images"] == 3 and s["scheme"] == "aflw_19"


def test_shape_mismatch():
    with pytest.raises(ValueError, match="3 faces but 2 ids"):
        make(3, image_ids=["a", "b"])


def test_missing_points_hold_nan_whatever_was_given():
    vis = np.full((2, 19), VISIBLE)
    vis[1, 3] = MISSING
    ds = make(2, visibility=vis)
    assert np.isnan(ds.landmarks[1, 3]).all() and np.isfinite(np.delete(ds.landmarks[1], 3, axis=0)).all()
    assert np.isnan(ds.with_landmarks(np.zeros((2, 19, 2))).landmarks[1, 3]).all()
