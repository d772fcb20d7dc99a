import os

import pytest
import torch

from auditor.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from auditor.errors import InputError
from auditor.model import LandmarkModel, get_preset
from auditor.schemes import BUILTIN_SCHEMES


def test_round_trip(tmp_path):
    scheme = BUILTIN_SCHEMES["aflw_19"]
    model = LandmarkModel(19, get_preset("tiny"))
    state = {"stage": "done", "targets": [torch.zeros(3, 19, 2)], "history": [{"loss": 0.5}], "image_ids": ["a"]}
    save_checkpoint(tmp_path / "m.pt", model=model, scheme=scheme, state=state)
    payload = load_checkpoint(tmp_path / "m.pt")
    loaded, loaded_scheme = model_from_checkpoint(payload)
    assert loaded_scheme == scheme and loaded.config == model.config
    for a, b in zip(model.state_dict().values(), loaded.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    assert payload["state"]["history"] == [{"loss": 0.5}]


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_a_pickle_with_code_is_refused(tmp_path):
    marker = str(tmp_path / "pwned")
    torch.save({"format_version": 1, "model": _Payload(marker)}, tmp_path / "evil.pt")
    with pytest.raises(InputError, match="refusing to load") as e:
        load_checkpoint(tmp_path / "evil.pt")
    assert "evil.pt" in str(e.value) and not os.path.exists(marker)


def test_foreign_and_missing_files(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="not a landmark-auditor checkpoint"):
        load_checkpoint(tmp_path / "other.pt")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "none.pt")
