"""Global Heatmap Correction Unit: K heatmaps in, K corrected heatmaps out, seeing the whole face at once.

Strided convolutions bring the maps from R x R down to 4 x 4, where every unit sees the whole face
and so can learn its shape constraint; transposed convolutions bring them back up. The output is
added to the input, so an untrained unit starts close to the identity and learns a correction.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _block(c_in: int, c_out: int, *, up: bool) -> nn.Sequential:
    conv = (nn.ConvTranspose2d(c_in, c_out, 4, stride=2, padding=1) if up
            else nn.Conv2d(c_in, c_out, 4, stride=2, padding=1))
    return nn.Sequential(conv, nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class GHCU(nn.Module):
    """Heatmaps (B, K, R, R) -> corrected heatmaps (B, K, R, R); R a power of two >= 8."""

    def __init__(self, num_points: int, *, channels: int, heatmap_size: int) -> None:
        super().__init__()
        levels = int(math.log2(heatmap_size // 4))
        if 4 * 2**levels != heatmap_size:
            raise ValueError(f"heatmap_size must be 4 times a power of two, got {heatmap_size}")
        widths = [min(channels * 2**i, 4 * channels) for i in range(levels + 1)]
        self.inp = nn.Sequential(nn.Conv2d(num_points, widths[0], 3, padding=1), nn.BatchNorm2d(widths[0]),
                                 nn.ReLU(inplace=True))
        self.down = nn.ModuleList(_block(widths[i], widths[i + 1], up=False) for i in range(levels))
        # two 3x3 convolutions at 4 x 4 push the receptive field past R: every unit sees the whole face
        self.bottleneck = nn.Sequential(*(layer for _ in range(2) for layer in (
            nn.Conv2d(widths[-1], widths[-1], 3, padding=1), nn.BatchNorm2d(widths[-1]), nn.ReLU(inplace=True))))
        self.up = nn.ModuleList(_block(widths[i + 1], widths[i], up=True) for i in reversed(range(levels)))
        self.out = nn.Conv2d(widths[0], num_points, 3, padding=1)
        # small, not zero: a zero layer would start at the identity but pass no gradient to the layers behind it
        nn.init.normal_(self.out.weight, std=1e-3)
        nn.init.zeros_(self.out.bias)

    def forward(self, heatmaps: torch.Tensor) -> torch.Tensor:
        x = self.inp(heatmaps)  # (B, C, R, R)
        skips = []
        for down in self.down:
            skips.append(x)
            x = down(x)  # halves R, down to (B, C', 4, 4)
        x = self.bottleneck(x)
        for up, skip in zip(self.up, reversed(skips), strict=True):
            x = up(x) + skip
        return heatmaps + self.out(x)
