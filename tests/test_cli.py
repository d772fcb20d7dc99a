import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

LFPW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfpw"
needs_lfpw = pytest.mark.skipif(not LFPW.is_dir(), reason="shared LFPW data not present")


def auditor(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


@needs_lfpw
def test_info_on_lfpw():
    r = auditor("info", LFPW, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["images"], s["faces"], s["points_per_face"], s["scheme"]) == (160, 160, 68, "300w_68")
    text = auditor("info", LFPW).stdout
    assert "300w_68" in text and "160" in text


def test_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "a.pts").write_text("version: 1\nn_points: 2\n{\n1 2\nx 3\n}\n")
    r = auditor("info", tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "a.pts:5" in r.stderr and "expected a number" in r.stderr
    r = auditor("info", tmp_path / "nothing")
    assert r.returncode == 2 and "no such file" in r.stderr
    r = auditor("info", tmp_path, "--scheme", "klingon")
    assert r.returncode == 2 and "unknown scheme 'klingon'" in r.stderr


def test_skip_bad_lists_each_skipped_file(tmp_path):
    from PIL import Image

    good = "version: 1\nn_points: 19\n{\n" + "".join(f"{i + 1} {i + 2}\n" for i in range(19)) + "}\n"
    for name in ("a", "b"):
        (tmp_path / f"{name}.pts").write_text(good)
        Image.new("RGB", (8, 8)).save(tmp_path / f"{name}.png")
    (tmp_path / "c.pts").write_text(good.replace("{", ""))
    (tmp_path / "d.pts").write_text(good)
    assert auditor("info", tmp_path).returncode == 2
    r = auditor("info", tmp_path, "--skip-bad", "--json")
    assert r.returncode == 0
    assert json.loads(r.stdout)["faces"] == 2
    skipped = [line for line in r.stderr.splitlines() if line.startswith("skipped")]
    assert len(skipped) == 2 and "c.pts" in skipped[0] and "d.pts" in skipped[1] and "missing image" in skipped[1]


def test_help_for_every_command():
    for cmd in ("info", "synth", "plant-noise"):
        r = auditor(cmd, "--help")
        assert r.returncode == 0 and "Usage" in r.stdout


@needs_lfpw
def test_plant_noise_on_lfpw(tmp_path):
    out = tmp_path / "noisy"
    r = auditor("plant-noise", LFPW, out, "--seed", "3", "--gross-rate", "0.05", "--swap-rate", "0.1")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out / "truth" / "noise.csv")
    assert list(table.columns) == ["image_id", "point", "kind", "dx", "dy", "magnitude_nme"]
    assert not table.kind.isin(["slide", "jitter"]).any()
    swapped = table[table.kind == "swap"].image_id.nunique()
    n_points = (160 - swapped) * 68
    for kind, rate in (("gross", 0.05), ("moderate", 0.02)):
        count = (table.kind == kind).sum()
        assert abs(count - rate * n_points) < 4 * np.sqrt(rate * n_points), kind
    assert abs(swapped - 16) < 4 * np.sqrt(16)
    # the noisy copy reads back in the input's format, images linked, not copied
    from auditor.io import read_dataset

    noisy, truth = read_dataset(out / "faces"), read_dataset(out / "truth")
    assert len(noisy) == 160 and (out / "faces" / "image_0001.png").is_symlink()
    moved = np.linalg.norm(noisy.landmarks - truth.landmarks, axis=-1) > 1e-6
    assert moved.sum() == len(table.drop_duplicates(["image_id", "point"]))
    assert auditor("plant-noise", LFPW, out).returncode == 2  # exists, no --force


