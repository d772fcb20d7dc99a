"""Label scoring: an audit's measurements -> `label_score`, `issue_type` and `is_label_issue` per point.

`label_score` in [0, 1], lower = more likely wrong, is a product of Student-t tail probabilities of three
standardised residuals, in NME units and split along and across the contour on contour points: the label against
the model's prediction, against its conditional mean under the labels' own shape model (`auditor.shape_model`),
and against the semantic search's position. Chain swaps and duplicates multiply in their own evidence; a mirror
test per face finds swapped sides. The evidence, the issue types and the defaults: docs/method.md.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from auditor.schemes import LandmarkScheme
from auditor.shape_model import (
    MAD_TO_SIGMA,
    conditional_field_residuals,
    conditional_residuals,
    fit_labels,
    shape_residuals,
)

ISSUE_TYPES = ("gross_error", "off_contour", "chain_swap", "duplicate", "contour_slide", "swapped_sides",
               "low_confidence")


@dataclass(frozen=True)
class ScoringConfig:
    """Thresholds and weights of the scoring; NME units unless said.

    The defaults were chosen on the two development sets, the sample set's audit and LFPW planted with seed 1,
    never on the benchmark sets (docs/method.md, "Decisions and why"). The spreads' floor (`min_sigma`) and
    pooling (`shrink_faces`) keep a point whose residuals over the dataset are very tight (an eye corner where
    the model and the labels agree to a tenth of a heatmap pixel) from turning an ordinary annotation wobble
    into a large standardised residual. An audit calibrates `issue_threshold` on the audited dataset unless
    told not to (`auditor.calibration`).
    """

    mode_ratio: float = 0.5  # a local heatmap peak this high (relative to the maximum) stands in for ŷ
    dof: float = 3.0  # ν of the Student-t tail that maps the evidence to [0, 1]
    face_scale: bool = True  # divide a face's prediction residuals by how badly the model missed the whole face
    condition_on_face: bool = True  # the prediction's and the search's residuals less what the face's others predict
    pred_weight: float | None = None  # exponent of the prediction's tail probability; None: prediction_weight()
    shape_weight: float = 1.0  # exponent of the shape model's tail probability
    search_weight: float = 0.5  # exponent of the search distance's tail probability
    shape_components: int = 8  # PCA modes of the robust fit that aligns the faces and finds first outliers
    shrink_faces: float = 100.0  # pseudo-count of the pooled spread in each point's spread
    min_sigma: float = 0.005  # floor of a component's spread (about 0.1 heatmap px at R = 64)
    issue_threshold: float = 0.005  # label_score below this: a label issue, when not calibrated (sample set's best F1)
    gross_nme: float = 0.08  # flagged and this far from the prediction: gross_error
    slide_nme: float = 0.02  # not flagged, on a contour, sliding along it by more than this: contour_slide
    low_confidence: float = 0.1  # heatmap value at the prediction below this: low_confidence
    swap_ratio: float = 0.6  # mirrored labels' NME over the labels' NME below this ...
    swap_min_nme: float = 0.05  # ... and the labels' NME above this: swapped_sides
    chain_factor: float = 0.1  # chain neighbours whose labels exchanged are this much likelier: chain_swap
    duplicate_nme: float = 0.01  # two labels closer than this ...
    duplicate_apart_nme: float = 0.04  # ... where the model puts them this far apart: duplicate
    duplicate_common: float = 0.01  # ... unless that pair's labels meet on more of the faces (a closed mouth's lips)
    duplicate_power: float = 1.0  # (distance / duplicate_nme) ** duplicate_power multiplies the moved one's score

    def to_json(self) -> dict:
        """The config as a JSON-ready dict."""
        return asdict(self)


def frame_components(residual: np.ndarray, tangents: np.ndarray) -> np.ndarray:
    """(N, K, 2) components of residuals (N, K, 2): (along, across) the unit tangent where finite, else (x, y)."""
    has = np.isfinite(tangents).all(-1, keepdims=True)
    t = np.where(has, tangents, 0.0)
    along = (residual * t).sum(-1)
    across = residual[..., 1] * t[..., 0] - residual[..., 0] * t[..., 1]
    return np.where(has, np.stack([along, across], -1), residual)


def robust_spread(components: np.ndarray, is_contour: np.ndarray, config: ScoringConfig) -> tuple[np.ndarray,
                                                                                                np.ndarray]:
    """Per point centre (K, 2) and spread (K, 2) of components (N, K, 2): median, shrunk 1.4826 MAD, floored."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point no face has labelled: all-NaN column
        centre = np.nanmedian(components, axis=0)
        sigma = MAD_TO_SIGMA * np.nanmedian(np.abs(components - centre), axis=0)
    count = np.isfinite(components).all(-1).sum(0)[:, None].astype(np.float64)  # (K, 1)
    centre = np.nan_to_num(centre)
    pooled = np.empty((2, 2))
    for kind in (True, False):
        rows = sigma[is_contour == kind]
        pooled[int(kind)] = np.nanmedian(rows, axis=0) if np.isfinite(rows).any() else config.min_sigma
    prior = pooled[is_contour.astype(int)]  # (K, 2)
    sigma = np.where(np.isfinite(sigma), sigma, prior)
    shrunk = np.sqrt((count * sigma**2 + config.shrink_faces * prior**2) / (count + config.shrink_faces))
    return centre, np.maximum(np.nan_to_num(shrunk, nan=config.min_sigma), config.min_sigma)


