"""Training and inference crops: a square face crop per face, randomly posed when augmenting.

The crop square comes from the face box when the dataset has one, else from the human labels,
and never from the targets being trained on, so every round of training and search sees the
same crops.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageFilter
from torch.utils.data import default_collate

from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.geometry import apply_affine, crop_affine, face_box, rescale_affine, square_crop, warp_image
from auditor.model.presets import Config

MEAN = np.array([0.5, 0.5, 0.5], dtype=np.float32)
STD = np.array([0.25, 0.25, 0.25], dtype=np.float32)


def face_squares(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Crop centres (N, 2) and sides (N,) of every face: its box where it has one, else its labels' extent."""
    boxes = face_box(ds.landmarks)
    if ds.boxes is not None:
        has_box = np.isfinite(ds.boxes).all(axis=1)
        boxes = np.where(has_box[:, None], ds.boxes, boxes)
    return square_crop(boxes)


def load_image(path) -> Image.Image:
    """An RGB PIL image, or an InputError naming the file (PIL's decoders raise many types for a damaged file, and
    an image beyond PIL's decompression-bomb limit is refused rather than warned about)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                return im.convert("RGB")
    except Exception as e:  # the file is untrusted input: any failure to decode it is the user's to fix
        reason = " ".join(str(e).split())[:160] or type(e).__name__
        raise InputError(f"cannot read the image: {reason}", path=path) from None


class _Caught(torch.utils.data.Dataset):
    """The items of `crops`, or the InputError loading one raised, returned rather than raised: a worker process's
    exception reaches the caller wrapped in the worker's traceback."""

    def __init__(self, crops: torch.utils.data.Dataset) -> None:
        self.crops = crops

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, i: int) -> object:
        try:
            return self.crops[i]
        except InputError as e:
            return e


def _collate(items: list) -> object:
    return next((item for item in items if isinstance(item, InputError)), None) or default_collate(items)


class CropLoader(torch.utils.data.DataLoader):
    """A DataLoader of face crops (`FaceCrops` or a Subset of it) that raises a bad image's one-line InputError
    whether the crop was loaded in this process or in a worker."""

    def __init__(self, crops: torch.utils.data.Dataset, **kwargs: object) -> None:
        super().__init__(_Caught(crops), collate_fn=_collate, **kwargs)

    def __iter__(self) -> Iterator:
        for batch in super().__iter__():
            if isinstance(batch, InputError):
                raise batch
            yield batch


def to_tensor(crop: np.ndarray) -> torch.Tensor:
    """(S, S, 3) uint8 -> normalised (3, S, S) float32."""
    return torch.from_numpy(((crop.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1).copy())


class FaceCrops(torch.utils.data.Dataset):
    """Item i: image crop (3, S, S), targets (K, 2) in heatmap px (NaN where missing), image->heatmap affine (3, 3)."""

    def __init__(self, ds: Dataset, config: Config, targets: np.ndarray | None = None, *, augment: bool = False,
                 seed: int = 0) -> None:
        self.ds, self.config, self.augment, self.seed = ds, config, augment, seed
        self.targets = ds.landmarks if targets is None else np.asarray(targets, dtype=np.float64)
        self.targets = np.where(ds.labelled[..., None], self.targets, np.nan)
        self.centres, self.sides = face_squares(ds)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.ds)

    def set_epoch(self, epoch: int) -> None:
        """Draw a fresh augmentation for every epoch, reproducibly."""
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c = self.config
        centre, side, angle, flip = self.centres[i].copy(), float(self.sides[i]), 0.0, False
        rng = np.random.default_rng((self.seed, self.epoch, i)) if self.augment else None
        if rng is not None:
            angle = np.deg2rad(rng.uniform(-c.rotate_deg, c.rotate_deg))
            side *= float(np.exp(rng.uniform(-c.scale_jitter, c.scale_jitter)))
            centre += rng.uniform(-c.shift_jitter, c.shift_jitter, size=2) * side
            flip = bool(c.flip and rng.random() < 0.5)
        to_crop = crop_affine(centre, np.array([side]), c.input_size, angle)[0]
        if flip:
            to_crop = np.array([[-1.0, 0.0, c.input_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ to_crop
        image = load_image(self.ds.image_paths[i])
        if rng is not None and rng.random() < c.blur:
            image = image.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 1.5)) * side / c.input_size))
        crop = warp_image(image, to_crop, c.input_size)
        if rng is not None and c.colour_jitter > 0:
            gain = 1 + rng.uniform(-c.colour_jitter, c.colour_jitter, size=3)
            bias = rng.uniform(-c.colour_jitter, c.colour_jitter) * 64
            crop = np.clip(crop.astype(np.float32) * gain + bias, 0, 255).astype(np.uint8)
        to_hm = rescale_affine(c.input_size, c.heatmap_size) @ to_crop
        targets = apply_affine(to_hm, self.targets[i])
        if flip:
            targets = targets[self.ds.scheme.flip_permutation]
        return to_tensor(crop), torch.from_numpy(targets.astype(np.float32)), torch.from_numpy(to_hm)
