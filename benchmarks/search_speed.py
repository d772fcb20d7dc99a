"""Speed and memory of the semantic search: the batched `search` against the loop `search_reference`.

    .venv/bin/python benchmarks/search_speed.py [--quick] [--threads N]

Prints a table of images/s at K in {68, 98}, R = 64, batch in {1, 16, 64} on the CPU (and in {1, ..., 1024}
on CUDA when present) and, last, one line of key=value pairs for K = 68, batch 64 on the CPU.

How it measures:
- Heatmaps look like a network's on a face crop: a Gaussian near each label (labels in [6, 58], so about a
  third of the windows cross the map's border, as jaw points do), a weaker second peak and noise.
- Fast: the median wall time of repeated calls (at least `--seconds` of them) after a warm-up.
- Naive: the loop is too slow to run whole batches, so it is timed on `--naive-points` points and
  extrapolated to images (its cost per point does not depend on the batch).
- Extra memory of one batch, CPU: the rise of the process's peak resident set (VmHWM, reset through
  /proc/self/clear_refs after `malloc_trim`) while one call runs, after a warm-up: everything the call
  allocates beyond its inputs, allocator overhead included. CUDA: `torch.cuda.max_memory_allocated`
  above the memory in use before the call. The ratio is against the batch's heatmaps (B·K·R²·4 bytes).
"""

from __future__ import annotations

import argparse
import ctypes
import os
import statistics
import time
from collections.abc import Callable

import torch

from auditor.heatmaps import encode
from auditor.search import SearchConfig, search, search_reference

R = 64


def face_like_heatmaps(batch: int, points: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, K, R, R) heatmaps and (B, K, 2) labels in heatmap pixels."""
    labels = 6 + torch.rand(batch, points, 2, generator=generator) * (R - 12)
    peaks = labels + torch.randn(batch, points, 2, generator=generator) * 1.5
    maps = encode(peaks, R) + 0.3 * encode(peaks + torch.randn(batch, points, 2, generator=generator) * 4, R)
    maps += 0.02 * torch.randn(maps.shape, generator=generator)
    return maps, labels


def wall_time(fn: Callable[[], object], device: torch.device, seconds: float, min_runs: int = 5) -> float:
    """Median seconds per call of fn, after one warm-up call."""
    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    fn()
    sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_runs or time.perf_counter() - start < seconds:
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def extra_memory_bytes(fn: Callable[[], object], device: torch.device) -> float:
    """Bytes one call of fn needs beyond what is allocated before it (see the module docstring); NaN if unknown."""
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device) - before)
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM to the current resident set
        before = _status_kb("VmRSS")
        fn()
        return float(_status_kb("VmHWM") - before) * 1024
    except OSError:
        return float("nan")


def naive_seconds_per_point(k: int, config: SearchConfig, points: int, generator: torch.Generator) -> float:
    """Seconds per point of the loop, timed on `points` points of face-like heatmaps with K points per image."""
    maps, labels = face_like_heatmaps(-(-points // k), k, generator)
    labels.view(-1, 2)[points:] = float("nan")  # invalid labels are skipped at once
    t = time.perf_counter()
    search_reference(maps, labels, config)
    return (time.perf_counter() - t) / points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter timings, fewer naive points")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads (default: all)")
    parser.add_argument("--seconds", type=float, default=None, help="time spent per fast measurement")
    parser.add_argument("--naive-points", type=int, default=None, help="points the naive loop is timed on")
    args = parser.parse_args()
    seconds = args.seconds if args.seconds is not None else (0.5 if args.quick else 2.0)
    naive_points = args.naive_points if args.naive_points is not None else (20 if args.quick else 136)
    torch.set_num_threads(args.threads)
    config = SearchConfig()
    generator = torch.Generator().manual_seed(0)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

    print(f"search speed: R={R}, h={config.window_half_width(R)}, similarity={config.similarity}, "
          f"torch {torch.__version__}, {args.threads} CPU threads, load average {os.getloadavg()[0]:.2f}")
    header = (f"{'device':6} {'K':>3} {'batch':>5} {'fast img/s':>11} {'naive img/s':>12} {'speedup':>8} "
              f"{'extra MiB':>10} {'maps MiB':>9} {'extra/maps':>10}")
    print(header)
    print("-" * len(header))
    key: dict[str, float] = {}
    naive_per_point: dict[int, float] = {}
    for device in devices:
        for k in (68, 98):
            for batch in (1, 16, 64) if device.type == "cpu" else (1, 16, 64, 256, 1024):
                if k not in naive_per_point:
                    naive_per_point[k] = naive_seconds_per_point(k, config, naive_points, generator)
                maps, labels = face_like_heatmaps(batch, k, generator)
                maps_d, labels_d = maps.to(device), labels.to(device)

                def run(maps_d: torch.Tensor = maps_d, labels_d: torch.Tensor = labels_d) -> object:
                    return search(maps_d, labels_d, config)

                fast = batch / wall_time(run, device, seconds)
                naive = 1 / (naive_per_point[k] * k)
                extra = extra_memory_bytes(run, device)
                size = maps.numel() * 4
                print(f"{device.type:6} {k:>3} {batch:>5} {fast:>11,.0f} {naive:>12.2f} {fast / naive:>8,.0f} "
                      f"{extra / 2**20:>10.1f} {size / 2**20:>9.1f} {extra / size:>10.2f}")
                if device.type == "cpu" and k == 68 and batch == 64:
                    key = {"fast_img_per_s": fast, "naive_img_per_s": naive, "speedup": fast / naive,
                           "extra_mem_mib": extra / 2**20, "extra_mem_ratio": extra / size}
    maps, labels = face_like_heatmaps(64, 68, generator)
    other = SearchConfig(similarity="chi2" if SearchConfig().similarity == "ncc" else "ncc")
    for device in devices:
        maps_d, labels_d = maps.to(device), labels.to(device)
        seconds_other = wall_time(lambda maps_d=maps_d, labels_d=labels_d: search(maps_d, labels_d, other), device,
                                  seconds)
        print(f"{device.type}: similarity={other.similarity}, K=68, batch 64: {64 / seconds_other:,.0f} img/s")
    print(f"naive: timed on {naive_points} points per K and extrapolated to images (the same for every batch; "
          "on CUDA rows the naive is the CPU loop)")
    print(" ".join(f"{name}={value:.4g}" for name, value in key.items())
          + f" threads={args.threads} K=68 R={R} batch=64 device=cpu")


if __name__ == "__main__":
    main()
