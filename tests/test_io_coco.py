"""COCO keypoints JSON: reading, writing, visibility, boxes, scheme from the category, round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGE_RELS, LFPW, assert_same_faces, face_sets, make_dataset, write_image
from hypothesis import given, settings

from auditor.dataset import MISSING, OCCLUDED, VISIBLE, Dataset
from auditor.errors import InputError
from auditor.io import read_dataset, write_dataset
from auditor.schemes import Contour, LandmarkScheme, get_scheme


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("coco_images")
    for rel in IMAGE_RELS:
        write_image(root / rel)
    return root


def coco_file(path: Path, keypoint_names: list[str] | None, annotations: list[dict], *,
              skeleton: list[list[int]] | None = None) -> Path:
    category = {"id": 1, "name": "face"}
    if keypoint_names is not None:
        category["keypoints"] = keypoint_names
    if skeleton is not None:
        category["skeleton"] = skeleton
    data = {"images": [{"id": 7, "file_name": "a.png", "width": 8, "height": 8},
                       {"id": 8, "file_name": "sub/b.png", "width": 8, "height": 8}],
            "annotations": annotations, "categories": [category]}
    path.write_text(json.dumps(data))
    return path


def test_reads_keypoints_visibility_and_bbox(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "sub" / "b.png")
    names = list(get_scheme("aflw_19").point_names)
    kp = [v for i in range(19) for v in (float(i), i + 0.5, 2)]
    kp[2], kp[5], kp[6:9] = 1, 1, [0, 0, 0]
    anns = [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": kp, "bbox": [1, 2, 10, 20]},
            {"id": 2, "image_id": 8, "category_id": 1, "keypoints": kp},
            {"id": 3, "image_id": 7, "category_id": 1, "keypoints": kp, "bbox": [0, 0, 1, 1]}]
    ds = read_dataset(coco_file(tmp_path / "ann.json", names, anns))
    assert ds.source_format == "coco"
    assert ds.scheme.name == "aflw_19"
    assert ds.image_ids == ["a#0", "sub/b", "a#1"]
    assert ds.image_paths[1] == tmp_path / "sub" / "b.png"
    assert list(ds.visibility[0, :4]) == [OCCLUDED, OCCLUDED, MISSING, VISIBLE]
    assert np.isnan(ds.landmarks[0, 2]).all()
    np.testing.assert_array_equal(ds.landmarks[0, 3], [3, 3.5])
    np.testing.assert_array_equal(ds.boxes[0], [1, 2, 11, 22])
    assert np.isnan(ds.boxes[1]).all()


def test_scheme_from_count_when_names_are_absent(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    ds = read_dataset(coco_file(tmp_path / "ann.json", None,
                                [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": [1, 1, 2] * 68}]))
    assert ds.scheme.name == "300w_68"
    assert ds.boxes is None


def test_custom_scheme_from_the_category(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    names = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    ds = read_dataset(coco_file(tmp_path / "ann.json", names,
                                [{"id": 1, "image_id": 7, "category_id": 1, "keypoints": [1, 1, 2] * 5}],
                                skeleton=[[1, 2], [4, 5]]))
    assert ds.scheme.name == "face"
    assert ds.scheme.point_names == tuple(names)
    assert [c.points for c in ds.scheme.contours] == [(0, 1), (3, 4)]
    assert ds.scheme.flip_pairs == () and ds.scheme.normaliser_points is None


def test_writer_category_skeleton_sizes_and_boxes(tmp_path: Path) -> None:
    vis = np.full((2, 19), VISIBLE, dtype=np.int8)
    vis[1, :] = MISSING
    vis[0, 5] = MISSING
    ds = make_dataset(tmp_path / "img", ["a.png", "a.png"], visibility=vis)
    data = json.loads(write_dataset(ds, tmp_path / "out" / "ann.json", format="coco").read_text())
    (category,) = data["categories"]
    assert category["keypoints"] == list(ds.scheme.point_names)
    assert [1, 2] in category["skeleton"] and [2, 3] in category["skeleton"]
    assert data["images"] == [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}]
    first, second = data["annotations"]
    labelled = np.delete(ds.landmarks[0], 5, axis=0)
    x0, y0 = labelled.min(axis=0)
    x1, y1 = labelled.max(axis=0)
    assert first["bbox"] == pytest.approx([x0, y0, x1 - x0, y1 - y0])
    assert first["num_keypoints"] == 18 and first["keypoints"][15:18] == [0, 0, 0]
    assert "bbox" not in second and second["num_keypoints"] == 0


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets())
def test_round_trip(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, **kwargs)
    out = tmp_path_factory.mktemp("coco_out")
    back = read_dataset(write_dataset(ds, out / "ann.json", format="coco"))
    assert back.scheme.name == ds.scheme.name
    assert_same_faces(ds, back)
    again = read_dataset(write_dataset(back, out / "again" / "ann.json", format="coco"))
    assert_same_faces(back, again)


def test_custom_scheme_round_trip(tmp_path: Path) -> None:
    scheme = LandmarkScheme("five", ("a", "b", "c", "d", "e"), ("all",) * 5, (False,) * 5,
                            (Contour("abc", (0, 1, 2), closed=True),), ((0, 1),))
    write_image(tmp_path / "img" / "x.png")
    ds = Dataset(tmp_path / "img", ["x"], [tmp_path / "img" / "x.png"], np.arange(10.0).reshape(1, 5, 2),
                 np.full((1, 5), VISIBLE), scheme)
    back = read_dataset(write_dataset(ds, tmp_path / "out" / "ann.json", format="coco"))
    assert back.scheme.name == "five"
    assert [c.points for c in back.scheme.contours] == [(0, 1), (1, 2), (2, 0)]
    assert_same_faces(ds, back)


def test_round_trip_without_linking_keeps_image_files(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "img", ["sub/a.png", "b.png"])
    back = read_dataset(write_dataset(ds, tmp_path / "out" / "ann.json", format="coco", link_images=False))
    assert_same_faces(ds, back, ids=False)


@pytest.mark.skipif(not LFPW.is_dir(), reason="needs ../shared/data/lfpw")
def test_lfpw_converts_to_coco_and_back(tmp_path: Path) -> None:
    ds = read_dataset(LFPW)
    back = read_dataset(write_dataset(ds, tmp_path / "lfpw.json", format="coco"))
    assert back.scheme.name == "300w_68"
    assert_same_faces(ds, back)


def test_annotator_field_or_attributes_annotator(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "sub" / "b.png")
    kp = [1, 1, 2] * 19
    anns = [{"id": 1, "image_id": 7, "keypoints": kp, "annotator": "alice"},
            {"id": 2, "image_id": 7, "keypoints": kp, "attributes": {"annotator": "bob", "occluded": False}},
            {"id": 3, "image_id": 8, "keypoints": kp, "annotator": 12, "attributes": {"annotator": "12"}},
            {"id": 4, "image_id": 7, "keypoints": kp, "annotator": "alice"}]
    ds = read_dataset(coco_file(tmp_path / "ann.json", None, anns))
    assert ds.annotators == ["alice", "bob", "12", "alice"]
    assert ds.image_ids == ["alice/a#0", "bob/a", "12/sub/b", "alice/a#1"]
    assert read_dataset(coco_file(tmp_path / "plain.json", None, [{"image_id": 7, "keypoints": kp}])).annotators is None


@pytest.mark.parametrize(("ann", "field", "message"), [
    ({}, "annotations[1].annotator", "missing field 'annotator'"),
    ({"annotator": ""}, "annotations[1].annotator", "non-empty string"),
    ({"attributes": {"annotator": [1]}}, "annotations[1].attributes.annotator", "non-empty string"),
    ({"annotator": "bob", "attributes": {"annotator": "carol"}}, "annotations[1].attributes.annotator", "differs"),
])
def test_annotator_errors_name_the_annotation(tmp_path: Path, ann: dict, field: str, message: str) -> None:
    write_image(tmp_path / "a.png")
    kp = [1, 1, 2] * 19
    anns = [{"image_id": 7, "keypoints": kp, "annotator": "alice"}, {"image_id": 7, "keypoints": kp} | ann]
    path = coco_file(tmp_path / "ann.json", None, anns)
    with pytest.raises(InputError, match=message) as e:
        read_dataset(path)
    assert str(e.value).startswith(f"{path} [{field}]")
    ds = read_dataset(path, skip_bad=True)
    assert ds.annotators == ["alice"] and ds.skipped[0][0] == f"{path} [{field}]"


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(boxes=False, annotators=True))
def test_round_trip_with_annotators(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, **kwargs)
    out = write_dataset(ds, tmp_path_factory.mktemp("coco_ann") / "ann.json", format="coco")
    assert {a["annotator"] for a in json.loads(out.read_text())["annotations"]} == set(ds.annotators)
    back = read_dataset(out)
    assert_same_faces(ds, back)
    assert back.annotators == ds.annotators
    np.testing.assert_array_equal(back.subjects(), ds.subjects())
