"""The `auditor` command."""

from __future__ import annotations

import json
import os
import signal
import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

from auditor.errors import InputError

if TYPE_CHECKING:
    from auditor.dataset import Dataset
    from auditor.model.presets import Config

app = typer.Typer(help="Audit facial-landmark annotations: find wrong labels and propose corrections.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

FormatOpt = Annotated[str | None, typer.Option("--format", "-f",
                                               help="Annotation format: pts, wflw, csv or coco (detected if omitted).")]
SchemeOpt = Annotated[str | None, typer.Option(help="Landmark scheme: 300w_68, wflw_98, cofw_29, aflw_19 or a "
                                                    "scheme .json (inferred from the point count if omitted).")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Skip malformed annotation files or lines, listing each, "
                                                             "instead of stopping at the first.")]
TargetOpt = Annotated[float, typer.Option(min=0.0, max=1.0, help="Calibrate the issue threshold to this precision "
                                          "on a copy of the labels with planted errors (0: keep the default "
                                          "threshold).")]
ImagesOpt = Annotated[Path | None, typer.Option(help="Folder the annotation's image paths are relative to "
                                                     "(default: the annotation file's folder).")]


class AnnotatorSource(StrEnum):
    """Where `--annotators-from` finds who labelled each face."""

    folder = "folder"


AnnotatorsFromOpt = Annotated[AnnotatorSource | None, typer.Option(
    "--annotators-from", help="Read each face's annotator from the first folder level under DATA (pts trees: "
                              "DATA/<annotator>/<image>.pts).")]
AnnotatorsOpt = Annotated[int | None, typer.Option(
    "--annotators", min=1, help="Simulate this many annotators instead of the other noise options: each face labelled "
                                "by --per-face of them, each annotator with their own bias along and across the "
                                "contours, spread per point group and gross-error rate (auditor.noise.AnnotatorConfig);"
                                " their parameters go to OUT/truth/annotators.csv.")]
PerFaceOpt = Annotated[int | None, typer.Option(min=1, help="With --annotators: annotators per face, chosen at random "
                                                            "per face (default: 3, or --annotators if fewer).")]


def _annotator_config(annotators: int | None, per_face: int | None, **options: object):
    """The `AnnotatorConfig` of `--annotators` and `--per-face` (None without `--annotators`)."""
    from auditor.noise import AnnotatorConfig

    if annotators is None:
        if per_face is not None:
            raise InputError("--per-face needs --annotators")
        return None
    try:
        return AnnotatorConfig(num_annotators=annotators, per_face=min(3, annotators) if per_face is None else per_face,
                               **options)
    except ValueError as e:
        raise InputError(str(e).replace("num_annotators", "--annotators").replace("per_face", "--per-face")) from None


def _read(path: Path, fmt: str | None, scheme: str | None, skip_bad: bool, images_root: Path | None, *,
          annotators_from: AnnotatorSource | None = None):
    from auditor.io import read_dataset

    ds = read_dataset(path, format=fmt, scheme=scheme, skip_bad=skip_bad, images_root=images_root,
                      annotators_from=None if annotators_from is None else annotators_from.value)
    for file, reason in ds.skipped:
        typer.echo(f"skipped {file}: {reason}", err=True)
    return ds


