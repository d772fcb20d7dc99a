import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import run_auditor

from auditor import audit as audit_module
from auditor.audit import audit_tables, merge_audits, parse_shard, run_audit, shard_range
from auditor.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from auditor.errors import InputError
from auditor.geometry import apply_affine
from auditor.inference import iterate_heatmaps
from auditor.io import read_dataset
from auditor.model import LandmarkModel, get_preset
from auditor.scoring import ISSUE_TYPES, ScoringConfig
from auditor.search import SearchConfig, search
from auditor.synth import generate

POINT_COLUMNS = ["image_id", "point", "point_name", "group", "x_human", "y_human", "x_searched", "y_searched",
                 "x_pred", "y_pred", "searched_nme", "pred_err_nme", "tangential_nme", "normal_nme", "peak",
                 "anisotropy", "angle", "gaussianity_human", "gaussianity_searched", "flat_hat", "label_score",
                 "issue_type", "is_label_issue"]
IMAGE_COLUMNS = ["image_id", "nme_searched", "nme_pred", "worst_point", "image_label_score", "num_label_issues",
                 "swapped_sides", "swap_ratio"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("audit")
    generate(root / "syn", n=7, seed=5, size=96)
    ds = read_dataset(root / "syn" / "faces")
    torch.manual_seed(0)
    model = LandmarkModel(ds.num_points, get_preset("tiny"))
    save_checkpoint(root / "m.pt", model=model, scheme=ds.scheme, state={"stage": "done"})
    whole = root / "whole"
    run_audit(ds, root / "m.pt", whole, source={"path": str(root / "syn" / "faces")}, device="cpu", batch_size=3,
              progress=False)
    return root, ds, whole


def test_audit_directory_has_every_column_and_a_consistent_store(setup):
    root, ds, whole = setup
    points = pd.read_parquet(whole / "points.parquet")
    images = pd.read_parquet(whole / "images.parquet")
    manifest = json.loads((whole / "manifest.json").read_text())
    assert set(POINT_COLUMNS) <= set(points.columns) and set(IMAGE_COLUMNS) <= set(images.columns)
    assert len(points) == 7 * 68 and len(images) == 7
    assert list(points["image_id"][:68]) == [ds.image_ids[0]] * 68 and list(points["point"][:3]) == [0, 1, 2]
    np.testing.assert_allclose(points[["x_human", "y_human"]].to_numpy().reshape(7, 68, 2), ds.landmarks)
    scores = points["label_score"].to_numpy()
    assert np.isfinite(scores).all() and (scores >= 0).all() and (scores <= 1).all()
    assert set(points["issue_type"]) <= {"", *ISSUE_TYPES}
    assert (points["is_label_issue"] == (points["issue_type"].isin(["gross_error", "off_contour", "swapped_sides"])
                                         | (scores < manifest["scoring"]["issue_threshold"]))).all()
    assert manifest["counts"]["faces"] == 7 and manifest["counts"]["label_issues"] == points["is_label_issue"].sum()
    assert 0 < manifest["scoring_fitted"]["pred_weight"] <= 1 and manifest["scoring"]["pred_weight"] is None
    assert (whole / manifest["dataset"]["path"]).resolve() == (root / "syn" / "faces").resolve()
    assert manifest["dataset"]["fingerprint"] == ds.fingerprint()
    windows = np.load(whole / "heatmaps" / "windows.npy", mmap_mode="r")
    side = manifest["heatmaps"]["window"]
    assert windows.shape == (7, 68, side, side) and windows.dtype == np.float16 and side == 9  # R = 32: h = 4
    assert manifest["heatmaps"]["bytes_per_face"] == windows[0].nbytes and manifest["heatmaps"]["flip_averaged"]


def test_audit_tables_in_memory_are_the_written_audit_also_when_sharded_and_gathered(setup):
    root, ds, whole = setup
    model, _ = model_from_checkpoint(load_checkpoint(root / "m.pt"))
    written = pd.read_parquet(whole / "points.parquet")
    # the written audit's threshold is calibrated; in memory (training's rounds) the scoring's is used
    scoring = ScoringConfig(**json.loads((whole / "manifest.json").read_text())["scoring"])
    points, images = audit_tables(model, ds, batch_size=3, scoring=scoring)
    pd.testing.assert_frame_equal(points, written, check_dtype=False)
    pd.testing.assert_frame_equal(images, pd.read_parquet(whole / "images.parquet"), check_dtype=False)
    other = []  # process 1 of 2 measures the odd faces; process 0 gathers them in the same order

    def keep(values):
        other.append(values)
        return values

    audit_tables(model, ds, batch_size=2, shard=(1, 2), gather=keep)
    assert all(np.isnan(v[0::2]).all() and not np.isnan(v[1::2]).all() for v in other)
    pending = iter(other)
    sharded, _ = audit_tables(model, ds, batch_size=2, shard=(0, 2), scoring=scoring,
                              gather=lambda values: np.where(np.isnan(values), next(pending), values))
    pd.testing.assert_frame_equal(sharded, written, check_dtype=False, atol=1e-4)  # other batches: float noise


def test_store_holds_the_ghcu_heatmap_around_each_label(setup):
    root, ds, whole = setup
    windows = np.load(whole / "heatmaps" / "windows.npy")
    origins = np.load(whole / "heatmaps" / "origins.npy")
    to_hm = np.load(whole / "heatmaps" / "to_heatmap.npy")
    model, _ = model_from_checkpoint(load_checkpoint(root / "m.pt"))
    batch = next(iterate_heatmaps(model, ds, batch_size=2, flip=True))  # the audit's default
    np.testing.assert_allclose(to_hm[:2], batch.to_heatmap)
    heat = batch.ghcu_heatmaps.clamp_min(0).numpy()
    side = windows.shape[-1]
    for n, k in [(0, 0), (1, 30), (1, 67)]:
        x0, y0 = origins[n, k]
        size = heat.shape[-1]
        expected = np.zeros((side, side))
        for i in range(side):
            for j in range(side):
                if 0 <= y0 + i < size and 0 <= x0 + j < size:
                    expected[i, j] = heat[n, k, y0 + i, x0 + j]
        np.testing.assert_allclose(windows[n, k], expected, atol=2e-3, rtol=2e-3)


def test_contour_points_are_proposed_by_the_tighter_search_and_scored_by_the_broad_one(setup):
    root, ds, whole = setup
    model, _ = model_from_checkpoint(load_checkpoint(root / "m.pt"))
    batch = next(iterate_heatmaps(model, ds, batch_size=3, flip=True))
    label = apply_affine(batch.to_heatmap, ds.landmarks[:3])
    tangents = torch.from_numpy(ds.scheme.contour_tangents(label)).float()
    points = pd.read_parquet(whole / "points.parquet").iloc[:3 * 68]
    size = batch.ghcu_heatmaps.shape[-1]
    for config, column in ((SearchConfig(), "searched_broad"), (SearchConfig().proposing(size), "searched")):
        found = search(batch.ghcu_heatmaps, torch.from_numpy(label).float(), config, contour=ds.scheme.contour_mask,
                       tangents=tangents)
        expected = batch.to_image(np.where(found.valid[..., None].numpy(), found.searched.double().numpy(), np.nan))
        stored = points[[f"x_{column}", f"y_{column}"]].to_numpy().reshape(3, 68, 2)
        np.testing.assert_allclose(stored, expected, atol=1e-3)
    contour = np.tile(ds.scheme.contour_mask, 3)
    proposed, broad = points["x_searched"].to_numpy(), points["x_searched_broad"].to_numpy()
    differ = ~np.isclose(proposed, broad, rtol=0, atol=0, equal_nan=True)
    assert differ[contour].any() and not differ[~contour].any()


def test_shards_merge_into_the_whole_audit(setup, tmp_path):
    root, ds, whole = setup
    parts = []
    for i in range(3):
        parts.append(tmp_path / f"part{i}")
        run_audit(ds, root / "m.pt", parts[-1], source={"path": str(root / "syn" / "faces")}, device="cpu",
                  shard=(i, 3), progress=False)
    assert json.loads((parts[1] / "manifest.json").read_text())["shard"]["faces"] == list(shard_range(7, 1, 3))
    merged = tmp_path / "sub" / "merged"
    manifest = merge_audits([parts[2], parts[0], parts[1]], merged)
    a, b = pd.read_parquet(whole / "points.parquet"), pd.read_parquet(merged / "points.parquet")
    # batches differ between the runs, so the convolutions' float sums do too (sub-pixel fits amplify that)
    numeric = [c for c in a.columns if a[c].dtype.kind == "f"]
    pd.testing.assert_frame_equal(a[numeric], b[numeric], check_exact=False, rtol=1e-2, atol=2e-3)
    exact = [c for c in a.columns if c not in numeric and c not in ("issue_type", "is_label_issue")]
    pd.testing.assert_frame_equal(a[exact], b[exact])
    assert (a["issue_type"] == b["issue_type"]).mean() > 0.97
    np.testing.assert_allclose(np.load(whole / "heatmaps" / "windows.npy").astype(np.float32),
                               np.load(merged / "heatmaps" / "windows.npy").astype(np.float32), atol=2e-3)
    assert manifest["shard"] is None and (merged / manifest["dataset"]["path"]).resolve() == (
        root / "syn" / "faces").resolve()
    whole_manifest = json.loads((whole / "manifest.json").read_text())
    whole_weight = whole_manifest["scoring_fitted"]["pred_weight"]
    assert manifest["scoring_fitted"]["pred_weight"] == pytest.approx(whole_weight, rel=0.02)  # refitted on all
    # a shard keeps its planted copy; the merge calibrates on all faces as the whole audit did
    assert (parts[0] / "calibration" / "points.parquet").is_file()
    assert json.loads((parts[0] / "manifest.json").read_text())["calibration"]["reason"].startswith("a shard")
    assert whole_manifest["calibration"]["calibrated"] and manifest["calibration"]["calibrated"]
    assert manifest["calibration"]["planted"] == whole_manifest["calibration"]["planted"]
    assert manifest["scoring"]["issue_threshold"] == manifest["calibration"]["threshold"]
    assert np.log(manifest["calibration"]["threshold"] / whole_manifest["calibration"]["threshold"]) == (
        pytest.approx(0, abs=0.5))
    assert not (merged / "calibration").exists()
    with pytest.raises(InputError, match="exactly once"):
        merge_audits([parts[0], parts[1]], tmp_path / "bad")
    with pytest.raises(InputError, match="not a shard"):
        merge_audits([parts[0], parts[1], whole], tmp_path / "bad")
    run_audit(ds, root / "m.pt", tmp_path / "plain1", device="cpu", shard=(1, 3), flip=False, progress=False)
    with pytest.raises(InputError, match="flip_averaged differs"):
        merge_audits([parts[0], tmp_path / "plain1", parts[2]], tmp_path / "bad")


def test_rerun_keeps_reviews_and_an_interrupted_run_leaves_the_old_audit(setup, tmp_path, monkeypatch):
    root, ds, _ = setup
    out = tmp_path / "audit"
    run_audit(ds, root / "m.pt", out, device="cpu", progress=False)
    (out / "reviews.sqlite").write_bytes(b"decisions")
    before = (out / "points.parquet").read_bytes()
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    real = audit_module._measure
    monkeypatch.setattr(audit_module, "_measure", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_audit(ds, root / "m.pt", out, device="cpu", batch_size=2, progress=False)
    assert (out / "points.parquet").read_bytes() == before and (out / "reviews.sqlite").read_bytes() == b"decisions"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]  # no temp directory left behind
    monkeypatch.setattr(audit_module, "_measure", real)
    run_audit(ds, root / "m.pt", out, device="cpu", progress=False)
    assert (out / "reviews.sqlite").read_bytes() == b"decisions"


def test_an_audit_never_replaces_a_folder_that_is_not_an_audit(setup, tmp_path):
    root, ds, whole = setup
    with pytest.raises(InputError, match="input of the command"):
        run_audit(ds, root / "m.pt", root / "syn" / "faces", device="cpu", progress=False)
    assert len(read_dataset(root / "syn" / "faces")) == 7
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "manifest.json").write_text('{"name": "my project"}')
    with pytest.raises(InputError, match="not an audit directory"):
        run_audit(ds, root / "m.pt", tmp_path / "notes", device="cpu", progress=False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="not an audit directory"):
        run_audit(ds, root / "m.pt", tmp_path / "file", device="cpu", progress=False)
    (tmp_path / "empty").mkdir()
    run_audit(ds, root / "m.pt", tmp_path / "empty", device="cpu", progress=False)
    assert (tmp_path / "empty" / "manifest.json").is_file()


