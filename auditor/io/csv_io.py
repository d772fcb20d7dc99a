"""CSV landmarks: wide (`image,x0,y0,x1,y1,...`, one row per face) or long (`image,point,x,y`, one row per point).

An optional `annotator` column names who labelled each face; the same image may then appear once per annotator.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from pathlib import Path

import numpy as np

from auditor.atomic import atomic_open
from auditor.dataset import MISSING, VISIBLE, Dataset
from auditor.errors import InputError
from auditor.io import is_regular_file, parse_float, prepare_file_write, read_annotation_text, unique_face_ids, where
from auditor.schemes import BUILTIN_SCHEMES, LandmarkScheme, infer_scheme

BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")
LONG_COLUMNS = ("image", "point", "x", "y")
_WIDE_COLUMN = re.compile(r"([xyv])(0|[1-9]\d*)")
_LAYOUTS = "'image,x0,y0,x1,y1,...' (wide) or 'image,point,x,y' (long)"


MAX_POINTS = 10_000  # per face: far beyond any landmark scheme


def _index(text: str) -> int:
    """A point index from decimal digits; MAX_POINTS for one too long to be an index."""
    return int(text) if len(text) <= 6 else MAX_POINTS


class _Face:
    """One face being read: its first line, image path as written, annotator, points, visibility and box."""

    def __init__(self, line: int, rel: str, image: Path, k: int, annotator: str | None = None) -> None:
        self.line, self.rel, self.image, self.annotator = line, rel, image, annotator
        self.xy = np.full((k, 2), np.nan)
        self.visibility = np.full(k, MISSING, dtype=np.int8)
        self.box = np.full(4, np.nan)
        self.bad = False


def _split(line: str) -> list[str]:
    """The cells of one physical line. A landmark CSV never holds a line break inside a cell, so a quote left open
    is an error on its own line (a multi-line reader would swallow the lines after it into one cell)."""
    try:
        return next(csv.reader([line], strict=True), [])
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise csv.Error("malformed CSV: a '\"' opens a quoted cell that this line never closes") from None
        return next(csv.reader([line]), [])  # other quirks (text after a closing quote) read as before


def _rows(path: Path, skip: list[tuple[str, str]] | None) -> tuple[int, list[str], list[tuple[int, list[str]]]]:
    """The header's line, its lower-cased column names, and each non-blank data row with its line number; a row
    with the wrong number of cells goes to `skip` (None: raise)."""
    text = read_annotation_text(path, "a .csv file")
    rows = []
    for line, raw in enumerate(io.StringIO(text, newline=""), start=1):
        try:
            row = _split(raw.rstrip("\r\n"))
        except csv.Error as e:
            if skip is None or not rows:
                raise InputError(str(e), path=path, line=line) from None
            skip.append((where(path, line), str(e)))
            continue
        if any(cell.strip() for cell in row):
            rows.append((line, [cell.strip() for cell in row]))
    if not rows:
        raise InputError(f"empty file: expected a header {_LAYOUTS}", path=path)
    header_line, header = rows[0]
    header = [h.lower() for h in header]
    for j, name in enumerate(header):
        if name in header[:j]:
            raise InputError(f"duplicate column '{name}'", path=path, line=header_line)
    if "image" not in header:
        raise InputError(f"missing column 'image': expected a header {_LAYOUTS}", path=path, line=header_line)
    if len(rows) == 1:
        raise InputError("no data rows after the header", path=path, line=header_line)
    good = []
    for line, row in rows[1:]:
        if len(row) == len(header):
            good.append((line, row))
            continue
        message = f"expected {len(header)} cells as in the header, got {len(row)}"
        if skip is None:
            raise InputError(message, path=path, line=line)
        skip.append((where(path, line), message))
    return header_line, header, good


def _image(rel: str, root: Path, path: Path, line: int) -> Path:
    if not rel:
        raise InputError("empty image path", path=path, line=line, field="image")
    image = root / rel
    if not is_regular_file(image):
        raise InputError(f"missing image {rel!r} (looked in {root})", path=path, line=line, field="image")
    return image


def _annotator(row: list[str], col: dict[str, int], path: Path, line: int) -> str | None:
    """The row's `annotator` cell (None without that column); an InputError when it is empty."""
    if "annotator" not in col:
        return None
    annotator = row[col["annotator"]]
    if not annotator:
        raise InputError("empty annotator: every row must name who labelled the face when the file has an "
                         "'annotator' column", path=path, line=line, field="annotator")
    return annotator


