"""The Dataset: every face of an annotated image collection, in one scheme, whatever format it came from."""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from auditor.errors import InputError
from auditor.schemes import LandmarkScheme

VISIBLE, OCCLUDED, MISSING = 2, 1, 0  # COCO's `v` values, kept for every format
SAME_PERSON_IOU = 0.3  # two faces of one image whose boxes overlap this much (IoU) show the same person


@dataclass
class Dataset:
    """N faces: ids, image paths, landmarks (N, K, 2) in 0-based image pixels (NaN where missing), visibility (N, K),
    boxes (N, 4)."""

    root: Path
    image_ids: list[str]
    image_paths: list[Path]
    landmarks: np.ndarray
    visibility: np.ndarray
    scheme: LandmarkScheme
    boxes: np.ndarray | None = None  # x0, y0, x1, y1; NaN rows where a face has none
    attributes: np.ndarray | None = None  # (N, A) int, e.g. WFLW's pose/expression/... flags
    annotators: list[str] | None = None  # (N,) who labelled each face; None where the format names nobody
    source_format: str = ""
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.image_paths = [Path(p) for p in self.image_paths]
        self.landmarks = np.asarray(self.landmarks, dtype=np.float64).reshape(-1, self.scheme.num_points, 2)
        n, k = self.landmarks.shape[:2]
        self.visibility = np.asarray(self.visibility, dtype=np.int8).reshape(n, k)
        # a missing point has no position, whatever numbers a format put there: every user can rely on NaN
        self.landmarks = np.where((self.visibility == MISSING)[..., None], np.nan, self.landmarks)
        if len(self.image_ids) != n or len(self.image_paths) != n:
            raise ValueError(f"{n} faces but {len(self.image_ids)} ids and {len(self.image_paths)} image paths")
        if self.boxes is not None:
            self.boxes = np.asarray(self.boxes, dtype=np.float64).reshape(n, 4)
        if self.annotators is not None:
            self.annotators = [str(a) for a in self.annotators]
            if len(self.annotators) != n:
                raise ValueError(f"{n} faces but {len(self.annotators)} annotators")
        dupes = [i for i, c in Counter(self.image_ids).items() if c > 1]
        if dupes:
            raise InputError(f"duplicate image id '{dupes[0]}' ({len(dupes)} duplicated ids in all)", path=self.root)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def num_points(self) -> int:
        return self.scheme.num_points

    @property
    def labelled(self) -> np.ndarray:
        """(N, K) True where a point has a position (visible or occluded)."""
        return self.visibility != MISSING

    @property
    def num_images(self) -> int:
        return len(set(self.image_paths))

    def normaliser(self) -> np.ndarray:
        """(N,) the scheme's NME normaliser of each face in image pixels."""
        return self.scheme.normaliser(self.landmarks, self.boxes)

    def fingerprint(self) -> str:
        """sha256 (hex) of the face ids and human labels: another version of the labels gets another fingerprint."""
        digest = hashlib.sha256("\n".join(self.image_ids).encode())
        digest.update(np.ascontiguousarray(np.round(self.landmarks, 4), dtype="<f8").tobytes())
        return digest.hexdigest()

    def with_landmarks(self, landmarks: np.ndarray) -> Dataset:
        """A copy of this dataset holding other landmarks (N, K, 2), same faces and order."""
        return replace(self, landmarks=np.array(landmarks, dtype=np.float64), visibility=self.visibility.copy(),
                       skipped=list(self.skipped))

    def subset(self, index: np.ndarray | list[int]) -> Dataset:
        """The faces at `index`, in that order."""
        idx = np.asarray(index, dtype=np.int64)
        return replace(self, image_ids=[self.image_ids[i] for i in idx],
                       image_paths=[self.image_paths[i] for i in idx], landmarks=self.landmarks[idx],
                       visibility=self.visibility[idx], boxes=None if self.boxes is None else self.boxes[idx],
                       attributes=None if self.attributes is None else self.attributes[idx],
                       annotators=None if self.annotators is None else [self.annotators[i] for i in idx], skipped=[])

    def label_extents(self) -> np.ndarray:
        """(N, 4) x0, y0, x1, y1 of each face's labelled points; NaN rows where a face has none."""
        inside = self.labelled & np.isfinite(self.landmarks).all(axis=-1)
        low = np.where(inside[..., None], self.landmarks, np.inf).min(axis=1)
        high = np.where(inside[..., None], self.landmarks, -np.inf).max(axis=1)
        return np.where(inside.any(axis=1)[:, None], np.concatenate([low, high], axis=1), np.nan)

    def subjects(self) -> np.ndarray:
        """(N,) int64 subject of each face, 0..S-1 in order of first appearance: the faces of one person in one image.

        Two faces are one person when they are of the same image file (links resolved) and their boxes overlap with
        IoU >= SAME_PERSON_IOU; where either has no box, their label extents are compared instead. Faces of one
        annotator are never one subject (two persons of one image): overlapping pairs are joined best IoU first,
        skipping a join that would put two faces of one annotator in one subject. Without annotators, overlapping
        faces of one image are joined all the same (the same person labelled twice).
        """
        n = len(self)
        a, b = _same_image_pairs(self.image_paths)
        has_box = np.zeros(n, bool) if self.boxes is None else np.isfinite(self.boxes).all(axis=1)
        extents = self.label_extents()
        boxes = extents if self.boxes is None else self.boxes
        both = (has_box[a] & has_box[b])[:, None]
        iou = _iou(np.where(both, boxes[a], extents[a]), np.where(both, boxes[b], extents[b]))
        keep = iou >= SAME_PERSON_IOU
        a, b, iou = a[keep], b[keep], iou[keep]
        order = np.lexsort((b, a, -iou))
        who = None if self.annotators is None else np.unique(self.annotators, return_inverse=True)[1]
        parent = list(range(n))
        taken: dict[int, set[int]] = {}  # a subject's annotators, kept for subjects of more than one face

        def find(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for i, j in zip(a[order].tolist(), b[order].tolist(), strict=True):
            ri, rj = find(i), find(j)
            if ri == rj:
                continue
            if who is not None:
                si, sj = taken.pop(ri, {int(who[ri])}), taken.pop(rj, {int(who[rj])})
                if si & sj:
                    taken[ri], taken[rj] = si, sj
                    continue
                taken[ri] = si | sj
            parent[rj] = ri
        roots = np.fromiter((find(i) for i in range(n)), np.int64, n)
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        rank = np.empty(len(first), np.int64)
        rank[np.argsort(first)] = np.arange(len(first))
        return rank[inverse]

    def summary(self) -> dict:
        """Counts for `auditor info`: images, faces, annotators (faces per annotator), subjects (how many are labelled
        k times: {k: subjects}), points, scheme, invalid or missing points."""
        labelled = self.labelled
        finite = np.isfinite(self.landmarks).all(axis=-1)
        missing_images = sum(1 for p in set(self.image_paths) if not p.is_file())
        faces_per_subject = np.bincount(self.subjects())
        k, subjects = np.unique(faces_per_subject, return_counts=True)
        annotators = {} if self.annotators is None else dict(sorted(Counter(self.annotators).items()))
        return {
            "format": self.source_format,
            "root": str(self.root),
            "scheme": self.scheme.name,
            "images": self.num_images,
            "faces": len(self),
            "annotators": len(annotators),
            **({"faces_per_annotator": annotators} if self.annotators is not None else {}),
            "subjects": len(faces_per_subject),
            "labelled_k_times": {int(times): int(count) for times, count in zip(k, subjects, strict=True)},
            "points_per_face": self.num_points,
            "points": int(labelled.sum()),
            "missing_points": int((~labelled).sum()),
            "occluded_points": int((self.visibility == OCCLUDED).sum()),
            "invalid_points": int((labelled & ~finite).sum()),
            "faces_with_box": 0 if self.boxes is None else int(np.isfinite(self.boxes).all(axis=1).sum()),
            "missing_images": missing_images,
            "skipped_files": len(self.skipped),
        }


def _same_image_pairs(image_paths: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """(P,) and (P,) indices a < b of every two faces of the same image file (links resolved, each path once)."""
    names, of_name = np.unique([str(p) for p in image_paths], return_inverse=True)
    _, of_image = np.unique([os.path.realpath(p) for p in names], return_inverse=True)
    image = of_image[of_name]
    order = np.argsort(image, kind="stable")
    starts = np.flatnonzero(np.r_[True, image[order][1:] != image[order][:-1]])
    sizes = np.diff(np.r_[starts, len(order)])
    # each face of a group pairs with the faces after it in the group: m - 1 - r partners for the r-th of m
    rank = np.arange(len(order)) - np.repeat(starts, sizes)
    partners = np.repeat(sizes, sizes) - 1 - rank
    first = np.repeat(np.arange(len(order)), partners)
    second = first + 1 + np.arange(len(first)) - np.repeat(np.cumsum(partners) - partners, partners)
    return order[first], order[second]


def _iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """(P,) intersection over union of boxes (P, 4) x0, y0, x1, y1; 0 where the union is empty, NaN for a NaN box."""
    width = np.clip(np.minimum(box_a[:, 2], box_b[:, 2]) - np.maximum(box_a[:, 0], box_b[:, 0]), 0, None)
    height = np.clip(np.minimum(box_a[:, 3], box_b[:, 3]) - np.maximum(box_a[:, 1], box_b[:, 1]), 0, None)
    inter = width * height
    union = np.prod(box_a[:, 2:] - box_a[:, :2], axis=1) + np.prod(box_b[:, 2:] - box_b[:, :2], axis=1) - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / np.where(union > 0, union, 1), np.where(np.isnan(union), np.nan, 0.0))
