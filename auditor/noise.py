"""Planted label noise with known truth: harmless contour slides and jitter, and the error kinds an audit must find.

Magnitudes are fractions of each face's NME normaliser (the inter-ocular distance for 68 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from auditor.schemes import LandmarkScheme

HARMLESS_KINDS = ("slide", "jitter")
ERROR_KINDS = ("gross", "moderate", "off_contour", "swap", "chain_swap", "duplicate")
NOISE_COLUMNS = ["image_id", "point", "kind", "dx", "dy", "magnitude_nme"]


@dataclass(frozen=True)
class NoiseConfig:
    """Rates and magnitude ranges of planted noise; defaults mimic real annotators (synthetic data)."""

    slide_sigma: float = 0.03  # contour points slide along the contour by N(0, slide_sigma)
    jitter_sigma: float = 0.005  # every point, per axis
    gross_rate: float = 0.02  # of points
    gross_range: tuple[float, float] = (0.08, 0.20)
    moderate_rate: float = 0.02  # of points
    moderate_range: tuple[float, float] = (0.04, 0.08)
    off_contour_rate: float = 0.03  # of contour points, along the contour's normal
    off_contour_range: tuple[float, float] = (0.03, 0.06)
    swap_rate: float = 0.03  # of faces, labelled with left and right exchanged
    # clicked in the wrong order: two neighbours along a contour chain exchanged (a fraction of the chains' pairs);
    # clicked twice: a point placed on top of the nearest other point (a fraction of points). Off by default so that
    # a seed's synthetic set stays what it was; `plant-noise` turns them on.
    chain_swap_rate: float = 0.0
    duplicate_rate: float = 0.0

    def __post_init__(self) -> None:
        for name in ("slide_sigma", "jitter_sigma", "gross_rate", "moderate_rate", "off_contour_rate", "swap_rate",
                     "chain_swap_rate", "duplicate_rate"):
            if not getattr(self, name) >= 0:  # NaN too
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("slide_sigma", "jitter_sigma", "gross_range", "moderate_range", "off_contour_range"):
            value = getattr(self, name)
            if not all(math.isfinite(v) and v <= 1e3 for v in (value if isinstance(value, tuple) else (value,))):
                raise ValueError(f"{name} must be finite and at most 1000 NME units, got {value}")
        if (self.gross_rate + self.moderate_rate > 1 or max(self.swap_rate, self.off_contour_rate, self.chain_swap_rate,
                                                             self.duplicate_rate) > 1):
            raise ValueError("rates must be fractions in [0, 1] (gross_rate + moderate_rate <= 1)")
        for name in ("gross_range", "moderate_range", "off_contour_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"{name} must satisfy 0 <= low <= high, got {(lo, hi)}")

    def errors_only(self) -> NoiseConfig:
        """The same errors without the harmless slide and jitter (real data already has its own)."""
        return replace(self, slide_sigma=0.0, jitter_sigma=0.0)


def _unit_normals(tangents: np.ndarray) -> np.ndarray:
    return np.stack([-tangents[..., 1], tangents[..., 0]], axis=-1)


def _chain_swaps(noisy: np.ndarray, free: np.ndarray, pairs: np.ndarray, rng: np.random.Generator,
                 rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Mask (N, K) and displacements (N, K, 2) exchanging chosen pairs (P, 2) of chain neighbours, both still free
    (`free` is updated); a point takes part in one swap at most."""
    n, k, _ = noisy.shape
    mask, delta = np.zeros((n, k), bool), np.zeros((n, k, 2))
    chosen = rng.random((n, len(pairs))) < rate
    for face, pair in zip(*np.nonzero(chosen), strict=True):
        a, b = pairs[pair]
        if free[face, a] and free[face, b]:
            delta[face, a], delta[face, b] = noisy[face, b] - noisy[face, a], noisy[face, a] - noisy[face, b]
            mask[face, [a, b]] = True
            free[face, [a, b]] = False
    return mask, delta


