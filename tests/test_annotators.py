import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from audit_fixture import assert_one_line_error
from helpers import make_dataset, run_auditor

from auditor.annotators import face_areas, take_face_areas
from auditor.audit import merge_audits, run_audit
from auditor.audit_dir import ANNOTATOR_COLUMNS, load_audit, load_tolerances
from auditor.checkpoint import save_checkpoint
from auditor.errors import InputError
from auditor.io import read_dataset
from auditor.model import LandmarkModel, get_preset
from auditor.noise import AnnotatorConfig
from auditor.synth import generate

FACES, TEAM, PER_FACE = 4, 4, 3
PLANTED_POINT, PLANTED_SHIFT = 30, 0.3  # the nose tip of one label set, moved by 0.3 normaliser
AUDIT = dict(device="cpu", batch_size=12, flip=False, workers=0, progress=False, target_precision=None)
NEW_POINT_COLUMNS = {"x_consensus", "y_consensus", "annotator_agreement"}
NEW_IMAGE_COLUMNS = {"annotator", "subject", "annotator_agreement"}


def plant(pts: Path, point: int, shift: float) -> None:
    """Move one label of a 68-point .pts file right by `shift` outer-eye-corner distances."""
    lines = pts.read_text().splitlines()
    xy = np.array([[float(v) for v in line.split()] for line in lines[3:71]])
    lines[3 + point] = f"{xy[point, 0] + shift * np.linalg.norm(xy[45] - xy[36]):.4f} {xy[point, 1]:.4f}"
    pts.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """Six synthetic faces each labelled by three of four annotators (one label moved far off), an untrained tiny
    model, and its audits: whole, two shards and their merge, and one of the first faces without annotators."""
    root = tmp_path_factory.mktemp("annotators")
    generate(root / "syn", n=FACES, seed=3, size=96, annotators=AnnotatorConfig(num_annotators=TEAM,
                                                                                  per_face=PER_FACE))
    faces = root / "syn" / "faces"
    planted = sorted(faces.glob("*/face_0000.pts"))[0]
    plant(planted, PLANTED_POINT, PLANTED_SHIFT)
    ds = read_dataset(faces, annotators_from="folder")
    torch.manual_seed(0)
    save_checkpoint(root / "m.pt", model=LandmarkModel(ds.num_points, get_preset("tiny")), scheme=ds.scheme,
                    state={"stage": "done"})
    source = {"path": str(faces), "annotators_from": "folder"}
    run_audit(ds, root / "m.pt", root / "whole", source=source, **AUDIT)
    for i in range(2):
        run_audit(ds, root / "m.pt", root / f"shard{i}", source=source, shard=(i, 2), **AUDIT)
    merge_audits([root / "shard1", root / "shard0"], root / "merged", target_precision=None)
    plain = replace(ds.subset(np.arange(FACES)), annotators=None)
    run_audit(plain, root / "m.pt", root / "plain", source={"path": str(faces)}, **AUDIT)
    return root, ds, f"{planted.parent.name}/face_0000"


