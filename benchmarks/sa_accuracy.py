"""Semantic-alignment accuracy on data with known truth, training speed per preset, and NME on real LFPW.

    python benchmarks/sa_accuracy.py --workdir W     # synthetic 400 / 200 faces + LFPW 2-fold, cpu preset
    python benchmarks/sa_accuracy.py --quick         # a smoke run: tiny preset, few faces, minutes
    python benchmarks/sa_accuracy.py --no-synthetic  # the LFPW table and the training speeds only
    python benchmarks/sa_accuracy.py --speed-only    # the training speeds alone (CPU, and CUDA when present)
    python benchmarks/sa_accuracy.py --folds 0 --no-control  # the issue's synthetic rows alone, under 45 min

Rows (synthetic test faces, never trained on):
- baseline: the network after round 0 (human labels only), last-stack heatmaps, and its GHCU's output;
- control: the same network trained on the human labels for as many epochs as SA gets (a fair baseline),
  its hourglass and its GHCU fine-tuned on them round by round as SA's are on the searched targets;
- SA: after the semantic-alignment rounds, last-stack heatmaps;
- SA + GHCU: the GHCU output of the final model.
Columns: NME vs truth and vs the human labels on the test faces, and the mean error vs truth of the
training targets on contour points relative to that of the human labels (< 1: the search moved the
targets toward the truth), over all contour points and over those without a planted error (gross,
moderate, off-contour, swapped face: the set's slides and jitter only, the noise the search models).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from auditor.dataset import Dataset
from auditor.evaluate import label_kinds, read_noise
from auditor.inference import predict
from auditor.io import read_dataset
from auditor.metrics import auc, failure_rate, nme
from auditor.model import LandmarkModel, get_preset
from auditor.search import SearchConfig
from auditor.synth import generate
from auditor.train import round_targets, train

LFPW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfpw"


class _Stop(Exception):
    """Raised by a round hook to end a control run before its GHCU stage."""


def face_nme(pred: np.ndarray, ref: Dataset) -> np.ndarray:
    """(N,) NME of predictions against the landmarks of `ref`."""
    return nme(pred, ref.landmarks, ref.normaliser())


def planted_mask(human: Dataset, noise_csv: Path) -> np.ndarray:
    """(N, K) True where an error (gross, moderate, off-contour, swap) was planted, not a slide or jitter."""
    points = pd.DataFrame({"image_id": np.repeat(human.image_ids, human.num_points),
                           "point": np.tile(np.arange(human.num_points), len(human))})
    return (label_kinds(points, read_noise(noise_csv)) != "").reshape(len(human), human.num_points)


def contour_target_ratio(targets: np.ndarray, human: Dataset, truth: Dataset,
                         keep: np.ndarray | None = None) -> float:
    """Mean error vs truth of `targets` on contour points (those where `keep` (N, K) is True) over that of the
    human labels."""
    mask = human.scheme.contour_mask[None] & (np.ones(human.landmarks.shape[:2], bool) if keep is None else keep)
    err_t = np.linalg.norm(targets - truth.landmarks, axis=-1)[mask]
    err_h = np.linalg.norm(human.landmarks - truth.landmarks, axis=-1)[mask]
    return float(np.nanmean(err_t) / np.nanmean(err_h))


def trained_epochs(history: list[dict]) -> tuple[int, int]:
    """(round 0 epochs, round 0's GHCU epochs) a checkpoint's history records as trained."""
    return tuple(sum(h["stage"] == stage and h["round"] == 0 for h in history) for stage in ("hourglass", "ghcu"))


def synchronise(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so wall time measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def preset_speed(name: str, num_points: int, steps: int, device: torch.device) -> float:
    """Training images/s of a preset's forward + backward + Adam step on random images (no data loading)."""
    config = get_preset(name)
    model = LandmarkModel(num_points, config).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(config.batch_size, 3, config.input_size, config.input_size, device=device)
    warm_up = 3 if device.type == "cuda" else 1  # CUDA: cuDNN picks its algorithms in the first steps
    start = None
    for step in range(steps + warm_up):
        if step == warm_up:
            synchronise(device)
            start = time.perf_counter()
        stacks, corrected = model(images)
        loss = stacks.square().mean() + corrected.square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    synchronise(device)
    return steps * config.batch_size / (time.perf_counter() - start)


def end_to_end_speed(name: str, faces: Dataset, device: torch.device, workers: int, work: Path) -> float:
    """Training images/s of a preset's round 0 on real crops (loading, augmentation, heatmap targets, step): the
    second of two epochs over `faces`, as `auditor.train` reports it."""
    config = get_preset(name, epochs=2, rounds=0, ghcu_epochs=0, min_images=0, workers=workers)
    _, state = train(faces, config, work / f"speed_{name}.pt", device=device, progress=False, log=lambda _: None)
    return state["history"][-1]["images_per_s"]


def speed_table(args: argparse.Namespace, work: Path, results: dict[str, float]) -> None:
    """Print the training speeds per preset on the CPU and, when present, on CUDA; add them to `results`."""
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    names = ", ".join(torch.cuda.get_device_name(d) if d.type == "cuda" else f"{torch.get_num_threads()} CPU threads"
                      for d in devices)
    print(f"\n### Training speed ({names}; torch {torch.__version__})\n")
    print("| device | preset | batch | input px | what | data workers | images/s |")
    print("|---|---|---|---|---|---|---|")
    for device in devices:
        prefix = "" if device.type == "cpu" else f"{device.type}_"
        for name in ("tiny", "cpu", "paper"):
            speed = preset_speed(name, 68, args.speed_steps, device)
            c = get_preset(name)
            print(f"| {device.type} | {name} | {c.batch_size} | {c.input_size} | model step, random images | | "
                  f"{speed:.1f} |")
            results[f"{prefix}{name}_step_img_per_s"] = speed
    if "train_img_per_s" in results:
        print(f"| cpu | {args.preset} | | | end to end, the SA training's round 0 | 0 | "
              f"{results['train_img_per_s']:.1f} |")
    if len(devices) == 1:
        return
    generate(work / "speed", n=args.speed_faces, seed=args.test_seed, size=256)
    faces = read_dataset(work / "speed" / "faces")
    for name in ("cpu", "paper"):
        for workers in (0, min(8, os.cpu_count() or 1)):
            speed = end_to_end_speed(name, faces, devices[-1], workers, work)
            c = get_preset(name)
            print(f"| cuda | {name} | {c.batch_size} | {c.input_size} | end to end, round 0 on {len(faces)} faces | "
                  f"{workers} | {speed:.1f} |")
            results[f"cuda_{name}_e2e_w{workers}_img_per_s"] = speed


def synthetic(args: argparse.Namespace, work: Path) -> dict[str, float]:
    generate(work / "train", n=args.train, seed=args.train_seed, size=256)
    generate(work / "test", n=args.test, seed=args.test_seed, size=256)
    human, truth = read_dataset(work / "train" / "faces"), read_dataset(work / "train" / "truth")
    test_human, test_truth = read_dataset(work / "test" / "faces"), read_dataset(work / "test" / "truth")
    config = get_preset(args.preset, **dict(kv.split("=", 1) for kv in args.set))
    clean = ~planted_mask(human, work / "train" / "truth" / "noise.csv")
    preds: dict[str, np.ndarray] = {}

    similarity: dict[str, tuple[float, float]] = {}

    def sa_hook(r: int, model: LandmarkModel) -> None:
        if r == 0:
            preds["baseline"] = predict(model, test_human, use_ghcu=False)
            preds["baseline + GHCU"] = predict(model, test_human, use_ghcu=True)
            for name in ("chi2", "ncc"):
                found, _ = round_targets(model, human, replace(config, round_targets="searched"),
                                         SearchConfig(similarity=name), device=torch.device("cpu"), batch_size=32)
                crisp = ~human.scheme.contour_mask
                err = np.linalg.norm(found - truth.landmarks, axis=-1)
                err_h = np.linalg.norm(human.landmarks - truth.landmarks, axis=-1)
                similarity[name] = (contour_target_ratio(found, human, truth),
                                    contour_target_ratio(found, human, truth, clean),
                                    float(np.nanmean(err[:, crisp]) / np.nanmean(err_h[:, crisp])))
            if args.control:
                shutil.copy(work / "sa.pt", work / "control.pt")
        if r == config.rounds:
            preds["SA"] = predict(model, test_human, use_ghcu=False)

    def control_hook(r: int, model: LandmarkModel) -> None:
        if r == config.rounds:
            preds["control"] = predict(model, test_human, use_ghcu=False)
            preds["control + GHCU"] = predict(model, test_human, use_ghcu=True)
            raise _Stop

    start = time.perf_counter()
    model, state = train(human, config, work / "sa.pt", align=True, on_round_end=sa_hook, progress=args.progress,
                         log=print)
    sa_minutes = (time.perf_counter() - start) / 60
    preds["SA + GHCU"] = predict(model, test_human, use_ghcu=True)
    start = time.perf_counter()
    if args.control:
        try:
            train(human, config, work / "control.pt", resume=True, align=False, on_round_end=control_hook,
                  progress=args.progress, log=print)
        except _Stop:
            pass
    control_minutes = (time.perf_counter() - start) / 60
    final = state["targets"][-1].double().numpy()
    ratio, ratio_clean = contour_target_ratio(final, human, truth), contour_target_ratio(final, human, truth, clean)
    rows = [("baseline", "baseline (round 0)", (1.0, 1.0)), ("baseline + GHCU", "baseline + GHCU", (1.0, 1.0)),
            ("control", "control (human labels, same epochs)", (1.0, 1.0)),
            ("control + GHCU", "control + GHCU", (1.0, 1.0)),
            ("SA", "SA", (ratio, ratio_clean)), ("SA + GHCU", "SA + GHCU", (ratio, ratio_clean))]
    rows = [row for row in rows if row[0] in preds]
    round_0, ghcu = trained_epochs(state["history"])
    print(f"\n### Synthetic: {args.train} train / {args.test} test faces, preset {config.name}, "
          f"{round_0} + {config.rounds} x {config.round_epochs} epochs, GHCU {ghcu} + {config.rounds} x "
          f"{config.round_epochs}; "
          f"SA training took {sa_minutes:.1f} min"
          + (f", the control's rounds {control_minutes:.1f} min" if args.control else "") + "\n")
    print("| model | NME vs truth (test) | NME vs human (test) | contour target error / human's (train): all points "
          "| without a planted error |")
    print("|---|---|---|---|---|")
    nme_truth = {}
    for key, name, (r, r_clean) in rows:
        nme_truth[key] = np.nanmean(face_nme(preds[key], test_truth))
        print(f"| {name} | {nme_truth[key]:.4f} | {np.nanmean(face_nme(preds[key], test_human)):.4f} | {r:.3f} | "
              f"{r_clean:.3f} |")
    shifts = [h["target_shift_px"] for h in state["history"] if h["stage"] == "search"]
    print(f"\nsearched targets moved per round (heatmap px): {', '.join(f'{s:.3f}' for s in shifts)}")
    per_round = [contour_target_ratio(t.double().numpy(), human, truth, clean) for t in state["targets"][1:]]
    print(f"contour target error / human's per round, without a planted error: "
          f"{', '.join(f'{r:.3f}' for r in per_round)}")
    print("\nSearch similarity, round 1's search (the round-0 model's GHCU, flip) of the training faces (error vs "
          "truth of the searched positions over that of the human labels):\n")
    print("| similarity | contour points | contour points without a planted error | crisp points |")
    print("|---|---|---|---|")
    for name, (contour, contour_clean, crisp) in similarity.items():
        print(f"| {name} | {contour:.3f} | {contour_clean:.3f} | {crisp:.3f} |")
    rates = [h["images_per_s"] for h in state["history"] if h["stage"] == "hourglass"]
    results = {"chi2_round1_contour_ratio": similarity["chi2"][0], "ncc_round1_contour_ratio": similarity["ncc"][0],
               "baseline_nme": nme_truth["baseline"], "sa_nme": nme_truth["SA"], "sa_ghcu_nme": nme_truth["SA + GHCU"],
               "ghcu_vs_baseline": nme_truth["SA + GHCU"] / nme_truth["baseline"],
               "contour_target_ratio": ratio, "contour_target_ratio_clean": ratio_clean,
               "train_img_per_s": float(np.median(rates)), "sa_minutes": sa_minutes}
    if args.control:
        results |= {"control_nme": nme_truth["control"], "control_ghcu_nme": nme_truth["control + GHCU"],
                    "ghcu_vs_control": nme_truth["SA + GHCU"] / nme_truth["control"],
                    "ghcu_vs_control_ghcu": nme_truth["SA + GHCU"] / nme_truth["control + GHCU"],
                    "control_minutes": control_minutes}
    return results


def lfpw(args: argparse.Namespace, work: Path) -> dict[str, float]:
    ds = read_dataset(LFPW)
    folds = np.array_split(np.random.default_rng(args.seed).permutation(len(ds)), args.folds)
    config = get_preset(args.preset, **dict(kv.split("=", 1) for kv in args.set))
    all_nme = np.full(len(ds), np.nan)
    rows, trained = [], set()
    for f, test_idx in enumerate(folds):
        train_idx = np.setdiff1d(np.arange(len(ds)), test_idx)
        checkpoint = work / f"lfpw_{f}.pt"  # one left by an interrupted run in the same --workdir continues
        model, state = train(ds.subset(train_idx), config, checkpoint, resume=checkpoint.is_file(),
                             progress=args.progress, log=print)
        trained.add(trained_epochs(state["history"]))
        test = ds.subset(test_idx)
        e = face_nme(predict(model, test), test)
        e_stack = face_nme(predict(model, test, use_ghcu=False), test)
        all_nme[test_idx] = e
        rows.append(f"| {f} | {len(train_idx)} | {len(test_idx)} | {np.mean(e):.4f} | {np.mean(e_stack):.4f} | "
                    f"{failure_rate(e, 0.10):.3f} | {auc(e, 0.10):.3f} |")
    epochs = "; ".join(f"round 0: {r0} epochs, GHCU {g}" for r0, g in sorted(trained))
    print(f"\n### LFPW (160 real faces, 300-W labels), {args.folds}-fold cross-validation, preset {config.name} "
          f"({epochs}, as trained; min_images {config.min_images})\n")
    print("| fold | train faces | test faces | NME vs human (GHCU) | NME vs human (last stack) | FR@0.10 | AUC@0.10 |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"| all | | {len(ds)} | {np.mean(all_nme):.4f} | | {failure_rate(all_nme, 0.10):.3f} | "
          f"{auc(all_nme, 0.10):.3f} |")
    return {"lfpw_nme": float(np.mean(all_nme)), "lfpw_fr10": failure_rate(all_nme, 0.10)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", type=int, default=400, help="synthetic training faces")
    parser.add_argument("--train-seed", type=int, default=2019,
                        help="seed of the training faces (2019 with 400 faces: exactly sample_data/faces)")
    parser.add_argument("--test", type=int, default=200, help="synthetic test faces")
    parser.add_argument("--test-seed", type=int, default=2020, help="seed of the test faces")
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--set", action="append", default=[], help="override a preset field, FIELD=VALUE")
    parser.add_argument("--folds", type=int, default=2, help="LFPW cross-validation folds (0: skip LFPW)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the LFPW fold split")
    parser.add_argument("--speed-steps", type=int, default=3, help="timed training steps per preset")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the data and checkpoints here; an LFPW fold's checkpoint left there by an "
                             "interrupted run is continued")
    parser.add_argument("--quick", action="store_true", help="a smoke run: tiny preset, 40 / 20 faces")
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    parser.add_argument("--no-synthetic", action="store_true",
                        help="skip the synthetic experiment: the LFPW table and the speeds only")
    parser.add_argument("--speed-only", action="store_true", help="the training speeds alone")
    parser.add_argument("--no-control", dest="control", action="store_false",
                        help="skip the control (trained as long on the human labels) and its rounds' time: the "
                             "synthetic rows issue 5 asks for")
    parser.add_argument("--speed-faces", type=int, default=256,
                        help="synthetic faces of the end-to-end speed runs (CUDA only)")
    args = parser.parse_args()
    if args.quick:
        args.train, args.test, args.preset, args.speed_steps, args.speed_faces = 40, 20, "tiny", 1, 32
        args.set = ["epochs=2", "round_epochs=1", "ghcu_epochs=1", *args.set]
    torch.manual_seed(0)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sa_accuracy_"))
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    results = {} if args.no_synthetic or args.speed_only else synthetic(args, work)
    if args.folds > 1 and LFPW.is_dir() and not args.speed_only:
        results.update(lfpw(args, work))
    speed_table(args, work, results)
    results["script_minutes"] = (time.perf_counter() - start) / 60
    print(f"\nthe whole script took {results['script_minutes']:.1f} min")
    if args.workdir is None:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print(" ".join(f"{k}={v:.4f}" for k, v in results.items()))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
