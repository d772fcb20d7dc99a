"""Checkpoints: one file with config, scheme, weights, optimiser state, per-round targets and history.

Only tensors, numbers, strings, lists and dicts go in, so `torch.load(weights_only=True)` reads it
and a file from a stranger cannot run code on load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from auditor.atomic import atomic_open
from auditor.errors import InputError
from auditor.model import Config, LandmarkModel
from auditor.schemes import LandmarkScheme, scheme_from_json

FORMAT_VERSION = 1


def dataset_fingerprint(image_ids: list[str]) -> str:
    """A short hash of the face ids, to tell whether a checkpoint was trained on this dataset."""
    return hashlib.sha256("\n".join(image_ids).encode()).hexdigest()[:16]


def save_checkpoint(path: str | Path, *, model: LandmarkModel, scheme: LandmarkScheme, state: dict[str, Any]) -> None:
    """Write a checkpoint atomically; `state` holds the training state (stage, round, epoch, targets, history...)."""
    payload = {
        "format_version": FORMAT_VERSION,
        "config": dataclasses.asdict(model.config),
        "scheme": scheme.to_json(),
        "model": model.state_dict(),
        "state": state,
    }
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, *, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, loaded with weights_only=True; an InputError for a missing, foreign or unsafe file."""
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path=path)
    if not zipfile.is_zipfile(path):
        raise InputError("not a readable checkpoint (expected the zip archive torch.save writes)", path=path)
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"refusing to load: the file holds objects other than weights ({first[:160]})",
                         path=path) from None
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise InputError(f"not a readable checkpoint ({type(e).__name__})", path=path) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise InputError(f"not a landmark-auditor checkpoint (format {FORMAT_VERSION} expected)", path=path)
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[LandmarkModel, LandmarkScheme]:
    """The model (eval mode, on CPU) and scheme stored in a loaded checkpoint."""
    config = Config(**payload["config"])
    scheme = scheme_from_json(payload["scheme"], source="checkpoint scheme")
    model = LandmarkModel(scheme.num_points, config)
    model.load_state_dict(payload["model"])
    return model.eval(), scheme
