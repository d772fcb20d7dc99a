"""COCO keypoints JSON: `images`, `annotations` with flat `[x, y, v] * K` keypoints, keypoint `categories`.

An annotation may name who labelled it in `annotator` (or `attributes.annotator`, as CVAT exports it).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from auditor.atomic import atomic_open
from auditor.dataset import MISSING, Dataset
from auditor.errors import InputError
from auditor.io import MAX_COORDINATE, is_regular_file, prepare_file_write, read_annotation_text, unique_face_ids, where
from auditor.schemes import BUILTIN_SCHEMES, Contour, LandmarkScheme, infer_scheme


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_coordinate(value: object) -> bool:
    """A JSON number that is a usable coordinate: finite and within +-MAX_COORDINATE (a 400-digit integer is not)."""
    if not _is_number(value):
        return False
    try:
        return abs(float(value)) <= MAX_COORDINATE
    except OverflowError:
        return False


def _show(value: object, limit: int = 40) -> str:
    """`value` as JSON for a message, cut at `limit` characters."""
    try:
        return json.dumps(value)[:limit]
    except (RecursionError, ValueError):  # nested too deeply, or an integer with too many digits
        return type(value).__name__


def _is_id(value: object) -> bool:
    return isinstance(value, int | str) and not isinstance(value, bool)


def _need(obj: dict, key: str, check: Callable[[Any], Any], expected: str, path: Path, field: str) -> Any:
    """`obj[key]` if present and `check` passes, else an InputError naming `field.key` (`field` "" at the top)."""
    place = f"{field}.{key}" if field else key
    if key not in obj:
        raise InputError(f"missing field '{key}' (expected {expected})", path=path, field=place)
    if not check(obj[key]):
        raise InputError(f"expected {expected}, got {_show(obj[key])}", path=path, field=place)
    return obj[key]


def _load(path: Path) -> dict:
    text = read_annotation_text(path, "a COCO keypoints .json file")
    if not text.strip():
        raise InputError("empty file: expected a COCO keypoints JSON object", path=path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg} (column {e.colno})", path=path, line=e.lineno) from None
    except RecursionError:
        raise InputError("invalid JSON: nested too deeply", path=path) from None
    except ValueError as e:  # e.g. an integer beyond Python's digit limit
        raise InputError(f"invalid JSON: {' '.join(str(e).split())[:120]}", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object with 'images', 'annotations' and 'categories'", path=path)
    for key in ("images", "annotations"):
        _need(data, key, lambda v: isinstance(v, list), "a list", path, "")
    if not isinstance(data.get("categories", []), list):
        raise InputError("expected a list", path=path, field="categories")
    if not data["annotations"]:
        raise InputError("no annotations: the file holds no face", path=path, field="annotations")
    return data


def _categories(data: dict, path: Path) -> dict[object, tuple[int, dict]]:
    """Each category by id: its index in `categories` and the category, checked."""
    out: dict[object, tuple[int, dict]] = {}
    for j, cat in enumerate(data.get("categories", [])):
        field = f"categories[{j}]"
        if not isinstance(cat, dict):
            raise InputError("expected an object", path=path, field=field)
        cid = _need(cat, "id", _is_id, "an integer or string id", path, field)
        if cid in out:
            raise InputError(f"duplicate category id {cid!r} (first in categories[{out[cid][0]}])", path=path,
                             field=f"{field}.id")
        if "keypoints" in cat:
            names = _need(cat, "keypoints", lambda v: isinstance(v, list) and all(isinstance(n, str) for n in v),
                          "a list of keypoint names", path, field)
            skeleton = cat.get("skeleton", [])
            if not isinstance(skeleton, list):
                raise InputError("expected a list of 1-based index pairs", path=path, field=f"{field}.skeleton")
            for i, pair in enumerate(skeleton):
                if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(a, int) for a in pair)
                        and all(1 <= a <= len(names) for a in pair) and pair[0] != pair[1]):
                    raise InputError(f"expected a pair of different 1-based keypoint indices in [1, {len(names)}], "
                                     f"got {_show(pair)}", path=path, field=f"{field}.skeleton[{i}]")
        out[cid] = (j, cat)
    return out


def _images(data: dict, path: Path) -> dict[object, tuple[int, str]]:
    """Each image by id: its index in `images` and its file name, checked."""
    by_id: dict[object, tuple[int, str]] = {}
    first_name: dict[str, int] = {}
    for j, im in enumerate(data["images"]):
        field = f"images[{j}]"
        if not isinstance(im, dict):
            raise InputError("expected an object", path=path, field=field)
        iid = _need(im, "id", _is_id, "an integer or string id", path, field)
        if iid in by_id:
            raise InputError(f"duplicate image id {iid!r} (first in images[{by_id[iid][0]}])", path=path,
                             field=f"{field}.id")
        name = _need(im, "file_name", lambda v: isinstance(v, str) and v.strip(), "a non-empty path", path, field)
        if name in first_name:
            raise InputError(f"duplicate file_name {name!r} (first in images[{first_name[name]}])", path=path,
                             field=f"{field}.file_name")
        for key in ("width", "height"):
            if key in im:
                _need(im, key, lambda v: _is_number(v) and v > 0, "a positive number", path, field)
        first_name[name] = j
        by_id[iid] = (j, name)
    return by_id


def _custom_scheme(cat: dict, index: int, path: Path) -> LandmarkScheme:
    """A scheme from a keypoint category: its names, each skeleton edge a 2-point contour, no flip pairs, box NME."""
    names = tuple(cat["keypoints"])
    contours = tuple(Contour(f"edge_{i}", (a - 1, b - 1)) for i, (a, b) in enumerate(cat.get("skeleton", [])))
    try:
        return LandmarkScheme(str(cat.get("name") or "coco_custom"), names, ("all",) * len(names),
                              (False,) * len(names), contours, ())
    except InputError as e:
        raise InputError(e.message, path=path, field=f"categories[{index}].keypoints") from None


def _scheme(data: dict, categories: dict[object, tuple[int, dict]], scheme: LandmarkScheme | None, path: Path
            ) -> LandmarkScheme:
    """The forced scheme, else the built-in named like the category's keypoints, else the one with as many points,
    else a custom scheme from the category."""
    used = {a.get("category_id") for a in data["annotations"] if isinstance(a, dict) and _is_id(a.get("category_id"))}
    named = sorted((categories[c] for c in used if _is_id(c) and c in categories and "keypoints" in categories[c][1]),
                   key=lambda jc: jc[0])
    for j, cat in named[1:]:
        if cat["keypoints"] != named[0][1]["keypoints"]:
            raise InputError(f"keypoint names differ from categories[{named[0][0]}].keypoints: one keypoint scheme "
                             "per file", path=path, field=f"categories[{j}].keypoints")
    names = tuple(named[0][1]["keypoints"]) if named else None
    if scheme is not None:
        if names is not None and len(names) != scheme.num_points:
            raise InputError(f"{len(names)} keypoint names but scheme {scheme.name} has {scheme.num_points} points",
                             path=path, field=f"categories[{named[0][0]}].keypoints")
        return scheme
    for builtin in BUILTIN_SCHEMES.values():
        if builtin.point_names == names:
            return builtin
    if names is not None:
        fits = [s for s in BUILTIN_SCHEMES.values() if s.num_points == len(names)]
        return fits[0] if len(fits) == 1 else _custom_scheme(named[0][1], named[0][0], path)
    lengths = {j: len(a["keypoints"]) for j, a in enumerate(data["annotations"])
               if isinstance(a, dict) and isinstance(a.get("keypoints"), list)}
    if not lengths:
        raise InputError("missing field 'keypoints' (expected a list [x, y, v] * K)", path=path,
                         field="annotations[0].keypoints")
    length = Counter(lengths.values()).most_common(1)[0][0]
    counted_at = f"annotations[{next(j for j, n in lengths.items() if n == length)}].keypoints"
    if length % 3 or length == 0:
        raise InputError(f"expected [x, y, v] * K numbers, got {length}", path=path, field=counted_at)
    try:
        return infer_scheme(length // 3)
    except InputError as e:
        raise InputError(e.message, path=path, field=counted_at) from None


def _keypoints(ann: dict, k: int, path: Path, field: str) -> tuple[np.ndarray, np.ndarray]:
    """(K, 2) positions (NaN where v = 0) and (K,) visibility from an annotation's flat `[x, y, v] * K`."""
    flat = _need(ann, "keypoints", lambda v: isinstance(v, list), "a list [x, y, v] * K", path, field)
    if len(flat) != 3 * k:
        raise InputError(f"expected {3 * k} numbers (x, y, v for {k} points), got {len(flat)}", path=path,
                         field=f"{field}.keypoints")
    for j, value in enumerate(flat):
        if not _is_coordinate(value):
            bound = f" within +-{MAX_COORDINATE:g}" if _is_number(value) else ""
            raise InputError(f"expected a finite number{bound} ({'xyv'[j % 3]} of point {j // 3}), got "
                             f"{_show(value)}", path=path, field=f"{field}.keypoints[{j}]")
    triples = np.asarray(flat, dtype=np.float64).reshape(k, 3)
    bad = np.flatnonzero(~np.isin(triples[:, 2], (0, 1, 2)))
    if len(bad):
        raise InputError(f"v of point {bad[0]} must be 0 (missing), 1 (occluded) or 2 (visible), got "
                         f"{flat[3 * bad[0] + 2]}", path=path, field=f"{field}.keypoints[{3 * bad[0] + 2}]")
    visibility = triples[:, 2].astype(np.int8)
    xy = np.where((visibility == MISSING)[:, None], np.nan, triples[:, :2])
    return xy, visibility


