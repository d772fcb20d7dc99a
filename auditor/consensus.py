"""Several annotators: the consensus position of each point, each annotator's bias, spread and gross-error rate,
and each point's tolerance (COCO-style per-keypoint sigmas).

An EM over o = y + R(b n + e) with a broad gross-error component, leave-one-out agreements, witnesses of zero
bias (the caller's, and the labels' own shape: each point's conditional mean given the face's other consensus
points) and weak priors for sparse annotators; docs/method.md ("Several annotators: the model") writes it out.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from auditor.schemes import LandmarkScheme
from auditor.shape_model import MAD_TO_SIGMA, conditional_residuals

_WEIGHT_FLOOR = 1e-6  # least responsibility in the weights: a point whose observers all look gross keeps a mean
_INITIAL_GROSS_RATE = 0.05
SHAPE = "shape"  # the witness made of the labels' own shape (ConsensusConfig.shape_rounds)


@dataclass(frozen=True)
class ConsensusConfig:
    """Options of `estimate_consensus`; spreads and scales in normaliser units."""

    iterations: int = 100  # EM iterations at most
    tolerance: float = 1e-6  # stop when no bias, spread, gross rate or consensus position moves more than this
    gross_scale: float = 0.25  # s.d. of the gross-error density around the true position
    prior_strength: float = 2.0  # labelled points' worth of prior on each annotator's σ, b and π (module doc)
    initial_spread: float = 0.02  # σ (both axes) where no point is observed twice (one annotator, no witness)
    min_spread: float = 1e-4
    min_gross_rate: float = 1e-4  # never 0: an annotator who made no gross error may still make one
    max_gross_rate: float = 0.5  # the Gaussian stays the majority component
    # times the EM is run again with the labels' shape as one more witness (`shape_witness` of the last consensus);
    # 0: never. Two passes: chosen on a development set (CHANGELOG.md, 2026-12-08); it needs 3 subjects or more
    shape_rounds: int = 2


@dataclass(frozen=True)
class Consensus:
    """The result of `estimate_consensus`: positions, agreements and each observer's parameters."""

    xy: np.ndarray  # (S, K, 2) consensus positions, image px (NaN where no label and no witness)
    variance: np.ndarray  # (S, K, 2) posterior variance of each consensus position along / across its frame, px²
    agreement: np.ndarray  # (M, K) in [0, 1]: posterior probability that each label is not a gross error
    annotators: tuple[str, ...]  # sorted; the order of bias, spread and gross_rate
    groups: tuple[str, ...]  # the scheme's group names
    bias: np.ndarray  # (A, G, 2) along / across, normaliser units
    spread: np.ndarray  # (A, G, 2) s.d. along / across, normaliser units
    gross_rate: np.ndarray  # (A,)
    witness_spread: dict[str, np.ndarray]  # name -> (G, 2) s.d. along / across, normaliser units
    witness_gross_rate: dict[str, float]
    iterations: int  # EM iterations, summed over the passes (ConsensusConfig.shape_rounds)


