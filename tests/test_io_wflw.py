"""WFLW annotation .txt: reading, writing, several faces per image, image roots, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGE_RELS, LFPW, assert_same_faces, face_sets, make_dataset, write_image
from hypothesis import given, settings

from auditor.dataset import VISIBLE
from auditor.io import face_ids, read_dataset, write_dataset

WFLW_RELS = tuple(r for r in IMAGE_RELS if " " not in r)


def wflw_line(xy: np.ndarray, box: tuple[float, ...], attributes: tuple[int, ...], rel: str) -> str:
    numbers = [f"{v:.6f}" for v in xy.ravel()] + [str(b) for b in box] + [str(a) for a in attributes]
    return " ".join(numbers) + f" {rel}\n"


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wflw_images")
    for rel in WFLW_RELS:
        write_image(root / rel)
    return root


def test_reads_wflw_lines_with_boxes_attributes_and_several_faces(tmp_path: Path) -> None:
    rel = "51--Dresses/51_Dresses_wearingdress_51_377.jpg"
    write_image(tmp_path / rel)
    write_image(tmp_path / "0--Parade/0_Parade_marchingband_1_116.jpg")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 300, (3, 98, 2))
    text = (wflw_line(xy[0], (10, 20, 300, 310), (1, 0, 0, 1, 0, 1), rel)
            + wflw_line(xy[1], (5, 6, 7, 8), (0, 1, 0, 0, 1, 0), "0--Parade/0_Parade_marchingband_1_116.jpg")
            + "\n"
            + wflw_line(xy[2], (1.5, 2.5, 3.5, 4.5), (0, 0, 0, 0, 0, 0), rel))
    (tmp_path / "list_98pt_rect_attr_train.txt").write_text(text)
    ds = read_dataset(tmp_path / "list_98pt_rect_attr_train.txt")
    assert ds.source_format == "wflw"
    assert ds.scheme.name == "wflw_98"
    assert ds.image_ids == ["51--Dresses/51_Dresses_wearingdress_51_377#0", "0--Parade/0_Parade_marchingband_1_116",
                            "51--Dresses/51_Dresses_wearingdress_51_377#1"]
    assert ds.image_paths[2] == tmp_path / rel
    np.testing.assert_allclose(ds.landmarks, np.round(xy, 6))
    assert (ds.visibility == VISIBLE).all()
    np.testing.assert_array_equal(ds.boxes[2], [1.5, 2.5, 3.5, 4.5])
    np.testing.assert_array_equal(ds.attributes[:2], [[1, 0, 0, 1, 0, 1], [0, 1, 0, 0, 1, 0]])
    assert ds.skipped == []


def test_point_count_other_than_98_infers_the_scheme(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    xy = np.arange(68 * 2, dtype=float).reshape(68, 2)
    (tmp_path / "ann.txt").write_text(wflw_line(xy, (0, 0, 1, 1), (0,) * 6, "a.png"))
    ds = read_dataset(tmp_path / "ann.txt")
    assert ds.scheme.name == "300w_68"
    np.testing.assert_array_equal(ds.landmarks[0], xy)


def test_images_found_under_wflw_images_subfolder(tmp_path: Path) -> None:
    write_image(tmp_path / "WFLW_images" / "0--Parade" / "x.jpg")
    (tmp_path / "ann.txt").write_text(wflw_line(np.zeros((98, 2)), (0, 0, 1, 1), (0,) * 6, "0--Parade/x.jpg"))
    ds = read_dataset(tmp_path / "ann.txt")
    assert ds.root == tmp_path / "WFLW_images"
    assert ds.image_paths == [tmp_path / "WFLW_images" / "0--Parade" / "x.jpg"]
    assert ds.image_ids == ["0--Parade/x"]


def test_images_root_option(tmp_path: Path) -> None:
    write_image(tmp_path / "elsewhere" / "x.png")
    (tmp_path / "ann.txt").write_text(wflw_line(np.zeros((98, 2)), (0, 0, 1, 1), (0,) * 6, "x.png"))
    ds = read_dataset(tmp_path / "ann.txt", images_root=tmp_path / "elsewhere")
    assert ds.image_paths == [tmp_path / "elsewhere" / "x.png"]


def test_face_ids_number_faces_per_image_in_order() -> None:
    assert face_ids(["a.png", "b.png", "a.png", "c/d.jpg"]) == ["a#0", "b", "a#1", "c/d"]


def test_writer_fills_boxes_from_the_labels_and_attributes_with_zeros(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "img", ["a.png", "a.png"], scheme="wflw_98")
    back = read_dataset(write_dataset(ds, tmp_path / "out" / "ann.txt", format="wflw"))
    assert_same_faces(ds, back)
    lo, hi = ds.landmarks.min(axis=1), ds.landmarks.max(axis=1)
    np.testing.assert_array_equal(back.boxes, np.concatenate([lo, hi], axis=1))
    np.testing.assert_array_equal(back.attributes, np.zeros((2, 6)))


def test_writer_refuses_missing_points(tmp_path: Path) -> None:
    vis = np.full((1, 98), VISIBLE, dtype=np.int8)
    vis[0, 3] = 0
    ds = make_dataset(tmp_path, ["a.png"], scheme="wflw_98", visibility=vis)
    with pytest.raises(Exception, match="cannot hold missing points"):
        write_dataset(ds, tmp_path / "out.txt", format="wflw")


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(rels=WFLW_RELS, visibility=False, attributes=True))
def test_round_trip(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, **kwargs)
    out = tmp_path_factory.mktemp("wflw_out")
    back = read_dataset(write_dataset(ds, out / "ann.txt", format="wflw"))
    assert back.source_format == "wflw"
    assert_same_faces(ds, back)
    np.testing.assert_array_equal(back.attributes, ds.attributes)
    again = read_dataset(write_dataset(back, out / "again" / "ann.txt", format="wflw"))
    assert_same_faces(back, again)


def test_round_trip_without_linking_keeps_image_files(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "img", ["sub/a.png", "b.png", "b.png"], scheme="aflw_19")
    back = read_dataset(write_dataset(ds, tmp_path / "out" / "ann.txt", format="wflw", link_images=False))
    assert_same_faces(ds, back, ids=False)
    assert not (tmp_path / "out" / "b.png").exists()


@pytest.mark.skipif(not LFPW.is_dir(), reason="needs ../shared/data/lfpw")
def test_lfpw_converts_to_wflw_and_back(tmp_path: Path) -> None:
    ds = read_dataset(LFPW)
    back = read_dataset(write_dataset(ds, tmp_path / "lfpw.txt", format="wflw"))
    assert back.scheme.name == "300w_68"
    assert_same_faces(ds, back)
