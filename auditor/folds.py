"""Out-of-fold auditing: k models, each trained without one fold of the faces, each auditing that fold.

A model that trained on a wrong label has partly learnt it, so its heatmap vouches for the label it should
doubt. With `auditor train --folds k` every face is audited by a model that never saw it, as cleanlab's
out-of-sample predicted probabilities are (docs/method.md). A face's fold is a hash of its image's path
relative to the dataset root, so the faces of one image (several persons, several annotators) share a fold,
and the same image falls in the same fold whichever dataset file or folder lists it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auditor.checkpoint import load_checkpoint, model_from_checkpoint
from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.io import relative_image_path
from auditor.model import LandmarkModel
from auditor.model.presets import Config
from auditor.schemes import LandmarkScheme

MAX_FOLDS = 20
_FOLD_FILE = re.compile(r"fold-(\d+)-of-(\d+)\.pt")


def fold_of(ds: Dataset, count: int) -> np.ndarray:
    """(N,) int64 in 0..count-1: each face's fold, from a sha256 of its image path relative to the root."""
    folds = np.empty(len(ds), dtype=np.int64)
    for i in range(len(ds)):
        digest = hashlib.sha256(relative_image_path(ds, i).as_posix().encode()).digest()
        folds[i] = int.from_bytes(digest[:8], "big") % count
    return folds


def fold_path(folder: Path, index: int, count: int) -> Path:
    """The checkpoint of fold `index` (0-based) of `count` in `folder`: fold-<index+1>-of-<count>.pt."""
    return Path(folder) / f"fold-{index + 1}-of-{count}.pt"


def check_count(count: int) -> None:
    """An InputError unless 2 <= count <= MAX_FOLDS."""
    if not 2 <= count <= MAX_FOLDS:
        raise InputError(f"--folds must be between 2 and {MAX_FOLDS}, got {count}", field="--folds")


def train_folds(ds: Dataset, config: Config, out: Path, *, count: int, device: str | torch.device = "cpu",
                resume: bool = False, log: Callable[[str], None] = print) -> list[Path]:
    """Train `count` models into the folder `out`, model i on the faces outside fold i; return their checkpoints.

    With `resume`, finished folds are kept, an interrupted one continues and the rest start.
    """
    from auditor.train import train

    check_count(count)
    folds = fold_of(ds, count)
    paths = []
    for index in range(count):
        path = fold_path(out, index, count)
        inside = np.flatnonzero(folds != index)
        if len(inside) == 0 or len(inside) == len(ds):
            raise InputError(f"fold {index + 1} of {count} leaves {'no' if len(inside) == 0 else 'every'} face to "
                             f"train on: too few images for {count} folds", field="--folds")
        finished = resume and path.is_file() and load_checkpoint(path)["state"].get("stage") == "done"
        if finished:
            log(f"fold {index + 1}/{count}: finished earlier, kept")
        else:
            log(f"fold {index + 1}/{count}: training on {len(inside)} faces, auditing {len(ds) - len(inside)}")
            out.mkdir(parents=True, exist_ok=True)
            train(ds.subset(inside), config, path, device=device, resume=resume and path.is_file(), log=log,
                  fold=(index, count))
        paths.append(path)
    return paths


class FoldModels(torch.nn.Module):
    """k models of one config and scheme, and the fold (N,) of every face of the dataset being audited: the
    heatmaps of a face come from the model of its fold, which did not train on it."""

    def __init__(self, models: list[LandmarkModel], folds: np.ndarray) -> None:
        super().__init__()
        self.models = torch.nn.ModuleList(models)
        self.folds = np.asarray(folds, dtype=np.int64)

    @property
    def config(self) -> Config:
        return self.models[0].config

    def forward(self, images: torch.Tensor, index: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Every stack's heatmaps (B, S, K, R, R) and the GHCU's (B, K, R, R) of crops (B, 3, H, W) of the
        dataset's faces at `index` (B,), each from its fold's model."""
        fold = torch.as_tensor(self.folds[np.asarray(index)], device=images.device)
        stacks = corrected = None
        for f in torch.unique(fold).tolist():
            rows = torch.nonzero(fold == f).flatten()
            s, c = self.models[f](images[rows])
            if stacks is None:
                stacks = s.new_zeros((len(images), *s.shape[1:]))
                corrected = c.new_zeros((len(images), *c.shape[1:]))
            stacks[rows], corrected[rows] = s, c
        return stacks, corrected


def is_fold_folder(path: Path) -> bool:
    """Whether `path` is a folder of `auditor train --folds` checkpoints."""
    return Path(path).is_dir() and any(_FOLD_FILE.fullmatch(p.name) for p in Path(path).iterdir())


def load_fold_models(folder: Path, ds: Dataset) -> tuple[FoldModels, LandmarkScheme, list[dict[str, Any]]]:
    """The fold models in `folder` routed over `ds`'s faces, their scheme, and the loaded checkpoints; an
    InputError naming the folder when a fold is missing, unfinished, or of another config or scheme."""
    folder = Path(folder)
    counts = {int(m.group(2)) for p in folder.iterdir() if (m := _FOLD_FILE.fullmatch(p.name))}
    if len(counts) != 1:
        raise InputError(f"expected the checkpoints of one `auditor train --folds k` run, found fold files of "
                         f"{len(counts)} runs ({sorted(counts)} folds)", path=folder)
    count = counts.pop()
    check_count(count)
    payloads, models, scheme = [], [], None
    for index in range(count):
        path = fold_path(folder, index, count)
        if not path.is_file():
            raise InputError(f"fold {index + 1} of {count} is missing (train it with --resume)", path=path)
        payload = load_checkpoint(path)
        if payload["state"].get("stage") != "done":
            raise InputError("an unfinished fold: continue its training with `auditor train --folds "
                             f"{count} --resume`", path=path)
        if payload["state"].get("fold") != [index, count]:  # torch.load gives back the list train() stored
            raise InputError(f"not fold {index + 1} of {count} of a --folds training", path=path)
        model, fold_scheme = model_from_checkpoint(payload)
        if models and (model.config != models[0].config or fold_scheme.to_json() != scheme.to_json()):
            raise InputError(f"another model config or scheme than {fold_path(folder, 0, count).name}", path=path)
        payloads.append(payload)
        models.append(model)
        scheme = fold_scheme
    return FoldModels(models, fold_of(ds, count)).eval(), scheme, payloads
