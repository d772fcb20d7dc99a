"""CPU training speed of the `cpu` preset's hourglass step under each speed-up torch offers, at the same batch.

    python benchmarks/train_speed.py            # about 5 minutes on 2 cores; run it alone
    python benchmarks/train_speed.py --steps 5  # a quicker look
    python benchmarks/train_speed.py --variants "channels_last + bf16" "channels_last + bf16 + compile"

One training step = forward, the heatmap loss, backward and an Adam step, on random crops (batch 16, 128 px, the
`cpu` preset). Variants: the default (fp32, contiguous), channels_last memory format, bf16 autocast, both,
`torch.compile` (default mode), and 1 thread instead of all; `--variants` names any of VARIANTS, whose parts
combine. Each variant warms up for 3 steps (compile's
first steps are the compilation, timed apart) and is timed over STEPS steps; images/s is batch * steps / time.
The loss after the timed steps on the same fixed batch tells whether a variant still learns alike (bf16 rounds
the activations); accuracy at equal training time is the real test and needs a full training per variant.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import torch

from auditor.model import LandmarkModel, get_preset
from auditor.schemes import get_scheme
from auditor.train import heatmap_loss


def step_speed(variant: str, steps: int, seed: int = 0) -> dict[str, float]:
    """images/s of `steps` training steps of the cpu preset's hourglass under `variant`, and the final loss."""
    config = get_preset("cpu")
    torch.manual_seed(seed)
    k = get_scheme("300w_68").num_points
    model = LandmarkModel(k, config)
    hourglass = model.hourglass
    images = torch.rand(config.batch_size, 3, config.input_size, config.input_size)
    targets_hm = torch.rand(config.batch_size, k, 2) * (config.heatmap_size - 8) + 4
    threads = torch.get_num_threads()
    if "1 thread" in variant:
        torch.set_num_threads(1)
    if "channels_last" in variant:
        hourglass = hourglass.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    module = torch.compile(hourglass) if "compile" in variant else hourglass
    optimiser = torch.optim.Adam(hourglass.parameters(), lr=config.lr)
    autocast = (torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in variant else contextlib.nullcontext())

    def step() -> float:
        with autocast:
            predicted = module(images)
        loss = heatmap_loss(predicted.float(), targets_hm, config.sigma, config.foreground_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        return loss.item()

    started = time.perf_counter()
    for _ in range(3):
        step()
    warm = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(steps):
        loss = step()
    seconds = time.perf_counter() - started
    torch.set_num_threads(threads)
    return {"images_per_s": config.batch_size * steps / seconds, "warmup_s": warm, "loss": loss}


VARIANTS = ("default", "channels_last", "bf16", "channels_last + bf16", "compile", "1 thread",
            "channels_last + bf16 + compile", "channels_last + bf16 + 1 thread")
DEFAULT_VARIANTS = VARIANTS[:6]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15, help="timed steps per variant")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=DEFAULT_VARIANTS, metavar="VARIANT",
                        help=f"the variants to time, the first the reference (default: {', '.join(DEFAULT_VARIANTS)})")
    args = parser.parse_args()
    rows = {}
    print(f"cpu preset, batch {get_preset('cpu').batch_size}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}, {args.steps} timed steps")
    print(f"| variant | images/s | vs {args.variants[0]} | warm-up s (3 steps) | loss after |")
    print("|---|---|---|---|---|")
    for variant in args.variants:
        try:
            rows[variant] = step_speed(variant, args.steps)
        except Exception as e:  # compile needs a C++ toolchain; say so rather than stop
            print(f"| {variant} | failed: {type(e).__name__}: {str(e).splitlines()[0][:80]} | | | |")
            continue
        r, reference = rows[variant], rows.get(args.variants[0], {}).get("images_per_s", float("nan"))
        print(f"| {variant} | {r['images_per_s']:.1f} | {r['images_per_s'] / reference:.2f}x | "
              f"{r['warmup_s']:.1f} | {r['loss']:.4f} |", flush=True)
    print(" ".join(f"{v.replace(' + ', '_').replace(' ', '_')}_img_per_s={r['images_per_s']:.2f}"
                   for v, r in rows.items()))


if __name__ == "__main__":
    main()
