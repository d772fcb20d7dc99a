"""Annotation formats: detect, read into a `Dataset`, write back. One module per format."""

from __future__ import annotations

import errno
import importlib
import os
import stat
from collections import Counter
from pathlib import Path

import numpy as np

from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.schemes import LandmarkScheme, get_scheme

FORMATS = ("pts", "wflw", "csv", "coco")
MAX_COORDINATE = 1e7  # px: far beyond any image, small enough that squared distances stay finite
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
ANNOTATOR_SOURCES = ("folder",)  # where `read_dataset(annotators_from=...)` can find who labelled each face


def _module(fmt: str):
    return importlib.import_module({"pts": "auditor.io.pts", "wflw": "auditor.io.wflw", "csv": "auditor.io.csv_io",
                                    "coco": "auditor.io.coco"}[fmt])


def check_exists(path: Path) -> None:
    """An InputError unless `path` exists (links followed), saying why not."""
    if os.path.exists(path):
        return
    try:
        os.stat(path)
    except OSError as e:
        raise InputError(os_reason(e, path) if e.errno != errno.ENOENT or os.path.lexists(path)
                         else "no such file or folder", path=path) from None
    except ValueError:
        raise InputError("not a valid path", path=path) from None
    raise InputError("no such file or folder", path=path)


def detect_format(path: str | Path) -> str:
    """The format of a dataset path: a folder of `.pts`, a WFLW `.txt`, a `.csv` or a COCO `.json`."""
    path = Path(path)
    check_exists(path)
    if os.path.isdir(path):
        if list_files(path, ".pts"):
            return "pts"
        found = {fmt: sorted(path.glob(pattern)) for fmt, pattern in
                 (("wflw", "*.txt"), ("csv", "*.csv"), ("coco", "*.json"))}
        found = {fmt: files for fmt, files in found.items() if files}
        if not found:
            raise InputError("empty dataset folder: no .pts files below it and no .txt, .csv or .json annotation "
                             "file in it", path=path)
        raise InputError(f"a folder without .pts files: pass the annotation file itself "
                         f"({', '.join(str(f[0].name) for f in found.values())})", path=path)
    suffix = path.suffix.lower()
    by_suffix = {".pts": "pts", ".txt": "wflw", ".csv": "csv", ".json": "coco"}
    if suffix not in by_suffix:
        raise InputError(f"unknown annotation format '{suffix}': expected a .pts folder, a WFLW .txt, a .csv or "
                         "a COCO .json (or force one with --format)", path=path)
    return by_suffix[suffix]


def read_dataset(path: str | Path, *, format: str | None = None, scheme: str | LandmarkScheme | None = None,
                 skip_bad: bool = False, images_root: str | Path | None = None,
                 annotators_from: str | None = None) -> Dataset:
    """Read a dataset in any supported format (detected unless `format` is given) into a `Dataset`.

    A CSV `annotator` column and a COCO annotation's `annotator` are read whenever present; `annotators_from="folder"`
    reads a pts tree `DATA/<annotator>/<image>.pts` (the first folder level names the annotator).
    """
    path = Path(path)
    if annotators_from not in (None, *ANNOTATOR_SOURCES):
        raise InputError(f"unknown annotator source {annotators_from!r}: expected one of "
                         f"{', '.join(ANNOTATOR_SOURCES)}")
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}': expected one of {', '.join(FORMATS)}")
    check_exists(path)
    if annotators_from == "folder" and (fmt != "pts" or not os.path.isdir(path)):
        raise InputError(f"annotators from folders need a pts folder tree DATA/<annotator>/<image>.pts, got a {fmt} "
                         f"{'folder' if os.path.isdir(path) else 'file'} (CSV and COCO name the annotator in a column "
                         "or field, read without this option)", path=path)
    resolved = None if scheme is None else get_scheme(scheme)
    kwargs = {"annotators_from": annotators_from} if annotators_from is not None else {}
    ds = _module(fmt).read(path, scheme=resolved, skip_bad=skip_bad,
                           images_root=None if images_root is None else Path(images_root), **kwargs)
    ds.source_format = fmt
    return ds


