import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from auditor.checkpoint import load_checkpoint, model_from_checkpoint
from auditor.errors import InputError
from auditor.evaluate import read_noise
from auditor.heatmaps import decode, encode
from auditor.io import read_dataset
from auditor.model import Config, get_preset
from auditor.search import SearchConfig
from auditor.synth import generate
from auditor.train import heatmap_loss, learning_rate, perturb_heatmaps, round_targets, train

SAMPLE = Path(__file__).resolve().parents[1] / "sample_data"
TINY = dict(epochs=1, rounds=2, round_epochs=1, ghcu_epochs=1, batch_size=4, round_tolerance=0.0)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, n=8, seed=11, size=96)
    return root / "faces"


def test_heatmap_loss_is_zero_on_targets_and_skips_missing():
    xy = torch.tensor([[[5.0, 6.0], [float("nan"), 1.0], [10.0, 3.0]]])
    perfect = encode(xy, 16)
    assert heatmap_loss(perfect, xy, 1.5) == 0
    wrong = perfect.clone()
    wrong[0, 1] = 7.0  # the missing point's map is not judged
    assert heatmap_loss(wrong, xy, 1.5) == 0
    wrong[0, 0] = 0.0
    assert heatmap_loss(wrong, xy, 1.5) > 0
    assert heatmap_loss(torch.stack([perfect, wrong], 1), xy, 1.5) == pytest.approx(heatmap_loss(wrong, xy, 1.5) / 2)


def test_foreground_weight_keeps_the_optimum_and_favours_the_peak():
    xy = torch.tensor([[[8.0, 8.0]]])
    perfect = encode(xy, 16)
    assert heatmap_loss(perfect, xy, 1.5, 100.0) == 0
    blank = torch.zeros_like(perfect)
    ratio = heatmap_loss(blank, xy, 1.5, 100.0) / heatmap_loss(blank, xy, 1.5)
    assert ratio > 30  # missing the peak costs far more than with plain MSE


def test_learning_rate_schedule():
    c = get_preset("cpu")
    round0 = [learning_rate(c, "hourglass", 0, e) for e in range(c.epochs)]
    assert round0[0] == pytest.approx(c.lr) and round0[-1] == pytest.approx(c.lr / 10)
    assert all(a >= b for a, b in zip(round0[:-1], round0[1:], strict=True))
    assert learning_rate(c, "hourglass", 1, 0) == learning_rate(c, "hourglass", 2, 5) == pytest.approx(c.lr / 10)
    ghcu = [learning_rate(c, "ghcu", 0, e) for e in range(c.ghcu_epochs)]
    assert ghcu[0] == pytest.approx(c.lr) and ghcu[-1] == pytest.approx(c.lr / 10)
    assert learning_rate(c, "ghcu", 1, 0) == learning_rate(c, "ghcu", 2, 5) == pytest.approx(c.lr / 10)


def test_perturb_drops_and_shifts():
    xy = torch.full((64, 1, 2), 16.0)
    maps = encode(xy, 32)
    g = torch.Generator().manual_seed(0)
    assert perturb_heatmaps(maps, g, drop=1.0, shift=0.0, max_shift_px=4).abs().sum() == 0
    assert torch.allclose(perturb_heatmaps(maps, g, drop=0.0, shift=0.0, max_shift_px=4), maps, atol=1e-6)
    moved, _ = decode(perturb_heatmaps(maps, g, drop=0.0, shift=1.0, max_shift_px=4))
    d = (moved - xy).abs()
    assert d.max() <= 4.05 and d.mean() > 0.5