def test_missing_labels_get_no_score(setup, tmp_path):
    root, ds, _ = setup
    landmarks = ds.landmarks.copy()
    visibility = ds.visibility.copy()
    visibility[1, 5] = 0
    sub = ds.with_landmarks(landmarks)
    sub.visibility = visibility
    sub = type(ds)(ds.root, ds.image_ids, ds.image_paths, landmarks, visibility, ds.scheme)
    run_audit(sub, root / "m.pt", tmp_path / "a", device="cpu", progress=False)
    points = pd.read_parquet(tmp_path / "a" / "points.parquet")
    row = points[(points["face"] == 1) & (points["point"] == 5)].iloc[0]
    assert np.isnan(row["x_human"]) and np.isnan(row["label_score"]) and row["issue_type"] == ""
    assert not row["is_label_issue"] and np.isfinite(row["x_pred"])


def test_parse_shard():
    assert parse_shard("1/4") == (1, 4)
    for bad in ("4/4", "-1/2", "a/b", "3"):
        with pytest.raises(InputError):
            parse_shard(bad)
    assert [shard_range(10, i, 3) for i in range(3)] == [(0, 3), (3, 6), (6, 10)]


def auditor_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd)


def test_cli_audit_errors_are_one_line(setup, tmp_path):
    root, ds, whole = setup
    other = LandmarkModel(19, get_preset("tiny"))
    from auditor.schemes import get_scheme

    save_checkpoint(tmp_path / "aflw.pt", model=other, scheme=get_scheme("aflw_19"), state={})
    for args, needle in (
        (["audit", root / "syn" / "faces", "--model", tmp_path / "aflw.pt", "--out", tmp_path / "x"], "19 points"),
        (["audit", root / "syn" / "faces", "--model", root / "m.pt", "--out", tmp_path / "x", "--shard", "2/2"],
         "shard"),
        (["audit", root / "syn" / "faces", "--model", tmp_path / "none.pt", "--out", tmp_path / "x"], "not found"),
        (["merge", whole, "--out", tmp_path / "y"], "not a shard"),
        (["evaluate", whole, "--noise", tmp_path / "none.csv"], "no such noise file"),
    ):
        result = auditor_cli(*args)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and needle in result.stderr, result.stderr
    assert not (tmp_path / "x").exists()


