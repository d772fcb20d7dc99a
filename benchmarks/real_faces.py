"""The audit on real photographs, as a user runs it: planted errors found and fixed on faces nobody tuned on.

    python benchmarks/real_faces.py --workdir W     # builds W, trains the cpu preset on 765 faces, audits, reports
    python benchmarks/real_faces.py --quick         # a smoke run: tiny preset, 24 faces of each split, minutes
    python benchmarks/real_faces.py --faces 400     # a learning-curve point: 400 faces, the benchmark split among them
    python benchmarks/real_faces.py --faces 400 --out-of-sample   # the same faces audited by a model that never
                                                                   # saw the benchmark split (trained on 400 others)
    python benchmarks/real_faces.py --variant fast --set bf16=true --set channels_last=true   # another recipe on
                                                                   # the same faces, in WORKDIR/variant_fast

The dataset is all 765 real faces of ../shared/data (300-W's 68-point labels), read as one dataset:
`dev/` = lfpw (160 faces) and `train/` = lfpw-train (605). Errors are planted (seed SEED, the kinds and rates of
`auditor plant-noise`, errors only: real labels carry their own slides) into two disjoint splits:
- development: the 160 `dev/` faces; every default of the scoring is chosen here;
- benchmark: a fixed subset of BENCH_FACES `train/` faces (the first of a seeded permutation of their ids);
  nothing is chosen on it.
The other 405 faces keep their labels untouched. The `cpu` preset is trained on all 765 labels as planted (a
user trains on the dataset they audit), the dataset is audited once, and each split is scored on its own faces:
positives are its planted points, negatives its other points; "truth" is the 300-W labels before planting.
Each step is skipped when its output is already in the work directory (delete it to redo).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from audit_accuracy import run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SPLITS = {"dev": "lfpw", "train": "lfpw-train"}
SEED = 2026
BENCH_FACES = 200
OOF_SEED = 7  # chooses the unplanted faces of the out-of-sample model's training set
DEFAULT_THRESHOLD = 0.005  # ScoringConfig.issue_threshold, the threshold without calibration


def link_sources(work: Path, quick: bool) -> Path:
    """work/source/{dev,train}/: links to the shared images and labels (24 faces of each with --quick)."""
    source = work / "source"
    for prefix, folder in SPLITS.items():
        target = source / prefix
        target.mkdir(parents=True, exist_ok=True)
        labels = sorted((SHARED / folder).glob("*.pts"))[: 24 if quick else None]
        for pts in labels:
            for path in [pts, *(p for p in pts.parent.glob(pts.stem + ".*") if p.suffix != ".pts")]:
                link = target / path.name
                if not link.is_symlink():
                    link.symlink_to(path)
    return source


def bench_ids(ids: list[str], count: int) -> set[str]:
    """The benchmark split: `count` of the `train/` faces, chosen by a permutation seeded with SEED."""
    train = sorted(i for i in ids if i.startswith("train/"))
    order = np.random.default_rng(SEED).permutation(len(train))
    return {train[i] for i in order[:count]}


def plant(work: Path, quick: bool) -> None:
    """work/faces (the labels as planted), work/truth (before planting, with noise.csv) and work/splits.csv."""
    from auditor.io import read_dataset, write_dataset
    from auditor.noise import NoiseConfig, plant_noise

    ds = read_dataset(link_sources(work, quick))
    splits = pd.Series("rest", index=ds.image_ids, name="split")
    splits[[i.startswith("dev/") for i in ds.image_ids]] = "development"
    splits[sorted(bench_ids(ds.image_ids, 12 if quick else BENCH_FACES))] = "benchmark"
    config = NoiseConfig(chain_swap_rate=0.005, duplicate_rate=0.005).errors_only()
    noisy, table = plant_noise(ds.landmarks, ds.scheme, ds.image_ids, np.random.default_rng(SEED), config,
                               labelled=ds.labelled, boxes=ds.boxes)
    untouched = (splits == "rest").to_numpy()
    noisy[untouched] = ds.landmarks[untouched]
    table = table[table["image_id"].map(splits) != "rest"]
    write_dataset(ds.with_landmarks(noisy), work / "faces", format="pts")
    write_dataset(ds, work / "truth", format="pts")
    table.to_csv(work / "truth" / "noise.csv", index=False, float_format="%.6f")
    splits.rename_axis("image_id").to_csv(work / "splits.csv")


def timed(what: str, args: list[str], done: bool) -> str:
    if done:
        return f"{what}: reused"
    started = time.perf_counter()
    run(*args)
    return f"{what} in {(time.perf_counter() - started) / 60:.1f} min"


def operating_point(points: pd.DataFrame, kinds: np.ndarray) -> dict[str, float]:
    """Precision and recall of `is_label_issue` over all planted kinds, recall per kind."""
    flagged = points["is_label_issue"].to_numpy(dtype=bool)
    positive = kinds != ""
    out = {"flags": int(flagged.sum()), "precision": float((flagged & positive).sum() / max(flagged.sum(), 1)),
           "recall": float((flagged & positive).sum() / max(positive.sum(), 1))}
    for kind in np.unique(kinds[positive]):
        out[f"recall_{kind}"] = float(flagged[kinds == kind].mean())
    return out


def displacement(points: pd.DataFrame, norm: np.ndarray, true_xy: np.ndarray, kinds: np.ndarray
                 ) -> dict[str, float]:
    """What accepting every flag does: the planted displacement it removes (the labels' summed distance from the
    labels before planting, over planted points, in NME) and how far it moves unplanted points (mean NME over
    the flagged ones, and their summed move over the planted displacement); `norm` (n,) each point's face
    normaliser, `true_xy` (n, 2) the labels before planting."""
    from auditor.audit_dir import proposals

    before = points[["x_human", "y_human"]].to_numpy(dtype=np.float64)
    x, y, _ = proposals(points)
    flagged = points["is_label_issue"].to_numpy(dtype=bool)
    after = np.where(flagged[:, None], np.stack([x, y], 1), before)
    planted = kinds != ""
    err_before = np.linalg.norm(before - true_xy, axis=1) / norm
    err_after = np.linalg.norm(after - true_xy, axis=1) / norm
    moved = np.nan_to_num(np.linalg.norm(after - before, axis=1) / norm)
    total = np.nansum(err_before[planted])
    clean_flagged = flagged & ~planted
    return {"removed": float(1 - np.nansum(err_after[planted]) / total),
            "unplanted_flagged": int(clean_flagged.sum()),
            "unplanted_move_nme": float(moved[clean_flagged].mean()) if clean_flagged.any() else 0.0,
            "unplanted_move_share": float(moved[clean_flagged].sum() / total)}


def truth_points(truth_dir: Path, points: pd.DataFrame) -> np.ndarray:
    """The 300-W labels before planting at each audited point (n, 2), image px, in `points`' order."""
    from auditor.io import read_dataset

    truth = read_dataset(truth_dir)
    index = {face: i for i, face in enumerate(truth.image_ids)}
    rows = np.array([index[i] for i in points["image_id"]])
    return truth.landmarks[rows, points["point"].to_numpy()]


