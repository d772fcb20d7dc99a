"""How well the audit finds planted label errors, beside the two reference scorers anyone can run.

    python benchmarks/audit_accuracy.py --workdir W        # synthetic (600 fresh faces) + real LFPW, cpu preset
    python benchmarks/audit_accuracy.py --quick            # a smoke run: tiny preset, few faces, a few minutes

(a) synthetic: `auditor synth` a fresh set (seed 2021, not the sample set's 2019), train the `cpu` preset on
its noisy labels, audit the same labels, evaluate against the planted noise and the truth.
(b) real: `auditor plant-noise` into ../shared/data/lfpw (errors only: real labels carry their own slides),
train the `cpu` preset on the noisy labels, audit, evaluate.
Scorers (higher = more suspicious): the auditor's 1 - label_score; the distance of the label from the model's
prediction alone; the residual of a robust PCA shape model of the labels alone. The scoring's defaults were
chosen on the sample set's audit (sample_data/audit), never on these sets.
Each step is skipped when its output is already in the work directory (delete it to redo).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

LFPW = Path(__file__).resolve().parents[2] / "shared" / "data" / "lfpw"


def run(*args: str) -> str:
    """Run the auditor CLI (this interpreter), echo the command, fail loudly, return stdout."""
    print("+ auditor", " ".join(args), flush=True)
    result = subprocess.run([sys.executable, "-m", "auditor.cli", *args], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def experiment(work: Path, data: Path, truth: Path, train_args: list[str]) -> tuple[dict, str]:
    """Train (unless a model is there), audit (unless an audit is there), evaluate; and what was run, timed."""
    model, audit = work / "model.pt", work / "audit"
    steps = []
    for what, done, args in (("trained", model.is_file(), ["train", str(data), "--out", str(model), *train_args]),
                             ("audited", (audit / "manifest.json").is_file(),
                              ["audit", str(data), "--model", str(model), "--out", str(audit)])):
        if done:
            steps.append(f"{what}: reused")
            continue
        started = time.perf_counter()
        run(*args)
        steps.append(f"{what} in {(time.perf_counter() - started) / 60:.1f} min")
    out = run("evaluate", str(audit), "--noise", str(truth / "noise.csv"), "--truth", str(truth), "--json")
    return json.loads(out), ", ".join(steps)


def print_tables(name: str, result: dict) -> None:
    print(f"\n## {name}: detection (1 - label_score for the auditor), planted errors vs unplanted points")
    print(f"{'scorer':<17} {'kind':<12} {'pos':>5} {'AUROC':>7} {'AP':>7} {'R@90P':>7}")
    for row in result["detection"]:
        print(f"{row['scorer']:<17} {row['kind']:<12} {row['positives']:>5} {row['auroc']:>7.4f} {row['ap']:>7.4f} "
              f"{row['recall_at_90p']:>7.4f}")
    s = result["swaps"]
    print(f"swapped faces: {s['swapped_faces']}, found {s['swap_found']:.1%}, other faces flagged "
          f"{s['swap_false_flags']:.2%}")
    if result["truth"]:
        print("mean error vs truth (NME); *_clean = points without a planted error; corrected = the labels with every "
              "flagged point's proposal accepted"
              + ("; truth = the labels before planting" if name.startswith("LFPW") else ""))
        print(f"{'position':<10} {'all':>8} {'contour':>8} {'crisp':>8} {'contour_clean':>14} {'crisp_clean':>12}")
        for row in result["truth"]:
            print(f"{row['position']:<10} {row['all']:>8.4f} {row['contour']:>8.4f} {row['crisp']:>8.4f} "
                  f"{row['contour_clean']:>14.4f} {row['crisp_clean']:>12.4f}")


def keys(prefix: str, result: dict) -> dict[str, float]:
    out = {}
    for row in result["detection"]:
        if row["scorer"] == "auditor":
            out[f"{prefix}{row['kind']}_auroc"] = row["auroc"]
            out[f"{prefix}{row['kind']}_ap"] = row["ap"]
        elif row["kind"] == "all":
            short = {"prediction": "pred", "shape model": "shape", "conditional shape": "cond"}[row["scorer"]]
            out[f"{prefix}{short}_all_auroc"] = row["auroc"]
            out[f"{prefix}{short}_all_ap"] = row["ap"]
    out[f"{prefix}swap_found"] = result["swaps"]["swap_found"]
    out[f"{prefix}swap_false_flags"] = result["swaps"]["swap_false_flags"]
    truth = {row["position"]: row for row in result["truth"] or []}
    if truth:
        out[f"{prefix}corrected_ratio"] = truth["corrected"]["all"] / truth["human"]["all"]
    if truth and truth["human"]["contour_clean"] > 0:  # on LFPW the "truth" is the labels before planting
        out[f"{prefix}contour_ratio"] = truth["searched"]["contour_clean"] / truth["human"]["contour_clean"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("bench_work/audit_accuracy"))
    parser.add_argument("--quick", action="store_true", help="tiny preset, 40 synthetic faces, no LFPW")
    parser.add_argument("--faces", type=int, default=600)
    parser.add_argument("--seed", type=int, default=2021)
    args = parser.parse_args()
    preset = ["--preset", "tiny"] if args.quick else ["--preset", "cpu"]
    faces = 40 if args.quick else args.faces
    summary = {}

    syn = args.workdir / "synthetic"
    if not (syn / "faces").is_dir():
        run("synth", str(syn), "--n", str(faces), "--seed", str(args.seed))
    result, steps = experiment(syn, syn / "faces", syn / "truth", preset)
    print_tables(f"synthetic, {faces} faces (seed {args.seed}), {preset[1]} preset ({steps})", result)
    summary.update(keys("syn_", result))

    if not args.quick:
        if not LFPW.is_dir():
            sys.exit(f"LFPW not found at {LFPW}")
        real = args.workdir / "lfpw"
        if not (real / "faces").is_dir():
            run("plant-noise", str(LFPW), str(real), "--seed", "0")
        result, steps = experiment(real, real / "faces", real / "truth", preset)
        print_tables(f"LFPW (160 real faces) with planted errors, {preset[1]} preset ({steps})", result)
        summary.update(keys("lfpw_", result))
    print(" ".join(f"{k}={v:.4f}" for k, v in summary.items()))


if __name__ == "__main__":
    main()
