import numpy as np
import torch

from auditor.augment import FaceCrops
from auditor.inference import iterate_heatmaps, model_heatmaps
from auditor.io import read_dataset
from auditor.model import LandmarkModel, get_preset
from auditor.schemes import get_scheme
from auditor.synth import generate


def mirrored(heatmaps: torch.Tensor, flip: np.ndarray) -> torch.Tensor:
    return heatmaps.flip(-1)[:, torch.tensor(flip)]


def test_flip_averaged_heatmaps_mirror_with_the_face():
    """Averaged with the mirror image's, the heatmaps of a mirrored crop are the mirrored heatmaps, channels
    exchanged by the flip pairs; a random network alone is far from that."""
    flip = get_scheme("300w").flip_permutation
    config = get_preset("tiny")
    torch.manual_seed(0)
    model = LandmarkModel(len(flip), config).eval()
    images = torch.rand(2, 3, config.input_size, config.input_size)
    for plain, averaged in zip(model_heatmaps(model, images.flip(-1), flip), model_heatmaps(model, images, flip),
                               strict=True):
        torch.testing.assert_close(plain, mirrored(averaged, flip), atol=1e-5, rtol=1e-4)
    stack, _ = model_heatmaps(model, images)
    stack_of_mirror, _ = model_heatmaps(model, images.flip(-1))
    assert (stack_of_mirror - mirrored(stack, flip)).abs().max() > 100 * 1e-5


def test_iterate_heatmaps_flips_through_the_datasets_scheme(tmp_path):
    generate(tmp_path / "syn", n=3, seed=4, size=96)
    ds = read_dataset(tmp_path / "syn" / "faces")
    torch.manual_seed(1)
    model = LandmarkModel(ds.num_points, get_preset("tiny"))
    plain = next(iterate_heatmaps(model, ds, batch_size=3))
    both = next(iterate_heatmaps(model, ds, batch_size=3, flip=True))
    assert model.training  # left as it was
    np.testing.assert_array_equal(plain.to_heatmap, both.to_heatmap)
    crops = torch.stack([FaceCrops(ds, model.config)[i][0] for i in range(3)])
    stack, ghcu = model_heatmaps(model.eval(), crops, ds.scheme.flip_permutation)
    torch.testing.assert_close(both.stack_heatmaps, stack)
    torch.testing.assert_close(both.ghcu_heatmaps, ghcu)
    assert not torch.allclose(plain.ghcu_heatmaps, both.ghcu_heatmaps, atol=1e-4)