def standardise(components: np.ndarray, is_contour: np.ndarray, config: ScoringConfig) -> np.ndarray:
    """(N, K, 2) components (N, K, 2) less each point's robust centre, over its robust spread (robust_spread)."""
    centre, sigma = robust_spread(components, is_contour, config)
    return (components - centre) / sigma


def student_score(evidence: np.ndarray, dof: float) -> np.ndarray:
    """Tail probability (1 + s / ν)^(-ν/2) in [0, 1] of evidence s >= 0 (a squared Mahalanobis distance)."""
    return np.power(1.0 + np.maximum(evidence, 0.0) / dof, -dof / 2)


def face_model_scale(z: np.ndarray, swapped: np.ndarray) -> np.ndarray:
    """Per face factor (N,) >= 1 by which the model missed the whole face: the median standardised residual
    norm of its points (z (N, K, 2)) over that of a face the model fits as usual (the 2-D normal's median,
    sqrt(2 ln 2)); 1 for faces with swapped sides, whose residuals are the labels' fault."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        typical = np.nanmedian(np.linalg.norm(z, axis=-1), axis=1) / np.sqrt(2 * np.log(2))
    return np.where(swapped | ~np.isfinite(typical), 1.0, np.maximum(typical, 1.0))


def prediction_weight(pred_residual: np.ndarray, shape_residual: np.ndarray, swapped: np.ndarray) -> float:
    """The prediction term's exponent: min(1, (median shape residual / median prediction residual)²) over the
    labels (N, K, 2) of faces without swapped sides (N,); a model less precise than the labels' own shape
    consistency is the weaker witness, and two witnesses' information goes as their precisions (1 / σ²)."""
    keep = ~swapped
    pred = np.linalg.norm(pred_residual[keep], axis=-1)
    shape = np.linalg.norm(shape_residual[keep], axis=-1)
    if not (np.isfinite(pred).any() and np.isfinite(shape).any()):
        return 1.0
    ratio = np.nanmedian(shape) / max(np.nanmedian(pred), 1e-12)
    return float(min(1.0, ratio**2))