def test_synth_cli_is_deterministic(tmp_path):
    for name in ("a", "b"):
        r = auditor("synth", tmp_path / name, "--n", "3", "--seed", "5", "--size", "96")
        assert r.returncode == 0, r.stderr
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) >= 3 * 3 + 1
    assert all((tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes() for f in files_a)


def test_synth_cli_with_annotators(tmp_path):
    out = tmp_path / "team"
    r = auditor("synth", out, "--n", "3", "--seed", "5", "--size", "64", "--annotators", "3", "--per-face", "2")
    assert r.returncode == 0, r.stderr
    team = pd.read_csv(out / "truth" / "annotators.csv")
    assert list(team.name) == ["annotator_1", "annotator_2", "annotator_3"] and team.faces.sum() == 6
    assert len(list((out / "faces").glob("*/*.pts"))) == 6 and not list((out / "faces").glob("*.pts"))
    assert len(list((out / "faces").glob("*.jpg"))) == 3
    for args in (("--per-face", "2"), ("--annotators", "2", "--per-face", "3")):
        r = auditor("synth", tmp_path / "bad", "--n", "1", "--size", "64", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1 and "--per-face" in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()


def _tiny_pts_dataset(root: Path) -> list[str]:
    """Three 68-point faces, one in a sub-folder, each with its image beside it; returns their ids."""
    from PIL import Image

    from auditor.io.pts import format_pts

    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    base = np.stack([np.cos(t), np.sin(t)], -1) * 20 + 32
    ids = ["a", "b", "sub/c"]
    for i, image_id in enumerate(ids):
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        (root / f"{image_id}.pts").write_text(format_pts(base + i))
        Image.new("RGB", (64, 64)).save(root / f"{image_id}.png")
    return ids


def test_plant_noise_with_annotators_on_a_tiny_pts_dataset(tmp_path):
    from auditor.io import read_dataset

    data, out = tmp_path / "data", tmp_path / "out"
    ids = _tiny_pts_dataset(data)
    r = auditor("plant-noise", data, out, "--annotators", "3", "--per-face", "2", "--seed", "1")
    assert r.returncode == 0, r.stderr
    team = pd.read_csv(out / "truth" / "annotators.csv")
    assert list(team.name) == ["annotator_1", "annotator_2", "annotator_3"] and team.faces.sum() == 6
    noise = pd.read_csv(out / "truth" / "noise.csv")
    assert list(noise.columns) == ["image_id", "point", "kind", "dx", "dy", "magnitude_nme"]
    # the labels: a pts tree OUT/faces/<annotator>/<id>.pts, each image linked once at its place in the dataset
    labels = read_dataset(out / "faces", annotators_from="folder")
    assert len(labels) == 6 and set(labels.annotators) <= set(team.name)
    assert {i.split("/", 1)[1] for i in labels.image_ids} == set(ids)
    assert set(noise.image_id) <= set(labels.image_ids)
    for image_id in ids:
        assert (out / "faces" / f"{image_id}.png").is_symlink()
        assert len(list((out / "faces").glob(f"annotator_*/{image_id}.pts"))) == 2
    truth = read_dataset(out / "truth")
    assert truth.image_ids == ids and np.allclose(truth.landmarks, read_dataset(data).landmarks)
    again = tmp_path / "again"
    assert auditor("plant-noise", data, again, "--annotators", "3", "--per-face", "2", "--seed", "1").returncode == 0

    def written(root: Path) -> dict[str, bytes]:
        files = [*(root / "faces").rglob("*.pts"), root / "truth" / "annotators.csv", root / "truth" / "noise.csv"]
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in files}

    assert len(written(out)) == 8 and written(out) == written(again)  # the same seed, the same annotators


def test_plant_noise_with_annotators_keeps_csv_and_refuses_wflw(tmp_path):
    from auditor.io import read_dataset, write_dataset

    data = tmp_path / "data"
    _tiny_pts_dataset(data)
    ds = read_dataset(data)
    write_dataset(ds, tmp_path / "csv" / "labels.csv", format="csv")
    write_dataset(ds, tmp_path / "wflw" / "labels.txt", format="wflw")
    r = auditor("plant-noise", tmp_path / "csv" / "labels.csv", tmp_path / "out", "--annotators", "2")
    assert r.returncode == 0, r.stderr
    labels = read_dataset(tmp_path / "out" / "faces" / "labels.csv")
    assert len(labels) == 2 * len(ds) and sorted(set(labels.annotators)) == ["annotator_1", "annotator_2"]
    assert sorted(labels.image_ids) == sorted(f"annotator_{a}/{i}" for a in (1, 2) for i in ds.image_ids)
    r = auditor("plant-noise", tmp_path / "wflw" / "labels.txt", tmp_path / "out2", "--annotators", "2")
    assert r.returncode == 2 and "WFLW" in r.stderr and not (tmp_path / "out2").exists()


def _pts_tree_with_annotators(root: Path) -> None:
    from helpers import write_image

    from auditor.io.pts import format_pts

    for name in ("alice/a.pts", "bob/a.pts", "carol/a.pts", "alice/b.pts"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(format_pts(np.random.default_rng(0).uniform(0, 50, (19, 2))))
    write_image(root / "a.png")
    write_image(root / "b.png")


def test_info_counts_annotators_and_subjects(tmp_path):
    from helpers import run_auditor

    _pts_tree_with_annotators(tmp_path)
    r = run_auditor("info", tmp_path, "--annotators-from", "folder", "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert (s["faces"], s["images"], s["annotators"], s["subjects"]) == (4, 2, 3, 2)
    assert s["faces_per_annotator"] == {"alice": 2, "bob": 1, "carol": 1}
    assert s["labelled_k_times"] == {"1": 1, "3": 1}
    text = run_auditor("info", tmp_path, "--annotators-from", "folder").stdout.splitlines()
    at = text.index("faces per annotator")
    assert text[at + 1].split() == ["alice", "2"] and text[at + 3].split() == ["carol", "1"]
    assert text[text.index("labelled k times") + 2].split() == ["3", "1"]


def test_annotators_from_folder_refuses_other_formats(tmp_path):
    from helpers import run_auditor, write_image

    write_image(tmp_path / "a.png")
    (tmp_path / "l.csv").write_text("image,annotator," + ",".join(f"x{i},y{i}" for i in range(19)) + "\na.png,ann,"
                                    + ",".join(["1"] * 38) + "\n")
    r = run_auditor("info", tmp_path / "l.csv", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["faces_per_annotator"] == {"ann": 1}
    r = run_auditor("info", tmp_path / "l.csv", "--annotators-from", "folder")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "l.csv: annotators from folders need" in r.stderr
    r = run_auditor("info", tmp_path / "l.csv", "--annotators-from", "file")
    assert r.returncode == 2 and "Invalid value for '--annotators-from'" in r.stderr


def test_annotators_from_on_every_command_that_reads_a_dataset():
    from helpers import run_auditor

    for cmd in ("info", "plant-noise", "train", "audit", "evaluate"):
        r = run_auditor(cmd, "--help")
        assert r.returncode == 0 and "--annotators-from" in r.stdout, cmd
