"""Atomic writes: data goes to a temp file beside the target, then a rename puts it in place.

A folder's temp sibling is named `.NAME.PID.XXXXXXXX.tmp` (or `.old` while the previous folder is moved away), so
that one left by a killed process can be told from one a live process is writing: the next write of NAME sweeps
those whose process is gone and that are older than the process sweeping them.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

PROCESS_START = time.time()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", *, encoding: str | None = "utf-8",
                newline: str | None = None) -> Iterator[IO]:
    """Open a temp file beside `path`; on a clean exit it is fsynced and renamed over `path`, else removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())
    binary = "b" in mode
    try:
        with os.fdopen(fd, mode, encoding=None if binary else encoding, newline=None if binary else newline) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write `text` to `path` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_temps(path: str | Path) -> list[Path]:
    """Remove the temp siblings of folder `path` that a killed writer left: their process is gone and they are older
    than this one. A writer killed between moving the old folder away and renaming the new one into place left
    `path` missing: the old folder is put back. Returns what was removed."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(\d+)\.[^.]+\.(tmp|old)")
    removed = []
    try:
        siblings = list(path.parent.iterdir())
    except OSError:
        return removed
    for sibling in siblings:
        match = pattern.fullmatch(sibling.name)
        if match is None or _process_alive(int(match[1])):
            continue
        try:
            if sibling.is_symlink() or not sibling.is_dir() or sibling.lstat().st_mtime >= PROCESS_START:
                continue
        except OSError:
            continue
        if match[2] == "old" and not os.path.lexists(path) and (sibling / path.name).is_dir():
            os.replace(sibling / path.name, path)
        shutil.rmtree(sibling, ignore_errors=True)
        removed.append(sibling)
    return removed


def _temp_sibling(path: Path, suffix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=suffix, dir=path.parent))


@contextlib.contextmanager
def atomic_directory(path: str | Path, *, carry: tuple[str, ...] = ()) -> Iterator[Path]:
    """Yield a temp directory beside `path`; on a clean exit it replaces `path` whole, else it is removed.

    Files named in `carry` (e.g. a review database) are copied from the old directory into the new one first;
    the old directory is removed only once the new one is in place. Temp folders of `path` left by killed
    writers are swept first (`sweep_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(path)
    tmp = _temp_sibling(path, ".tmp")
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        old = None
        if path.exists():
            if not path.is_dir():
                raise FileExistsError(f"{path} exists and is not a directory")
            for name in carry:
                if (path / name).exists() and not (tmp / name).exists():
                    shutil.copy2(path / name, tmp / name)
            old = _temp_sibling(path, ".old")
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
