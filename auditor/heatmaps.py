"""Heatmap encode / decode with sub-pixel refinement, and the Gaussian kernels they are built from.

Coordinates are `(x, y)` in heatmap pixels with pixel centres on integers: pixel `[i, j]` of a
map is the point `(x=j, y=i)`.
"""

from __future__ import annotations

import math

import torch

DEFAULT_SIGMA = 1.5


def patch_size(sigma: float = DEFAULT_SIGMA) -> int:
    """Side P of the patch holding a Gaussian of `sigma`: 2 * ceil(3 sigma) + 1."""
    return 2 * math.ceil(3 * sigma) + 1


def gaussian_kernel(sigma: float = DEFAULT_SIGMA, size: int | None = None, *, dtype: torch.dtype = torch.float32,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """(P, P) centred Gaussian with peak 1; P = `patch_size(sigma)` unless given (odd)."""
    size = patch_size(sigma) if size is None else size
    if size % 2 != 1:
        raise ValueError(f"kernel size must be odd, got {size}")
    r = torch.arange(size, dtype=dtype, device=device) - size // 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    return g[:, None] * g[None, :]


def encode(xy_hm: torch.Tensor, size: int, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Gaussian target heatmaps (B, K, R, R), peak 1, from positions (B, K, 2); NaN positions give zero maps."""
    if xy_hm.ndim != 3 or xy_hm.shape[-1] != 2:
        raise ValueError(f"expected positions of shape (B, K, 2), got {tuple(xy_hm.shape)}")
    dtype = xy_hm.dtype if xy_hm.is_floating_point() else torch.float32
    r = torch.arange(size, dtype=dtype, device=xy_hm.device)
    xy = xy_hm.to(dtype)
    valid = torch.isfinite(xy).all(dim=-1)
    xy = torch.where(valid[..., None], xy, torch.zeros_like(xy))
    gx = torch.exp(-((r - xy[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, K, R)
    gy = torch.exp(-((r - xy[..., 1:2]) ** 2) / (2 * sigma**2))
    maps = gy[..., :, None] * gx[..., None, :]
    return maps * valid[..., None, None].to(dtype)


def _parabola_offset(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Vertex offset in [-0.5, 0.5] of the parabola through (-1, left), (0, centre), (1, right)."""
    denom = left - 2 * centre + right
    safe = torch.where(denom < 0, denom, -torch.ones_like(denom))
    offset = torch.where(denom < 0, 0.5 * (left - right) / safe, torch.zeros_like(denom))
    return offset.clamp(-0.5, 0.5)


def refine_subpixel(maps: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor) -> torch.Tensor:
    """Sub-pixel (x, y) (..., 2) of integer peaks (ix, iy) (...) on maps (..., H, W).

    A quadratic fit of the log of the map on each axis, which is exact for a Gaussian;
    where a neighbour is not positive, the fit uses the raw values instead. No refinement on
    an axis where the peak touches the border.
    """
    h, w = maps.shape[-2:]
    flat = maps.reshape(-1, h, w)
    ix, iy = ix.reshape(-1), iy.reshape(-1)
    n = torch.arange(flat.shape[0], device=maps.device)

    def at(dx: int, dy: int) -> torch.Tensor:
        return flat[n, (iy + dy).clamp(0, h - 1), (ix + dx).clamp(0, w - 1)]

    centre, left, right, up, down = at(0, 0), at(-1, 0), at(1, 0), at(0, -1), at(0, 1)
    tiny = torch.finfo(flat.dtype).tiny
    use_log = (torch.stack([centre, left, right, up, down]) > tiny).all(dim=0)
    lc, ll, lr, lu, ld = (torch.log(v.clamp_min(tiny)) for v in (centre, left, right, up, down))
    ox = torch.where(use_log, _parabola_offset(ll, lc, lr), _parabola_offset(left, centre, right))
    oy = torch.where(use_log, _parabola_offset(lu, lc, ld), _parabola_offset(up, centre, down))
    ox = torch.where((ix > 0) & (ix < w - 1), ox, torch.zeros_like(ox))
    oy = torch.where((iy > 0) & (iy < h - 1), oy, torch.zeros_like(oy))
    xy = torch.stack([ix.to(flat.dtype) + ox, iy.to(flat.dtype) + oy], dim=-1)
    return xy.reshape(*maps.shape[:-2], 2)


def _blur_matrix(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(size, size) banded matrix of a unit-mass Gaussian of `sigma` truncated at 3 sigma: M @ v blurs v, zero
    outside."""
    r = torch.arange(size, dtype=dtype, device=device)
    d = r[:, None] - r[None, :]
    radius = patch_size(sigma) // 2
    g = torch.exp(-(d**2) / (2 * sigma**2)) * (d.abs() <= radius)
    return g / torch.exp(-(torch.arange(-radius, radius + 1, dtype=dtype, device=device) ** 2) / (2 * sigma**2)).sum()


def blur(heatmaps: torch.Tensor, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Heatmaps (B, K, H, W) convolved with a unit-mass Gaussian of `sigma` (truncated at 3 sigma, zero outside).

    Two matrix products with banded matrices: on a CPU far faster than a one-channel convolution."""
    h, w = heatmaps.shape[-2:]
    along_x = heatmaps @ _blur_matrix(w, sigma, heatmaps.dtype, heatmaps.device).T
    return _blur_matrix(h, sigma, heatmaps.dtype, heatmaps.device) @ along_x


def smooth(heatmaps: torch.Tensor, sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """The maps (B, K, H, W) the decoding reads: heatmaps (B, K, H, W) clamped at 0 and blurred with `sigma`."""
    return blur(heatmaps.clamp_min(0), sigma)


def _newton_step(smoothed: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor,
                 sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions (n, 2): pixels (ix, iy) (n,) moved by one 2-D Newton step toward the maximum of the log of
    smoothed maps (n, H, W) (|step| <= 1 per axis), and (n,) whether the step holds: the finite-difference
    Hessian is negative definite and the pixel is beyond the smoothing's reach of the border."""
    n, h, w = smoothed.shape
    rows = torch.arange(n, device=smoothed.device)
    x, y = ix.clamp(1, w - 2), iy.clamp(1, h - 2)
    tiny = torch.finfo(smoothed.dtype).tiny

    def at(dx: int, dy: int) -> torch.Tensor:
        return torch.log(smoothed[rows, y + dy, x + dx].clamp_min(tiny))

    centre = at(0, 0)
    gx, gy = 0.5 * (at(1, 0) - at(-1, 0)), 0.5 * (at(0, 1) - at(0, -1))
    hxx, hyy = at(1, 0) - 2 * centre + at(-1, 0), at(0, 1) - 2 * centre + at(0, -1)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    margin = patch_size(sigma) // 2 + 1
    ok = (ix >= margin) & (ix < w - margin) & (iy >= margin) & (iy < h - margin)
    ok &= (hxx < 0) & (det > 0) & torch.isfinite(det)
    safe = torch.where(ok, det, torch.ones_like(det))
    offset = torch.stack([(hxy * gy - hyy * gx) / safe, (hxy * gx - hxx * gy) / safe], dim=-1)
    offset = torch.where(ok[:, None], offset, torch.zeros_like(offset)).clamp(-1, 1)
    return torch.stack([ix, iy], dim=-1).to(smoothed.dtype) + offset, ok


def refine_peaks(heatmaps: torch.Tensor, ix: torch.Tensor, iy: torch.Tensor, sigma: float = DEFAULT_SIGMA, *,
                 smoothed: torch.Tensor | None = None) -> torch.Tensor:
    """Sub-pixel positions (B, K, 2) of the peaks at integer pixels (ix, iy) (B, K) of heatmaps (B, K, H, W):
    a Newton step on the log of the map smoothed with a Gaussian of `sigma` (see `decode`; `smoothed` (B, K, H, W)
    if the caller already has `smooth(heatmaps, sigma)`), or where that does not hold, `refine_subpixel` on the
    raw map."""
    b, k, h, w = heatmaps.shape
    ix, iy = ix.reshape(-1).clamp(0, w - 1), iy.reshape(-1).clamp(0, h - 1)
    smoothed = smooth(heatmaps, sigma) if smoothed is None else smoothed
    xy, ok = _newton_step(smoothed.reshape(b * k, h, w), ix, iy, sigma)
    plain = refine_subpixel(heatmaps.reshape(b * k, h, w), ix, iy)
    return torch.where(ok[:, None], xy, plain).reshape(b, k, 2)


def decode(heatmaps: torch.Tensor, sigma: float = DEFAULT_SIGMA, *,
           smoothed: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Peak positions (B, K, 2) in heatmap pixels and peak values (B, K) of heatmaps (B, K, R, R).

    Distribution-aware: the map is first smoothed with a Gaussian of the training targets' `sigma`, which
    keeps a Gaussian peak where it is and evens out the network's pixel noise; the position is the smoothed
    map's highest pixel moved by one Newton step on its log (exact for a Gaussian of any orientation).
    Within the smoothing's reach of the border (where it would pull the peak inward), or where that step
    does not exist, the raw map's highest pixel refined per axis (`refine_subpixel`) is used. The peak
    value is the raw map's maximum. `smoothed`: `smooth(heatmaps, sigma)`, if the caller already has it.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"expected heatmaps of shape (B, K, H, W), got {tuple(heatmaps.shape)}")
    b, k, h, w = heatmaps.shape
    peak, raw_idx = heatmaps.reshape(b, k, h * w).max(dim=-1)
    plain = refine_subpixel(heatmaps, raw_idx % w, raw_idx // w).reshape(b * k, 2)
    smoothed = (smooth(heatmaps, sigma) if smoothed is None else smoothed).reshape(b * k, h, w)
    idx = smoothed.reshape(b * k, h * w).argmax(dim=-1)
    xy, ok = _newton_step(smoothed, idx % w, idx // w, sigma)
    return torch.where(ok[:, None], xy, plain).reshape(b, k, 2), peak