def _point(xs: str, ys: str, vs: str, *, path: Path, line: int, k: int, names: tuple[str, str, str]
           ) -> tuple[float, float, int]:
    """x, y and visibility of point `k` from its cells; empty x and y (or v = 0) make a missing point (NaN)."""
    if vs:
        if vs not in ("0", "1", "2"):
            raise InputError(f"visibility must be 0 (missing), 1 (occluded) or 2 (visible), got {vs!r}", path=path,
                             line=line, field=names[2])
        v = int(vs)
    else:
        v = VISIBLE if xs or ys else MISSING
    if v == MISSING:
        return np.nan, np.nan, MISSING
    if not xs or not ys:
        raise InputError(f"point {k} has {'x' if xs else 'y' if ys else 'visibility ' + vs} but no "
                         f"{'y' if xs else 'x'}", path=path, line=line, field=names[1] if xs else names[0])
    return (parse_float(xs, path=path, line=line, field=names[0]),
            parse_float(ys, path=path, line=line, field=names[1]), v)


def _box(cells: list[str], *, path: Path, line: int) -> np.ndarray:
    if not any(cells):
        return np.full(4, np.nan)
    box = np.array([parse_float(c, path=path, line=line, field=n) for c, n in zip(cells, BOX_COLUMNS, strict=True)])
    if box[0] > box[2] or box[1] > box[3]:
        raise InputError(f"box must have box_x0 <= box_x1 and box_y0 <= box_y1, got {cells}", path=path, line=line,
                         field="box")
    return box


def _resolve_scheme(k: int, scheme: LandmarkScheme | None, path: Path, line: int, what: str) -> LandmarkScheme:
    if scheme is None:
        try:
            return infer_scheme(k)
        except InputError as e:
            raise InputError(e.message, path=path, line=line) from None
    if scheme.num_points != k:
        raise InputError(f"{what} {k} points but scheme {scheme.name} has {scheme.num_points}", path=path, line=line)
    return scheme


def _read_wide(path: Path, header_line: int, header: list[str], rows: list[tuple[int, list[str]]], root: Path,
               scheme: LandmarkScheme | None, skip: list[tuple[str, str]] | None
               ) -> tuple[LandmarkScheme, list[_Face], bool]:
    """The faces of a wide CSV (one row each) and whether it has box columns; bad rows go to `skip` (None: raise)."""
    col = {name: j for j, name in enumerate(header)}
    indices = {kind: sorted(_index(m[2]) for name in header if (m := _WIDE_COLUMN.fullmatch(name)) and m[1] == kind)
               for kind in "xyv"}
    k = max(indices["x"] + indices["y"]) + 1
    if k > MAX_POINTS:
        raise InputError(f"a point index of {k - 1} in the header: at most {MAX_POINTS} points per face", path=path,
                         line=header_line)
    for kind in "xy" + ("v" if indices["v"] else ""):
        missing = sorted(set(range(k)) - set(indices[kind]))
        if missing:
            raise InputError(f"missing column '{kind}{missing[0]}': expected x0,y0 ... x{k - 1},y{k - 1}"
                             f"{' and v0 ... v' + str(k - 1) if kind == 'v' else ''}", path=path, line=header_line)
    if indices["v"] and indices["v"][-1] >= k:
        raise InputError(f"column 'v{indices['v'][-1]}' has no x{indices['v'][-1]},y{indices['v'][-1]}", path=path,
                         line=header_line)
    has_box = any(c in col for c in BOX_COLUMNS)
    if has_box and not all(c in col for c in BOX_COLUMNS):
        raise InputError(f"missing column '{next(c for c in BOX_COLUMNS if c not in col)}': the box needs all of "
                         f"{','.join(BOX_COLUMNS)}", path=path, line=header_line)
    scheme = _resolve_scheme(k, scheme, path, header_line, f"the header has x0 ... x{k - 1}:")
    faces = []
    for line, row in rows:
        rel = row[col["image"]]
        try:
            face = _Face(line, rel, _image(rel, root, path, line), k, _annotator(row, col, path, line))
            for i in range(k):
                names = (f"x{i}", f"y{i}", f"v{i}")
                vs = row[col[names[2]]] if indices["v"] else ""
                x, y, v = _point(row[col[names[0]]], row[col[names[1]]], vs, path=path, line=line, k=i, names=names)
                face.xy[i], face.visibility[i] = (x, y), v
            if has_box:
                face.box = _box([row[col[c]] for c in BOX_COLUMNS], path=path, line=line)
        except InputError as e:
            if skip is None:
                raise
            skip.append((where(path, line, e.field), e.message))
            continue
        faces.append(face)
    return scheme, faces, has_box