def chain_swaps(residual: np.ndarray, exchanged: np.ndarray, tangents: np.ndarray, pairs: np.ndarray,
                is_contour: np.ndarray, config: ScoringConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels exchanged with a chain neighbour: each point's evidence factor in (0, 1] (N, K) and its partner
    (N, K), -1 where none.

    `residual` (N, K, 2) is each label less its reference position, `exchanged` (N, P, 2, 2) each pair's (P, 2)
    two labels less the other point's reference, in NME units. Both are standardised alike (each point's robust
    spread along and across its contour), and the factor is the likelihood ratio of the labels as they are over
    the labels exchanged (2-D Student-t, `dof`), where the exchange explains them at least 1 / chain_factor times
    better: a slide along the contour within its usual spread explains itself, an order flipped across a whole
    neighbour spacing does not."""
    n, k, _ = residual.shape
    a, b = pairs[:, 0], pairs[:, 1]
    centre, sigma = robust_spread(frame_components(residual, tangents), is_contour, config)

    def log_tail(field: np.ndarray, points: np.ndarray) -> np.ndarray:  # (N, P, 2) at `points` -> (N, P)
        z = (frame_components(field, tangents[:, points]) - centre[points]) / sigma[points]
        return np.log(student_score(np.square(z).sum(-1), config.dof))

    with np.errstate(invalid="ignore"):
        ratio = np.exp(log_tail(residual[:, a], a) + log_tail(residual[:, b], b)
                       - log_tail(exchanged[:, :, 0], a) - log_tail(exchanged[:, :, 1], b))  # (N, P)
    found = np.isfinite(ratio) & (ratio < config.chain_factor)
    evidence, partner = np.ones((n, k)), np.full((n, k), -1, dtype=np.int64)
    for j in np.argsort(-np.where(found, ratio, np.inf), axis=None, kind="stable"):  # strongest pair written last
        face, pair = divmod(int(j), len(pairs))
        if found[face, pair]:
            for me, other in (pairs[pair], pairs[pair][::-1]):
                evidence[face, me], partner[face, me] = ratio[face, pair], other
    return evidence, partner


def duplicates(human: np.ndarray, reference: np.ndarray, shape: np.ndarray, normaliser: np.ndarray,
               config: ScoringConfig) -> tuple[np.ndarray, np.ndarray]:
    """Labels (N, K, 2) put on top of another label of the face: the evidence factor (N, K) in (0, 1],
    (distance / duplicate_nme) ** duplicate_power, of the one of the two that moved, 1 elsewhere, and the label
    it sits on (N, K), -1 where none. The one that moved is the one farther from its reference position
    (N, K, 2) and from its shape model's conditional mean (`shape`, the residual (N, K, 2), NME) together: a
    label clicked twice lies between the two points' model positions as often as not, but only the moved one
    is out of place in the labels' own shape. Only a pair the reference puts
    duplicate_apart_nme apart or more on that face counts, and only a pair whose labels meet on at most
    duplicate_common of the faces (and two faces): a closed mouth's inner lips meet by convention (on 55 % of
    300-W's LFPW faces), and a scheme's points may coincide by design."""
    n, k, _ = human.shape
    miss = (np.nan_to_num(np.linalg.norm(human - reference, axis=-1) / normaliser[:, None])
            + np.nan_to_num(np.linalg.norm(shape, axis=-1)))
    evidence, partner = np.ones((n, k)), np.full((n, k), -1, dtype=np.int64)
    hits, meetings = [], np.zeros((k, k), dtype=np.int64)
    for start in range(0, n, 1000):  # N·K² distances add up: in blocks of faces, float32
        faces = slice(start, min(start + 1000, n))
        scale = normaliser[faces, None, None].astype(np.float32)
        xy, ref = human[faces].astype(np.float32), reference[faces].astype(np.float32)
        distance = np.linalg.norm(xy[:, :, None] - xy[:, None, :], axis=-1) / scale
        close = np.triu(distance < config.duplicate_nme, k=1)
        meetings += close.sum(axis=0)
        apart = np.linalg.norm(ref[:, :, None] - ref[:, None, :], axis=-1) / scale > config.duplicate_apart_nme
        face, i, j = np.nonzero(close & apart)
        hits += zip(face + start, i, j, distance[face, i, j], strict=True)
    conventional = meetings > max(2, config.duplicate_common * n)
    for face, i, j, d in hits:
        if conventional[i, j]:
            continue
        moved, other = (i, j) if miss[face, i] >= miss[face, j] else (j, i)
        factor = (float(d) / config.duplicate_nme) ** config.duplicate_power
        if factor < evidence[face, moved]:
            evidence[face, moved], partner[face, moved] = factor, other
    return evidence, partner


def mirror_ratio(human: np.ndarray, pred: np.ndarray, normaliser: np.ndarray,
                 flip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face NME (N,) of the labels (N, K, 2) against the prediction, and that of the mirrored labels over it."""
    direct = np.linalg.norm(human - pred, axis=-1)
    mirrored = np.linalg.norm(human[:, flip] - pred, axis=-1)
    ok = np.isfinite(direct) & np.isfinite(mirrored)
    with np.errstate(invalid="ignore", divide="ignore"):
        nme_direct = np.where(ok, direct, 0).sum(1) / ok.sum(1) / normaliser
        nme_mirror = np.where(ok, mirrored, 0).sum(1) / ok.sum(1) / normaliser
        return nme_direct, nme_mirror / nme_direct


