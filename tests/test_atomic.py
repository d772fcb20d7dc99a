import os
import time

import pytest

from auditor.atomic import atomic_directory, atomic_open, atomic_write_text, sweep_stale_temps


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "a.txt"
    atomic_write_text(path, "one")
    atomic_write_text(path, "two")
    assert path.read_text() == "two"
    assert os.listdir(path.parent) == ["a.txt"]
    assert path.stat().st_mode & 0o644 == 0o644


def test_failure_keeps_the_previous_file(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(path, "kept")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "kept" and os.listdir(tmp_path) == ["a.txt"]


def _stale(path, pid, suffix, *, holding=""):
    """A temp sibling of `path` written by process `pid` an hour ago, holding one file or folder."""
    folder = path.with_name(f".{path.name}.{pid}.abcdefgh.{suffix}")
    folder.mkdir()
    if holding:
        (folder / holding).mkdir()
        (folder / holding / "reviews.sqlite").write_bytes(b"decisions")
    past = time.time() - 3600
    os.utime(folder, (past, past))
    return folder


def test_stale_temp_folders_of_dead_writers_are_swept(tmp_path):
    dead = 2**22 + 4321  # above Linux's default pid_max: no live process has it
    target = tmp_path / "audit"
    _stale(target, dead, "tmp", holding="half")
    live = _stale(target, os.getpid(), "tmp")
    other = _stale(tmp_path / "other", dead, "tmp")
    fresh = target.with_name(f".audit.{dead}.zzzzzzzz.tmp")
    fresh.mkdir()  # newer than this process: perhaps a writer started after it
    assert sweep_stale_temps(target) == [target.with_name(f".audit.{dead}.abcdefgh.tmp")]
    assert live.exists() and other.exists() and fresh.exists()


def test_a_writer_killed_between_the_two_renames_gets_its_old_folder_back(tmp_path):
    target = tmp_path / "audit"
    _stale(target, 2**22 + 4321, "old", holding="audit")
    with atomic_directory(target, carry=("reviews.sqlite",)) as tmp:
        (tmp / "manifest.json").write_text("{}")
    assert (target / "reviews.sqlite").read_bytes() == b"decisions" and (target / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]
