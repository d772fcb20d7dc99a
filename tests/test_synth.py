from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from PIL import Image
from scipy.ndimage import gaussian_filter, maximum_filter, sobel

from auditor.io import read_dataset
from auditor.io.pts import parse_pts
from auditor.noise import ERROR_KINDS, HARMLESS_KINDS, NOISE_COLUMNS, AnnotatorConfig
from auditor.outputs import MARKER, written_by_tool
from auditor.schemes import BUILTIN_SCHEMES
from auditor.synth import _arc_points, _catmull_rom, face_rng, generate, render_face

S68 = BUILTIN_SCHEMES["300w_68"]
SIZE = 128


@pytest.fixture(scope="module")
def rendered() -> list[tuple[np.ndarray, np.ndarray, dict]]:
    """40 faces at 128 px, shared by the geometry tests."""
    return [render_face(face_rng(11, i), SIZE) for i in range(40)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    generate(out, n=4, seed=3, size=SIZE)
    return out


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def upright(xy: np.ndarray, roll_deg: float) -> np.ndarray:
    """Undo the in-plane rotation about the points' centroid."""
    a = np.deg2rad(-roll_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return (xy - xy.mean(0)) @ rot.T


def test_render_face_types_and_meta(rendered):
    image, truth, meta = rendered[0]
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
    assert truth.shape == (68, 2) and truth.dtype == np.float64
    assert {"roll_deg", "yaw_deg", "occluded", "occluded_points", "iod_px"} <= set(meta)
    assert abs(meta["roll_deg"]) <= 30 and meta["iod_px"] > 0.15 * SIZE


def test_truth_points_lie_inside_the_image(rendered):
    for _, truth, _ in rendered:
        assert np.isfinite(truth).all()
        assert truth.min() >= 0 and truth.max() <= SIZE - 1


def test_left_right_and_top_down_order_make_sense(rendered):
    for _, truth, meta in rendered:
        xy = upright(truth, meta["roll_deg"])
        x, y = xy[:, 0], xy[:, 1]
        # the subject's right (first of each flip pair) is on the image's left
        for right, left in ((0, 16), (17, 26), (36, 45), (39, 42), (31, 35), (48, 54), (60, 64)):
            assert x[right] < x[left], (right, left)
        assert x[36] < x[39] < x[42] < x[45]
        assert y[19] < y[37] < y[30] < y[33] < y[51] < y[57] < y[8]
        assert y[37] < y[41] and y[62] <= y[66] + 1e-9


def test_flip_permutation_maps_a_mirrored_face_onto_itself(rendered):
    flip = S68.flip_permutation
    for _, truth, meta in rendered:
        xy = upright(truth, meta["roll_deg"])
        iod = np.linalg.norm(xy[36] - xy[45])
        mirrored = xy * [-1.0, 1.0]
        paired = mirrored[flip] - mirrored[flip].mean(0)
        # the faces are nearly symmetric (mild yaw and asymmetry), so only the right pairing fits well
        assert np.linalg.norm(paired - xy, axis=1).mean() < 0.12 * iod
        assert np.linalg.norm(mirrored - xy, axis=1).mean() > 3 * np.linalg.norm(paired - xy, axis=1).mean()


def test_truth_sits_on_image_edges(rendered):
    ratios = {"jaw": [], "eyes": [], "mouth": []}
    groups = {"jaw": range(0, 17), "eyes": range(36, 48), "mouth": range(48, 60)}
    for image, truth, meta in rendered:
        grey = gaussian_filter(image.astype(np.float64).mean(-1), 0.7)
        # the strongest gradient within a pixel of each point, against the same measure anywhere in the image
        near = maximum_filter(np.hypot(sobel(grey, 0), sobel(grey, 1)), size=3)
        median = np.median(near)
        for name, ks in groups.items():
            ij = np.round(truth[[k for k in ks if k not in meta["occluded_points"]], ::-1]).astype(int)
            if len(ij):
                ratios[name].append(np.median(near[ij[:, 0], ij[:, 1]]) / median)
    for name, r in ratios.items():
        assert np.median(r) > 2.0, (name, np.median(r))


def test_some_faces_are_occluded_and_the_occluded_points_are_listed():
    metas = [render_face(face_rng(5, i), 64)[2] for i in range(120)]
    occluded = [m for m in metas if m["occluded"]]
    assert 2 <= len(occluded) <= 30
    assert all(m["occluded_points"] and set(m["occluded_points"]) <= set(range(68)) for m in occluded)


def test_generate_writes_faces_truth_and_noise(dataset):
    faces = sorted((dataset / "faces").glob("face_*"))
    assert [p.name for p in faces] == [f"face_{i:04d}.{ext}" for i in range(4) for ext in ("jpg", "pts")]
    assert sorted(p.name for p in (dataset / "faces").iterdir() if p.name.startswith(".")) == [MARKER]
    assert written_by_tool(dataset / "faces") and written_by_tool(dataset / "truth")
    assert Image.open(faces[0]).size == (SIZE, SIZE)
    assert sorted(p.name for p in (dataset / "truth").glob("*.pts")) == [f"face_{i:04d}.pts" for i in range(4)]
    noise = pd.read_csv(dataset / "truth" / "noise.csv")
    assert list(noise.columns) == NOISE_COLUMNS
    assert set(noise["kind"]) <= set(HARMLESS_KINDS + ERROR_KINDS)
    assert set(noise["kind"]) >= {"slide", "jitter"}
    assert len(pd.read_csv(dataset / "truth" / "faces.csv")) == 4


def test_human_minus_truth_is_the_sum_of_the_noise_rows(dataset):
    noise = pd.read_csv(dataset / "truth" / "noise.csv")
    for i in range(4):
        image_id = f"face_{i:04d}"
        human = parse_pts(dataset / "faces" / f"{image_id}.pts")
        truth = parse_pts(dataset / "truth" / f"{image_id}.pts")
        rows = noise[noise["image_id"] == image_id]
        planted = np.zeros((68, 2))
        np.add.at(planted, rows["point"].to_numpy(), rows[["dx", "dy"]].to_numpy())
        np.testing.assert_allclose(human - truth, planted, atol=1e-6)


def test_same_seed_gives_identical_bytes(dataset, tmp_path):
    generate(tmp_path / "b", n=4, seed=3, size=SIZE)
    assert tree_bytes(dataset) == tree_bytes(tmp_path / "b")


def test_faces_do_not_depend_on_n_and_seeds_differ(dataset, tmp_path):
    generate(tmp_path / "short", n=2, seed=3, size=SIZE)
    generate(tmp_path / "other", n=2, seed=4, size=SIZE)
    short, other, full = tree_bytes(tmp_path / "short"), tree_bytes(tmp_path / "other"), tree_bytes(dataset)
    for name in ("faces/face_0001.jpg", "faces/face_0001.pts", "truth/face_0001.pts"):
        assert short[name] == full[name]
        assert other[name] != full[name]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=3, max_size=8, unique=True),
       st.booleans())
