"""Bad input in every format: one-line errors naming the file, the line or field, and what was expected;
`skip_bad` skips and records each bad face."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from helpers import write_image

from auditor.errors import InputError
from auditor.io import read_dataset
from auditor.io.pts import format_pts


def wflw(*lines: str) -> str:
    return "".join(line + "\n" for line in lines)


def wflw_line(rel: str = "a.png", *, k: int = 98, bad: dict[int, str] | None = None) -> str:
    """A valid WFLW line for image `rel` with `k` points; `bad` replaces the j-th number."""
    numbers = [f"{10 + j * 0.5}" for j in range(2 * k)] + ["1", "2", "30", "40"] + ["0"] * 6
    for j, text in (bad or {}).items():
        numbers[j] = text
    return " ".join(numbers + [rel])


def wide(*rows: str, header: str | None = None) -> str:
    header = header or "image," + ",".join(f"x{i},y{i}" for i in range(19))
    return "\n".join([header, *rows]) + "\n"


def wide_row(rel: str = "a.png", *, bad: dict[int, str] | None = None) -> str:
    cells = [str(float(j)) for j in range(38)]
    for j, text in (bad or {}).items():
        cells[j] = text
    return ",".join([rel, *cells])


def long_rows(rel: str = "a.png", k: int = 19) -> list[str]:
    return [f"{rel},{i},{i}.0,{i}.5" for i in range(k)]


def coco(*, images: list | None = None, annotations: list | None = None, categories: list | None = None,
         drop: str | None = None) -> str:
    data = {"images": images if images is not None else [{"id": 1, "file_name": "a.png"},
                                                          {"id": 2, "file_name": "b.png"}],
            "annotations": annotations if annotations is not None else [coco_ann(1, 1), coco_ann(2, 2)],
            "categories": categories if categories is not None else [{"id": 1, "name": "face"}]}
    data.pop(drop, None)
    return json.dumps(data, indent=1)


def coco_ann(aid: int, image_id: int, *, k: int = 19, bad: dict[int, object] | None = None, **extra: object) -> dict:
    keypoints: list[object] = [v for i in range(k) for v in (float(i), i + 0.5, 2)]
    for j, value in (bad or {}).items():
        keypoints[j] = value
    return {"id": aid, "image_id": image_id, "category_id": 1, "keypoints": keypoints, **extra}


def pts(n_points: int = 19, body: str | None = None) -> str:
    return format_pts(np.ones((n_points, 2))) if body is None else body


# (case id, annotation file, its text, where the error must point after the file's path, part of the message)
CASES = [
    ("wflw-wrong-count", "ann.txt", wflw(wflw_line(), wflw_line("b.png", k=97), wflw_line()), ":2:",
     "expected 207 fields"),
    ("wflw-non-numeric", "ann.txt", wflw(wflw_line(bad={7: "abc"})), ":1 [y3]:", "expected a number, got 'abc'"),
    ("wflw-nan", "ann.txt", wflw(wflw_line(), wflw_line("b.png", bad={0: "nan"})), ":2 [x0]:", "finite"),
    ("wflw-inf-box", "ann.txt", wflw(wflw_line(bad={198: "inf"})), ":1 [box x_max]:", "finite"),
    ("wflw-attribute", "ann.txt", wflw(wflw_line(bad={205: "0.5"})), ":1 [attribute blur]:", "integer"),
    ("wflw-box-order", "ann.txt", wflw(wflw_line(bad={196: "99"})), ":1 [box]:", "x_min <= x_max"),
    ("wflw-missing-image", "ann.txt", wflw(wflw_line(), wflw_line("nope/c.jpg")), ":2 [image]:",
     "missing image 'nope/c.jpg'"),
    ("wflw-duplicate-id", "ann.txt", wflw(wflw_line("b.png"), wflw_line("b.jpg")), ":2:",
     "duplicate image id 'b'"),
    ("wflw-unknown-scheme", "ann.txt", wflw(wflw_line(k=50)), ":1:", "no built-in scheme has 50 points"),
    ("wflw-odd-fields", "ann.txt", wflw(wflw_line() + " 7"), ":1:", "expected 2K coordinates"),
    ("wflw-empty", "ann.txt", "\n\n", ":", "empty file"),
    ("csv-missing-image-column", "l.csv", wide("a.png,1,2", header="file,x0,y0"), ":1:", "missing column 'image'"),
    ("csv-missing-y-column", "l.csv", wide("a.png,1,2,3", header="image,x0,y0,x1"), ":1:", "missing column 'y1'"),
    ("csv-no-point-columns", "l.csv", wide("a.png,1", header="image,label"), ":1:", "missing column 'x0'"),
    ("csv-long-missing-y", "l.csv", wide("a.png,0,1", header="image,point,x"), ":1:", "missing column 'y'"),
    ("csv-cell-count", "l.csv", wide(wide_row(), wide_row("b.png", bad={4: "1,5"})), ":3:",
     "expected 39 cells"),
    ("csv-bad-number", "l.csv", wide(wide_row(), wide_row("b.png", bad={4: "x"})), ":3 [x2]:",
     "expected a number, got 'x'"),
    ("csv-nan", "l.csv", wide(wide_row(bad={1: "NaN"})), ":2 [y0]:", "finite"),
    ("csv-x-without-y", "l.csv", wide(wide_row(bad={9: ""})), ":2 [y4]:", "point 4 has x but no y"),
    ("csv-bad-visibility", "l.csv", wide(wide_row() + ",2" * 18 + ",5",
                                         header="image," + ",".join(f"x{i},y{i}" for i in range(19)) + ","
                                         + ",".join(f"v{i}" for i in range(19))), ":2 [v18]:", "visibility must be"),
    ("csv-missing-image", "l.csv", wide(wide_row("missing.png")), ":2 [image]:", "missing image 'missing.png'"),
    ("csv-header-only", "l.csv", wide(), ":1:", "no data rows"),
    ("csv-huge-point-index", "l.csv", wide("a.png,1,2,3,4", header="image,x0,y0,x99999999,y1"), ":1:",
     "at most 10000 points per face"),
    ("csv-long-huge-point-index", "l.csv", "image,point,x,y\na.png," + "9" * 5000 + ",1,2\n", ":1:",
     "no built-in scheme has 10001 points"),
    ("csv-empty", "l.csv", "", ":", "empty file"),
    ("csv-long-unknown-name", "l.csv", "image,point,x,y\na.png,nose_tip,1,2\na.png,third_eye,1,2\n", ":3 [point]:",
     "'third_eye'"),
    ("csv-long-duplicate-point", "l.csv", "image,point,x,y\n" + "\n".join(long_rows() + ["a.png,3,1,1"]) + "\n",
     ":21 [point]:", "duplicate point 3 of image 'a.png' (first on line 5)"),
    ("csv-long-index-out-of-range", "l.csv", "image,point,x,y\na.png,right_eye_upper_outer,1,2\na.png,99,1,1\n",
     ":3 [point]:", "point must be an index in [0, 68) or a point name of scheme 300w_68, got '99'"),
    ("coco-bad-json", "a.json", '{"images": [\n {"id": 1,\n "file_name": "a.png" ]}', ":3:", "invalid JSON"),
    ("coco-not-an-object", "a.json", "[1, 2]", ":", "expected a JSON object"),
    ("coco-missing-annotations", "a.json", coco(drop="annotations"), " [annotations]:", "missing field"),
    ("coco-empty-annotations", "a.json", coco(annotations=[]), " [annotations]:", "no annotations"),
    ("coco-keypoint-count", "a.json", coco(annotations=[coco_ann(1, 1), coco_ann(2, 2, k=18)]),
     " [annotations[1].keypoints]:", "expected 57 numbers"),
    ("coco-non-numeric", "a.json", coco(annotations=[coco_ann(1, 1, bad={4: "3"})]),
     " [annotations[0].keypoints[4]]:", 'expected a finite number (y of point 1), got "3"'),
    ("coco-nan", "a.json", coco(annotations=[coco_ann(1, 1, bad={0: float("nan")})]),
     " [annotations[0].keypoints[0]]:", "finite"),
    ("coco-bad-v", "a.json", coco(annotations=[coco_ann(1, 1, bad={5: 3})]), " [annotations[0].keypoints[5]]:",
     "v of point 1 must be 0 (missing), 1 (occluded) or 2 (visible)"),
    ("coco-unknown-image", "a.json", coco(annotations=[coco_ann(1, 1), coco_ann(2, 9)]),
     " [annotations[1].image_id]:", "unknown image id 9"),
    ("coco-duplicate-image-id", "a.json", coco(images=[{"id": 1, "file_name": "a.png"},
                                                       {"id": 1, "file_name": "b.png"}]),
     " [images[1].id]:", "duplicate image id 1"),
    ("coco-duplicate-file-name", "a.json", coco(images=[{"id": 1, "file_name": "a.png"},
                                                        {"id": 2, "file_name": "a.png"}]),
     " [images[1].file_name]:", "duplicate file_name 'a.png'"),
    ("coco-duplicate-annotation-id", "a.json", coco(annotations=[coco_ann(1, 1), coco_ann(1, 2)]),
     " [annotations[1].id]:", "duplicate annotation id 1"),
    ("coco-missing-image", "a.json", coco(images=[{"id": 1, "file_name": "gone.png"}],
                                          annotations=[coco_ann(1, 1)]),
     " [images[0].file_name]:", "missing image 'gone.png'"),
    ("coco-bad-bbox", "a.json", coco(annotations=[coco_ann(1, 1, bbox=[0, 0, -1, 4])]), " [annotations[0].bbox]:",
     "width, height >= 0"),
    ("coco-bad-skeleton", "a.json", coco(categories=[{"id": 1, "keypoints": [f"p{i}" for i in range(19)],
                                                      "skeleton": [[1, 2], [19, 20]]}]),
     " [categories[0].skeleton[1]]:", "1-based keypoint indices in [1, 19]"),
    ("coco-unknown-scheme", "a.json", coco(annotations=[coco_ann(1, 1, k=7)]), " [annotations[0].keypoints]:",
     "no built-in scheme has 7 points"),
    ("coco-unknown-category", "a.json", coco(annotations=[coco_ann(1, 1, category_id=5)]),
     " [annotations[0].category_id]:", "unknown category id 5"),
    ("pts-unclosed-brace", "a.pts", "version: 1\nn_points: 1\n{\n1 2\n", ":4:", "unbalanced braces"),
    ("pts-brace-inside", "a.pts", "version: 1\nn_points: 2\n{\n1 2\n{ 3 4\n}\n", ":5:", "unbalanced braces"),
    ("pts-count", "a.pts", "version: 1\nn_points: 3\n{\n1 2\n3 4\n}\n", ":3:", "n_points says 3"),
    ("pts-non-numeric", "a.pts", "version: 1\nn_points: 1\n{\n1 y\n}\n", ":4 [y]:", "expected a number"),
    ("pts-nan", "a.pts", "version: 1\nn_points: 1\n{\nnan 2\n}\n", ":4 [x]:", "finite"),
    ("pts-no-header", "a.pts", "{\n1 2\n}\n", ":1:", "before the 'n_points:' header"),
    ("pts-missing-image", "nope.pts", pts(), ":", "missing image"),
    ("pts-unknown-scheme", "a.pts", pts(7), ":", "no built-in scheme has 7 points"),
]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for rel in ("a.png", "b.png", "b.jpg"):
        write_image(tmp_path / rel)
    return tmp_path


@pytest.mark.parametrize(("name", "text", "where", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_error_names_file_and_place(folder: Path, name: str, text: str, where: str, message: str) -> None:
    (folder / name).write_text(text)
    with pytest.raises(InputError) as excinfo:
        read_dataset(folder / name)
    error = str(excinfo.value)
    assert error.startswith(str(folder / name) + where), error
    assert message in error, error
    assert "\n" not in error


def test_pts_point_count_differs_from_the_first_file(folder: Path) -> None:
    (folder / "a.pts").write_text(pts(19))
    (folder / "b.pts").write_text(pts(29))
    with pytest.raises(InputError) as excinfo:
        read_dataset(folder)
    assert str(excinfo.value).startswith(f"{folder / 'b.pts'}:2: expected 19 points (scheme aflw_19), got 29")


def test_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="empty dataset folder") as excinfo:
        read_dataset(tmp_path)
    assert str(excinfo.value).startswith(str(tmp_path))


def test_unknown_scheme_name(folder: Path) -> None:
    (folder / "a.pts").write_text(pts())
    with pytest.raises(InputError, match="unknown scheme 'wflw_99': expected one of 300w_68"):
        read_dataset(folder, scheme="wflw_99")


@pytest.mark.parametrize(("name", "text", "where"), [
    ("ann.txt", wflw(wflw_line()), ":1:"),
    ("l.csv", wide(wide_row()), ":1:"),
    ("a.json", coco(annotations=[coco_ann(1, 1)]), " [annotations[0].keypoints]:"),
    ("a.pts", pts(), ":2:"),
])
def test_forced_scheme_with_another_point_count(folder: Path, name: str, text: str, where: str) -> None:
    (folder / name).write_text(text)
    with pytest.raises(InputError) as excinfo:
        read_dataset(folder / name, scheme="cofw_29")
    assert str(excinfo.value).startswith(str(folder / name) + where), str(excinfo.value)


def test_skip_bad_wflw_records_each_bad_line(folder: Path) -> None:
    path = folder / "ann.txt"
    path.write_text(wflw(wflw_line(), wflw_line("b.png", bad={3: "?"}), wflw_line("gone.png"), wflw_line("b.png")))
    ds = read_dataset(path, skip_bad=True)
    assert ds.image_ids == ["a", "b"]
    assert [place for place, _ in ds.skipped] == [f"{path}:2 [y1]", f"{path}:3 [image]"]
    assert "expected a number" in ds.skipped[0][1] and "missing image" in ds.skipped[1][1]


def test_skip_bad_duplicate_id_keeps_the_first(folder: Path) -> None:
    path = folder / "ann.txt"
    path.write_text(wflw(wflw_line("b.png"), wflw_line("b.jpg")))
    ds = read_dataset(path, skip_bad=True)
    assert ds.image_paths == [folder / "b.png"]
    assert ds.skipped == [(f"{path}:2", f"duplicate image id 'b' (first at {path}:1)")]


def test_skip_bad_csv_wide_and_long(folder: Path) -> None:
    path = folder / "w.csv"
    path.write_text(wide(wide_row(), wide_row("b.png", bad={0: "x"}), wide_row("b.png") + ",9", wide_row("b.png")))
    ds = read_dataset(path, skip_bad=True)
    assert ds.image_ids == ["a", "b"]
    assert [place for place, _ in ds.skipped] == [f"{path}:4", f"{path}:3 [x0]"]
    path = folder / "l.csv"
    path.write_text("image,point,x,y\n" + "\n".join(long_rows("a.png") + long_rows("b.png")[:3] + ["b.png,4,q,1"]
                                                  + long_rows("b.png")[5:]) + "\n")
    ds = read_dataset(path, skip_bad=True)
    assert ds.image_ids == ["a"]
    assert ds.skipped == [(f"{path}:24 [x]", "face skipped: expected a number, got 'q'")]


def test_skip_bad_coco_annotation_and_missing_image(folder: Path) -> None:
    path = folder / "a.json"
    path.write_text(coco(images=[{"id": 1, "file_name": "a.png"}, {"id": 2, "file_name": "b.png"},
                                 {"id": 3, "file_name": "gone.png"}],
                         annotations=[coco_ann(1, 1, bad={2: 7}), coco_ann(2, 2), coco_ann(3, 3), coco_ann(4, 3)]))
    ds = read_dataset(path, skip_bad=True)
    assert ds.image_ids == ["b"]
    assert [place for place, _ in ds.skipped] == [f"{path} [annotations[0].keypoints[2]]",
                                                  f"{path} [annotations[2]]", f"{path} [annotations[3]]"]
    assert ds.skipped[1][1].startswith("[images[2].file_name] missing image 'gone.png'")


def test_skip_bad_pts_and_nothing_left(folder: Path) -> None:
    (folder / "a.pts").write_text(pts())
    (folder / "b.pts").write_text("version: 1\nn_points: 19\n{\n")
    ds = read_dataset(folder, skip_bad=True)
    assert ds.image_ids == ["a"] and ds.skipped[0][0] == str(folder / "b.pts")
    (folder / "a.pts").unlink()
    with pytest.raises(InputError, match=r"no valid \.pts file \(1 skipped\)"):
        read_dataset(folder, skip_bad=True)


@pytest.mark.parametrize(("name", "text"), [
    ("ann.txt", wflw(wflw_line("gone.png"))),
    ("l.csv", wide(wide_row("gone.png"))),
    ("a.json", coco(annotations=[coco_ann(1, 1, bad={0: "x"})])),
])
def test_skip_bad_with_nothing_valid_is_an_error(folder: Path, name: str, text: str) -> None:
    (folder / name).write_text(text)
    with pytest.raises(InputError, match=r"\(1 skipped\)") as excinfo:
        read_dataset(folder / name, skip_bad=True)
    assert str(excinfo.value).startswith(str(folder / name))


@pytest.mark.parametrize("kind", ["loop", "dangling", "fifo", "folder"])
def test_a_pts_that_is_not_a_regular_file_is_one_line_not_a_hang(folder: Path, kind: str) -> None:
    (folder / "a.pts").write_text(pts())
    bad = folder / "b.pts"
    if kind == "loop":
        bad.symlink_to(bad)
    elif kind == "dangling":
        bad.symlink_to(folder / "gone.pts")
    elif kind == "fifo":
        os.mkfifo(bad)
    else:
        bad.mkdir()
    expected = {"loop": "symbolic link loop", "dangling": "broken symbolic link", "fifo": "not a regular file",
                "folder": "got a folder"}[kind]
    for path in (folder, bad) if kind != "folder" else (folder,):
        with pytest.raises(InputError, match=expected) as excinfo:
            read_dataset(path, format="pts")
        assert str(excinfo.value).startswith(str(bad))
    ds = read_dataset(folder, skip_bad=True)
    assert ds.image_ids == ["a"] and ds.skipped == [(str(bad), ds.skipped[0][1])] and expected in ds.skipped[0][1]


@pytest.mark.parametrize("name", ["l.csv", "a.json", "ann.txt"])
def test_an_annotation_file_that_is_a_fifo(folder: Path, name: str) -> None:
    os.mkfifo(folder / name)
    with pytest.raises(InputError, match="not a regular file"):
        read_dataset(folder / name)


def test_an_unreadable_pts_file(folder: Path, monkeypatch) -> None:
    (folder / "a.pts").write_text(pts())
    real = Path.read_text

    def denied(self, *args, **kwargs):
        if self.name == "a.pts":
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(InputError, match="cannot read: permission denied") as excinfo:
        read_dataset(folder)
    assert str(excinfo.value).startswith(str(folder / "a.pts"))


def test_an_unreadable_sub_folder_is_named(folder: Path, monkeypatch) -> None:
    (folder / "a.pts").write_text(pts())
    (folder / "locked").mkdir()
    real = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match="cannot read this folder") as excinfo:
        read_dataset(folder)
    assert str(excinfo.value).startswith(str(folder / "locked"))


def test_two_pts_files_differing_in_case_name_both(folder: Path) -> None:
    (folder / "a.pts").write_text(pts())
    (folder / "a.PTS").write_text(pts())
    with pytest.raises(InputError, match="duplicate image id 'a': a.PTS and a.pts") as excinfo:
        read_dataset(folder)
    assert str(excinfo.value).startswith(str(folder / "a.pts"))
    assert read_dataset(folder, skip_bad=True).skipped[0][0] == str(folder / "a.pts")


@pytest.mark.parametrize(("category_id", "message"), [([1], "expected an integer or string category id, got [1]"),
                                                      ({"id": 1}, "category id, got {\"id\": 1}")])
def test_coco_category_id_of_the_wrong_type(folder: Path, category_id: object, message: str) -> None:
    (folder / "a.json").write_text(coco(annotations=[coco_ann(1, 1, category_id=category_id)]))
    with pytest.raises(InputError) as excinfo:
        read_dataset(folder / "a.json")
    assert str(excinfo.value).startswith(f"{folder / 'a.json'} [annotations[0].category_id]:") and message in str(
        excinfo.value)


def test_coco_huge_integers_and_deep_nesting(folder: Path) -> None:
    (folder / "a.json").write_text(coco(annotations=[coco_ann(1, 1, bad={0: int("9" * 400)})]))
    with pytest.raises(InputError, match=r"\[annotations\[0\]\.keypoints\[0\]\]: expected a finite number within"):
        read_dataset(folder / "a.json")
    (folder / "b.json").write_text(coco().replace('"images"', '"deep": ' + "[" * 100_000 + "]" * 100_000
                                                  + ', "images"', 1))
    with pytest.raises(InputError, match="nested too deeply"):
        read_dataset(folder / "b.json")
    (folder / "c.json").write_text(coco().replace('"id": 1', '"id": ' + "7" * 5000, 1))
    with pytest.raises(InputError, match="invalid JSON"):
        read_dataset(folder / "c.json")


@pytest.mark.parametrize(("name", "text", "where"), [
    ("a.pts", "version: 1\nn_points: 1\n{\n1e308 2\n}\n", ":4 [x]:"),
    ("l.csv", wide(wide_row(bad={3: "-1e308"})), ":2 [y1]:"),
    ("ann.txt", wflw(wflw_line(bad={5: "1e308"})), ":1 [y2]:"),
    ("a.json", coco(annotations=[coco_ann(1, 1, bad={0: 1e308})]), " [annotations[0].keypoints[0]]:"),
])
def test_coordinates_beyond_any_image_are_refused(folder: Path, name: str, text: str, where: str) -> None:
    (folder / name).write_text(text)
    with pytest.raises(InputError, match="within") as excinfo:
        read_dataset(folder / name)
    assert str(excinfo.value).startswith(str(folder / name) + where), str(excinfo.value)


def test_unclosed_csv_quote_is_reported_on_its_line(folder: Path) -> None:
    rows = [wide_row(), wide_row("b.png"), wide_row('"a.png'), *[wide_row("b.png")] * 8, wide_row("a.png")]
    path = folder / "w.csv"
    path.write_text(wide(*rows))
    with pytest.raises(InputError, match="never closes") as excinfo:
        read_dataset(path)
    assert str(excinfo.value).startswith(f"{path}:4:")
    ds = read_dataset(path, skip_bad=True)
    assert [place for place, _ in ds.skipped][:1] == [f"{path}:4"]
    assert len(ds) == 11 and len(ds.skipped) == 1  # the lines after the bad one are read, not swallowed by it
