"""Shape models of the labels alone: a robust PCA model (the reference scorer any user can run) and a
conditional Gaussian model that predicts each point from all the others (the auditor's shape evidence).

Shapes are complex vectors (x + iy), so a similarity is one complex factor and a shift. A PCA fit with a few
modes cannot see a jaw point pushed off the jaw line while its neighbours stay on it; the conditional mean can.
The conditional model is cross-fitted, so a face does not explain its own errors (docs/method.md).
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np

MAD_TO_SIGMA = 1.4826  # a normal distribution's σ over its median absolute deviation
TUKEY_C = 4.685  # biweight tuning constant (95 % efficiency under normal residuals)
OUTLIER_CHI2 = 13.8  # χ²(2) 99.9 % quantile: a conditional residual beyond it is not used to predict the others
SHRINKAGE = (0.003, 0.01, 0.03, 0.1, 0.3, 0.5, 0.7, 0.9)  # candidate shrinkages of the covariance between points


def _as_complex(xy: np.ndarray) -> np.ndarray:
    return xy[..., 0] + 1j * xy[..., 1]


def _align(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per face similarity (a, t) (N,), (N,) that maps complex shapes source (N, K) onto target (N or 1, K)."""
    w = weights / np.maximum(weights.sum(-1, keepdims=True), 1e-12)
    src_mean = (w * source).sum(-1, keepdims=True)
    dst_mean = (w * target).sum(-1, keepdims=True)
    s, d = source - src_mean, target - dst_mean
    a = (w * np.conj(s) * d).sum(-1) / np.maximum((w * np.abs(s) ** 2).sum(-1), 1e-12)
    return a, dst_mean[:, 0] - a * src_mean[:, 0]


def _tukey(residual: np.ndarray) -> np.ndarray:
    """Biweight weights (N, K) of residual magnitudes (N, K), scaled by each face's robust spread."""
    scale = MAD_TO_SIGMA * np.nanmedian(residual, axis=-1, keepdims=True) + 1e-9
    u = residual / (TUKEY_C * scale)
    return np.where(u < 1, (1 - u**2) ** 2, 0.0)  # NaN residuals (unknown points) get 0


class ShapeModel:
    """A PCA shape model of complex shapes (K,) in the mean shape's frame."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean, self.components = mean, components  # (K,), (q, K) complex: real and imaginary parts are modes

    def fit_faces(self, shapes: np.ndarray, known: np.ndarray,
                  iterations: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Robust fit of complex shapes (N, K): complex residuals label - fit (N, K) in the faces' own frame (NaN
        where unknown), final weights (N, K) (0 for outliers) and the fitted shapes (N, K) in the faces' frame.

        Iteratively reweighted least squares, Tukey's biweight on each point's residual, alignment and
        coefficients re-estimated together: one wrong point barely moves the fit and keeps a large residual."""
        n, k = shapes.shape
        x = np.where(known, shapes, 0)
        weights = known.astype(np.float64)
        target = np.broadcast_to(self.mean, (n, k))
        basis = np.concatenate([self.components.real, self.components.imag], axis=1)  # (q, 2K)
        q = len(basis)
        outer = (basis[:, None, :] * basis[None, :, :]).reshape(q * q, -1).T  # (2K, q²): all Grams in one product
        for _ in range(iterations):
            a, t = _align(x, target, weights)
            aligned = a[:, None] * x + t[:, None] - self.mean
            flat = np.concatenate([aligned.real, aligned.imag], axis=1)  # (N, 2K)
            w2 = np.concatenate([weights, weights], axis=1)
            gram = (w2 @ outer).reshape(n, q, q) + 1e-6 * np.eye(q)
            coeff = np.linalg.solve(gram, ((w2 * flat) @ basis.T)[..., None])[..., 0]
            recon = coeff @ basis  # (N, 2K)
            target = self.mean + recon[:, :k] + 1j * recon[:, k:]
            fitted = (target - t[:, None]) / np.where(np.abs(a) > 0, a, 1)[:, None]
            residual = np.where(known, x - fitted, np.nan)
            weights = _tukey(np.abs(residual))
        return residual, weights, fitted


