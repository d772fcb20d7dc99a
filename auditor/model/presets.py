"""Presets: frozen configs for the network and its training, selectable by name, overridable field by field."""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from pathlib import Path

import torch

from auditor.errors import InputError
from auditor.validation import allowed_types, dataclass_from_json

ROUND_TARGETS = ("proposed", "searched")


@dataclass(frozen=True)
class Config:
    """Everything that shapes a model and its training; a checkpoint stores it whole."""

    name: str = "cpu"
    # network
    stacks: int = 2
    channels: int = 64
    input_size: int = 128
    heatmap_size: int = 64
    depth: int = 4  # hourglass down-sampling levels: a 64 px map is 4 px at the bottom
    ghcu_channels: int = 32
    sigma: float = 1.5  # Gaussian target, heatmap px
    # training
    batch_size: int = 16
    lr: float = 1e-3
    foreground_weight: float = 100.0  # loss weight of a pixel: 1 + foreground_weight * target
    epochs: int = 30  # round 0, on the human labels
    min_images: int = 18_000  # round 0 and the GHCU each see at least this many crops (for_dataset)
    rounds: int = 2  # semantic-alignment rounds after round 0
    round_epochs: int = 6  # epochs of the hourglass, then of the GHCU, on each round's searched targets
    round_tolerance: float = 0.05  # stop early when targets move less than this (mean, heatmap px)
    round_targets: str = "proposed"  # a round's targets: the audit's proposals, or "searched" (the search alone)
    ghcu_epochs: int = 30  # round 0's GHCU (docs/method.md: fewer leave the cpu preset's far from converged)
    ghcu_drop: float = 0.15  # fraction of input heatmaps zeroed while training the GHCU
    ghcu_shift: float = 0.15  # fraction of input heatmaps displaced while training the GHCU
    # augmentation
    rotate_deg: float = 20.0
    scale_jitter: float = 0.15
    shift_jitter: float = 0.08  # fraction of the crop side
    flip: bool = True
    colour_jitter: float = 0.3
    blur: float = 0.3  # probability of a Gaussian blur
    workers: int = 0
    seed: int = 0
    # training speed (benchmarks/train_speed.py, benchmarks/README.md): the hourglass in channels_last memory
    # format, and its forward passes under bf16 autocast (the loss and the weights stay float32); bf16 None: where
    # the training device computes bf16 natively (`native_bf16`), resolved when training starts
    channels_last: bool = True
    bf16: bool | None = None

    def __post_init__(self) -> None:
        # every field within a range far beyond any preset: a config from a file asking for more is damaged, not
        # ambitious (and a depth of 2**63 would hang the check below)
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not low <= value <= high:  # NaN fails too
                raise InputError(f"{name} must be in [{low:g}, {high:g}], got {value}", field=name)
        if self.input_size % self.heatmap_size or self.input_size // self.heatmap_size not in (1, 2, 4):
            raise InputError(f"input_size ({self.input_size}) must be 1, 2 or 4 times heatmap_size "
                             f"({self.heatmap_size})", field="input_size")
        if self.heatmap_size % (2**self.depth):
            raise InputError(f"heatmap_size ({self.heatmap_size}) must be divisible by 2**depth ({2**self.depth})",
                             field="depth")
        if self.round_targets not in ROUND_TARGETS:
            raise InputError(f"round_targets must be one of {', '.join(ROUND_TARGETS)}, got {self.round_targets!r}",
                             field="round_targets")

    def for_dataset(self, num_faces: int) -> Config:
        """This config with round 0's hourglass and GHCU epochs each raised to ceil(min_images / num_faces)
        where that is more.

        A schedule counted in epochs shrinks with the dataset: the `cpu` preset's 30 epochs are 300 steps on 160
        photographs, too few for the network to learn real faces, so round 0 and its GHCU each see at least
        `min_images` crops (docs/method.md, "Decisions and why").
        """
        least = math.ceil(self.min_images / num_faces) if num_faces >= 1 else 0
        if least <= min(self.epochs, self.ghcu_epochs):
            return self
        return dataclasses.replace(self, epochs=max(self.epochs, least), ghcu_epochs=max(self.ghcu_epochs, least))


_RANGES = (("stacks", 1, 16), ("channels", 1, 2048), ("input_size", 8, 1024), ("heatmap_size", 4, 256),
           ("depth", 1, 8), ("ghcu_channels", 1, 2048), ("sigma", 0.1, 16), ("batch_size", 1, 4096),
           ("lr", 1e-9, 10), ("foreground_weight", 0, 1e6), ("epochs", 0, 100_000), ("min_images", 0, 10**9),
           ("rounds", 0, 100), ("round_epochs", 0, 100_000), ("round_tolerance", 0, 1e12), ("ghcu_epochs", 0, 100_000),
           ("ghcu_drop", 0, 1), ("ghcu_shift", 0, 1), ("rotate_deg", 0, 180), ("scale_jitter", 0, 2),
           ("shift_jitter", 0, 1), ("colour_jitter", 0, 1), ("blur", 0, 1), ("workers", 0, 256),
           ("seed", 0, 2**31 - 1))

PRESETS: dict[str, Config] = {
    "paper": Config(name="paper", stacks=4, channels=256, input_size=256, ghcu_channels=64, batch_size=16,
                    epochs=60, min_images=0, rounds=3, round_epochs=10, ghcu_epochs=20),
    "cpu": Config(),
    "tiny": Config(name="tiny", stacks=1, channels=16, input_size=64, heatmap_size=32, depth=3, ghcu_channels=8,
                   batch_size=4, epochs=1, min_images=0, rounds=1, round_epochs=1, ghcu_epochs=1, rotate_deg=10.0),
}


def native_bf16(device: str | torch.device) -> bool:
    """Whether `device` computes bf16 natively: a CUDA GPU that supports it, or a CPU with AVX-512 BF16 or AMX (read
    from /proc/cpuinfo; elsewhere, and on CPUs that would emulate it more slowly than float32, False)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def get_preset(name: str, **overrides: object) -> Config:
    """The named preset with some fields replaced; string values (from the CLI) are converted to the field's type."""
    if name not in PRESETS:
        raise InputError(f"unknown preset '{name}': expected one of {', '.join(PRESETS)}")
    base = PRESETS[name]
    fields = {f.name: f for f in dataclasses.fields(Config)}
    hints = typing.get_type_hints(Config)
    values = {}
    for key, value in overrides.items():
        if key not in fields:
            raise InputError(f"unknown config field '{key}': expected one of {', '.join(fields)}")
        allowed = allowed_types(hints[key])
        kind = next(t for t in allowed if t is not type(None))
        values[key] = _convert(key, value, kind, optional=type(None) in allowed)
    return dataclasses.replace(base, **values)


def config_from_json(data: object, *, source: str | None = None) -> Config:
    """A Config from the dict a checkpoint stores (`dataclasses.asdict`); an InputError naming `source` and the field
    for an unknown field or a value of the wrong type."""
    return dataclass_from_json(Config, data, source=source, field="config")


def parse_overrides(pairs: list[str]) -> dict[str, str]:
    """`["stacks=1", "lr=0.01"]` -> {"stacks": "1", "lr": "0.01"}."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"expected FIELD=VALUE, got {pair!r}", field="--set")
        out[key.strip()] = value.strip()
    return out


def _convert(key: str, value: object, kind: type, *, optional: bool = False) -> object:
    if not isinstance(value, str):
        return value
    if optional and value.lower() == "auto":
        return None
    try:
        if kind is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        return kind(value)
    except ValueError:
        raise InputError(f"expected a {kind.__name__} for '{key}', got {value!r}", field=key) from None
