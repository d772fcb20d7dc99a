"""300-W .pts folders: 1-based on disk, images beside, the real LFPW set, round trips."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGE_RELS, LFPW, assert_same_faces, face_sets, make_dataset, write_image
from hypothesis import given, settings

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
