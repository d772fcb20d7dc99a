"""How precise a trained model is on real faces it never saw, under each way of reading it out.

    python benchmarks/model_precision.py --model W/faces_400/model.pt --trained-on W/faces_400/faces --truth W/truth

The faces of `--truth` (a dataset; real_faces.py's W/truth holds the 300-W labels before planting) that are not in
`--trained-on` (the dataset the model trained on) are held out; the model's NME against their labels (the scheme's
normaliser: outer eye corners for 300-W) is measured for each read-out, at no training cost:

- GHCU or last stack: the heatmaps the audit reads (the Global Heatmap Correction Unit's) or the hourglass's own;
- test-time flip: each face's heatmaps averaged with its mirror image's (the audit's default);
- test-time scale: the predictions of crops 0.9x, 1x and 1.1x the face square, averaged in image pixels.

The table gives the mean and median NME over labelled points, and the mean over crisp and over contour points;
the last line is `key=value` pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from auditor.augment import CropLoader, FaceCrops
from auditor.checkpoint import load_checkpoint, model_from_checkpoint
from auditor.dataset import Dataset
from auditor.geometry import apply_affine, invert_affine
from auditor.heatmaps import decode
from auditor.inference import model_heatmaps
from auditor.io import read_dataset

SCALES = (0.9, 1.0, 1.1)


def predictions(model: torch.nn.Module, ds: Dataset, *, scale: float, flip: bool, batch_size: int = 32
                ) -> dict[str, np.ndarray]:
    """The GHCU's and the last stack's predictions (N, K, 2), image px, from crops `scale` x the face square."""
    crops = FaceCrops(ds, model.config)
    crops.sides = crops.sides * scale
    permutation = ds.scheme.flip_permutation if flip else None
    out = {"ghcu": np.full(ds.landmarks.shape, np.nan), "stack": np.full(ds.landmarks.shape, np.nan)}
    start = 0
    model.eval()
    for images, _, to_hm in CropLoader(crops, batch_size=batch_size, shuffle=False, num_workers=0):
        stack, corrected = model_heatmaps(model, images, permutation)
        to_image = invert_affine(to_hm.numpy())
        for name, heat in (("ghcu", corrected), ("stack", stack)):
            xy, _ = decode(heat, model.config.sigma)
            out[name][start:start + len(images)] = apply_affine(to_image, xy.double().numpy())
        start += len(images)
    return out


def nme(pred: np.ndarray, ds: Dataset) -> np.ndarray:
    """(N, K) distance of each prediction from the labels over the face's normaliser; NaN where unlabelled."""
    error = np.linalg.norm(pred - ds.landmarks, axis=-1) / ds.normaliser()[:, None]
    return np.where(ds.labelled, error, np.nan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a checkpoint written by `auditor train`")
    parser.add_argument("--trained-on", type=Path, required=True, help="the dataset the model trained on")
    parser.add_argument("--truth", type=Path, required=True, help="the labels to measure against (a dataset)")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    model, _ = model_from_checkpoint(load_checkpoint(args.model))
    seen = set(read_dataset(args.trained_on).image_ids)
    truth = read_dataset(args.truth)
    held = np.array([i not in seen for i in truth.image_ids])
    if not held.any():
        sys.exit(f"every face of {args.truth} is in {args.trained_on}: nothing is held out")
    ds = truth.subset(np.flatnonzero(held))
    contour = ds.scheme.contour_mask
    started = time.perf_counter()
    runs = {(scale, flip): predictions(model, ds, scale=scale, flip=flip) for scale in SCALES for flip in (False, True)}
    rows = []
    for heads in ("ghcu", "stack"):
        for flip in (False, True):
            for scales in ((1.0,), SCALES):
                pred = np.mean([runs[(s, flip)][heads] for s in scales], axis=0)
                error = nme(pred, ds)
                rows.append((heads, flip, len(scales) > 1, np.nanmean(error), np.nanmedian(error),
                             np.nanmean(error[:, ~contour]), np.nanmean(error[:, contour])))
    print(f"{args.model}: {len(ds)} held-out faces ({len(truth) - len(ds)} trained on), "
          f"{time.perf_counter() - started:.0f} s")
    print(f"{'heatmaps':<8} {'flip':<5} {'scales':<11} {'mean':>7} {'median':>7} {'crisp':>7} {'contour':>7}")
    for heads, flip, multi, mean, median, crisp, along in rows:
        scales = "0.9/1/1.1" if multi else "1"
        print(f"{heads:<8} {'yes' if flip else 'no':<5} {scales:<11} {mean:>7.4f} {median:>7.4f} {crisp:>7.4f} "
              f"{along:>7.4f}")
    print(" ".join(f"{heads}{'_flip' if flip else ''}{'_scales' if multi else ''}_nme={mean:.4f}"
                   for heads, flip, multi, mean, *_ in rows))


if __name__ == "__main__":
    main()
