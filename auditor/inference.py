"""Run a model over a dataset in batches: heatmaps, predictions, and the maps between image and heatmap pixels."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from auditor.augment import CropLoader, FaceCrops
from auditor.dataset import Dataset
from auditor.folds import FoldModels
from auditor.geometry import apply_affine, invert_affine
from auditor.heatmaps import decode
from auditor.model import LandmarkModel


@dataclass(frozen=True)
class Batch:
    """One batch of model output: face indices (B,), last-stack and GHCU heatmaps (B, K, R, R), affines (B, 3, 3)."""

    index: np.ndarray
    stack_heatmaps: torch.Tensor
    ghcu_heatmaps: torch.Tensor
    to_heatmap: np.ndarray

    def to_image(self, xy_hm: np.ndarray) -> np.ndarray:
        """Heatmap positions (B, K, 2) -> image pixels (B, K, 2)."""
        return apply_affine(invert_affine(self.to_heatmap), xy_hm)


@torch.no_grad()
def model_heatmaps(model: LandmarkModel | FoldModels, images: torch.Tensor, flip: np.ndarray | None = None,
                   index: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Last-stack and GHCU heatmaps (B, K, R, R), float32, of crops (B, 3, S, S); with `flip` (the scheme's (K,)
    flip permutation), each the mean of the crop's heatmaps and its mirror image's, mirrored back. Fold models
    need the faces' dataset `index` (B,) to route each crop to the model that did not train on it."""
    if isinstance(model, FoldModels):
        model = functools.partial(model, index=index)
    stacks, corrected = model(images)
    stack, corrected = stacks[:, -1].float(), corrected.float()
    if flip is None:
        return stack, corrected
    perm = torch.tensor(np.asarray(flip), dtype=torch.long, device=images.device)
    mirrored_stacks, mirrored = model(images.flip(-1))
    # crop and heatmap pixels share centres, so x -> S - 1 - x in the crop is x -> R - 1 - x in the map
    stack = 0.5 * (stack + mirrored_stacks[:, -1].float().flip(-1)[:, perm])
    return stack, 0.5 * (corrected + mirrored.float().flip(-1)[:, perm])


def iterate_heatmaps(model: LandmarkModel | FoldModels, ds: Dataset, *, indices: np.ndarray | None = None,
                     batch_size: int = 32, device: str | torch.device = "cpu", workers: int = 0, flip: bool = False
                     ) -> Iterator[Batch]:
    """Model output for the faces at `indices` (all by default), un-augmented, in order, batch by batch; `flip`
    averages each face's heatmaps with its mirror image's (test-time flip, through the scheme's flip pairs)."""
    permutation = ds.scheme.flip_permutation if flip else None
    crops = FaceCrops(ds, model.config)
    subset = np.arange(len(ds)) if indices is None else np.asarray(indices)
    loader = CropLoader(torch.utils.data.Subset(crops, subset.tolist()), batch_size=batch_size, shuffle=False,
                        num_workers=workers)
    was_training = model.training
    model.eval()
    start = 0
    try:
        with torch.no_grad():
            for images, _, to_hm in loader:
                n = len(images)
                stack, corrected = model_heatmaps(model, images.to(device), permutation, subset[start:start + n])
                yield Batch(subset[start:start + n], stack, corrected, to_hm.numpy())
                start += n
    finally:
        model.train(was_training)


def predict(model: LandmarkModel, ds: Dataset, *, batch_size: int = 32, device: str | torch.device = "cpu",
            use_ghcu: bool = True, flip: bool = False) -> np.ndarray:
    """(N, K, 2) predicted landmarks in image pixels, decoded from the GHCU (or the last stack's) heatmaps."""
    out = np.full(ds.landmarks.shape, np.nan)
    for batch in iterate_heatmaps(model, ds, batch_size=batch_size, device=device, flip=flip):
        heatmaps = batch.ghcu_heatmaps if use_ghcu else batch.stack_heatmaps
        xy_hm, _ = decode(heatmaps.cpu(), model.config.sigma)
        out[batch.index] = batch.to_image(xy_hm.double().numpy())
    return out