def _long_scheme(header_line: int, rows: list[tuple[int, list[str]]], j_point: int, path: Path
                 ) -> LandmarkScheme:
    """The built-in scheme a long CSV's `point` cells fit: by their names, else by the largest index."""
    names: dict[str, int] = {}
    for line, row in rows:
        if row[j_point] and not row[j_point].isdecimal():
            names.setdefault(row[j_point], line)
    if names:
        fits = [s for s in BUILTIN_SCHEMES.values() if set(names) <= set(s.point_names)]
        if len(fits) == 1:
            return fits[0]
        if not fits:
            known = set().union(*(s.point_names for s in BUILTIN_SCHEMES.values()))
            name, line = next(((n, ln) for n, ln in names.items() if n not in known), next(iter(names.items())))
            raise InputError(f"no built-in scheme has all the point names used (e.g. {name!r}); name one with "
                             "--scheme or give a scheme .json", path=path, line=line, field="point")
        raise InputError(f"the point names fit several schemes ({', '.join(s.name for s in fits)}); name one with "
                         "--scheme", path=path, line=header_line)
    k = max((_index(row[j_point]) for _, row in rows if row[j_point]), default=-1) + 1
    return _resolve_scheme(k, None, path, header_line, "")


def _read_long(path: Path, header_line: int, header: list[str], rows: list[tuple[int, list[str]]], root: Path,
               scheme: LandmarkScheme | None, skip: list[tuple[str, str]] | None
               ) -> tuple[LandmarkScheme, list[_Face]]:
    """The faces of a long CSV (one row per point; optional `annotator` and `face` columns tell apart faces of one
    image); a face with a bad row goes to `skip` (None: raise), absent points are missing."""
    col = {name: j for j, name in enumerate(header)}
    scheme = scheme or _long_scheme(header_line, rows, col["point"], path)
    k = scheme.num_points
    by_name = {name: i for i, name in enumerate(scheme.point_names)}
    faces: dict[tuple[str, str, str], _Face] = {}
    first_line: dict[tuple[str, str, str, int], int] = {}
    for line, row in rows:
        rel = row[col["image"]]
        key = (rel, row[col["annotator"]] if "annotator" in col else "", row[col["face"]] if "face" in col else "")
        face = faces.get(key)
        try:
            if face is None:
                face = faces[key] = _Face(line, rel, root / rel, k)
                face.annotator = _annotator(row, col, path, line)
                if key[2] and not key[2].isdecimal():
                    raise InputError(f"face must be a non-negative integer, got {key[2]!r}", path=path, line=line,
                                     field="face")
                _image(rel, root, path, line)
            if face.bad:
                continue
            point = row[col["point"]]
            i = _index(point) if point.isdecimal() else by_name.get(point, -1)
            if not 0 <= i < k:
                raise InputError(f"point must be an index in [0, {k}) or a point name of scheme {scheme.name}, got "
                                 f"{point!r}", path=path, line=line, field="point")
            if key + (i,) in first_line:
                raise InputError(f"duplicate point {i} of image {rel!r}{' annotator ' + repr(key[1]) if key[1] else ''}"
                                 f"{' face ' + key[2] if key[2] else ''} "
                                 f"(first on line {first_line[key + (i,)]})", path=path, line=line, field="point")
            first_line[key + (i,)] = line
            vs = row[col["visibility"]] if "visibility" in col else ""
            x, y, v = _point(row[col["x"]], row[col["y"]], vs, path=path, line=line, k=i,
                             names=("x", "y", "visibility"))
            face.xy[i], face.visibility[i] = (x, y), v
        except InputError as e:
            if skip is None:
                raise
            skip.append((where(path, line, e.field), f"face skipped: {e.message}"))
            face.bad = True
    return scheme, [f for f in faces.values() if not f.bad]


