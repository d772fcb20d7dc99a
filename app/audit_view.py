"""The audit as the app holds it: the tables, the heatmap store memory-mapped, lookups by face and point.

`open_audit` is cached with `st.cache_resource`, keyed on the directory and its files' modification times (a
re-run audit is read again): one shared, read-only copy for every session and rerun, never copied per run as
`st.cache_data` would (a 10,000-face audit holds 680,000 point rows). Nothing in the app may modify these frames.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from auditor.audit_dir import (
    ANNOTATORS,
    IMAGES,
    MANIFEST,
    POINTS,
    audit_scheme,
    image_roots,
    load_audit,
    locate_image,
)
from auditor.charts import NO_ISSUE as NO_ISSUE  # app.review takes it from here
from auditor.errors import InputError
from auditor.triage import point_gains

HEATMAPS = "heatmaps"
DEFAULT_SIGMA = 1.5  # heatmap px, the training σ when the manifest records none


@dataclass(frozen=True)
class HeatmapStore:
    """The heatmap windows of an audit (docs/audit_format.md), read one point at a time."""

    windows: np.ndarray  # (N, K, W, W) float16, memory-mapped
    origins: np.ndarray  # (N, K, 2) int16: heatmap (x, y) of each window's top-left pixel
    to_heatmap: np.ndarray  # (N, 3, 3) float64: the affine from image pixels to heatmap pixels

    @property
    def side(self) -> int:
        """W, the window's side in heatmap pixels."""
        return int(self.windows.shape[-1])


def load_heatmaps(store_dir: Path, *, faces: int, points: int) -> HeatmapStore:
    """The store of `faces` faces of `points` points, `windows.npy` memory-mapped; an InputError naming the file."""
    arrays = {}
    for name in ("windows", "origins", "to_heatmap"):
        path = store_dir / f"{name}.npy"
        if not path.is_file():
            raise InputError("missing: the audit has no heatmap store", path=path)
        try:
            arrays[name] = np.load(path, mmap_mode="r" if name == "windows" else None, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise InputError(f"not a readable .npy file ({e})", path=path) from None
    windows, origins, to_heatmap = arrays["windows"], arrays["origins"], arrays["to_heatmap"]
    expected = {"windows": (faces, points), "origins": (faces, points, 2), "to_heatmap": (faces, 3, 3)}
    side = windows.shape[-1] if windows.ndim == 4 else -1
    shapes_ok = (windows.shape == (faces, points, side, side) and side > 0 and origins.shape == expected["origins"]
                 and to_heatmap.shape == expected["to_heatmap"])
    if not shapes_ok:
        raise InputError(f"shapes windows {windows.shape}, origins {origins.shape}, to_heatmap {to_heatmap.shape}; "
                         f"expected ({faces}, {points}, W, W), ({faces}, {points}, 2), ({faces}, 3, 3)",
                         path=store_dir)
    return HeatmapStore(windows, np.asarray(origins, dtype=np.int64), np.asarray(to_heatmap, dtype=np.float64))


@dataclass(frozen=True)
class AuditView:
    """A loaded audit: the manifest, the tables, the scheme's points, the review queue's gains, lookups and the heatmap
    store."""

    path: Path
    manifest: dict
    points: pd.DataFrame  # points.parquet
    images: pd.DataFrame  # images.parquet
    scheme_points: pd.DataFrame  # K rows: point, point_name, group, is_contour
    flip: np.ndarray  # (K,) each point's flip partner (itself where it has none): a mirrored face's labels
    gains: pd.DataFrame  # `auditor.triage.point_gains` of `points`, on its index
    face_points: dict[str, np.ndarray]  # image_id -> its rows of `points`, by point
    image_row: dict[str, int]  # image_id -> its row of `images`, which is its row of the heatmap store
    issue_keys: pd.MultiIndex  # (image_id as str, point) of every point with is_label_issue, unique
    heatmaps: HeatmapStore | None
    heatmaps_error: str | None  # why there is no heatmap store

    @property
    def sigma(self) -> float:
        """The ideal heatmap's σ in heatmap pixels: the search's, else the model's, else the default."""
        for section, owner in (("search", self.manifest), ("config", self.manifest.get("model") or {})):
            value = (owner.get(section) or {}).get("sigma")
            if isinstance(value, int | float) and value > 0:
                return float(value)
        return DEFAULT_SIGMA

    def point_row(self, image_id: str, point: int) -> int | None:
        """The row of `points` of one face's point, or None when the audit has no such point."""
        rows = self.face_points.get(image_id, np.empty(0, dtype=np.int64))
        hit = rows[self.points.point.to_numpy()[rows] == point]
        return int(hit[0]) if len(hit) else None

    def image_file(self, image_id: str) -> Path | None:
        """The image file of a face where it lies now, or None when it cannot be found."""
        image_path = str(self.images.image_path.iat[self.image_row[image_id]])
        return locate_image(image_roots(self.manifest, self.path), image_path)


def audit_version(audit_dir: Path) -> tuple[int, ...]:
    """The modification times of the audit's files: a new version whenever the audit is re-run."""
    paths = [audit_dir / MANIFEST, audit_dir / POINTS, audit_dir / IMAGES, audit_dir / HEATMAPS / "windows.npy",
             audit_dir / ANNOTATORS]
    return tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in paths)