def tables(audit: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    return load_audit(audit)


def test_consensus_columns_and_one_consensus_per_subject(team):
    root, ds, _ = team
    manifest, points, images = tables(root / "whole")
    assert NEW_POINT_COLUMNS <= set(points.columns) and NEW_IMAGE_COLUMNS <= set(images.columns)
    assert images["annotator"].tolist() == ds.annotators and (images["subject"] == ds.subjects()).all()
    assert images["subject"].dtype == np.int64 and len(ds) == FACES * PER_FACE
    points = points.assign(subject=np.repeat(images["subject"].to_numpy(), ds.num_points))
    spread = points.groupby(["subject", "point"])[["x_consensus", "y_consensus"]].agg(lambda v: np.ptp(v))
    assert (spread.to_numpy() == 0).all() and np.isfinite(points[["x_consensus", "y_consensus"]]).all().all()
    agreement = points["annotator_agreement"]
    assert (agreement.isna() == points["x_human"].isna()).all() and agreement.between(0, 1).all()
    np.testing.assert_allclose(images["annotator_agreement"],
                               agreement.to_numpy().reshape(len(ds), -1).mean(1), rtol=1e-12)
    block = manifest["annotators"]
    assert block["count"] == TEAM and block["subjects"] == FACES and block["labelled_k_times"] == {"3": FACES}
    assert block["witnesses"] == ["model", "search", "shape"] and block["iterations"] >= 1


def test_a_planted_gross_error_gets_low_agreement_and_stays_out_of_the_consensus(team):
    root, ds, planted = team
    _, points, images = tables(root / "whole")
    row = points[(points.image_id == planted) & (points.point == PLANTED_POINT)].iloc[0]
    others = points[(points.image_id != planted) | (points.point != PLANTED_POINT)]["annotator_agreement"]
    assert row.annotator_agreement < 0.05 < 0.9 < others.median()
    subject = images.loc[images.image_id == planted, "subject"].iloc[0]
    fellows = images.image_id[(images.subject == subject) & (images.image_id != planted)]
    fellow = points[points.image_id.isin(fellows) & (points.point == PLANTED_POINT)][["x_human", "y_human"]]
    consensus = np.array([row.x_consensus, row.y_consensus])
    # nearer the other two labels than the planted one (the annotators' biases and the witnesses move it a little)
    assert np.linalg.norm(consensus - fellow.mean().to_numpy()) < 0.33 * np.linalg.norm(
        consensus - [row.x_human, row.y_human])
    # the annotators' own gross errors (synth's noise.csv) agree less than the other labels
    noise = pd.read_csv(root / "syn" / "truth" / "noise.csv")
    gross = pd.MultiIndex.from_frame(points[["image_id", "point"]]).isin(
        pd.MultiIndex.from_frame(noise[["image_id", "point"]]))
    assert gross.sum() >= 5
    assert points["annotator_agreement"][gross].mean() < points["annotator_agreement"][~gross].mean() - 0.3


def test_annotators_parquet_has_one_row_per_annotator_best_first(team):
    root, ds, _ = team
    table = pd.read_parquet(root / "whole" / "annotators.parquet")
    assert set(ANNOTATOR_COLUMNS) <= set(table.columns)
    for group in ds.scheme.group_names:
        assert {f"bias_along_{group}", f"bias_across_{group}"} <= set(table.columns)
        assert any(c.startswith("spread_") and c.endswith(f"_{group}") for c in table.columns)
    counts = pd.Series(ds.annotators).value_counts()
    assert sorted(table.annotator) == sorted(counts.index) and (table.faces.to_numpy() ==
                                                               counts[table.annotator].to_numpy()).all()
    assert table.mean_error.is_monotonic_increasing
    assert (table.mean_error_lo <= table.mean_error).all() and (table.mean_error <= table.mean_error_hi).all()
    assert table.gross_rate.between(0, 0.5).all() and (table.spread > 0).all()


def test_tolerances_come_from_the_annotators_or_the_search(team):
    root, ds, _ = team
    for audit, source in (("whole", "annotators"), ("plain", "searched"), ("shard0", "searched")):
        table = load_tolerances(root / audit, ds.num_points)
        assert json.loads((root / audit / "manifest.json").read_text())["tolerances"] == {"source": source}
        assert (table.source == source).all() and table.point_name.tolist() == list(ds.scheme.point_names)
        assert np.isfinite(table[["sigma", "spread_along", "spread_across"]]).all().all() and (table.sigma > 0).all()
    # synth's annotators spread twice as far along a contour as across it
    table = load_tolerances(root / "whole", ds.num_points)
    contour = table[table.is_contour]
    assert np.median(contour.spread_along / contour.spread_across) > 1.2


def test_report_annotators_writes_the_table_as_csv_and_ranks_them(team, tmp_path):
    root, _, _ = team
    r = run_auditor("report-annotators", root / "whole", "-o", tmp_path / "annotators.csv")
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(root / "whole" / "annotators.parquet")
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "annotators.csv"), table, check_dtype=False)
    ranking = [line for line in r.stdout.splitlines() if line[:1].isdigit()]
    assert len(ranking) == TEAM and ranking[0].startswith(f"1. {table.annotator[0]}: ") and "farthest on" in ranking[0]
    assert_one_line_error(run_auditor("report-annotators", root / "plain", "-o", tmp_path / "x.csv"),
                          "has no annotators")
    assert_one_line_error(run_auditor("report-annotators", root / "shard0", "-o", tmp_path / "x.csv"),
                          "auditor merge")
    assert_one_line_error(run_auditor("report-annotators", root / "whole", "-o", root / "whole" / "x.csv"),
                          "inside an input")
    assert not (tmp_path / "x.csv").exists() and not (root / "whole" / "x.csv").exists()


