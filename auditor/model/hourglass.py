"""Stacked hourglass network (Newell et al., 2016) with intermediate supervision."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class Residual(nn.Module):
    """Pre-activation bottleneck residual block, (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        mid = max(c_out // 2, 1)
        self.body = nn.Sequential(
            nn.BatchNorm2d(c_in), nn.ReLU(inplace=True), nn.Conv2d(c_in, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, c_out, 1),
        )
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """One hourglass: `depth` levels of pool -> residual -> (recurse) -> upsample, with a skip at each level."""

    def __init__(self, depth: int, channels: int) -> None:
        super().__init__()
        self.skip = Residual(channels, channels)
        self.down = Residual(channels, channels)
        self.inner = Hourglass(depth - 1, channels) if depth > 1 else Residual(channels, channels)
        self.up = Residual(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2))))
        return self.skip(x) + F.interpolate(low, scale_factor=2, mode="nearest")


class StackedHourglass(nn.Module):
    """Image (B, 3, S, S) -> heatmaps of every stack (B, stacks, K, R, R); the last stack is the prediction."""

    def __init__(self, num_points: int, *, stacks: int, channels: int, depth: int, input_size: int,
                 heatmap_size: int) -> None:
        super().__init__()
        stride = input_size // heatmap_size
        half = max(channels // 2, 1)
        layers: list[nn.Module] = [nn.Conv2d(3, half, 7, stride=min(stride, 2), padding=3), nn.BatchNorm2d(half),
                                   nn.ReLU(inplace=True), Residual(half, half)]
        if stride == 4:
            layers.append(nn.MaxPool2d(2))
        layers += [Residual(half, half), Residual(half, channels)]
        self.stem = nn.Sequential(*layers)
        self.hourglasses = nn.ModuleList(Hourglass(depth, channels) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(channels, channels), nn.Conv2d(channels, channels, 1), nn.BatchNorm2d(channels),
                          nn.ReLU(inplace=True)) for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(channels, num_points, 1) for _ in range(stacks))
        self.merge_features = nn.ModuleList(nn.Conv2d(channels, channels, 1) for _ in range(stacks - 1))
        self.merge_heatmaps = nn.ModuleList(nn.Conv2d(num_points, channels, 1) for _ in range(stacks - 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)  # (B, C, R, R)
        outputs = []
        for i, (hourglass, features, head) in enumerate(zip(self.hourglasses, self.features, self.heads,
                                                            strict=True)):
            y = features(hourglass(x))
            heatmaps = head(y)  # (B, K, R, R)
            outputs.append(heatmaps)
            if i < len(self.merge_features):
                x = x + self.merge_features[i](y) + self.merge_heatmaps[i](heatmaps)
        return torch.stack(outputs, dim=1)