def build_view(audit_dir: Path) -> AuditView:
    """Read and index an audit directory (uncached); an InputError for a bad audit."""
    audit = load_audit(audit_dir)
    points, images = audit.points, audit.images
    scheme_points = (points.drop_duplicates("point").sort_values("point")
                     .reindex(columns=["point", "point_name", "group", "is_contour"]).reset_index(drop=True))
    scheme_points["is_contour"] = scheme_points.is_contour.fillna(False).astype(bool)
    image_ids = points.image_id.to_numpy(dtype=object)
    order = np.lexsort((points.point.to_numpy(), pd.factorize(image_ids)[0]))
    starts = np.flatnonzero(np.r_[True, image_ids[order][1:] != image_ids[order][:-1]])
    face_points = {image_ids[order[s]]: rows for s, rows in zip(starts, np.split(order, starts[1:]), strict=True)}
    image_row = {str(image_id): i for i, image_id in enumerate(images.image_id)}
    issues = points.is_label_issue.fillna(False).to_numpy(dtype=bool)
    try:
        flip = audit_scheme(audit.manifest, audit_dir).flip_permutation
    except InputError:  # a manifest that does not say its scheme: no point has a partner to mirror to
        flip = np.arange(len(scheme_points))
    try:
        heatmaps, error = load_heatmaps(audit_dir / HEATMAPS, faces=len(images), points=len(scheme_points)), None
    except InputError as e:
        heatmaps, error = None, str(e)
    return AuditView(
        path=audit_dir, manifest=audit.manifest, points=points, images=images, scheme_points=scheme_points,
        flip=flip, gains=point_gains(points, images, audit.manifest, flip), face_points=face_points,
        image_row=image_row,
        issue_keys=pd.MultiIndex.from_arrays([image_ids[issues].astype(str).astype(object),
                                              points.point.to_numpy(dtype=np.int64)[issues]]).unique(),
        heatmaps=heatmaps, heatmaps_error=error)


@st.cache_resource(max_entries=2, show_spinner="Reading the audit…")
def _cached_view(audit_dir: str, version: tuple[int, ...]) -> AuditView:
    return build_view(Path(audit_dir))


def open_audit(audit_dir: str | Path) -> AuditView:
    """The audit at `audit_dir`, read once per version of its files; an InputError for a bad audit."""
    path = Path(audit_dir).expanduser().resolve()
    if not path.is_dir():
        raise InputError("no such audit directory" if not path.exists() else "not a directory", path=path)
    return _cached_view(str(path), audit_version(path))


def _data_uri(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return f"data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}"


@st.cache_data(max_entries=64, show_spinner=False)
def image_data_uri(path: str) -> tuple[str, tuple[int, int]]:
    """An image file as a data URI for plotly (a JPEG or PNG as it is, anything else as PNG) and its (width,
    height)."""
    with Image.open(path) as image:
        if image.format in ("JPEG", "PNG"):
            mime = f"image/{image.format.lower()}"
            return f"data:{mime};base64,{base64.b64encode(Path(path).read_bytes()).decode()}", image.size
        return _data_uri(image.convert("RGB")), image.size


@st.cache_data(max_entries=64, show_spinner=False)
def crop_pixels(path: str, box: tuple[int, int, int, int]) -> np.ndarray:
    """(H, W, 3) uint8 the crop `box` (left, top, right, bottom; image pixels, right and bottom excluded) of an
    image."""
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB").crop(box))