def test_cli_audit_then_evaluate(setup, tmp_path):
    root, _, _ = setup
    out = tmp_path / "cli_audit"
    result = auditor_cli("audit", root / "syn" / "faces", "--model", root / "m.pt", "--out", out, "--device", "cpu",
                         "--no-flip")
    assert result.returncode == 0, result.stderr
    assert "audited 7 faces" in result.stdout and (out / "manifest.json").is_file()
    assert json.loads((out / "manifest.json").read_text())["heatmaps"]["flip_averaged"] is False
    result = auditor_cli("evaluate", out, "--noise", root / "syn" / "truth" / "noise.csv", "--truth",
                         root / "syn" / "truth")
    assert result.returncode == 0, result.stderr
    last = dict(pair.split("=") for pair in result.stdout.strip().splitlines()[-1].split())
    expected = {"all_auroc", "all_ap", "prediction_all_auroc", "shape_all_auroc", "contour_ratio", "corrected_ratio"}
    assert expected <= set(last)
    assert 0 <= float(last["all_auroc"]) <= 1
    assert Path(out / "points.parquet").is_file()
    # a "truth" with no error on the points (as for errors planted into real labels, off the planted points):
    # the ratios over the labels' error are left out, not printed as inf
    result = auditor_cli("evaluate", out, "--noise", root / "syn" / "truth" / "noise.csv", "--truth",
                         root / "syn" / "faces")
    assert result.returncode == 0 and "Warning" not in result.stderr, result.stderr
    last = dict(pair.split("=") for pair in result.stdout.strip().splitlines()[-1].split())
    assert "contour_ratio" not in last and "corrected_ratio" not in last and "inf" not in result.stdout


