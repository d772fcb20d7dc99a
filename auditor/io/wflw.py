"""WFLW annotation `.txt`: one face per line, 2K coordinates, a box, 6 attributes, then the image path.

Coordinates are 0-based pixels, kept as they are. Image paths are relative to the images root: `images_root` when
given, else the txt's folder, else (per image) `<txt folder>/WFLW_images/`.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from auditor.atomic import atomic_open
from auditor.dataset import MISSING, VISIBLE, Dataset
from auditor.errors import InputError
from auditor.io import (
    MAX_COORDINATE,
    is_regular_file,
    parse_float,
    prepare_file_write,
    read_annotation_text,
    unique_face_ids,
    where,
)
from auditor.schemes import LandmarkScheme, infer_scheme

ATTRIBUTES = ("pose", "expression", "illumination", "make-up", "occlusion", "blur")
BOX_FIELDS = ("box x_min", "box y_min", "box x_max", "box y_max")
EXTRA_FIELDS = len(BOX_FIELDS) + len(ATTRIBUTES) + 1  # box, attributes and the image path after the 2K coordinates
IMAGES_SUBFOLDER = "WFLW_images"


def _field_name(j: int, k: int) -> str:
    """The name of the j-th number of a line holding k points, for error messages."""
    if j < 2 * k:
        return f"{'xy'[j % 2]}{j // 2}"
    if j < 2 * k + len(BOX_FIELDS):
        return BOX_FIELDS[j - 2 * k]
    return f"attribute {ATTRIBUTES[j - 2 * k - len(BOX_FIELDS)]}"


def _parse_line(tokens: list[str], k: int, path: Path, lineno: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 2) points, (4,) box and (6,) attributes of one line's tokens; an InputError naming the field."""
    if len(tokens) != 2 * k + EXTRA_FIELDS:
        raise InputError(f"expected {2 * k + EXTRA_FIELDS} fields ({2 * k} coordinates of {k} points, 4 box numbers, "
                         f"6 attributes, the image path), got {len(tokens)}", path=path, line=lineno)
    numbers = tokens[:-1]
    try:
        values = np.array(numbers, dtype=np.float64)
    except ValueError:
        values = np.array([parse_float(t, path=path, line=lineno, field=_field_name(j, k))
                           for j, t in enumerate(numbers)])
    within = np.abs(values) <= MAX_COORDINATE  # False for NaN and inf too
    if not within.all():
        j = int(np.flatnonzero(~within)[0])
        parse_float(numbers[j], path=path, line=lineno, field=_field_name(j, k))
    attributes = []
    for j, text in enumerate(numbers[2 * k + len(BOX_FIELDS):], start=2 * k + len(BOX_FIELDS)):
        try:
            attributes.append(int(text))
        except ValueError:
            raise InputError(f"expected an integer attribute, got {text!r}", path=path, line=lineno,
                             field=_field_name(j, k)) from None
    box = values[2 * k:2 * k + len(BOX_FIELDS)]
    if box[0] > box[2] or box[1] > box[3]:
        raise InputError(f"box must have x_min <= x_max and y_min <= y_max, got {numbers[2 * k:2 * k + 4]}",
                         path=path, line=lineno, field="box")
    return values[:2 * k].reshape(k, 2), box, np.array(attributes, dtype=np.int64)


def _find_image(rel: str, roots: list[Path]) -> tuple[int, Path] | None:
    """The index of the first root holding the image `rel`, and its path there."""
    for i, root in enumerate(roots):
        if is_regular_file(root / rel):
            return i, root / rel
    return None