@app.command()
def info(
    path: Annotated[Path, typer.Argument(help="A dataset: a folder of .pts, a WFLW .txt, a .csv or a COCO .json.")],
    format: FormatOpt = None,
    scheme: SchemeOpt = None,
    skip_bad: SkipBadOpt = False,
    images_root: ImagesOpt = None,
    annotators_from: AnnotatorsFromOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as one JSON object.")] = False,
) -> None:
    """Show a dataset's format, images, faces, annotators, subjects (faces of one person in one image, and how many
    are labelled k times), points, scheme and invalid or missing counts."""
    ds = _read(path, format, scheme, skip_bad, images_root, annotators_from=annotators_from)
    summary = ds.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        if isinstance(value, dict):  # one indented line per entry: faces per annotator, subjects labelled k times
            typer.echo(key.replace("_", " "))
            for name, count in value.items():
                typer.echo(f"  {name!s:<{width - 2}}  {count}")
        else:
            typer.echo(f"{key.replace('_', ' '):<{width}}  {value}")


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/faces (images + human .pts; with --annotators "
                                             "the images and OUT/faces/<annotator>/<face>.pts), OUT/truth (truth "
                                             ".pts + noise.csv, with --annotators annotators.csv).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of faces.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 0,
    size: Annotated[int, typer.Option(min=64, help="Image side in pixels.")] = 256,
    chain_swap_rate: Annotated[float, typer.Option(help="Fraction of neighbouring contour points exchanged (0: the "
                                                        "bundled sample set's recipe).")] = 0.0,
    duplicate_rate: Annotated[float, typer.Option(help="Fraction of points put on top of their nearest neighbour.")
                              ] = 0.0,
    annotators: AnnotatorsOpt = None,
    per_face: PerFaceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT/faces and OUT/truth if they exist.")] = False,
) -> None:
    """Render procedural faces with known true landmarks and human labels with planted noise (or of several
    simulated annotators)."""
    from auditor.noise import NoiseConfig
    from auditor.outputs import check_replaceable
    from auditor.synth import generate

    try:
        noise = NoiseConfig(chain_swap_rate=chain_swap_rate, duplicate_rate=duplicate_rate)
    except ValueError as e:
        raise InputError(str(e)) from None
    team = _annotator_config(annotators, per_face)
    for name in ("faces", "truth"):
        check_replaceable(out / name, force=force, command="synth")
    generate(out, n=n, seed=seed, size=size, noise=noise, annotators=team)
    labelled = "" if team is None else f", each labelled by {team.per_face} of {team.num_annotators} annotators,"
    typer.echo(f"wrote {n} faces{labelled} to {out / 'faces'} and the truth to {out / 'truth'}")


