"""The `auditor` command."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from auditor.errors import InputError

app = typer.Typer(help="Audit facial-landmark annotations: find wrong labels and propose corrections.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)

FormatOpt = Annotated[str | None, typer.Option("--format", "-f",
                                               help="Annotation format: pts, wflw, csv or coco (detected if omitted).")]
SchemeOpt = Annotated[str | None, typer.Option(help="Landmark scheme: 300w_68, wflw_98, cofw_29, aflw_19 or a "
                                                    "scheme .json (inferred from the point count if omitted).")]
SkipBadOpt = Annotated[bool, typer.Option("--skip-bad", help="Skip malformed annotation files or lines, listing each, "
                                                             "instead of stopping at the first.")]
ImagesOpt = Annotated[Path | None, typer.Option(help="Folder the annotation's image paths are relative to "
                                                     "(default: the annotation file's folder).")]


def _read(path: Path, fmt: str | None, scheme: str | None, skip_bad: bool, images_root: Path | None):
    from auditor.io import read_dataset

    ds = read_dataset(path, format=fmt, scheme=scheme, skip_bad=skip_bad, images_root=images_root)
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
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as one JSON object.")] = False,
) -> None:
    """Show a dataset's format, images, faces, points, scheme and invalid or missing counts."""
    ds = _read(path, format, scheme, skip_bad, images_root)
    summary = ds.summary()
    if as_json:
        typer.echo(json.dumps(summary))
        return
    width = max(len(k) for k in summary)
    for key, value in summary.items():
        typer.echo(f"{key.replace('_', ' '):<{width}}  {value}")


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/faces (images + human .pts), OUT/truth (truth "
                                             ".pts + noise.csv).")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of faces.")] = 400,
    seed: Annotated[int, typer.Option(help="Random seed; the same seed gives byte-identical files.")] = 0,
    size: Annotated[int, typer.Option(min=64, help="Image side in pixels.")] = 256,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT/faces and OUT/truth if they exist.")] = False,
) -> None:
    """Render procedural faces with known true landmarks and human labels with planted noise."""
    from auditor.synth import generate

    for name in ("faces", "truth"):
        if (out / name).exists() and not force:
            raise InputError(f"{name}/ exists; pass --force to replace it", path=out)
    generate(out, n=n, seed=seed, size=size)
    typer.echo(f"wrote {n} faces to {out / 'faces'} and the truth to {out / 'truth'}")


