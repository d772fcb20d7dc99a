import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from auditor.heatmaps import decode, encode, gaussian_kernel, patch_size


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