def read(path: Path, *, scheme: LandmarkScheme | None, skip_bad: bool, images_root: Path | None) -> Dataset:
    """Read a WFLW `.txt`; images under `images_root`, else the txt's folder, else `<txt folder>/WFLW_images/`."""
    text = read_annotation_text(path, "a WFLW annotation .txt file")
    lines = [(lineno, raw.split()) for lineno, raw in enumerate(text.splitlines(), start=1) if raw.strip()]
    if not lines:
        raise InputError("empty file: no face lines", path=path)
    if scheme is None:
        n_fields = Counter(len(tokens) for _, tokens in lines).most_common(1)[0][0]
        k, odd = divmod(n_fields - EXTRA_FIELDS, 2)
        lineno = next(n for n, tokens in lines if len(tokens) == n_fields)
        if odd or k < 1:
            raise InputError(f"expected 2K coordinates, 4 box numbers, 6 attributes and the image path, got "
                             f"{n_fields} fields", path=path, line=lineno)
        try:
            scheme = infer_scheme(k)
        except InputError as e:
            raise InputError(e.message, path=path, line=lineno) from None
    k = scheme.num_points
    roots = [images_root] if images_root is not None else [path.parent, path.parent / IMAGES_SUBFOLDER]
    faces, skipped = [], []
    for lineno, tokens in lines:
        try:
            xy, box, attributes = _parse_line(tokens, k, path, lineno)
            found = _find_image(tokens[-1], roots)
            if found is None:
                raise InputError(f"missing image {tokens[-1]!r} (looked in {', '.join(str(r) for r in roots)})",
                                 path=path, line=lineno, field="image")
        except InputError as e:
            if not skip_bad:
                raise
            skipped.append((where(path, lineno, e.field), e.message))
            continue
        faces.append((lineno, tokens[-1], found, xy, box, attributes))
    if not faces:
        raise InputError(f"no valid face line ({len(skipped)} skipped)", path=path)
    ids = unique_face_ids([f[1] for f in faces], path, [(f[0], None) for f in faces], skip_bad=skip_bad,
                          skipped=skipped)
    faces = [f for f, image_id in zip(faces, ids, strict=True) if image_id is not None]
    ids = [image_id for image_id in ids if image_id is not None]
    root_index = {f[2][0] for f in faces}
    root = roots[root_index.pop()] if len(root_index) == 1 else roots[0]
    landmarks = np.stack([f[3] for f in faces])
    return Dataset(root, ids, [f[2][1] for f in faces], landmarks, np.full(landmarks.shape[:2], VISIBLE), scheme,
                   boxes=np.stack([f[4] for f in faces]), attributes=np.stack([f[5] for f in faces]),
                   skipped=skipped)


def write(ds: Dataset, out: Path, *, link_images: bool = True) -> Path:
    """Write `ds` as a WFLW `.txt` at `out` (boxes from the labels' extent where missing, attributes 0 if absent)."""
    missing = np.flatnonzero((ds.visibility == MISSING).any(axis=1))
    if len(missing):
        raise InputError(f"the WFLW format cannot hold missing points (face '{ds.image_ids[missing[0]]}' has some)")
    out, rels = prepare_file_write(ds, out, "annotations.txt", link_images=link_images)
    spaced = [r for r in rels if len(r.split()) != 1]
    if spaced:
        raise InputError(f"the WFLW format cannot hold image paths with whitespace: {spaced[0]!r}")
    boxes = np.full((len(ds), 4), np.nan) if ds.boxes is None else ds.boxes
    extent = np.concatenate([ds.landmarks.min(axis=1), ds.landmarks.max(axis=1)], axis=1)
    boxes = np.where(np.isfinite(boxes).all(axis=1, keepdims=True), boxes, extent)
    attributes = np.zeros((len(ds), len(ATTRIBUTES)), dtype=np.int64) if ds.attributes is None else ds.attributes
    if attributes.shape[1] != len(ATTRIBUTES):
        raise InputError(f"the WFLW format holds {len(ATTRIBUTES)} attributes per face, the dataset has "
                         f"{attributes.shape[1]}")
    with atomic_open(out, "w") as f:
        for i, rel in enumerate(rels):
            numbers = [repr(float(v)) for v in ds.landmarks[i].ravel()] + [repr(float(v)) for v in boxes[i]]
            numbers += [str(int(a)) for a in attributes[i]]
            f.write(" ".join(numbers) + f" {rel}\n")
    return out
