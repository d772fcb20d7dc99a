import dataclasses
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


def _payload(scheme, **replace):
    model = LandmarkModel(19, get_preset("tiny"))
    payload = {"format_version": 1, "config": dataclasses.asdict(model.config), "scheme": scheme.to_json(),
               "model": model.state_dict(), "state": {}}
    payload.update(replace)
    return payload


@pytest.mark.parametrize(("change", "expected"), [
    (lambda p: p["config"].update(stacks="two"), "[config.stacks]: expected int, got str"),
    (lambda p: p["config"].update(colour="red"), "[config]: unknown field 'colour'"),
    (lambda p: p["config"].update(input_size=100_000), "[config.input_size]: input_size must be in [8, 1024]"),
    (lambda p: p["config"].update(channels=4096), "[config.channels]: channels must be in [1, 2048]"),
    (lambda p: p["config"].update(depth=2**63), "[config.depth]: depth must be in [1, 8]"),
    (lambda p: p["config"].update(heatmap_size=0), "[config.heatmap_size]: heatmap_size must be in [4, 256]"),
    (lambda p: p["config"].update(lr=-1.0), "[config.lr]: lr must be in"),
    (lambda p: p["scheme"].update(points=[{"name": 3}]), "[scheme.points[0]]: field 'name' has the wrong type"),
    (lambda p: p["scheme"].update(flip_pairs=[[0, 99]]), "[scheme]: scheme 'aflw_19': flip pair (0, 99)"),
    (lambda p: p["model"].pop(next(iter(p["model"]))), "[model]: the weights do not fit"),
    (lambda p: p["model"].update({next(iter(p["model"])): torch.zeros(3)}), "[model]: the weights do not fit"),
    (lambda p: p.update(state=[1, 2]), "[state]: a damaged checkpoint: expected a mapping"),
    (lambda p: p.update(config="cpu"), "[config]: a damaged checkpoint"),
])
def test_a_checkpoint_with_the_wrong_contents_names_the_file_and_field(tmp_path, change, expected):
    payload = _payload(BUILTIN_SCHEMES["aflw_19"])
    change(payload)
    torch.save(payload, tmp_path / "bad.pt")
    with pytest.raises(InputError) as e:
        model_from_checkpoint(load_checkpoint(tmp_path / "bad.pt"))
    assert str(e.value).startswith(str(tmp_path / "bad.pt") + " ") and expected in str(e.value), str(e.value)
