"""Planted label noise with known truth: harmless contour slides and jitter, and the error kinds an audit must find;
and several simulated annotators of the same faces, each with their own bias, spread and gross-error rate.

Magnitudes are fractions of each face's NME normaliser (the inter-ocular distance for 68 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from auditor.dataset import Dataset
from auditor.errors import InputError
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


@dataclass(frozen=True)
class AnnotatorConfig:
    """Several simulated annotators of the same faces, each with their own bias, spread and gross-error rate.

    Each annotator's parameters are drawn once, uniform in the ranges below: the gross-error rate per annotator, the
    spread and the bias per annotator and point group of the scheme; magnitudes are in NME units. Defaults: five
    annotators, three per face (the set-up of a curation team's double-checked subset); spreads from a careful
    annotator's 0.5 % to a hasty one's 4 % of the normaliser; biases up to 3 % (a habit such as clicking a jaw label
    low, or the eye corners inwards); gross errors in up to 4 % of an annotator's points, as large as `NoiseConfig`'s.
    """

    num_annotators: int = 5
    per_face: int = 3  # annotators labelling each face, chosen at random per face
    spread_range: tuple[float, float] = (0.005, 0.04)  # per-axis s.d. of a click, per annotator and group
    # along a contour the position is ill-defined and annotators spread further than across it: there the s.d.
    # along the contour is this factor times the group's spread (the case the along/across split exists for)
    along_factor: float = 2.0
    bias_max: float = 0.03  # |bias| along and across, per annotator and group, before centring
    gross_rate_range: tuple[float, float] = (0.0, 0.04)  # fraction of an annotator's points with a gross error
    gross_range: tuple[float, float] = (0.08, 0.20)  # size of a gross error

    def __post_init__(self) -> None:
        if not 1 <= self.num_annotators <= 10_000:
            raise ValueError(f"num_annotators must be in [1, 10000], got {self.num_annotators}")
        if not 1 <= self.per_face <= self.num_annotators:
            raise ValueError(f"per_face must be in [1, num_annotators = {self.num_annotators}], got {self.per_face}")
        for name in ("along_factor", "bias_max"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value <= 1e3):
                raise ValueError(f"{name} must be finite, >= 0 and at most 1000, got {value}")
        for name, top in (("spread_range", 1e3), ("gross_rate_range", 1.0), ("gross_range", 1e3)):
            lo, hi = getattr(self, name)
            if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi <= top):
                raise ValueError(f"{name} must satisfy 0 <= low <= high <= {top:g}, got {(lo, hi)}")


def annotator_names(count: int) -> list[str]:
    """The names of `count` simulated annotators: annotator_1, ..., annotator_COUNT."""
    return [f"annotator_{a + 1}" for a in range(count)]


def face_axes(xy: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """(N, 2) unit x axis of each face (N, K, 2): the principal direction of its mirror pairs' differences, pointing to
    +x in the image; the image's x axis for a face without any labelled pair."""
    d = xy[:, [b for _, b in scheme.flip_pairs]] - xy[:, [a for a, _ in scheme.flip_pairs]]  # (N, P, 2)
    d = np.nan_to_num(d)
    # the orientation of a pair (which of its points is the subject's right) does not matter to the axis: the
    # principal direction of the differences' scatter is the same for d and -d
    sxx, syy, sxy = (d[..., 0] ** 2).sum(-1), (d[..., 1] ** 2).sum(-1), (d[..., 0] * d[..., 1]).sum(-1)
    angle = 0.5 * np.arctan2(2 * sxy, sxx - syy)  # in [-pi/2, pi/2]: x component >= 0
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def annotator_frames(xy: np.ndarray, scheme: LandmarkScheme) -> tuple[np.ndarray, np.ndarray]:
    """(N, K, 2) unit direction in which an annotator's bias and spread are "along" at each point of faces (N, K, 2),
    and (N, K) True where that is a contour's tangent.

    On a contour point (the scheme's contour flag, the chain's tangent known) it is the tangent; on any other point
    it is the face's x axis (`face_axes`). "Across" is the direction turned +90 degrees, (-y, x): the contour's normal,
    or the face's y axis (down the face).
    """
    xy = np.asarray(xy, dtype=np.float64)
    tangents = scheme.contour_tangents(xy)
    on_contour = scheme.contour_mask[None, :] & np.isfinite(tangents).all(-1)
    along = np.where(on_contour[..., None], np.nan_to_num(tangents), face_axes(xy, scheme)[:, None, :])
    return along, on_contour


def draw_annotators(truth: np.ndarray, scheme: LandmarkScheme, image_ids: list[str], rng: np.random.Generator,
                    config: AnnotatorConfig, *, labelled: np.ndarray | None = None, boxes: np.ndarray | None = None
                    ) -> tuple[np.ndarray, np.ndarray, list[str], pd.DataFrame, pd.DataFrame]:
    """M = N * per_face label sets of true landmarks (N, K, 2) px by simulated annotators.

    Returns the labels (M, K, 2) px (NaN where the truth is not `labelled`), each label set's face (M,) index into
    `truth`, its annotator's name (M,), the planted parameters (one row per annotator: `name`, `faces` labelled,
    `gross_rate`, `along_factor`, and per point group `spread_<group>`, `bias_along_<group>`,
    `bias_across_<group>`, NME units) and the planted gross errors (`NOISE_COLUMNS`, kind "gross", `image_id` the
    label set's id `<annotator>/<face id>`). Label sets are in face order, each face's annotators in name order.

    A label is truth + (bias + click) * normaliser + any gross error, in the frame of `annotator_frames`: the bias
    along and across is the annotator's for the point's group; the click is normal with s.d. the group's spread
    across (and on points off the contours along too), `along_factor` times it along a contour; a gross error
    (each point with the annotator's `gross_rate`) moves the label by `gross_range` in a uniform direction. A
    face's normaliser is the scheme's, on the truth (the median of the others' where it is unknown).

    The drawn biases are centred over the annotators (mean 0 per group and component): a bias shared by every
    annotator cannot be told from the point's definition by comparing annotators with each other, so only the
    biases relative to the team are identifiable, and centred the planted values are exactly those.
    """
    clean = np.asarray(truth, dtype=np.float64)
    n, k, _ = clean.shape
    if len(image_ids) != n or k != scheme.num_points:
        raise ValueError(f"truth {clean.shape} does not match {len(image_ids)} ids and {scheme.num_points} points")
    labelled = np.isfinite(clean).all(-1) if labelled is None else labelled & np.isfinite(clean).all(-1)
    groups = scheme.group_names
    group_of = np.array([groups.index(g) for g in scheme.groups])  # (K,)
    count, per_face = config.num_annotators, config.per_face

    spread = rng.uniform(*config.spread_range, size=(count, len(groups)))
    bias = rng.uniform(-config.bias_max, config.bias_max, size=(count, len(groups), 2))
    bias -= bias.mean(axis=0)
    gross_rate = rng.uniform(*config.gross_rate_range, size=count)

    who = np.sort(np.argsort(rng.random((n, count)), axis=1)[:, :per_face], axis=1)  # (N, R) random, in order
    face, annotator = np.repeat(np.arange(n), per_face), who.reshape(-1)  # (M,)
    norm = scheme.normaliser(clean, boxes)
    known = np.isfinite(norm) & (norm > 0)
    if not known.any():
        raise InputError("no face has a known NME normaliser (its normaliser points or box): cannot size the "
                         "annotators' noise")
    norm = np.where(known, norm, np.median(norm[known]))[face][:, None]  # (M, 1)
    along, on_contour = annotator_frames(clean, scheme)
    along, on_contour = along[face], on_contour[face]  # (M, K, 2), (M, K)
    across = _unit_normals(along)

    click = rng.normal(size=(len(face), k, 2)) * spread[annotator][:, group_of, None]
    click[..., 0] *= np.where(on_contour, config.along_factor, 1.0)
    offset = bias[annotator][:, group_of] + click  # (M, K, 2) along, across; NME units
    labels = clean[face] + (offset[..., :1] * along + offset[..., 1:] * across) * norm[..., None]

    points = labelled[face]
    gross = points & (rng.random((len(face), k)) < gross_rate[annotator][:, None])
    angle = rng.uniform(0, 2 * np.pi, size=(len(face), k))
    size = rng.uniform(*config.gross_range, size=(len(face), k)) * norm
    delta = size[..., None] * np.stack([np.cos(angle), np.sin(angle)], axis=-1)
    labels = np.where(gross[..., None], labels + delta, labels)
    labels[~points] = np.nan

    names = annotator_names(count)
    label_names = [names[a] for a in annotator]
    label_ids = np.array([f"{a}/{image_ids[i]}" for a, i in zip(label_names, face, strict=True)], dtype=object)
    row, point = np.nonzero(gross)
    d = delta[row, point]
    noise = pd.DataFrame({"image_id": label_ids[row], "point": point, "kind": "gross", "dx": d[:, 0], "dy": d[:, 1],
                          "magnitude_nme": size[row, point] / norm[row, 0]}, columns=NOISE_COLUMNS)
    table = {"name": names, "faces": np.bincount(annotator, minlength=count), "gross_rate": gross_rate,
             "along_factor": config.along_factor}
    table |= {f"spread_{g}": spread[:, j] for j, g in enumerate(groups)}
    table |= {f"bias_along_{g}": bias[:, j, 0] for j, g in enumerate(groups)}
    table |= {f"bias_across_{g}": bias[:, j, 1] for j, g in enumerate(groups)}
    return labels, face, label_names, pd.DataFrame(table), noise


def annotated_dataset(ds: Dataset, labels: np.ndarray, face: np.ndarray, names: list[str]) -> Dataset:
    """The label sets (M, K, 2) px of `draw_annotators` on the faces of `ds` as a dataset: label set m has face
    `face[m]`'s image, visibility, box and attributes, the id `<annotator>/<face id>` and the annotator `names[m]`."""
    face = np.asarray(face, dtype=np.int64)
    return replace(ds, image_ids=[f"{a}/{ds.image_ids[i]}" for a, i in zip(names, face, strict=True)],
                   image_paths=[ds.image_paths[i] for i in face], landmarks=np.array(labels, dtype=np.float64),
                   visibility=ds.visibility[face], boxes=None if ds.boxes is None else ds.boxes[face],
                   attributes=None if ds.attributes is None else ds.attributes[face], annotators=list(names),
                   skipped=[])