# the semantic search seeded at the model's position: a window of 25 x 25 heatmap px and a round prior of 4 px
MODEL_SEEDED = {"half_width": 12, "prior_sigma": 4.0, "contour_prior_sigma": 4.0}


def model_seeded_search(work: Path, points: pd.DataFrame) -> np.ndarray:
    """(n, 2) image px at `points`' rows: the semantic search of the GHCU's heatmaps (test-time flip, as the audit)
    seeded at the model's own position instead of the label, with the wider window and prior of MODEL_SEEDED."""
    from auditor.checkpoint import load_checkpoint, model_from_checkpoint
    from auditor.heatmaps import decode
    from auditor.inference import iterate_heatmaps
    from auditor.io import read_dataset
    from auditor.search import SearchConfig, search

    manifest = json.loads((work / "audit" / "manifest.json").read_text())
    ds = read_dataset((work / "audit" / manifest["dataset"]["path"]).resolve())
    row_of = {face: i for i, face in enumerate(ds.image_ids)}
    faces = np.array(sorted({row_of[i] for i in points["image_id"].unique()}))
    model, _ = model_from_checkpoint(load_checkpoint(work / "model.pt"))
    config = SearchConfig(**MODEL_SEEDED)
    found = np.full(ds.landmarks.shape, np.nan)
    for batch in iterate_heatmaps(model, ds, indices=faces, flip=True):
        pred, _ = decode(batch.ghcu_heatmaps, config.sigma)
        result = search(batch.ghcu_heatmaps, pred, config, contour=ds.scheme.contour_mask)
        found[batch.index] = batch.to_image(result.searched.double().numpy())
    rows = np.array([row_of[i] for i in points["image_id"]])
    return found[rows, points["point"].to_numpy()]


