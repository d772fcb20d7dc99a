"""Square face crops and the affine maps between image, crop and heatmap pixels.

Every space puts pixel centres on integers (`(x, y)`, pixel `[i, j]` at `x=j, y=i`), so a map
between two spaces of sizes S and R scales the *pixel corners*: `x_R + 0.5 = (x_S + 0.5) * R / S`.
Affines are (3, 3) homogeneous matrices acting on column vectors `(x, y, 1)`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

CROP_SCALE = 1.25


def face_box(xy: np.ndarray) -> np.ndarray:
    """(N, 4) x0, y0, x1, y1 extent of the finite landmarks (N, K, 2)."""
    xy = np.asarray(xy, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return np.concatenate([np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)], axis=-1)


def square_crop(boxes: np.ndarray, scale: float = CROP_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """Centres (N, 2) and sides (N,) of square crops around boxes (N, 4), the longer box side times `scale`."""
    boxes = np.asarray(boxes, dtype=np.float64)
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    side = np.max(boxes[:, 2:] - boxes[:, :2], axis=-1) * scale
    return centre, np.maximum(side, 1.0)


def crop_affine(centre: np.ndarray, side: np.ndarray, size: int, angle: np.ndarray | float = 0.0) -> np.ndarray:
    """(N, 3, 3) maps from image pixels to a size x size crop of the square (centre (N, 2), side (N,)).

    `angle` (radians, (N,) or scalar) rotates the crop about its centre: the face turns by -angle
    in the crop.
    """
    centre = np.asarray(centre, dtype=np.float64).reshape(-1, 2)
    side = np.asarray(side, dtype=np.float64).reshape(-1)
    angle = np.broadcast_to(np.asarray(angle, dtype=np.float64), side.shape)
    s = size / side
    cos, sin = np.cos(angle) * s, np.sin(angle) * s
    m = np.zeros((len(side), 3, 3))
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = cos, sin, -sin, cos
    # the image point `centre` lands on the crop's centre, size / 2 - 0.5 in pixel-centre coordinates
    rotated = np.einsum("nij,nj->ni", m[:, :2, :2], centre)
    m[:, :2, 2] = size / 2 - 0.5 - rotated
    m[:, 2, 2] = 1.0
    return m


def rescale_affine(src_size: int, dst_size: int) -> np.ndarray:
    """(3, 3) map from a src_size-pixel square to a dst_size-pixel square of the same region (crop -> heatmap)."""
    s = dst_size / src_size
    return np.array([[s, 0.0, 0.5 * s - 0.5], [0.0, s, 0.5 * s - 0.5], [0.0, 0.0, 1.0]])


def apply_affine(m: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Points (..., K, 2) mapped by affines (..., 3, 3)."""
    m = np.asarray(m, dtype=np.float64)
    xy = np.asarray(xy, dtype=np.float64)
    return np.einsum("...ij,...kj->...ki", m[..., :2, :2], xy) + m[..., None, :2, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    """The inverse of affines (..., 3, 3)."""
    return np.linalg.inv(np.asarray(m, dtype=np.float64))


def warp_image(image: np.ndarray | Image.Image, m: np.ndarray, size: int) -> np.ndarray:
    """The (size, size, C) uint8 crop of an (H, W, C) image under the image -> crop affine `m` (3, 3), bilinear."""
    pil = image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image))
    inv = invert_affine(m)
    # PIL samples the input at `inv` applied to output pixel *corners*; shift by half a pixel both ways.
    half = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, -0.5], [0.0, 0.0, 1.0]])
    corner = np.linalg.inv(half) @ inv @ half
    coeffs = tuple(corner[:2].reshape(-1))
    out = pil.transform((size, size), Image.Transform.AFFINE, coeffs, resample=Image.Resampling.BILINEAR)
    return np.asarray(out)
