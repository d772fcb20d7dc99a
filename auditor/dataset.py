"""The Dataset: every face of an annotated image collection, in one scheme, whatever format it came from."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from auditor.errors import InputError
from auditor.schemes import LandmarkScheme

VISIBLE, OCCLUDED, MISSING = 2, 1, 0  # COCO's `v` values, kept for every format


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

    def summary(self) -> dict:
        """Counts for `auditor info`: images, faces, points, scheme, invalid or missing points."""
        labelled = self.labelled
        finite = np.isfinite(self.landmarks).all(axis=-1)
        missing_images = sum(1 for p in set(self.image_paths) if not p.is_file())
        return {
            "format": self.source_format,
            "root": str(self.root),
            "scheme": self.scheme.name,
            "images": self.num_images,
            "faces": len(self),
            "points_per_face": self.num_points,
            "points": int(labelled.sum()),
            "missing_points": int((~labelled).sum()),
            "occluded_points": int((self.visibility == OCCLUDED).sum()),
            "invalid_points": int((labelled & ~finite).sum()),
            "faces_with_box": 0 if self.boxes is None else int(np.isfinite(self.boxes).all(axis=1).sum()),
            "missing_images": missing_images,
            "skipped_files": len(self.skipped),
        }
