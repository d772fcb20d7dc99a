"""The semantic search (DESIGN.md section 2; docs/method.md): for each label `o`, the candidate `y` of a window
around it that maximises

    score(y) = -D(Φ(H, y), E) / τ  -  |y - o|² / (2 σ_p²)

where `Φ(H, y)` is the P×P patch of the heatmap centred on `y`, `E` the ideal heatmap (a centred Gaussian of the
training σ) and `D` a distance between them (`SearchConfig.similarity`). Both terms are log-probabilities up to a
constant: the likelihood `p(x | y; W) ∝ exp(-D / τ)` and the prior `p(y | o)`. Positions are `(x, y)` in heatmap
pixels, pixel `[i, j]` is the point `(x=j, y=i)`. `search` is the batched fast path; `search_reference` is the
same search as a plain float64 loop, candidate by candidate, and the tests hold the fast path to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from auditor.heatmaps import DEFAULT_SIGMA, gaussian_kernel, patch_size

Similarity = Literal["chi2", "ncc"]

EMPTY_PATCH_MASS = 1e-12  # a patch with less mass than this times the window's peak pixel is empty
FLAT_PATCH_VARIANCE = 1e-5  # ncc: a patch whose centred energy is below this fraction of Σ Q² is flat
REFERENCE_R = 64  # the resolution at which the window and prior defaults are stated


@dataclass(frozen=True)
class SearchConfig:
    """Parameters of the semantic search; lengths in heatmap pixels.

    Defaults, at R = 64 (lengths scale with R / 64 when left as None); the development runs behind each are in
    docs/method.md ("Decisions and why"):
    - `half_width` h = 8: the paper's 17×17 window.
    - `similarity` "ncc": `D = 1 - ncc(Q, E)` in [0, 2], with `ncc` the Pearson correlation of the P² values of
      the patch Q (clamped at 0) and E; a patch of constant value has no correlation and is invalid. "chi2" is
      the paper's Pearson χ²: patch and E normalised to sum 1, E mixed with a uniform floor
      `E' = (1 - f) E + f / P²` so the ratio stays finite, `D = Σ (Q - E')² / E' = Σ Q² / E' - 1` in [0, ∞), 0
      for a perfect match. ncc is the default because chi2's distance rises steeply near a peak, so a chi2
      search follows the model's own error wherever it is larger than the label's: on the sample faces ncc
      moved labels toward the truth and chi2 away from it. chi2 is the stronger pull onto a ridge, which is
      what corrects off-contour labels when the model is precise; it remains one keyword away.
    - `prior_sigma` σ_p = 1 for crisp points (and for every point when the caller gives no contour mask) and
      `contour_prior_sigma` 4 for points on a contour: annotators agree on an eye corner and slide along a
      jaw line, so the label is trusted more where it has a clear meaning.
    - `contour_along_sigma` 5 and `contour_across_sigma` 2.5: where the caller gives each contour point's
      tangent (the audit does, from the labels' chain), its prior is that elongated Gaussian instead of
      `contour_prior_sigma`'s round one: a label slides along its contour, not across.
    - `contour_sharpness` s = 6: where the prior is elongated (a contour point with a tangent), the searched
      position is the mean of the window's candidates weighted by exp(s · score), a sharpened posterior
      mean, instead of the sub-pixel argmax. Along a contour the score is nearly flat and its argmax jumps
      with the heatmap's noise; the mean does not. The other terms are still taken at the argmax. None keeps
      the argmax.
    - `proposal_along_sigma` 6 and `proposal_across_sigma` 1.5: the contour prior of the position the audit
      proposes (`proposing`), a second search beside the one above. The search above must be able to reach
      a contour that a wrong label lies off, and the label's offset from where it lands is the score's
      evidence; the proposal for a right label only slides it along its contour, where annotators disagree,
      and trusts it across, where they agree. Training's rounds take the audit's proposals
      (`auditor.train.round_targets`).
    - `temperature` τ = 1: for the argmax only σ_p / sqrt(τ) matters; τ scales the reported likelihood.
      For chi2 near a sharp Gaussian of the training σ, D ≈ |y - peak|² / σ², so the likelihood's
      curvature (2 / σ² ≈ 0.9) is close to the crisp prior's (1 / σ_p² = 1) and 14 times the round contour
      prior's (1 / 4²); along a flat hat D changes by a few units over the window, the order of the prior's
      range, so the prior decides how far a label slides along the ridge.
    - `e_floor` f = 0.01 (chi2): D of a perfect Gaussian is 0.002 (exp(-D) = 0.998) and the largest ratio
      1 / E' is about 1.2e4, so a stray pixel far out in the patch costs much but stays finite.
    """

    prior_sigma: float | None = None
    contour_prior_sigma: float | None = None
    contour_along_sigma: float | None = None
    contour_across_sigma: float | None = None
    contour_sharpness: float | None = 6.0
    proposal_along_sigma: float | None = None
    proposal_across_sigma: float | None = None
    temperature: float = 1.0
    half_width: int | None = None
    sigma: float = DEFAULT_SIGMA
    similarity: Similarity = "ncc"
    subpixel: bool = True
    e_floor: float = 0.01
    chunk_size: int = field(default=768, compare=False)  # points per chunk on CPU (cache); no effect on results

    def __post_init__(self) -> None:
        for name in ("prior_sigma", "contour_prior_sigma", "contour_along_sigma", "contour_across_sigma",
                     "contour_sharpness", "proposal_along_sigma", "proposal_across_sigma"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"SearchConfig.{name} must be > 0 or None, got {value}")
        if not self.temperature > 0:
            raise ValueError(f"SearchConfig.temperature must be > 0, got {self.temperature}")
        if self.half_width is not None and self.half_width < 0:
            raise ValueError(f"SearchConfig.half_width must be >= 0 or None, got {self.half_width}")
        if not self.sigma > 0:
            raise ValueError(f"SearchConfig.sigma must be > 0, got {self.sigma}")
        if self.similarity not in ("chi2", "ncc"):
            raise ValueError(f"SearchConfig.similarity must be 'chi2' or 'ncc', got {self.similarity!r}")
        if not 0 <= self.e_floor < 1:
            raise ValueError(f"SearchConfig.e_floor must be in [0, 1), got {self.e_floor}")
        if self.chunk_size < 1:
            raise ValueError(f"SearchConfig.chunk_size must be >= 1, got {self.chunk_size}")

    def window_half_width(self, size: int) -> int:
        """Half-width h of the search window for heatmaps of side `size`."""
        return round(8 * size / REFERENCE_R) if self.half_width is None else self.half_width

    def prior_sigma_px(self, size: int, *, contour: bool = False) -> float:
        """Prior σ_p in heatmap pixels for heatmaps of side `size`, of a contour point or of any other."""
        if contour:
            return 4.0 * size / REFERENCE_R if self.contour_prior_sigma is None else self.contour_prior_sigma
        return 1.0 * size / REFERENCE_R if self.prior_sigma is None else self.prior_sigma

    def contour_sigmas_px(self, size: int) -> tuple[float, float]:
        """(along, across) prior σ of a contour point whose tangent is known, in heatmap pixels at side `size`."""
        along = 5.0 * size / REFERENCE_R if self.contour_along_sigma is None else self.contour_along_sigma
        across = 2.5 * size / REFERENCE_R if self.contour_across_sigma is None else self.contour_across_sigma
        return along, across

    def proposing(self, size: int) -> SearchConfig:
        """The same search with the proposal's contour prior (`proposal_along_sigma`, `proposal_across_sigma`)
        in place of the search's, for heatmaps of side `size`: where the audit proposes to move a label."""
        along = 6.0 * size / REFERENCE_R if self.proposal_along_sigma is None else self.proposal_along_sigma
        across = 1.5 * size / REFERENCE_R if self.proposal_across_sigma is None else self.proposal_across_sigma
        return replace(self, contour_along_sigma=along, contour_across_sigma=across)

    @property
    def averages_along_contours(self) -> bool:
        """Whether a point with an elongated prior gets the sharpened posterior mean instead of the argmax."""
        return self.contour_sharpness is not None and self.subpixel

    def prior_sigmas_px(self, size: int, contour: np.ndarray | torch.Tensor | None, k: int) -> torch.Tensor:
        """(K,) float64 prior σ_p of each point in heatmap pixels; contour (K,) bool, or None for no contours."""
        mask = torch.zeros(k, dtype=torch.bool) if contour is None else torch.as_tensor(contour, dtype=torch.bool)
        if mask.shape != (k,):
            raise ValueError(f"contour must be a (K,) = ({k},) mask, got shape {tuple(mask.shape)}")
        return torch.where(mask.cpu(), self.prior_sigma_px(size, contour=True), self.prior_sigma_px(size)).double()


@dataclass(frozen=True)
class SearchResult:
    """What the search returns, each (B, K) unless said; NaN where `valid` is False.

    The window's centre candidate `round(o)` stands for the label: `*_at_label` terms are taken there,
    so `log_likelihood_at_label + log_prior_at_label` is the score the label's own pixel gets and
    `score` minus it is what the search gained. `*_searched` terms are taken at the integer argmax.
    """

    searched: torch.Tensor  # (B, K, 2) searched position, sub-pixel when config.subpixel (the sharpened posterior
    # mean where the prior is elongated and config.contour_sharpness is set); the label if not valid
    score: torch.Tensor  # best score = log_likelihood_searched + log_prior_searched
    log_likelihood_searched: torch.Tensor  # -D / τ at the integer argmax
    log_prior_searched: torch.Tensor  # -|y - o|² / (2 σ_p²) at the integer argmax
    distance_searched: torch.Tensor  # D at the integer argmax; exp(-D) is its Gaussian-likeness
    log_likelihood_at_label: torch.Tensor  # -D / τ at round(o); NaN if that patch is empty
    log_prior_at_label: torch.Tensor  # -|round(o) - o|² / (2 σ_p²): only the rounding, in [-1 / (4 σ_p²), 0]
    distance_at_label: torch.Tensor  # D at round(o); NaN if that patch is empty
    valid: torch.Tensor  # bool: label finite, inside the map, with at least one valid candidate


_TERMS = ("score", "log_likelihood_searched", "log_prior_searched", "distance_searched", "log_likelihood_at_label",
          "log_prior_at_label", "distance_at_label")  # the (B, K) float fields of SearchResult


def _check_inputs(heatmaps: torch.Tensor, xy_hm: torch.Tensor) -> None:
    if heatmaps.ndim != 4 or heatmaps.shape[-1] != heatmaps.shape[-2]:
        raise ValueError(f"expected heatmaps of shape (B, K, R, R), got {tuple(heatmaps.shape)}")
    if xy_hm.ndim != 3 or xy_hm.shape[-1] != 2 or xy_hm.shape[:2] != heatmaps.shape[:2]:
        raise ValueError(f"expected positions of shape (B, K, 2) = {tuple(heatmaps.shape[:2]) + (2,)}, "
                         f"got {tuple(xy_hm.shape)}")
    if not heatmaps.is_floating_point():
        raise ValueError(f"expected floating-point heatmaps, got {heatmaps.dtype}")
    if heatmaps.device != xy_hm.device:
        raise ValueError(f"heatmaps on {heatmaps.device} but positions on {xy_hm.device}")


def _compute_dtype(heatmaps: torch.Tensor) -> torch.dtype:
    return torch.float64 if heatmaps.dtype == torch.float64 else torch.float32


def _round_half_up(xy: torch.Tensor) -> torch.Tensor:
    return torch.floor(xy + 0.5)


def ideal_heatmap(config: SearchConfig, *, dtype: torch.dtype = torch.float64,
                  device: torch.device | str | None = None) -> torch.Tensor:
    """(P, P) ideal heatmap E' of the chi2 distance: the Gaussian normalised to sum 1, with its uniform floor."""
    g = gaussian_kernel(config.sigma, dtype=torch.float64)
    g = g / g.sum()
    e = (1 - config.e_floor) * g + config.e_floor / g.numel()
    return e.to(dtype=dtype, device=device)


def _toeplitz(kernel: torch.Tensor, length: int) -> torch.Tensor:
    """(L, w) matrix T with T[c, j] = kernel[c - j]: `rows @ T` correlates rows of width L with the 1-D kernel (P,)."""
    w = length - kernel.shape[0] + 1
    t = kernel.new_zeros(length, w)
    j = torch.arange(w, device=kernel.device)[:, None]
    t[j + torch.arange(kernel.shape[0], device=kernel.device), j] = kernel
    return t


@dataclass(frozen=True)
class _Plan:
    """Constants of one search: sizes and correlation matrices in the compute dtype and device."""

    half: int  # h
    patch: int  # P
    similarity: Similarity
    box: torch.Tensor  # (L, w) Toeplitz of ones: box filter along one axis
    chi2: torch.Tensor | None  # (1, 1, P, P) 1 / E'
    gauss: torch.Tensor | None  # (L, w) Toeplitz of the 1-D Gaussian g (ncc: E = outer(g, g))
    gauss_mean: float  # ncc: mean of E
    gauss_energy: float  # ncc: Σ (E - mean E)²

    @property
    def region(self) -> int:
        return 2 * self.half + self.patch


def _plan(config: SearchConfig, half: int, dtype: torch.dtype, device: torch.device) -> _Plan:
    p = patch_size(config.sigma)
    length = 2 * half + p

    def toeplitz(kernel: torch.Tensor) -> torch.Tensor:
        return _toeplitz(kernel.to(dtype=dtype, device=device), length)

    box = toeplitz(torch.ones(p, dtype=torch.float64))
    if config.similarity == "chi2":
        weight = (1 / ideal_heatmap(config)).to(dtype=dtype, device=device)
        return _Plan(half, p, "chi2", box, weight[None, None], None, 0.0, 0.0)
    g = gaussian_kernel(config.sigma, dtype=torch.float64)[p // 2]
    e = torch.outer(g, g)
    return _Plan(half, p, "ncc", box, None, toeplitz(g), float(e.mean()), float(((e - e.mean()) ** 2).sum()))


def _gather_any(flat: torch.Tensor, points: torch.Tensor, centres: torch.Tensor, side: int) -> torch.Tensor:
    """(n, side, side) regions as _copy_regions makes them, pixel by pixel: for any map size and position."""
    size = math.isqrt(flat.shape[1])
    r = torch.arange(side, device=flat.device) - side // 2
    rows, cols = centres[:, 1:2] + r, centres[:, 0:1] + r  # (n, side)
    row_starts = points[:, None] * flat.shape[1] + rows.clamp(0, size - 1) * size
    region = flat.take(row_starts[:, :, None] + cols.clamp(0, size - 1)[:, None, :]).clamp_min_(0)
    region.mul_(((rows >= 0) & (rows < size)).to(region.dtype)[:, :, None])
    return region.mul_(((cols >= 0) & (cols < size)).to(region.dtype)[:, None, :])


@dataclass(frozen=True)
class _Regions:
    """Where each point's (side, side) region lies in the flattened maps; found once per call, for all chunks."""

    side: int
    starts: torch.Tensor  # (N, side) int64: where each region row starts in flat.view(-1)
    row_bound: torch.Tensor  # (N, side, 1): 0 for region rows outside the map, +inf inside
    col_bound: torch.Tensor  # (N, 1, side): the same for columns
    by_pixel: frozenset[int]  # points copied by _gather_any instead
    all_by_pixel: bool  # maps narrower than a region: every point is copied by _gather_any


def _locate_regions(centres: torch.Tensor, size: int, side: int, dtype: torch.dtype) -> _Regions:
    """_Regions of the maps (N, size, size) around integer (x, y) centres (N, 2)."""
    n, device = centres.shape[0], centres.device
    r = torch.arange(-(side // 2), side // 2 + 1, device=device, dtype=torch.int32)
    rows = centres[:, 1:2].int() + r  # (N, side)
    cols = centres[:, 0:1].int() + r
    clamped_rows = rows.clamp(0, size - 1)
    first_col = torch.arange(n, device=device) * size**2 + centres[:, 0] - side // 2
    starts = clamped_rows * size + first_col[:, None]  # int64
    zero = torch.zeros((), dtype=dtype, device=device)
    inf = torch.full((), math.inf, dtype=dtype, device=device)
    row_bound = torch.where(clamped_rows == rows, inf, zero)[:, :, None]
    col_bound = torch.where((cols >= 0) & (cols < size), inf, zero)[:, None, :]
    if size < side:
        return _Regions(side, starts, row_bound, col_bound, frozenset(), True)
    # Only the first map's first rows and the last map's last rows can start or end outside the storage.
    last = n * size**2 - side
    by_pixel = frozenset([0] * (starts[0, 0].item() < 0) + [n - 1] * (starts[-1, -1].item() > last))
    return _Regions(side, starts.clamp(0, last) if by_pixel else starts, row_bound, col_bound, by_pixel, False)


def _copy_regions(flat: torch.Tensor, regions: _Regions, centres: torch.Tensor, sl: slice) -> torch.Tensor:
    """(n, side, side) regions of points sl of maps flat (N, R²), contiguous; clamped at 0 and zero outside the map."""
    side, start, stop = regions.side, sl.start, sl.stop
    if regions.all_by_pixel:
        return _gather_any(flat, torch.arange(start, stop, device=flat.device), centres[sl], side)
    # Each region row is a run of `side` consecutive values of the flattened maps: copy the runs out of an
    # overlapping view, one row copy each (no per-pixel index). A run that starts left of the map (or ends
    # right of it) wraps into the neighbouring map row, and rows above or below the map are read from its
    # edge row: clamping at 0 and then at an upper bound of 0 zeroes those pixels.
    runs = flat.view(-1).unfold(0, side, 1)  # (N R² - side + 1, side)
    region = runs.index_select(0, regions.starts[sl].reshape(-1)).view(stop - start, side, side)
    region.clamp_min_(0).clamp_(max=regions.row_bound[sl]).clamp_(max=regions.col_bound[sl])
    redo = [i - start for i in sorted(regions.by_pixel) if start <= i < stop]
    if redo:
        local = torch.tensor(redo, device=flat.device)
        region[local] = _gather_any(flat, local + start, centres[local + start], side)
    return region


def _box_filter(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """(n, w, w) correlation of x (n, L, L) with outer(row kernel, col kernel), each given as an (L, w) Toeplitz."""
    n, length, _ = x.shape
    along_x = (x.reshape(n * length, length) @ cols).view(n, length, -1)
    return torch.matmul(rows.T, along_x)


def _distance_terms(region: torch.Tensor, plan: _Plan) -> tuple[torch.Tensor, torch.Tensor, float, torch.Tensor]:
    """D = num / den + offset of every candidate of regions (n, L, L): num, den (n, w, w), offset, invalid (n, w, w).

    Invalid: an empty patch (or, ncc, a flat one); its num / den is meaningless. Squares `region` in place.
    """
    p = plan.patch
    peak = region.amax(dim=(1, 2))
    info = torch.finfo(region.dtype)
    if bool(((peak < info.tiny**0.5 * 1e16) | (peak > info.max**0.5 * 1e-5)).any()):
        # D is scale-free; rescale faint (or huge) regions so that the squares of every pixel that matters
        # (at least EMPTY_PATCH_MASS / P² of the peak) neither underflow nor overflow.
        peak = torch.where(peak > 0, peak, torch.ones_like(peak))
        region = region / peak[:, None, None]
        peak = torch.ones_like(peak)
    mass = _box_filter(region, plan.box, plan.box)  # Σ Q
    empty = mass <= (EMPTY_PATCH_MASS * peak)[:, None, None]
    if plan.similarity == "chi2":
        squared = region.square_()
        # Σ Q² / E' for every candidate: a correlation with the non-separable 1 / E', done as a depthwise
        # convolution (one channel per point), which oneDNN / cuDNN vectorise across points.
        weight = plan.chi2.expand(region.shape[0], 1, p, p)
        ratio = torch.nn.functional.conv2d(squared[None], weight, groups=region.shape[0])[0]
        return ratio, mass * mass, -1.0, empty
    cross = _box_filter(region, plan.gauss, plan.gauss)  # Σ Q E
    energy = _box_filter(region.square_(), plan.box, plan.box)  # Σ Q²
    centred = energy - mass * mass / p**2  # Σ (Q - mean Q)²
    den = torch.sqrt(centred.clamp_min(0) * plan.gauss_energy)
    return plan.gauss_mean * mass - cross, den, 1.0, empty | (centred <= FLAT_PATCH_VARIANCE * energy)


def _chunk_size(device: torch.device, config: SearchConfig) -> int:
    # On CPU small chunks stay in cache; a GPU wants them large (bounded for memory).
    return config.chunk_size if device.type == "cpu" else max(config.chunk_size, 16384)


@contextmanager
def _full_float32(device: torch.device) -> Iterator[None]:
    """On CUDA, turn TF32 off for the enclosed convolutions and matrix products: the search promises float32."""
    if device.type != "cuda":
        yield
        return
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _parabola_offset(left: torch.Tensor, centre: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Vertex offset in [-0.5, 0.5] of the parabola through (-1, left), (0, centre), (1, right); 0 if not finite."""
    denom = left - 2 * centre + right
    ok = torch.isfinite(left) & torch.isfinite(right) & (denom < 0)
    safe = torch.where(ok, denom, -torch.ones_like(denom))
    return torch.where(ok, 0.5 * (left - right) / safe, torch.zeros_like(denom)).clamp(-0.5, 0.5)


def label_centres(xy_hm: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Integer (x, y) (..., 2) nearest each position (..., 2), halves up, and whether it lies in a map of side `size`.

    Invalid positions (NaN, outside) get centre (0, 0) so they can be gathered safely.
    """
    rounded = _round_half_up(xy_hm)
    inside = (torch.isfinite(rounded) & (rounded >= 0) & (rounded <= size - 1)).all(dim=-1)
    centres = torch.where(inside[..., None], rounded, torch.zeros_like(rounded)).long()
    return centres, inside


def _elongated_prior(prior_x: torch.Tensor, prior_y: torch.Tensor, cand: torch.Tensor, label: torch.Tensor,
                     tangents: torch.Tensor, contour: np.ndarray | torch.Tensor, config: SearchConfig,
                     size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The log prior (n, w, w) (rows y, columns x) of every candidate: the separable prior_x + prior_y (n, w), but
    for contour points (contour (K,)) with a finite tangent (n, 2) the Gaussian elongated along it; -inf
    where the separable prior is (candidates outside the map, invalid labels). Also which points (n,) have it."""
    prior = prior_y[:, :, None] + prior_x[:, None, :]
    along, across = config.contour_sigmas_px(size)
    n = prior.shape[0]
    mask = torch.as_tensor(contour, dtype=torch.bool).to(prior.device)
    t = tangents.reshape(n, 2).to(prior)
    t = t / t.norm(dim=-1, keepdim=True)
    has = mask.repeat(n // mask.numel()) & torch.isfinite(t).all(-1)
    t = torch.where(has[:, None], t, torch.zeros_like(t))
    ux = (cand[..., 0] - label[:, None, 0])[:, None, :]  # (n, 1, w)
    uy = (cand[..., 1] - label[:, None, 1])[:, :, None]  # (n, w, 1)
    tx, ty = t[:, 0, None, None], t[:, 1, None, None]
    elongated = -0.5 * ((ux * tx + uy * ty).square() / along**2 + (uy * tx - ux * ty).square() / across**2)
    return torch.where(has[:, None, None] & torch.isfinite(prior), elongated, prior), has


# The fast path scores the whole window with no loop over candidates or points. Only the (2h+P)² region around
# each label is copied out of the maps, so the cost is O(window) per point whatever R. For chi2, `Σ Q² / E'` of
# every candidate is one correlation of the squared region with `1 / E'` (a depthwise convolution, one channel per
# point) and `Σ Q` a box filter (two products with Toeplitz matrices): `D = Σ Q² / E' / (Σ Q)² - 1`. For ncc,
# `Σ Q`, `Σ Q²` and the correlation with the separable E are all such separable filters. Points go through in
# chunks that stay in cache, so the extra memory of a call is a few MiB per chunk, not a multiple of the heatmaps.
@torch.no_grad()
def search(heatmaps: torch.Tensor, xy_hm: torch.Tensor, config: SearchConfig = SearchConfig(), *,
           contour: np.ndarray | torch.Tensor | None = None, tangents: torch.Tensor | None = None) -> SearchResult:
    """Semantic search of heatmaps (B, K, R, R) around labels (B, K, 2) in heatmap pixels -> SearchResult; contour
    (K,) marks the points on a contour (the scheme's `contour_mask`), whose prior is `contour_prior_sigma`, or,
    where tangents (B, K, 2) gives the point's unit tangent (NaN where none), the Gaussian elongated along it
    (`contour_along_sigma`, `contour_across_sigma`).

    The window holds the (2h+1)² integer candidates centred on `round(o)` (halves round up). A candidate outside
    the map is invalid, never wrapped. A patch that sticks out of the map is padded with zeros: the missing part
    carries no mass, so a peak cut by the border looks truncated, scores worse, and a peak within a pixel of the
    border is found up to 0.7 px inwards (0.1 px or better from 3 px in). A label is valid when it is finite and
    `round(o)` lies in the map, i.e. within half a pixel of it; an invalid label (or one whose whole window is
    empty) gets `searched = o`, NaN terms and `valid = False`. A candidate whose clamped patch holds less than
    EMPTY_PATCH_MASS (1e-12) of the window's brightest pixel holds no heatmap and is invalid: this keeps float32
    exact, as a patch deep in a Gaussian's tail would underflow when squared and get a meaningless distance.
    Heatmaps are expected to be finite.
    """
    _check_inputs(heatmaps, xy_hm)
    b, k, size, _ = heatmaps.shape
    n, device, dtype = b * k, heatmaps.device, _compute_dtype(heatmaps)
    half = config.window_half_width(size)
    w = 2 * half + 1
    plan = _plan(config, half, dtype, device)
    label = xy_hm.reshape(n, 2).to(dtype)
    centres, label_ok = label_centres(label, size)

    # The prior is separable: log p = prior_x + prior_y, with -inf for candidates outside the map (and for
    # every candidate of an invalid label), so they can never win.
    cand = centres.to(dtype)[:, None, :] + torch.arange(-half, half + 1, device=device, dtype=dtype)[:, None]
    sigma_p = config.prior_sigmas_px(size, contour, k).to(device=device, dtype=dtype).repeat(b)  # (n,)
    log_prior = (cand - label[:, None, :]).square_().mul_((-0.5 / sigma_p.square())[:, None, None])
    log_prior.masked_fill_((cand < 0) | (cand > size - 1) | ~label_ok[:, None, None], -math.inf)
    prior_x, prior_y = log_prior[..., 0], log_prior[..., 1]  # (n, w)
    full_prior = None  # (n, w, w) where some contour point's prior is not separable
    elongated = torch.zeros(n, dtype=torch.bool, device=device)
    if tangents is not None and contour is not None:
        full_prior, elongated = _elongated_prior(prior_x, prior_y, cand, label, tangents.to(device), contour,
                                                 config, size)
    posterior_mean = elongated & config.averages_along_contours
    mean_xy = torch.empty(n, 2, dtype=dtype, device=device)

    flat_maps = heatmaps.reshape(n, size * size).contiguous()
    regions = _locate_regions(centres, size, plan.region, flat_maps.dtype)
    best = torch.empty(n, dtype=dtype, device=device)
    arg = torch.empty(n, dtype=torch.long, device=device)
    score_centre = torch.empty_like(best)
    neighbours = torch.empty(n, 4, dtype=dtype, device=device)  # scores at x-1, x+1, y-1, y+1 of the argmax
    steps = torch.tensor([-1, 1, -w, w], device=device)
    chunk = _chunk_size(device, config)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        region = _copy_regions(flat_maps, regions, centres, sl).to(dtype)
        with _full_float32(device):
            num, den, offset, invalid = _distance_terms(region, plan)
        # score = log prior - (num / den + offset) / τ, in one pass over the window.
        if full_prior is None:
            shifted_prior = prior_y[sl, :, None] + (prior_x[sl] - offset / config.temperature)[:, None, :]
        else:
            shifted_prior = full_prior[sl] - offset / config.temperature
        score = torch.addcdiv(shifted_prior, num, den, value=-1 / config.temperature)
        score = score.masked_fill_(invalid, -math.inf).view(-1, w * w)
        torch.max(score, dim=1, out=(best[sl], arg[sl]))
        neighbours[sl] = score.gather(1, (arg[sl, None] + steps).clamp_(0, w * w - 1))
        score_centre[sl] = score[:, half * w + half]
        rows = posterior_mean[sl].nonzero()[:, 0]
        if len(rows):
            weights = torch.softmax(score[rows] * config.contour_sharpness, dim=1).view(-1, w, w)
            at = rows + start
            mean_xy[at, 0] = (weights.sum(1) * cand[at, :, 0]).sum(1)
            mean_xy[at, 1] = (weights.sum(2) * cand[at, :, 1]).sum(1)

    valid = torch.isfinite(best)
    iy, ix = arg // w, arg % w
    xy = torch.stack([cand[:, :, 0].gather(1, ix[:, None])[:, 0], cand[:, :, 1].gather(1, iy[:, None])[:, 0]], -1)
    if config.subpixel:
        # The quadratic fit never reaches across the window's edge or an invalid (-inf) neighbour.
        inside = torch.stack([ix > 0, ix < w - 1, iy > 0, iy < w - 1], dim=1)
        neighbours = neighbours.masked_fill_(~inside, -math.inf)  # (n, 4): x-1, x+1, y-1, y+1
        xy = xy + _parabola_offset(neighbours[:, 0::2], best[:, None], neighbours[:, 1::2])
    xy = torch.where((posterior_mean & valid)[:, None], mean_xy, xy)

    if full_prior is None:
        prior_searched = prior_x.gather(1, ix[:, None])[:, 0] + prior_y.gather(1, iy[:, None])[:, 0]
        prior_centre = prior_x[:, half] + prior_y[:, half]
    else:
        prior_searched = full_prior.view(n, w * w).gather(1, arg[:, None])[:, 0]
        prior_centre = full_prior[:, half, half]
    # score = log prior - D / τ, so D = τ (log prior - score): +inf where the patch was invalid.
    distance_best = (prior_searched - best) * config.temperature
    distance_centre = (prior_centre - score_centre) * config.temperature
    terms = torch.stack([best, -distance_best / config.temperature, prior_searched, distance_best,
                         -distance_centre / config.temperature, prior_centre, distance_centre])
    terms = torch.where(valid & torch.isfinite(terms), terms, torch.full_like(terms, math.nan)).view(-1, b, k)
    return SearchResult(searched=torch.where(valid[:, None], xy, label).view(b, k, 2), valid=valid.view(b, k),
                        **dict(zip(_TERMS, terms, strict=True)))


@torch.no_grad()
def clamped_patches(heatmaps: torch.Tensor, xy_hm: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, S, S) patches of heatmaps (B, K, R, R) at round(xy) (B, K, 2), and (B, K) whether that is in the map.

    S = `size` (odd); patches are clamped at 0, zero outside the map, and all zero for invalid positions.
    """
    _check_inputs(heatmaps, xy_hm)
    if size < 1 or size % 2 != 1:
        raise ValueError(f"patch size must be odd and positive, got {size}")
    b, k, map_size, _ = heatmaps.shape
    centres, inside = label_centres(xy_hm.reshape(b * k, 2), map_size)
    flat = heatmaps.reshape(b * k, map_size**2).contiguous()
    regions = _locate_regions(centres, map_size, size, flat.dtype)
    patches = _copy_regions(flat, regions, centres, slice(0, b * k))
    patches = patches * inside[:, None, None].to(patches.dtype)
    return patches.view(b, k, size, size), inside.view(b, k)


@torch.no_grad()
def patch_distance(heatmaps: torch.Tensor, xy_hm: torch.Tensor, config: SearchConfig = SearchConfig()) -> torch.Tensor:
    """(B, K) distance D to E of the patch at round(xy) (B, K, 2) of heatmaps (B, K, R, R); NaN if outside or empty.

    The same D as the search's (a window of one candidate); `exp(-D)` is the Gaussian-likeness.
    """
    _check_inputs(heatmaps, xy_hm)
    b, k, size, _ = heatmaps.shape
    dtype = _compute_dtype(heatmaps)
    plan = _plan(config, 0, dtype, heatmaps.device)
    patches, inside = clamped_patches(heatmaps, xy_hm, plan.patch)
    with _full_float32(heatmaps.device):
        num, den, offset, invalid = _distance_terms(patches.reshape(b * k, plan.patch, plan.patch).to(dtype), plan)
    distance = (num / den + offset).view(b, k)
    return torch.where(inside & ~invalid.view(b, k), distance, torch.full_like(distance, math.nan))


def _reference_distance(patch: np.ndarray, config: SearchConfig, ideal: np.ndarray) -> float:
    """D of one clamped patch (P, P) straight from its definition; NaN if flat (ncc)."""
    q = patch / patch.sum()
    if config.similarity == "chi2":
        return float(((q - ideal) ** 2 / ideal).sum())
    qc, ec = q - q.mean(), ideal - ideal.mean()
    energy = (qc**2).sum()
    if energy <= FLAT_PATCH_VARIANCE * (q**2).sum():
        return math.nan
    return float(1 - (qc * ec).sum() / math.sqrt(energy * (ec**2).sum()))


def _reference_parabola(left: float, centre: float, right: float) -> float:
    denom = left - 2 * centre + right
    if not (np.isfinite(left) and np.isfinite(right) and denom < 0):
        return 0.0
    return float(np.clip(0.5 * (left - right) / denom, -0.5, 0.5))


def _reference_prior(sigma_p: float, tangent: tuple[float, float] | None,
                     sigmas: tuple[float, float]) -> Callable[[float, float], float]:
    """log prior of an offset (dx, dy) from the label: round of sigma_p, or elongated along a unit tangent with
    sigmas (along, across)."""
    if tangent is None:
        return lambda dx, dy: -(dx**2 + dy**2) / (2 * sigma_p**2)
    (tx, ty), (along, across) = tangent, sigmas
    length = math.hypot(tx, ty)
    tx, ty = tx / length, ty / length
    return lambda dx, dy: -((dx * tx + dy * ty) ** 2 / along**2 + (dy * tx - dx * ty) ** 2 / across**2) / 2


def _reference_point(heatmap: np.ndarray, ox: float, oy: float, config: SearchConfig,
                     log_prior: Callable[[float, float], float], *, mean: bool = False) -> dict[str, float] | None:
    """The search for one map (R, R) and label (ox, oy), candidate by candidate; None if not valid. `mean`: the
    position is the posterior mean sharpened by `config.contour_sharpness` instead of the sub-pixel argmax."""
    size = heatmap.shape[0]
    if not (math.isfinite(ox) and math.isfinite(oy)):
        return None
    cx, cy = math.floor(ox + 0.5), math.floor(oy + 0.5)
    if not (0 <= cx < size and 0 <= cy < size):
        return None
    half, p = config.window_half_width(size), patch_size(config.sigma)
    ideal = ideal_heatmap(config) if config.similarity == "chi2" else gaussian_kernel(config.sigma, dtype=torch.float64)
    ideal = ideal.numpy()
    margin = half + p // 2
    padded = np.pad(np.clip(heatmap, 0, None), margin)  # padded[y + margin, x + margin] = map at (x, y)
    window_peak = padded[cy:cy + 2 * margin + 1, cx:cx + 2 * margin + 1].max()
    scores = np.full((2 * half + 1, 2 * half + 1), -np.inf)
    distances = np.full_like(scores, np.nan)
    for i in range(2 * half + 1):
        for j in range(2 * half + 1):
            x, y = cx - half + j, cy - half + i
            if not (0 <= x < size and 0 <= y < size):
                continue
            top, left = y + margin - p // 2, x + margin - p // 2
            patch = padded[top:top + p, left:left + p]
            if not patch.sum() > EMPTY_PATCH_MASS * window_peak:
                continue
            distance = _reference_distance(patch, config, ideal)
            if math.isnan(distance):
                continue
            distances[i, j] = distance
            scores[i, j] = -distance / config.temperature + log_prior(x - ox, y - oy)
    if not np.isfinite(scores).any():
        return None
    i, j = np.unravel_index(np.argmax(scores), scores.shape)
    x, y = cx - half + j, cy - half + i
    dx = dy = 0.0
    if mean:
        finite = np.isfinite(scores)
        weights = np.where(finite, np.exp(config.contour_sharpness * (scores - scores[i, j])), 0.0)
        weights /= weights.sum()
        offsets = np.arange(-half, half + 1)
        dx = float((weights.sum(0) * offsets).sum()) - (j - half)
        dy = float((weights.sum(1) * offsets).sum()) - (i - half)
    elif config.subpixel:
        around = np.pad(scores, 1, constant_values=-np.inf)  # around[i + 1, j + 1] = scores[i, j]
        dx = _reference_parabola(around[i + 1, j], scores[i, j], around[i + 1, j + 2])
        dy = _reference_parabola(around[i, j + 1], scores[i, j], around[i + 2, j + 1])
    return {
        "x": x + dx, "y": y + dy, "score": scores[i, j],
        "log_likelihood_searched": -distances[i, j] / config.temperature,
        "log_prior_searched": log_prior(x - ox, y - oy),
        "distance_searched": distances[i, j],
        "log_likelihood_at_label": -distances[half, half] / config.temperature,
        "log_prior_at_label": log_prior(cx - ox, cy - oy),
        "distance_at_label": distances[half, half],
    }


def search_reference(heatmaps: torch.Tensor, xy_hm: torch.Tensor, config: SearchConfig = SearchConfig(), *,
                     contour: np.ndarray | torch.Tensor | None = None,
                     tangents: torch.Tensor | None = None) -> SearchResult:
    """The search as a plain float64 loop over points and candidates (for tests and benchmarks); same semantics."""
    _check_inputs(heatmaps, xy_hm)
    b, k, size = heatmaps.shape[:3]
    sigmas = config.prior_sigmas_px(size, contour, k).tolist()
    on_contour = np.zeros(k, bool) if contour is None else np.asarray(torch.as_tensor(contour).cpu(), dtype=bool)
    t = None if tangents is None else tangents.detach().cpu().double().numpy()

    def tangent(bi: int, ki: int) -> tuple[float, float] | None:
        if t is None or contour is None or not on_contour[ki] or not np.isfinite(t[bi, ki]).all() \
                or not np.hypot(*t[bi, ki]) > 0:
            return None
        return float(t[bi, ki, 0]), float(t[bi, ki, 1])

    maps = heatmaps.detach().cpu().double().numpy()
    labels = xy_hm.detach().cpu().double().numpy()
    searched = labels.copy()
    valid = np.zeros((b, k), dtype=bool)
    terms = {name: np.full((b, k), np.nan) for name in _TERMS}
    for bi in range(b):
        for ki in range(k):
            direction = tangent(bi, ki)
            prior = _reference_prior(sigmas[ki], direction, config.contour_sigmas_px(size))
            found = _reference_point(maps[bi, ki], float(labels[bi, ki, 0]), float(labels[bi, ki, 1]), config, prior,
                                     mean=direction is not None and config.averages_along_contours)
            if found is None:
                continue
            valid[bi, ki] = True
            searched[bi, ki] = found["x"], found["y"]
            for name in _TERMS:
                terms[name][bi, ki] = found[name]
    dtype, device = _compute_dtype(heatmaps), heatmaps.device
    tensors = {name: torch.as_tensor(value, dtype=dtype, device=device) for name, value in terms.items()}
    return SearchResult(searched=torch.as_tensor(searched, dtype=dtype, device=device),
                        valid=torch.as_tensor(valid, device=device), **tensors)
