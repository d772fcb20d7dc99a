"""The audit: model + search + heatmap shape measures + scoring -> the audit directory (docs/audit_format.md).

Faces stream through in batches: the heatmaps of a batch are searched, measured, cut to the windows the
app draws, appended to the heatmap store's files and dropped, so memory grows only with the output tables.
The scoring needs every face's residuals (each point's spread over the dataset), so it runs once at the
end over the tables; `merge_audits` re-runs it over the union of shards. `audit_tables` is the same audit
without the store, its scored tables in memory: training's rounds take their targets from it.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from auditor import __version__
from auditor.annotators import (
    FACE_AREA,
    AnnotatorAudit,
    add_subject_columns,
    audit_annotators,
    face_areas,
    take_face_areas,
    write_annotator_files,
)
from auditor.atomic import atomic_directory, atomic_write_text
from auditor.audit_dir import (
    CALIBRATION_DIR,
    FORMAT_VERSION,
    IMAGES,
    POINTS,
    is_audit_directory,
    load_audit,
    load_manifest,
    read_table,
)
from auditor.calibration import DEFAULT_TARGET_PRECISION, NO_TARGET, calibrated, planted_copy, uncalibrated
from auditor.checkpoint import load_checkpoint, model_from_checkpoint
from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.folds import is_fold_folder, load_fold_models
from auditor.geometry import apply_affine
from auditor.heatmaps import decode, refine_peaks, smooth
from auditor.inference import Batch, iterate_heatmaps
from auditor.io import is_regular_file, relative_image_path
from auditor.model import LandmarkModel
from auditor.outputs import check_apart, check_writable_location, dataset_inputs, is_empty_folder
from auditor.schemes import LandmarkScheme, scheme_from_json
from auditor.scoring import ScoringConfig, score_points
from auditor.search import SearchConfig, clamped_patches, search
from auditor.shape_stats import shape_stats
from auditor.validation import dataclass_from_json

REVIEW_FILES = ("reviews.sqlite", "reviews.sqlite-wal", "reviews.sqlite-shm")
_MEASURES = ("mode_peak", "peak", "anisotropy", "angle", "gaussianity_human", "gaussianity_searched", "flat_hat",
             "confidence", "search_gain")
# the columns `_tables` writes, before scoring
_UNSCORED_POINTS = ("image_id", "face", "point", "point_name", "group", "is_contour", "x_human", "y_human",
                    "x_searched", "y_searched", "x_searched_broad", "y_searched_broad", "x_pred", "y_pred", "x_mode",
                    "y_mode", "searched_nme", "pred_err_nme", *_MEASURES)


def parse_shard(text: str) -> tuple[int, int]:
    """'i/n' -> (i, n) with 0 <= i < n."""
    index, sep, count = text.partition("/")
    try:
        i, n = int(index), int(count)
    except ValueError:
        i, n = -1, 0
    if not sep or not 0 <= i < n:
        raise InputError(f"expected a shard as i/n with 0 <= i < n, got {text!r}", field="--shard")
    return i, n


def shard_range(num_faces: int, index: int, count: int) -> tuple[int, int]:
    """Faces [start, stop) of shard `index` of `count`: contiguous blocks, so shards concatenate in order."""
    return index * num_faces // count, (index + 1) * num_faces // count


def window_side(search_config: SearchConfig, heatmap_size: int) -> int:
    """Side W of the stored heatmap window: the search window (17 at R = 64)."""
    return 2 * search_config.window_half_width(heatmap_size) + 1


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else as torch names it."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise InputError(f"unknown device {device!r}", field="--device") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError("CUDA was asked for but is not available", field="--device")
    return resolved


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system (glibc's malloc_trim; nothing elsewhere): each batch's
    large buffers otherwise leave the heap fragmented, and a long audit's resident memory creeps up."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _load_libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 (musl and others lack it)
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _load_libc()


class _NpyWriter:
    """Writes an .npy file of a known shape front to back, a block of rows at a time: unlike a memory map, the
    written rows do not stay resident in the process, so memory does not grow with the dataset."""

    def __init__(self, path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> None:
        self.dtype, self.shape, self.rows = np.dtype(dtype), shape, 0
        self.file = open(path, "wb")  # noqa: SIM115 (closed in __exit__)
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.file, header)

    def append(self, rows: np.ndarray) -> None:
        """Write the next rows (n, *shape[1:])."""
        if rows.shape[1:] != self.shape[1:] or self.rows + len(rows) > self.shape[0]:
            raise ValueError(f"rows {rows.shape} do not fit {self.shape} after {self.rows} rows")
        self.file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())
        self.rows += len(rows)

    def __enter__(self) -> _NpyWriter:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        self.file.close()
        if kind is None and self.rows != self.shape[0]:
            raise RuntimeError(f"{self.file.name}: wrote {self.rows} of {self.shape[0]} rows")


def _measure(heat: torch.Tensor, batch: Batch, landmarks: np.ndarray, search_config: SearchConfig, side: int | None,
             scheme: LandmarkScheme) -> dict[str, np.ndarray]:
    """Everything the audit keeps of one batch's heatmaps (B, K, R, R): positions (B, K, 2) in image px, measures
    (B, K), and with a window `side` the windows (B, K, side, side) for the heatmap store; the scheme's contour
    points get their own search prior, elongated along the labels' own contour, and a second search with the
    proposal's tighter prior proposes their position (`SearchConfig.proposing`)."""
    label_hm = apply_affine(batch.to_heatmap, landmarks)
    human_hm = torch.from_numpy(label_hm).to(heat)
    tangents = torch.from_numpy(scheme.contour_tangents(label_hm)).to(heat)
    found = search(heat, human_hm, search_config, contour=scheme.contour_mask, tangents=tangents)
    proposed = search(heat, human_hm, search_config.proposing(heat.shape[-1]), contour=scheme.contour_mask,
                      tangents=tangents)
    smoothed = smooth(heat, search_config.sigma)  # read by both decodings below
    pred_hm, confidence = decode(heat, search_config.sigma, smoothed=smoothed)
    stats = shape_stats(heat, human_hm, search_config)
    gain = found.score - (found.log_likelihood_at_label + found.log_prior_at_label)
    # an empty patch at the label (no heatmap mass there at all) is the strongest verdict the heatmap gives
    gain = torch.where(found.valid & torch.isnan(gain), torch.full_like(gain, 1e3), gain)
    mode, mode_peak = _local_mode(heat, human_hm, search_config.window_half_width(heat.shape[-1]),
                                  search_config.sigma, smoothed)

    def image_px(result) -> np.ndarray:
        valid = result.valid[..., None].cpu().numpy()
        return batch.to_image(np.where(valid, result.searched.double().cpu().numpy(), np.nan))

    out = {
        "searched": image_px(proposed), "searched_broad": image_px(found),
        "pred": batch.to_image(pred_hm.double().cpu().numpy()),
        "mode": batch.to_image(mode.double().cpu().numpy()), "mode_peak": mode_peak,
        "peak": stats.peak, "anisotropy": stats.anisotropy, "angle": stats.angle,
        "gaussianity_human": stats.gaussian_likeness, "gaussianity_searched": torch.exp(-found.distance_searched),
        "flat_hat": stats.flat_hat_index, "confidence": confidence, "search_gain": gain,
    }
    if side is not None:
        centre = torch.where(torch.isfinite(human_hm).all(-1, keepdim=True), human_hm, pred_hm)
        windows, _ = clamped_patches(heat, centre, side)
        out.update(windows=windows.to(torch.float16), origins=torch.floor(centre + 0.5) - side // 2)
    return {key: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for key, v in out.items()}


def _measured_batches(model: LandmarkModel, ds: Dataset, faces: np.ndarray, search_config: SearchConfig,
                      side: int | None, *, device: str | torch.device, batch_size: int, flip: bool,
                      use_ghcu: bool = True, workers: int = 0, planted: np.ndarray | None = None
                      ) -> Iterator[tuple[Batch, dict[str, np.ndarray], dict[str, np.ndarray] | None]]:
    """Each batch of the model's output over `faces`, with its measures (`_measure`) of the GHCU's heatmaps (or the
    last stack's) at the labels, and at the `planted` labels (N, K, 2) of the calibration's copy when given (the
    same heatmaps, no windows); `workers` processes load the next batches meanwhile."""
    for batch in iterate_heatmaps(model, ds, indices=faces, batch_size=batch_size, device=device, flip=flip,
                                  workers=workers):
        heat = batch.ghcu_heatmaps if use_ghcu else batch.stack_heatmaps
        measured = _measure(heat, batch, ds.landmarks[batch.index], search_config, side, ds.scheme)
        at_planted = (None if planted is None
                      else _measure(heat, batch, planted[batch.index], search_config, None, ds.scheme))
        yield batch, measured, at_planted


def _local_mode(heat: torch.Tensor, xy_hm: torch.Tensor, half: int, sigma: float,
                smoothed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The heatmap's highest pixel in the search window around each label, refined to sub-pixel like the
    prediction (`refine_peaks`, from smoothed = `smooth(heat, sigma)`) (B, K, 2), and that pixel's value (B, K)."""
    side = 2 * half + 1
    patches, inside = clamped_patches(heat, xy_hm, side)
    value, arg = patches.flatten(-2).max(dim=-1)
    offset = torch.stack([arg % side, arg // side], dim=-1).to(xy_hm) - half
    mode = torch.nan_to_num(torch.floor(xy_hm + 0.5) + offset).long()
    mode = refine_peaks(heat, mode[..., 0], mode[..., 1], sigma, smoothed=smoothed).to(xy_hm)
    ok = inside & (value > 0)
    return torch.where(ok[..., None], mode, torch.nan), torch.where(ok, value, torch.nan)


def _tables(ds: Dataset, faces: np.ndarray, parts: dict[str, np.ndarray]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Unscored points (len(faces)·K rows) and images tables from the stacked per-face measures."""
    scheme, n, k = ds.scheme, len(faces), ds.num_points
    human = ds.landmarks[faces]
    norm = ds.normaliser()[faces]
    searched, pred = parts["searched"], parts["pred"]
    with np.errstate(invalid="ignore"):
        to_searched = np.linalg.norm(searched - human, axis=-1) / norm[:, None]
        to_pred = np.linalg.norm(pred - human, axis=-1) / norm[:, None]
    ids = np.asarray(ds.image_ids, dtype=object)[faces]
    columns = {
        "image_id": np.repeat(ids, k),
        "face": np.repeat(faces.astype(np.int32), k),
        "point": np.tile(np.arange(k, dtype=np.int16), n),
        "point_name": np.tile(np.asarray(scheme.point_names, dtype=object), n),
        "group": np.tile(np.asarray(scheme.groups, dtype=object), n),
        "is_contour": np.tile(scheme.contour_mask, n),
        "x_human": human[..., 0].ravel(), "y_human": human[..., 1].ravel(),
        "x_searched": searched[..., 0].ravel(), "y_searched": searched[..., 1].ravel(),
        "x_searched_broad": parts["searched_broad"][..., 0].ravel(),
        "y_searched_broad": parts["searched_broad"][..., 1].ravel(),
        "x_pred": pred[..., 0].ravel(), "y_pred": pred[..., 1].ravel(),
        "x_mode": parts["mode"][..., 0].ravel(), "y_mode": parts["mode"][..., 1].ravel(),
        "searched_nme": to_searched.ravel(), "pred_err_nme": to_pred.ravel(),
    }
    for name in _MEASURES:
        columns[name] = parts[name].astype(np.float32).ravel()
    points = pd.DataFrame(columns)
    for name in ("image_id", "point_name", "group"):
        points[name] = points[name].astype("string")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a face without any label: an all-NaN row
        images = pd.DataFrame({
            "image_id": pd.array(ids, dtype="string"),
            "face": faces.astype(np.int32),
            "image_path": pd.array([str(relative_image_path(ds, i)) for i in faces], dtype="string"),
            "normaliser": norm,
            "nme_searched": np.nanmean(to_searched, axis=1),
            "nme_pred": np.nanmean(to_pred, axis=1),
        })
    return points, images


def audit_tables(model: LandmarkModel, ds: Dataset, *, search_config: SearchConfig | None = None,
                 scoring: ScoringConfig | None = None, device: str | torch.device = "cpu", batch_size: int = 32,
                 flip: bool = True, use_ghcu: bool = True, shard: tuple[int, int] = (0, 1),
                 gather: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The scored points (N·K rows) and images (N rows) tables of every face of `ds`, in memory: an audit without
    its heatmap store (training's rounds read their targets from it).

    `use_ghcu=False` reads the last stack's heatmaps. Under `shard` = (rank, world) this process measures every
    world-th face, and `gather` must combine the processes' (N, ...) arrays, each NaN on the faces it did not
    measure, so that every process scores the same whole tables.
    """
    search_config, scoring = search_config or SearchConfig(), scoring or ScoringConfig()
    rank, world = shard
    owned = np.arange(len(ds))[rank::world]
    measures: dict[str, np.ndarray] = {}
    for batch, measured, _ in _measured_batches(model, ds, owned, search_config, None, device=device,
                                                batch_size=batch_size, flip=flip, use_ghcu=use_ghcu):
        for key, value in measured.items():
            measures.setdefault(key, np.full((len(ds), *value.shape[1:]), np.nan))[batch.index] = value
    if gather is not None:
        measures = {key: gather(value) for key, value in sorted(measures.items())}  # the same order on every rank
    points, images = _tables(ds, np.arange(len(ds)), measures)
    return score_points(points, images, ds.scheme, scoring)


def _check_replaceable(out: Path, inputs: list[Path]) -> None:
    """An InputError unless `out` is absent, an empty folder or an earlier audit (an audit replaces it whole), and
    apart from every input (`outputs.check_apart`)."""
    check_writable_location(out, field="--out")
    check_apart(out, inputs, field="--out")
    if os.path.lexists(out) and not is_empty_folder(out) and not is_audit_directory(out):
        raise InputError("exists and is not an audit directory; refusing to replace it (choose another --out)",
                         path=out)


def _relative(path: str | None, audit_dir: Path) -> str | None:
    """`path` relative to the audit directory, so an audit moved (or shipped) with its dataset still finds it."""
    return None if path is None else os.path.relpath(Path(path).resolve(), audit_dir.resolve())


def _dataset_info(ds: Dataset, source: dict, audit_dir: Path) -> dict:
    return {"path": _relative(source.get("path"), audit_dir), "format": ds.source_format,
            "images_root": _relative(source.get("images_root"), audit_dir), "scheme": ds.scheme.name,
            "fingerprint": ds.fingerprint(), "faces": len(ds), "images": ds.num_images,
            "annotators_from": source.get("annotators_from")}


def _counts(points: pd.DataFrame, images: pd.DataFrame) -> dict:
    issues = points[points["is_label_issue"]]
    return {"faces": len(images), "points": int(np.isfinite(points["x_human"]).sum()),
            "label_issues": len(issues), "faces_with_issues": int((images["num_label_issues"] > 0).sum()),
            "swapped_faces": int(images["swapped_sides"].sum()),
            "issue_types": {str(k): int(v) for k, v in points["issue_type"].value_counts().items() if k}}


def _fitted(points: pd.DataFrame) -> dict:
    """What the scoring fitted to this dataset rather than took from its config (the prediction's weight)."""
    return {"pred_weight": points.attrs.get("pred_weight")}


def _write_tables(out: Path, points: pd.DataFrame, images: pd.DataFrame, manifest: dict,
                  team: AnnotatorAudit) -> None:
    points.to_parquet(out / "points.parquet", index=False)
    images.to_parquet(out / "images.parquet", index=False)
    write_annotator_files(out, team)
    atomic_write_text(out / "manifest.json", json.dumps(manifest, indent=2) + "\n")


def _folds_sha256(payloads: list[dict]) -> str:
    """One sha256 (hex) over the fold checkpoints' own, in fold order."""
    return hashlib.sha256("".join(file_sha256(Path(p["path"])) for p in payloads).encode()).hexdigest()


def run_audit(ds: Dataset, checkpoint: str | Path, out: str | Path, *, source: dict | None = None,
              device: str = "auto", batch_size: int = 32, shard: tuple[int, int] | None = None,
              search_config: SearchConfig | None = None, scoring: ScoringConfig | None = None,
              flip: bool = True, workers: int = 1, progress: bool = True,
              target_precision: float | None = DEFAULT_TARGET_PRECISION) -> dict:
    """Audit every face of `ds` (or one shard) with a checkpoint; write the directory `out`; return its manifest.

    `checkpoint`: a file of `auditor train`, or the folder of `auditor train --folds k`, whose models each audit
    the faces of their own fold (`auditor.folds`).

    `flip`: the heatmaps are the mean of each face's and its mirror image's (through the scheme's flip pairs).
    `workers`: processes that load and crop the next batches while the model, the search and the measures run
    on this one (0: the audit's own process loads them, in turn).
    `target_precision`: the issue threshold is calibrated to it on a copy of the labels with planted errors
    (`auditor.calibration`), measured on the same heatmaps; None or 0 keeps `scoring.issue_threshold`. A shard
    keeps the copy's tables (CALIBRATION_DIR) for `merge_audits` to calibrate on all faces.
    """
    started = time.perf_counter()
    search_config, scoring = search_config or SearchConfig(), scoring or ScoringConfig()
    checkpoint = Path(checkpoint)
    inputs = [checkpoint, *dataset_inputs(ds, (source or {}).get("path") or ds.root)]
    _check_replaceable(Path(out), inputs)
    if is_fold_folder(checkpoint):
        model, model_scheme, payloads = load_fold_models(checkpoint, ds)
        payload, sha256 = payloads[0], _folds_sha256(payloads)
    else:
        payload = load_checkpoint(checkpoint)
        model, model_scheme = model_from_checkpoint(payload)
        payloads, sha256 = [payload], file_sha256(checkpoint)
    if model_scheme.num_points != ds.num_points:
        raise InputError(f"the model predicts {model_scheme.num_points} points ({model_scheme.name}) but the "
                         f"dataset has {ds.num_points} ({ds.scheme.name})", path=checkpoint)
    if batch_size < 1:
        raise InputError(f"batch size must be >= 1, got {batch_size}", field="--batch-size")
    if workers < 0:
        raise InputError(f"workers must be >= 0, got {workers}", field="--workers")
    torch_device = resolve_device(device)
    model.to(torch_device)
    start, stop = (0, len(ds)) if shard is None else shard_range(len(ds), *shard)
    faces = np.arange(start, stop)
    if len(faces) == 0:
        raise InputError(f"shard {shard[0]}/{shard[1]} of {len(ds)} faces is empty", field="--shard")
    k, size = ds.num_points, model.config.heatmap_size
    side = window_side(search_config, size)
    copy, planted = planted_copy(ds) if target_precision else (None, None)

    with atomic_directory(out, carry=REVIEW_FILES) as tmp:
        store = tmp / "heatmaps"
        store.mkdir()
        parts: dict[str, list[np.ndarray]] = {}
        planted_parts: dict[str, list[np.ndarray]] = {}
        bar = tqdm(total=len(faces), desc="audit", unit="face", disable=None if progress else True)
        with (_NpyWriter(store / "windows.npy", np.float16, (len(faces), k, side, side)) as windows,
              _NpyWriter(store / "origins.npy", np.int16, (len(faces), k, 2)) as origins,
              _NpyWriter(store / "to_heatmap.npy", np.float64, (len(faces), 3, 3)) as affines):
            try:
                for batch, measured, at_planted in _measured_batches(
                        model, ds, faces, search_config, side, device=torch_device, batch_size=batch_size, flip=flip,
                        workers=workers, planted=None if copy is None else copy.landmarks):
                    windows.append(measured.pop("windows"))
                    origins.append(measured.pop("origins"))
                    affines.append(batch.to_heatmap)
                    for key, value in measured.items():
                        parts.setdefault(key, []).append(value)
                    for key, value in (at_planted or {}).items():
                        planted_parts.setdefault(key, []).append(value)
                    bar.update(len(batch.index))
                    release_free_memory()
            finally:
                bar.close()
        stacked = {key: np.concatenate(parts.pop(key)) for key in list(parts)}
        points, images = _tables(ds, faces, stacked)
        add_subject_columns(images, ds, faces)
        del stacked
        points, images = score_points(points, images, ds.scheme, scoring)
        planted_points, planted_images = (None, None) if copy is None else _tables(
            copy, faces, {key: np.concatenate(value) for key, value in planted_parts.items()})
        del planted_parts
        if copy is None:
            calibration = uncalibrated(target_precision, NO_TARGET)
        elif shard is None:
            points, images, scoring, calibration = calibrated(points, images, planted_points, planted_images, planted,
                                                              ds.scheme, scoring, target_precision)
        else:
            ids = set(images["image_id"].astype(str))
            _write_calibration(tmp, planted_points, planted_images, planted[planted["image_id"].isin(ids)])
            calibration = uncalibrated(target_precision, "a shard: merge calibrates on all faces")
        areas = face_areas(ds, faces)
        if shard is not None:
            images[FACE_AREA] = areas
        team = audit_annotators(points, images, ds.scheme, areas, shard=shard is not None)
        seconds = time.perf_counter() - started
        manifest = {
            "format_version": FORMAT_VERSION,
            "tool_version": __version__,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "dataset": _dataset_info(ds, source or {}, Path(out)),
            "scheme": ds.scheme.to_json(),
            "model": {"path": _relative(str(checkpoint), Path(out)), "sha256": sha256, "config": payload["config"],
                      "folds": len(payloads) if len(payloads) > 1 else None},
            "search": {key: value for key, value in asdict(search_config).items() if key != "chunk_size"},
            "scoring": scoring.to_json(),
            "scoring_fitted": _fitted(points),
            "calibration": calibration,
            **team.manifest,
            "heatmaps": {"source": "ghcu", "flip_averaged": flip, "window": side, "dtype": "float16",
                         "heatmap_size": size, "bytes_per_face": k * side * side * 2},
            "shard": None if shard is None else {"index": shard[0], "count": shard[1], "faces": [start, stop]},
            "counts": _counts(points, images),
            "timing": {"seconds": round(seconds, 2), "faces_per_second": round(len(faces) / seconds, 2),
                       "device": str(torch_device), "workers": workers},
        }
        _write_tables(tmp, points, images, manifest, team)
    return manifest


def _write_calibration(out: Path, points: pd.DataFrame, images: pd.DataFrame, planted: pd.DataFrame) -> None:
    """A shard's planted copy, measured and unscored, for `merge_audits` to calibrate on (CALIBRATION_DIR)."""
    folder = out / CALIBRATION_DIR
    folder.mkdir()
    points.to_parquet(folder / "points.parquet", index=False)
    images.to_parquet(folder / "images.parquet", index=False)
    planted.to_csv(folder / "planted.csv", index=False)


def _read_calibration(shard: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame] | None:
    """A shard's planted copy (`_write_calibration`), None when it has none; an InputError naming a damaged file."""
    from auditor.evaluate import read_noise

    folder = shard / CALIBRATION_DIR
    if not os.path.lexists(folder):
        return None
    points = read_table(folder / POINTS, _UNSCORED_POINTS)
    images = read_table(folder / IMAGES, ("image_id", "face", "image_path", "normaliser", "nme_searched", "nme_pred"))
    planted = read_noise(folder / "planted.csv")
    point = pd.to_numeric(planted["point"], errors="coerce")
    if not (np.isfinite(point) & (point == np.round(point)) & (point >= 0)).all():
        raise InputError("expected a point index in every row", path=folder / "planted.csv", field="point")
    return points, images, planted.assign(point=point.astype(np.int64))


def _shard_info(manifest: dict, path: Path) -> dict:
    """The manifest fields `merge_audits` reads, checked: an InputError naming the shard's manifest and the field."""
    where = path / "manifest.json"
    shard = manifest.get("shard")
    if shard is None:
        raise InputError("not a shard (audited without --shard)", path=path)

    def integer(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not (isinstance(shard, dict) and integer(shard.get("index")) and integer(shard.get("count"))
            and 0 <= shard["index"] < shard["count"] and isinstance(shard.get("faces"), list)
            and len(shard["faces"]) == 2 and all(integer(f) for f in shard["faces"])
            and 0 <= shard["faces"][0] <= shard["faces"][1]):
        raise InputError("expected {\"index\": i, \"count\": n, \"faces\": [start, stop]} with 0 <= i < n", path=where,
                         field="shard")
    for key in ("model", "heatmaps", "timing"):
        if not isinstance(manifest.get(key), dict):
            raise InputError("missing or not an object", path=where, field=key)
    seconds = manifest["timing"].get("seconds")
    if not (isinstance(seconds, int | float) and not isinstance(seconds, bool) and 0 <= seconds < 1e12):
        raise InputError("expected a number of seconds", path=where, field="timing.seconds")
    if not isinstance(manifest["timing"].get("device"), str):
        raise InputError("expected the device's name", path=where, field="timing.device")
    for key in ("path", "images_root"):
        if not isinstance(manifest["dataset"].get(key), str | None):
            raise InputError("expected a path or null", path=where, field=f"dataset.{key}")
    return shard


_STORE = {"windows.npy": np.float16, "origins.npy": np.int16, "to_heatmap.npy": np.float64}


def _store_arrays(shard_dir: Path, faces: int, k: int) -> dict[str, np.ndarray]:
    """A shard's heatmap store, memory-mapped and checked against its face count and K (docs/audit_format.md)."""
    arrays = {}
    for name, dtype in _STORE.items():
        path = shard_dir / "heatmaps" / name
        if not is_regular_file(path):
            raise InputError("missing: the shard is incomplete (audit it again)", path=path)
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except Exception as e:  # a damaged header surfaces as several types (ValueError, tokenize's TokenError, ...)
            raise InputError(f"not a readable .npy array ({' '.join(str(e).split())[:120] or type(e).__name__})",
                             path=path) from None
        tail = {"windows.npy": array.shape[2:3] * 2, "origins.npy": (2,), "to_heatmap.npy": (3, 3)}[name]
        wanted = (faces, k, *tail) if name != "to_heatmap.npy" else (faces, *tail)
        if array.dtype != dtype or array.shape != wanted or (name == "windows.npy" and array.ndim != 4):
            raise InputError(f"expected {np.dtype(dtype).name} of shape {wanted}, got {array.dtype} of shape "
                             f"{array.shape}", path=path)
        arrays[name] = array
    return arrays


def merge_audits(shards: list[Path], out: str | Path, *, scoring: ScoringConfig | None = None,
                 target_precision: float | None = DEFAULT_TARGET_PRECISION) -> dict:
    """Concatenate the shard audits of one dataset and model into one audit, re-scored over all faces and
    calibrated to `target_precision` on the shards' planted copies (`run_audit`)."""
    if not shards:
        raise InputError("no shard audits given")
    shards = [Path(s) for s in shards]
    manifests = [load_manifest(s) for s in shards]
    _check_replaceable(Path(out), list(shards))
    infos = [_shard_info(m, path) for path, m in zip(shards, manifests, strict=True)]
    schemes = [scheme_from_json(m.get("scheme"), source=path / "manifest.json", field="scheme")
               for path, m in zip(shards, manifests, strict=True)]
    scorings = [dataclass_from_json(ScoringConfig, m.get("scoring"), source=path / "manifest.json", field="scoring")
                for path, m in zip(shards, manifests, strict=True)]
    first = manifests[0]
    for path, m in zip(shards, manifests, strict=True):
        for key, what in (("dataset", "fingerprint"), ("dataset", "annotators_from"), ("model", "sha256"),
                          ("heatmaps", "flip_averaged")):
            if m[key].get(what) != first[key].get(what):
                raise InputError(f"another {key} than {shards[0]} ({what} differs)", path=path)
        for key in ("scheme", "scoring"):
            if m.get(key) != first.get(key):
                raise InputError(f"another {key} than {shards[0]}", path=path / "manifest.json", field=key)
    count = infos[0]["count"]
    order = sorted(range(len(shards)), key=lambda i: infos[i]["index"])
    indices = [infos[i]["index"] for i in order]
    if indices != list(range(count)) or any(info["count"] != count for info in infos):
        raise InputError(f"expected shards 0..{count - 1} of {count} exactly once, got {sorted(indices)}",
                         path=shards[0])
    scheme: LandmarkScheme = schemes[0]
    scoring = scoring or scorings[0]
    tables = [load_audit(shards[i]) for i in order]  # validated: a damaged shard is an InputError naming it
    stores = []
    for i, table in zip(order, tables, strict=True):
        if len(table.images) != infos[i]["faces"][1] - infos[i]["faces"][0]:
            raise InputError(f"images.parquet holds {len(table.images)} faces but the manifest's shard "
                             f"{infos[i]['faces']} says {infos[i]['faces'][1] - infos[i]['faces'][0]}",
                             path=shards[i] / "images.parquet")
        stores.append(_store_arrays(shards[i], len(table.images), scheme.num_points))
    sides = {store["windows.npy"].shape[2] for store in stores}
    if len(sides) > 1:
        raise InputError(f"the shards' heatmap windows differ in size ({sorted(sides)})", path=shards[0])
    started = time.perf_counter()
    with atomic_directory(out, carry=REVIEW_FILES) as tmp:
        (tmp / "heatmaps").mkdir()
        for name in _STORE:
            arrays = [store[name] for store in stores]
            shape = (sum(len(a) for a in arrays),) + arrays[0].shape[1:]
            with _NpyWriter(tmp / "heatmaps" / name, arrays[0].dtype, shape) as merged:
                for a in arrays:
                    for lo in range(0, len(a), 256):
                        merged.append(a[lo:lo + 256])
            del arrays
        del stores
        points = pd.concat([t.points for t in tables], ignore_index=True)
        images = pd.concat([t.images for t in tables], ignore_index=True)
        del tables
        points, images = score_points(points, images, scheme, scoring)
        copies = [_read_calibration(shards[i]) for i in order]
        if target_precision and all(c is not None for c in copies):
            points, images, scoring, calibration = calibrated(
                points, images, *(pd.concat([c[j] for c in copies], ignore_index=True) for j in range(3)), scheme,
                scoring, target_precision)
        else:
            calibration = uncalibrated(target_precision, NO_TARGET if not target_precision else
                                       "a shard was audited without calibration (--target-precision 0)")
        del copies
        team = audit_annotators(points, images, scheme, take_face_areas(images, points, scheme.num_points))
        seconds = sum(manifests[i]["timing"]["seconds"] for i in order) + time.perf_counter() - started
        dataset = dict(first["dataset"])
        for key in ("path", "images_root"):
            if dataset.get(key) is not None:
                dataset[key] = _relative(str(Path(shards[order[0]]) / dataset[key]), Path(out))
        manifest = dict(first, dataset=dataset, created_at=datetime.now(UTC).isoformat(timespec="seconds"), shard=None,
                        scoring=scoring.to_json(), scoring_fitted=_fitted(points), calibration=calibration,
                        **team.manifest, counts=_counts(points, images),
                        timing={"seconds": round(seconds, 2), "faces_per_second": round(len(images) / seconds, 2),
                                "device": first["timing"]["device"], "merged_from": len(shards)})
        _write_tables(tmp, points, images, manifest, team)
    return manifest
