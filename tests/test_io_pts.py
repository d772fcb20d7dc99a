"""300-W .pts folders: 1-based on disk, images beside, the real LFPW set, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGE_RELS, LFPW, assert_same_faces, face_sets, make_dataset, write_image
from hypothesis import given, settings

from auditor.errors import InputError
from auditor.io import detect_format, read_dataset, write_dataset
from auditor.io.pts import format_pts, parse_pts


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pts_images")
    for rel in IMAGE_RELS:
        write_image(root / rel)
    return root


def test_pts_is_one_based_on_disk(tmp_path: Path) -> None:
    text = "version: 1\nn_points: 2\n{\n1 1\n10.5 20\n}\n"
    np.testing.assert_array_equal(parse_pts(tmp_path / "x.pts", text), [[0, 0], [9.5, 19]])
    assert format_pts(np.array([[0.0, 0.0], [9.5, 19.0]])) == "version: 1\nn_points: 2\n{\n1.0 1.0\n10.5 20.0\n}\n"


def test_several_faces_of_one_image_and_subfolders(tmp_path: Path) -> None:
    for name in ("sub/a_01.pts", "sub/a_02.pts", "b.pts"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(format_pts(np.ones((19, 2))))
    write_image(tmp_path / "sub" / "a.png")
    write_image(tmp_path / "b.jpg")
    ds = read_dataset(tmp_path)
    assert ds.source_format == "pts"
    assert ds.image_ids == ["b", "sub/a_01", "sub/a_02"]
    assert ds.image_paths == [tmp_path / "b.jpg", tmp_path / "sub" / "a.png", tmp_path / "sub" / "a.png"]


@pytest.mark.skipif(not LFPW.is_dir(), reason="needs ../shared/data/lfpw")
def test_lfpw_reads_160_faces_of_68_points() -> None:
    assert detect_format(LFPW) == "pts"
    ds = read_dataset(LFPW)
    assert len(ds) == 160 and ds.num_images == 160
    assert ds.landmarks.shape == (160, 68, 2)
    assert ds.scheme.name == "300w_68"
    assert ds.skipped == []
    assert np.isfinite(ds.landmarks).all()
    assert ds.summary()["missing_images"] == 0


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(visibility=False, boxes=False))
def test_round_trip(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, pts_ids=True, **kwargs)
    ds = ds.subset(sorted(range(len(ds)), key=lambda i: Path(ds.image_ids[i] + ".pts")))  # the reader's file order
    out = tmp_path_factory.mktemp("pts_out")
    back = read_dataset(write_dataset(ds, out / "faces", format="pts"))
    assert_same_faces(ds, back)
    again = read_dataset(write_dataset(back, out / "again", format="pts"))
    assert_same_faces(back, again)


def pts_tree(root: Path, names: list[str]) -> None:
    """A .pts of 19 points at each of `names` (relative to `root`)."""
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(format_pts(np.ones((19, 2))))


def test_annotator_folders_share_images_at_the_top(tmp_path: Path) -> None:
    pts_tree(tmp_path, ["alice/img_1.pts", "bob/img_1.pts", "bob/sub/c_01.pts", "bob/sub/c_02.pts", "carol/d.pts"])
    write_image(tmp_path / "img_1.png")
    write_image(tmp_path / "sub" / "c.png")
    write_image(tmp_path / "carol" / "d.jpg")  # beside the .pts: found first
    write_image(tmp_path / "d.jpg")
    ds = read_dataset(tmp_path, annotators_from="folder")
    assert ds.annotators == ["alice", "bob", "bob", "bob", "carol"]
    assert ds.image_ids == ["alice/img_1", "bob/img_1", "bob/sub/c_01", "bob/sub/c_02", "carol/d"]
    assert ds.image_paths == [tmp_path / "img_1.png", tmp_path / "img_1.png", tmp_path / "sub" / "c.png",
                              tmp_path / "sub" / "c.png", tmp_path / "carol" / "d.jpg"]


def test_annotator_folders_are_read_only_when_asked(tmp_path: Path) -> None:
    pts_tree(tmp_path, ["alice/a.pts", "bob/a.pts"])
    write_image(tmp_path / "a.png")
    with pytest.raises(InputError, match="missing image.*--annotators-from folder") as e:
        read_dataset(tmp_path)
    assert str(e.value).startswith(str(tmp_path / "alice" / "a.pts"))
    for who in ("alice", "bob"):
        write_image(tmp_path / who / "a.png")
    ds = read_dataset(tmp_path)
    assert ds.annotators is None and ds.image_ids == ["alice/a", "bob/a"]


def test_annotator_folders_with_an_images_root(tmp_path: Path) -> None:
    pts_tree(tmp_path / "labels", ["alice/sub/a.pts", "bob/sub/a.pts"])
    write_image(tmp_path / "images" / "sub" / "a.png")
    ds = read_dataset(tmp_path / "labels", annotators_from="folder", images_root=tmp_path / "images")
    assert ds.image_paths == [tmp_path / "images" / "sub" / "a.png"] * 2 and ds.annotators == ["alice", "bob"]


def test_annotator_folder_errors(tmp_path: Path) -> None:
    pts_tree(tmp_path, ["alice/a.pts", "b.pts"])
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    with pytest.raises(InputError, match="names no annotator") as e:
        read_dataset(tmp_path, annotators_from="folder")
    assert str(e.value).startswith(f"{tmp_path / 'b.pts'}:")
    ds = read_dataset(tmp_path, annotators_from="folder", skip_bad=True)
    assert ds.annotators == ["alice"] and ds.skipped[0][0] == str(tmp_path / "b.pts")
    (tmp_path / "b.pts").unlink()
    pts_tree(tmp_path, ["bob/z.pts"])
    with pytest.raises(InputError, match=r"missing image: no z\.png.* or in ") as e:
        read_dataset(tmp_path, annotators_from="folder")
    assert str(e.value).startswith(str(tmp_path / "bob" / "z.pts"))
    with pytest.raises(InputError, match="unknown annotator source"):
        read_dataset(tmp_path, annotators_from="file")
    with pytest.raises(InputError, match="pts folder tree"):
        read_dataset(tmp_path / "alice" / "a.pts", annotators_from="folder")
    (tmp_path / "l.csv").write_text("image,x0,y0\na.png,1,1\n")
    with pytest.raises(InputError, match="pts folder tree") as e:
        read_dataset(tmp_path / "l.csv", annotators_from="folder")
    assert str(e.value).startswith(str(tmp_path / "l.csv"))


def test_writer_refuses_an_annotator_that_cannot_name_a_folder(tmp_path: Path) -> None:
    ds = make_dataset(tmp_path, ["a.png"], annotators=["a/b"])
    with pytest.raises(InputError, match="cannot name a folder"):
        write_dataset(ds, tmp_path / "out", format="pts")


@settings(max_examples=25, deadline=None)
@given(kwargs=face_sets(visibility=False, boxes=False, annotators=True))
def test_round_trip_with_annotators(images: Path, tmp_path_factory: pytest.TempPathFactory, kwargs: dict) -> None:
    ds = make_dataset(images, pts_ids=True, **kwargs)
    ds = ds.subset(sorted(range(len(ds)), key=lambda i: Path(ds.image_ids[i] + ".pts")))  # the reader's file order
    out = tmp_path_factory.mktemp("pts_ann")
    back = read_dataset(write_dataset(ds, out / "faces", format="pts"), annotators_from="folder")
    assert_same_faces(ds, back)
    assert back.annotators == ds.annotators
    np.testing.assert_array_equal(back.subjects(), ds.subjects())
    again = read_dataset(write_dataset(back, out / "again", format="pts"), annotators_from="folder")
    assert_same_faces(back, again)
    assert again.annotators == ds.annotators


def test_round_trip_keeps_images_beside_the_pts(tmp_path: Path) -> None:
    pts_tree(tmp_path / "data", ["alice/a.pts", "bob/a.pts"])
    write_image(tmp_path / "data" / "alice" / "a.png")
    write_image(tmp_path / "data" / "a.png")
    ds = read_dataset(tmp_path / "data", annotators_from="folder")
    back = read_dataset(write_dataset(ds, tmp_path / "out", format="pts"), annotators_from="folder")
    assert_same_faces(ds, back)
    assert (tmp_path / "out" / "alice" / "a.png").is_symlink() and (tmp_path / "out" / "a.png").is_symlink()
