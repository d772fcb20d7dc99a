"""Landmark accuracy metrics: NME, failure rate, AUC and the CED curve."""

from __future__ import annotations

import numpy as np


def point_errors(pred: np.ndarray, target: np.ndarray, normaliser: np.ndarray) -> np.ndarray:
    """(N, K) distance of each predicted point (N, K, 2) to its target (N, K, 2) over the face's normaliser (N,)."""
    pred, target = np.asarray(pred, dtype=np.float64), np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape or pred.shape[-1] != 2:
        raise ValueError(f"pred {pred.shape} and target {target.shape} must both be (N, K, 2)")
    normaliser = np.asarray(normaliser, dtype=np.float64).reshape(-1, 1)
    return np.linalg.norm(pred - target, axis=-1) / normaliser


def nme(pred: np.ndarray, target: np.ndarray, normaliser: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """(N,) normalised mean error per face: mean over its (masked, finite) points of the point errors."""
    err = point_errors(pred, target, normaliser)
    keep = np.isfinite(err) if mask is None else np.asarray(mask, dtype=bool) & np.isfinite(err)
    count = keep.sum(axis=1)
    with np.errstate(invalid="ignore"):
        return np.where(count > 0, np.where(keep, err, 0.0).sum(axis=1) / np.maximum(count, 1), np.nan)


def failure_rate(nmes: np.ndarray, threshold: float = 0.10) -> float:
    """Fraction of faces whose NME is above `threshold` (NaN faces ignored)."""
    e = np.asarray(nmes, dtype=np.float64)
    e = e[np.isfinite(e)]
    return float(np.mean(e > threshold)) if len(e) else float("nan")


def auc(nmes: np.ndarray, threshold: float = 0.10) -> float:
    """Area under the CED curve on [0, threshold], divided by threshold (1 = every face perfect).

    Exact, not sampled: the integral of the fraction of faces with error <= t over t in [0, thr]
    equals the mean over faces of max(0, thr - e).
    """
    e = np.asarray(nmes, dtype=np.float64)
    e = e[np.isfinite(e)]
    if not len(e):
        return float("nan")
    return float(np.mean(np.clip(1.0 - e / threshold, 0.0, 1.0)))


def ced_curve(nmes: np.ndarray, max_threshold: float = 0.10, steps: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """The cumulative error distribution: thresholds (steps,) from 0 to max and the fraction of faces <= each."""
    e = np.sort(np.asarray(nmes, dtype=np.float64)[np.isfinite(nmes)])
    thresholds = np.linspace(0.0, max_threshold, steps)
    fractions = np.searchsorted(e, thresholds, side="right") / max(len(e), 1)
    return thresholds, fractions


def summary(nmes: np.ndarray, thresholds: tuple[float, ...] = (0.08, 0.10)) -> dict[str, float]:
    """Mean NME, and failure rate and AUC at each threshold, as a flat dict."""
    e = np.asarray(nmes, dtype=np.float64)
    out = {"nme": float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")}
    for t in thresholds:
        out[f"fr@{t:.2f}"] = failure_rate(e, t)
        out[f"auc@{t:.2f}"] = auc(e, t)
    return out