def candidates(points: pd.DataFrame, normaliser: np.ndarray, extra: dict[str, np.ndarray] | None = None
               ) -> dict[str, np.ndarray]:
    """Each candidate correction (n, 2), image px: today's proposal, the model's position, its local peak, the two
    searches, the shape model's conditional mean and the precision-weighted mean of the last and the model's (each
    weighted per point by the inverse square of its median distance from the labels of unflagged faces); and
    `extra` ones (name -> (n, 2))."""
    from auditor.audit_dir import proposals

    x, y, _ = proposals(points)
    out = {"proposal": np.stack([x, y], 1)}
    for name in ("pred", "mode", "searched", "searched_broad", "shape"):
        out[name] = points[[f"x_{name}", f"y_{name}"]].to_numpy(dtype=np.float64)
    out.update(extra or {})
    out["mode"] = np.where(np.isfinite(out["mode"]), out["mode"], out["pred"])
    human = points[["x_human", "y_human"]].to_numpy(dtype=np.float64)
    clean = ~points["is_label_issue"].to_numpy(dtype=bool)
    weights = {}
    for name in ("pred", "shape"):
        distance = pd.Series(np.linalg.norm(out[name] - human, axis=1) / normaliser)[clean]
        spread = distance.groupby(points["point"].to_numpy()[clean]).median()
        weights[name] = 1 / np.maximum(spread.reindex(points["point"]).to_numpy(), 1e-4) ** 2
    total = weights["pred"] + weights["shape"]
    out["pred+shape"] = (out["pred"] * weights["pred"][:, None] + out["shape"] * weights["shape"][:, None]) / total[
        :, None]
    return out