def _bbox(ann: dict, path: Path, field: str) -> np.ndarray:
    """(4,) x0, y0, x1, y1 from the annotation's `bbox` [x, y, w, h]; NaN when it has none."""
    if "bbox" not in ann:
        return np.full(4, np.nan)
    b = ann["bbox"]
    if not (isinstance(b, list) and len(b) == 4 and all(_is_coordinate(v) for v in b) and b[2] >= 0 and b[3] >= 0):
        raise InputError(f"expected [x, y, width, height] with finite numbers and width, height >= 0, got "
                         f"{_show(b, 60)}", path=path, field=f"{field}.bbox")
    return np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]], dtype=np.float64)


def _names_annotator(ann: object) -> bool:
    return isinstance(ann, dict) and ("annotator" in ann or (isinstance(ann.get("attributes"), dict)
                                                             and "annotator" in ann["attributes"]))


def _annotator(ann: dict, path: Path, field: str) -> str:
    """Who labelled the annotation: its `annotator`, else its `attributes.annotator` (a non-empty string or an
    integer); an InputError when it names none or the two differ."""
    found = [(f"{field}.annotator", ann["annotator"])] if "annotator" in ann else []
    attributes = ann.get("attributes")
    if isinstance(attributes, dict) and "annotator" in attributes:
        found.append((f"{field}.attributes.annotator", attributes["annotator"]))
    if not found:
        raise InputError("missing field 'annotator' (or attributes.annotator): other annotations name who labelled "
                         "them, so every one must", path=path, field=f"{field}.annotator")
    for place, value in found:
        if not ((isinstance(value, str) and value.strip()) or (isinstance(value, int) and not isinstance(value, bool))):
            raise InputError(f"expected a non-empty string (or integer) naming the annotator, got {_show(value)}",
                             path=path, field=place)
    names = [str(value) for _, value in found]
    if len(set(names)) > 1:
        raise InputError(f"annotator {_show(found[0][1])} differs from attributes.annotator {_show(found[1][1])}",
                         path=path, field=found[1][0])
    return names[0]


