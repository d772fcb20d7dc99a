"""Landmark schemes: point names, groups, contour chains, flip pairs and the NME normaliser."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auditor.errors import InputError


@dataclass(frozen=True)
class Contour:
    """An ordered chain of point indices along one facial contour; `closed` joins the last to the first."""

    name: str
    points: tuple[int, ...]
    closed: bool = False


@dataclass(frozen=True)
class LandmarkScheme:
    """What each of the K points of a face means, and how faces of this scheme are normalised."""

    name: str
    point_names: tuple[str, ...]
    groups: tuple[str, ...]
    contour_flags: tuple[bool, ...]
    contours: tuple[Contour, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    normaliser_points: tuple[int, int] | None = None  # None: sqrt(w*h) of the face box
    _flip: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        k = len(self.point_names)
        where = f"scheme '{self.name}'"
        if len(self.groups) != k or len(self.contour_flags) != k:
            raise InputError(f"{where}: point_names, groups and contour flags must all have {k} entries")
        if len(set(self.point_names)) != k:
            raise InputError(f"{where}: point names must be unique")
        for c in self.contours:
            bad = [i for i in c.points if not 0 <= i < k]
            if bad or len(c.points) < 2:
                raise InputError(f"{where}: contour '{c.name}' needs >= 2 indices in [0, {k}), got {list(c.points)}")
        flip = np.arange(k)
        for a, b in self.flip_pairs:
            if not (0 <= a < k and 0 <= b < k) or a == b:
                raise InputError(f"{where}: flip pair ({a}, {b}) must be two different indices in [0, {k})")
            if flip[a] != a or flip[b] != b:
                raise InputError(f"{where}: point {a} or {b} is in two flip pairs")
            flip[a], flip[b] = b, a
        if self.normaliser_points is not None:
            a, b = self.normaliser_points
            if not (0 <= a < k and 0 <= b < k) or a == b:
                raise InputError(f"{where}: normaliser points ({a}, {b}) must be two different indices in [0, {k})")
        flip.setflags(write=False)
        object.__setattr__(self, "_flip", flip)

    @property
    def num_points(self) -> int:
        return len(self.point_names)

    @property
    def flip_permutation(self) -> np.ndarray:
        """(K,) index of each point's mirror partner (itself on the mid-line)."""
        return self._flip

    @property
    def contour_mask(self) -> np.ndarray:
        """(K,) True where the point is defined only by a contour (it may slide along it)."""
        return np.array(self.contour_flags, dtype=bool)

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.groups))

    def chain_neighbours(self, k: int) -> tuple[int, int] | None:
        """The previous and next point of `k` on its first contour chain (itself at an open end), or None."""
        for c in self.contours:
            if k not in c.points:
                continue
            i, n = c.points.index(k), len(c.points)
            if c.closed:
                return c.points[(i - 1) % n], c.points[(i + 1) % n]
            return c.points[max(i - 1, 0)], c.points[min(i + 1, n - 1)]
        return None

    def chain_pairs(self) -> np.ndarray:
        """(P, 2) every pair of consecutive points along the contour chains (a closed chain's last and first too),
        each pair once."""
        pairs = []
        for c in self.contours:
            chain = list(c.points) + ([c.points[0]] if c.closed and len(c.points) > 2 else [])
            pairs += [tuple(sorted(ab)) for ab in zip(chain, chain[1:], strict=False)]
        return np.array(sorted(set(pairs)), dtype=np.int64).reshape(-1, 2)

    def contour_tangents(self, xy: np.ndarray) -> np.ndarray:
        """(..., K, 2) unit tangent of each point along its chain from (..., K, 2) positions; NaN off any chain."""
        xy = np.asarray(xy, dtype=np.float64)
        tangents = np.full_like(xy, np.nan)
        for k in range(self.num_points):
            nb = self.chain_neighbours(k)
            if nb is None:
                continue
            d = xy[..., nb[1], :] - xy[..., nb[0], :]
            norm = np.linalg.norm(d, axis=-1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                tangents[..., k, :] = np.where(norm > 0, d / norm, np.nan)
        return tangents

    def normaliser(self, xy: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
        """(N,) NME normaliser of N faces from landmarks (N, K, 2) and, for box schemes, boxes (N, 4) x0,y0,x1,y1."""
        xy = np.asarray(xy, dtype=np.float64)
        if self.normaliser_points is not None:
            a, b = self.normaliser_points
            return np.linalg.norm(xy[:, a] - xy[:, b], axis=-1)
        if boxes is None or np.isnan(boxes).any():
            with np.errstate(invalid="ignore"):
                lo, hi = np.nanmin(xy, axis=1), np.nanmax(xy, axis=1)
            boxes = np.concatenate([lo, hi], axis=1) if boxes is None else np.where(
                np.isnan(boxes), np.concatenate([lo, hi], axis=1), boxes)
        wh = np.asarray(boxes)[:, 2:] - np.asarray(boxes)[:, :2]
        return np.sqrt(np.clip(wh[:, 0], 0, None) * np.clip(wh[:, 1], 0, None))

    def to_json(self) -> dict:
        """A JSON-ready description that `scheme_from_json` reads back."""
        return {
            "name": self.name,
            "points": [{"name": n, "group": g, "contour": c}
                       for n, g, c in zip(self.point_names, self.groups, self.contour_flags, strict=True)],
            "contours": [{"name": c.name, "points": list(c.points), "closed": c.closed} for c in self.contours],
            "flip_pairs": [list(p) for p in self.flip_pairs],
            "normaliser": ({"kind": "box"} if self.normaliser_points is None
                           else {"kind": "points", "points": list(self.normaliser_points)}),
        }


def scheme_from_json(data: object, *, source: str | Path = "scheme JSON", field: str | None = None) -> LandmarkScheme:
    """Build a scheme from the dict of `LandmarkScheme.to_json`; an InputError naming `source` (a file) and the bad
    field (under `field`, e.g. "scheme" in a checkpoint) on error."""

    def place(where: str) -> str:
        return f"{field}.{where}" if field else where

    def fail(message: str, where: str) -> InputError:
        return InputError(message, path=source, field=place(where))

    def need(obj: object, key: str, kind: type | tuple[type, ...], where: str):
        if not isinstance(obj, dict) or key not in obj:
            raise fail(f"missing field '{key}'", where)
        if not isinstance(obj[key], kind) or (kind is not bool and isinstance(obj[key], bool)):
            raise fail(f"field '{key}' has the wrong type ({type(obj[key]).__name__})", where)
        return obj[key]

    def indices(values: object, where: str, what: str) -> tuple[int, ...]:
        if not isinstance(values, list) or not all(isinstance(j, int) and not isinstance(j, bool) for j in values):
            raise fail(f"{what} must be a list of integers", where)
        return tuple(values)

    if not isinstance(data, dict):
        raise fail("expected a scheme object", "")
    name = need(data, "name", str, "name")
    points = need(data, "points", list, "points")
    if not points:
        raise fail("a scheme needs at least one point", "points")
    names, groups, flags = [], [], []
    for i, p in enumerate(points):
        names.append(need(p, "name", str, f"points[{i}]"))
        groups.append(need(p, "group", str, f"points[{i}]") if "group" in p else "all")
        flags.append(need(p, "contour", bool, f"points[{i}]") if "contour" in p else False)
    for key in ("contours", "flip_pairs"):
        if not isinstance(data.get(key, []), list):
            raise fail("expected a list", key)
    contours = []
    for i, c in enumerate(data.get("contours", [])):
        idx = indices(need(c, "points", list, f"contours[{i}]"), f"contours[{i}].points", "contour points")
        contours.append(Contour(str(c.get("name", f"contour_{i}"))[:200], idx, bool(c.get("closed", False))))
    pairs = []
    for i, p in enumerate(data.get("flip_pairs", [])):
        pair = indices(p, f"flip_pairs[{i}]", "a flip pair")
        if len(pair) != 2:
            raise fail("expected a pair of integers", f"flip_pairs[{i}]")
        pairs.append(pair)
    norm = data.get("normaliser", {"kind": "box"})
    kind = need({"n": norm}, "n", dict, "normaliser").get("kind")
    if kind == "points":
        np_ = indices(need(norm, "points", list, "normaliser"), "normaliser.points", "normaliser points")
        if len(np_) != 2:
            raise fail("expected two point indices", "normaliser.points")
        norm_points = (np_[0], np_[1])
    elif kind == "box":
        norm_points = None
    else:
        raise fail(f"normaliser kind must be 'points' or 'box', got {str(kind)[:40]!r}", "normaliser.kind")
    try:
        return LandmarkScheme(name, tuple(names), tuple(groups), tuple(flags), tuple(contours), tuple(pairs),
                              norm_points)
    except InputError as e:
        raise InputError(e.message, path=source, field=field) from None


def load_scheme_file(path: str | Path) -> LandmarkScheme:
    """Read a custom scheme from a JSON file."""
    from auditor.io import read_annotation_text

    path = Path(path)
    if not os.path.lexists(path):
        raise InputError("scheme file not found", path=path)
    try:
        data = json.loads(read_annotation_text(path, "a scheme .json file"))
    except json.JSONDecodeError as e:
        raise InputError(f"invalid JSON: {e.msg}", path=path, line=e.lineno) from None
    except (RecursionError, ValueError):
        raise InputError("invalid JSON: nested too deeply or a number too long", path=path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object describing a scheme", path=path)
    return scheme_from_json(data, source=str(path))


def _build(name: str, spec: list[tuple[str, str, bool]], contours: list[Contour],
           flip_pairs: list[tuple[int, int]], normaliser_points: tuple[int, int] | None) -> LandmarkScheme:
    names, groups, flags = zip(*spec, strict=True)
    return LandmarkScheme(name, names, groups, flags, tuple(contours), tuple(flip_pairs), normaliser_points)


def _w300_68() -> LandmarkScheme:
    spec = [(f"jaw_{i}" if i != 8 else "chin", "jaw", i != 8) for i in range(17)]
    spec += [("right_brow_outer", "brows", False)] + [(f"right_brow_{i}", "brows", True) for i in (1, 2, 3)]
    spec += [("right_brow_inner", "brows", False), ("left_brow_inner", "brows", False)]
    spec += [(f"left_brow_{i}", "brows", True) for i in (3, 2, 1)] + [("left_brow_outer", "brows", False)]
    spec += [("nose_bridge_top", "nose", True), ("nose_bridge_1", "nose", True), ("nose_bridge_2", "nose", True),
             ("nose_tip", "nose", False), ("right_nose_wing", "nose", False), ("right_nostril", "nose", True),
             ("nose_bottom", "nose", False), ("left_nostril", "nose", True), ("left_nose_wing", "nose", False)]
    spec += [("right_eye_outer", "eyes", False), ("right_eye_upper_outer", "eyes", True),
             ("right_eye_upper_inner", "eyes", True), ("right_eye_inner", "eyes", False),
             ("right_eye_lower_inner", "eyes", True), ("right_eye_lower_outer", "eyes", True),
             ("left_eye_inner", "eyes", False), ("left_eye_upper_inner", "eyes", True),
             ("left_eye_upper_outer", "eyes", True), ("left_eye_outer", "eyes", False),
             ("left_eye_lower_outer", "eyes", True), ("left_eye_lower_inner", "eyes", True)]
    spec += [("mouth_right", "mouth", False), ("upper_lip_right_2", "mouth", True),
             ("upper_lip_right_1", "mouth", True), ("upper_lip_top", "mouth", False),
             ("upper_lip_left_1", "mouth", True), ("upper_lip_left_2", "mouth", True), ("mouth_left", "mouth", False),
             ("lower_lip_left_2", "mouth", True), ("lower_lip_left_1", "mouth", True),
             ("lower_lip_bottom", "mouth", False), ("lower_lip_right_1", "mouth", True),
             ("lower_lip_right_2", "mouth", True)]
    spec += [("inner_mouth_right", "mouth", False), ("inner_upper_lip_right", "mouth", True),
             ("inner_upper_lip_mid", "mouth", False), ("inner_upper_lip_left", "mouth", True),
             ("inner_mouth_left", "mouth", False), ("inner_lower_lip_left", "mouth", True),
             ("inner_lower_lip_mid", "mouth", False), ("inner_lower_lip_right", "mouth", True)]
    contours = [Contour("jaw", tuple(range(17))), Contour("right_brow", tuple(range(17, 22))),
                Contour("left_brow", tuple(range(22, 27))), Contour("nose_bridge", tuple(range(27, 31))),
                Contour("lower_nose", tuple(range(31, 36))), Contour("right_eye", tuple(range(36, 42)), True),
                Contour("left_eye", tuple(range(42, 48)), True), Contour("outer_lip", tuple(range(48, 60)), True),
                Contour("inner_lip", tuple(range(60, 68)), True)]
    pairs = [(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
    pairs += [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    pairs += [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)]
    return _build("300w_68", spec, contours, pairs, (36, 45))


def _wflw_98() -> LandmarkScheme:
    spec = [(f"jaw_{i}" if i != 16 else "chin", "jaw", i != 16) for i in range(33)]
    spec += [("right_brow_outer", "brows", False)] + [(f"right_brow_upper_{i}", "brows", True) for i in (1, 2, 3)]
    spec += [("right_brow_inner_upper", "brows", False), ("right_brow_inner_lower", "brows", True)]
    spec += [(f"right_brow_lower_{i}", "brows", True) for i in (3, 2, 1)]
    spec += [("left_brow_inner_upper", "brows", False)] + [(f"left_brow_upper_{i}", "brows", True) for i in (3, 2, 1)]
    spec += [("left_brow_outer", "brows", False)] + [(f"left_brow_lower_{i}", "brows", True) for i in (1, 2, 3)]
    spec += [("left_brow_inner_lower", "brows", True)]
    spec += [("nose_bridge_top", "nose", True), ("nose_bridge_1", "nose", True), ("nose_bridge_2", "nose", True),
             ("nose_tip", "nose", False), ("right_nose_wing", "nose", False), ("right_nostril", "nose", True),
             ("nose_bottom", "nose", False), ("left_nostril", "nose", True), ("left_nose_wing", "nose", False)]
    spec += [("right_eye_outer", "eyes", False)] + [(f"right_eye_upper_{i}", "eyes", True) for i in (1, 2, 3)]
    spec += [("right_eye_inner", "eyes", False)] + [(f"right_eye_lower_{i}", "eyes", True) for i in (3, 2, 1)]
    spec += [("left_eye_inner", "eyes", False)] + [(f"left_eye_upper_{i}", "eyes", True) for i in (3, 2, 1)]
    spec += [("left_eye_outer", "eyes", False)] + [(f"left_eye_lower_{i}", "eyes", True) for i in (1, 2, 3)]
    spec += [("mouth_right", "mouth", False)] + [(f"upper_lip_{i}", "mouth", i != 3) for i in range(1, 6)]
    spec += [("mouth_left", "mouth", False)] + [(f"lower_lip_{i}", "mouth", i != 3) for i in range(1, 6)]
    spec += [("inner_mouth_right", "mouth", False)] + [(f"inner_upper_lip_{i}", "mouth", i != 2) for i in (1, 2, 3)]
    spec += [("inner_mouth_left", "mouth", False)] + [(f"inner_lower_lip_{i}", "mouth", i != 2) for i in (1, 2, 3)]
    spec += [("right_pupil", "eyes", False), ("left_pupil", "eyes", False)]
    contours = [Contour("jaw", tuple(range(33))), Contour("right_brow", tuple(range(33, 42)), True),
                Contour("left_brow", tuple(range(42, 51)), True), Contour("nose_bridge", tuple(range(51, 55))),
                Contour("lower_nose", tuple(range(55, 60))), Contour("right_eye", tuple(range(60, 68)), True),
                Contour("left_eye", tuple(range(68, 76)), True), Contour("outer_lip", tuple(range(76, 88)), True),
                Contour("inner_lip", tuple(range(88, 96)), True)]
    pairs = [(i, 32 - i) for i in range(16)]
    pairs += [(33, 46), (34, 45), (35, 44), (36, 43), (37, 42), (38, 50), (39, 49), (40, 48), (41, 47)]
    pairs += [(55, 59), (56, 58)]
    pairs += [(60, 72), (61, 71), (62, 70), (63, 69), (64, 68), (65, 75), (66, 74), (67, 73)]
    pairs += [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86), (88, 92), (89, 91), (93, 95), (96, 97)]
    return _build("wflw_98", spec, contours, pairs, (60, 72))


def _cofw_29() -> LandmarkScheme:
    spec = [("right_brow_outer", "brows", False), ("left_brow_outer", "brows", False),
            ("right_brow_inner", "brows", False), ("left_brow_inner", "brows", False),
            ("right_brow_upper", "brows", True), ("right_brow_lower", "brows", True),
            ("left_brow_upper", "brows", True), ("left_brow_lower", "brows", True),
            ("right_eye_outer", "eyes", False), ("left_eye_outer", "eyes", False),
            ("right_eye_inner", "eyes", False), ("left_eye_inner", "eyes", False),
            ("right_eye_upper", "eyes", True), ("right_eye_lower", "eyes", True),
            ("left_eye_upper", "eyes", True), ("left_eye_lower", "eyes", True),
            ("right_pupil", "eyes", False), ("left_pupil", "eyes", False),
            ("right_nose_wing", "nose", False), ("left_nose_wing", "nose", False),
            ("nose_tip", "nose", False), ("nose_bottom", "nose", False),
            ("mouth_right", "mouth", False), ("mouth_left", "mouth", False),
            ("upper_lip_top", "mouth", False), ("upper_lip_bottom", "mouth", False),
            ("lower_lip_top", "mouth", False), ("lower_lip_bottom", "mouth", False), ("chin", "jaw", False)]
    contours = [Contour("right_brow", (0, 4, 2, 5), True), Contour("left_brow", (1, 6, 3, 7), True),
                Contour("right_eye", (8, 12, 10, 13), True), Contour("left_eye", (9, 14, 11, 15), True),
                Contour("outer_lip", (22, 24, 23, 27), True), Contour("inner_lip", (22, 25, 23, 26), True)]
    pairs = [(0, 1), (4, 6), (2, 3), (5, 7), (8, 9), (10, 11), (12, 14), (16, 17), (13, 15), (18, 19), (22, 23)]
    return _build("cofw_29", spec, contours, pairs, (8, 9))


def _aflw_19() -> LandmarkScheme:
    spec = [("right_brow_outer", "brows", False), ("right_brow_mid", "brows", True),
            ("right_brow_inner", "brows", False), ("left_brow_inner", "brows", False),
            ("left_brow_mid", "brows", True), ("left_brow_outer", "brows", False),
            ("right_eye_outer", "eyes", False), ("right_eye_centre", "eyes", False),
            ("right_eye_inner", "eyes", False), ("left_eye_inner", "eyes", False),
            ("left_eye_centre", "eyes", False), ("left_eye_outer", "eyes", False),
            ("right_nose_wing", "nose", False), ("nose_tip", "nose", False), ("left_nose_wing", "nose", False),
            ("mouth_right", "mouth", False), ("mouth_centre", "mouth", False), ("mouth_left", "mouth", False),
            ("chin", "jaw", False)]
    contours = [Contour("right_brow", (0, 1, 2)), Contour("left_brow", (3, 4, 5))]
    pairs = [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14), (15, 17)]
    return _build("aflw_19", spec, contours, pairs, None)


BUILTIN_SCHEMES: dict[str, LandmarkScheme] = {s.name: s for s in (_w300_68(), _wflw_98(), _cofw_29(), _aflw_19())}
_ALIASES = {"300w": "300w_68", "300-w": "300w_68", "68": "300w_68", "wflw": "wflw_98", "98": "wflw_98",
            "cofw": "cofw_29", "29": "cofw_29", "aflw": "aflw_19", "19": "aflw_19"}


def get_scheme(name_or_path: str | LandmarkScheme) -> LandmarkScheme:
    """A built-in scheme by name (`300w_68`, `wflw_98`, `cofw_29`, `aflw_19`, or an alias) or a JSON file."""
    if isinstance(name_or_path, LandmarkScheme):
        return name_or_path
    key = name_or_path.strip().lower()
    key = _ALIASES.get(key, key)
    if key in BUILTIN_SCHEMES:
        return BUILTIN_SCHEMES[key]
    if name_or_path.lower().endswith(".json") or Path(name_or_path).is_file():
        return load_scheme_file(name_or_path)
    known = ", ".join(BUILTIN_SCHEMES)
    raise InputError(f"unknown scheme '{name_or_path}': expected one of {known} or a scheme .json file")


def infer_scheme(num_points: int, *, source: str | None = None) -> LandmarkScheme:
    """The single built-in scheme with `num_points` points; an error naming the count when there is none."""
    matches = [s for s in BUILTIN_SCHEMES.values() if s.num_points == num_points]
    if len(matches) == 1:
        return matches[0]
    counts = ", ".join(f"{s.name} ({s.num_points})" for s in BUILTIN_SCHEMES.values())
    raise InputError(f"no built-in scheme has {num_points} points ({counts}); name one with --scheme "
                     "or give a scheme .json", path=source)
