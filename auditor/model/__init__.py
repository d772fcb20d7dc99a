"""The semantic-alignment model: stacked hourglass + GHCU, built from a preset `Config`."""

from __future__ import annotations

import torch
from torch import nn

from auditor.model.ghcu import GHCU
from auditor.model.hourglass import StackedHourglass
from auditor.model.presets import PRESETS, Config, get_preset


class LandmarkModel(nn.Module):
    """Images (B, 3, S, S) -> stack heatmaps (B, stacks, K, R, R) and GHCU-corrected heatmaps (B, K, R, R)."""

    def __init__(self, num_points: int, config: Config) -> None:
        super().__init__()
        self.config = config
        self.hourglass = StackedHourglass(num_points, stacks=config.stacks, channels=config.channels,
                                          depth=config.depth, input_size=config.input_size,
                                          heatmap_size=config.heatmap_size)
        self.ghcu = GHCU(num_points, channels=config.ghcu_channels, heatmap_size=config.heatmap_size)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        stacks = self.hourglass(images)  # (B, stacks, K, R, R)
        return stacks, self.ghcu(stacks[:, -1])


__all__ = ["GHCU", "PRESETS", "Config", "LandmarkModel", "StackedHourglass", "get_preset"]
