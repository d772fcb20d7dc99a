import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

from auditor.audit import run_audit
from auditor.checkpoint import load_checkpoint, model_from_checkpoint
from auditor.errors import InputError
from auditor.folds import FoldModels, fold_of, fold_path, load_fold_models, train_folds
from auditor.inference import model_heatmaps
from auditor.io import read_dataset
from auditor.model import get_preset
from auditor.synth import generate

TINY = dict(epochs=1, rounds=0, ghcu_epochs=1, batch_size=4, min_images=0)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Six synthetic faces and a folder of 2 tiny fold models trained on them."""
    root = tmp_path_factory.mktemp("folds")
    generate(root, n=6, seed=5, size=96)
    ds = read_dataset(root / "faces")
    train_folds(ds, get_preset("tiny", **TINY), root / "models", count=2, log=lambda _: None)
    return root, ds


def auditor(*args):
    return subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_a_face_keeps_its_fold_whatever_lists_it(trained):
    root, ds = trained
    folds = fold_of(ds, 3)
    assert folds.shape == (len(ds),) and set(folds) <= {0, 1, 2}
    order = np.arange(len(ds))[::-1]
    assert np.array_equal(fold_of(ds.subset(order), 3), folds[order])
    assert np.array_equal(fold_of(ds, 3), folds)


def test_each_fold_model_trained_without_its_fold(trained):
    root, ds = trained
    folds = fold_of(ds, 2)
    for index in range(2):
        state = load_checkpoint(fold_path(root / "models", index, 2))["state"]
        assert state["stage"] == "done" and state["fold"] == [index, 2]
        assert set(state["image_ids"]) == {ds.image_ids[i] for i in np.flatnonzero(folds != index)}


def test_each_face_gets_the_heatmaps_of_the_model_that_never_saw_it(trained):
    root, ds = trained
    models, _, _ = load_fold_models(root / "models", ds)
    images = torch.rand(len(ds), 3, models.config.input_size, models.config.input_size)
    index = np.arange(len(ds))
    _, routed = model_heatmaps(models, images, index=index)
    for i in index:
        own, _ = model_from_checkpoint(load_checkpoint(fold_path(root / "models", models.folds[i], 2)))
        _, expected = model_heatmaps(own, images[i:i + 1])
        torch.testing.assert_close(routed[i:i + 1], expected)
    assert isinstance(models, FoldModels)


def test_an_audit_with_fold_models_matches_its_folds_audited_apart(trained, tmp_path):
    root, ds = trained
    manifest = run_audit(ds, root / "models", tmp_path / "oof", device="cpu", flip=False, progress=False,
                         target_precision=None)
    assert manifest["model"]["folds"] == 2 and len(manifest["model"]["sha256"]) == 64
    oof = pd.read_parquet(tmp_path / "oof" / "points.parquet")
    folds = fold_of(ds, 2)
    for index in range(2):
        faces = set(np.array(ds.image_ids)[folds == index])
        run_audit(ds, fold_path(root / "models", index, 2), tmp_path / f"f{index}", device="cpu", flip=False,
                  progress=False, target_precision=None)
        alone = pd.read_parquet(tmp_path / f"f{index}" / "points.parquet")
        mine = oof["image_id"].isin(faces).to_numpy()
        np.testing.assert_allclose(oof.loc[mine, ["x_pred", "y_pred"]].to_numpy(),
                                   alone.loc[mine, ["x_pred", "y_pred"]].to_numpy(), atol=1e-4)


def test_fold_folders_refuse_missing_or_unfinished_folds(trained, tmp_path):
    root, ds = trained
    broken = tmp_path / "models"
    broken.mkdir()
    first = fold_path(root / "models", 0, 2)
    (broken / first.name).write_bytes(first.read_bytes())
    with pytest.raises(InputError, match="fold 2 of 2 is missing"):
        load_fold_models(broken, ds)
    with pytest.raises(InputError, match="between 2 and"):
        train_folds(ds, get_preset("tiny", **TINY), tmp_path / "one", count=1, log=lambda _: None)


def test_cli_trains_and_resumes_folds(trained, tmp_path):
    root, _ = trained
    args = ("train", root / "faces", "--out", tmp_path / "models", "--folds", "2", "--preset", "tiny", "--epochs",
            "1", "--rounds", "0", "--set", "ghcu_epochs=1", "--set", "batch_size=4")
    r = auditor(*args)
    assert r.returncode == 0, r.stderr
    assert "saved 2 fold models" in r.stdout
    r = auditor(*args)
    assert r.returncode == 2 and "--resume" in r.stderr and "Traceback" not in r.stderr
    r = auditor(*args, "--resume")
    assert r.returncode == 0 and r.stdout.count("finished earlier, kept") == 2
    r = auditor("train", root / "faces", "--out", tmp_path / "none", "--folds", "2", "--resume", "--preset", "tiny")
    assert r.returncode == 2 and "nothing to resume" in r.stderr
    r = auditor("train", root / "faces", "--out", tmp_path / "x", "--folds", "1", "--preset", "tiny")
    assert r.returncode == 2 and "between 2 and" in r.stderr