def write_dataset(ds: Dataset, out: str | Path, *, format: str, link_images: bool = True) -> Path:
    """Write `ds` in `format` under `out` (a folder for pts, else the annotation file); returns what was written.

    With `link_images`, every image is symlinked into the output so that relative image paths resolve there;
    otherwise the annotations point at the images where they are.
    """
    if format not in FORMATS:
        raise InputError(f"unknown format '{format}': expected one of {', '.join(FORMATS)}")
    return _module(format).write(ds, Path(out), link_images=link_images)


def relative_image_path(ds: Dataset, i: int) -> Path:
    """Face `i`'s image path relative to the dataset root (its absolute path when outside the root)."""
    p = ds.image_paths[i]
    # Lexical first: an image that is a symlink (e.g. linked by a writer) keeps its place under the root.
    for path, root in ((Path(os.path.abspath(p)), Path(os.path.abspath(ds.root))), (p.resolve(), ds.root.resolve())):
        try:
            return path.relative_to(root)
        except ValueError:
            continue
    return p.resolve()


def link_image_files(ds: Dataset, out_dir: Path) -> list[Path]:
    """Symlink each image of `ds` into `out_dir` at its path relative to the root; returns those relative paths."""
    rels, linked = [], {}
    for i in range(len(ds)):
        rel = relative_image_path(ds, i)
        if rel.is_absolute():
            rel = Path(rel.name)
        target = out_dir / rel
        src = ds.image_paths[i].resolve()
        if linked.setdefault(rel, src) != src:
            raise InputError(f"two images outside the dataset root would both be linked as '{rel}': "
                             f"{linked[rel]} and {src}", path=out_dir)
        if not (target.exists() and target.resolve() == src):
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(src, target)
        rels.append(rel)
    return rels


def os_reason(error: OSError, path: str | Path) -> str:
    """What an OSError on `path` means to a user, in a few words."""
    if error.errno == errno.ELOOP:
        return "a symbolic link loop"
    if error.errno == errno.ENOENT and os.path.lexists(path):
        return "a broken symbolic link (its target does not exist)"
    if error.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    return error.strerror or type(error).__name__


def is_regular_file(path: str | Path) -> bool:
    """True for a regular file (links followed): never a folder, FIFO, socket or device, a broken link or a path the
    system refuses (too long, a NUL byte)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def list_files(root: Path, suffix: str) -> list[Path]:
    """Every entry below folder `root` (recursively, links to folders not followed) whose name ends in `suffix`
    (any case), sorted; an InputError for a sub-folder that cannot be read."""
    found = []

    def refuse(error: OSError) -> None:
        where = error.filename or root
        raise InputError(f"cannot read this folder ({os_reason(error, where)}); fix its permissions or move it out of "
                         "the dataset", path=where)

    for folder, dirs, files in os.walk(root, onerror=refuse):
        dirs.sort()
        found += [Path(folder) / name for name in files + dirs if name.lower().endswith(suffix)]
    return sorted(found)


def find_image_beside(annotation: Path) -> Path | None:
    """The image next to an annotation file with the same stem (or the stem less a `_NN` face suffix)."""
    stems = [annotation.stem]
    head, _, tail = annotation.stem.rpartition("_")
    if head and tail.isdigit():
        stems.append(head)
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            for cand in (annotation.with_name(stem + suffix), annotation.with_name(stem + suffix.upper())):
                if is_regular_file(cand):
                    return cand
    return None


def read_annotation_text(path: Path, expected: str) -> str:
    """The text of an annotation file (UTF-8, a byte-order mark allowed); an InputError for a folder or bytes.

    `expected` names the format for the message, e.g. "a .csv file".
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError) as e:
        reason = os_reason(e, path) if isinstance(e, OSError) else "not a valid path"
        raise InputError(f"cannot read: {reason} (expected {expected})", path=path) from None
    if stat.S_ISDIR(mode):
        raise InputError(f"expected {expected}, got a folder", path=path)
    if not stat.S_ISREG(mode):
        raise InputError(f"not a regular file (a FIFO, socket or device; expected {expected})", path=path)
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise InputError(f"not a UTF-8 text file (expected {expected})", path=path) from None
    except OSError as e:
        raise InputError(f"cannot read: {os_reason(e, path)} (expected {expected})", path=path) from None