def test_catmull_rom_passes_through_its_control_points(ctrl, closed):
    ctrl = np.array(ctrl)
    dense, anchors = _catmull_rom(ctrl, closed=closed)
    np.testing.assert_allclose(dense[anchors], ctrl, atol=1e-6)
    assert np.isfinite(dense).all()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(-100, 100), st.floats(-100, 100)), min_size=3, max_size=8, unique=True),
       st.lists(st.floats(0, 1), min_size=1, max_size=5))
@example(ctrl=[(0.0, 1e-38), (0.0, 1.0), (0.0, 0.0)], fractions=[1.0])  # a curve that doubles back on itself
def test_arc_points_sit_at_their_arc_length_fractions(ctrl, fractions):
    poly = _catmull_rom(np.array(ctrl))[0]
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    total = seg.sum()
    points = _arc_points(poly, fractions)
    tol = 1e-6 * max(total, 1)
    for f, p in zip(fractions, points, strict=True):
        # on the polyline (its distances to a segment's ends add up to that segment's length) at arc length
        # f * total; a curve that doubles back passes a point more than once, so any such segment will do
        d0 = np.linalg.norm(poly[:-1] - p, axis=1)
        d1 = np.linalg.norm(poly[1:] - p, axis=1)
        on_segment = d0 + d1 - seg < tol
        at_length = np.abs(np.concatenate([[0.0], np.cumsum(seg)[:-1]]) + d0 - f * total) < tol
        assert (on_segment & at_length).any()


