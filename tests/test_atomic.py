import os

import pytest

from auditor.atomic import atomic_open, atomic_write_text


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
