"""Procedural faces with known 300-W 68-point truth, and synthetic datasets with planted annotator noise.

The face is built in a canonical frame (x right, y down, the eye line at y = 0, the face about
2 units wide at ear level, the subject's right at negative x) from smooth centripetal Catmull-Rom
curves. Crisp landmarks (eye and mouth corners, lip centres, nose tip, chin, brow ends) are
control points of those curves; contour landmarks sit at fixed arc-length fractions between
their crisp anchors, measured on the posed curve that is drawn, so every true point lies on a
visible contour.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw
from scipy.ndimage import gaussian_filter
from tqdm import tqdm

from auditor.atomic import atomic_directory, atomic_open, atomic_write_bytes, atomic_write_text
from auditor.io.pts import format_pts
from auditor.outputs import write_marker

if TYPE_CHECKING:
    from auditor.noise import AnnotatorConfig, NoiseConfig

# PIL draws aliased shapes; drawing at 4x and box-averaging down anti-aliases every edge, and the
# 50 % level of an edge then sits within 1/8 px of the curve the truth was placed on.
SUPERSAMPLE = 4
NUM_POINTS = 68
JPEG_QUALITY = 90
Colour = tuple[int, ...]


# ---------------------------------------------------------------------------------------------- curves

def _catmull_rom(ctrl: np.ndarray, *, closed: bool = False, per_segment: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Dense (P, 2) centripetal Catmull-Rom polyline through (M, 2) control points, and the (M,) vertex of each."""
    p = np.asarray(ctrl, dtype=np.float64)
    m = len(p)
    if closed:
        ext, n_seg = np.concatenate([p[-1:], p, p[:2]]), m
    else:  # phantom end points mirrored through the ends give natural end tangents
        ext, n_seg = np.concatenate([2 * p[:1] - p[1:2], p, 2 * p[-1:] - p[-2:-1]]), m - 1
    p0, p1, p2, p3 = (ext[i:i + n_seg, None, :] for i in range(4))  # (S, 1, 2)
    # centripetal knots (alpha = 1/2): no cusps or self-intersections between close control points
    d01, d12, d23 = (np.linalg.norm(b - a, axis=-1) ** 0.5 + 1e-9 for a, b in ((p0, p1), (p1, p2), (p2, p3)))
    t0, t1 = np.zeros_like(d01), d01
    t2, t3 = t1 + d12, t1 + d12 + d23
    t = t1 + (t2 - t1) * (np.arange(per_segment) / per_segment)[None, :]  # (S, T)

    def lerp(a: np.ndarray, b: np.ndarray, ta: np.ndarray, tb: np.ndarray) -> np.ndarray:
        return a + (b - a) * ((t - ta) / (tb - ta))[..., None]

    a1, a2, a3 = lerp(p0, p1, t0, t1), lerp(p1, p2, t1, t2), lerp(p2, p3, t2, t3)
    dense = lerp(lerp(a1, a2, t0, t2), lerp(a2, a3, t1, t3), t1, t2).reshape(-1, 2)
    if not closed:
        dense = np.concatenate([dense, p[-1:]])
    return dense, np.arange(m) * per_segment


def _arc_points(poly: np.ndarray, fractions: np.ndarray | list[float]) -> np.ndarray:
    """(F, 2) points at arc-length fractions of an open (P, 2) polyline."""
    seg = np.linalg.norm(np.diff(poly, axis=0), axis=1)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    s = np.asarray(fractions, dtype=np.float64) * cum[-1]
    return np.stack([np.interp(s, cum, poly[:, 0]), np.interp(s, cum, poly[:, 1])], axis=-1)


def _mirror(xy: np.ndarray) -> np.ndarray:
    return xy * np.array([-1.0, 1.0])


def _spline(ctrl: list | np.ndarray, closed: bool = False) -> np.ndarray:
    return _catmull_rom(np.asarray(ctrl, dtype=np.float64), closed=closed)[0]


# ---------------------------------------------------------------------------------------------- geometry

def _sample_shape(rng: np.random.Generator) -> dict:
    """Random face proportions in canonical units (face half-width at ear level about 1)."""
    u = rng.uniform
    fw = u(0.90, 1.04)
    chin_y = u(1.45, 1.68)
    ex, ew = u(0.40, 0.47), u(0.15, 0.19)
    tip_y = u(0.41, 0.53)
    bottom_y = tip_y + u(0.12, 0.17)
    mouth_y = max(bottom_y + u(0.18, 0.30), 0.86)
    mouth_open = 0.0 if rng.random() < 0.45 else u(0.02, 0.25)
    return dict(
        fw=fw, cheek=fw * u(0.95, 1.0), jaw_w=fw * u(0.70, 0.88), jaw_y=u(0.95, 1.15),
        chin_w=u(0.26, 0.46), chin_y=chin_y, top_y=u(-1.50, -1.30), temple=fw * u(0.93, 1.0),
        ex=ex, ew=ew, eye_up=ew * u(0.30, 0.55), eye_low=ew * u(0.18, 0.32), eye_tilt=u(-0.03, 0.05),
        lid_peak=u(-0.25, 0.2), gaze=(u(-0.25, 0.25) * ew, u(-0.1, 0.1) * ew), iris=ew * u(0.42, 0.52),
        pupil=u(0.3, 0.45), crease=u(0.03, 0.07),
        brow_in=u(0.10, 0.22), brow_out=ex + ew + u(0.09, 0.19), brow_y=-u(0.19, 0.28), brow_arch=u(0.03, 0.11),
        brow_th=u(0.04, 0.085), brow_drop=u(-0.03, 0.04),
        bridge_y=u(-0.08, 0.01), tip_y=tip_y, bottom_y=bottom_y, nose_w=u(0.16, 0.25), wing_rise=u(0.04, 0.08),
        nose_bend=u(-0.02, 0.02),
        mouth_y=mouth_y, mouth_w=u(0.31, 0.46), lip_up=u(0.045, 0.09), lip_low=u(0.12, 0.18),
        mouth_open=mouth_open, smile=u(-0.03, 0.07), bow=u(0.1, 0.35),
    )