def read(path: Path, *, scheme: LandmarkScheme | None, skip_bad: bool, images_root: Path | None) -> Dataset:
    """Read a COCO keypoints JSON; `file_name`s relative to `images_root` or the JSON's folder; one face per
    annotation; annotators when any annotation names one (then every one must)."""
    data = _load(path)
    root = images_root if images_root is not None else path.parent
    categories = _categories(data, path)
    images = _images(data, path)
    scheme = _scheme(data, categories, scheme, path)
    k = scheme.num_points
    image_error: dict[object, InputError | None] = {}
    faces, skipped, first_ann = [], [], {}
    with_annotators = any(_names_annotator(ann) for ann in data["annotations"])
    for j, ann in enumerate(data["annotations"]):
        field = f"annotations[{j}]"
        try:
            if not isinstance(ann, dict):
                raise InputError("expected an object", path=path, field=field)
            if "id" in ann:
                aid = _need(ann, "id", _is_id, "an integer or string id", path, field)
                if aid in first_ann:
                    raise InputError(f"duplicate annotation id {aid!r} (first in annotations[{first_ann[aid]}])",
                                     path=path, field=f"{field}.id")
                first_ann[aid] = j
            if "category_id" in ann and not _is_id(ann["category_id"]):
                raise InputError(f"expected an integer or string category id, got {_show(ann['category_id'])}",
                                 path=path, field=f"{field}.category_id")
            if "category_id" in ann and categories and ann["category_id"] not in categories:
                raise InputError(f"unknown category id {_show(ann['category_id'])}", path=path,
                                 field=f"{field}.category_id")
            iid = _need(ann, "image_id", _is_id, "an integer or string image id", path, field)
            if iid not in images:
                raise InputError(f"unknown image id {iid!r}: no entry in 'images' has it", path=path,
                                 field=f"{field}.image_id")
            index, name = images[iid]
            if iid not in image_error:
                image_error[iid] = None if is_regular_file(root / name) else InputError(
                    f"missing image {name!r} (looked in {root})", path=path, field=f"images[{index}].file_name")
            if image_error[iid] is not None:
                raise image_error[iid]
            xy, visibility = _keypoints(ann, k, path, field)
            box = _bbox(ann, path, field)
            annotator = _annotator(ann, path, field) if with_annotators else None
        except InputError as e:
            if not skip_bad:
                raise
            about_image = e.field is not None and e.field.startswith("images[")
            skipped.append((where(path, None, field if about_image else e.field),
                            f"[{e.field}] {e.message}" if about_image else e.message))
            continue
        faces.append((field, name, xy, visibility, box, annotator))
    if not faces:
        raise InputError(f"no valid annotation ({len(skipped)} skipped)", path=path)
    annotators = [f[5] for f in faces] if with_annotators else None
    ids = unique_face_ids([f[1] for f in faces], path, [(None, f[0]) for f in faces], skip_bad=skip_bad,
                          skipped=skipped, annotators=annotators)
    faces = [f for f, image_id in zip(faces, ids, strict=True) if image_id is not None]
    boxes = np.stack([f[4] for f in faces])
    return Dataset(root, [i for i in ids if i is not None], [root / f[1] for f in faces],
                   np.stack([f[2] for f in faces]), np.stack([f[3] for f in faces]), scheme,
                   boxes=None if np.isnan(boxes).all() else boxes,
                   annotators=None if annotators is None else [f[5] for f in faces], skipped=skipped)