def fit_shape_model(landmarks: np.ndarray, components: int = 8) -> ShapeModel:
    """Robust PCA shape model of faces (N, K, 2) (NaN where missing): faces aligned to the mean shape by a
    similarity (generalised Procrustes), the leading PCA modes of the aligned shapes, refitted once with every
    point the first fit found to be an outlier replaced by its reconstruction."""
    shapes = _as_complex(np.nan_to_num(landmarks))
    known = np.isfinite(landmarks).all(-1)
    model = _pca(shapes, known, components)
    _, weights, fitted = model.fit_faces(shapes, known)
    # refit with the outliers of the first fit replaced by the model's own guess
    cleaned = np.where(known & (weights > 0), shapes, fitted)
    return _pca(cleaned, np.ones_like(known), components)


def _pca(shapes: np.ndarray, known: np.ndarray, components: int) -> ShapeModel:
    """Generalised Procrustes alignment of complex shapes (N, K), then the leading PCA modes."""
    n, k = shapes.shape
    weights = known.astype(np.float64)
    x = np.where(known, shapes, 0)
    mean = x[np.argmax(known.sum(1))].copy()
    for _ in range(5):
        mean = mean - mean.mean()
        mean = mean / np.linalg.norm(mean)
        a, t = _align(x, np.broadcast_to(mean, x.shape), weights)
        aligned = a[:, None] * x + t[:, None]
        filled = np.where(known, aligned, mean)
        mean = filled.mean(0)
    flat = np.concatenate([filled.real, filled.imag], axis=1)
    centred = flat - flat.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    q = max(1, min(components, n - 1, 2 * k))
    modes = vt[:q]
    return ShapeModel(filled.mean(0), modes[:, :k] + 1j * modes[:, k:])


class LabelFit(NamedTuple):
    """The robust PCA shape model of a set of labels and each face's fit to it (complex (N, K) arrays)."""

    model: ShapeModel
    residual: np.ndarray  # label - fit, in the faces' frame; NaN where unknown
    weights: np.ndarray  # final biweight of each point (0 for outliers)
    fitted: np.ndarray  # the fit, in the faces' frame


def fit_labels(landmarks: np.ndarray, components: int = 8) -> LabelFit:
    """The robust PCA shape model of faces (N, K, 2) (NaN where missing), and every face fitted to it."""
    model = fit_shape_model(landmarks, components)
    return LabelFit(model, *model.fit_faces(_as_complex(np.nan_to_num(landmarks)), np.isfinite(landmarks).all(-1)))


def shape_residuals(landmarks: np.ndarray, normaliser: np.ndarray, components: int = 8, *,
                    fit: LabelFit | None = None) -> np.ndarray:
    """(N, K, 2) residual label - fit of each label (N, K, 2) from the robust shape model fitted to all labels, in
    NME units (image axes); NaN where a label is missing. `fit`: `fit_labels` of the same labels, if already made."""
    residual = (fit or fit_labels(landmarks, components)).residual
    return np.stack([residual.real, residual.imag], -1) / normaliser[:, None, None]


def _flat(shapes: np.ndarray) -> np.ndarray:
    """(..., 2K) real vectors (x then y) of complex shapes (..., K)."""
    return np.concatenate([shapes.real, shapes.imag], axis=-1)