def test_heatmap_store_writer_streams_rows_into_a_valid_npy(tmp_path):
    path = tmp_path / "w.npy"
    rows = np.arange(5 * 2 * 3, dtype=np.float32).reshape(5, 2, 3)
    with audit_module._NpyWriter(path, np.float16, (5, 2, 3)) as writer:
        writer.append(rows[:2])
        writer.append(rows[2:])
        with pytest.raises(ValueError, match="do not fit"):
            writer.append(rows[:1])
    np.testing.assert_array_equal(np.load(path), rows.astype(np.float16))
    with pytest.raises(RuntimeError, match="wrote 2 of 5 rows"):
        with audit_module._NpyWriter(path, np.float16, (5, 2, 3)) as writer:
            writer.append(rows[:2])
    audit_module.release_free_memory()


def test_loader_processes_change_nothing_but_the_timing(setup, tmp_path):
    root, ds, whole = setup  # audited with the default loader process
    for workers in (0, 2):
        out = tmp_path / f"w{workers}"
        manifest = run_audit(ds, root / "m.pt", out, device="cpu", batch_size=3, workers=workers, progress=False)
        assert manifest["timing"]["workers"] == workers
        points = pd.read_parquet(out / "points.parquet")
        pd.testing.assert_frame_equal(points, pd.read_parquet(whole / "points.parquet"))
        for name in ("windows.npy", "origins.npy", "to_heatmap.npy"):
            assert (out / "heatmaps" / name).read_bytes() == (whole / "heatmaps" / name).read_bytes()
    with pytest.raises(InputError, match="workers must be >= 0"):
        run_audit(ds, root / "m.pt", tmp_path / "bad", device="cpu", workers=-1, progress=False)


