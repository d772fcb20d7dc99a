"""Heatmap shape measures at given positions (DESIGN.md section 3): is the heatmap around a label a sharp
Gaussian (a crisp point) or a flat hat stretched along a contour?

Coordinates are `(x, y)` in heatmap pixels; angles are measured from +x towards +y (image axes, y down),
in (-π/2, π/2]. The measures are described in docs/method.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from auditor.heatmaps import gaussian_kernel
from auditor.search import SearchConfig, clamped_patches, patch_distance


@dataclass(frozen=True)
class ShapeStats:
    """Shape of each heatmap around a position, each (B, K) unless said; NaN where `valid` is False."""

    peak: torch.Tensor  # largest (clamped) heatmap value in the stats window
    centroid: torch.Tensor  # (B, K, 2) centre of mass of the window, in heatmap pixels
    covariance: torch.Tensor  # (B, K, 2, 2) second moments about the centroid, px²
    eigenvalues: torch.Tensor  # (B, K, 2) λ1 >= λ2 of the covariance
    anisotropy: torch.Tensor  # 1 - λ2 / λ1 in [0, 1]: 0 for a round blob, near 1 for a line
    angle: torch.Tensor  # direction of λ1's eigenvector (the ridge), radians in (-π/2, π/2]; arbitrary if round
    flat_hat_index: torch.Tensor  # pixels >= half the peak, over the same count for the ideal Gaussian
    gaussian_likeness: torch.Tensor  # exp(-D) of the search's distance on the P×P patch at round(xy), in (0, 1]
    valid: torch.Tensor  # bool: position inside the map and some heatmap mass in the window


def stats_window(sigma: float) -> int:
    """Side S of the stats window for a training σ: 2 * ceil(5 σ) + 1 (17 at σ = 1.5).

    Larger than the likelihood patch P = 11: a ridge cut to P pixels has an along-ridge variance of at most
    (P² - 1) / 12 = 10 against 2.25 across, so even an endless ridge would show an anisotropy below 0.78; at
    S = 17 it reaches 0.9, and a moderate flat hat (σ_along = 2.5 to 3 px) stays above 0.6."""
    return 2 * math.ceil(5 * sigma) + 1


@torch.no_grad()
def gaussian_likeness(heatmaps: torch.Tensor, xy_hm: torch.Tensor, config: SearchConfig | None = None) -> torch.Tensor:
    """(B, K) exp(-D) of the P×P patch at round(xy) (B, K, 2) of heatmaps (B, K, R, R); NaN if outside or empty."""
    return torch.exp(-patch_distance(heatmaps, xy_hm, config or SearchConfig()))


@torch.no_grad()
def shape_stats(heatmaps: torch.Tensor, xy_hm: torch.Tensor, config: SearchConfig | None = None, *,
                size: int | None = None) -> ShapeStats:
    """Shape measures of heatmaps (B, K, R, R) at positions (B, K, 2); `size` overrides the stats window's diameter.

    All measures but the Gaussian-likeness are taken on the stats window: the disk of diameter S
    (`stats_window`) centred on `round(xy)`, clamped at 0, zero outside the map, normalised to sum 1 where a
    weight is needed. A disk, not a square, so that a ridge measures the same at every angle (a square is longer
    along its diagonals and pulls angles towards them). The Gaussian-likeness is exp(-D) with the search's D on
    the P×P patch, so it matches the search's distances exactly.
    """
    config = config or SearchConfig()
    size = stats_window(config.sigma) if size is None else size
    patches, inside = clamped_patches(heatmaps, xy_hm, size)  # (B, K, S, S); checks the inputs
    dtype = torch.float64 if heatmaps.dtype == torch.float64 else torch.float32
    r = torch.arange(size, dtype=dtype, device=heatmaps.device) - size // 2
    disk = (r[:, None] ** 2 + r[None, :] ** 2) <= (size / 2) ** 2
    patches = patches.to(dtype) * disk
    mass = patches.sum(dim=(-2, -1))
    valid = inside & (mass > 0)
    weights = patches / torch.where(valid, mass, torch.ones_like(mass))[..., None, None]

    along_x, along_y = weights.sum(dim=-2), weights.sum(dim=-1)  # marginals (B, K, S)
    mean_x, mean_y = (along_x * r).sum(-1), (along_y * r).sum(-1)
    dx, dy = r - mean_x[..., None], r - mean_y[..., None]  # (B, K, S)
    var_x, var_y = (along_x * dx**2).sum(-1), (along_y * dy**2).sum(-1)
    cov_xy = (weights * dy[..., :, None] * dx[..., None, :]).sum(dim=(-2, -1))
    covariance = torch.stack([torch.stack([var_x, cov_xy], -1), torch.stack([cov_xy, var_y], -1)], -2)

    half_trace = (var_x + var_y) / 2
    spread = torch.sqrt(((var_x - var_y) / 2) ** 2 + cov_xy**2)
    lambda1, lambda2 = half_trace + spread, (half_trace - spread).clamp_min(0)
    anisotropy = torch.where(lambda1 > 0, 1 - lambda2 / torch.where(lambda1 > 0, lambda1, 1), 0)
    angle = 0.5 * torch.atan2(2 * cov_xy, var_x - var_y)
    angle = torch.where(angle <= -math.pi / 2, angle + math.pi, angle)  # atan2 can give -π

    peak = patches.amax(dim=(-2, -1))
    above = (patches >= 0.5 * peak[..., None, None]).sum(dim=(-2, -1)).to(dtype)
    ideal = (gaussian_kernel(config.sigma, size, dtype=torch.float64) >= 0.5).sum().item()  # 9 at σ = 1.5

    centres = torch.floor(xy_hm.to(dtype) + 0.5)
    centroid = centres + torch.stack([mean_x, mean_y], dim=-1)
    nan = torch.full_like(mass, math.nan)

    def masked(values: torch.Tensor) -> torch.Tensor:
        mask = valid.view(valid.shape + (1,) * (values.ndim - valid.ndim))
        return torch.where(mask, values, nan.view(nan.shape + (1,) * (values.ndim - nan.ndim)))

    return ShapeStats(
        peak=masked(peak),
        centroid=masked(centroid),
        covariance=masked(covariance),
        eigenvalues=masked(torch.stack([lambda1, lambda2], dim=-1)),
        anisotropy=masked(anisotropy),
        angle=masked(angle),
        flat_hat_index=masked(above / ideal),
        gaussian_likeness=masked(gaussian_likeness(heatmaps, xy_hm, config).to(dtype)),
        valid=valid,
    )