def _duplicates(clean: np.ndarray, noisy: np.ndarray, free: np.ndarray, rng: np.random.Generator,
                rate: float, iod: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mask (N, K) and displacements (N, K, 2) putting chosen free points on the label of their nearest other
    point (nearest in the clean shape) among those at least 1 % of the face's normaliser `iod` (N, 1) away (a
    closed mouth's inner lips already meet: putting one on the other would move nothing); `free` is updated."""
    n, k, _ = noisy.shape
    mask = free & (rng.random((n, k)) < rate)
    distance = np.linalg.norm(clean[:, :, None] - clean[:, None, :], axis=-1)  # (N, K, K)
    distance[distance < 0.01 * iod[:, :, None]] = np.inf  # points it already meets
    distance[:, np.arange(k), np.arange(k)] = np.inf  # and itself, also where the normaliser is unknown
    nearest = np.argmin(np.nan_to_num(distance, nan=np.inf), axis=-1)  # (N, K)
    mask &= ~np.take_along_axis(mask, nearest, axis=1)  # a point whose target moves too would land nowhere
    target = np.take_along_axis(noisy, nearest[..., None], axis=1)
    delta = np.where(mask[..., None] & np.isfinite(target), target - noisy, 0.0)
    mask &= np.isfinite(target).all(-1)
    free &= ~mask
    return mask, delta


def plant_noise(landmarks: np.ndarray, scheme: LandmarkScheme, image_ids: list[str], rng: np.random.Generator,
                config: NoiseConfig, *, labelled: np.ndarray | None = None,
                boxes: np.ndarray | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """Noisy labels (N, K, 2) from clean ones (N, K, 2), and one row per planted displacement.

    Order: slide and jitter on every face; then either a left/right swap of the whole face or
    per-point errors (gross, moderate, off-contour; then chain swaps and duplicates among the points still
    without an error; at most one error per point). Summing the rows' `dx, dy` per point gives exactly
    `noisy - landmarks`. The random draws of the later kinds come after the earlier kinds', so a seed plants
    the same earlier errors whatever their rates.
    """
    clean = np.asarray(landmarks, dtype=np.float64)
    n, k, _ = clean.shape
    if len(image_ids) != n or k != scheme.num_points:
        raise ValueError(f"landmarks {clean.shape} do not match {len(image_ids)} ids and {scheme.num_points} points")
    labelled = np.isfinite(clean).all(-1) if labelled is None else labelled & np.isfinite(clean).all(-1)
    iod = scheme.normaliser(clean, boxes)[:, None]  # (N, 1)
    tangents = np.nan_to_num(scheme.contour_tangents(clean))  # (N, K, 2), 0 off the chains
    contour = scheme.contour_mask[None, :] & labelled & (np.linalg.norm(tangents, axis=-1) > 0)
    rows: list[pd.DataFrame] = []
    noisy = clean.copy()

    def record(kind: str, mask: np.ndarray, delta: np.ndarray) -> None:
        face, point = np.nonzero(mask)
        if len(face) == 0:
            return
        d = delta[face, point]
        noisy[face, point] += d
        rows.append(pd.DataFrame({"image_id": np.asarray(image_ids, dtype=object)[face], "point": point,
                                  "kind": kind, "dx": d[:, 0], "dy": d[:, 1],
                                  "magnitude_nme": np.linalg.norm(d, axis=-1) / iod[face, 0]}))

    if config.slide_sigma > 0:
        shift = rng.normal(0.0, config.slide_sigma, size=(n, k, 1)) * iod[..., None]
        record("slide", contour, shift * tangents)
    if config.jitter_sigma > 0:
        record("jitter", labelled, rng.normal(0.0, config.jitter_sigma, size=(n, k, 2)) * iod[..., None])

    swap_face = rng.random(n) < config.swap_rate
    flip = scheme.flip_permutation
    moved = (flip != np.arange(k))[None, :] & labelled & labelled[:, flip] & swap_face[:, None]
    record("swap", moved, noisy[:, flip] - noisy)

    u = rng.random((n, k))
    free = labelled & ~swap_face[:, None]
    gross = free & (u < config.gross_rate)
    moderate = free & ~gross & (u < config.gross_rate + config.moderate_rate)
    off = contour & free & ~gross & ~moderate & (rng.random((n, k)) < config.off_contour_rate)
    angle = rng.uniform(0, 2 * np.pi, size=(n, k))
    direction = np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    for kind, mask, (lo, hi) in (("gross", gross, config.gross_range), ("moderate", moderate, config.moderate_range)):
        magnitude = rng.uniform(lo, hi, size=(n, k, 1)) * iod[..., None]
        record(kind, mask, magnitude * direction)
    sign = np.where(rng.random((n, k, 1)) < 0.5, -1.0, 1.0)
    magnitude = rng.uniform(*config.off_contour_range, size=(n, k, 1)) * iod[..., None]
    record("off_contour", off, sign * magnitude * _unit_normals(tangents))
    free &= ~(gross | moderate | off)
    if config.chain_swap_rate > 0:
        record("chain_swap", *_chain_swaps(noisy, free, scheme.chain_pairs(), rng, config.chain_swap_rate))
    if config.duplicate_rate > 0:
        record("duplicate", *_duplicates(clean, noisy, free, rng, config.duplicate_rate, iod))

    table = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=NOISE_COLUMNS)
    return noisy, table[NOISE_COLUMNS]
