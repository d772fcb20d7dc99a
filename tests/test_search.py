import math

import numpy as np
import pytest
import torch
from helpers import ridge
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.heatmaps import encode
from auditor.search import SearchConfig, SearchResult, patch_distance, search, search_reference

FLOAT_FIELDS = ("searched", "score", "log_likelihood_searched", "log_prior_searched", "distance_searched",
                "log_likelihood_at_label", "log_prior_at_label", "distance_at_label")
WEAK_PRIOR = SearchConfig(prior_sigma=1e3)


def structured_heatmaps(generator: torch.Generator, b: int, k: int, size: int, dtype: torch.dtype) -> torch.Tensor:
    """(B, K, R, R) maps like a network's: a Gaussian, a weaker second peak, a ridge and noise, some negative."""
    peaks = torch.rand(b, k, 2, generator=generator, dtype=torch.float64) * (size - 1)
    maps = encode(peaks, size) + 0.4 * encode(peaks.flip(-1), size)
    centre = (float(peaks[0, 0, 0]), float(peaks[0, 0, 1]))
    maps = maps + 0.7 * ridge(size, centre, 0.6, sigma_along=4.0)
    maps = maps + 0.03 * torch.randn(maps.shape, generator=generator, dtype=torch.float64)
    return maps.to(dtype)


def assert_same_result(fast: SearchResult, reference: SearchResult, dtype: torch.dtype) -> None:
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    assert torch.equal(fast.valid.cpu(), reference.valid.cpu())
    for name in FLOAT_FIELDS:
        torch.testing.assert_close(getattr(fast, name).cpu(), getattr(reference, name).cpu(), rtol=tol, atol=tol,
                                   equal_nan=True, msg=lambda m, name=name: f"{name}: {m}")


def labels_near(peaks: torch.Tensor, generator: torch.Generator, spread: float) -> torch.Tensor:
    return peaks + (torch.rand(peaks.shape, generator=generator, dtype=peaks.dtype) - 0.5) * 2 * spread


