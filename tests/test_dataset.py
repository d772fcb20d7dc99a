import os

import numpy as np
import pytest

from auditor.dataset import MISSING, OCCLUDED, SAME_PERSON_IOU, VISIBLE, Dataset
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


def faces(boxes, annotators=None, images=None, **kw):
    """One face per box (x0, y0, x1, y1; NaN: no box, labels spread over [0, 10]^2), on image `images[i]`."""
    n = len(boxes)
    images = images or ["a"] * n
    return make(n, image_paths=[f"/data/{i}.png" for i in images], boxes=np.array(boxes, dtype=float),
                annotators=annotators, landmarks=np.random.default_rng(0).uniform(0, 10, (n, 19, 2)), **kw)


FACE = [0, 0, 10, 10]
OTHER = [100, 0, 110, 10]
NONE = [np.nan] * 4


def test_subjects_same_image_two_annotators_is_one_subject():
    assert faces([FACE, [1, 1, 11, 11]], ["alice", "bob"]).subjects().tolist() == [0, 0]


def test_subjects_same_annotator_twice_is_two_subjects():
    assert faces([FACE, [1, 1, 11, 11]], ["alice", "alice"]).subjects().tolist() == [0, 1]


def test_subjects_different_images_are_different_subjects():
    assert faces([FACE, FACE], ["alice", "bob"], images=["a", "b"]).subjects().tolist() == [0, 1]


def test_subjects_two_persons_each_labelled_by_two_annotators():
    ds = faces([OTHER, FACE, FACE, [99, 1, 109, 11], [500, 500, 510, 510]], ["bob", "alice", "bob", "alice", "bob"])
    assert ds.subjects().tolist() == [0, 1, 1, 0, 2]


def test_subjects_join_the_best_overlap_first():
    # carol labelled two persons, both overlapping alice's face: alice's joins the closer one (IoU 0.9, not 0.5)
    ds = faces([FACE, [0, 0, 10, 5], [0, 0, 10, 9]], ["alice", "carol", "carol"])
    assert ds.subjects().tolist() == [0, 1, 0]


def test_subjects_compare_label_extents_where_a_face_has_no_box():
    assert faces([NONE, NONE], ["alice", "bob"]).subjects().tolist() == [0, 0]
    assert faces([OTHER, NONE], ["alice", "bob"]).subjects().tolist() == [0, 0]  # the labels overlap, not the box
    moved = faces([FACE, NONE], ["alice", "bob"])
    assert moved.with_landmarks(moved.landmarks + [[[0.0, 0.0]], [[100.0, 0.0]]]).subjects().tolist() == [0, 1]
    vis = np.full((2, 19), VISIBLE)
    vis[1] = MISSING
    assert faces([NONE, NONE], ["alice", "bob"], visibility=vis).subjects().tolist() == [0, 1]


def test_subjects_without_annotators_join_overlapping_faces_of_one_image():
    ds = faces([FACE, [1, 1, 11, 11], OTHER, FACE], images=["a", "a", "a", "b"])
    assert ds.annotators is None and ds.subjects().tolist() == [0, 0, 1, 2]
    assert make(3).subjects().tolist() == [0, 1, 2]
    assert make(3).subset([]).subjects().tolist() == []


def test_subjects_same_image_through_a_link(tmp_path):
    (tmp_path / "a.png").write_bytes(b"")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.png")
    ds = make(2, root=tmp_path, image_paths=[tmp_path / "a.png", tmp_path / "link.png"], annotators=["x", "y"],
              boxes=[FACE, FACE])
    assert ds.subjects().tolist() == [0, 0]


def naive_subjects(ds: Dataset) -> list[int]:
    """`Dataset.subjects` the slow way: every pair of faces, joined best IoU first unless an annotator repeats."""
    def extent(i):
        xy = [p for p, v in zip(ds.landmarks[i], ds.labelled[i], strict=True) if v]
        return [min(p[0] for p in xy), min(p[1] for p in xy), max(p[0] for p in xy), max(p[1] for p in xy)] if xy \
            else [np.nan] * 4

    def area(b):
        return (b[2] - b[0]) * (b[3] - b[1])

    n, pairs = len(ds), []
    for i in range(n):
        for j in range(i + 1, n):
            if os.path.realpath(ds.image_paths[i]) != os.path.realpath(ds.image_paths[j]):
                continue
            boxed = ds.boxes is not None and np.isfinite(ds.boxes[[i, j]]).all()
            a, b = (ds.boxes[i], ds.boxes[j]) if boxed else (extent(i), extent(j))
            inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
            union = area(a) + area(b) - inter
            if union > 0 and inter / union >= SAME_PERSON_IOU:
                pairs.append((-(inter / union), i, j))
    group = list(range(n))
    for _, i, j in sorted(pairs):
        gi, gj = group[i], group[j]
        if gi == gj or (ds.annotators is not None and {ds.annotators[k] for k in range(n) if group[k] == gi}
                        & {ds.annotators[k] for k in range(n) if group[k] == gj}):
            continue
        group = [gi if g == gj else g for g in group]
    first: dict[int, int] = {}
    return [first.setdefault(g, len(first)) for g in group]


@pytest.mark.parametrize("seed", range(20))
def test_subjects_match_the_naive_reference(seed):
    rng = np.random.default_rng(seed)
    n = 40
    corner = rng.integers(0, 30, (n, 2)).astype(float)
    boxes = np.concatenate([corner, corner + rng.integers(5, 15, (n, 2))], axis=1)
    boxes[rng.random(n) < 0.3] = np.nan
    landmarks = corner[:, None] + rng.uniform(0, 12, (n, 19, 2))
    vis = np.where(rng.random((n, 19)) < 0.1, MISSING, VISIBLE)
    vis[0] = MISSING
    annotators = None if seed % 4 == 0 else list(rng.choice(["a", "b", "c"], n))
    ds = make(n, image_paths=[f"/data/{i}.png" for i in rng.integers(0, 3, n)], boxes=boxes, landmarks=landmarks,
              visibility=vis, annotators=annotators)
    assert ds.subjects().tolist() == naive_subjects(ds)


def test_summary_counts_annotators_and_subjects():
    ds = faces([FACE, FACE, OTHER, FACE, FACE], ["bob", "alice", "alice", "carol", "bob"],
               images=["a", "a", "a", "a", "b"])
    s = ds.summary()
    assert s["annotators"] == 3 and s["faces_per_annotator"] == {"alice": 2, "bob": 2, "carol": 1}
    assert s["subjects"] == 3 and s["labelled_k_times"] == {1: 2, 3: 1}
    s = make(3).summary()
    assert s["annotators"] == 0 and "faces_per_annotator" not in s
    assert s["subjects"] == 3 and s["labelled_k_times"] == {1: 3}