def _asym(rng: np.random.Generator, shape: dict, scale: float = 0.025) -> dict:
    """One side's copy of the shape with small independent perturbations (no real face is symmetric)."""
    keys = ("ex", "ew", "eye_up", "eye_low", "brow_in", "brow_out", "brow_y", "brow_arch", "fw", "cheek", "jaw_w")
    side = dict(shape)
    for k in keys:
        side[k] = shape[k] * (1 + rng.normal(0, scale))
    return side


def _face_curves(shape: dict, right: dict, left: dict) -> dict[str, np.ndarray]:
    """Canonical dense polylines of every contour, split at the crisp landmarks."""
    s = shape
    c: dict[str, np.ndarray] = {}

    def side_pts(sd: dict, sign: float) -> list[tuple[float, float]]:
        return [(sign * sd["fw"], 0.0), (sign * sd["cheek"], 0.55), (sign * sd["jaw_w"], s["jaw_y"]),
                (sign * s["chin_w"], s["chin_y"] - 0.13)]

    top = [(s["temple"], -0.55), (0.62 * s["temple"], s["top_y"] + 0.13), (0.0, s["top_y"]),
           (-0.62 * s["temple"], s["top_y"] + 0.13), (-s["temple"], -0.55)]
    ctrl = side_pts(right, -1) + [(0.0, s["chin_y"])] + side_pts(left, 1)[::-1] + top
    outline, anchors = _catmull_rom(np.array(ctrl), closed=True)
    c["outline"] = outline
    c["jaw_right"] = outline[anchors[0]:anchors[4] + 1]
    c["jaw_left"] = outline[anchors[4]:anchors[8] + 1]

    for name, sd, sign in (("right", right, -1.0), ("left", left, 1.0)):
        ex, ew = sd["ex"], sd["ew"]
        outer = np.array([-ex - ew, -s["eye_tilt"]])
        inner = np.array([-ex + ew, 0.015])
        pk = s["lid_peak"] * ew
        upper = [outer, (-ex - 0.55 * ew + pk, -0.75 * sd["eye_up"]), (-ex + pk, -sd["eye_up"]),
                 (-ex + 0.55 * ew + pk, -0.7 * sd["eye_up"]), inner]
        lower = [inner, (-ex + 0.5 * ew, 0.8 * sd["eye_low"]), (-ex - 0.1 * ew, sd["eye_low"]),
                 (-ex - 0.6 * ew, 0.7 * sd["eye_low"]), outer]
        crease = [(x, y - s["crease"] * (1 - abs(x + ex) / ew * 0.6)) for x, y in upper[1:-1]]
        flip = (lambda a: a) if sign < 0 else _mirror
        c[f"{name}_eye_upper"] = flip(_spline(upper))  # outer -> inner
        c[f"{name}_eye_lower"] = flip(_spline(lower))  # inner -> outer
        c[f"{name}_crease"] = flip(_spline([upper[0] + np.array([0.02, -0.01])] + crease + [upper[-1]]))
        c[f"{name}_iris"] = np.array([[sign * ex + s["gaze"][0], s["gaze"][1]]])
        bi, bo, by, arch, th = sd["brow_in"], sd["brow_out"], sd["brow_y"], sd["brow_arch"], s["brow_th"]
        span = bo - bi
        tip = (-bo, by + 0.03 + s["brow_drop"])
        top_edge = [tip, (-bo + 0.25 * span, by - 0.8 * arch), (-bo + 0.5 * span, by - arch),
                    (-bo + 0.78 * span, by - 0.55 * arch), (-bi, by - 0.1 * arch)]
        low_edge = [(-bi + 0.005, by - 0.1 * arch + th), (-bo + 0.78 * span, by - 0.55 * arch + 0.95 * th),
                    (-bo + 0.5 * span, by - arch + 0.75 * th), (-bo + 0.25 * span, by - 0.8 * arch + 0.45 * th), tip]
        c[f"{name}_brow_top"] = flip(_spline(top_edge))  # outer tip -> inner top
        c[f"{name}_brow_low"] = flip(_spline(low_edge))  # inner bottom -> outer tip
        ear_x = sd["fw"] - 0.03
        ear = [(-ear_x, -0.22), (-ear_x - 0.10, -0.26), (-ear_x - 0.17, -0.12), (-ear_x - 0.15, 0.2),
               (-ear_x - 0.09, 0.45), (-ear_x + 0.02, 0.58), (-ear_x + 0.1, 0.2)]
        c[f"{name}_ear"] = flip(_spline(ear, closed=True))

    bend = s["nose_bend"]
    c["bridge"] = _spline([(0.0, s["bridge_y"]), (bend, 0.5 * (s["bridge_y"] + s["tip_y"])), (0.0, s["tip_y"])])
    nw, by_ = s["nose_w"], s["bottom_y"]
    wing_y = by_ - s["wing_rise"]
    c["nose_low_right"] = _spline([(-0.85 * nw, wing_y), (-0.45 * nw, by_ - 0.004), (0.0, by_)])
    c["nose_low_left"] = _mirror(c["nose_low_right"])[::-1]
    wing = [(-0.55 * nw, s["tip_y"] - 0.12), (-0.97 * nw, wing_y - 0.09), (-nw, wing_y - 0.03), (-0.85 * nw, wing_y)]
    c["wing_right"] = _spline(wing)
    c["wing_left"] = _mirror(c["wing_right"])
    c["tip_round"] = _spline([(-0.45 * nw, s["tip_y"] + 0.05), (0.0, s["tip_y"] + 0.075),
                              (0.45 * nw, s["tip_y"] + 0.05)])

    my, mw, op, sm = s["mouth_y"], s["mouth_w"], s["mouth_open"], s["smile"]
    up_y, lo_y = my - 0.3 * op, my + 0.7 * op
    corner = np.array([-mw, my - sm + 0.2 * op])
    bow = s["bow"] * s["lip_up"]
    upper_r = [corner, (-0.62 * mw, up_y - 0.7 * s["lip_up"]), (-0.24 * mw, up_y - s["lip_up"]),
               (0.0, up_y - s["lip_up"] + bow)]
    lower_r = [(0.0, lo_y + s["lip_low"]), (-0.55 * mw, lo_y + 0.8 * s["lip_low"]), corner]
    inner_corner = np.array([-0.9 * mw, my - 0.85 * sm + 0.2 * op])
    inner_up_r = [inner_corner, (-0.45 * mw, up_y - 0.3 * sm - 0.006), (0.0, up_y)]
    inner_low_r = [(0.0, lo_y), (-0.45 * mw, lo_y - 0.3 * sm - 0.006 - 0.15 * op), inner_corner]
    c["lip_up_right"] = _spline(upper_r)  # 48 -> 51
    c["lip_up_left"] = _mirror(c["lip_up_right"])[::-1]  # 51 -> 54
    c["lip_low_right"] = _spline(lower_r)  # 57 -> 48
    c["lip_low_left"] = _mirror(c["lip_low_right"])[::-1]  # 54 -> 57
    c["inner_up_right"] = _spline(inner_up_r)  # 60 -> 62
    c["inner_up_left"] = _mirror(c["inner_up_right"])[::-1]  # 62 -> 64
    c["inner_low_right"] = _spline(inner_low_r)  # 66 -> 60
    c["inner_low_left"] = _mirror(c["inner_low_right"])[::-1]  # 64 -> 66
    return c


