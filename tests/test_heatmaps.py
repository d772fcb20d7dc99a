import math

import torch
from helpers import ridge
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.heatmaps import blur, decode, encode, gaussian_kernel, patch_size, refine_peaks, refine_subpixel


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.floats(0.6, 62.4), st.floats(0.6, 62.4)), min_size=1, max_size=8),
       st.sampled_from([torch.float32, torch.float64]))
def test_encode_decode_round_trip(points, dtype):
    xy = torch.tensor(points, dtype=dtype)[None]  # (1, K, 2)
    decoded, peak = decode(encode(xy, 64, 1.5))
    assert (decoded - xy).abs().max() < 0.05
    assert (peak > 0.8).all()


def test_encode_shape_peak_and_missing():
    xy = torch.tensor([[[10.0, 20.0], [float("nan"), 3.0]]])
    maps = encode(xy, 32)
    assert maps.shape == (1, 2, 32, 32)
    assert maps[0, 0, 20, 10] == 1.0 and maps[0, 0].argmax() == 20 * 32 + 10
    assert maps[0, 1].abs().sum() == 0


def test_decode_at_border_does_not_wrap():
    maps = torch.zeros(1, 1, 8, 8)
    maps[0, 0, 0, 7] = 1.0
    maps[0, 0, 0, 6] = 0.5
    xy, _ = decode(maps)
    assert xy[0, 0, 0] == 7.0 and xy[0, 0, 1] == 0.0


def test_kernel():
    k = gaussian_kernel(1.5)
    assert k.shape == (patch_size(1.5),) * 2 == (11, 11)
    assert k[5, 5] == 1.0 and torch.allclose(k, k.T) and k[5, 6] == math.exp(-1 / (2 * 1.5**2))


def test_decode_is_exact_for_a_tilted_elongated_gaussian():
    """A contour point's heatmap is elongated along a tilted contour; the per-axis fit misses its peak."""
    centre = (30.3, 27.8)
    maps = ridge(64, centre, math.radians(35), sigma_along=4.0, sigma=1.2)[None, None]
    xy, peak = decode(maps)
    assert torch.allclose(xy[0, 0], torch.tensor(centre, dtype=xy.dtype), atol=0.05)
    assert peak.item() == maps.max().item()
    per_axis = refine_subpixel(maps, maps.flatten().argmax() % 64, maps.flatten().argmax() // 64)
    assert (per_axis[0, 0] - torch.tensor(centre, dtype=xy.dtype)).norm() > 0.1


def test_decode_is_steadier_than_the_raw_peak_on_noisy_maps():
    g = torch.Generator().manual_seed(0)
    truth = 20 + 24 * torch.rand(200, 1, 2, generator=g, dtype=torch.float64)
    maps = encode(truth, 64, 1.5) + 0.08 * torch.randn(200, 1, 64, 64, generator=g, dtype=torch.float64)
    xy, _ = decode(maps)
    flat = maps.flatten(-2).argmax(-1)
    raw = refine_subpixel(maps, flat % 64, flat // 64)
    new_err, raw_err = (xy - truth).norm(dim=-1).mean(), (raw - truth).norm(dim=-1).mean()
    assert new_err < 0.6 * raw_err


def test_blur_keeps_the_mass_and_the_position_of_a_peak():
    maps = torch.zeros(1, 1, 32, 32, dtype=torch.float64)
    maps[0, 0, 12, 17] = 1.0
    out = blur(maps, 1.5)
    assert math.isclose(out.sum().item(), 1.0, rel_tol=1e-9)
    assert out[0, 0].argmax().item() == 12 * 32 + 17
    assert torch.allclose(out[0, 0, 10, 17], out[0, 0, 14, 17]) and torch.allclose(out[0, 0, 12, 15], out[0, 0, 12, 19])


def test_refine_peaks_finds_each_of_two_peaks_from_its_own_pixel():
    """The audit's local mode: a second peak in the window is refined to sub-pixel like the prediction."""
    centres = torch.tensor([[[20.3, 30.6], [41.8, 29.2]]], dtype=torch.float64)
    maps = encode(centres, 64, 1.5).sum(1, keepdim=True).expand(1, 2, 64, 64)  # both channels hold both peaks
    xy = refine_peaks(maps, torch.tensor([[20, 42]]), torch.tensor([[31, 29]]))
    assert torch.allclose(xy, centres, atol=0.05)
    near_border = encode(torch.tensor([[[1.3, 40.0]]], dtype=torch.float64), 64, 1.5)
    xy = refine_peaks(near_border, torch.tensor([[1]]), torch.tensor([[40]]))  # the raw map's per-axis fit there
    assert torch.allclose(xy, torch.tensor([[[1.3, 40.0]]], dtype=torch.float64), atol=0.05)


def test_blur_is_the_zero_padded_convolution():
    maps = torch.rand(2, 3, 20, 24, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    k = gaussian_kernel(1.5, dtype=torch.float64)
    k = k / k.sum()
    reference = torch.nn.functional.conv2d(maps.reshape(6, 1, 20, 24), k[None, None], padding=k.shape[0] // 2)
    assert torch.allclose(blur(maps, 1.5), reference.reshape(2, 3, 20, 24))