def test_export_sigmas_writes_the_tolerances_in_the_scheme_order(team, tmp_path):
    root, ds, _ = team
    for audit, source in (("whole", "annotators"), ("plain", "searched")):
        r = run_auditor("export-sigmas", root / audit, "-o", tmp_path / f"{audit}.json")
        assert r.returncode == 0, r.stderr
        data = json.loads((tmp_path / f"{audit}.json").read_text())
        table = load_tolerances(root / audit, ds.num_points)
        assert data["scheme"] == "300w_68" and data["keypoints"] == list(ds.scheme.point_names)
        assert data["source"] == source and len(data["sigmas"]) == ds.num_points
        for key, column in (("sigmas", "sigma"), ("spread_along", "spread_along"), ("spread_across", "spread_across")):
            np.testing.assert_allclose(data[key], table[column])
    (root / "old").mkdir(exist_ok=True)
    for name in ("manifest.json", "points.parquet", "images.parquet"):
        (root / "old" / name).write_bytes((root / "plain" / name).read_bytes())
    assert_one_line_error(run_auditor("export-sigmas", root / "old", "-o", tmp_path / "x.json"),
                          "no tolerances.parquet")


def test_shards_keep_subjects_and_their_merge_gives_the_whole_consensus(team):
    root, ds, _ = team
    for i in range(2):
        _, points, images = tables(root / f"shard{i}")
        assert not NEW_POINT_COLUMNS & set(points.columns) and "annotator_agreement" not in images.columns
        assert {"annotator", "subject", "face_area"} <= set(images.columns)
        assert not (root / f"shard{i}" / "annotators.parquet").exists()
        assert json.loads((root / f"shard{i}" / "manifest.json").read_text())["annotators"]["iterations"] is None
    first = load_audit(root / "shard0").images
    assert (first["subject"].to_numpy() == ds.subjects()[:len(first)]).all()
    whole, merged = tables(root / "whole"), tables(root / "merged")
    assert "face_area" not in merged.images.columns
    assert set(merged.points.columns) == set(whole.points.columns)
    for column in NEW_POINT_COLUMNS:
        np.testing.assert_allclose(merged.points[column], whole.points[column], rtol=1e-6, atol=1e-6)
    pd.testing.assert_frame_equal(pd.read_parquet(root / "merged" / "annotators.parquet"),
                                  pd.read_parquet(root / "whole" / "annotators.parquet"), rtol=1e-5)
    pd.testing.assert_frame_equal(pd.read_parquet(root / "merged" / "tolerances.parquet"),
                                  pd.read_parquet(root / "whole" / "tolerances.parquet"), rtol=1e-5)
    assert merged.manifest["annotators"] == whole.manifest["annotators"]


def test_an_audit_without_annotators_is_unchanged(team):
    root, _, _ = team
    manifest, points, images = tables(root / "plain")
    whole = tables(root / "whole")
    assert list(points.columns) == [c for c in whole.points.columns if c not in NEW_POINT_COLUMNS]
    assert list(images.columns) == [c for c in whole.images.columns if c not in NEW_IMAGE_COLUMNS]
    assert manifest["annotators"] is None and not (root / "plain" / "annotators.parquet").exists()


def test_face_area_is_the_box_else_the_label_extent(tmp_path):
    landmarks = np.array([[[0, 0], [4, 0], [4, 2]], [[1, 1], [3, 1], [3, 6]]] * 2, dtype=np.float64)
    boxes = np.array([[0, 0, 10, 10], [np.nan] * 4, [0, 0, 0, 5], [0, 0, 2, 3]])
    ds = make_dataset(tmp_path, ["a.png", "b.png", "c.png", "d.png"], scheme="cofw_29",
                      landmarks=np.tile(landmarks, (1, 10, 1))[:, :29], boxes=boxes)
    np.testing.assert_allclose(face_areas(ds, np.arange(4)), [100, 10, 8, 6])
    images = pd.DataFrame({"face_area": [1.0, 2.0]})
    assert take_face_areas(images, pd.DataFrame(), 29).tolist() == [1.0, 2.0] and "face_area" not in images
    points = pd.DataFrame({"x_human": landmarks[:2, :, 0].ravel(), "y_human": landmarks[:2, :, 1].ravel()})
    np.testing.assert_allclose(take_face_areas(pd.DataFrame(index=range(2)), points, 3), [8, 10])