def _landmarks(c: dict[str, np.ndarray]) -> np.ndarray:
    """(68, 2) 300-W points from posed curves: crisp ends, contour points at fixed arc-length fractions."""
    # 300-W puts the inner-lip contour points near the centre (above the cupid's bow peaks), not half-way
    thirds, near_centre, near_corner = [1 / 3, 2 / 3], [0.65], [0.35]
    parts = [
        _arc_points(c["jaw_right"], np.linspace(0, 1, 9)),  # 0-8, 8 the chin
        _arc_points(c["jaw_left"], np.linspace(0, 1, 9)[1:]),  # 9-16
        _arc_points(c["right_brow_top"], np.linspace(0, 1, 5)),  # 17-21, outer -> inner
        _arc_points(c["left_brow_top"][::-1], np.linspace(0, 1, 5)),  # 22-26, inner -> outer
        _arc_points(c["bridge"], np.linspace(0, 1, 4)),  # 27-30, 30 the tip
        _arc_points(c["nose_low_right"], [0, 0.5, 1]),  # 31-33
        _arc_points(c["nose_low_left"], [0.5, 1]),  # 34-35
        _arc_points(c["right_eye_upper"], [0, *thirds, 1]),  # 36-39
        _arc_points(c["right_eye_lower"], thirds),  # 40-41
        _arc_points(c["left_eye_upper"][::-1], [0, *thirds, 1]),  # 42-45, inner -> outer
        _arc_points(c["left_eye_lower"][::-1], thirds),  # 46-47, outer -> inner
        _arc_points(c["lip_up_right"], [0, *thirds, 1]),  # 48-51
        _arc_points(c["lip_up_left"], [*thirds, 1]),  # 52-54
        _arc_points(c["lip_low_left"], [*thirds, 1]),  # 55-57
        _arc_points(c["lip_low_right"], thirds),  # 58-59
        _arc_points(c["inner_up_right"], [0, *near_centre, 1]),  # 60-62
        _arc_points(c["inner_up_left"], [*near_corner, 1]),  # 63-64
        _arc_points(c["inner_low_left"], [*near_centre, 1]),  # 65-66
        _arc_points(c["inner_low_right"], near_corner),  # 67
    ]
    return np.concatenate(parts)


