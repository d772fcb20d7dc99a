"""A reference scorer any user can run: the residual of a robust PCA shape model fitted to the labels alone.

Faces are aligned to the mean shape by a similarity (Procrustes), a PCA of the aligned shapes gives a
linear shape model, and each face is fitted to it by iteratively reweighted least squares (Tukey's
biweight on each point's residual, alignment and coefficients re-estimated together), so one wrong
point barely moves the fit and keeps a large residual. The PCA itself is refitted once with every
point the first fit found to be an outlier replaced by its reconstruction. Shapes are complex vectors
(x + iy): a similarity is then one complex factor and a shift.
"""

from __future__ import annotations

import numpy as np

TUKEY_C = 4.685  # biweight tuning constant (95 % efficiency under normal residuals)


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
    scale = 1.4826 * np.nanmedian(residual, axis=-1, keepdims=True) + 1e-9
    u = residual / (TUKEY_C * scale)
    return np.where(u < 1, (1 - u**2) ** 2, 0.0)  # NaN residuals (unknown points) get 0


class ShapeModel:
    """A PCA shape model of complex shapes (K,) in the mean shape's frame."""

    def __init__(self, mean: np.ndarray, components: np.ndarray) -> None:
        self.mean, self.components = mean, components  # (K,), (q, K) complex: real and imaginary parts are modes

    def fit_faces(self, shapes: np.ndarray, known: np.ndarray,
                  iterations: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Robust fit of complex shapes (N, K): complex residuals label - fit (N, K) in the faces' own frame (NaN
        where unknown), final weights (N, K) (0 for outliers) and the fitted shapes (N, K) in the faces' frame."""
        n, k = shapes.shape
        x = np.where(known, shapes, 0)
        weights = known.astype(np.float64)
        target = np.broadcast_to(self.mean, (n, k))
        basis = np.concatenate([self.components.real, self.components.imag], axis=1)  # (q, 2K)
        for _ in range(iterations):
            a, t = _align(x, target, weights)
            aligned = a[:, None] * x + t[:, None] - self.mean
            flat = np.concatenate([aligned.real, aligned.imag], axis=1)  # (N, 2K)
            w2 = np.concatenate([weights, weights], axis=1)
            gram = np.einsum("qk,nk,pk->nqp", basis, w2, basis) + 1e-6 * np.eye(len(basis))
            coeff = np.linalg.solve(gram, np.einsum("qk,nk->nq", basis, w2 * flat)[..., None])[..., 0]
            recon = coeff @ basis  # (N, 2K)
            target = self.mean + recon[:, :k] + 1j * recon[:, k:]
            fitted = (target - t[:, None]) / np.where(np.abs(a) > 0, a, 1)[:, None]
            residual = np.where(known, x - fitted, np.nan)
            weights = _tukey(np.abs(residual))
        return residual, weights, fitted


def fit_shape_model(landmarks: np.ndarray, components: int = 8) -> ShapeModel:
    """Robust PCA shape model of faces (N, K, 2) (NaN where missing)."""
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


def shape_residuals(landmarks: np.ndarray, normaliser: np.ndarray, components: int = 8) -> np.ndarray:
    """(N, K, 2) residual label - fit of each label (N, K, 2) from the robust shape model fitted to all labels, in
    NME units (image axes); NaN where a label is missing."""
    model = fit_shape_model(landmarks, components)
    known = np.isfinite(landmarks).all(-1)
    residual, _, _ = model.fit_faces(_as_complex(np.nan_to_num(landmarks)), known)
    return np.stack([residual.real, residual.imag], -1) / normaliser[:, None, None]
