"""Where commands may write: never over, around or into their input; --force replaces only what the tool wrote."""

import hashlib
import os
from pathlib import Path

import pytest
import torch
from helpers import run_auditor

from auditor.checkpoint import save_checkpoint
from auditor.errors import InputError
from auditor.io import read_dataset
from auditor.model import LandmarkModel, get_preset
from auditor.outputs import MARKER, check_apart, check_replaceable, write_marker, written_by_tool
from auditor.synth import generate


def tree_hashes(root: Path) -> dict[str, str]:
    """Every file below `root` (links followed) by its relative path, with a hash of its bytes."""
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """4 synthetic faces, a tiny model and an audit of them, and two shard audits."""
    root = tmp_path_factory.mktemp("outputs")
    generate(root / "syn", n=4, seed=2, size=96)
    faces = root / "syn" / "faces"
    torch.manual_seed(0)
    model = LandmarkModel(68, get_preset("tiny"))
    save_checkpoint(root / "m.pt", model=model, scheme=read_dataset(faces).scheme, state={"stage": "done"})
    for out, extra in (("audit", ()), ("shard0", ("--shard", "0/2")), ("shard1", ("--shard", "1/2"))):
        r = run_auditor("audit", faces, "--model", root / "m.pt", "--out", root / out, "--workers", "0", *extra)
        assert r.returncode == 0, r.stderr
    return {"root": root, "faces": faces, "model": root / "m.pt", "audit": root / "audit"}


@pytest.fixture
def data(world, tmp_path) -> Path:
    """A fresh copy of the 4 faces (images and .pts files) in its own folder, tmp_path/data/faces."""
    faces = tmp_path / "data" / "faces"
    faces.mkdir(parents=True)
    for f in world["faces"].iterdir():
        (faces / f.name).write_bytes(f.read_bytes())
    return faces


def assert_refused(r, *fragments: str) -> None:
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    for fragment in fragments:
        assert fragment in r.stderr, r.stderr


@pytest.mark.parametrize("where", ["same", "parent", "inside", "link to it"])
def test_plant_noise_never_replaces_its_input(data, where):
    before = tree_hashes(data.parent)
    out = {"same": data, "parent": data.parent, "inside": data / "noisy", "link to it": data.parent / "link"}[where]
    if where == "link to it":
        out.symlink_to(data)
    r = run_auditor("plant-noise", data, out, "--force")
    assert_refused(r, "input of the command")
    assert tree_hashes(data.parent) == before
    assert len(read_dataset(data)) == 4