@app.command("plant-noise")
def plant_noise_cmd(
    data: Annotated[Path, typer.Argument(help="The dataset to copy with noise (any supported format).")],
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/faces (noisy labels, input format, images linked; "
                                             "with --annotators each face once per annotator), OUT/truth (the "
                                             "original labels + noise.csv, with --annotators annotators.csv).")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    gross_rate: Annotated[float, typer.Option(help="Fraction of points with a gross error.")] = 0.02,
    gross_min: Annotated[float, typer.Option(help="Smallest gross error, in NME units (also the annotators').")
                         ] = 0.08,
    gross_max: Annotated[float, typer.Option(help="Largest gross error, in NME units (also the annotators').")] = 0.20,
    moderate_rate: Annotated[float, typer.Option(help="Fraction of points with a moderate error.")] = 0.02,
    moderate_min: Annotated[float, typer.Option(help="Smallest moderate error, in NME units.")] = 0.04,
    moderate_max: Annotated[float, typer.Option(help="Largest moderate error, in NME units.")] = 0.08,
    off_contour_rate: Annotated[float, typer.Option(help="Fraction of contour points moved along the normal.")] = 0.03,
    off_contour_min: Annotated[float, typer.Option(help="Smallest off-contour shift, in NME units.")] = 0.03,
    off_contour_max: Annotated[float, typer.Option(help="Largest off-contour shift, in NME units.")] = 0.06,
    swap_rate: Annotated[float, typer.Option(help="Fraction of faces labelled with left and right exchanged.")] = 0.03,
    chain_swap_rate: Annotated[float, typer.Option(help="Fraction of neighbouring contour points exchanged (clicked "
                                                        "in the wrong order).")] = 0.005,
    duplicate_rate: Annotated[float, typer.Option(help="Fraction of points put on top of their nearest neighbour "
                                                       "(clicked twice).")] = 0.005,
    slide_sigma: Annotated[float, typer.Option(help="Contour slide s.d., in NME units (0: real labels already "
                                                    "carry their own).")] = 0.0,
    jitter_sigma: Annotated[float, typer.Option(help="Per-axis jitter s.d. of every point, in NME units.")] = 0.0,
    format: FormatOpt = None,
    scheme: SchemeOpt = None,
    skip_bad: SkipBadOpt = False,
    images_root: ImagesOpt = None,
    annotators_from: AnnotatorsFromOpt = None,
    annotators: AnnotatorsOpt = None,
    per_face: PerFaceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Plant known label errors into a real dataset (or simulate several annotators of it, its labels taken as the
    truth), so the auditor can be measured on it."""
    from auditor.atomic import atomic_directory, atomic_open
    from auditor.io import write_dataset
    from auditor.noise import ERROR_KINDS, NoiseConfig, annotated_dataset, draw_annotators, plant_noise
    from auditor.outputs import check_apart, check_replaceable, check_writable_location, dataset_inputs, write_marker

    try:
        config = NoiseConfig(slide_sigma=slide_sigma, jitter_sigma=jitter_sigma, gross_rate=gross_rate,
                             gross_range=(gross_min, gross_max), moderate_rate=moderate_rate,
                             moderate_range=(moderate_min, moderate_max), off_contour_rate=off_contour_rate,
                             off_contour_range=(off_contour_min, off_contour_max), swap_rate=swap_rate,
                             chain_swap_rate=chain_swap_rate, duplicate_rate=duplicate_rate)
    except ValueError as e:
        raise InputError(str(e)) from None
    team_config = _annotator_config(annotators, per_face, gross_range=(gross_min, gross_max))
    check_writable_location(out)
    ds = _read(data, format, scheme, skip_bad, images_root, annotators_from=annotators_from)
    fmt = ds.source_format
    if team_config is not None and ds.annotators is not None:
        raise InputError("the dataset already names who labelled each face; --annotators simulates annotators of "
                         "labels taken as the truth", path=data)
    if team_config is not None and fmt == "wflw":
        raise InputError("the WFLW format cannot name a face's annotator; for --annotators write the dataset as "
                         "pts, CSV or COCO first", path=data)
    check_apart(out, dataset_inputs(ds, data))
    check_replaceable(out, force=force, command="plant-noise")
    rng = np.random.default_rng(seed)
    if team_config is None:
        noisy, table = plant_noise(ds.landmarks, ds.scheme, ds.image_ids, rng, config, labelled=ds.labelled,
                                   boxes=ds.boxes)
        noisy_ds, team = ds.with_landmarks(noisy), None
    else:
        labels, face, names, team, table = draw_annotators(ds.landmarks, ds.scheme, ds.image_ids, rng, team_config,
                                                           labelled=ds.labelled, boxes=ds.boxes)
        noisy_ds = annotated_dataset(ds, labels, face, names)
    name = data.name if data.is_file() else ""
    with atomic_directory(out) as tmp:
        write_dataset(noisy_ds, tmp / "faces" / name, format=fmt)
        write_dataset(ds, tmp / "truth" / name, format=fmt)
        with atomic_open(tmp / "truth" / "noise.csv", newline="") as f:
            table.to_csv(f, index=False, float_format="%.6f")
        if team is not None:
            with atomic_open(tmp / "truth" / "annotators.csv", newline="") as f:
                team.to_csv(f, index=False, lineterminator="\n")
        write_marker(tmp, "plant-noise")
    if team is not None:
        typer.echo(f"{team_config.num_annotators} annotators, {team_config.per_face} per face: {len(noisy_ds)} label "
                   f"sets of {len(ds)} faces, {len(table)} gross errors")
        typer.echo(f"labels: {out / 'faces' / name}  truth + annotators.csv + noise.csv: {out / 'truth'}")
        return
    counts = table.kind.value_counts()
    typer.echo(f"planted into {len(ds)} faces: " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in ERROR_KINDS))
    typer.echo(f"noisy labels: {out / 'faces' / name}  truth + noise.csv: {out / 'truth'}")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="The training dataset (any supported format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The checkpoint to write (updated after every epoch); "
                                                          "with --folds, the folder of the k checkpoints.")],
    preset: Annotated[str, typer.Option(help="Model and training preset: paper, cpu or tiny.")] = "cpu",
    folds: Annotated[int | None, typer.Option(help="Train k models, each without one k-th of the images, so that "
                                                   "`auditor audit -m OUT` audits every face with a model that "
                                                   "never saw it (k trainings of (k-1)/k of the data).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs of round 0, on the human labels, exactly (default: "
                                                    "the preset's, raised on a small dataset so that round 0 "
                                                    "sees min_images crops; the GHCU's likewise, unless this "
                                                    "is given).")] = None,
    rounds: Annotated[int | None, typer.Option(help="Semantic-alignment rounds (search, then train) after round "
                                                    "0.")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override any preset field, e.g. --set "
                                                                  "stacks=1 --set lr=0.0005 (repeatable).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda when present).")] = "auto",
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run saved in --out.")] = False,
    format: FormatOpt = None,
    scheme: SchemeOpt = None,
    skip_bad: SkipBadOpt = False,
    images_root: ImagesOpt = None,
    annotators_from: AnnotatorsFromOpt = None,
) -> None:
    """Train a semantic-alignment model (stacked hourglass + GHCU); Ctrl-C leaves a resumable checkpoint."""
    import torch

    from auditor.model.presets import get_preset, parse_overrides
    from auditor.train import process_rank
    from auditor.train import train as run_training

    overrides = parse_overrides(set_ or [])
    if epochs is not None:
        overrides["epochs"] = epochs
        overrides.setdefault("min_images", "0")
    if rounds is not None:
        overrides["rounds"] = rounds
    config = get_preset(preset, **overrides)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    ds = _read(data, format, scheme, skip_bad, images_root, annotators_from=annotators_from)
    if folds is not None:
        _train_folds(ds, config, out, folds, device, resume)
        return
    if resume and not out.is_file():
        raise InputError("nothing to resume: the checkpoint does not exist", path=out)
    if not resume and out.exists():
        raise InputError("checkpoint exists; pass --resume to continue it or choose another --out", path=out)
    try:
        _, state = run_training(ds, config, out, device=device, resume=resume, log=typer.echo)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the last finished epoch is saved in {out}; continue with --resume", err=True)
        raise SystemExit(130) from None
    if process_rank() != 0:
        return  # under torchrun the first rank reports
    shifts = [h["target_shift_px"] for h in state["history"] if h["stage"] == "search"]
    typer.echo(f"saved {out}: {len(state['targets'])} target sets, target shifts per round (heatmap px): "
               + (", ".join(f"{s:.3f}" for s in shifts) or "none"))


def _train_folds(ds: Dataset, config: Config, out: Path, count: int, device: str, resume: bool) -> None:
    from auditor.folds import check_count, train_folds
    from auditor.outputs import is_empty_folder

    check_count(count)
    if resume and not out.is_dir():
        raise InputError("nothing to resume: the folds folder does not exist", path=out)
    if not resume and os.path.lexists(out) and not is_empty_folder(out):
        raise InputError("exists; pass --resume to continue its folds or choose another --out", path=out)
    try:
        paths = train_folds(ds, config, out, count=count, device=device, resume=resume, log=typer.echo)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the finished folds and the last finished epoch are saved in {out}; continue "
                   "with --resume", err=True)
        raise SystemExit(130) from None
    typer.echo(f"saved {len(paths)} fold models in {out}; audit with `auditor audit DATA -m {out}`")


@app.command()
def audit(
    data: Annotated[Path, typer.Argument(help="The dataset to audit (any supported format).")],
    model: Annotated[Path, typer.Option("--model", "-m", help="A checkpoint written by `auditor train`, or its "
                                                              "folder of --folds checkpoints.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The audit directory to write (replaced atomically; "
                                                          "its review decisions are kept).")],
    device: Annotated[str, typer.Option(help="cpu, cuda, cuda:1, ... (default: cuda when present).")] = "auto",
    batch_size: Annotated[int, typer.Option(min=1, help="Faces per model batch.")] = 32,
    shard: Annotated[str | None, typer.Option(help="Audit only shard i of n (i/n, contiguous blocks of faces); "
                                                   "join the shards with `auditor merge`.")] = None,
    flip: Annotated[bool, typer.Option("--flip/--no-flip", help="Average each face's heatmaps with its mirror "
                                       "image's (twice the model time; positions closer to the truth).")] = True,
    workers: Annotated[int, typer.Option(min=0, help="Processes that load and crop the next faces while the model "
                                         "and the search run (0: load them in turn).")] = 1,
    target_precision: TargetOpt = 0.9,
    format: FormatOpt = None,
    scheme: SchemeOpt = None,
    skip_bad: SkipBadOpt = False,
    images_root: ImagesOpt = None,
    annotators_from: AnnotatorsFromOpt = None,
) -> None:
    """Measure, score and type every label of a dataset with a trained model; write an audit directory."""
    from auditor.audit import parse_shard, run_audit

    parsed = None if shard is None else parse_shard(shard)
    ds = _read(data, format, scheme, skip_bad, images_root, annotators_from=annotators_from)
    source = {"path": str(data.resolve()), "images_root": None if images_root is None else str(images_root.resolve()),
              "annotators_from": None if annotators_from is None else str(annotators_from)}
    try:
        manifest = run_audit(ds, model, out, source=source, device=device, batch_size=batch_size, shard=parsed,
                             flip=flip, workers=workers, target_precision=target_precision or None)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: {out} was left as it was", err=True)
        raise SystemExit(130) from None
    _echo_counts(manifest, out)


def _echo_counts(manifest: dict, out: Path) -> None:
    counts, timing = manifest["counts"], manifest["timing"]
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(counts["issue_types"].items())) or "none"
    typer.echo(f"audited {counts['faces']} faces ({counts['points']} labels) in {timing['seconds']:.1f} s "
               f"({timing['faces_per_second']:.1f} faces/s): {counts['label_issues']} label issues in "
               f"{counts['faces_with_issues']} faces; by type: {kinds}")
    calibration = manifest.get("calibration") or {}
    if calibration.get("calibrated"):
        typer.echo(f"threshold {calibration['threshold']:.3g}, calibrated on {calibration['planted']} planted errors: "
                   f"expected precision {calibration['expected_precision']:.2f}, recall "
                   f"{calibration['expected_recall']:.2f} (target {calibration['target_precision']:.2f})")
    elif calibration.get("reason"):
        typer.echo(f"threshold {manifest['scoring']['issue_threshold']:.3g}, not calibrated: {calibration['reason']}")
    typer.echo(f"wrote {out}")


@app.command()
def merge(
    shards: Annotated[list[Path], typer.Argument(help="The shard audits (written with --shard i/n), all n of them.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The merged audit directory to write.")],
    target_precision: TargetOpt = 0.9,
) -> None:
    """Join the shard audits of one dataset and model into one audit, re-scored and calibrated over all faces."""
    from auditor.audit import merge_audits

    _echo_counts(merge_audits(shards, out, target_precision=target_precision or None), out)


@app.command()
def evaluate(
    audit_dir: Annotated[Path, typer.Argument(metavar="AUDIT", help="An audit directory.")],
    noise: Annotated[Path, typer.Option(help="The planted-noise table (noise.csv from `auditor synth` or "
                                             "`auditor plant-noise`).")],
    truth: Annotated[Path | None, typer.Option(help="The true labels (e.g. OUT/truth): adds the error vs truth "
                                                    "of the human, searched and predicted positions.")] = None,
    annotators_from: AnnotatorsFromOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the tables as one JSON object.")] = False,
) -> None:
    """Measure how well an audit finds planted errors: AUROC, AP and recall at 90 % precision per error kind."""
    from auditor.audit_dir import load_audit
    from auditor.evaluate import detection_table, read_noise, swap_table, truth_table

    _, points, images = load_audit(audit_dir)
    table = read_noise(noise)
    detection = detection_table(points, table)
    swaps = swap_table(images, table)
    near = None
    if truth is not None:
        truth_ds = _read(truth, None, None, False, None, annotators_from=annotators_from)
        near = truth_table(points, images, truth_ds, table)
    if as_json:
        typer.echo(json.dumps({"detection": detection.to_dict("records"), "swaps": swaps,
                               "truth": None if near is None else near.to_dict("records")}))
        return
    typer.echo(detection.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    typer.echo(f"swapped faces: {swaps['swapped_faces']}, found {swaps['swap_found']:.1%}, "
               f"other faces flagged {swaps['swap_false_flags']:.2%}")
    keys = {}
    ours = detection[detection["scorer"] == "auditor"]
    for row in ours.itertuples():
        keys[f"{row.kind}_auroc"] = row.auroc
        keys[f"{row.kind}_ap"] = row.ap
    for scorer, prefix in (("prediction", "prediction"), ("shape model", "shape"), ("conditional shape", "cond")):
        pooled = detection[(detection["scorer"] == scorer) & (detection["kind"] == "all")]
        if len(pooled):
            keys[f"{prefix}_all_auroc"] = pooled["auroc"].iloc[0]
            keys[f"{prefix}_all_ap"] = pooled["ap"].iloc[0]
    keys.update(swap_found=swaps["swap_found"], swap_false_flags=swaps["swap_false_flags"])
    if near is not None:
        typer.echo("mean error vs truth (NME); *_clean: points without a planted error; corrected: the labels with "
                   "every flagged point's proposal accepted")
        typer.echo(near.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        by = near.set_index("position")
        if by.loc["human", "contour_clean"] > 0:  # zero when the "truth" is the labels before planting
            keys["contour_ratio"] = by.loc["searched", "contour_clean"] / by.loc["human", "contour_clean"]
        if by.loc["human", "all"] > 0:
            keys["corrected_ratio"] = by.loc["corrected", "all"] / by.loc["human", "all"]
    typer.echo(" ".join(f"{k}={v:.4f}" for k, v in keys.items()))


@app.command()
def review(
    audit: Annotated[Path, typer.Argument(help="The audit directory (written by `auditor audit`).")],
    accept_where: Annotated[str | None, typer.Option(
        "--accept-where", help="Accept the proposed (searched) position of every labelled point for which a query "
                               "over points.parquet's columns (comparisons, and/or/not, in [...], arithmetic, "
                               ".str.contains/startswith/endswith; see auditor/query.py) is true, e.g. \"issue_type "
                               "== 'gross_error' and label_score < 0.2\".")] = None,
    reject_where: Annotated[str | None, typer.Option(
        "--reject-where", help="Reject the proposal (the label stays) of every labelled point for which a query "
                               "over points.parquet's columns (comparisons, and/or/not, in [...], arithmetic, "
                               ".str.contains/startswith/endswith; see auditor/query.py) is true.")] = None,
    reviewer: Annotated[str | None, typer.Option(help="Reviewer name recorded with each decision (default: your "
                                                      "login name).")] = None,
    note: Annotated[str | None, typer.Option(help="A note recorded with each decision.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Also decide points that already have a decision "
                                                                "(the new one supersedes it).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print how many points match; record "
                                                            "nothing.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Record without asking for confirmation.")] = False,
    order: Annotated[str, typer.Option(help="The review queue's order (the app's): gain (the largest expected error "
                                            "removed first, P(label wrong) x the fix's displacement; see "
                                            "auditor/triage.py) or score (the lowest label_score first).")] = "gain",
    limit: Annotated[int | None, typer.Option(min=1, help="Decide only the matching points of the first LIMIT items "
                                                          "of the queue in --order (a swapped face is one "
                                                          "item).")] = None,
) -> None:
    """Accept or reject in bulk the points a query selects; decisions go to AUDIT/reviews.sqlite."""
    from auditor.audit_dir import load_audit
    from auditor.review import ReviewStore, bulk_decisions, in_queue_order, select_points, undecided

    if (accept_where is None) == (reject_where is None):
        raise InputError("give exactly one of --accept-where and --reject-where")
    decision, where = ("accept", accept_where) if accept_where is not None else ("reject", reject_where)
    store = ReviewStore(audit)
    loaded = load_audit(audit)
    points = loaded.points
    selected = select_points(points, where, field=f"--{decision}-where")
    open_points = selected if overwrite else undecided(selected, store.latest())
    todo = in_queue_order(loaded, open_points, order=order, limit=limit)
    skipped = [f"{n} {why}" for n, why in ((len(selected) - len(open_points), "already decided, skipped (--overwrite "
                                            "decides them again)"), (len(open_points) - len(todo), "beyond --limit"))
               if n]
    typer.echo(f"{len(todo)} points match ({int(todo.is_label_issue.sum())} flagged as issues, "
               f"{todo.image_id.nunique()} faces)" + "".join(f"; {s}" for s in skipped))
    if dry_run and len(todo):
        typer.echo(f"the first in the queue (--order {order}):")
        typer.echo(todo[["image_id", "point", "point_name", "issue_type", "label_score"]].head(10).to_string(
            index=False, float_format=lambda v: f"{v:.3g}"))
    if dry_run or todo.empty:
        return
    if not yes:
        try:
            confirmed = typer.confirm(f"record '{decision}' for these {len(todo)} points?", abort=False)
        except typer.Abort:  # end of input (no terminal) or Ctrl-C at the prompt
            raise InputError("no answer on standard input; pass --yes to record without asking") from None
        if not confirmed:
            typer.echo("nothing recorded", err=True)
            raise typer.Exit(1)
    count = store.record_many(bulk_decisions(todo, decision, reviewer=reviewer, note=note))
    progress = store.progress(points[points.is_label_issue])
    typer.echo(f"recorded {count} '{decision}' decisions in {store.path}; issues decided: {progress['decided']} of "
               f"{progress['total']}")


@app.command("export-corrections")
def export_corrections_cmd(
    audit: Annotated[Path, typer.Argument(help="The audit directory (written by `auditor audit`).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="The corrections table to write: CSV, or the JSON "
                                                                 "of --format fiftyone / labelstudio.")] = None,
    only: Annotated[str, typer.Option(help="Which points: accepted (latest decision accept, edit or a face's "
                                           "mirror), issues (the audit's, decided or not, with their proposals) or "
                                           "all (every labelled point).")] = "accepted",
    write_labels: Annotated[Path | None, typer.Option(
        "--write-labels", help="Also write the whole dataset, with the accepted, edited and mirrored corrections "
                               "(--use consensus: the exported points' consensus) applied, into this folder (in "
                               "--format, else the input's).")] = None,
    format: Annotated[str | None, typer.Option(
        "--format", "-f", help="fiftyone or labelstudio: what -o holds instead of CSV; pts, wflw, csv or coco: the "
                               "format of --write-labels (default: the input's).")] = None,
    in_place: Annotated[bool, typer.Option(
        "--in-place", help="Write the corrected labels over the input dataset, after copying its annotation "
                           "file(s) to a timestamped backup beside them.")] = False,
    use: Annotated[str, typer.Option(
        help="The corrected positions: proposals (the curator's decisions, else the audit's proposals; only accepted "
             "and edited points are applied to labels) or consensus (each point's consensus of the annotators, the "
             "same for every label set of one person in one image; every exported point is applied, so --only all "
             "--write-labels writes the consensus as the labels). consensus needs a dataset that names its "
             "annotators.")] = "proposals",
    ls_document_root: Annotated[Path | None, typer.Option(
        "--ls-document-root", help="--format labelstudio: the folder Label Studio's local-files storage serves "
                                   "(LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT); task image URLs are "
                                   "/data/local-files/?d=<path below it>. Default: the dataset's root.")] = None,
    order: Annotated[str, typer.Option(help="The table's row order, the review queue's (as `auditor review "
                                            "--order`): gain (the largest expected error removed first) or score "
                                            "(the lowest label_score first).")] = "gain",
) -> None:
    """Export the reviewed corrections: a CSV (or FiftyOne / Label Studio JSON) and, optionally, corrected labels."""
    from auditor.export import export_corrections

    summary = export_corrections(audit, out=out, only=only, format=format, labels_dir=write_labels,
                                 in_place=in_place, use=use, ls_document_root=ls_document_root, order=order)
    if "table" in summary:
        typer.echo(f"wrote {summary['rows']} points of {summary['faces']} faces to {summary['table']}")
    if "config" in summary:
        typer.echo(f"wrote the Label Studio labelling config to {summary['config']}")
    if "labels" in summary:
        applied = ("accepted, edited or mirrored corrections" if summary["use"] == "proposals"
                   else "labels moved to their consensus")
        typer.echo(f"applied {summary['applied']} {applied}; corrected labels: "
                   f"{summary['labels']}" + (f" (original backed up to {summary['backup']})"
                                             if summary["backup"] else ""))


@app.command("report-annotators")
def report_annotators_cmd(
    audit: Annotated[Path, typer.Argument(help="The audit directory of a dataset with several annotators (written "
                                               "by `auditor audit`, or `auditor merge` of its shards).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The CSV to write: one row per annotator, best first "
                                                          "(AUDIT/annotators.parquet's columns).")],
) -> None:
    """Rank the annotators against the consensus: mean error with a bootstrap interval, bias along and across each
    point group, spread, gross-error rate, label issues per 100 points; write them as CSV."""
    from auditor.annotators import report_annotators

    table, worst = report_annotators(audit, out)
    worst = worst.set_index("annotator")
    for rank, row in enumerate(table.itertuples(index=False), start=1):
        face = (f"; farthest on {worst.loc[row.annotator, 'image_id']} ({worst.loc[row.annotator, 'mean_error']:.4f})"
                if row.annotator in worst.index else "")
        typer.echo(f"{rank}. {row.annotator}: {row.faces} faces, mean error {row.mean_error:.4f} "
                   f"[{row.mean_error_lo:.4f}, {row.mean_error_hi:.4f}] NME, gross rate {row.gross_rate:.1%}, "
                   f"{row.label_issues_per_100:.1f} issues per 100 points{face}")
    typer.echo(f"wrote {len(table)} annotators to {out}")


@app.command("export-sigmas")
def export_sigmas_cmd(
    audit: Annotated[Path, typer.Argument(help="The audit directory (written by `auditor audit`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The JSON to write: the scheme, its point names and one "
                                                          "COCO-style sigma per point, in the scheme's order.")],
) -> None:
    """Export each point's tolerance as COCO-style per-keypoint sigmas (pycocotools' `kpt_oks_sigmas`, FiftyOne's
    OKS), from the annotators' spread, or with one annotator per face the labels' spread around the searched
    positions."""
    from auditor.annotators import export_sigmas

    result = export_sigmas(audit, out)
    sigmas = np.asarray(result["sigmas"])
    typer.echo(f"wrote {len(sigmas)} sigmas of {result['scheme']} (from the {result['source']}; median "
               f"{np.median(sigmas):.4f}, range {sigmas.min():.4f} to {sigmas.max():.4f}) to {out}")


@app.command()
def report(
    audit: Annotated[Path, typer.Argument(help="The audit directory (written by `auditor audit`).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The HTML file to write: one self-contained page that "
                                                          "opens offline (plotly and the thumbnails inline).")],
    worst: Annotated[int, typer.Option(min=0, help="How many of the worst faces (lowest face score) to show, each "
                                                   "as a thumbnail with its labels and proposals.")] = 24,
) -> None:
    """Write a report to share: the dataset summary and calibration, the overview charts, the CED curves, issue rates
    by point group, the worst faces with labels and proposals drawn, and the decisions so far."""
    from auditor.report import write_report

    result = write_report(audit, out, worst=worst)
    if result["decisions_error"]:
        typer.echo(f"auditor: warning: decisions left out of the report: {result['decisions_error']}", err=True)
    typer.echo(f"wrote the report on {result['faces']:,} faces ({result['issues']:,} label issues, the "
               f"{result['worst']} worst faces shown) to {out} ({result['bytes'] / 1e6:.1f} MB)")


class Terminated(BaseException):
    """SIGTERM in the main process, raised where it lands so that every `with` block cleans up (a temp folder is
    removed, the previous output stays)."""


def _on_sigterm(signum: int, frame: object) -> None:
    if os.getpid() != _MAIN_PID:  # a loader worker: leave at once, the main process reports
        os._exit(128 + signum)
    raise Terminated


_MAIN_PID = os.getpid()


def main() -> None:
    """Entry point: bad input, and a file the system refuses to read or write, print one line and exit with code 2,
    no traceback (usage errors exit 2 too); SIGTERM exits 143 after removing what was half-written."""
    from auditor.io import os_reason

    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app()
    except InputError as e:
        typer.echo(f"auditor: error: {e}", err=True)
        sys.exit(2)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        typer.echo(f"auditor: error: {where}{os_reason(e, e.filename or '.')}", err=True)
        sys.exit(2)
    except Terminated:
        typer.echo("auditor: terminated; nothing half-written was left", err=True)
        sys.exit(143)


if __name__ == "__main__":
    main()