def parse_float(text: str, *, path: Path, line: int | None = None, field: str | None = None) -> float:
    """A finite coordinate (|value| <= MAX_COORDINATE px) from `text`, or an InputError naming where it came from."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"expected a number, got {text[:40]!r}", path=path, line=line, field=field) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"expected a finite number, got {text[:40]!r}", path=path, line=line, field=field)
    if abs(value) > MAX_COORDINATE:
        raise InputError(f"expected a coordinate within +-{MAX_COORDINATE:g} px, got {text[:40]!r}", path=path,
                         line=line, field=field)
    return value


def face_ids(image_rels: list[str], annotators: list[str] | None = None) -> list[str]:
    """Face ids from their images' paths as written: the path without extension, `#i` (0-based, in order) appended
    when one image holds several faces. With `annotators` (N,), `annotator/id` where `id` is the face's id among
    that annotator's faces alone (so the same image labelled by two annotators gives `alice/a` and `bob/a`)."""
    if annotators is not None:
        groups: dict[str, list[int]] = {}
        for i, annotator in enumerate(annotators):
            groups.setdefault(annotator, []).append(i)
        out = [""] * len(image_rels)
        for annotator, members in groups.items():
            for i, image_id in zip(members, face_ids([image_rels[i] for i in members]), strict=True):
                out[i] = f"{annotator}/{image_id}"
        return out
    per_image = Counter(image_rels)
    seen: Counter[str] = Counter()
    ids = []
    for rel in image_rels:
        stem = Path(rel).with_suffix("").as_posix()
        ids.append(f"{stem}#{seen[rel]}" if per_image[rel] > 1 else stem)
        seen[rel] += 1
    return ids


def where(path: Path, line: int | None = None, field: str | None = None) -> str:
    """`path:line [field]`, the place an InputError names, for `Dataset.skipped`."""
    return f"{path}" + ("" if line is None else f":{line}") + ("" if field is None else f" [{field}]")


def unique_face_ids(image_rels: list[str], path: Path, places: list[tuple[int | None, str | None]], *,
                    skip_bad: bool, skipped: list[tuple[str, str]], annotators: list[str] | None = None
                    ) -> list[str | None]:
    """`face_ids` (with `annotators` when given), None for a face whose id repeats an earlier one (skipped and
    recorded when `skip_bad`).

    `places` holds each face's (line, field) in the file at `path`, for the error.
    """
    keep = list(range(len(image_rels)))
    while True:
        ids = face_ids([image_rels[i] for i in keep], None if annotators is None else [annotators[i] for i in keep])
        first: dict[str, int] = {}
        dup = next((j for j, image_id in enumerate(ids) if first.setdefault(image_id, j) != j), None)
        if dup is None:
            break
        line, field = places[keep[dup]]
        message = f"duplicate image id '{ids[dup]}' (first at {where(path, *places[keep[first[ids[dup]]]])})"
        if not skip_bad:
            raise InputError(message, path=path, line=line, field=field)
        skipped.append((where(path, line, field), message))
        del keep[dup]
    out: list[str | None] = [None] * len(image_rels)
    for i, image_id in zip(keep, ids, strict=True):
        out[i] = image_id
    return out


def prepare_file_write(ds: Dataset, out: Path, default_name: str, *, link_images: bool) -> tuple[Path, list[str]]:
    """For a writer of one annotation file: the file (`out`, or `out/default_name` when `out` is a folder) and each
    face's image reference; an InputError when a labelled point has a non-finite coordinate."""
    if out.is_dir():
        out = out / default_name
    if not np.isfinite(ds.landmarks[ds.labelled]).all():
        raise InputError("a labelled point has a non-finite coordinate; mark it missing (visibility 0) instead")
    return out, image_refs(ds, out.parent, link_images=link_images)


def image_refs(ds: Dataset, out_dir: Path, *, link_images: bool) -> list[str]:
    """Each face's image path as an annotation file in `out_dir` should name it: the linked copy's path relative to
    `out_dir` when `link_images`, else the image's own path relative to `out_dir`."""
    if link_images:
        return [p.as_posix() for p in link_image_files(ds, out_dir)]
    return [Path(os.path.relpath(p.absolute(), out_dir.absolute())).as_posix() for p in ds.image_paths]
