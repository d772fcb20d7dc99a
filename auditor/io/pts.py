"""300-W `.pts` folders: one file per face, image beside it, 1-based coordinates on disk.

With several annotators, a tree `DATA/<annotator>/<image>.pts`: the first folder level names the annotator, and the
image is beside the .pts or shared at the same relative path directly under DATA.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auditor.atomic import atomic_write_text
from auditor.dataset import MISSING, VISIBLE, Dataset
from auditor.errors import InputError
from auditor.io import (
    find_image_beside,
    link_image_files,
    list_files,
    parse_float,
    read_annotation_text,
    relative_image_path,
)
from auditor.schemes import LandmarkScheme, infer_scheme


def parse_pts(path: Path, text: str | None = None) -> np.ndarray:
    """(K, 2) 0-based points of one `.pts` file; an InputError naming the line on any defect."""
    text = read_annotation_text(path, "a 300-W .pts file") if text is None else text
    n_points, points, opened, closed = None, [], None, False
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if closed:
            raise InputError(f"unexpected text after the closing brace: {line[:40]!r}", path=path, line=lineno)
        if opened is None:
            key, sep, value = line.partition(":")
            if line == "{":
                if n_points is None:
                    raise InputError("'{' before the 'n_points:' header", path=path, line=lineno)
                opened = lineno
            elif sep and key.strip() == "n_points":
                try:
                    n_points = int(value.strip())
                except ValueError:
                    raise InputError(f"n_points must be an integer, got {value.strip()!r}", path=path,
                                     line=lineno) from None
                if n_points <= 0:
                    raise InputError(f"n_points must be positive, got {n_points}", path=path, line=lineno)
            elif sep and key.strip() == "version":
                continue
            else:
                raise InputError(f"expected 'version:', 'n_points:' or '{{', got {line[:40]!r}", path=path,
                                 line=lineno)
            continue
        if line == "}":
            closed = True
            continue
        if "{" in line or "}" in line:
            raise InputError("unbalanced braces: '{' or '}' inside the point list", path=path, line=lineno)
        parts = line.split()
        if len(parts) != 2:
            raise InputError(f"expected two numbers 'x y', got {line[:40]!r}", path=path, line=lineno)
        points.append([parse_float(parts[0], path=path, line=lineno, field="x"),
                       parse_float(parts[1], path=path, line=lineno, field="y")])
    if n_points is None:
        raise InputError("missing the 'n_points:' header", path=path, line=1)
    if opened is None:
        raise InputError("unbalanced braces: no '{' opens the point list", path=path, line=len(lines))
    if not closed:
        raise InputError("unbalanced braces: the point list is not closed with '}'", path=path, line=len(lines))
    if len(points) != n_points:
        raise InputError(f"n_points says {n_points} but the list holds {len(points)} points", path=path,
                         line=opened)
    return np.asarray(points, dtype=np.float64) - 1.0


def format_pts(xy: np.ndarray) -> str:
    """The `.pts` text of (K, 2) 0-based points (written 1-based, shortest exact decimals)."""
    rows = "".join(f"{float(x) + 1.0!r} {float(y) + 1.0!r}\n" for x, y in xy)
    return f"version: 1\nn_points: {len(xy)}\n{{\n{rows}}}\n"


def read(root: Path, *, scheme: LandmarkScheme | None, skip_bad: bool, images_root: Path | None,
         annotators_from: str | None = None) -> Dataset:
    """Read every `.pts` below `root` (recursively, sorted) with the image beside each.

    With `annotators_from="folder"`, `root/<annotator>/<rel>.pts`: the face's annotator is the first folder level and
    its image is beside the .pts, else at `rel` directly under `root` (or `images_root`); the id stays the path.
    """
    by_folder = annotators_from == "folder"
    single = not root.is_dir()
    files = [root] if single else list_files(root, ".pts")
    base = root.parent if single else root
    if not files:
        raise InputError("empty folder: no .pts files below it", path=root)
    ids, images, points, annotators, skipped = [], [], [], [], []
    first: dict[str, Path] = {}
    for f in files:
        rel = f.relative_to(base)
        image_id = rel.with_suffix("").as_posix()
        try:
            if by_folder and len(rel.parts) < 2:
                raise InputError("a .pts directly in the dataset folder names no annotator: expected "
                                 "DATA/<annotator>/<image>.pts", path=f)
            if image_id in first:
                raise InputError(f"duplicate image id '{image_id}': {first[image_id].name} and {f.name} name the same "
                                 "face (file names differing only in their suffix's case)", path=f)
            xy = parse_pts(f)
            if scheme is None:
                scheme = infer_scheme(len(xy), source=str(f))
            if len(xy) != scheme.num_points:
                raise InputError(f"expected {scheme.num_points} points (scheme {scheme.name}), got {len(xy)}",
                                 path=f, line=2)
            image = find_image_beside(f if images_root is None else images_root / rel)
            shared = (images_root or base) / Path(*rel.parts[1:]) if by_folder else None
            if image is None and shared is not None:
                image = find_image_beside(shared)
            if image is None:
                hint = ""
                if shared is None and len(rel.parts) > 1 and find_image_beside(base / Path(*rel.parts[1:])):
                    hint = (f"; one is in {base}: for a tree DATA/<annotator>/<image>.pts read with "
                            "--annotators-from folder")
                raise InputError(f"missing image: no {f.stem}.png/.jpg/... beside the annotation"
                                 + ("" if shared is None else f" or in {shared.parent}") + hint, path=f)
        except InputError as e:
            if not skip_bad:
                raise
            skipped.append((str(f), e.message))
            continue
        first[image_id] = f
        ids.append(image_id)
        images.append(image)
        points.append(xy)
        annotators.append(rel.parts[0])
    if not points:
        raise InputError(f"no valid .pts file ({len(skipped)} skipped)", path=root)
    landmarks = np.stack(points)
    return Dataset(base, ids, images, landmarks, np.full(landmarks.shape[:2], VISIBLE), scheme,
                   annotators=annotators if by_folder else None, skipped=skipped)


def write(ds: Dataset, out: Path, *, link_images: bool = True) -> Path:
    """Write one `.pts` per face under the folder `out`, images linked beside them; with `ds.annotators`, each face
    at `out/<annotator>/<id less the annotator prefix>.pts`, its image linked beside it or shared at the top (where
    it lies in the dataset), as `read(..., annotators_from="folder")` finds it."""
    missing = np.flatnonzero((ds.visibility == MISSING).any(axis=1))
    if len(missing):
        raise InputError(f"the .pts format cannot hold missing points (face '{ds.image_ids[missing[0]]}' has some)")
    for image_id, annotator in zip(ds.image_ids, ds.annotators or [], strict=False):
        if annotator in ("", ".", "..") or "/" in annotator or "\\" in annotator or annotator.lower().endswith(".pts"):
            raise InputError(f"face '{image_id}': the annotator {annotator!r} cannot name a folder of a .pts tree")
    out.mkdir(parents=True, exist_ok=True)
    for i, image_id in enumerate(ds.image_ids):
        folder = Path() if ds.annotators is None else Path(ds.annotators[i])
        inner = image_id.removeprefix(f"{folder.as_posix()}/") if ds.annotators is not None else image_id
        pts_path = out / folder / (inner.replace("#", "_") + ".pts")
        atomic_write_text(pts_path, format_pts(ds.landmarks[i]))
        if link_images:
            rel = relative_image_path(ds, i)
            image_rel = Path(rel.name) if rel.is_absolute() else rel
            places = {folder / Path(inner).parent, Path(inner).parent}
            if image_rel.parent not in places or not _stem_matches(image_rel.stem, pts_path.stem):
                raise InputError(f"face '{image_id}': the .pts format needs its image beside it with the same stem"
                                 + ("" if ds.annotators is None else " (or shared above the annotator folders)")
                                 + f", but the image is '{image_rel}'")
    if link_images:
        link_image_files(ds, out)
    return out


def _stem_matches(image_stem: str, pts_stem: str) -> bool:
    head, _, tail = pts_stem.rpartition("_")
    return image_stem == pts_stem or (image_stem == head and tail.isdigit())