def _skeleton(scheme: LandmarkScheme) -> list[list[int]]:
    """1-based pairs of consecutive points along each contour of the scheme (closing pair for closed ones)."""
    pairs = []
    for c in scheme.contours:
        chain = list(c.points) + ([c.points[0]] if c.closed and len(c.points) > 2 else [])
        pairs += [[a + 1, b + 1] for a, b in zip(chain, chain[1:], strict=False)]
    return pairs


def _size(image: Path) -> tuple[int, int] | None:
    try:
        with Image.open(image) as im:
            return im.size
    except OSError:
        return None


def write(ds: Dataset, out: Path, *, link_images: bool = True) -> Path:
    """Write `ds` as COCO keypoints JSON at `out`: one category named after the scheme (its point names, a skeleton
    from its contours), `bbox` from the boxes or else the labels' extent, `annotator` when `ds.annotators` is set."""
    for image_id, annotator in zip(ds.image_ids, ds.annotators or [], strict=False):
        if not annotator.strip():
            raise InputError(f"face '{image_id}' has an empty annotator name")
    out, rels = prepare_file_write(ds, out, "annotations.json", link_images=link_images)
    labelled = ds.labelled
    images: dict[str, dict] = {}
    for rel, image in zip(rels, ds.image_paths, strict=True):
        if rel not in images:
            images[rel] = {"id": len(images) + 1, "file_name": rel}
            size = _size(image)
            if size is not None:
                images[rel].update(width=size[0], height=size[1])
    annotations = []
    for n, rel in enumerate(rels):
        xy = ds.landmarks[n]
        keypoints = []
        for (x, y), v in zip(xy, ds.visibility[n], strict=True):
            keypoints += [0, 0, 0] if v == MISSING else [float(x), float(y), int(v)]
        ann = {"id": n + 1, "image_id": images[rel]["id"], "category_id": 1, "keypoints": keypoints,
               "num_keypoints": int(labelled[n].sum()), "iscrowd": 0}
        if ds.annotators is not None:
            ann["annotator"] = ds.annotators[n]
        box = ds.boxes[n] if ds.boxes is not None and np.isfinite(ds.boxes[n]).all() else None
        if box is None and labelled[n].any():
            box = np.concatenate([xy[labelled[n]].min(axis=0), xy[labelled[n]].max(axis=0)])
        if box is not None:
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            ann.update(bbox=[float(box[0]), float(box[1]), w, h], area=w * h)
        annotations.append(ann)
    category = {"id": 1, "name": ds.scheme.name, "supercategory": "face", "keypoints": list(ds.scheme.point_names),
                "skeleton": _skeleton(ds.scheme)}
    with atomic_open(out, "w") as f:
        f.write('{"images": [\n' + ",\n".join(json.dumps(im) for im in images.values()) + "\n],\n")
        f.write('"annotations": [\n' + ",\n".join(json.dumps(a) for a in annotations) + "\n],\n")
        f.write(f'"categories": [{json.dumps(category)}]}}\n')
    return out