def score_points(points: pd.DataFrame, images: pd.DataFrame, scheme: LandmarkScheme,
                 config: ScoringConfig = ScoringConfig()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Add the scoring columns to an audit's points (N·K rows, face-major) and images (N rows) tables, in place
    (an audit's tables are large: no copies); returns the two tables.

    Points gain `tangential_nme, normal_nme, shape_residual_nme, pca_residual_nme, label_score, issue_type,
    is_label_issue`; images gain `image_label_score, num_label_issues, worst_point, worst_point_name,
    swapped_sides, swap_ratio`.
    """
    n, k = len(images), scheme.num_points
    if len(points) != n * k:
        raise ValueError(f"expected {n} x {k} point rows, got {len(points)}")

    def grid(column: str) -> np.ndarray:
        return points[column].to_numpy(dtype=np.float64).reshape(n, k)

    human = np.stack([grid("x_human"), grid("y_human")], -1)
    pred = np.stack([grid("x_pred"), grid("y_pred")], -1)
    norm = images["normaliser"].to_numpy(dtype=np.float64)
    is_contour = scheme.contour_mask
    tangents = np.where(is_contour[None, :, None], scheme.contour_tangents(pred), np.nan)
    nme_direct, ratio = mirror_ratio(human, pred, norm, scheme.flip_permutation)
    swapped = (ratio < config.swap_ratio) & (nme_direct > config.swap_min_nme)
    mode = np.stack([grid("x_mode"), grid("y_mode")], -1)
    # a face whose labels are mirrored is measured against the prediction: there the second peak is the label's
    local = (grid("mode_peak") >= config.mode_ratio * grid("confidence")) & ~swapped[:, None]
    reference = np.where(local[..., None] & np.isfinite(mode), mode, pred)
    residual = (human - reference) / norm[:, None, None]
    components = frame_components(residual, tangents)

    def standardised(field: np.ndarray) -> np.ndarray:
        """(N, K, 2) field (N, K, 2) in the contour frame, less what the face's other points predict of it
        (`condition_on_face`; not on a swapped face, whose residuals are the labels' fault), standardised."""
        if config.condition_on_face:
            given_others = conditional_field_residuals(np.where(swapped[:, None, None], np.nan, field))
            field = np.where(swapped[:, None, None], field, given_others)
        return standardise(frame_components(field, tangents), is_contour, config)

    z = standardised(residual)
    if config.face_scale:
        z = z / face_model_scale(z, swapped)[:, None, None]
    fit = fit_labels(human, config.shape_components)  # aligns the faces for both shape models
    shape = conditional_residuals(human, norm, fit=fit)  # (N, K, 2)
    shape_z = standardise(frame_components(shape, tangents), is_contour, config)
    # audits written before the proposal had its own prior hold only the one search
    broad = "searched_broad" if "x_searched_broad" in points.columns else "searched"
    searched = np.stack([grid(f"x_{broad}"), grid(f"y_{broad}")], -1)
    search_z = standardised((human - searched) / norm[:, None, None])
    pred_weight = config.pred_weight
    if pred_weight is None:
        pred_weight = prediction_weight(components, shape, swapped)
    points.attrs["pred_weight"] = float(pred_weight)  # the manifest records it
    score = (student_score(np.square(z).sum(-1), config.dof) ** pred_weight
             * student_score(np.square(shape_z).sum(-1), config.dof) ** config.shape_weight
             * student_score(np.nan_to_num(np.square(search_z).sum(-1)), config.dof) ** config.search_weight)
    not_swapped = ~swapped[:, None]
    pairs = scheme.chain_pairs()
    exchanged = np.stack([human[:, pairs[:, 1]] - reference[:, pairs[:, 0]],
                          human[:, pairs[:, 0]] - reference[:, pairs[:, 1]]], axis=2) / norm[:, None, None, None]
    chain, chain_partner = chain_swaps(residual, exchanged, tangents, pairs, is_contour, config)
    chain, chain_partner = np.where(not_swapped, chain, 1.0), np.where(not_swapped, chain_partner, -1)
    duplicate, duplicate_partner = duplicates(human, reference, shape, norm, config)
    duplicate, duplicate_partner = np.where(not_swapped, duplicate, 1.0), np.where(not_swapped, duplicate_partner, -1)
    score = score * np.minimum(chain, duplicate)
    labelled = np.isfinite(human).all(-1)
    score = np.where(labelled & np.isfinite(score), score, np.nan)

    moved = scheme.flip_permutation != np.arange(k)

    distance = np.linalg.norm(human - pred, axis=-1) / norm[:, None]
    flagged = score < config.issue_threshold
    low = grid("confidence") < config.low_confidence
    normal_dominant = np.abs(z[..., 1]) >= np.abs(z[..., 0])
    on_contour = np.isfinite(tangents).all(-1)
    kind = np.full((n, k), "", dtype=object)
    kind[on_contour & ~flagged & (np.abs(components[..., 0]) > config.slide_nme)] = "contour_slide"
    kind[flagged] = "gross_error"
    kind[flagged & on_contour & normal_dominant & (distance < config.gross_nme)] = "off_contour"
    kind[flagged & (chain < 1) & (chain <= duplicate)] = "chain_swap"
    kind[flagged & (duplicate < 1) & (duplicate < chain)] = "duplicate"
    kind[low & labelled] = "low_confidence"
    kind[swapped[:, None] & moved[None, :] & labelled] = "swapped_sides"
    kind[~labelled] = ""
    issue = labelled & (flagged | (swapped[:, None] & moved[None, :]))

    tangential = np.where(on_contour, components[..., 0], np.nan)
    normal = np.where(on_contour, components[..., 1], np.nan)
    points["tangential_nme"] = tangential.ravel()
    points["normal_nme"] = normal.ravel()
    points["shape_residual_nme"] = np.linalg.norm(shape, axis=-1).ravel()
    shape_mean = human - shape * norm[:, None, None]
    points["x_shape"], points["y_shape"] = shape_mean[..., 0].ravel(), shape_mean[..., 1].ravel()
    points["pca_residual_nme"] = np.linalg.norm(shape_residuals(human, norm, fit=fit), axis=-1).ravel()
    partner = np.where(kind == "chain_swap", chain_partner, np.where(kind == "duplicate", duplicate_partner, -1))
    partner_xy = np.where((partner >= 0)[..., None], np.take_along_axis(human, np.maximum(partner, 0)[..., None],
                                                                         axis=1), np.nan)
    points["partner"] = partner.astype(np.int16).ravel()
    points["x_partner"], points["y_partner"] = partner_xy[..., 0].ravel(), partner_xy[..., 1].ravel()
    points["label_score"] = score.ravel()
    points["issue_type"] = pd.array(kind.ravel(), dtype="string")
    points["is_label_issue"] = issue.ravel()

    filled = np.where(np.isfinite(score), score, np.inf)
    worst = np.argmin(filled, axis=1)
    has_any = np.isfinite(score).any(1)
    images["image_label_score"] = np.where(has_any, filled[np.arange(n), worst], np.nan)
    images["num_label_issues"] = issue.sum(1).astype(np.int32)
    images["worst_point"] = np.where(has_any, worst, -1).astype(np.int16)
    images["worst_point_name"] = [scheme.point_names[w] if ok else "" for w, ok in zip(worst, has_any, strict=True)]
    images["swapped_sides"] = swapped
    images["swap_ratio"] = ratio
    return points, images