@pytest.mark.parametrize("similarity", ["chi2", "ncc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("subpixel", [True, False])
def test_fast_matches_reference_on_random_maps(similarity, dtype, subpixel, device):
    g = torch.Generator().manual_seed(1)
    maps = torch.rand(2, 5, 32, 32, generator=g, dtype=torch.float64) ** 4 - 0.05
    labels = torch.rand(2, 5, 2, generator=g, dtype=torch.float64) * 33 - 0.5
    config = SearchConfig(similarity=similarity, subpixel=subpixel)
    maps, labels = maps.to(dtype), labels.to(dtype)
    fast = search(maps.to(device), labels.to(device), config)
    assert_same_result(fast, search_reference(maps, labels, config), dtype)


@pytest.mark.parametrize("similarity", ["chi2", "ncc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_matches_reference_on_structured_maps(similarity, dtype, device):
    g = torch.Generator().manual_seed(2)
    maps = structured_heatmaps(g, 2, 4, 64, dtype)
    labels = labels_near(torch.rand(2, 4, 2, generator=g, dtype=torch.float64) * 63, g, 0).to(dtype)
    # Corners, including the top-left of the first map and the bottom-right of the last one, whose regions
    # hang off the batch's storage.
    labels[0, 0], labels[0, 1], labels[-1, -1] = torch.tensor([[0.2, 1.4], [0.2, 63.4], [62.6, 63.0]], dtype=dtype)
    config = SearchConfig(similarity=similarity)
    fast = search(maps.to(device), labels.to(device), config)
    assert_same_result(fast, search_reference(maps, labels, config), dtype)


@pytest.mark.parametrize("similarity", ["chi2", "ncc"])
def test_fast_matches_reference_with_contour_priors_and_tangents(similarity, device):
    g = torch.Generator().manual_seed(3)
    maps = structured_heatmaps(g, 3, 6, 64, torch.float64)
    labels = labels_near(torch.rand(3, 6, 2, generator=g, dtype=torch.float64) * 56 + 4, g, 3.0)
    contour = torch.tensor([True, False, True, True, False, True])
    config = SearchConfig(similarity=similarity)
    round_prior = search(maps.to(device), labels.to(device), config, contour=contour.to(device))
    assert_same_result(round_prior, search_reference(maps, labels, config, contour=contour), torch.float64)
    assert not torch.equal(round_prior.searched.cpu(), search(maps, labels, config).searched)  # the mask matters

    angles = torch.rand(3, 6, generator=g, dtype=torch.float64) * math.pi
    tangents = torch.stack([torch.cos(angles), torch.sin(angles)], -1)
    tangents[1, 2] = math.nan  # a contour point without a tangent keeps the round prior
    tangents[2, 0] *= 3.0  # only the direction counts
    tangents[0, 3] = 0.0  # no direction: the round prior
    fast = search(maps.to(device), labels.to(device), config, contour=contour.to(device), tangents=tangents.to(device))
    reference = search_reference(maps, labels, config, contour=contour, tangents=tangents)
    assert_same_result(fast, reference, torch.float64)
    fast, round_prior = fast.searched.cpu(), round_prior.searched.cpu()
    assert not torch.equal(fast[:, contour], round_prior[:, contour])  # tangents matter
    assert torch.equal(fast[:, ~contour], round_prior[:, ~contour])
    assert torch.equal(fast[1, 2], round_prior[1, 2])
    assert torch.equal(fast[0, 3], round_prior[0, 3])


def test_a_contour_label_moves_further_along_its_contour_than_across():
    """The elongated prior: a label slid along its contour returns to the peak further than one pushed across."""
    config = SearchConfig(half_width=10)
    assert config.contour_sigmas_px(64) == (5.0, 2.5) and config.contour_sigmas_px(32) == (2.5, 1.25)
    angle = math.radians(30)
    t = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
    normal = torch.tensor([-t[1], t[0]])
    peak = torch.tensor([[[32.0, 32.0], [32.0, 32.0]]], dtype=torch.float64)
    labels = peak + 4.0 * torch.stack([t, normal])[None]
    maps = encode(peak, 64)
    tangents = t.expand(1, 2, 2)
    contour = np.array([True, True])
    elongated = search(maps, labels, config, contour=contour, tangents=tangents).searched
    round_prior = search(maps, labels, config, contour=contour).searched
    left = (elongated - peak).norm(dim=-1)[0]
    assert left[0] < 0.5 * left[1]  # along: nearly back at the peak; across: the label is trusted more
    left_round = (round_prior - peak).norm(dim=-1)[0]
    assert abs(float(left_round[0] - left_round[1])) < 0.05  # the round prior does not care about direction


def test_the_sharpened_posterior_mean_is_steadier_along_a_contour_than_the_argmax():
    """Along a contour heatmap's ridge the score is nearly flat, so its argmax follows the noise; the mean does not."""
    g = torch.Generator().manual_seed(0)
    angle = math.radians(30)
    t = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
    peak = torch.tensor([32.0, 32.0], dtype=torch.float64)
    clean = ridge(64, (32.0, 32.0), angle, sigma_along=6.0)
    maps = (clean + 0.05 * torch.randn(40, 1, 64, 64, generator=g, dtype=torch.float64)).clamp(min=0)
    labels, tangents = (peak + 2.0 * t).expand(40, 1, 2), t.expand(40, 1, 2)
    spread, error = {}, {}
    for sharpness in (6.0, None):
        config = SearchConfig(contour_sharpness=sharpness)
        found = search(maps, labels, config, contour=np.array([True]), tangents=tangents).searched[:, 0]
        spread[sharpness] = float(((found - peak) @ t).std())
        error[sharpness] = float((found - peak).norm(dim=-1).mean())
    assert spread[6.0] < 0.5 * spread[None]
    assert error[6.0] < error[None]
    without_tangent = search(maps, labels, SearchConfig(), contour=np.array([True])).searched
    assert torch.equal(without_tangent, search(maps, labels, SearchConfig(contour_sharpness=None),
                                               contour=np.array([True])).searched)  # a round prior keeps the argmax
    with pytest.raises(ValueError, match="contour_sharpness"):
        SearchConfig(contour_sharpness=0.0)


def test_the_proposal_trusts_a_contour_label_more_across_its_contour():
    """`proposing`: the same search with a prior tighter across the contour (and a little longer along it)."""
    config = SearchConfig(half_width=10)
    proposal = config.proposing(64)
    assert proposal.contour_sigmas_px(64) == (6.0, 1.5) and config.proposing(32).contour_sigmas_px(32) == (3.0, 0.75)
    assert proposal.half_width == 10 and proposal.contour_sharpness == config.contour_sharpness
    assert SearchConfig(proposal_across_sigma=2.0).proposing(64).contour_sigmas_px(64) == (6.0, 2.0)
    with pytest.raises(ValueError, match="proposal_across_sigma"):
        SearchConfig(proposal_across_sigma=0.0)
    angle = math.radians(30)
    t = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)
    normal = torch.tensor([-t[1], t[0]])
    peak = torch.tensor([[[32.0, 32.0]]], dtype=torch.float64)
    label = peak + 2.0 * normal
    maps, tangents, contour = encode(peak, 64), t.expand(1, 1, 2), np.array([True])
    broad = search(maps, label, config, contour=contour, tangents=tangents).searched
    proposed = search(maps, label, proposal, contour=contour, tangents=tangents).searched
    assert (proposed - label).norm() < (broad - label).norm()  # moved less far across
    assert float(((proposed - label) @ normal).squeeze()) < 0  # but toward the peak


def test_contour_points_trust_the_label_less():
    config = SearchConfig()
    assert config.prior_sigma_px(64) == 1.0 and config.prior_sigma_px(64, contour=True) == 4.0
    assert SearchConfig().prior_sigma_px(32, contour=True) == 2.0  # scales with R when left as None
    assert config.prior_sigmas_px(64, np.array([True, False]), 2).tolist() == [4.0, 1.0]
    assert config.prior_sigmas_px(64, None, 3).tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="contour must be a"):
        config.prior_sigmas_px(64, np.array([True]), 2)
    with pytest.raises(ValueError, match="contour_prior_sigma"):
        SearchConfig(contour_prior_sigma=0.0)
    peak = torch.tensor([[[30.0, 30.0], [30.0, 30.0]]])
    label = peak + torch.tensor([2.5, 0.0])
    moved = search(encode(peak, 64), label, config, contour=np.array([True, False])).searched - label
    assert float(moved[0, 0, 0]) < float(moved[0, 1, 0]) < 0  # both move toward the peak, the contour point further


def test_fast_matches_reference_on_exact_gaussian_tails():
    # Far from its peak a float32 Gaussian is tiny: squared, it would underflow without the rescaling.
    peaks = torch.tensor([[[10.0, 10.0], [50.0, 50.0], [5.0, 40.0]]])
    maps = encode(peaks, 64)
    labels = torch.tensor([[[30.0, 30.0], [40.0, 41.0], [20.0, 40.0]]])
    for dtype in (torch.float32, torch.float64):
        assert_same_result(search(maps.to(dtype), labels.to(dtype)),
                           search_reference(maps.to(dtype), labels.to(dtype)), dtype)
    assert_same_result(search(maps * 1e-30, labels), search_reference(maps * 1e-30, labels), torch.float32)


def test_sharp_gaussian_at_the_label_stays(device):
    label = torch.tensor([[[30.2, 27.7], [12.0, 50.0]]], device=device)
    result = search(encode(label, 64), label)
    assert (result.searched - label).abs().max() < 0.1
    assert result.valid.all()
    assert (result.distance_at_label < 0.2).all()


@settings(max_examples=40, deadline=None)
@given(st.floats(10, 54), st.floats(10, 54), st.floats(-6.5, 6.5), st.floats(-6.5, 6.5),
       st.sampled_from([torch.float32, torch.float64]))
def test_shifted_gaussian_is_found_with_a_weak_prior(x, y, dx, dy, dtype):
    label = torch.tensor([[[x, y]]], dtype=dtype)
    truth = label + torch.tensor([dx, dy], dtype=dtype)
    result = search(encode(truth, 64), label, WEAK_PRIOR)
    assert (result.searched - truth).abs().max() < 0.1


def test_the_prior_pulls_towards_the_label():
    label = torch.tensor([[[32.0, 32.0]]])
    truth = label + torch.tensor([4.0, 0.0])
    maps = encode(truth, 64)
    weak, strong = search(maps, label, WEAK_PRIOR), search(maps, label, SearchConfig(prior_sigma=1.0))
    assert abs(weak.searched[0, 0, 0] - 36.0) < 0.1
    assert 32.0 < strong.searched[0, 0, 0] < weak.searched[0, 0, 0] - 0.2


@pytest.mark.parametrize("angle", [0.0, 0.5, -1.0, math.pi / 2])
def test_ridge_gives_a_position_on_the_ridge(angle, device):
    centre = (31.3, 32.6)
    maps = ridge(64, centre, angle)[None, None].float()
    normal = torch.tensor([-math.sin(angle), math.cos(angle)])
    tangent = torch.tensor([math.cos(angle), math.sin(angle)])
    label = torch.tensor(centre) + 2.5 * normal + 1.5 * tangent
    # chi2: ncc's bounded distance is too flat across a ridge to beat the prior (see SearchConfig); a ridge is a
    # contour, so the contour prior applies, while the crisp points' tight prior keeps the label off it
    config = SearchConfig(similarity="chi2", prior_sigma=0.5, contour_prior_sigma=2.0)
    result = search(maps.to(device), label[None, None].to(device), config, contour=torch.tensor([True]))
    offset = result.searched[0, 0].cpu() - torch.tensor(centre)
    assert abs(float(offset @ normal)) < 0.25  # on the ridge
    assert abs(float(offset @ tangent) - 1.5) < 1.0  # and close to where the label was along it
    crisp = search(maps.to(device), label[None, None].to(device), config).searched[0, 0].cpu() - torch.tensor(centre)
    assert float(crisp @ normal) > 0.5  # clearly off the ridge (the label is 2.5 px off it)


@pytest.mark.parametrize("peak", [(3.0, 30.0), (60.0, 30.0), (30.0, 3.2), (30.0, 60.0), (3.4, 3.0), (59.6, 60.3),
                                  (0.0, 30.0), (63.0, 63.0), (0.4, 62.7)])
def test_windows_clipped_at_the_borders(peak, device):
    truth = torch.tensor([[peak]])
    label = truth + torch.tensor([2.0 if peak[0] < 32 else -2.0, 1.0 if peak[1] < 32 else -1.0])
    maps = encode(truth, 64)
    config = SearchConfig(prior_sigma=1e3, similarity="chi2")  # the border bias below is chi2's
    fast = search(maps.to(device), label.to(device), config)
    assert_same_result(fast, search_reference(maps, label, config), torch.float32)
    assert fast.valid.all()
    assert ((fast.searched >= -0.5) & (fast.searched <= 63.5)).all()
    error = (fast.searched.cpu() - truth).abs().max()
    on_border = min(*peak, 63 - peak[0], 63 - peak[1]) < 1
    # Zero padding makes a peak cut by the border look truncated: it is found up to 0.7 px inwards.
    assert error < (0.7 if on_border else 0.1)


def test_a_peak_cut_by_the_border_looks_truncated():
    inside, border = torch.tensor([[[30.0, 30.0]]]), torch.tensor([[[0.0, 30.0]]])
    chi2 = SearchConfig(similarity="chi2")
    assert patch_distance(encode(border, 64), border, chi2) > patch_distance(encode(inside, 64), inside, chi2) + 0.3


def test_labels_outside_the_map_or_missing_are_flagged():
    maps = torch.rand(1, 5, 32, 32)
    labels = torch.tensor([[[-0.6, 10.0], [10.0, 31.6], [math.nan, 3.0], [math.inf, 3.0], [-0.4, 31.4]]])
    result = search(maps, labels)
    assert result.valid.tolist() == [[False, False, False, False, True]]
    assert torch.equal(result.searched[0, :2], labels[0, :2])
    assert result.searched[0, 2, 0].isnan()
    for name in FLOAT_FIELDS[1:]:
        assert getattr(result, name)[0, :4].isnan().all(), name
    assert search_reference(maps, labels).valid.tolist() == result.valid.tolist()


def test_empty_heatmap_is_not_valid():
    result = search(torch.zeros(1, 2, 32, 32) - 1, torch.tensor([[[5.0, 5.0], [20.0, 9.0]]]))
    assert not result.valid.any()
    assert result.score.isnan().all()


def test_results_do_not_depend_on_batch_composition_or_chunks():
    g = torch.Generator().manual_seed(3)
    maps = structured_heatmaps(g, 4, 6, 64, torch.float32)
    labels = torch.rand(4, 6, 2, generator=g) * 70 - 3
    whole = search(maps, labels)
    order = torch.randperm(4, generator=g)
    shuffled = search(maps[order], labels[order])
    chunked = search(maps, labels, SearchConfig(chunk_size=5))
    strided = search(maps.transpose(-1, -2).contiguous().transpose(-1, -2), labels)  # same maps, other layout
    for name in (*FLOAT_FIELDS, "valid"):
        value = getattr(whole, name)
        torch.testing.assert_close(getattr(shuffled, name), value[order], equal_nan=True, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(getattr(chunked, name), value, equal_nan=True, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(getattr(strided, name), value, equal_nan=True, rtol=1e-6, atol=1e-6)
        alone = getattr(search(maps[2:3, 4:5], labels[2:3, 4:5]), name)
        torch.testing.assert_close(alone, value[2:3, 4:5], equal_nan=True, rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
@pytest.mark.parametrize("similarity", ["chi2", "ncc"])
def test_cuda_agrees_with_cpu(similarity):
    g = torch.Generator().manual_seed(4)
    maps = structured_heatmaps(g, 8, 68, 64, torch.float32)
    labels = torch.rand(8, 68, 2, generator=g) * 64
    config = SearchConfig(similarity=similarity)
    cpu, cuda = search(maps, labels, config), search(maps.cuda(), labels.cuda(), config)
    assert torch.equal(cpu.valid, cuda.valid.cpu())
    for name in FLOAT_FIELDS:
        torch.testing.assert_close(getattr(cuda, name).cpu(), getattr(cpu, name), rtol=1e-4, atol=1e-4,
                                   equal_nan=True)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(-8, 8), st.integers(-8, 8), st.floats(1e-3, 1e3))
def test_search_invariants(seed, shift_x, shift_y, scale):
    g = torch.Generator().manual_seed(seed)
    maps = torch.zeros(1, 3, 64, 64, dtype=torch.float64)
    maps[..., 16:48, 16:48] = structured_heatmaps(g, 1, 3, 32, torch.float64).clamp_min(0)
    labels = 16 + torch.rand(1, 3, 2, generator=g, dtype=torch.float64) * 31
    base = search(maps, labels)
    # The search never scores worse than the label's own pixel, and stays in its window.
    assert (base.score >= base.log_likelihood_at_label + base.log_prior_at_label - 1e-9).all()
    assert ((base.searched - torch.floor(labels + 0.5)).abs() <= 8.5).all()
    # D is scale-free.
    scaled = search(maps * scale, labels)
    torch.testing.assert_close(scaled.searched, base.searched, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(scaled.score, base.score, rtol=1e-7, atol=1e-7)
    # Moving map and labels by whole pixels (away from the border) moves the result with them.
    moved = search(torch.roll(maps, (shift_y, shift_x), dims=(-2, -1)), labels + torch.tensor([shift_x, shift_y]))
    torch.testing.assert_close(moved.searched, base.searched + torch.tensor([shift_x, shift_y]), rtol=0, atol=1e-9)
    torch.testing.assert_close(moved.score, base.score, rtol=1e-9, atol=1e-9)


def test_terms_add_up_and_match_patch_distance():
    g = torch.Generator().manual_seed(5)
    maps = structured_heatmaps(g, 2, 3, 64, torch.float64)
    labels = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 60 + 2
    config = SearchConfig(temperature=2.0)
    result = search(maps, labels, config)
    torch.testing.assert_close(result.score, result.log_likelihood_searched + result.log_prior_searched)
    torch.testing.assert_close(result.log_likelihood_at_label, -result.distance_at_label / 2.0)
    torch.testing.assert_close(result.distance_at_label, patch_distance(maps, labels, config))
    rounding = torch.floor(labels + 0.5) - labels
    sigma_p = config.prior_sigma_px(64)
    torch.testing.assert_close(result.log_prior_at_label, -(rounding**2).sum(-1) / (2 * sigma_p**2))


def test_half_width_scales_with_the_map_and_small_maps_work():
    assert SearchConfig().window_half_width(64) == 8 and SearchConfig().window_half_width(32) == 4
    assert SearchConfig().window_half_width(128) == 16 and SearchConfig(half_width=3).window_half_width(64) == 3
    maps = torch.rand(1, 2, 8, 8)  # smaller than the 2h + P region
    labels = torch.tensor([[[3.0, 4.0], [7.0, 0.0]]])
    config = SearchConfig(half_width=3)
    assert_same_result(search(maps, labels, config), search_reference(maps, labels, config), torch.float32)


def test_half_precision_maps_are_searched_in_float32():
    label = torch.tensor([[[20.0, 20.0]]])
    result = search(encode(label + 1.3, 64).half(), label, WEAK_PRIOR)
    assert result.searched.dtype == torch.float32
    assert (result.searched - label - 1.3).abs().max() < 0.2


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match=r"\(B, K, R, R\)"):
        search(torch.zeros(2, 64, 64), torch.zeros(2, 1, 2))
    with pytest.raises(ValueError, match=r"\(B, K, 2\)"):
        search(torch.zeros(1, 3, 64, 64), torch.zeros(1, 2, 2))
    with pytest.raises(ValueError, match="floating-point"):
        search(torch.zeros(1, 1, 8, 8, dtype=torch.long), torch.zeros(1, 1, 2))
    for field, value in [("temperature", 0.0), ("prior_sigma", -1.0), ("half_width", -1), ("similarity", "l2"),
                         ("e_floor", 1.0), ("sigma", 0.0), ("chunk_size", 0)]:
        with pytest.raises(ValueError, match=field):
            SearchConfig(**{field: value})
