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
