import numpy as np
import pandas as pd
import pytest
from helpers import run_auditor

from auditor.noise import NOISE_COLUMNS, NoiseConfig, plant_noise
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
