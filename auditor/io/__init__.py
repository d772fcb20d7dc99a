"""Annotation formats: detect, read into a `Dataset`, write back. One module per format."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.schemes import LandmarkScheme, get_scheme

FORMATS = ("pts", "wflw", "csv", "coco")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _module(fmt: str):
    return importlib.import_module({"pts": "auditor.io.pts", "wflw": "auditor.io.wflw", "csv": "auditor.io.csv_io",
                                    "coco": "auditor.io.coco"}[fmt])


def detect_format(path: str | Path) -> str:
    """The format of a dataset path: a folder of `.pts`, a WFLW `.txt`, a `.csv` or a COCO `.json`."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    if path.is_dir():
        if next(iter(sorted(p for p in path.rglob("*") if p.suffix.lower() == ".pts")), None) is not None:
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
                 skip_bad: bool = False, images_root: str | Path | None = None) -> Dataset:
    """Read a dataset in any supported format (detected unless `format` is given) into a `Dataset`."""
    path = Path(path)
    fmt = format or detect_format(path)
    if fmt not in FORMATS:
        raise InputError(f"unknown format '{fmt}': expected one of {', '.join(FORMATS)}")
    if not path.exists():
        raise InputError("no such file or folder", path=path)
    resolved = None if scheme is None else get_scheme(scheme)
    ds = _module(fmt).read(path, scheme=resolved, skip_bad=skip_bad,
                           images_root=None if images_root is None else Path(images_root))
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
    try:
        return p.resolve().relative_to(ds.root.resolve())
    except ValueError:
        return p.resolve()


def link_image_files(ds: Dataset, out_dir: Path) -> list[Path]:
    """Symlink each image of `ds` into `out_dir` at its path relative to the root; returns those relative paths."""
    rels = []
    for i in range(len(ds)):
        rel = relative_image_path(ds, i)
        if rel.is_absolute():
            rel = Path(rel.name)
        target = out_dir / rel
        src = ds.image_paths[i].resolve()
        if not (target.exists() and target.resolve() == src):
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            os.symlink(src, target)
        rels.append(rel)
    return rels


def find_image_beside(annotation: Path) -> Path | None:
    """The image next to an annotation file with the same stem (or the stem less a `_NN` face suffix)."""
    stems = [annotation.stem]
    head, _, tail = annotation.stem.rpartition("_")
    if head and tail.isdigit():
        stems.append(head)
    for stem in stems:
        for suffix in IMAGE_SUFFIXES:
            for cand in (annotation.with_name(stem + suffix), annotation.with_name(stem + suffix.upper())):
                if cand.is_file():
                    return cand
    return None


def parse_float(text: str, *, path: Path, line: int | None = None, field: str | None = None) -> float:
    """A finite float from `text`, or an InputError naming where it came from."""
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"expected a number, got {text!r}", path=path, line=line, field=field) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InputError(f"expected a finite number, got {text!r}", path=path, line=line, field=field)
    return value
