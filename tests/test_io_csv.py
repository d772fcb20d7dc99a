"""CSV landmarks, wide and long: reading, writing, missing points, several faces, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGE_RELS, LFPW, assert_same_faces, face_sets, make_dataset, write_image
from hypothesis import given, settings

from auditor.dataset import MISSING, OCCLUDED, VISIBLE
from auditor.errors import InputError
from auditor.io import csv_io, read_dataset, write_dataset
from auditor.schemes import get_scheme


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("csv_images")
    for rel in IMAGE_RELS:
        write_image(root / rel)
    return root


def wide_header(k: int) -> str:
    return "image," + ",".join(f"x{i},y{i}" for i in range(k))


def test_wide_with_empty_cells_boxes_visibility_and_several_faces(tmp_path: Path) -> None:
    write_image(tmp_path / "faces" / "a.png")
    write_image(tmp_path / "b.jpg")
    coords = [f"{i}.5,{i + 100}" for i in range(19)]
    empty = coords.copy()
    empty[4] = ","
    vis = ["2"] * 19
    vis[7] = "1"
    header = wide_header(19) + ",box_x0,box_y0,box_x1,box_y1," + ",".join(f"v{i}" for i in range(19))
    rows = [f"faces/a.png,{','.join(coords)},1,2,3,4,{','.join(vis)}",
            f"b.jpg,{','.join(empty)},,,,,{','.join([''] * 19)}",
            f"faces/a.png,{','.join(coords)},0,0,0,0,{','.join(vis)}"]
    (tmp_path / "labels.csv").write_text("\n".join([header] + rows) + "\n")
    ds = read_dataset(tmp_path / "labels.csv")
    assert ds.source_format == "csv"
    assert ds.scheme.name == "aflw_19"
    assert ds.image_ids == ["faces/a#0", "b", "faces/a#1"]
    assert ds.image_paths[1] == tmp_path / "b.jpg"
    np.testing.assert_array_equal(ds.landmarks[0, 3], [3.5, 103])
    assert np.isnan(ds.landmarks[1, 4]).all() and ds.visibility[1, 4] == MISSING
    assert ds.visibility[0, 7] == OCCLUDED and ds.visibility[1, 7] == VISIBLE
    np.testing.assert_array_equal(ds.boxes[0], [1, 2, 3, 4])
    assert np.isnan(ds.boxes[1]).all()


def test_wide_ignores_extra_columns_and_reads_a_bom(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("\ufeffsplit,Image," + wide_header(19)[6:] + "\ntrain,a.png,"
                                    + ",".join(["1"] * 38) + "\n", encoding="utf-8")
    ds = read_dataset(tmp_path / "l.csv")
    assert ds.image_ids == ["a"]
    assert (ds.landmarks == 1).all()


def test_long_with_point_names_face_column_and_absent_points(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    scheme = get_scheme("300w_68")
    rows = ["image,face,point,x,y,visibility"]
    rows += [f"a.png,0,{name},{i},{2 * i},2" for i, name in enumerate(scheme.point_names)]
    rows += [f"a.png,1,{i},{i + 0.25},{i},1" for i in range(67)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    ds = read_dataset(tmp_path / "long.csv")
    assert ds.scheme.name == "300w_68"
    assert ds.image_ids == ["a#0", "a#1"]
    np.testing.assert_array_equal(ds.landmarks[0, :, 1], 2 * np.arange(68))
    assert (ds.visibility[1, :67] == OCCLUDED).all() and ds.visibility[1, 67] == MISSING
    assert ds.boxes is None


def test_long_by_index_infers_scheme_from_largest_index(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    rows = ["image,point,x,y"] + [f"a.png,{i},{i},{i}" for i in range(29)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    assert read_dataset(tmp_path / "long.csv").scheme.name == "cofw_29"


def test_writer_wide_layout_columns(tmp_path: Path) -> None:
    vis = np.full((1, 19), VISIBLE, dtype=np.int8)
    ds = make_dataset(tmp_path / "img", ["a.png"], visibility=vis)
    out = write_dataset(ds, tmp_path / "out.csv", format="csv")
    assert out.read_text().splitlines()[0] == wide_header(19)
    vis[0, 0] = MISSING
    ds = make_dataset(tmp_path / "img", ["a.png"], visibility=vis, boxes=np.array([[0.0, 1, 2, 3]]))
    header, row = write_dataset(ds, tmp_path / "out.csv", format="csv").read_text().splitlines()
    assert header.split(",")[-23:-19] == ["box_x0", "box_y0", "box_x1", "box_y1"]
    assert header.endswith(",v18") and row.split(",")[1:3] == ["", ""]


def test_writer_refuses_unknown_layout(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, ["a.png"])
    with pytest.raises(Exception, match="layout"):
        csv_io.write(ds, tmp_path / "x.csv", layout="tall")


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets())
def test_wide_round_trip(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, **kwargs)
    out = tmp_path_factory.mktemp("csv_out")
    back = read_dataset(write_dataset(ds, out / "labels.csv", format="csv"))
    assert_same_faces(ds, back)
    if ds.boxes is not None:
        np.testing.assert_array_equal(np.isnan(back.boxes), np.isnan(ds.boxes))
    again = read_dataset(write_dataset(back, out / "again" / "labels.csv", format="csv"))
    assert_same_faces(back, again)


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(boxes=False))
def test_long_round_trip(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, **kwargs)
    out = tmp_path_factory.mktemp("csv_long_out")
    back = read_dataset(csv_io.write(ds, out / "labels.csv", layout="long"))
    assert_same_faces(ds, back)


def test_round_trip_without_linking_keeps_image_files(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path / "img", ["sub/a.png", "b.png"])
    back = read_dataset(write_dataset(ds, tmp_path / "out" / "l.csv", format="csv", link_images=False))
    assert_same_faces(ds, back, ids=False)


@pytest.mark.skipif(not LFPW.is_dir(), reason="needs ../shared/data/lfpw")
def test_lfpw_converts_to_csv_and_back(tmp_path: Path) -> None:
    ds = read_dataset(LFPW)
    back = read_dataset(write_dataset(ds, tmp_path / "lfpw.csv", format="csv"))
    assert back.scheme.name == "300w_68"
    assert_same_faces(ds, back)


def test_wide_annotator_column_labels_one_image_once_per_annotator(tmp_path: Path) -> None:
    write_image(tmp_path / "sub" / "a.png")
    write_image(tmp_path / "b.png")
    coords = ",".join(["5,6"] * 19)
    rows = ["image,annotator," + wide_header(19)[6:], f"sub/a.png,alice,{coords}", f"sub/a.png,bob,{coords}",
            f"b.png,alice,{coords}", f"sub/a.png,alice,{coords}"]
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    ds = read_dataset(tmp_path / "l.csv")
    assert ds.annotators == ["alice", "bob", "alice", "alice"]
    assert ds.image_ids == ["alice/sub/a#0", "bob/sub/a", "alice/b", "alice/sub/a#1"]
    assert ds.image_paths[0] == ds.image_paths[1] == tmp_path / "sub" / "a.png"


def test_long_annotator_column_keeps_each_annotators_face_apart(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    rows = ["image,annotator,point,x,y"]
    rows += [f"a.png,{who},{i},{i + shift},{i}" for who, shift in (("alice", 0), ("bob", 0.5)) for i in range(19)]
    (tmp_path / "long.csv").write_text("\n".join(rows) + "\n")
    ds = read_dataset(tmp_path / "long.csv")
    assert ds.annotators == ["alice", "bob"] and ds.image_ids == ["alice/a", "bob/a"]
    np.testing.assert_array_equal(ds.landmarks[1, :, 0] - ds.landmarks[0, :, 0], 0.5)
    assert ds.visibility.min() == VISIBLE


def test_without_annotator_column_annotators_are_none(tmp_path: Path) -> None:
    write_image(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text(wide_header(19) + "\na.png," + ",".join(["1"] * 38) + "\n")
    assert read_dataset(tmp_path / "l.csv").annotators is None


@pytest.mark.parametrize("layout", ["wide", "long"])
def test_empty_annotator_cell_names_file_and_line(tmp_path: Path, layout: str) -> None:
    write_image(tmp_path / "a.png")
    if layout == "wide":
        rows = ["image,annotator," + wide_header(19)[6:]] + [f"a.png,{who}," + ",".join(["1"] * 38)
                                                           for who in ("alice", "", "bob")]
    else:
        rows = ["image,annotator,point,x,y"] + [f"a.png,{who},{i},1,1" for who in ("alice", "", "bob")
                                                 for i in range(19)]
    bad_line = 3 if layout == "wide" else 21
    (tmp_path / "l.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(InputError, match="empty annotator") as e:
        read_dataset(tmp_path / "l.csv")
    assert str(e.value).startswith(f"{tmp_path / 'l.csv'}:{bad_line} [annotator]")
    ds = read_dataset(tmp_path / "l.csv", skip_bad=True)
    assert ds.annotators == ["alice", "bob"] and len(ds.skipped) == 1
    assert ds.skipped[0][0] == f"{tmp_path / 'l.csv'}:{bad_line} [annotator]"


def test_writer_refuses_an_annotator_name_a_csv_cannot_hold(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, ["a.png"], annotators=[" alice"])
    with pytest.raises(InputError, match="annotator name"):
        write_dataset(ds, tmp_path / "out.csv", format="csv")


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(annotators=True))
def test_wide_round_trip_with_annotators(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict
                                         ) -> None:
    ds = make_dataset(images, **kwargs)
    back = read_dataset(write_dataset(ds, tmp_path_factory.mktemp("csv_ann") / "labels.csv", format="csv"))
    assert_same_faces(ds, back)
    assert back.annotators == ds.annotators
    np.testing.assert_array_equal(back.subjects(), ds.subjects())


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(boxes=False, annotators=True))
def test_long_round_trip_with_annotators(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict
                                         ) -> None:
    ds = make_dataset(images, **kwargs)
    back = read_dataset(csv_io.write(ds, tmp_path_factory.mktemp("csv_long_ann") / "labels.csv", layout="long"))
    assert_same_faces(ds, back)
    assert back.annotators == ds.annotators
    np.testing.assert_array_equal(back.subjects(), ds.subjects())
