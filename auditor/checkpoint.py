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
from auditor.model import LandmarkModel
from auditor.model.presets import config_from_json
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
    except Exception as e:  # a damaged archive or pickle surfaces as many exception types
        raise InputError(f"not a readable checkpoint ({type(e).__name__})", path=path) from None
    if not isinstance(payload, dict) or payload.get("format_version") != FORMAT_VERSION:
        raise InputError(f"not a landmark-auditor checkpoint (format {FORMAT_VERSION} expected)", path=path)
    for key in ("config", "scheme", "model", "state"):
        if not isinstance(payload.get(key), dict):
            raise InputError("a damaged checkpoint: expected a mapping", path=path, field=key)
    payload["path"] = str(path)
    return payload


def model_from_checkpoint(payload: dict[str, Any]) -> tuple[LandmarkModel, LandmarkScheme]:
    """The model (eval mode, on CPU) and scheme stored in a loaded checkpoint; an InputError naming the file when
    its config, scheme or weights do not fit together.

    The network is first built on the meta device (no memory), so a config asking for a huge network is refused by
    comparing its weight shapes with the file's before anything is allocated.
    """
    source = payload.get("path", "checkpoint")
    config = config_from_json(payload.get("config"), source=source)
    scheme = scheme_from_json(payload.get("scheme"), source=source, field="scheme")
    weights = payload.get("model")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise InputError("a damaged checkpoint: expected the weights as a mapping of tensors", path=source,
                         field="model")
    with torch.device("meta"):
        expected = {name: tuple(t.shape) for name, t in LandmarkModel(scheme.num_points, config).state_dict().items()}
    stored = {name: tuple(t.shape) for name, t in weights.items()}
    if stored != expected:
        differ = sorted(set(stored) ^ set(expected)) or sorted(n for n in expected if stored[n] != expected[n])
        raise InputError(f"the weights do not fit the stored config and scheme ({len(differ)} tensors differ, e.g. "
                         f"{differ[0]!r})", path=source, field="model")
    if not all(t.is_floating_point() or t.dtype == torch.int64 for t in weights.values()):
        raise InputError("a damaged checkpoint: weights of an unexpected type", path=source, field="model")
    model = LandmarkModel(scheme.num_points, config)
    model.load_state_dict(weights)
    return model.eval(), scheme
