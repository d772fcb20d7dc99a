import numpy as np
import pandas as pd
import pytest
from helpers import run_auditor

from auditor.noise import (
    NOISE_COLUMNS,
    AnnotatorConfig,
    NoiseConfig,
    annotator_frames,
    draw_annotators,
    face_axes,
    plant_noise,
)
from auditor.schemes import BUILTIN_SCHEMES

S68 = BUILTIN_SCHEMES["300w_68"]


def faces(n: int, seed: int = 0) -> np.ndarray:
    """(n, 68, 2) rough faces: points on an ellipse-ish layout, randomly scaled and shifted."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    base = np.stack([np.cos(t), np.sin(t)], -1) * 50
    base[36], base[45] = [-30, -10], [30, -10]
    return base[None] * rng.uniform(0.5, 2, (n, 1, 1)) + rng.uniform(0, 300, (n, 1, 2))


def split(table, ids, k):
    acc = np.zeros((len(ids), k, 2))
    index = {im: i for i, im in enumerate(ids)}
    for row in table.itertuples():
        acc[index[row.image_id], row.point] += [row.dx, row.dy]
    return acc


def test_rows_sum_to_the_displacement_and_rates_hold():
    clean = faces(2000)
    ids = [f"f{i}" for i in range(len(clean))]
    noisy, table = plant_noise(clean, S68, ids, np.random.default_rng(1), NoiseConfig())
    assert list(table.columns) == NOISE_COLUMNS
    assert np.allclose(split(table, ids, 68), noisy - clean)
    counts = table.kind.value_counts()
    swapped = table[table.kind == "swap"].image_id.nunique()
    n_points = (len(clean) - swapped) * 68
    n_contour = (len(clean) - swapped) * int(S68.contour_mask.sum())
    for kind, expected in (("gross", 0.02 * n_points), ("moderate", 0.02 * n_points),
                           ("off_contour", 0.03 * 0.96 * n_contour)):
        assert abs(counts[kind] - expected) < 4 * np.sqrt(expected), kind
    assert abs(swapped - 0.03 * len(clean)) < 4 * np.sqrt(0.03 * len(clean))
    iod = S68.normaliser(clean)
    for kind, (lo, hi) in (("gross", (0.08, 0.2)), ("moderate", (0.04, 0.08)), ("off_contour", (0.03, 0.06))):
        m = table[table.kind == kind].magnitude_nme
        assert m.min() >= lo - 1e-9 and m.max() <= hi + 1e-9
    assert counts["slide"] == len(clean) * S68.contour_mask.sum()
    assert table[table.kind == "jitter"].magnitude_nme.mean() == pytest.approx(0.005 * np.sqrt(np.pi / 2), rel=0.05)
    assert np.isfinite(iod).all()


def test_kinds_do_not_overlap_and_move_the_right_way():
    clean = faces(500, seed=3)
    ids = [f"f{i}" for i in range(len(clean))]
    _, table = plant_noise(clean, S68, ids, np.random.default_rng(2), NoiseConfig(gross_rate=0.1, swap_rate=0.1))
    errors = table[~table.kind.isin(["slide", "jitter"])]
    assert not errors.duplicated(["image_id", "point"]).any()
    swapped = set(errors[errors.kind == "swap"].image_id)
    assert swapped and not swapped & set(errors[errors.kind != "swap"].image_id)
    # slides run along the contour, off-contour shifts across it
    tangents = S68.contour_tangents(clean)
    index = {im: i for i, im in enumerate(ids)}
    for kind, expect_parallel in (("slide", True), ("off_contour", False)):
        rows = table[table.kind == kind]
        t = tangents[[index[i] for i in rows.image_id], rows.point.to_numpy()]
        d = rows[["dx", "dy"]].to_numpy()
        cos = np.abs((t * d).sum(-1)) / np.linalg.norm(d, axis=-1)
        assert np.allclose(cos, 1.0 if expect_parallel else 0.0, atol=1e-9)


def test_deterministic_and_errors_only():
    clean = faces(50)
    ids = [f"f{i}" for i in range(50)]
    a = plant_noise(clean, S68, ids, np.random.default_rng(7), NoiseConfig())
    b = plant_noise(clean, S68, ids, np.random.default_rng(7), NoiseConfig())
    assert np.array_equal(a[0], b[0]) and a[1].equals(b[1])
    _, table = plant_noise(clean, S68, ids, np.random.default_rng(7), NoiseConfig().errors_only())
    assert not table.kind.isin(["slide", "jitter"]).any()


def test_missing_points_are_left_alone():
    clean = faces(100)
    clean[:, 10] = np.nan
    noisy, table = plant_noise(clean, S68, [str(i) for i in range(100)], np.random.default_rng(0),
                               NoiseConfig(gross_rate=0.5, swap_rate=0.5))
    assert np.isnan(noisy[:, 10]).all() and not (table.point == 10).any()
    swaps = table[table.kind == "swap"]
    assert len(swaps) and not (swaps.point == S68.flip_permutation[10]).any()


def test_bad_config():
    with pytest.raises(ValueError, match="gross_rate"):
        NoiseConfig(gross_rate=-1)
    with pytest.raises(ValueError, match="gross_range"):
        NoiseConfig(gross_range=(0.3, 0.1))
    for bad in ({"gross_rate": float("nan")}, {"swap_rate": float("nan")}, {"slide_sigma": float("inf")},
                {"moderate_range": (0.04, float("inf"))}, {"gross_range": (float("nan"), 0.1)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            NoiseConfig(**bad)


def test_cli_refuses_a_nan_rate(tmp_path):
    r = run_auditor("plant-noise", tmp_path / "data", tmp_path / "out", "--gross-rate", "nan")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "gross_rate must be >= 0, got nan" in r.stderr
    assert not (tmp_path / "out").exists()


def test_chain_swaps_and_duplicates():
    clean = faces(400, seed=5)
    ids = [f"f{i}" for i in range(len(clean))]
    config = NoiseConfig(chain_swap_rate=0.02, duplicate_rate=0.02)
    noisy, table = plant_noise(clean, S68, ids, np.random.default_rng(6), config)
    assert np.allclose(split(table, ids, 68), noisy - clean)
    errors = table[~table.kind.isin(["slide", "jitter"])]
    assert not errors.duplicated(["image_id", "point"]).any()
    index = {im: i for i, im in enumerate(ids)}
    pairs = {tuple(p) for p in S68.chain_pairs()}
    chain = errors[errors.kind == "chain_swap"]
    assert len(chain) > 100 and len(chain) % 2 == 0
    before_swaps = noisy - split(chain, ids, 68)
    for row in chain.itertuples():  # each point holds the label its chain neighbour had, and the neighbour its own
        face = index[row.image_id]
        partner = [b for b in chain[chain.image_id == row.image_id].point
                   if np.allclose(noisy[face, row.point], before_swaps[face, b]) and b != row.point]
        assert len(partner) == 1 and tuple(sorted((row.point, partner[0]))) in pairs
        assert np.allclose(noisy[face, partner[0]], before_swaps[face, row.point])
    duplicate = errors[errors.kind == "duplicate"]
    assert len(duplicate) > 100
    for row in duplicate.itertuples():
        face = index[row.image_id]
        others = np.delete(np.arange(68), row.point)
        assert np.linalg.norm(noisy[face, others] - noisy[face, row.point], axis=-1).min() < 1e-9
    # the earlier kinds are the same whatever the later kinds' rates: a seed plants the same errors
    _, before = plant_noise(clean, S68, ids, np.random.default_rng(6), NoiseConfig())
    kept = table[~table.kind.isin(["chain_swap", "duplicate"])].reset_index(drop=True)
    pd.testing.assert_frame_equal(kept, before.reset_index(drop=True))


def annotate(n: int, seed: int = 0, **config):
    clean = faces(n, seed=seed)
    ids = [f"f{i}" for i in range(n)]
    return clean, ids, draw_annotators(clean, S68, ids, np.random.default_rng(seed), AnnotatorConfig(**config))


def in_frame(labels: np.ndarray, clean: np.ndarray, face: np.ndarray) -> np.ndarray:
    """(M, K, 2) label offsets from the truth in NME units, (along, across) the planted frame."""
    along = annotator_frames(clean, S68)[0][face]
    across = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    offset = (labels - clean[face]) / S68.normaliser(clean)[face][:, None, None]
    return np.stack([(offset * along).sum(-1), (offset * across).sum(-1)], axis=-1)


def test_annotators_shapes_names_and_determinism():
    clean, ids, (labels, face, names, table, noise) = annotate(30, num_annotators=4, per_face=2)
    assert labels.shape == (60, 68, 2) and np.isfinite(labels).all()
    assert np.array_equal(face, np.repeat(np.arange(30), 2)) and len(names) == 60
    assert set(names) <= {f"annotator_{a}" for a in range(1, 5)}
    for i in range(30):  # two different annotators per face, in name order
        assert names[2 * i] < names[2 * i + 1]
    groups = S68.group_names
    assert list(table.columns) == (["name", "faces", "gross_rate", "along_factor"] + [f"spread_{g}" for g in groups]
                                   + [f"bias_along_{g}" for g in groups] + [f"bias_across_{g}" for g in groups])
    assert list(table.name) == [f"annotator_{a}" for a in range(1, 5)] and table.faces.sum() == 60
    assert list(noise.columns) == NOISE_COLUMNS and set(noise.kind) <= {"gross"}
    assert set(noise.image_id) <= {f"{a}/{ids[i]}" for a, i in zip(names, face, strict=True)}
    again = draw_annotators(clean, S68, ids, np.random.default_rng(0), AnnotatorConfig(num_annotators=4, per_face=2))
    assert np.array_equal(labels, again[0]) and again[2] == names
    pd.testing.assert_frame_equal(table, again[3])
    pd.testing.assert_frame_equal(noise, again[4])
    other = draw_annotators(clean, S68, ids, np.random.default_rng(1), AnnotatorConfig(num_annotators=4, per_face=2))
    assert not np.allclose(labels, other[0])


def test_planted_biases_are_centred_and_recovered_with_the_spreads():
    clean, _, (labels, face, names, table, noise) = annotate(600, seed=4, gross_rate_range=(0.0, 0.0))
    assert noise.empty
    bias_columns = [c for c in table.columns if c.startswith("bias_")]
    np.testing.assert_allclose(table[bias_columns].mean(), 0.0, atol=1e-12)
    _, on_contour = annotator_frames(clean, S68)
    parts = in_frame(labels, clean, face)
    index = {name: a for a, name in enumerate(table.name)}
    annotator = np.array([index[a] for a in names])
    for a, row in table.iterrows():
        for g in S68.group_names:
            points = np.array(S68.groups) == g
            mine = parts[annotator == a][:, points]  # (F, P, 2)
            contour = on_contour[face[annotator == a]][:, points]
            spread, along_factor = row[f"spread_{g}"], row["along_factor"]
            # a click's s.d. is the spread across and off the contours, along_factor times it along a contour
            error = 5 * along_factor * spread / np.sqrt(mine[..., 0].size)
            assert abs(mine[..., 0].mean() - row[f"bias_along_{g}"]) < error, (a, g)
            assert abs(mine[..., 1].mean() - row[f"bias_across_{g}"]) < error, (a, g)
            assert np.std(mine[..., 1]) == pytest.approx(spread, rel=0.1)
            if contour.any():
                assert np.std(mine[..., 0][contour]) == pytest.approx(along_factor * spread, rel=0.1)
            if (~contour).any():
                assert np.std(mine[..., 0][~contour]) == pytest.approx(spread, rel=0.15)


def test_gross_errors_are_the_noise_rows_at_each_annotators_rate():
    config = {"num_annotators": 4, "per_face": 3, "gross_rate_range": (0.02, 0.1)}
    clean, ids, (labels, face, names, table, noise) = annotate(500, seed=2, **config)
    # the same draws without gross errors: the difference is exactly the rows' displacements
    without = draw_annotators(clean, S68, ids, np.random.default_rng(2),
                              AnnotatorConfig(**(config | {"gross_rate_range": (0.0, 0.0)})))[0]
    label_ids = [f"{a}/{ids[i]}" for a, i in zip(names, face, strict=True)]
    np.testing.assert_allclose(split(noise, label_ids, 68), labels - without, atol=1e-9)
    assert not noise.duplicated(["image_id", "point"]).any()
    norm = S68.normaliser(clean)[face][np.array([label_ids.index(i) for i in noise.image_id])]
    np.testing.assert_allclose(np.hypot(noise.dx, noise.dy) / norm, noise.magnitude_nme)
    assert noise.magnitude_nme.between(0.08, 0.2).all()
    counts = noise.image_id.str.split("/").str[0].value_counts()
    for row in table.itertuples():
        expected = row.gross_rate * row.faces * 68
        assert abs(counts.get(row.name, 0) - expected) < 4 * np.sqrt(expected) + 1, row.name


def test_annotators_leave_missing_points_missing():
    clean = faces(40)
    clean[:, 10] = np.nan
    labelled = np.ones((40, 68), bool)
    labelled[:, 20] = False
    labels, _, _, _, noise = draw_annotators(clean, S68, [str(i) for i in range(40)], np.random.default_rng(0),
                                             AnnotatorConfig(gross_rate_range=(0.5, 0.5)), labelled=labelled)
    assert np.isnan(labels[:, [10, 20]]).all() and np.isfinite(np.delete(labels, [10, 20], axis=1)).all()
    assert not noise.point.isin([10, 20]).any() and len(noise)


def test_face_axes_turn_with_the_face():
    clean = faces(1)[0]
    mirrored = clean.copy()
    for a, b in S68.flip_pairs:  # a face symmetric about a vertical line
        mirrored[b] = [2 * 150 - clean[a, 0], clean[a, 1]]
    for degrees in (0, 25, -40):
        t = np.deg2rad(degrees)
        turned = mirrored @ np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])
        np.testing.assert_allclose(face_axes(turned[None], S68)[0], [np.cos(t), np.sin(t)], atol=1e-9)
    assert np.array_equal(face_axes(np.full((1, 68, 2), np.nan), S68), [[1.0, 0.0]])


def test_bad_annotator_config():
    for bad, field in (({"per_face": 6}, "per_face"), ({"num_annotators": 0}, "num_annotators"),
                       ({"spread_range": (0.04, 0.01)}, "spread_range"), ({"bias_max": float("nan")}, "bias_max"),
                       ({"gross_rate_range": (0.0, 1.5)}, "gross_rate_range"), ({"along_factor": -1}, "along_factor")):
        with pytest.raises(ValueError, match=field):
            AnnotatorConfig(**bad)