@app.command("plant-noise")
def plant_noise_cmd(
    data: Annotated[Path, typer.Argument(help="The dataset to copy with noise (any supported format).")],
    out: Annotated[Path, typer.Argument(help="Output folder: OUT/faces (noisy labels, input format, images linked), "
                                             "OUT/truth (the original labels + noise.csv).")],
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    gross_rate: Annotated[float, typer.Option(help="Fraction of points with a gross error.")] = 0.02,
    gross_min: Annotated[float, typer.Option(help="Smallest gross error, in NME units.")] = 0.08,
    gross_max: Annotated[float, typer.Option(help="Largest gross error, in NME units.")] = 0.20,
    moderate_rate: Annotated[float, typer.Option(help="Fraction of points with a moderate error.")] = 0.02,
    moderate_min: Annotated[float, typer.Option(help="Smallest moderate error, in NME units.")] = 0.04,
    moderate_max: Annotated[float, typer.Option(help="Largest moderate error, in NME units.")] = 0.08,
    off_contour_rate: Annotated[float, typer.Option(help="Fraction of contour points moved along the normal.")] = 0.03,
    off_contour_min: Annotated[float, typer.Option(help="Smallest off-contour shift, in NME units.")] = 0.03,
    off_contour_max: Annotated[float, typer.Option(help="Largest off-contour shift, in NME units.")] = 0.06,
    swap_rate: Annotated[float, typer.Option(help="Fraction of faces labelled with left and right exchanged.")] = 0.03,
    slide_sigma: Annotated[float, typer.Option(help="Contour slide s.d., in NME units (0: real labels already "
                                                    "carry their own).")] = 0.0,
    jitter_sigma: Annotated[float, typer.Option(help="Per-axis jitter s.d. of every point, in NME units.")] = 0.0,
    format: FormatOpt = None,
    scheme: SchemeOpt = None,
    skip_bad: SkipBadOpt = False,
    images_root: ImagesOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace OUT if it exists.")] = False,
) -> None:
    """Plant known label errors into a real dataset, so the auditor can be measured on it."""
    from auditor.atomic import atomic_open
    from auditor.io import write_dataset
    from auditor.noise import NoiseConfig, plant_noise

    try:
        config = NoiseConfig(slide_sigma=slide_sigma, jitter_sigma=jitter_sigma, gross_rate=gross_rate,
                             gross_range=(gross_min, gross_max), moderate_rate=moderate_rate,
                             moderate_range=(moderate_min, moderate_max), off_contour_rate=off_contour_rate,
                             off_contour_range=(off_contour_min, off_contour_max), swap_rate=swap_rate)
    except ValueError as e:
        raise InputError(str(e)) from None
    ds = _read(data, format, scheme, skip_bad, images_root)
    if out.exists():
        if not force:
            raise InputError("output folder exists; pass --force to replace it", path=out)
        shutil.rmtree(out)
    noisy, table = plant_noise(ds.landmarks, ds.scheme, ds.image_ids, np.random.default_rng(seed), config,
                               labelled=ds.labelled, boxes=ds.boxes)
    fmt = ds.source_format
    name = data.name if data.is_file() else ""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write_dataset(ds.with_landmarks(noisy), tmp / "faces" / name, format=fmt)
    write_dataset(ds, tmp / "truth" / name, format=fmt)
    with atomic_open(tmp / "truth" / "noise.csv", newline="") as f:
        table.to_csv(f, index=False, float_format="%.6f")
    tmp.rename(out)
    counts = table.kind.value_counts()
    typer.echo(f"planted into {len(ds)} faces: " + ", ".join(f"{k} {int(counts.get(k, 0))}" for k in
                                                              ("gross", "moderate", "off_contour", "swap")))
    typer.echo(f"noisy labels: {out / 'faces' / name}  truth + noise.csv: {out / 'truth'}")


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="The training dataset (any supported format).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="The checkpoint to write (updated after every epoch).")],
    preset: Annotated[str, typer.Option(help="Model and training preset: paper, cpu or tiny.")] = "cpu",
    epochs: Annotated[int | None, typer.Option(help="Epochs of round 0, on the human labels.")] = None,
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
) -> None:
    """Train a semantic-alignment model (stacked hourglass + GHCU); Ctrl-C leaves a resumable checkpoint."""
    import torch

    from auditor.model.presets import get_preset, parse_overrides
    from auditor.train import train as run_training

    overrides = parse_overrides(set_ or [])
    if epochs is not None:
        overrides["epochs"] = epochs
    if rounds is not None:
        overrides["rounds"] = rounds
    config = get_preset(preset, **overrides)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
    ds = _read(data, format, scheme, skip_bad, images_root)
    if resume and not out.is_file():
        raise InputError("nothing to resume: the checkpoint does not exist", path=out)
    if not resume and out.exists():
        raise InputError("checkpoint exists; pass --resume to continue it or choose another --out", path=out)
    try:
        _, state = run_training(ds, config, out, device=device, resume=resume, log=typer.echo)
    except KeyboardInterrupt:
        typer.echo(f"interrupted: the last finished epoch is saved in {out}; continue with --resume", err=True)
        raise SystemExit(130) from None
    shifts = [h["target_shift_px"] for h in state["history"] if h["stage"] == "search"]
    typer.echo(f"saved {out}: {len(state['targets'])} target sets, target shifts per round (heatmap px): "
               + (", ".join(f"{s:.3f}" for s in shifts) or "none"))


def main() -> None:
    """Entry point: bad input prints one line and exits with code 2, no traceback; usage errors exit 2 too."""
    try:
        app()
    except InputError as e:
        typer.echo(f"auditor: error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