def _pose_transform(shape: dict, roll: float, yaw: float, scale: float, centre: np.ndarray
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """Canonical -> image pixels: a mild yaw from a depth profile, then rotation, scale and shift."""
    depth, nose_h = 0.55, 0.32
    y0, y1 = shape["bridge_y"], shape["tip_y"]
    cos_r, sin_r = np.cos(roll), np.sin(roll)

    def to_img(xy: np.ndarray) -> np.ndarray:
        x, y = xy[..., 0], xy[..., 1]
        r2 = (x / 1.15) ** 2 + ((y - 0.3) / 1.9) ** 2
        # (1 - r^2)^1.5 keeps the depth slope continuous at the head's rim, so posed curves stay smooth
        z = depth * np.clip(1 - r2, 0, None) ** 1.5
        ramp = np.clip((y - y0) / (y1 - y0), 0, 1)
        ramp = np.where(y > y1, np.exp(-(((y - y1) / 0.09) ** 2)), ramp * ramp)
        z = z + nose_h * ramp * np.exp(-((x / 0.17) ** 2))
        # a turn of `yaw` seen from far away moves every point by its depth: the far side squashes
        xr = x * np.cos(yaw) + z * np.sin(yaw)
        yr = y - 0.55
        return np.stack([cos_r * xr - sin_r * yr, sin_r * xr + cos_r * yr], axis=-1) * scale + centre

    return to_img


# ---------------------------------------------------------------------------------------------- colours

_SKIN = np.array([[247, 214, 190], [226, 182, 150], [196, 146, 110], [150, 103, 72], [96, 63, 44]], float)
_HAIR = np.array([[22, 18, 16], [55, 38, 26], [98, 66, 42], [196, 160, 102], [145, 68, 34], [160, 156, 150],
                  [210, 206, 198]], float)
_HAIR_P = np.array([0.3, 0.22, 0.17, 0.12, 0.06, 0.08, 0.05])
_IRIS = np.array([[92, 58, 30], [42, 28, 18], [78, 118, 160], [88, 118, 70], [122, 96, 52], [116, 126, 136]], float)


def _rgb(c: np.ndarray | tuple, alpha: int | None = None) -> Colour:
    v = tuple(int(round(float(np.clip(x, 0, 255)))) for x in c)
    return v if alpha is None else (*v, int(alpha))


def _skin_colour(rng: np.random.Generator) -> tuple[np.ndarray, float]:
    tone = rng.beta(1.2, 1.4) * (len(_SKIN) - 1)
    i = min(int(tone), len(_SKIN) - 2)
    base = _SKIN[i] + (_SKIN[i + 1] - _SKIN[i]) * (tone - i)
    return base * rng.uniform(0.94, 1.06, 3), tone / (len(_SKIN) - 1)


def _random_colour(rng: np.random.Generator, lo: float = 20, hi: float = 235) -> np.ndarray:
    """A random colour pulled towards its grey, as most photographed surfaces are far from saturated."""
    c = rng.uniform(lo, hi, 3)
    return c.mean() + (c - c.mean()) * rng.uniform(0.15, 0.8)


# ---------------------------------------------------------------------------------------------- background

def _value_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 3) -> np.ndarray:
    """(size, size, channels) smooth noise in [0, 1] from a bicubic-upsampled random grid."""
    grid = (rng.random((cells, cells, channels)) * 255).astype(np.uint8)
    img = Image.fromarray(grid if channels == 3 else grid[..., 0]).resize((size, size), Image.Resampling.BICUBIC)
    out = np.asarray(img, dtype=np.float64) / 255.0
    return out if channels == 3 else out[..., None]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(size, size, 3) float textured background: blotches, stripes, tiles or shapes, then defocused."""
    kind = rng.choice(["blotches", "stripes", "tiles", "shapes", "gradient"])
    c1, c2 = _random_colour(rng), _random_colour(rng)
    yy, xx = np.mgrid[0:size, 0:size] / size
    if kind == "blotches":
        t = sum(_value_noise(rng, size, 2 ** (o + 2), 1) * 0.5 ** o for o in range(4)) / 1.875
        bg = c1 + (c2 - c1) * t
    elif kind == "stripes":
        a, f = rng.uniform(0, np.pi), rng.uniform(3, 14)
        t = 0.5 + 0.5 * np.sin(2 * np.pi * f * (xx * np.cos(a) + yy * np.sin(a)) + rng.uniform(0, 6.3))
        bg = c1 + (c2 - c1) * (t[..., None] ** rng.uniform(0.5, 3))
    elif kind == "tiles":
        a, f = rng.uniform(0, np.pi / 2), rng.uniform(3, 10)
        u, v = xx * np.cos(a) + yy * np.sin(a), -xx * np.sin(a) + yy * np.cos(a)
        t = ((np.floor(u * f) + np.floor(v * f)) % 2)[..., None]
        bg = c1 + (c2 - c1) * t
    elif kind == "shapes":
        img = Image.new("RGB", (size, size), _rgb(c1))
        draw = ImageDraw.Draw(img)
        for _ in range(rng.integers(5, 16)):
            x0, y0 = rng.uniform(-0.2, 1.0, 2) * size
            w, h = rng.uniform(0.1, 0.6, 2) * size
            box = [x0, y0, x0 + w, y0 + h]
            (draw.rectangle if rng.random() < 0.6 else draw.ellipse)(box, fill=_rgb(_random_colour(rng)))
        bg = np.asarray(img, dtype=np.float64)
    else:
        a = rng.uniform(0, 2 * np.pi)
        t = np.clip(0.5 + (xx - 0.5) * np.cos(a) + (yy - 0.5) * np.sin(a), 0, 1)[..., None]
        bg = c1 + (c2 - c1) * t
    bg = bg + (_value_noise(rng, size, int(rng.integers(8, 40))) - 0.5) * rng.uniform(10, 50)
    blur = rng.uniform(0, 2.5) * size / 256
    return gaussian_filter(bg, sigma=(blur, blur, 0)) if blur > 0.3 else bg


# ---------------------------------------------------------------------------------------------- drawing

class _Canvas:
    """A supersampled RGB image drawn in image-pixel coordinates (pixel centres on integers)."""

    def __init__(self, background: np.ndarray, px_per_unit: float) -> None:
        size = background.shape[0]
        self.img = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8)).resize(
            (size * SUPERSAMPLE, size * SUPERSAMPLE), Image.Resampling.BILINEAR)
        self.draw = ImageDraw.Draw(self.img, "RGBA")
        self.unit = px_per_unit * SUPERSAMPLE

    @staticmethod
    def ss(xy: np.ndarray) -> list[tuple[float, float]]:
        """Supersampled coordinates: image pixel x covers sub-pixels S*x .. S*x + S - 1, centred at S*(x+0.5)-0.5."""
        u = (np.asarray(xy, dtype=np.float64) + 0.5) * SUPERSAMPLE - 0.5
        return [tuple(p) for p in u.reshape(-1, 2)]

    def poly(self, xy: np.ndarray, fill: Colour) -> None:
        self.draw.polygon(self.ss(xy), fill=fill)

    def line(self, xy: np.ndarray, fill: Colour, width: float) -> None:
        """A polyline `width` canonical units wide; a translucent one goes through a mask so joints do not darken."""
        w = max(1, int(round(width * self.unit)))
        if len(fill) == 3 or fill[3] == 255:
            self.draw.line(self.ss(xy), fill=fill[:3], width=w, joint="curve")
            return
        u = (np.asarray(xy, dtype=np.float64).reshape(-1, 2) + 0.5) * SUPERSAMPLE - 0.5
        lo = np.maximum(np.floor(u.min(0)) - w, 0).astype(int)
        hi = np.minimum(np.ceil(u.max(0)) + w + 1, self.img.size).astype(int)
        if (hi <= lo).any():
            return
        mask = Image.new("L", tuple(hi - lo), 0)
        ImageDraw.Draw(mask).line([tuple(p) for p in u - lo], fill=fill[3], width=w, joint="curve")
        self.img.paste(fill[:3], (*lo, *hi), mask)

    def disc(self, centre: np.ndarray, radius_px: float, fill: Colour) -> None:
        (cx, cy), r = self.ss(centre)[0], radius_px * SUPERSAMPLE
        self.draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)


def _draw_eye(cv: _Canvas, c: dict[str, np.ndarray], side: str, shape: dict, to_img: Callable, colours: dict
              ) -> None:
    upper, lower = to_img(c[f"{side}_eye_upper"]), to_img(c[f"{side}_eye_lower"])
    opening = np.concatenate([upper, lower])
    skin = colours["skin"]
    cv.line(to_img(c[f"{side}_crease"]), _rgb(skin * 0.7, 150), 0.014)
    cv.poly(opening, _rgb(colours["sclera"]))
    # the iris is drawn on its own layer and pasted through the opening's mask so the lids clip it
    lo, hi = np.floor(opening.min(0)) - 2, np.ceil(opening.max(0)) + 2
    box = [int(v) for v in (*lo, *hi)]
    w, h = (box[2] - box[0]) * SUPERSAMPLE, (box[3] - box[1]) * SUPERSAMPLE
    layer = Image.new("RGB", (w, h), _rgb(colours["sclera"]))
    mask = Image.new("L", (w, h), 0)
    offset = np.array(box[:2], dtype=np.float64)
    ImageDraw.Draw(mask).polygon(_Canvas.ss(opening - offset), fill=255)
    ld = ImageDraw.Draw(layer)
    centre = _Canvas.ss(to_img(c[f"{side}_iris"]) - offset)[0]
    r_iris = shape["iris"] * cv.unit
    for frac, col in ((1.0, colours["iris"] * 0.6), (0.85, colours["iris"]),
                      (shape["pupil"], np.array([12, 10, 10]))):
        r = r_iris * frac
        ld.ellipse([centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r], fill=_rgb(col))
    glint = r_iris * 0.18
    gx, gy = centre[0] + r_iris * 0.3, centre[1] - r_iris * 0.3
    ld.ellipse([gx - glint, gy - glint, gx + glint, gy + glint], fill=(245, 245, 245))
    cv.img.paste(layer, (box[0] * SUPERSAMPLE, box[1] * SUPERSAMPLE), mask)
    cv.line(upper, _rgb(colours["lash"]), shape["lash"])
    cv.line(lower, _rgb(skin * 0.55, 200), 0.012)


def _draw_hair_back(cv: _Canvas, s: dict, to_img: Callable, colours: dict) -> None:
    if s["hair"] == "none":
        return
    vol, fw = s["hair_volume"], s["fw"]
    if s["hair"] == "long":
        down, w = s["hair_length"], fw + s["hair_width"]
        ctrl = [(-w, down), (-w + 0.05, 0.4), (-fw - vol, -0.6), (-0.7, s["top_y"] - vol * 0.8),
                (0.0, s["top_y"] - vol), (0.7, s["top_y"] - vol * 0.8), (fw + vol, -0.6), (w - 0.05, 0.4), (w, down),
                (0.5 * w, down + 0.12), (-0.5 * w, down + 0.12)]
    else:
        ctrl = [(-fw - 0.04, 0.05), (-fw - vol * 0.6, -0.6), (-0.7, s["top_y"] - vol * 0.8), (0.0, s["top_y"] - vol),
                (0.7, s["top_y"] - vol * 0.8), (fw + vol * 0.6, -0.6), (fw + 0.04, 0.05), (0.0, 0.1)]
    cv.poly(to_img(_spline(ctrl, closed=True)), _rgb(colours["hair"] * 0.8))


def _draw_hair_front(cv: _Canvas, s: dict, to_img: Callable, colours: dict, rng: np.random.Generator) -> None:
    if s["hair"] == "none":
        return
    fw, vol, hl, sb = s["fw"], s["hair_volume"] * 0.8, s["hairline_y"], s["sideburn_y"]
    hairline = [(fw + 0.05, sb), (fw - 0.1, sb - 0.02), (fw - 0.12, sb - 0.25), (0.55, hl + 0.1 * s["recess"]),
                (0.0, hl), (-0.55, hl + 0.1 * s["recess"]), (-fw + 0.12, sb - 0.25), (-fw + 0.1, sb - 0.02),
                (-fw - 0.05, sb)]
    crown = [(-fw - 0.05, sb), (-fw - vol * 0.6, -0.6), (-0.7, s["top_y"] - vol * 0.8), (0.0, s["top_y"] - vol),
             (0.7, s["top_y"] - vol * 0.8), (fw + vol * 0.6, -0.6), (fw + 0.05, sb)]
    hair_poly = np.concatenate([_spline(hairline), _spline(crown)])
    cv.poly(to_img(hair_poly), _rgb(colours["hair"]))
    # strands: short curves from the hairline towards the crown give the hair a direction and texture
    base = _spline(hairline)
    for _ in range(80):
        p = base[rng.integers(len(base))]
        d = np.array([0.0, s["top_y"] - vol]) - p
        d = d / (np.linalg.norm(d) + 1e-9)
        length = rng.uniform(0.2, 0.5)
        bend = np.array([-d[1], d[0]]) * rng.normal(0, 0.025)
        strand = _spline([p + d * 0.03, p + d * length * 0.5 + bend, p + d * length])
        shade = colours["hair"] * rng.uniform(0.75, 1.2)
        cv.line(to_img(strand), _rgb(shade, 60), 0.012)


def _draw_brow(cv: _Canvas, c: dict, side: str, to_img: Callable, colours: dict, rng: np.random.Generator) -> None:
    top, low = c[f"{side}_brow_top"], c[f"{side}_brow_low"]
    cv.poly(to_img(np.concatenate([top, low])), _rgb(colours["brow"], 235))
    for _ in range(14):
        t = rng.uniform(0.05, 0.95)
        a, b = _arc_points(top, [t])[0], _arc_points(low[::-1], [t])[0]
        cv.line(to_img(np.stack([b, a + (a - b) * 0.1])), _rgb(colours["brow"] * 0.6, 140), 0.008)


def _draw_nose(cv: _Canvas, c: dict, s: dict, to_img: Callable, colours: dict) -> None:
    skin, light = colours["skin"], s["light_side"]
    bridge = c["bridge"]
    for sign in (-1.0, 1.0):
        # the side facing away from the light carries the darker shadow of the bridge
        alpha = 75 if sign == -light else 30
        side = _spline([(sign * 0.07, s["bridge_y"] + 0.08), (sign * 0.085, 0.5 * (s["bridge_y"] + s["tip_y"])),
                        (sign * 0.11, s["tip_y"] - 0.04)])
        cv.line(to_img(side), _rgb(skin * 0.7, alpha), 0.05)
    cv.line(to_img(bridge[len(bridge) // 4:-3] + np.array([light * 0.02, 0])), _rgb(skin * 1.25, 60), 0.035)
    tip = to_img(np.array([[0.0, s["tip_y"] + 0.01]]))[0]
    cv.disc(tip, 0.07 * cv.unit / SUPERSAMPLE, _rgb(skin * 1.18, 80))
    under = np.concatenate([c["nose_low_right"], c["nose_low_left"][1:]])
    shade = np.concatenate([under, under[::-1] + np.array([0.0, 0.05])])
    cv.poly(to_img(shade), _rgb(skin * 0.6, 90))
    for side, sign in (("right", -1), ("left", 1)):
        cv.line(to_img(c[f"wing_{side}"]), _rgb(skin * 0.5, 190), 0.02)
        nostril = _spline([(sign * 0.1 * s["nose_w"], s["bottom_y"] - 0.012),
                           (sign * 0.45 * s["nose_w"], s["bottom_y"] - 0.045),
                           (sign * 0.72 * s["nose_w"], s["bottom_y"] - 0.03),
                           (sign * 0.5 * s["nose_w"], s["bottom_y"] - 0.008)], closed=True)
        cv.poly(to_img(nostril), _rgb(skin * 0.3))
    cv.line(to_img(c["tip_round"]), _rgb(skin * 0.75, 80), 0.018)
    cv.line(to_img(under), _rgb(skin * 0.45, 220), 0.017)


def _draw_mouth(cv: _Canvas, c: dict, s: dict, to_img: Callable, colours: dict) -> None:
    outer_up = np.concatenate([c["lip_up_right"], c["lip_up_left"][1:]])  # 48 -> 54
    outer_low = np.concatenate([c["lip_low_left"], c["lip_low_right"][1:]])  # 54 -> 48
    inner_up = np.concatenate([c["inner_up_right"], c["inner_up_left"][1:]])  # 60 -> 64
    inner_low = np.concatenate([c["inner_low_left"], c["inner_low_right"][1:]])  # 64 -> 60
    lips = colours["lips"]
    if s["mouth_open"] > 0:
        cv.poly(to_img(np.concatenate([inner_up, inner_low])), _rgb([55, 18, 22]))
        if s["mouth_open"] > 0.05:
            teeth_h = min(0.045, s["mouth_open"] * 0.45)
            teeth = inner_up[len(inner_up) // 8: -len(inner_up) // 8]
            cv.poly(to_img(np.concatenate([teeth, teeth[::-1] + np.array([0.0, teeth_h])])), _rgb([228, 222, 205]))
    cv.poly(to_img(np.concatenate([outer_up, inner_up[::-1]])), _rgb(lips * 0.9))
    cv.poly(to_img(np.concatenate([outer_low, inner_low[::-1]])), _rgb(lips))
    mid_low = c["lip_low_left"][len(c["lip_low_left"]) // 2:]
    cv.line(to_img(mid_low[: len(mid_low) // 2] + np.array([0.0, -0.35 * s["lip_low"]])), _rgb(lips * 1.2, 90), 0.03)
    cv.line(to_img(outer_low + np.array([0.0, 0.025])), _rgb(colours["skin"] * 0.7, 60), 0.03)
    cv.line(to_img(inner_up), _rgb(lips * 0.45, 230), 0.012)
    if s["mouth_open"] > 0:
        cv.line(to_img(inner_low), _rgb(lips * 0.55, 200), 0.01)


def _draw_glasses(cv: _Canvas, s: dict, right: dict, left: dict, to_img: Callable, colour: np.ndarray) -> None:
    centres = []
    for sd, sign in ((right, -1), (left, 1)):
        cx, hw, hh = sign * sd["ex"], sd["ew"] + 0.09, 0.17
        ring = _spline([(cx - hw, -0.05), (cx - hw * 0.8, -hh), (cx + hw * 0.8, -hh), (cx + hw, -0.05),
                        (cx + hw * 0.85, hh * 0.9), (cx - hw * 0.85, hh * 0.9)], closed=True)
        cv.poly(to_img(ring), _rgb([225, 235, 240], 35))
        cv.line(to_img(np.concatenate([ring, ring[:1]])), _rgb(colour), 0.025)
        centres.append((cx, hw))
    (rx, rw), (lx, lw) = centres
    cv.line(to_img(_spline([(rx + rw, -0.06), (0.0, -0.1), (lx - lw, -0.06)])), _rgb(colour), 0.025)
    for x0, x1 in ((rx - rw, -s["fw"] - 0.02), (lx + lw, s["fw"] + 0.02)):
        cv.line(to_img(np.array([[x0, -0.07], [x1, -0.1]])), _rgb(colour), 0.025)


def _occluder(rng: np.random.Generator, anchor: np.ndarray) -> tuple[str, list[np.ndarray], np.ndarray]:
    """A hand, a bar or a blob near `anchor` (canonical): its kind, closed canonical polygons and colour."""
    kind = str(rng.choice(["hand", "bar", "blob"], p=[0.4, 0.3, 0.3]))
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    if kind == "hand":
        colour, _ = _skin_colour(rng)
        palm = _spline([(-0.3, 0.0), (-0.32, 0.35), (0.0, 0.45), (0.32, 0.35), (0.3, 0.0), (0.0, -0.08)], closed=True)
        shapes = [palm]
        for i, fx in enumerate((-0.22, -0.075, 0.075, 0.22)):
            length = (0.45, 0.55, 0.52, 0.4)[i]
            finger = _spline([(fx - 0.065, 0.02), (fx - 0.07, -length), (fx, -length - 0.06),
                              (fx + 0.07, -length), (fx + 0.065, 0.02)], closed=True)
            shapes.append(finger)
        shapes.append(_spline([(0.25, 0.3), (0.5, 0.1), (0.6, -0.05), (0.52, -0.1), (0.35, 0.05), (0.2, 0.15)],
                              closed=True))
        shapes = [p * rng.uniform(0.9, 1.3) for p in shapes]
    elif kind == "bar":
        colour = _random_colour(rng)
        w = rng.uniform(0.08, 0.18)
        shapes = [np.array([[-3.0, -w], [3.0, -w], [3.0, w], [-3.0, w]])]
    else:
        colour = _random_colour(rng)
        k = 9
        theta = np.arange(k) * 2 * np.pi / k
        radius = rng.uniform(0.25, 0.5) * rng.uniform(0.7, 1.3, k)
        shapes = [_spline(np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=-1), closed=True)]
    return kind, [p @ rot.T + anchor for p in shapes], colour


# ---------------------------------------------------------------------------------------------- render

def _sample_style(rng: np.random.Generator, s: dict) -> dict:
    """Hair, lighting and accessories (in canonical units where they are lengths)."""
    hair = str(rng.choice(["short", "long", "none"], p=[0.47, 0.43, 0.1]))
    bangs = hair != "none" and rng.random() < 0.15
    return dict(
        hair=hair, hair_volume=rng.uniform(0.05, 0.3), hair_length=rng.uniform(1.0, 3.0),
        hair_width=rng.uniform(0.15, 0.45), hairline_y=rng.uniform(-0.62, -0.5) if bangs else rng.uniform(-1.05, -0.7),
        sideburn_y=rng.uniform(-0.45, -0.15), recess=rng.uniform(-1.5, 2.0), ears=hair != "long" or rng.random() < 0.5,
        light_side=float(rng.choice([-1.0, 1.0])), lash=rng.uniform(0.016, 0.032), glasses=rng.random() < 0.08,
        neck_w=s["jaw_w"] * rng.uniform(0.55, 0.7), shoulder_y=s["chin_y"] + rng.uniform(0.25, 0.6),
    )


def _colours(rng: np.random.Generator) -> dict:
    skin, tone = _skin_colour(rng)
    hair = _HAIR[rng.choice(len(_HAIR), p=_HAIR_P)] * rng.uniform(0.85, 1.15)
    lips = skin * np.array([0.86, 0.62, 0.62]) + np.array([18, 0, 4])
    if rng.random() < 0.15:
        lips = np.array([rng.uniform(120, 200), rng.uniform(20, 60), rng.uniform(40, 90)])
    brow = hair * 0.8 if hair.mean() < 150 else np.array([120, 90, 60]) * rng.uniform(0.7, 1.1)
    return dict(skin=skin, tone=tone, hair=hair, lips=lips, brow=np.minimum(brow, skin * 0.7),
                iris=_IRIS[rng.integers(len(_IRIS))] * rng.uniform(0.85, 1.15),
                sclera=np.array([236, 232, 226]) * rng.uniform(0.85, 1.0), lash=np.array([25, 18, 16]),
                clothes=_random_colour(rng), frame=_random_colour(rng, 10, 120))


def render_face(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray, dict]:
    """One synthetic face: image (size, size, 3) uint8, true 300-W landmarks (68, 2) in 0-based pixels, meta."""
    if size < 32:
        raise ValueError(f"size must be >= 32 pixels, got {size}")
    s = _sample_shape(rng)
    s.update(_sample_style(rng, s))
    right, left = _asym(rng, s), _asym(rng, s)
    colours = _colours(rng)
    curves = _face_curves(s, right, left)

    roll = np.deg2rad(np.clip(rng.normal(0, 12), -30, 30))
    yaw = np.deg2rad(rng.uniform(-20, 20))
    scale = size * rng.uniform(0.2, 0.28)
    shift = rng.uniform(-0.07, 0.07, 2) * size
    for _ in range(20):  # shrink towards the centre until all 68 points are well inside the frame
        to_img = _pose_transform(s, roll, yaw, scale, (size - 1) / 2 + shift)
        posed = {k: to_img(v) for k, v in curves.items()}
        truth = _landmarks(posed)
        if truth.min() >= 0.03 * size and truth.max() <= 0.97 * size - 1:
            break
        scale, shift = scale * 0.92, shift * 0.8

    cv = _Canvas(_background(rng, size), scale)
    skin = colours["skin"]
    neck_w, sh_y = s["neck_w"], s["shoulder_y"]
    _draw_hair_back(cv, s, to_img, colours)
    cv.poly(to_img(np.array([[-neck_w, 0.9], [-neck_w * 1.05, sh_y + 1.0], [neck_w * 1.05, sh_y + 1.0],
                             [neck_w, 0.9]])), _rgb(skin * rng.uniform(0.55, 0.72)))
    neckline = rng.uniform(0.1, 0.6)
    clothes = _spline([(-neck_w - 0.05, sh_y), (-1.4, sh_y + 0.25), (-2.6, sh_y + 0.7), (-3.5, sh_y + 3.0),
                       (3.5, sh_y + 3.0), (2.6, sh_y + 0.7), (1.4, sh_y + 0.25), (neck_w + 0.05, sh_y),
                       (0.0, sh_y + neckline)], closed=True)
    cv.poly(to_img(clothes), _rgb(colours["clothes"]))
    if s["ears"]:
        for side in ("right", "left"):
            ear = curves[f"{side}_ear"]
            cv.poly(to_img(ear), _rgb(skin * 0.9))
            inner = ear[len(ear) // 6: len(ear) // 2] * np.array([0.97, 0.9]) + np.array([0, 0.02])
            cv.line(to_img(inner), _rgb(skin * 0.6, 160), 0.02)
    face_poly = posed["outline"]
    cv.poly(face_poly, _rgb(skin))
    _draw_hair_front(cv, s, to_img, colours, rng)
    for side in ("right", "left"):
        _draw_brow(cv, curves, side, to_img, colours, rng)
        _draw_eye(cv, curves, side, s, to_img, colours)
    _draw_nose(cv, curves, s, to_img, colours)
    _draw_mouth(cv, curves, s, to_img, colours)
    if s["glasses"]:
        _draw_glasses(cv, s, right, left, to_img, colours["frame"])

    occluder, occluded_points = None, []
    occ_mask = None
    if rng.random() < 0.1:
        anchor = _landmarks(curves)[rng.integers(17, NUM_POINTS)] + rng.normal(0, 0.15, 2)
        occluder, shapes, colour = _occluder(rng, anchor)
        mask_img = Image.new("L", cv.img.size, 0)
        mask_draw = ImageDraw.Draw(mask_img)
        for p in shapes:
            cv.poly(to_img(p), _rgb(colour))
            cv.line(to_img(np.concatenate([p, p[:1]])), _rgb(colour * 0.75), 0.012)
            mask_draw.polygon(_Canvas.ss(to_img(p)), fill=255)
        occ_mask = np.asarray(mask_img.reduce(SUPERSAMPLE), dtype=np.float64) / 255.0

    face_mask = Image.new("L", cv.img.size, 0)
    ImageDraw.Draw(face_mask).polygon(_Canvas.ss(face_poly), fill=255)
    image = np.asarray(cv.img.reduce(SUPERSAMPLE), dtype=np.float64)
    image = _photograph(rng, image, np.asarray(face_mask.reduce(SUPERSAMPLE), dtype=np.float64) / 255.0, scale)

    if occ_mask is not None:
        ij = np.clip(np.round(truth[:, ::-1]).astype(int), 0, size - 1)
        occluded_points = [int(k) for k in np.flatnonzero(occ_mask[ij[:, 0], ij[:, 1]] > 0.5)]
    meta = dict(roll_deg=float(np.rad2deg(roll)), yaw_deg=float(np.rad2deg(yaw)), px_per_unit=float(scale),
                iod_px=float(np.linalg.norm(truth[36] - truth[45])), hair=s["hair"], glasses=bool(s["glasses"]),
                mouth_open=bool(s["mouth_open"] > 0), skin_tone=float(colours["tone"]), occluder=occluder,
                occluded=bool(occluded_points), occluded_points=occluded_points)
    return image, truth, meta


def _photograph(rng: np.random.Generator, image: np.ndarray, face_mask: np.ndarray, px_per_unit: float
                ) -> np.ndarray:
    """Camera effects on a float (H, W, 3) image: face shading, light gradient, colour cast, blur, noise -> uint8."""
    size = image.shape[0]
    # the face darkens towards its rim as a rounded surface turns away from the light
    rim = gaussian_filter(face_mask, sigma=0.35 * px_per_unit)
    image = image * (1 - rng.uniform(0.15, 0.4) * face_mask * np.clip(1 - rim, 0, 1))[..., None]
    a = rng.uniform(0, 2 * np.pi)
    yy, xx = (np.mgrid[0:size, 0:size] - size / 2) / size
    gradient = 1 + rng.uniform(0, 0.5) * (xx * np.cos(a) + yy * np.sin(a))
    image = image * gradient[..., None] * rng.uniform(0.75, 1.15) * rng.uniform(0.92, 1.08, 3)
    image = 255 * (np.clip(image, 0, None) / 255) ** rng.uniform(0.8, 1.25)
    blur = rng.uniform(0, 1.1) * size / 256
    if blur > 0.25:
        image = gaussian_filter(image, sigma=(blur, blur, 0))
    image = image + rng.normal(0, rng.uniform(1, 6), image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------------------------- datasets

def face_rng(seed: int, index: int, stream: int = 0) -> np.random.Generator:
    """The generator of face `index` of dataset `seed` (stream 0 draws the face, 1 its noise), independent of n."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(index, stream)))