def local_frames(xy: np.ndarray, scheme: LandmarkScheme) -> np.ndarray:
    """(..., K, 2, 2) each point's frame at positions (..., K, 2), columns (along, across): on contour points the
    chain's unit tangent t and its normal (-t_y, t_x), elsewhere the face's x axis (the first normaliser point
    towards the second; the image x axis for box schemes or where those points are missing) and its normal."""
    xy = np.asarray(xy, dtype=np.float64)
    axis = np.zeros(xy.shape[:-2] + (2,))
    axis[..., 0] = 1.0
    if scheme.normaliser_points is not None:
        a, b = scheme.normaliser_points
        d = xy[..., b, :] - xy[..., a, :]
        length = np.linalg.norm(d, axis=-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            axis = np.where(np.isfinite(d).all(-1, keepdims=True) & (length > 0), d / length, axis)
    tangent = np.where(scheme.contour_mask[:, None], scheme.contour_tangents(xy), np.nan)
    along = np.where(np.isfinite(tangent).all(-1, keepdims=True), tangent, axis[..., None, :])
    across = np.stack([-along[..., 1], along[..., 0]], axis=-1)
    return np.stack([along, across], axis=-1)


def _to_frame(frames: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(S, J, K, 2) image-space vectors (S, J, K, 2) in the frames (S, K, 2, 2): (along, across)."""
    along, across = frames[:, None, :, :, 0], frames[:, None, :, :, 1]
    return np.stack([(v * along).sum(-1), (v * across).sum(-1)], axis=-1)


def _from_frame(frames: np.ndarray, v: np.ndarray) -> np.ndarray:
    """(S, K, 2) image-space vectors from (along, across) components (S, K, 2) in the frames (S, K, 2, 2)."""
    return v[..., :1] * frames[..., 0] + v[..., 1:] * frames[..., 1]


def _checked(xy: np.ndarray, subject: np.ndarray, annotator: Sequence[str], scheme: LandmarkScheme,
             normaliser: np.ndarray, witnesses: dict[str, np.ndarray]
             ) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray, dict[str, np.ndarray]]:
    """The inputs of `estimate_consensus` as float / int arrays; ValueError naming the argument otherwise."""
    xy = np.asarray(xy, dtype=np.float64)
    k = scheme.num_points
    if xy.ndim != 3 or xy.shape[1:] != (k, 2) or len(xy) == 0:
        raise ValueError(f"xy: expected (M, {k}, 2) labels of scheme '{scheme.name}' with M >= 1, got {xy.shape}")
    m = len(xy)
    normaliser = np.asarray(normaliser, dtype=np.float64)
    if normaliser.ndim != 1 or not (np.isfinite(normaliser) & (normaliser > 0)).all():
        raise ValueError(f"normaliser: expected (S,) finite positive px, got shape {normaliser.shape}"
                         + ("" if normaliser.ndim != 1 else f" with {np.sum(~(normaliser > 0))} bad entries"))
    subject = np.asarray(subject)
    if subject.shape != (m,) or not np.issubdtype(subject.dtype, np.integer):
        raise ValueError(f"subject: expected ({m},) integers, got {subject.shape} {subject.dtype}")
    if m and (subject.min() < 0 or subject.max() >= len(normaliser)):
        raise ValueError(f"subject: expected indices in [0, {len(normaliser)}) (one normaliser per subject)")
    names = [str(a) for a in annotator]
    if len(names) != m:
        raise ValueError(f"annotator: expected {m} names, one per label set, got {len(names)}")
    checked = {}
    for name, w in witnesses.items():
        w = np.asarray(w, dtype=np.float64)
        if w.shape != (len(normaliser), k, 2):
            raise ValueError(f"witnesses['{name}']: expected ({len(normaliser)}, {k}, 2) px, got {w.shape}")
        checked[str(name)] = w
    return xy, subject.astype(np.int64), names, normaliser, checked


def _slots(subject: np.ndarray, s: int) -> tuple[np.ndarray, int]:
    """Each label set's rank (M,) among its subject's label sets, and the most label sets of one subject."""
    order = np.argsort(subject, kind="stable")
    counts = np.bincount(subject, minlength=s)
    start = np.concatenate([[0], np.cumsum(counts)[:-1]])
    slot = np.empty(len(subject), dtype=np.int64)
    slot[order] = np.arange(len(subject)) - start[subject[order]]
    return slot, int(counts.max())


def _responsibility(z: np.ndarray, o: np.ndarray, centre: np.ndarray, centre_var: np.ndarray, spread_px2: np.ndarray,
                    gross: np.ndarray, gross_px2: np.ndarray) -> np.ndarray:
    """(...) probability that each observation is not a gross error, given y ~ N(centre, diag(centre_var)):
    bias-corrected observations z and raw ones o (..., 2), centre (..., 2) and the variances (..., 2) px² per axis
    of one frame, gross rates broadcasting to (...)."""
    var_good, var_gross = spread_px2 + centre_var, gross_px2 + centre_var
    with np.errstate(invalid="ignore", divide="ignore"):  # NaN where no fellow observer: the caller sets 1
        log_odds = (np.log1p(-gross) - np.log(gross) + 0.5 * np.log(var_gross / var_good).sum(-1)
                    - (np.square(z - centre) / (2 * var_good)).sum(-1)
                    + (np.square(o - centre) / (2 * var_gross)).sum(-1))
        return np.exp(-np.logaddexp(0.0, -log_odds))


def _posterior(z: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean (S, K, 2) and variance (S, K, 2) px² of y per axis of a frame from observations z
    (S, J, K, 2) of precisions `weight` (S, J, K, 2) (0 where missing); NaN where none."""
    precision = weight.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = (weight * z).sum(1) / precision
        v = 1.0 / precision
    none = precision <= 0
    return np.where(none, np.nan, y), np.where(none, np.nan, v)


def _shrunk(total: np.ndarray, count: np.ndarray, pooled: np.ndarray, strength: float,
            previous: np.ndarray) -> np.ndarray:
    """(total + strength · pooled) / (count + strength), the previous value where that is undefined."""
    with np.errstate(invalid="ignore", divide="ignore"):
        value = (total + strength * pooled) / (count + strength)
    return np.where(np.isfinite(value), value, previous)


def _log_shrunk_spread(excess: np.ndarray, resp: np.ndarray, spread: np.ndarray, human: np.ndarray,
                       config: ConsensusConfig) -> np.ndarray:
    """(O, G, 2) spreads along / across maximising -R log σ² - X / σ² - κ/2 (log σ² - μ)² over σ² (twice the
    per-axis log posterior), from the sums X (`excess`) and R (`resp`) (O, G, 2) of the M-step, μ (G, 2) the
    R-weighted mean log σ² of the annotators' current spreads (O, G, 2), else of every observer's; the previous
    spread where R = κ = 0."""
    log_var = np.log(spread**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (resp[human] * log_var[human]).sum(0) / resp[human].sum(0)  # (G, 2)
        centre = np.where(np.isfinite(centre), centre, (resp * log_var).sum(0) / resp.sum(0))
        u = np.where(resp > 0, np.log(np.maximum(excess / resp, config.min_spread**2)), centre)  # likelihood's root
    u = np.where(np.isfinite(u), u, log_var)
    kappa = config.prior_strength
    if kappa > 0:
        target = np.where(np.isfinite(centre), centre, log_var)
        for _ in range(30):  # Newton on the gradient, decreasing and convex in u: monotone after one step
            gradient = excess * np.exp(-u) - resp - kappa * (u - target)
            step = gradient / (excess * np.exp(-u) + kappa)
            u = u + step
            if np.abs(step).max() < 1e-10:
                break
    return np.sqrt(np.maximum(np.exp(u), config.min_spread**2))


def shape_witness(xy: np.ndarray, normaliser: np.ndarray) -> np.ndarray:
    """(S, K, 2) px each point's conditional mean given the subject's other points of positions xy (S, K, 2) px,
    under the cross-fitted Gaussian shape model of the other subjects (`conditional_residuals`); NaN where xy is."""
    residual = conditional_residuals(xy, normaliser)  # (S, K, 2) NME units
    return xy - residual * normaliser[:, None, None]


def estimate_consensus(xy: np.ndarray, subject: np.ndarray, annotator: Sequence[str], scheme: LandmarkScheme,
                       normaliser: np.ndarray, *, witnesses: dict[str, np.ndarray] | None = None,
                       config: ConsensusConfig | None = None) -> Consensus:
    """The consensus of label sets xy (M, K, 2) px of subjects `subject` (M,) in [0, S) by `annotator` (M,), with
    each subject's normaliser (S,) px and optional witnesses name -> (S, K, 2) px (NaN where absent), by EM over
    the model of the module docstring.

    With `config.shape_rounds` > 0, 3 subjects or more and a subject labelled more than once, the EM runs again that
    many times with one more witness, SHAPE: each point's conditional mean given its subject's other points of the
    previous consensus (`shape_witness`). A point's shape witness does not use the point's own labels, and the
    consensus it is made from has the annotators' biases removed; where the faces' shapes say little the EM finds its
    spread large. With one label set per subject the result is the first EM's (the audit's shape evidence is then the
    scoring's)."""
    config = config or ConsensusConfig()
    xy, subject, names, normaliser, witnesses = _checked(xy, subject, annotator, scheme, normaliser, witnesses or {})
    if SHAPE in witnesses and config.shape_rounds > 0:
        raise ValueError(f"witnesses: '{SHAPE}' is the labels' own shape witness (ConsensusConfig.shape_rounds); "
                         "name yours otherwise or set shape_rounds=0")
    consensus = _estimate(xy, subject, names, scheme, normaliser, witnesses, config)
    if len(normaliser) < 3 or np.bincount(subject).max() < 2:  # no shape model to speak of; one label set a subject
        return consensus
    iterations = consensus.iterations
    for _ in range(config.shape_rounds):
        shaped = witnesses | {SHAPE: shape_witness(consensus.xy, normaliser)}
        consensus = _estimate(xy, subject, names, scheme, normaliser, shaped, config)
        iterations += consensus.iterations
    return replace(consensus, iterations=iterations)


def _estimate(xy: np.ndarray, subject: np.ndarray, names: list[str], scheme: LandmarkScheme, normaliser: np.ndarray,
              witnesses: dict[str, np.ndarray], config: ConsensusConfig) -> Consensus:
    """`estimate_consensus`'s EM on checked inputs (`_checked`), the witnesses as given."""
    annotators, who = np.unique(np.array(names, dtype=str), return_inverse=True)
    s, k = len(normaliser), scheme.num_points
    num_a, num_w = len(annotators), len(witnesses)
    num_o = num_a + num_w
    groups = scheme.group_names
    g = len(groups)
    group = np.array([groups.index(name) for name in scheme.groups])  # (K,)

    slot, j = _slots(subject, s)
    observer = np.full((s, j + num_w), -1, dtype=np.int64)
    observer[subject, slot] = who
    observer[:, j:] = num_a + np.arange(num_w)
    o = np.full((s, j + num_w, k, 2), np.nan)
    o[subject, slot] = xy
    for i, w in enumerate(witnesses.values()):
        o[:, j + i] = w
    valid = (observer >= 0)[..., None] & np.isfinite(o).all(-1)  # (S, J', K)
    o = np.where(valid[..., None], o, 0.0)
    judged = valid & (valid.sum(1, keepdims=True) > 1)  # observations with a fellow observer
    key = np.maximum(observer, 0)[..., None] * g + group  # (S, J', K) observer-group index
    labelled = np.bincount(key[valid], minlength=num_o * g).reshape(num_o, g)
    human = np.arange(num_o) < num_a
    norm = normaliser[:, None, None]  # (S, 1, 1)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: a point nobody labelled
        y = np.nanmedian(np.where(valid[:, :j, :, None], o[:, :j], np.nan), axis=1)
        if num_w:
            y = np.where(np.isfinite(y), y, np.nanmedian(np.where(valid[:, j:, :, None], o[:, j:], np.nan), axis=1))
    frames = local_frames(y, scheme)
    residual = np.abs(_to_frame(frames, o - y[:, None]) / norm[..., None])  # (S, J', K, 2)
    initial = np.full((g, 2), config.initial_spread)
    for gi in range(g):
        rows = residual[judged & (group == gi)]  # (n, 2)
        if len(rows):
            initial[gi] = MAD_TO_SIGMA * np.median(rows, axis=0)
    bias = np.zeros((num_o, g, 2))
    spread = np.tile(np.maximum(initial, config.min_spread), (num_o, 1, 1))  # (O, G, 2)
    gross = np.full(num_o, _INITIAL_GROSS_RATE)

    def corrected() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """In the current frames: the observations' components (S, J', K, 2), bias-corrected (S, J', K, 2), their
        variances per axis (S, J', K, 2) px², and gross rates (S, J', 1)."""
        o_frame = _to_frame(frames, o)
        z = o_frame - bias.reshape(-1, 2)[key] * norm[..., None]
        spread_px2 = np.square(spread.reshape(-1, 2)[key] * norm[..., None])
        return o_frame, z, spread_px2, gross[np.maximum(observer, 0)][..., None]

    gross_px2 = np.square(config.gross_scale * norm)[..., None]  # (S, 1, 1, 1)
    o_frame, z, spread_px2, rate = corrected()
    y_frame = _to_frame(frames, y[:, None])[:, 0]  # (S, K, 2)
    r = np.where(judged, _responsibility(z, o_frame, y_frame[:, None], 0.0, spread_px2, rate, gross_px2),
                 1.0)  # to the median
    iterations = 0
    while iterations < config.iterations:
        iterations += 1
        for slot_j in range(j + num_w):  # Gauss-Seidel: simultaneous updates cycle where two of three labels are gross
            weight = np.where(valid[..., None], np.maximum(r, _WEIGHT_FLOOR)[..., None] / spread_px2, 0.0)
            weight[:, slot_j] = 0.0
            centre, centre_var = _posterior(z, weight)  # y given the fellow observers
            r[:, slot_j] = _responsibility(z[:, slot_j], o_frame[:, slot_j], centre, centre_var,
                                           spread_px2[:, slot_j], rate[:, slot_j], gross_px2[:, 0])
        r = np.where(judged & np.isfinite(r), r, 1.0)
        weight = np.where(valid[..., None], np.maximum(r, _WEIGHT_FLOOR)[..., None] / spread_px2, 0.0)
        y_frame, v = _posterior(z, weight)

        e = ((o_frame - y_frame[:, None]) / norm[..., None])[judged]  # (n, 2) normaliser units, in the E-step's frames
        idx, rr = key[judged], r[judged]
        vn = np.broadcast_to((v / normaliser[:, None, None] ** 2)[:, None], o.shape)[judged]  # (n, 2)

        def total(values: np.ndarray, idx: np.ndarray = idx) -> np.ndarray:
            """(O, G) sums of per-observation values (n,), or (O, G, 2) of (n, 2), over each observer and group."""
            if values.ndim == 2:
                return np.stack([total(values[:, 0]), total(values[:, 1])], axis=-1)
            return np.bincount(idx, weights=values, minlength=num_o * g).reshape(num_o, g)

        resp, count, missed = total(rr), total(np.ones_like(rr)), total(1 - rr)
        first = total(rr[:, None] * e)  # (O, G, 2) Σ r e
        b_new = np.where(human[:, None, None], _shrunk(first, resp[..., None], 0.0, config.prior_strength, bias), 0.0)
        # Σ r E(e - b - δ)² per axis, δ ~ N(0, v) the posterior's error
        excess = total(rr[:, None] * (np.square(e) + vn)) - 2 * b_new * first + np.square(b_new) * resp[..., None]
        spread_new = _log_shrunk_spread(excess, np.repeat(resp[..., None], 2, axis=-1), spread, human, config)
        with np.errstate(invalid="ignore", divide="ignore"):  # pooled over the annotators, else over everyone
            pooled_rate = missed[human].sum() / count[human].sum()
            pooled_rate = pooled_rate if np.isfinite(pooled_rate) else missed.sum() / count.sum()
        gross_new = _shrunk(missed.sum(1), count.sum(1), pooled_rate, config.prior_strength, gross)
        gross_new = np.clip(gross_new, config.min_gross_rate, config.max_gross_rate)
        weights = labelled[:num_a]
        with np.errstate(invalid="ignore", divide="ignore"):
            common = (weights[..., None] * b_new[:num_a]).sum(0) / weights.sum(0)[:, None]  # (G, 2)
        b_new[:num_a] -= np.nan_to_num(common)

        y_new = _from_frame(frames, y_frame)
        with np.errstate(invalid="ignore"):
            moved = np.nan_to_num(np.abs(y_new - y) / norm, nan=0.0).max()
        change = max(np.abs(b_new - bias).max(), np.abs(spread_new - spread).max(),
                     np.abs(gross_new - gross).max(), moved)
        y, bias, spread, gross = y_new, b_new, spread_new, gross_new
        frames = local_frames(y, scheme)
        o_frame, z, spread_px2, rate = corrected()
        if change < config.tolerance:
            break
    y_frame, v = _posterior(z, np.where(valid[..., None], np.maximum(r, _WEIGHT_FLOOR)[..., None] / spread_px2, 0.0))
    agreement = np.where(valid[subject, slot], r[subject, slot], np.nan)
    witness_names = list(witnesses)
    return Consensus(xy=_from_frame(frames, y_frame), variance=v, agreement=agreement,
                     annotators=tuple(annotators.tolist()), groups=groups, bias=bias[:num_a], spread=spread[:num_a],
                     gross_rate=gross[:num_a],
                     witness_spread={n: spread[num_a + i] for i, n in enumerate(witness_names)},
                     witness_gross_rate={n: float(gross[num_a + i]) for i, n in enumerate(witness_names)},
                     iterations=iterations)


def face_agreement(consensus: Consensus) -> np.ndarray:
    """(M,) each label set's mean agreement over its labelled points, in [0, 1] (NaN for a set with none)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(consensus.agreement, axis=1)


def _label_errors(consensus: Consensus, xy: np.ndarray, subject: np.ndarray, normaliser: np.ndarray) -> np.ndarray:
    """(M, K) distance of each label to its subject's consensus, normaliser units (NaN where either is missing)."""
    subject = np.asarray(subject, dtype=np.int64)
    return (np.linalg.norm(np.asarray(xy, dtype=np.float64) - consensus.xy[subject], axis=-1)
            / np.asarray(normaliser, dtype=np.float64)[subject, None])


def annotator_table(consensus: Consensus, xy: np.ndarray, subject: np.ndarray, annotator: Sequence[str],
                    scheme: LandmarkScheme, normaliser: np.ndarray, *, bootstrap: int = 200,
                    seed: int = 0) -> pd.DataFrame:
    """One row per annotator, best first, from the label sets (M, K, 2) px that gave `consensus`: faces, points,
    mean_error (mean distance to the consensus, normaliser units, gross errors included) with its 95 % bootstrap
    interval over subjects (mean_error_lo, mean_error_hi; NaN with bootstrap=0), gross_rate, spread (the RMS of the
    spreads over both axes and the groups, weighted by labelled points), bias_along_<group>, bias_across_<group>,
    spread_along_<group>, spread_across_<group> and label_issues_per_100 (labels of agreement < 0.5 per 100
    labelled points)."""
    subject = np.asarray(subject, dtype=np.int64)
    names = np.array([str(a) for a in annotator], dtype=str)
    error = _label_errors(consensus, xy, subject, normaliser)
    labelled = np.isfinite(error)
    group = np.array([consensus.groups.index(name) for name in scheme.groups])
    rng = np.random.default_rng(seed)
    rows = []
    for a, name in enumerate(consensus.annotators):
        mine = names == name
        their_subjects, local = np.unique(subject[mine], return_inverse=True)
        err_sum = np.bincount(local, weights=np.nansum(error[mine], axis=1), minlength=len(their_subjects))
        err_count = np.bincount(local, weights=labelled[mine].sum(1), minlength=len(their_subjects))
        points = int(err_count.sum())
        row = {"annotator": name, "faces": int(mine.sum()), "points": points,
               "mean_error": err_sum.sum() / points if points else np.nan, "mean_error_lo": np.nan,
               "mean_error_hi": np.nan}
        if bootstrap > 0 and points:
            pick = rng.integers(0, len(their_subjects), size=(bootstrap, len(their_subjects)))
            with np.errstate(invalid="ignore", divide="ignore"):
                means = err_sum[pick].sum(1) / err_count[pick].sum(1)
            row["mean_error_lo"], row["mean_error_hi"] = np.nanpercentile(means, [2.5, 97.5])
        counts = np.bincount(np.broadcast_to(group, labelled[mine].shape)[labelled[mine]],
                             minlength=len(consensus.groups))
        row["gross_rate"] = float(consensus.gross_rate[a])
        per_group = np.mean(consensus.spread[a] ** 2, axis=-1)  # (G,)
        row["spread"] = (float(np.sqrt((counts * per_group).sum() / counts.sum())) if counts.sum()
                         else float(np.sqrt(np.mean(per_group))))
        for gi, gname in enumerate(consensus.groups):
            row[f"bias_along_{gname}"] = float(consensus.bias[a, gi, 0])
            row[f"bias_across_{gname}"] = float(consensus.bias[a, gi, 1])
            row[f"spread_along_{gname}"] = float(consensus.spread[a, gi, 0])
            row[f"spread_across_{gname}"] = float(consensus.spread[a, gi, 1])
        issues = np.sum(consensus.agreement[mine] < 0.5)
        row["label_issues_per_100"] = 100.0 * issues / points if points else np.nan
        rows.append(row)
    return pd.DataFrame(rows).sort_values("mean_error", kind="stable", na_position="last").reset_index(drop=True)


def annotator_departures(consensus: Consensus, xy: np.ndarray, subject: np.ndarray, annotator: Sequence[str],
                         normaliser: np.ndarray, *, top: int = 10) -> pd.DataFrame:
    """The `top` label sets of each annotator farthest from the consensus: annotator, label_set (row of xy),
    subject, mean_error (mean distance over the set's points, normaliser units), worst_point (index), worst_error;
    annotators in `consensus` order, each set farthest first."""
    subject = np.asarray(subject, dtype=np.int64)
    names = np.array([str(a) for a in annotator], dtype=str)
    error = _label_errors(consensus, xy, subject, normaliser)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(error, axis=1)
    has = np.isfinite(error).any(1)
    worst = np.argmax(np.where(np.isfinite(error), error, -np.inf), axis=1)
    rows = []
    for name in consensus.annotators:
        mine = np.flatnonzero((names == name) & has)
        for m in mine[np.argsort(-mean[mine], kind="stable")][:top]:
            rows.append({"annotator": name, "label_set": int(m), "subject": int(subject[m]),
                         "mean_error": float(mean[m]), "worst_point": int(worst[m]),
                         "worst_error": float(error[m, worst[m]])})
    columns = ["annotator", "label_set", "subject", "mean_error", "worst_point", "worst_error"]
    return pd.DataFrame(rows, columns=columns)


def _tolerance_table(scheme: LandmarkScheme, labels: np.ndarray, along: np.ndarray, across: np.ndarray,
                     sigma: np.ndarray, source: str) -> pd.DataFrame:
    return pd.DataFrame({"point": np.arange(scheme.num_points), "name": list(scheme.point_names),
                         "group": list(scheme.groups), "is_contour": scheme.contour_mask, "labels": labels,
                         "spread_along": along, "spread_across": across, "sigma": sigma, "source": source})


def point_tolerances(xy: np.ndarray, subject: np.ndarray, consensus: Consensus, scheme: LandmarkScheme,
                     scale: np.ndarray, *, normaliser: np.ndarray) -> pd.DataFrame:
    """Per point k of the scheme: point, name, group, is_contour, labels (used), spread_along, spread_across (per-axis
    s.d. of the labels (M, K, 2) px around the consensus, along / across the local frame, normaliser units) and
    sigma, the COCO-style per-keypoint sigma; source "annotators".

    COCO's OKS (pycocotools `computeOks`: `vars = (2 * sigma) ** 2; e = d ** 2 / vars / (area + eps) / 2`, the
    similarity exp(-e)) takes σ_k as the per-axis s.d. of annotations around the true position divided by the
    object's scale sqrt(area). Here scale (S,) px is sqrt of the face
    box's area, and σ_k pools both axes. Each label is weighted by its agreement (gross errors drop out) and
    only points labelled at least twice on a subject count; the consensus leans towards each label, so the
    posterior variance is added back per axis (E(o - y)² = (o - ŷ)² + v). The annotators' biases are part of the
    spread."""
    xy = np.asarray(xy, dtype=np.float64)
    subject = np.asarray(subject, dtype=np.int64)
    normaliser = np.asarray(normaliser, dtype=np.float64)
    scale = np.asarray(scale, dtype=np.float64)
    labelled = np.isfinite(xy).all(-1) & np.isfinite(consensus.xy[subject]).all(-1)  # (M, K)
    per_point = np.zeros(consensus.xy.shape[:2], dtype=np.int64)
    np.add.at(per_point, subject, labelled.astype(np.int64))
    weight = np.where(labelled & (per_point[subject] > 1), np.nan_to_num(consensus.agreement), 0.0)  # (M, K)
    frames = local_frames(consensus.xy, scheme)[subject]  # (M, K, 2, 2)
    components = np.einsum("mkci,mkc->mki", frames, np.where(labelled[..., None], xy - consensus.xy[subject], 0.0))
    square = np.square(components) + np.nan_to_num(consensus.variance[subject])  # (M, K, 2) px²
    total = weight.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        along_across = np.sqrt((weight[..., None] * square / normaliser[subject, None, None] ** 2).sum(0)
                               / total[:, None])
        sigma = np.sqrt((weight * square.mean(-1) / scale[subject, None] ** 2).sum(0) / total)
    return _tolerance_table(scheme, (weight > 0).sum(0), along_across[:, 0], along_across[:, 1], sigma, "annotators")


def tolerances_from_single(xy: np.ndarray, reference: np.ndarray, scheme: LandmarkScheme, scale: np.ndarray, *,
                           normaliser: np.ndarray, source: str = "reference") -> pd.DataFrame:
    """`point_tolerances`' columns with one annotator per face: the spread of the labels (N, K, 2) px around a
    reference position (N, K, 2) px (searched, consensus or the model's), robust: 1.4826 · the median absolute
    component per point (about 0, the reference, so a systematic offset counts). The reference's own error adds
    to the spread: an upper bound on the labels' tolerance. `source` names the reference in the table."""
    xy = np.asarray(xy, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    residual = xy - reference
    labelled = np.isfinite(residual).all(-1)
    components = np.einsum("nkci,nkc->nki", local_frames(reference, scheme), np.where(labelled[..., None],
                                                                                       residual, 0.0))
    components = np.where(labelled[..., None], np.abs(components), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point no face has labelled
        along_across = MAD_TO_SIGMA * np.nanmedian(components / np.asarray(normaliser)[:, None, None], axis=0)
        per_axis = MAD_TO_SIGMA * np.nanmedian(components / np.asarray(scale)[:, None, None], axis=0)
    sigma = np.sqrt(np.square(per_axis).mean(-1))
    return _tolerance_table(scheme, labelled.sum(0), along_across[:, 0], along_across[:, 1], sigma, source)


def coco_sigmas(tolerances: pd.DataFrame) -> np.ndarray:
    """(K,) a tolerance table's per-keypoint sigmas in the scheme's point order (pycocotools' `kpt_oks_sigmas`)."""
    return tolerances.sort_values("point")["sigma"].to_numpy(dtype=np.float64)