def proposal_table(points: pd.DataFrame, normaliser: np.ndarray, true_xy: np.ndarray, kinds: np.ndarray,
                   extra: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Mean distance (NME) from the labels before planting of each candidate, over the flagged points of each
    planted kind, and over the flagged points nothing was planted on (a correct label moved)."""
    flagged = points["is_label_issue"].to_numpy(dtype=bool)
    rows = {}
    for name, xy in candidates(points, normaliser, extra).items():
        error = np.linalg.norm(xy - true_xy, axis=1) / normaliser
        row = {kind: float(np.nanmean(error[flagged & (kinds == kind)])) for kind in np.unique(kinds[kinds != ""])
               if (flagged & (kinds == kind)).any()}
        row["all planted"] = float(np.nanmean(error[flagged & (kinds != "")]))
        row["unplanted"] = float(np.nanmean(error[flagged & (kinds == "")]))
        rows[name] = row
    human = points[["x_human", "y_human"]].to_numpy(dtype=np.float64)
    label_error = np.linalg.norm(human - true_xy, axis=1) / normaliser
    rows["label (no fix)"] = {**{k: float(np.nanmean(label_error[flagged & (kinds == k)])) for k in rows["pred"]
                                 if k not in ("all planted", "unplanted")},
                              "all planted": float(np.nanmean(label_error[flagged & (kinds != "")])),
                              "unplanted": 0.0}
    return pd.DataFrame(rows).T


def false_flag_sheet(work: Path, points: pd.DataFrame, normaliser: np.ndarray, kinds: np.ndarray,
                     count: int = 20) -> pd.DataFrame:
    """The `count` lowest-scored flags on points nothing was planted on, drawn to work/false_flags.png (crops of
    0.6 IOD: the label red, the proposal green, the face's other labels yellow); their rows."""
    from PIL import Image, ImageDraw

    from auditor.audit_dir import proposals

    false = points["is_label_issue"].to_numpy(dtype=bool) & (kinds == "")
    worst = points[false].nsmallest(count, "label_score")
    x, y, _ = proposals(worst)
    images = pd.read_parquet(work / "audit" / "images.parquet").set_index("image_id")
    manifest = json.loads((work / "audit" / "manifest.json").read_text())
    dataset = (work / "audit" / manifest["dataset"]["path"]).resolve()
    side, columns = 200, 5
    sheet = Image.new("RGB", (columns * side, -(-len(worst) // columns) * (side + 28)), "white")
    for i, (row, px, py) in enumerate(zip(worst.itertuples(), x, y, strict=True)):
        norm = float(normaliser[worst.index[i]])
        half = 0.3 * norm
        image = Image.open(dataset / images.loc[row.image_id, "image_path"]).convert("RGB")
        box = (row.x_human - half, row.y_human - half, row.x_human + half, row.y_human + half)
        crop = image.crop(tuple(int(round(v)) for v in box)).resize((side, side))
        draw = ImageDraw.Draw(crop)

        scale = side / (2 * half)
        face = points[points["image_id"] == row.image_id]
        for u, v in face[["x_human", "y_human"]].to_numpy():
            cu, cv = (u - box[0]) * scale, (v - box[1]) * scale
            draw.ellipse((cu - 2, cv - 2, cu + 2, cv + 2), fill="yellow")
        cu, cv = (px - box[0]) * scale, (py - box[1]) * scale
        draw.ellipse((cu - 5, cv - 5, cu + 5, cv + 5), outline="lime", width=2)
        cu, cv = (row.x_human - box[0]) * scale, (row.y_human - box[1]) * scale
        draw.line((cu - 5, cv - 5, cu + 5, cv + 5), fill="red", width=2)
        draw.line((cu - 5, cv + 5, cu + 5, cv - 5), fill="red", width=2)
        left, top = (i % columns) * side, (i // columns) * (side + 28)
        sheet.paste(crop, (left, top + 28))
        ImageDraw.Draw(sheet).text((left + 3, top + 2), f"{i + 1}. {row.image_id} p{row.point}\n"
                                   f"{row.issue_type} {row.label_score:.1e}", fill="black")
    sheet.save(work / "false_flags.png")
    return worst[["image_id", "point", "point_name", "issue_type", "label_score"]]


def report(work: Path) -> dict[str, float]:
    """Print each split's tables; the summary keys."""
    from auditor.evaluate import (
        auroc,
        average_precision,
        detection_table,
        label_kinds,
        read_noise,
        recall_at_precision,
        swap_table,
    )

    points = pd.read_parquet(work / "audit" / "points.parquet")
    images = pd.read_parquet(work / "audit" / "images.parquet")
    manifest = json.loads((work / "audit" / "manifest.json").read_text())
    noise = read_noise(work / "truth" / "noise.csv")
    splits = pd.read_csv(work / "splits.csv", index_col="image_id")["split"]
    summary: dict[str, float] = {}
    for split in ("development", "benchmark"):
        faces = set(splits.index[splits == split])
        if not faces:
            continue
        p = points[points["image_id"].isin(faces)].reset_index(drop=True)
        p = p[np.isfinite(p["x_human"].to_numpy())].reset_index(drop=True)
        im = images[images["image_id"].isin(faces)]
        n = noise[noise["image_id"].isin(faces)]
        kinds = label_kinds(p, n)
        table = detection_table(p, n)
        print(f"\n## {split} split: {len(faces)} faces, {int((kinds != '').sum())} planted points")
        print(f"{'scorer':<17} {'kind':<12} {'pos':>5} {'AUROC':>7} {'AP':>7} {'R@90P':>7}")
        for row in table.itertuples():
            print(f"{row.scorer:<17} {row.kind:<12} {row.positives:>5} {row.auroc:>7.4f} {row.ap:>7.4f} "
                  f"{row.recall_at_90p:>7.4f}")
        # the issue's "all kinds" excludes swaps (a face-level flag, reported apart)
        auditor = table[table["scorer"] == "auditor"].set_index("kind")
        no_swaps = kinds != "swap"
        suspicion = 1 - np.nan_to_num(p["label_score"].to_numpy(dtype=np.float64), nan=1.0)
        positive = kinds[no_swaps] != ""
        auditor.loc["all_but_swaps", ["auroc", "ap", "recall_at_90p"]] = [
            auroc(suspicion[no_swaps], positive), average_precision(suspicion[no_swaps], positive),
            recall_at_precision(suspicion[no_swaps], positive)]
        print(f"auditor           all_but_swaps{positive.sum():>5} " + " ".join(
            f"{auditor.loc['all_but_swaps', c]:>7.4f}" for c in ("auroc", "ap", "recall_at_90p")))
        op = operating_point(p[no_swaps].reset_index(drop=True), kinds[no_swaps])
        norm = im.set_index("image_id")["normaliser"].reindex(p["image_id"]).to_numpy()
        true_xy = truth_points(work / "truth", p)
        moved = displacement(p, norm, true_xy, kinds)
        model_error = np.linalg.norm(p[["x_pred", "y_pred"]].to_numpy(dtype=np.float64) - true_xy, axis=1) / norm
        print(f"the model's position is {np.nanmean(model_error):.4f} NME from the labels before planting "
              f"(median {np.nanmedian(model_error):.4f})")
        swaps = swap_table(im, n)
        print(f"operating point (is_label_issue, swaps apart): {op['flags']} flags, precision {op['precision']:.3f}, "
              f"recall {op['recall']:.3f} (" + ", ".join(f"{k[7:]} {v:.2f}" for k, v in op.items()
                                                         if k.startswith("recall_")) + ")")
        print(f"swapped faces: {swaps['swapped_faces']}, found {swaps['swap_found']:.0%}, other faces flagged "
              f"{swaps['swap_false_flags']:.2%}")
        print(f"accepting every flag removes {moved['removed']:.1%} of the planted displacement; it moves "
              f"{moved['unplanted_flagged']} unplanted points by {moved['unplanted_move_nme']:.4f} NME on average "
              f"({moved['unplanted_move_share']:.1%} of the planted displacement)")
        default = p.assign(is_label_issue=(p["label_score"] < DEFAULT_THRESHOLD)
                           | (p["issue_type"] == "swapped_sides"))
        at_default = operating_point(default[no_swaps].reset_index(drop=True), kinds[no_swaps])
        print(f"at the uncalibrated threshold {DEFAULT_THRESHOLD}: precision {at_default['precision']:.3f}, "
              f"recall {at_default['recall']:.3f}")
        print("mean distance (NME) from the labels before planting of each candidate correction, over the flagged "
              "points of each planted kind (unplanted: flagged points nothing was planted on)")
        seeded = {"model-seeded search": model_seeded_search(work, p)}
        print(proposal_table(p, norm, true_xy, kinds, seeded).to_string(float_format=lambda v: f"{v:.4f}"))
        if split == "benchmark":
            worst = false_flag_sheet(work, p, norm, kinds)
            print(f"the {len(worst)} lowest-scored flags on unplanted points (drawn to {work / 'false_flags.png'}):")
            print(worst.to_string(index=False))
        prefix = "dev_" if split == "development" else "bench_"
        for kind in auditor.index:
            summary[f"{prefix}{kind}_ap"] = float(auditor.loc[kind, "ap"])
        for kind in ("chain_swap", "duplicate"):
            if kind in auditor.index:
                summary[f"{prefix}{kind}_auroc"] = float(auditor.loc[kind, "auroc"])
        summary.update({f"{prefix}precision": op["precision"], f"{prefix}recall": op["recall"],
                        f"{prefix}removed": moved["removed"], f"{prefix}model_nme": float(np.nanmean(model_error))})
    calibration = manifest.get("calibration")
    if calibration:
        print(f"\ncalibrated on the whole dataset's own planted copy: threshold {calibration['threshold']:.3g}, "
              f"expected precision {calibration['expected_precision']:.3f}, expected recall "
              f"{calibration['expected_recall']:.3f}")
        summary["expected_precision"] = calibration["expected_precision"]
        summary["expected_recall"] = calibration["expected_recall"]
    return summary


def trained(model: Path) -> bool:
    """Whether `model` is a finished training's checkpoint (training saves unfinished ones to resume from)."""
    from auditor.checkpoint import load_checkpoint

    return model.is_file() and load_checkpoint(model).get("state", {}).get("stage") == "done"


def subset(work: Path, full: Path, faces: int) -> None:
    """work/: the benchmark split and `faces` less its size of the unplanted faces of the full set (a seeded
    choice), linked from full/faces, for a learning-curve point; the truth is the full set's."""
    splits = pd.read_csv(full / "splits.csv", index_col="image_id")["split"]
    rest, bench = sorted(splits.index[splits == "rest"]), sorted(splits.index[splits == "benchmark"])
    if not len(bench) <= faces <= len(bench) + len(rest):
        sys.exit(f"--faces must be between {len(bench)} and {len(bench) + len(rest)}")
    order = np.random.default_rng(SEED).permutation(len(rest))
    keep = bench + sorted(rest[i] for i in order[: faces - len(bench)])
    for face in keep:
        for path in (full / "faces").glob(face + ".*"):
            link = work / "faces" / path.relative_to(full / "faces")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(path.resolve())
    if not (work / "truth").is_symlink():
        (work / "truth").symlink_to((full / "truth").resolve())
    splits[keep].to_csv(work / "splits.csv")


def out_of_sample(work: Path, full: Path, faces: int, train_faces: int) -> Path:
    """work/ for the out-of-sample point: work/faces links the development split and `train_faces` less its size of
    the unplanted faces (a choice seeded with OOF_SEED), none of the benchmark split; the model trained on them
    audits the learning-curve point's dataset full/faces_<faces> (its splits and truth), so the benchmark split is
    audited by a model that never saw it, beside the same faces audited by their own model."""
    splits = pd.read_csv(full / "splits.csv", index_col="image_id")["split"]
    rest, dev = sorted(splits.index[splits == "rest"]), sorted(splits.index[splits == "development"])
    if not len(dev) <= train_faces <= len(dev) + len(rest):
        sys.exit(f"--train-faces must be between {len(dev)} and {len(dev) + len(rest)}")
    order = np.random.default_rng(OOF_SEED).permutation(len(rest))
    for face in dev + sorted(rest[i] for i in order[: train_faces - len(dev)]):
        for path in (full / "faces").glob(face + ".*"):
            link = work / "faces" / path.relative_to(full / "faces")
            link.parent.mkdir(parents=True, exist_ok=True)
            if not link.is_symlink():
                link.symlink_to(path.resolve())
    in_sample = full / f"faces_{faces}"
    if not (work / "truth").is_symlink():
        (work / "truth").symlink_to((full / "truth").resolve())
    pd.read_csv(in_sample / "splits.csv").to_csv(work / "splits.csv", index=False)
    return in_sample / "faces"


def variant(work: Path, name: str) -> Path:
    """work/variant_<name>/: the same faces, truth and splits as `work` (links), for a model trained another way."""
    out = work / f"variant_{name}"
    out.mkdir(parents=True, exist_ok=True)
    for entry in ("faces", "truth", "splits.csv"):
        if not (out / entry).is_symlink():
            (out / entry).symlink_to((work / entry).resolve())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench_work/real_faces"))
    parser.add_argument("--quick", action="store_true", help="tiny preset, 24 + 24 faces")
    parser.add_argument("--faces", type=int, default=None,
                        help="a learning-curve point: train and audit on the benchmark split and FACES - 200 of "
                             "the unplanted faces (in WORKDIR/faces_FACES; the full run's planting is reused)")
    parser.add_argument("--out-of-sample", action="store_true",
                        help="with --faces: audit that point's dataset with a model trained on FACES other faces "
                             "(the development split and unplanted ones; in WORKDIR/oof_FACES), so the benchmark "
                             "split is audited by a model that never saw it")
    parser.add_argument("--train-faces", type=int, default=None,
                        help="with --out-of-sample: how many faces that model trains on (default FACES; from 160, "
                             "the development split alone), in WORKDIR/oof_FACES_trainTRAIN_FACES")
    parser.add_argument("--variant", default=None,
                        help="train and audit the point's faces again with the --set fields, in WORKDIR[/faces_N]"
                             "/variant_VARIANT")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="a training config field for --variant (repeatable), as `auditor train --set`")
    args = parser.parse_args()
    if args.overrides and not args.variant:
        sys.exit("--set needs --variant (a name for the directory its model goes to)")
    if args.train_faces is not None and not args.out_of_sample:
        sys.exit("--train-faces needs --out-of-sample")
    if args.out_of_sample and args.faces is None:
        sys.exit("--out-of-sample needs --faces (run that learning-curve point first)")
    work = args.workdir
    if not all((SHARED / folder).is_dir() for folder in SPLITS.values()):
        sys.exit(f"the real faces are not at {SHARED}")
    if not (work / "splits.csv").is_file():
        plant(work, args.quick)
    audited = None
    if args.faces is not None:
        train_faces = args.train_faces or args.faces
        name = f"faces_{args.faces}"
        if args.out_of_sample:
            name = f"oof_{args.faces}" + (f"_train{train_faces}" if train_faces != args.faces else "")
        full, work = work, work / name
        if args.out_of_sample:
            audited = out_of_sample(work, full, args.faces, train_faces)
        elif not (work / "splits.csv").is_file():
            subset(work, full, args.faces)
    if args.variant:
        work = variant(work, args.variant)
    audited = audited or work / "faces"
    preset = "tiny" if args.quick else "cpu"
    settings = [arg for pair in args.overrides for arg in ("--set", pair)]
    steps = [timed("trained", ["train", str(work / "faces"), "--out", str(work / "model.pt"), "--preset", preset,
                               *settings], trained(work / "model.pt")),
             timed("audited", ["audit", str(audited), "--model", str(work / "model.pt"), "--out",
                               str(work / "audit")], (work / "audit" / "manifest.json").is_file())]
    faces = len(pd.read_csv(work / "splits.csv"))
    print(f"{faces} real faces{' (quick)' if args.quick else ''}, {preset} preset: " + ", ".join(steps))
    summary = report(work)
    print(" ".join(f"{k}={v:.4f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