def test_train_tiny_end_to_end(faces, tmp_path):
    ds = read_dataset(faces)
    model, state = train(ds, get_preset("tiny", **TINY), tmp_path / "m.pt", progress=False, log=lambda _: None)
    assert state["stage"] == "done" and len(state["targets"]) == 3
    assert [h["round"] for h in state["history"] if h["stage"] == "search"] == [1, 2]
    assert torch.equal(state["targets"][0], torch.from_numpy(ds.landmarks.astype(np.float32)))
    searched = state["targets"][1].numpy()
    # the search stays in its window around the human label (8 heatmap px at R = 64; R = 32 here: 4 px); only the
    # labels flagged as issues, whose target is the model's own position, may leave it
    sides = np.max(ds.landmarks.max(1) - ds.landmarks.min(1), axis=1) * 1.25
    outside = np.linalg.norm(searched - ds.landmarks, axis=-1) > (4 * np.sqrt(2) + 1) * sides[:, None] / 32
    search_1 = next(h for h in state["history"] if h["stage"] == "search")
    assert outside.sum() <= search_1["predicted_targets"] <= search_1["label_issues"]
    payload = load_checkpoint(tmp_path / "m.pt")
    assert payload["state"]["stage"] == "done" and len(payload["state"]["rank_weight_hashes"]) == 1
    assert [h["round"] for h in payload["state"]["history"] if h["stage"] == "ghcu"] == [0, 1, 2]


def test_rounds_stop_once_the_targets_settle(faces, tmp_path):
    """Targets that move less than round_tolerance end training: that round is searched, not trained on."""
    ds = read_dataset(faces)
    config = get_preset("tiny", **dict(TINY, round_tolerance=1e9))
    _, state = train(ds, config, tmp_path / "m.pt", progress=False, log=lambda _: None)
    assert state["stage"] == "done" and len(state["targets"]) == 2
    assert [(h["stage"], h["round"]) for h in state["history"]] == [("hourglass", 0), ("ghcu", 0), ("search", 1)]
    assert load_checkpoint(tmp_path / "m.pt")["state"]["stage"] == "done"


def test_interrupted_training_resumes_exactly(faces, tmp_path):
    ds = read_dataset(faces)
    config = get_preset("tiny", **TINY)
    full, _ = train(ds, config, tmp_path / "full.pt", progress=False, log=lambda _: None)
    epochs_seen = []

    def interrupt_on_third_epoch(message: str) -> None:
        if "epoch" in message:
            epochs_seen.append(message)
            if len(epochs_seen) == 3:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ds, config, tmp_path / "cut.pt", progress=False, log=interrupt_on_third_epoch)
    assert load_checkpoint(tmp_path / "cut.pt")["state"]["stage"] == "hourglass"
    resumed, state = train(ds, config, tmp_path / "cut.pt", resume=True, progress=False, log=lambda _: None)
    assert state["stage"] == "done"
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


