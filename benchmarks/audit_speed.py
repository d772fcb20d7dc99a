"""Audit throughput against bare model inference, and peak memory for 200 vs 2,000 faces.

    python benchmarks/audit_speed.py                 # about 12 min on 2 cores (sample model, cpu preset)
    python benchmarks/audit_speed.py --quick         # 40 / 120 faces, a minute or two
    python benchmarks/audit_speed.py --device cuda   # the model and the search on a GPU
    python benchmarks/audit_speed.py --workers 0     # load the faces in the measuring process, in turn

Datasets of N faces are the bundled sample faces repeated (a .pts folder of symlinked images and copied
labels, new ids), so nothing needs rendering. Each measurement runs in a fresh process:
- bare: the model over every face (`auditor.inference.iterate_heatmaps`: loading, cropping, forward), nothing kept,
  once as the audit runs it (each face and its mirror image: `flip`) and once with one pass per face (`bare 1x`),
  with the audit's loader (`--workers` processes loading the next faces meanwhile, the audit's default 1);
- audit: `auditor audit` in full (the same inference, the search, shape measures, the heatmap store, scoring,
  tables), with its default test-time flip and, at the larger size, with `--no-flip` (`audit 1x`).
Peak RSS is the process's VmHWM at the end. The targets: audit >= 0.8 x bare throughput (the same inference
on both sides: `throughput_ratio`; `single_pass_ratio` is audit 1x over bare 1x), and the audit's peak RSS
at 2,000 faces <= 1.2 x that at 200 (memory must not grow with the dataset beyond the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE, MODEL = ROOT / "sample_data" / "faces", ROOT / "sample_data" / "model.pt"


def make_dataset(out: Path, n: int) -> Path:
    """A .pts folder of n faces cycling through the sample faces."""
    sources = sorted(SAMPLE.glob("*.pts"))
    out.mkdir(parents=True)
    for i in range(n):
        src = sources[i % len(sources)]
        os.symlink(src.with_suffix(".jpg").resolve(), out / f"f{i:05d}.jpg")
        shutil.copyfile(src, out / f"f{i:05d}.pts")
    return out


def peak_rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def child(mode: str, data: Path, out: Path, batch_size: int, device: str, workers: int) -> None:
    """Run one measurement in this process and print it as JSON."""
    import torch

    from auditor.audit import run_audit
    from auditor.checkpoint import load_checkpoint, model_from_checkpoint
    from auditor.inference import iterate_heatmaps
    from auditor.io import read_dataset

    torch.set_num_threads(os.cpu_count() or 1)
    ds = read_dataset(data)
    started = time.perf_counter()
    flip = not mode.endswith(" 1x")
    if mode.startswith("bare"):
        model, _ = model_from_checkpoint(load_checkpoint(MODEL))
        for batch in iterate_heatmaps(model.to(device), ds, batch_size=batch_size, device=device, flip=flip,
                                      workers=workers):
            batch.ghcu_heatmaps.cpu()  # waits for the device, as the audit's measures do
    else:
        run_audit(ds, MODEL, out, device=device, batch_size=batch_size, flip=flip, workers=workers, progress=False)
    seconds = time.perf_counter() - started
    print(json.dumps({"faces": len(ds), "seconds": seconds, "peak_rss_mib": peak_rss_mib()}))


def measure(mode: str, data: Path, out: Path, batch_size: int, device: str, workers: int) -> dict:
    result = subprocess.run([sys.executable, __file__, "--child", mode, str(data), str(out), str(batch_size), device,
                             str(workers)],
                            capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"{mode} on {data} failed: {result.stderr.strip()[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]), sys.argv[6], int(sys.argv[7]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cpu", help="cpu or cuda: where the model (and the audit's search) run")
    parser.add_argument("--workers", type=int, default=1, help="loader processes, for bare and audit alike")
    args = parser.parse_args()
    small, large = (40, 120) if args.quick else (200, 2000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (small, large):
            data = make_dataset(Path(tmp) / f"d{n}", n)
            for mode in ("bare", "audit") if n == small else ("bare", "audit", "bare 1x", "audit 1x"):
                r = measure(mode, data, Path(tmp) / f"audit{n}", args.batch_size, args.device, args.workers)
                rows.append({"mode": mode, **r, "faces_per_s": r["faces"] / r["seconds"]})
    print(f"{'mode':<8} {'faces':>6} {'seconds':>8} {'faces/s':>8} {'peak RSS MiB':>13}")
    for r in rows:
        print(f"{r['mode']:<8} {r['faces']:>6} {r['seconds']:>8.1f} {r['faces_per_s']:>8.2f} "
              f"{r['peak_rss_mib']:>13.0f}")
    by = {(r["mode"], r["faces"]): r for r in rows}
    ratio = by["audit", large]["faces_per_s"] / by["bare", large]["faces_per_s"]
    single = by["audit 1x", large]["faces_per_s"] / by["bare 1x", large]["faces_per_s"]
    rss = by["audit", large]["peak_rss_mib"] / by["audit", small]["peak_rss_mib"]
    print(f"audit_fps={by['audit', large]['faces_per_s']:.2f} bare_fps={by['bare', large]['faces_per_s']:.2f} "
          f"throughput_ratio={ratio:.3f} single_pass_ratio={single:.3f} "
          f"rss_small_mib={by['audit', small]['peak_rss_mib']:.0f} "
          f"rss_large_mib={by['audit', large]['peak_rss_mib']:.0f} rss_ratio={rss:.3f} small={small} large={large} "
          f"device={args.device} workers={args.workers}")


if __name__ == "__main__":
    main()
