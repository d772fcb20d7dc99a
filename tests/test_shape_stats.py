import math

import numpy as np
import pytest
import torch
from helpers import ridge
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.heatmaps import encode
from auditor.search import SearchConfig, patch_distance, search
from auditor.shape_stats import gaussian_likeness, shape_stats, stats_window


def reference_stats(heatmap: np.ndarray, x: float, y: float, size: int) -> dict[str, float] | None:
    """Shape measures of one map at one position, pixel by pixel with numpy."""
    cx, cy = math.floor(x + 0.5), math.floor(y + 0.5)
    if not (0 <= cx < heatmap.shape[1] and 0 <= cy < heatmap.shape[0]):
        return None
    points, values = [], []
    for i in range(cy - size // 2, cy + size // 2 + 1):
        for j in range(cx - size // 2, cx + size // 2 + 1):
            if (i - cy) ** 2 + (j - cx) ** 2 > (size / 2) ** 2:
                continue
            inside = 0 <= i < heatmap.shape[0] and 0 <= j < heatmap.shape[1]
            points.append((j, i))
            values.append(max(heatmap[i, j], 0.0) if inside else 0.0)
    values = np.array(values)
    if values.sum() <= 0:
        return None
    covariance = np.cov(np.array(points, dtype=float).T, aweights=values, bias=True)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    angle = math.atan2(eigenvectors[1, 1], eigenvectors[0, 1])
    angle = (angle + math.pi / 2) % math.pi - math.pi / 2  # an axis: fold into [-π/2, π/2)
    return {"peak": values.max(), "lambda1": eigenvalues[1], "lambda2": eigenvalues[0],
            "anisotropy": 1 - eigenvalues[0] / eigenvalues[1], "angle": angle,
            "centroid_x": np.average([p[0] for p in points], weights=values),
            "centroid_y": np.average([p[1] for p in points], weights=values),
            "above_half": (values >= values.max() / 2).sum()}


def angle_error(a: float, b: float) -> float:
    return abs((a - b + math.pi / 2) % math.pi - math.pi / 2)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_reference_on_random_maps(dtype, device):
    g = torch.Generator().manual_seed(0)
    maps = torch.rand(2, 6, 32, 32, generator=g, dtype=torch.float64) ** 3 - 0.1
    labels = torch.rand(2, 6, 2, generator=g, dtype=torch.float64) * 34 - 1
    stats = shape_stats(maps.to(dtype).to(device), labels.to(dtype).to(device))
    size = stats_window(1.5)
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    for b in range(2):
        for k in range(6):
            ref = reference_stats(maps[b, k].numpy(), *labels[b, k].tolist(), size)
            assert bool(stats.valid[b, k]) == (ref is not None)
            if ref is None:
                assert stats.anisotropy[b, k].isnan()
                continue
            got = {"peak": stats.peak[b, k], "lambda1": stats.eigenvalues[b, k, 0],
                   "lambda2": stats.eigenvalues[b, k, 1], "anisotropy": stats.anisotropy[b, k],
                   "centroid_x": stats.centroid[b, k, 0], "centroid_y": stats.centroid[b, k, 1]}
            for name, value in got.items():
                assert float(value) == pytest.approx(ref[name], rel=tol, abs=tol), name
            assert float(stats.flat_hat_index[b, k]) * 9 == pytest.approx(ref["above_half"])
            if ref["anisotropy"] > 1e-3:
                assert angle_error(float(stats.angle[b, k]), ref["angle"]) < 1e-3


@settings(max_examples=30, deadline=None)
@given(st.floats(12, 52), st.floats(12, 52))
def test_sharp_gaussian_is_round(x, y):
    xy = torch.tensor([[[x, y]]])
    stats = shape_stats(encode(xy, 64), xy)
    assert stats.anisotropy[0, 0] < 0.1
    assert (stats.eigenvalues[0, 0] - 1.5**2).abs().max() < 0.1
    assert (stats.centroid[0, 0] - xy[0, 0]).abs().max() < 0.05
    assert 1 <= stats.flat_hat_index[0, 0] <= 1.34
    assert stats.gaussian_likeness[0, 0] > 0.75  # 0.78 half a pixel off a pixel centre


@pytest.mark.parametrize("angle", [0.0, 0.3, math.pi / 4, 1.2, math.pi / 2, -0.7])
def test_ridge_is_anisotropic_along_its_line(angle, device):
    maps = ridge(64, (31.6, 32.2), angle)[None, None].float().to(device)
    stats = shape_stats(maps, torch.tensor([[[32.0, 32.0]]], device=device))
    assert stats.anisotropy[0, 0] > 0.6
    assert angle_error(float(stats.angle[0, 0]), angle) < 0.05
    assert stats.flat_hat_index[0, 0] > 2


@pytest.mark.parametrize("sigma_along", [2.5, 3.0, 5.0])
def test_moderate_flat_hats_pass_the_anisotropy_bar(sigma_along):
    maps = ridge(64, (30.0, 30.0), 0.4, sigma_along=sigma_along)[None, None]
    stats = shape_stats(maps, torch.tensor([[[30.0, 30.0]]], dtype=torch.float64))
    assert stats.anisotropy[0, 0] > 0.6
    assert stats.flat_hat_index[0, 0] > 1.3


def test_on_the_searched_position_of_a_ridge():
    maps = ridge(64, (30.0, 34.0), 0.9)[None, None].float()
    labels = torch.tensor([[[31.0, 31.0]]])
    searched = search(maps, labels).searched
    stats = shape_stats(maps, searched)
    assert stats.anisotropy[0, 0] > 0.6 and angle_error(float(stats.angle[0, 0]), 0.9) < 0.05


def test_angle_range_is_half_open():
    vertical = shape_stats(ridge(64, (32.0, 32.0), math.pi / 2)[None, None], torch.tensor([[[32.0, 32.0]]]))
    assert float(vertical.angle[0, 0]) == pytest.approx(math.pi / 2)
    stats = shape_stats(torch.rand(3, 4, 32, 32), torch.rand(3, 4, 2) * 31)
    assert ((stats.angle > -math.pi / 2) & (stats.angle <= math.pi / 2)).all()


def test_gaussian_likeness_is_exp_of_the_search_distance():
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 3, 64, 64, generator=g) ** 4
    labels = torch.rand(2, 3, 2, generator=g) * 64
    result = search(maps, labels)
    torch.testing.assert_close(gaussian_likeness(maps, labels), torch.exp(-result.distance_at_label))
    torch.testing.assert_close(shape_stats(maps, labels).gaussian_likeness, torch.exp(-patch_distance(maps, labels)))
    ncc = SearchConfig(similarity="ncc")
    expected = torch.exp(-search(maps, labels, ncc).distance_at_label)
    torch.testing.assert_close(gaussian_likeness(maps, labels, ncc), expected)


def test_invalid_positions_and_empty_windows():
    maps = torch.zeros(1, 3, 32, 32)
    maps[0, 1] = encode(torch.tensor([[[10.0, 10.0]]]), 32)[0, 0]
    stats = shape_stats(maps, torch.tensor([[[10.0, 10.0], [math.nan, 1.0], [40.0, 1.0]]]))
    assert not stats.valid.any()
    assert stats.anisotropy.isnan().all() and stats.covariance.isnan().all() and stats.centroid.isnan().all()


def test_batch_composition_does_not_matter():
    g = torch.Generator().manual_seed(2)
    maps, labels = torch.rand(4, 5, 64, 64, generator=g), torch.rand(4, 5, 2, generator=g) * 64
    whole, part = shape_stats(maps, labels), shape_stats(maps[1:3, 2:4], labels[1:3, 2:4])
    for name in ("peak", "covariance", "eigenvalues", "anisotropy", "angle", "flat_hat_index", "gaussian_likeness"):
        torch.testing.assert_close(getattr(part, name), getattr(whole, name)[1:3, 2:4], equal_nan=True)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        shape_stats(torch.zeros(1, 2, 16, 16), torch.zeros(1, 3, 2))
    with pytest.raises(ValueError, match="odd"):
        shape_stats(torch.zeros(1, 2, 16, 16), torch.zeros(1, 2, 2), size=4)