def test_a_damaged_tolerances_file_is_an_input_error(team, tmp_path):
    root, ds, _ = team
    (tmp_path / "audit").mkdir()
    table = pd.read_parquet(root / "plain" / "tolerances.parquet")
    table.iloc[1:].to_parquet(tmp_path / "audit" / "tolerances.parquet")
    with pytest.raises(InputError, match="one row for each point") as e:
        load_tolerances(tmp_path / "audit", ds.num_points)
    assert e.value.path.endswith("tolerances.parquet") and e.value.field == "point"
    table.assign(source="guessed").to_parquet(tmp_path / "audit" / "tolerances.parquet")
    with pytest.raises(InputError, match="unknown source 'guessed'"):
        load_tolerances(tmp_path / "audit", ds.num_points)


def coco_ap(truth: np.ndarray, detected: np.ndarray, names: list[str], sigmas: np.ndarray | None) -> float:
    """pycocotools' keypoint AP of detections (n, K, 2) px against one face per image (n, K, 2) px, with per-keypoint
    `sigmas` (its 17 person sigmas when None)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    def keypoints(xy: np.ndarray) -> list[float]:
        return np.concatenate([xy, np.full((len(xy), 1), 2.0)], axis=1).ravel().tolist()

    low, high = truth.min(1), truth.max(1)
    gt = COCO()
    gt.dataset = {
        "images": [{"id": i + 1, "width": 96, "height": 96, "file_name": f"{i}.jpg"} for i in range(len(truth))],
        "annotations": [{"id": i + 1, "image_id": i + 1, "category_id": 1, "keypoints": keypoints(truth[i]),
                         "num_keypoints": len(names), "iscrowd": 0, "area": float(np.prod(high[i] - low[i])),
                         "bbox": [*low[i].tolist(), *(high[i] - low[i]).tolist()]} for i in range(len(truth))],
        "categories": [{"id": 1, "name": "face", "keypoints": names, "skeleton": []}]}
    gt.createIndex()
    dt = gt.loadRes([{"image_id": i + 1, "category_id": 1, "keypoints": keypoints(detected[i]), "score": 1.0}
                     for i in range(len(detected))])
    evaluation = COCOeval(gt, dt, iouType="keypoints")
    if sigmas is not None:
        evaluation.params.kpt_oks_sigmas = sigmas
    evaluation.evaluate()
    evaluation.accumulate()
    evaluation.summarize()
    return float(evaluation.stats[0])


def test_pycocotools_evaluates_68_points_with_the_exported_sigmas_only(team, tmp_path):
    pytest.importorskip("pycocotools")
    root, ds, _ = team
    assert run_auditor("export-sigmas", root / "whole", "-o", tmp_path / "sigmas.json").returncode == 0
    exported = json.loads((tmp_path / "sigmas.json").read_text())
    sigmas, names = np.array(exported["sigmas"]), exported["keypoints"]
    _, points, images = tables(root / "whole")
    first = ~images["subject"].duplicated().to_numpy()
    truth = points[["x_consensus", "y_consensus"]].to_numpy().reshape(len(images), -1, 2)[first]  # (S, K, 2)
    scale = np.sqrt(np.prod(truth.max(1) - truth.min(1), axis=1))[:, None, None]
    noise = np.random.default_rng(0).normal(size=truth.shape) * sigmas[None, :, None] * scale
    perfect, near, far = (coco_ap(truth, truth + f * noise, names, sigmas) for f in (0.0, 1.0, 4.0))
    assert perfect == pytest.approx(1.0) and perfect > near > far
    with pytest.raises(ValueError):  # its default sigmas are COCO's 17 body keypoints': they do not broadcast to 68
        coco_ap(truth, truth, names, None)
