"""Small shared test helpers: tiny real images, synthetic datasets, and dataset comparison."""

from __future__ import annotations

import contextlib
import functools
import io
import math
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from auditor.dataset import VISIBLE, Dataset
from auditor.io import face_ids
from auditor.schemes import get_scheme

LFPW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfpw"


def ridge(size: int, centre: tuple[float, float], angle: float, *, sigma_along: float = 1e3, sigma: float = 1.5,
          dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """(R, R) Gaussian elongated along `angle` (from +x towards +y) through `centre`, peak 1; with the default
    `sigma_along` a flat hat (a ridge)."""
    r = torch.arange(size, dtype=dtype)
    dx, dy = r[None, :] - centre[0], r[:, None] - centre[1]
    along = math.cos(angle) * dx + math.sin(angle) * dy
    across = -math.sin(angle) * dx + math.cos(angle) * dy
    return torch.exp(-(along**2) / (2 * sigma_along**2) - across**2 / (2 * sigma**2))


@functools.cache
def png_bytes(size: int = 8) -> bytes:
    """A real size x size grey PNG."""
    buffer = io.BytesIO()
    Image.new("L", (size, size), 128).save(buffer, format="PNG")
    return buffer.getvalue()


def write_image(path: Path, size: int = 8) -> Path:
    """Write a tiny real PNG at `path` (whatever its suffix), making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(size))
    return path


def make_dataset(root: Path, face_rels: list[str], *, scheme: str = "aflw_19", seed: int = 0,
                 landmarks: np.ndarray | None = None, visibility: np.ndarray | None = None,
                 boxes: np.ndarray | None = None, attributes: np.ndarray | None = None, pts_ids: bool = False,
                 annotators: list[str] | None = None) -> Dataset:
    """A dataset with one face per entry of `face_rels` (its image `root/rel`, written if absent).

    Ids follow the readers' convention (path without suffix, `#i` for several faces of one image, `annotator/` first
    with `annotators`), or with `pts_ids` the .pts one (`stem_NN`). Landmarks are random unless given; missing points
    (visibility 0) become NaN.
    """
    s = get_scheme(scheme)
    for rel in set(face_rels):
        if not (root / rel).is_file():
            write_image(root / rel)
    ids = face_ids(face_rels, annotators)
    if pts_ids:
        ids = [i.replace("#", "_0") for i in ids]
    n = len(face_rels)
    if landmarks is None:
        landmarks = np.random.default_rng(seed).uniform(-10, 200, (n, s.num_points, 2))
    if visibility is None:
        visibility = np.full((n, s.num_points), VISIBLE, dtype=np.int8)
    landmarks = np.where(visibility[..., None] == 0, np.nan, landmarks)
    return Dataset(root, ids, [root / r for r in face_rels], landmarks, visibility, s, boxes=boxes,
                   attributes=attributes, annotators=annotators)


IMAGE_RELS = ("img0.png", "sub/img1.png", "sub/deep/img 2.jpg", "a,b'c.png")
_COORD = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
ANNOTATOR_NAMES = ("alice", "Bob Lee", "x,y'z", "zoë", "7")


@st.composite
def face_sets(draw: st.DrawFn, *, rels: tuple[str, ...] = IMAGE_RELS, visibility: bool = True,
              boxes: bool = True, attributes: bool = False, annotators: bool = False) -> dict:
    """Keyword arguments of `make_dataset` for a small random dataset: 1-5 faces on up to 4 images, any built-in
    scheme, coordinates anywhere in +-1e4 px, optional visibility 0/1/2, boxes (some rows NaN), attributes and
    annotators (from ANNOTATOR_NAMES)."""
    scheme = draw(st.sampled_from(["aflw_19", "cofw_29", "300w_68", "wflw_98"]))
    k = get_scheme(scheme).num_points
    face_rels = draw(st.lists(st.sampled_from(rels), min_size=1, max_size=5))
    n = len(face_rels)
    kwargs = {"face_rels": face_rels, "scheme": scheme,
              "landmarks": draw(arrays(np.float64, (n, k, 2), elements=_COORD))}
    if visibility:
        kwargs["visibility"] = draw(arrays(np.int8, (n, k), elements=st.sampled_from([0, 1, 2])))
    if boxes and draw(st.booleans()):
        corner = draw(arrays(np.float64, (n, 2), elements=_COORD))
        size = draw(arrays(np.float64, (n, 2), elements=st.floats(0, 1e3)))
        no_box = draw(arrays(np.bool_, n))
        kwargs["boxes"] = np.where(no_box[:, None], np.nan, np.concatenate([corner, corner + size], axis=1))
    if attributes:
        kwargs["attributes"] = draw(arrays(np.int64, (n, 6), elements=st.integers(0, 1)))
    if annotators:
        kwargs["annotators"] = draw(st.lists(st.sampled_from(ANNOTATOR_NAMES), min_size=n, max_size=n))
    return kwargs


def assert_same_faces(expected: Dataset, actual: Dataset, *, boxes: bool = True, ids: bool = True) -> None:
    """Same faces: ids, image files, landmarks (to 1e-9 px), visibility, scheme points and, with `boxes`, the boxes
    `expected` has."""
    if ids:
        assert actual.image_ids == expected.image_ids
    assert [p.resolve() for p in actual.image_paths] == [p.resolve() for p in expected.image_paths]
    assert actual.scheme.point_names == expected.scheme.point_names
    np.testing.assert_allclose(actual.landmarks, expected.landmarks, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(actual.visibility, expected.visibility)
    rows = np.zeros(len(expected), bool) if expected.boxes is None else np.isfinite(expected.boxes).all(axis=1)
    if boxes and rows.any():
        assert actual.boxes is not None
        np.testing.assert_allclose(actual.boxes[rows], expected.boxes[rows], rtol=0, atol=1e-9)


def run_auditor(*args: object) -> subprocess.CompletedProcess:
    """Run the `auditor` command in this process (no interpreter start-up): its exit code, stdout and stderr, as
    `subprocess.run` would give them; an exception escaping `main()` fails the calling test."""
    from auditor.cli import main

    argv, handler = sys.argv, signal.getsignal(signal.SIGTERM)
    out, err = io.StringIO(), io.StringIO()
    sys.argv = ["auditor", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        sys.argv = argv
        signal.signal(signal.SIGTERM, handler)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())