@pytest.fixture(scope="module")
def shards(setup, tmp_path_factory):
    """Two shard audits of the setup's faces."""
    root, ds, _ = setup
    folder = tmp_path_factory.mktemp("shards")
    for i in range(2):
        run_audit(ds, root / "m.pt", folder / f"s{i}", source={"path": str(root / "syn" / "faces")}, device="cpu",
                  shard=(i, 2), progress=False, workers=0)
    return folder / "s0", folder / "s1"


def _edit_manifest(shard, change):
    manifest = json.loads((shard / "manifest.json").read_text())
    change(manifest)
    (shard / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize(("which", "damage", "expected"), [
    (1, lambda s: (s / "heatmaps" / "windows.npy").write_bytes((s / "heatmaps" / "windows.npy").read_bytes()[:-100]),
     "windows.npy: not a readable .npy array"),
    (1, lambda s: (s / "heatmaps" / "windows.npy").unlink(), "windows.npy: missing"),
    (1, lambda s: (s / "heatmaps" / "origins.npy").write_bytes((s / "heatmaps" / "origins.npy").read_bytes().replace(
        b"}", b" ", 1)), "origins.npy: not a readable .npy array"),
    (1, lambda s: _edit_manifest(s, lambda m: m["timing"].pop("device")), "[timing.device]: expected"),
    (1, lambda s: np.save(s / "heatmaps" / "windows.npy", np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True),
     "windows.npy: not a readable .npy array"),
    (1, lambda s: np.save(s / "heatmaps" / "origins.npy", np.zeros((4, 68, 2), np.float32)), "expected int16"),
    (1, lambda s: _edit_manifest(s, lambda m: m.pop("model")), "manifest.json [model]: missing or not an object"),
    (1, lambda s: _edit_manifest(s, lambda m: m.update(shard="1/2")), "manifest.json [shard]: expected"),
    (1, lambda s: _edit_manifest(s, lambda m: m["scoring"].update(dof=4.0)), "another scoring than"),
    (0, lambda s: _edit_manifest(s, lambda m: m["scoring"].update(dof="three")), "[scoring.dof]: expected a finite"),
    (0, lambda s: _edit_manifest(s, lambda m: m["scheme"].update(points="all")), "[scheme.points]: field 'points'"),
    (1, lambda s: (s / "calibration" / "points.parquet").write_bytes(b"PAR1 not really"),
     "calibration/points.parquet: not a readable parquet file"),
    (1, lambda s: pd.read_parquet(s / "calibration" / "points.parquet").drop(columns="x_pred").to_parquet(
        s / "calibration" / "points.parquet"), "calibration/points.parquet: missing column(s) x_pred"),
    (0, lambda s: (s / "calibration" / "planted.csv").write_text("image_id,point,kind\nface_0000,left eye,gross\n"),
     "planted.csv [point]: expected a point index"),
])
def test_merge_of_a_damaged_shard_names_the_file(shards, tmp_path, which, damage, expected):
    copies = [tmp_path / s.name for s in shards]
    for s, c in zip(shards, copies, strict=True):
        shutil.copytree(s, c)
    damage(copies[which])
    with pytest.raises(InputError) as e:
        merge_audits(copies, tmp_path / "merged")
    assert str(copies[which]) in str(e.value) and expected in str(e.value), str(e.value)
    assert not (tmp_path / "merged").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["s0", "s1"]


@pytest.mark.parametrize("workers", [0, 1])
def test_a_bad_image_is_one_line_with_or_without_loader_workers(setup, tmp_path, workers):
    root, ds, _ = setup
    faces = tmp_path / "faces"
    shutil.copytree(root / "syn" / "faces", faces)
    (faces / "face_0003.jpg").write_bytes(b"")
    r = run_auditor("audit", faces, "--model", root / "m.pt", "--out", tmp_path / "out", "--workers", workers,
                    "--batch-size", "2")
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"auditor: error: {faces / 'face_0003.jpg'}: cannot read the image")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("workers", [0, 1])
def test_sigterm_removes_the_half_written_audit(setup, tmp_path, monkeypatch, workers):
    root, _, _ = setup
    out = tmp_path / "audit"
    assert run_auditor("audit", root / "syn" / "faces", "--model", root / "m.pt", "--out", out).returncode == 0
    before = (out / "points.parquet").read_bytes()
    real, calls = audit_module._measure, []

    def terminated(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(audit_module, "_measure", terminated)
    r = run_auditor("audit", root / "syn" / "faces", "--model", root / "m.pt", "--out", out, "--batch-size", "2",
                    "--workers", workers)
    assert r.returncode == 143 and "terminated" in r.stderr, r.stderr
    assert (out / "points.parquet").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit"]


def test_a_killed_audit_leaves_a_temp_folder_the_next_run_sweeps(setup, tmp_path):
    root, _, _ = setup
    stale = tmp_path / f".audit.{2**22 + 12345}.abcdefgh.tmp"  # above pid_max's default: no live process has it
    stale.mkdir()
    (stale / "points.parquet").write_bytes(b"half")
    past = time.time() - 3600
    os.utime(stale, (past, past))
    live = tmp_path / f".audit.{os.getpid()}.abcdefgh.tmp"  # a live writer's: kept
    live.mkdir()
    os.utime(live, (past, past))
    r = run_auditor("audit", root / "syn" / "faces", "--model", root / "m.pt", "--out", tmp_path / "audit")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["audit", live.name])


