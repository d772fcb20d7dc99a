"""Run a model over a dataset in batches: heatmaps, predictions, and the maps between image and heatmap pixels."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from auditor.augment import FaceCrops
from auditor.dataset import Dataset
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


def iterate_heatmaps(model: LandmarkModel, ds: Dataset, *, indices: np.ndarray | None = None, batch_size: int = 32,
                     device: str | torch.device = "cpu", workers: int = 0) -> Iterator[Batch]:
    """Model output for the faces at `indices` (all by default), un-augmented, in order, batch by batch."""
    crops = FaceCrops(ds, model.config)
    subset = np.arange(len(ds)) if indices is None else np.asarray(indices)
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(crops, subset.tolist()), batch_size=batch_size,
                                         shuffle=False, num_workers=workers)
    was_training = model.training
    model.eval()
    start = 0
    try:
        with torch.no_grad():
            for images, _, to_hm in loader:
                stacks, corrected = model(images.to(device))
                n = len(images)
                yield Batch(subset[start:start + n], stacks[:, -1].float(), corrected.float(), to_hm.numpy())
                start += n
    finally:
        model.train(was_training)


def predict(model: LandmarkModel, ds: Dataset, *, batch_size: int = 32, device: str | torch.device = "cpu",
            use_ghcu: bool = True) -> np.ndarray:
    """(N, K, 2) predicted landmarks in image pixels, decoded from the GHCU (or the last stack's) heatmaps."""
    out = np.full(ds.landmarks.shape, np.nan)
    for batch in iterate_heatmaps(model, ds, batch_size=batch_size, device=device):
        heatmaps = batch.ghcu_heatmaps if use_ghcu else batch.stack_heatmaps
        xy_hm, _ = decode(heatmaps.cpu())
        out[batch.index] = batch.to_image(xy_hm.double().numpy())
    return out
