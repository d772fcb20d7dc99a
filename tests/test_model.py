import pytest
import torch

from auditor.errors import InputError
from auditor.model import GHCU, PRESETS, LandmarkModel, get_preset
from auditor.model.presets import parse_overrides


@pytest.mark.parametrize("name", ["tiny", "cpu", pytest.param("paper", marks=pytest.mark.slow)])
def test_every_preset_runs_forward_and_backward(name):
    config = get_preset(name)
    model = LandmarkModel(19, config)
    images = torch.randn(2, 3, config.input_size, config.input_size)
    stacks, corrected = model(images)
    r = config.heatmap_size
    assert stacks.shape == (2, config.stacks, 19, r, r) and corrected.shape == (2, 19, r, r)
    (stacks.square().mean() + corrected.square().mean()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"parameters without gradient: {missing[:5]}"


def test_ghcu_sees_the_whole_face_and_starts_near_identity():
    ghcu = GHCU(5, channels=8, heatmap_size=64).eval()
    x = torch.zeros(1, 5, 64, 64, requires_grad=True)
    out = ghcu(x)
    out[0, 0, 63, 63].backward()
    assert x.grad[0, :, 0, 0].abs().sum() > 0  # the far corner reaches the opposite corner
    with torch.no_grad():
        maps = torch.rand(1, 5, 64, 64)
        assert (ghcu(maps) - maps).abs().mean() < 0.05 * maps.abs().mean()


def test_presets_and_overrides():
    assert set(PRESETS) == {"paper", "cpu", "tiny"}
    paper, cpu = PRESETS["paper"], PRESETS["cpu"]
    assert (paper.stacks, paper.channels, paper.input_size, paper.heatmap_size) == (4, 256, 256, 64)
    assert (cpu.stacks, cpu.channels, cpu.input_size, cpu.heatmap_size) == (2, 64, 128, 64)
    c = get_preset("cpu", **parse_overrides(["stacks=1", "lr=0.01", "flip=false"]))
    assert (c.stacks, c.lr, c.flip) == (1, 0.01, False)
    with pytest.raises(InputError, match="unknown config field 'stack'"):
        get_preset("cpu", stack="1")
    with pytest.raises(InputError, match="expected a int for 'stacks'"):
        get_preset("cpu", stacks="two")
    with pytest.raises(InputError, match="FIELD=VALUE"):
        parse_overrides(["stacks"])
    with pytest.raises(InputError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(InputError, match="input_size"):
        get_preset("cpu", input_size="96")


def test_round_0_and_ghcu_epochs_grow_on_a_small_dataset():
    cpu = PRESETS["cpu"]
    assert cpu.for_dataset(600) is cpu and cpu.for_dataset(10_000) is cpu  # 600 x 30 = 18,000 crops already
    assert cpu.for_dataset(160).epochs == 113 and cpu.for_dataset(160).min_images == cpu.min_images
    assert cpu.for_dataset(160).ghcu_epochs == 113 and cpu.for_dataset(400).ghcu_epochs == 45
    assert cpu.for_dataset(160).round_epochs == cpu.round_epochs  # the rounds fine-tune: not raised
    assert get_preset("cpu", ghcu_epochs=200).for_dataset(160).ghcu_epochs == 200  # never lowered
    assert cpu.for_dataset(160).for_dataset(160) == cpu.for_dataset(160)
    assert PRESETS["paper"].for_dataset(10) is PRESETS["paper"]  # min_images 0: epochs as given
    with pytest.raises(InputError, match="min_images"):
        get_preset("cpu", min_images="-1")