def test_force_replaces_only_what_the_tool_wrote(data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's own file")
    assert_refused(run_auditor("plant-noise", data, mine, "--force"), "not written by `auditor plant-noise`")
    assert (mine / "notes.txt").read_text() == "a user's own file"
    out = tmp_path / "noisy"
    assert run_auditor("plant-noise", data, out).returncode == 0
    assert written_by_tool(out, "plant-noise") and len(read_dataset(out / "faces")) == 4
    assert_refused(run_auditor("plant-noise", data, out), "exists; pass --force")
    r = run_auditor("plant-noise", data, out, "--force", "--seed", "7")
    assert r.returncode == 0, r.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_synth_force_replaces_only_its_own_folders(tmp_path):
    (tmp_path / "faces").mkdir()
    (tmp_path / "faces" / "photo.jpg").write_bytes(b"a user's photo")
    assert_refused(run_auditor("synth", tmp_path, "--n", "1", "--size", "64", "--force"), "not written by")
    assert (tmp_path / "faces" / "photo.jpg").read_bytes() == b"a user's photo"
    other = tmp_path / "other"
    assert run_auditor("synth", other, "--n", "1", "--size", "64").returncode == 0
    assert written_by_tool(other / "faces", "synth") and written_by_tool(other / "truth", "synth")
    assert run_auditor("synth", other, "--n", "2", "--size", "64", "--force").returncode == 0
    assert len(read_dataset(other / "faces")) == 2


def test_audit_never_writes_over_or_into_its_inputs(world, data, tmp_path):
    before = tree_hashes(data.parent)
    for out in (data, data.parent, data / "audit", tmp_path / "model_dir"):
        model = world["model"]
        if out.name == "model_dir":
            out.mkdir()
            model = out / "m.pt"
            model.write_bytes(world["model"].read_bytes())
        r = run_auditor("audit", data, "--model", model, "--out", out, "--workers", "0")
        assert_refused(r, "input of the command")
    assert tree_hashes(data.parent) == before


def test_merge_never_writes_over_a_shard(world, tmp_path):
    root = world["root"]
    before = tree_hashes(root / "shard0")
    for out in (root / "shard0", root / "shard1" / "merged", root):
        assert_refused(run_auditor("merge", root / "shard0", root / "shard1", "--out", out), "input of the command")
    assert tree_hashes(root / "shard0") == before
    r = run_auditor("merge", root / "shard0", root / "shard1", "--out", tmp_path / "merged")
    assert r.returncode == 0, r.stderr


def test_export_never_writes_labels_over_its_inputs(world, tmp_path):
    audit = world["audit"]
    before = tree_hashes(world["faces"].parent), tree_hashes(audit)
    for out in (world["faces"].parent, audit, audit / "labels", world["faces"] / "fixed"):
        r = run_auditor("export-corrections", audit, "--write-labels", out)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("x")
    assert_refused(run_auditor("export-corrections", audit, "--write-labels", mine), "not written by")
    assert (tree_hashes(world["faces"].parent), tree_hashes(audit)) == before
    fixed = tmp_path / "fixed"
    for _ in range(2):  # an earlier export is replaced whole
        r = run_auditor("export-corrections", audit, "--write-labels", fixed)
        assert r.returncode == 0, r.stderr
    assert written_by_tool(fixed, "export-corrections") and len(read_dataset(fixed)) == 4


def test_export_table_target_errors(world, tmp_path):
    audit = world["audit"]
    (tmp_path / "file.txt").write_text("x")
    cases = ((tmp_path, "is a folder"), (tmp_path / "file.txt" / "c.csv", "is not a folder"),
             (audit / "points.parquet", "input of the command"), (audit / "manifest.json", "input of the command"))
    for out, fragment in cases:
        assert_refused(run_auditor("export-corrections", audit, "-o", out), fragment)
    assert (tmp_path / "file.txt").read_text() == "x"


@pytest.mark.parametrize("command", ["plant-noise", "synth"])
def test_a_path_under_a_file(data, tmp_path, command):
    (tmp_path / "file.txt").write_text("x")
    args = (data,) if command == "plant-noise" else ("--n", "1")
    r = run_auditor(command, *args, tmp_path / "file.txt" / "out") if command == "plant-noise" else \
        run_auditor(command, tmp_path / "file.txt" / "out", *args)
    assert_refused(r, "is not a folder")
    assert (tmp_path / "file.txt").read_text() == "x"


def test_check_apart_follows_links(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    for out in (tmp_path / "alias", tmp_path / "alias" / "x", tmp_path):
        with pytest.raises(InputError, match="input of the command"):
            check_apart(out, [tmp_path / "data"])
    check_apart(tmp_path / "elsewhere", [tmp_path / "data"])
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    with pytest.raises(InputError, match="cannot resolve"):
        check_apart(tmp_path / "loop" / "x", [tmp_path / "data"])


def test_markers(tmp_path):
    check_replaceable(tmp_path / "absent", force=False, command="synth")
    check_replaceable(tmp_path, force=False, command="synth")  # empty
    write_marker(tmp_path, "synth")
    assert (tmp_path / MARKER).is_file() and written_by_tool(tmp_path) and not written_by_tool(tmp_path, "audit")
    with pytest.raises(InputError, match="pass --force"):
        check_replaceable(tmp_path, force=False, command="synth")
    check_replaceable(tmp_path, force=True, command="synth")
    (tmp_path / MARKER).write_text("{not json")
    with pytest.raises(InputError, match="not written by"):
        check_replaceable(tmp_path, force=True, command="synth")
    os.remove(tmp_path / MARKER)