def test_a_small_dataset_trains_round_0_and_the_ghcu_until_each_has_seen_min_images(faces, tmp_path):
    ds = read_dataset(faces)  # 8 faces: 20 crops take ceil(20 / 8) = 3 epochs, not the preset's 1
    config = get_preset("tiny", **TINY, min_images=20)
    messages = []

    def interrupt_in_round_0(message: str) -> None:
        messages.append(message)
        if message.startswith("round 0 epoch 2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(ds, config, tmp_path / "m.pt", progress=False, log=interrupt_in_round_0)
    assert "round 0: 3 epochs, GHCU: 3 (preset: 1, 1)" in messages[0]
    _, state = train(ds, config, tmp_path / "m.pt", resume=True, progress=False, log=lambda _: None)
    assert [h["round"] for h in state["history"] if h["stage"] == "hourglass"] == [0, 0, 0, 1, 2]
    assert [h["round"] for h in state["history"] if h["stage"] == "ghcu"] == [0, 0, 0, 1, 2]
    saved = load_checkpoint(tmp_path / "m.pt")["config"]
    assert (saved["epochs"], saved["ghcu_epochs"], saved["min_images"]) == (3, 3, 20)


def test_cli_epochs_are_exact(faces, tmp_path):
    """--epochs sets round 0's epochs exactly: the preset's min_images (cpu: 18,000 crops) does not raise them."""
    r = auditor("train", faces, "--out", tmp_path / "m.pt", "--preset", "cpu", "--epochs", "1", "--rounds", "0",
                "--set", "ghcu_epochs=0", "--set", "stacks=1", "--set", "channels=8")
    assert r.returncode == 0, r.stderr
    saved = load_checkpoint(tmp_path / "m.pt")
    assert (saved["config"]["epochs"], saved["config"]["min_images"]) == (1, 0)
    assert [h["stage"] for h in saved["state"]["history"]] == ["hourglass"]


def auditor(*args):
    return subprocess.run([sys.executable, "-m", "auditor.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=600)


def test_cli_train_guards(faces, tmp_path):
    r = auditor("train", faces, "--out", tmp_path / "none.pt", "--resume", "--preset", "tiny")
    assert r.returncode == 2 and "nothing to resume" in r.stderr
    (tmp_path / "exists.pt").write_bytes(b"x")
    r = auditor("train", faces, "--out", tmp_path / "exists.pt", "--preset", "tiny")
    assert r.returncode == 2 and "pass --resume" in r.stderr
    r = auditor("train", faces, "--out", tmp_path / "m.pt", "--preset", "tiny", "--set", "stacks=x")
    assert r.returncode == 2 and "stacks" in r.stderr


@pytest.mark.slow
def test_two_gloo_processes_hold_the_same_weights(faces, tmp_path):
    out = tmp_path / "ddp.pt"
    sets = [f"--set={k}={v}" for k, v in TINY.items()]
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "auditor.cli", "train", str(faces), "--out", str(out), "--preset", "tiny",
                        "--device", "cpu", *sets], capture_output=True, text=True, timeout=600)
    causes = [line for line in r.stderr.splitlines() if re.search(r"terminate|what\(\)|Error|Exception", line)]
    assert r.returncode == 0, "\n".join(causes[:20]) + "\n...\n" + r.stderr[-1500:]
    assert r.stdout.count("saved ") == 1  # one rank reports
    state = load_checkpoint(out)["state"]
    hashes = state["rank_weight_hashes"]
    assert len(hashes) == 2 and hashes[0] == hashes[1]
    assert state["stage"] == "done" and len(state["targets"]) == 3
    assert np.isfinite(state["targets"][-1].numpy()).all()  # every face's target gathered from its shard


def test_round_targets_move_flagged_labels_to_the_model_and_keep_missing_ones_missing():
    """On sample faces with planted errors (the bundled model): a round's targets are the audit's proposals, which
    take the gross errors far toward the truth; the search alone stays near them. A missing label stays missing."""
    ds = read_dataset(SAMPLE / "faces").subset(np.arange(40))
    truth = read_dataset(SAMPLE / "truth").subset(np.arange(40))
    payload = load_checkpoint(SAMPLE / "model.pt")
    model, _ = model_from_checkpoint(payload)
    config = Config(**payload["config"])
    ds.landmarks[3, 10] = np.nan
    noise = read_noise(SAMPLE / "truth" / "noise.csv")
    gross = np.zeros(ds.landmarks.shape[:2], bool)
    for row in noise[(noise["kind"] == "gross") & noise["image_id"].isin(ds.image_ids)].itertuples():
        gross[ds.image_ids.index(row.image_id), row.point] = True
    assert gross.sum() >= 20

    def error(xy):
        return np.linalg.norm(xy - truth.landmarks, axis=-1) / truth.normaliser()[:, None]

    proposed, counts = round_targets(model, ds, config, SearchConfig(), device=torch.device("cpu"), batch_size=20)
    searched, searched_counts = round_targets(model, ds, replace(config, round_targets="searched"), SearchConfig(),
                                              device=torch.device("cpu"), batch_size=20)
    assert np.isnan(proposed[3, 10]).all() and np.isnan(searched[3, 10]).all()
    assert np.isfinite(np.delete(proposed.reshape(-1, 2), 3 * 68 + 10, axis=0)).all()
    human = error(ds.landmarks)
    assert np.mean(error(proposed)[gross]) < 0.4 * np.mean(human[gross])
    assert np.mean(error(proposed)[gross]) < 0.5 * np.mean(error(searched)[gross])  # the search stays near the label
    assert counts["predicted_targets"] >= gross.sum() // 2 and searched_counts["predicted_targets"] == 0
    contour = ds.scheme.contour_mask[None] & ~gross
    assert np.nanmean(error(proposed)[contour]) < np.nanmean(human[contour])
    moved = np.linalg.norm(proposed - searched, axis=-1) > 1e-6  # the proposals differ from the search only on
    assert moved.sum() <= counts["predicted_targets"] <= counts["label_issues"]  # the flagged labels


@pytest.mark.parametrize("ghcu_epochs", [1, 0])
def test_a_round_audits_the_flip_averaged_ghcu_heatmaps_of_the_model_it_follows(faces, tmp_path, ghcu_epochs):
    """Round 1's targets are the audit's proposals from the model after round 0 (hourglass and GHCU), in the GHCU's
    heatmaps averaged with the mirror image's; without a GHCU, in the last stack's."""
    ds = read_dataset(faces)
    config = get_preset("tiny", **dict(TINY, rounds=1, ghcu_epochs=ghcu_epochs))
    expected = {}

    def targets_after_round_0(r, model):
        if r == 0:
            for name, variant in (("ghcu", replace(config, ghcu_epochs=1)), ("stack", replace(config, ghcu_epochs=0)),
                                  ("no flip", replace(config, flip=False))):
                expected[name] = round_targets(model, ds, variant, SearchConfig(), device=torch.device("cpu"),
                                               batch_size=8)[0]

    _, state = train(ds, config, tmp_path / "m.pt", on_round_end=targets_after_round_0, progress=False,
                     log=lambda _: None)
    got = state["targets"][1].double().numpy()
    source = "ghcu" if ghcu_epochs else "stack"
    np.testing.assert_allclose(got, expected[source], atol=1e-3)
    for other in {"ghcu", "stack", "no flip"} - {source}:
        assert np.abs(got - expected[other]).max() > 1e-2, other


def test_round_targets_must_be_proposed_or_searched():
    with pytest.raises(InputError, match="round_targets"):
        get_preset("tiny", round_targets="labels")


def test_channels_last_and_bf16_train_a_model_that_loads(faces, tmp_path):
    """The speed options change how the step runs, not what is saved: the checkpoint loads and predicts."""
    ds = read_dataset(faces)
    config = get_preset("tiny", **dict(TINY, rounds=0, channels_last=True, bf16=True))
    model, state = train(ds, config, tmp_path / "m.pt", progress=False, log=lambda _: None)
    assert state["stage"] == "done" and all(np.isfinite(h["loss"]) for h in state["history"] if "loss" in h)
    loaded, _ = model_from_checkpoint(load_checkpoint(tmp_path / "m.pt"))
    assert loaded.config.bf16 and loaded.config.channels_last
    stacks, corrected = loaded(torch.rand(2, 3, config.input_size, config.input_size))
    assert corrected.dtype == torch.float32 and torch.isfinite(corrected).all()


def test_bf16_auto_is_resolved_for_the_device_and_stored(faces, tmp_path, monkeypatch):
    """The presets leave bf16 to the device (None); training decides once, says so, and the checkpoint keeps the
    decision, so resuming or auditing never depends on the machine that reads it."""
    import auditor.train as training

    assert get_preset("cpu").bf16 is None and get_preset("cpu").channels_last
    assert get_preset("cpu", bf16="auto").bf16 is None and get_preset("cpu", bf16="false").bf16 is False
    ds = read_dataset(faces)
    for native in (False, True):
        monkeypatch.setattr(training, "native_bf16", lambda device, native=native: native)
        said = []
        train(ds, get_preset("tiny", **dict(TINY, rounds=0)), tmp_path / f"{native}.pt", progress=False,
              log=said.append)
        assert load_checkpoint(tmp_path / f"{native}.pt")["config"]["bf16"] is native
        assert any(f"bf16 autocast {'on' if native else 'off'}" in line for line in said)


def test_native_bf16_is_false_where_the_device_cannot_say(monkeypatch):
    from auditor.model.presets import native_bf16

    assert native_bf16("meta") is False
    assert isinstance(native_bf16("cpu"), bool)
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError("no /proc")))
    assert native_bf16("cpu") is False