def _fold_moments(vectors: np.ndarray, fold: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per fold of vectors (N, D) (x of K points, then y; fold (N,)): its rows (N,) and the mean (D,) and
    covariance (D, D) of the other folds' vectors."""
    moments = []
    for f in np.unique(fold):
        rows = fold == f
        others = vectors[~rows]
        mean = others.mean(0)
        centred = others - mean
        moments.append((rows, mean, centred.T @ centred / max(len(others) - 1, 1)))
    return moments


def _shrunk(covariance: np.ndarray, shrinkage: float) -> np.ndarray:
    """A covariance (D, D) shrunk toward its 2 x 2 per-point blocks: unlike its diagonal, that target turns with the
    frame, so the residuals do not depend on which way the faces were aligned."""
    k = len(covariance) // 2
    same_point = np.tile(np.eye(k, dtype=bool), (2, 2))
    ridge = 1e-6 * np.diag(covariance).mean() + 1e-12  # identical faces: keep the matrix invertible
    return np.where(same_point, covariance, (1 - shrinkage) * covariance) + ridge * np.eye(len(covariance))


def _choose_shrinkage(vectors: np.ndarray, moments: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> float:
    """The shrinkage in SHRINKAGE with the best held-out Gaussian log-likelihood of vectors (N, D) over the folds
    (`_fold_moments`)."""
    best, chosen = -np.inf, SHRINKAGE[-1]
    for shrinkage in SHRINKAGE:
        total = 0.0
        for rows, mean, covariance in moments:
            shrunk = _shrunk(covariance, shrinkage)
            centred = vectors[rows] - mean
            _, logdet = np.linalg.slogdet(shrunk)
            total += (-0.5 * np.einsum("nd,nd->n", centred @ np.linalg.inv(shrunk), centred) - 0.5 * logdet).sum()
        if total > best:
            best, chosen = total, shrinkage
    return chosen


def _conditional(vectors: np.ndarray, observed: np.ndarray, known: np.ndarray, mean: np.ndarray,
                 precision: np.ndarray, iterations: int) -> np.ndarray:
    """(M, K, 2) residual of the observed points (M, K, 2) from their mean given the others, starting from vectors
    (M, 2K), the observed points with a stand-in for each unknown (known (M, K) False) or suspect one.

    With the precision matrix P the residual of point i is `P_ii^-1 (P (x - μ))_i`, one product for all points.
    A point whose residual is improbable (beyond OUTLIER_CHI2) is replaced by its conditional mean before the
    others are predicted from it again, so one wrong point does not spoil its neighbours' residuals."""
    k = known.shape[1]
    idx = np.arange(k)
    blocks = np.empty((k, 2, 2))  # P_ii: the 2 x 2 precision of each point given all the others
    blocks[:, 0, 0], blocks[:, 0, 1] = precision[idx, idx], precision[idx, k + idx]
    blocks[:, 1, 0], blocks[:, 1, 1] = precision[k + idx, idx], precision[k + idx, k + idx]
    inverse = np.linalg.inv(blocks)
    current = vectors.copy()
    for _ in range(iterations):
        z = (current - mean) @ precision  # (M, 2K); P symmetric
        own = np.einsum("kab,mkb->mka", inverse, np.stack([z[:, :k], z[:, k:]], -1))
        expected = np.stack([current[:, :k], current[:, k:]], -1) - own  # (M, K, 2) conditional means
        residual = observed - expected
        improbable = np.einsum("mka,kab,mkb->mk", residual, blocks, residual) > OUTLIER_CHI2
        replaced = ~known | improbable
        stand_in = np.where(replaced[..., None], expected, observed)
        current = np.concatenate([stand_in[..., 0], stand_in[..., 1]], axis=1)
    return residual


def _cross_fitted(clean: np.ndarray, observed: np.ndarray, known: np.ndarray, folds: int, iterations: int,
                  seed: int) -> np.ndarray:
    """(N, K, 2) residual of each face's observed points (N, K, 2) from their conditional means (`_conditional`)
    under the Gaussian of the other folds' clean vectors (N, 2K), its shrinkage chosen by held-out likelihood."""
    n = len(clean)
    moments = _fold_moments(clean, np.random.default_rng(seed).permutation(n) % min(folds, n))
    shrinkage = _choose_shrinkage(clean, moments)
    residual = np.empty(observed.shape)
    for rows, mean, covariance in moments:
        residual[rows] = _conditional(clean[rows], observed[rows], known[rows], mean,
                                      np.linalg.inv(_shrunk(covariance, shrinkage)), iterations)
    return residual


def conditional_field_residuals(field: np.ndarray, *, folds: int = 10, iterations: int = 3, seed: int = 0,
                                clip: float = 4.0) -> np.ndarray:
    """(N, K, 2) residual of each point's value of a field (N, K, 2) from its conditional mean given the face's
    other points' values, under a Gaussian of the other folds' faces; NaN where the field is.

    The auditor's field is each label's residual against the model: where annotators slide a run of
    neighbouring jaw points together, or the model misses a whole region, the neighbours predict it, and what is
    left is the point's own error. The Gaussian is estimated from the field clipped at `clip` robust σ (median,
    1.4826 MAD) per point and axis, so that wrong labels do not set it, its covariance shrunk toward each point's
    own 2 x 2 block by held-out likelihood like the shape model's: where the points do not move together the
    shrinkage is strong and the neighbours predict little.
    """
    n, k, _ = field.shape
    known = np.isfinite(field).all(-1)
    if n < 3:  # no covariance to speak of
        return np.where(known[..., None], field, np.nan)
    values = np.where(known[..., None], field, np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a point no face has: an all-NaN column
        centre = np.nan_to_num(np.nanmedian(values, axis=0))
        spread = MAD_TO_SIGMA * np.nan_to_num(np.nanmedian(np.abs(values - centre), axis=0)) + 1e-12
    clipped = np.where(known[..., None], np.clip(field, centre - clip * spread, centre + clip * spread), centre)
    observed = np.where(known[..., None], field, centre)
    residual = _cross_fitted(np.concatenate([clipped[..., 0], clipped[..., 1]], axis=1), observed, known, folds,
                             iterations, seed)
    return np.where(known[..., None], residual, np.nan)


def conditional_residuals(landmarks: np.ndarray, normaliser: np.ndarray, *, components: int = 8, folds: int = 10,
                          iterations: int = 3, seed: int = 0, fit: LabelFit | None = None) -> np.ndarray:
    """(N, K, 2) residual of each label (N, K, 2) from its conditional mean given the face's other labels, under a
    Gaussian shape model of the other folds' faces, in NME units (image axes); NaN where a label is missing.
    `fit`: `fit_labels` of the same labels, if already made (it aligns the faces).

    The Gaussian is over the aligned shapes (2K,) in the frame of the robust PCA fit's alignment, estimated from
    the labels with those the PCA fit found to be outliers replaced by its reconstruction, its covariance shrunk
    toward the per-point 2 x 2 blocks by held-out likelihood (`_shrunk`, SHRINKAGE)."""
    fit = fit or fit_labels(landmarks, components)
    n, k, _ = landmarks.shape
    if n < 3:  # no covariance to speak of: fall back to the PCA residual
        return shape_residuals(landmarks, normaliser, fit=fit)
    known = np.isfinite(landmarks).all(-1)
    shapes = _as_complex(np.nan_to_num(landmarks))
    model, _, weights, fitted = fit
    filled = np.where(known, shapes, fitted)
    a, t = _align(filled, np.broadcast_to(model.mean, filled.shape), weights)
    aligned = a[:, None] * filled + t[:, None]
    usable = known & (weights > 0)
    clean = _flat(np.where(usable, aligned, a[:, None] * fitted + t[:, None]))  # (N, 2K)
    observed = np.stack([aligned.real, aligned.imag], -1)  # (N, K, 2)
    residual = _cross_fitted(clean, observed, known, folds, iterations, seed)
    in_face = (residual[..., 0] + 1j * residual[..., 1]) / np.where(np.abs(a) > 0, a, 1)[:, None]
    out = np.stack([in_face.real, in_face.imag], -1) / normaliser[:, None, None]
    return np.where(known[..., None], out, np.nan)
