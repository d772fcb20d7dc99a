"""Where a command may write: never over, around or into its input, and `--force` replaces only what this tool wrote.

Every command that writes a folder (`synth`, `plant-noise`, `audit`, `merge`, `export-corrections --write-labels`)
checks its output against its inputs with links followed: an output that is an input, contains one (replacing it
would delete it) or lies inside one (a `.pts` folder would read it back as data) is refused. A folder the tool wrote
carries a marker file (`MARKER`), or is an audit (its `manifest.json`); only such a folder is ever replaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from auditor import __version__
from auditor.atomic import atomic_write_text
from auditor.errors import InputError

MARKER = ".landmark-auditor"


def resolved(path: str | Path, *, field: str | None = None) -> Path:
    """`path` made absolute with every link followed (as far as it exists); an InputError for a link loop."""
    try:
        return Path(path).resolve()
    except (RuntimeError, OSError) as e:  # RuntimeError: "Symlink loop from ..." (Python < 3.13)
        raise InputError(f"cannot resolve the path ({' '.join(str(e).split())})", path=path, field=field) from None


def check_writable_location(out: str | Path, *, field: str | None = None) -> None:
    """An InputError when `out` cannot be created: some folder above it is a file (or a dangling link), or the
    nearest existing folder above it cannot be written (a read-only mount, no permission)."""
    out = Path(out)
    for parent in out.parents:
        if os.path.lexists(parent):
            if not parent.is_dir():
                raise InputError(f"cannot write here: '{parent}' is not a folder", path=out, field=field)
            if not os.access(parent, os.W_OK | os.X_OK):
                raise InputError(f"cannot write here: the folder '{parent}' is read-only", path=out, field=field)
            return


def dataset_inputs(ds, annotation: str | Path) -> list[Path]:
    """What an output must leave alone for dataset `ds` read from `annotation`: the annotation file or folder, and
    every image (resolved)."""
    return [resolved(annotation), *{resolved(p) for p in ds.image_paths}]


def check_apart(out: str | Path, inputs: Iterable[str | Path], *, field: str | None = None) -> None:
    """An InputError when `out` is, contains or lies inside one of `inputs` (links followed on both sides)."""
    out_r = resolved(out, field=field)
    above = set(out_r.parents)
    for path in inputs:
        path_r = resolved(path)
        if path_r == out_r:
            raise InputError(f"this is an input of the command ({path}); choose another output", path=out,
                             field=field)
        if out_r in path_r.parents:
            raise InputError(f"this folder holds an input of the command ({path}): replacing it would delete it; "
                             "choose another output", path=out, field=field)
        if path_r in above:
            raise InputError(f"this lies inside an input of the command ({path}); choose an output outside it",
                             path=out, field=field)


def write_marker(folder: str | Path, command: str) -> None:
    """Mark `folder` as written by `auditor COMMAND` (a small JSON file), so that `--force` may replace it later."""
    atomic_write_text(Path(folder) / MARKER, json.dumps({"written_by": f"auditor {command}",
                                                         "tool_version": __version__}) + "\n")


def written_by_tool(folder: str | Path, command: str | None = None) -> bool:
    """True when `folder` carries this tool's marker file (written by `auditor COMMAND` when `command` is given)."""
    marker = Path(folder) / MARKER
    try:
        if not marker.is_file() or marker.stat().st_size > 4096:
            return False
        data = json.loads(marker.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    if not isinstance(data, dict):
        return False
    written_by = str(data.get("written_by", ""))
    return written_by == f"auditor {command}" if command else written_by.startswith("auditor ")


def is_empty_folder(folder: str | Path) -> bool:
    """True for an existing folder without any entry."""
    try:
        return Path(folder).is_dir() and not any(Path(folder).iterdir())
    except OSError:
        return False


def check_replaceable(out: str | Path, *, force: bool, command: str, field: str | None = None) -> None:
    """An InputError unless folder `out` may be written by `command`: absent, empty, or (with `force`) written by
    this tool."""
    out = Path(out)
    check_writable_location(out, field=field)
    if not os.path.lexists(out) or is_empty_folder(out):
        return
    if not out.is_dir():
        raise InputError("exists and is not a folder; choose another output", path=out, field=field)
    if not written_by_tool(out, command):
        raise InputError(f"exists and was not written by `auditor {command}` (no {MARKER} file in it); refusing to "
                         "replace it: choose another output", path=out, field=field)
    if not force:
        raise InputError("exists; pass --force to replace it", path=out, field=field)