@pytest.fixture(scope="module")
def annotated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "team"
    generate(out, n=4, seed=3, size=SIZE, annotators=AnnotatorConfig(num_annotators=4, per_face=2))
    return out


def test_annotators_write_a_pts_tree_beside_the_images_once(annotated, dataset):
    team = pd.read_csv(annotated / "truth" / "annotators.csv")
    groups = S68.group_names
    assert list(team.columns) == (["name", "faces", "gross_rate", "along_factor"] + [f"spread_{g}" for g in groups]
                                  + [f"bias_along_{g}" for g in groups] + [f"bias_across_{g}" for g in groups])
    assert list(team.name) == [f"annotator_{a}" for a in range(1, 5)] and team.faces.sum() == 8
    faces = annotated / "faces"
    assert sorted(p.name for p in faces.iterdir() if p.is_file()) == [MARKER] + [f"face_{i:04d}.jpg" for i in range(4)]
    label_files = sorted(p.relative_to(faces).as_posix() for p in faces.rglob("*.pts"))
    assert len(label_files) == 8 and all(f.count("/") == 1 for f in label_files)
    for row in team.itertuples():
        assert len(list((faces / row.name).glob("*.pts"))) == row.faces
    # the faces and their truth are those of the same seed without annotators; only the labels differ
    full, plain = tree_bytes(annotated), tree_bytes(dataset)
    for i in range(4):
        for name in (f"faces/face_{i:04d}.jpg", f"truth/face_{i:04d}.pts"):
            assert full[name] == plain[name]
    assert pd.read_csv(annotated / "truth" / "faces.csv").equals(pd.read_csv(dataset / "truth" / "faces.csv"))


def test_annotator_labels_are_the_truth_plus_their_noise(annotated):
    noise = pd.read_csv(annotated / "truth" / "noise.csv")
    assert list(noise.columns) == NOISE_COLUMNS and set(noise.kind) <= {"gross"}
    team = pd.read_csv(annotated / "truth" / "annotators.csv").set_index("name")
    for f in sorted((annotated / "faces").rglob("*.pts")):
        label_id = f"{f.parent.name}/{f.stem}"
        truth = parse_pts(annotated / "truth" / f"{f.stem}.pts")
        iod = np.linalg.norm(truth[36] - truth[45])
        offset = np.linalg.norm(parse_pts(f) - truth, axis=-1) / iod
        gross = noise[noise.image_id == label_id]
        clean = np.delete(offset, gross.point.to_numpy())
        # without a gross error a label is within its annotator's bias (centred: up to twice 0.03 per component)
        # and a few spreads of the truth
        row = team.loc[f.parent.name]
        limit = 2 * 0.03 * np.sqrt(2) + 5 * row.along_factor * row.filter(like="spread_").max()
        assert 0 < clean.min() and clean.max() < limit
    assert noise.magnitude_nme.between(0.08, 0.2).all()
    assert set(noise.image_id) <= {f"{f.parent.name}/{f.stem}" for f in (annotated / "faces").rglob("*.pts")}


def test_annotators_read_back_as_a_pts_tree(annotated):
    ds = read_dataset(annotated / "faces", annotators_from="folder")
    assert len(ds) == 8 and sorted(set(ds.annotators)) <= [f"annotator_{a}" for a in range(1, 5)]
    assert all(image_id.startswith(f"{a}/") for image_id, a in zip(ds.image_ids, ds.annotators, strict=True))
    assert {p.name for p in ds.image_paths} == {f"face_{i:04d}.jpg" for i in range(4)}


def test_annotators_same_seed_same_bytes(annotated, tmp_path):
    generate(tmp_path / "again", n=4, seed=3, size=SIZE, annotators=AnnotatorConfig(num_annotators=4, per_face=2))
    assert tree_bytes(annotated) == tree_bytes(tmp_path / "again")