def read(path: Path, *, scheme: LandmarkScheme | None, skip_bad: bool, images_root: Path | None) -> Dataset:
    """Read a wide or long landmark CSV (told apart by the header); image paths relative to `images_root` or the
    CSV's folder."""
    skipped: list[tuple[str, str]] = []
    skip = skipped if skip_bad else None
    header_line, header, rows = _rows(path, skip)
    root = images_root if images_root is not None else path.parent
    has_box = False
    if all(c in header for c in LONG_COLUMNS):
        scheme, faces = _read_long(path, header_line, header, rows, root, scheme, skip)
    elif any(_WIDE_COLUMN.fullmatch(h) and h[0] in "xy" for h in header):
        scheme, faces, has_box = _read_wide(path, header_line, header, rows, root, scheme, skip)
    else:
        missing = next(c for c in LONG_COLUMNS if c not in header) if "point" in header else "x0"
        raise InputError(f"missing column '{missing}': expected a header {_LAYOUTS}", path=path, line=header_line)
    if not faces:
        raise InputError(f"no valid face ({len(skipped)} skipped)", path=path)
    with_annotators = "annotator" in header
    ids = unique_face_ids([f.rel for f in faces], path, [(f.line, None) for f in faces], skip_bad=skip_bad,
                          skipped=skipped, annotators=[f.annotator for f in faces] if with_annotators else None)
    faces = [f for f, image_id in zip(faces, ids, strict=True) if image_id is not None]
    return Dataset(root, [i for i in ids if i is not None], [f.image for f in faces], np.stack([f.xy for f in faces]),
                   np.stack([f.visibility for f in faces]), scheme,
                   boxes=np.stack([f.box for f in faces]) if has_box else None,
                   annotators=[f.annotator for f in faces] if with_annotators else None, skipped=skipped)


def _cell(value: float) -> str:
    return "" if np.isnan(value) else repr(float(value))


def write(ds: Dataset, out: Path, *, link_images: bool = True, layout: str = "wide") -> Path:
    """Write `ds` as a CSV at `out`: `layout="wide"` (one row per face, box and visibility columns when the data has
    them) or `"long"` (one row per point, a `face` column when an annotator's image holds several faces; no boxes);
    an `annotator` column after `image` when `ds.annotators` is not None."""
    if layout not in ("wide", "long"):
        raise InputError(f"CSV layout must be 'wide' or 'long', got {layout!r}")
    for image_id, annotator in zip(ds.image_ids, ds.annotators or [], strict=False):
        if not annotator or annotator != annotator.strip() or "\n" in annotator or "\r" in annotator:
            raise InputError(f"face '{image_id}': a CSV cannot hold the annotator name {annotator!r} (it must be "
                             "non-empty, without line breaks or spaces around it)")
    out, rels = prepare_file_write(ds, out, "annotations.csv", link_images=link_images)
    xy = ds.landmarks
    k = ds.num_points
    who = [] if ds.annotators is None else ["annotator"]
    annotators = [[] for _ in range(len(ds))] if ds.annotators is None else [[a] for a in ds.annotators]
    with atomic_open(out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if layout == "wide":
            with_box = ds.boxes is not None
            with_v = bool((ds.visibility != VISIBLE).any())
            writer.writerow(["image"] + who + [f"{c}{i}" for i in range(k) for c in "xy"]
                            + (list(BOX_COLUMNS) if with_box else []) + ([f"v{i}" for i in range(k)] if with_v else []))
            for n, rel in enumerate(rels):
                writer.writerow([rel] + annotators[n] + [_cell(v) for v in xy[n].ravel()]
                                + ([_cell(v) for v in ds.boxes[n]] if with_box else [])
                                + ([str(int(v)) for v in ds.visibility[n]] if with_v else []))
        else:
            counts: Counter[tuple[str, ...]] = Counter()
            faces = []
            for rel, who_n in zip(rels, annotators, strict=True):
                faces.append(counts[(rel, *who_n)])
                counts[(rel, *who_n)] += 1
            with_face = any(c > 1 for c in counts.values())
            writer.writerow(["image"] + who + (["face"] if with_face else []) + ["point", "x", "y", "visibility"])
            for n, rel in enumerate(rels):
                for i in range(k):
                    writer.writerow([rel] + annotators[n] + ([str(faces[n])] if with_face else [])
                                    + [str(i), _cell(xy[n, i, 0]), _cell(xy[n, i, 1]), str(int(ds.visibility[n, i]))])
    return out