def test_the_threshold_is_calibrated_to_the_target_precision(setup, tmp_path):
    root, ds, whole = setup
    calibrated = json.loads((whole / "manifest.json").read_text())
    block = calibrated["calibration"]
    assert block["calibrated"] and block["target_precision"] == 0.9 and block["planted"] >= 20
    assert calibrated["scoring"]["issue_threshold"] == block["threshold"]
    assert 0.9 <= block["expected_precision"] <= 1 and 0 < block["expected_recall"] <= 1
    points = pd.read_parquet(whole / "points.parquet")
    flagged = (points.label_score < block["threshold"]) | (points.issue_type == "swapped_sides")
    assert (points.is_label_issue == flagged).all()
    plain = run_audit(ds, root / "m.pt", tmp_path / "plain", device="cpu", progress=False, target_precision=None)
    assert not plain["calibration"]["calibrated"] and "no target" in plain["calibration"]["reason"]
    assert plain["scoring"]["issue_threshold"] == ScoringConfig().issue_threshold
    loose = run_audit(ds, root / "m.pt", tmp_path / "loose", device="cpu", progress=False, target_precision=0.5)
    assert loose["calibration"]["threshold"] >= block["threshold"]
    few = run_audit(ds.subset([0, 1]), root / "m.pt", tmp_path / "few", device="cpu", progress=False)
    assert not few["calibration"]["calibrated"] and "too few" in few["calibration"]["reason"]
    done = run_auditor("audit", root / "syn" / "faces", "-m", root / "m.pt", "-o", tmp_path / "cli",
                       "--target-precision", "0")
    assert done.returncode == 0 and "not calibrated: no target precision" in done.stdout, done.stderr
    refused = run_auditor("audit", root / "syn" / "faces", "-m", root / "m.pt", "-o", tmp_path / "cli2",
                          "--target-precision", "1.5")
    assert refused.returncode == 2 and "target-precision" in refused.stderr