def encode_jpeg(image: np.ndarray) -> bytes:
    """JPEG bytes of an (H, W, 3) uint8 image: fixed quality, no metadata, so the bytes depend on the pixels only."""
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return buf.getvalue()


def generate(out: Path, *, n: int, seed: int, size: int = 256, noise: NoiseConfig | None = None,
             annotators: AnnotatorConfig | None = None) -> None:
    """Write n synthetic faces: OUT/faces (JPEG + human .pts), OUT/truth (truth .pts, noise.csv, faces.csv).

    With `annotators`, the human labels are those of several simulated annotators (`auditor.noise.draw_annotators`)
    and `noise` is not used: the annotators are the noise. OUT/faces then holds each image once and a .pts tree
    `OUT/faces/<annotator>/<face>.pts`; OUT/truth gains annotators.csv (their planted parameters), and noise.csv
    lists their gross errors under the ids `<annotator>/<face>`. The annotators are drawn for the whole set at once,
    so, unlike the faces and their truth, their labels depend on n.
    """
    from auditor.dataset import VISIBLE, Dataset
    from auditor.io.pts import write as write_pts
    from auditor.noise import NOISE_COLUMNS, NoiseConfig, annotated_dataset, draw_annotators, plant_noise
    from auditor.schemes import BUILTIN_SCHEMES

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    config = NoiseConfig() if noise is None else noise
    scheme = BUILTIN_SCHEMES["300w_68"]
    out = Path(out)
    # each folder is written beside its place, then replaces it whole: no stale or half-written set
    with atomic_directory(out / "faces") as faces_dir, atomic_directory(out / "truth") as truth_dir:
        width = max(4, len(str(n - 1)))
        ids, truths, tables, metas = [], [], [], []
        for i in tqdm(range(n), desc="synth faces", unit="face", disable=None):
            image_id = f"face_{i:0{width}d}"
            image, truth, meta = render_face(face_rng(seed, i), size)
            # 1e-4 px is far below anything measurable and keeps the truth files readable
            truth = np.round(truth, 4)
            atomic_write_bytes(faces_dir / f"{image_id}.jpg", encode_jpeg(image))
            if annotators is None:
                human, table = plant_noise(truth[None], scheme, [image_id], face_rng(seed, i, 1), config)
                atomic_write_text(faces_dir / f"{image_id}.pts", format_pts(human[0]))
                tables.append(table)
            atomic_write_text(truth_dir / f"{image_id}.pts", format_pts(truth))
            # a relative link makes OUT/truth a dataset of its own that still moves with OUT
            os.symlink(Path("..") / "faces" / f"{image_id}.jpg", truth_dir / f"{image_id}.jpg")
            ids.append(image_id)
            truths.append(truth)
            metas.append({"image_id": image_id, **meta,
                          "occluded_points": " ".join(str(k) for k in meta["occluded_points"])})
        if annotators is not None:
            # one spawn key, apart from every face's (index, stream) pair: the annotators are the whole set's
            rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(2,)))
            truth_set = Dataset(faces_dir, ids, [faces_dir / f"{i}.jpg" for i in ids], np.stack(truths),
                                np.full((n, scheme.num_points), VISIBLE), scheme)
            labels, face, names, team, table = draw_annotators(truth_set.landmarks, scheme, ids, rng, annotators)
            write_pts(annotated_dataset(truth_set, labels, face, names), faces_dir, link_images=False)
            with atomic_open(truth_dir / "annotators.csv", newline="") as f:
                team.to_csv(f, index=False, lineterminator="\n")
            tables = [table]
        tables = [t for t in tables if len(t)]
        noise_table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=NOISE_COLUMNS)
        with atomic_open(truth_dir / "noise.csv", newline="") as f:
            noise_table.to_csv(f, index=False, lineterminator="\n")
        with atomic_open(truth_dir / "faces.csv", newline="") as f:
            pd.DataFrame(metas).to_csv(f, index=False, lineterminator="\n")
        write_marker(faces_dir, "synth")
        write_marker(truth_dir, "synth")
