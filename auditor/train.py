"""Semantic-alignment training: round 0 on the human labels, then rounds of search -> train; a GHCU after each.

Round 0 trains the hourglass on the human labels o, then the GHCU on its last stack. Round r >= 1 fixes the
network, audits the training faces with it and takes the audit's proposals as targets y^r (`round_targets`; the
search's window and prior always centred on o, DESIGN.md section 2), then fine-tunes the hourglass and the GHCU on
y^r. Every round's targets are kept in the checkpoint: they are the audit trail. A checkpoint is written after
every epoch, so an interrupted run resumes from the last finished epoch and ends with the same weights. Under
`torchrun` the same code trains with DistributedDataParallel and shards the search. docs/method.md says why the
rounds take the proposals rather than the search alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.nn import functional as F
from tqdm import tqdm

from auditor.audit import audit_tables
from auditor.audit_dir import PREDICTED_ISSUES, proposals
from auditor.augment import CropLoader, FaceCrops, face_squares
from auditor.checkpoint import dataset_fingerprint, load_checkpoint, save_checkpoint
from auditor.dataset import Dataset
from auditor.errors import InputError
from auditor.heatmaps import encode
from auditor.model import Config, LandmarkModel
from auditor.model.presets import native_bf16
from auditor.search import SearchConfig


def heatmap_loss(predicted: torch.Tensor, targets_hm: torch.Tensor, sigma: float,
                 foreground_weight: float = 0.0) -> torch.Tensor:
    """MSE of heatmaps (B, S, K, R, R) or (B, K, R, R) against Gaussians at targets (B, K, 2); NaN targets skipped.

    Each pixel weighs `1 + foreground_weight * target`: a Gaussian of sigma 1.5 covers 0.2 % of a 64 x 64
    map, and with plain MSE the all-zero map is a strong early attractor that a short CPU schedule may
    never leave.
    """
    target_maps = encode(targets_hm, predicted.shape[-1], sigma)  # (B, K, R, R)
    valid = torch.isfinite(targets_hm).all(-1).to(predicted.dtype)  # (B, K)
    if predicted.ndim == 5:
        target_maps, valid = target_maps[:, None], valid[:, None]
    per_map = ((predicted - target_maps) ** 2 * (1 + foreground_weight * target_maps)).mean(dim=(-1, -2))
    return (per_map * valid).sum() / valid.expand_as(per_map).sum().clamp_min(1.0)


def learning_rate(config: Config, stage: str, round_index: int, epoch: int) -> float:
    """The learning rate of an epoch: cosine from lr to lr / 10 over round 0's hourglass and GHCU stages, lr / 10
    in the alignment rounds (they fine-tune on searched targets). A function of the epoch alone, so resuming is
    exact."""
    if round_index > 0:
        return config.lr / 10
    epochs = config.epochs if stage == "hourglass" else config.ghcu_epochs
    progress = epoch / max(epochs - 1, 1)
    return config.lr / 10 + (config.lr - config.lr / 10) * 0.5 * (1 + math.cos(math.pi * progress))


def perturb_heatmaps(heatmaps: torch.Tensor, generator: torch.Generator, *, drop: float, shift: float,
                     max_shift_px: float) -> torch.Tensor:
    """Heatmaps (B, K, R, R) with a fraction `drop` zeroed and a fraction `shift` displaced, for GHCU training."""
    b, k, r, _ = heatmaps.shape
    u = torch.rand(b, k, generator=generator)
    keep = (u >= drop).to(heatmaps.dtype)
    moved = (u >= drop) & (u < drop + shift)
    offsets = (torch.rand(b, k, 2, generator=generator) * 2 - 1) * max_shift_px * moved[..., None]
    theta = torch.zeros(b * k, 2, 3, dtype=heatmaps.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, :, 2] = -offsets.reshape(-1, 2).to(heatmaps.dtype) * 2 / r  # grid units span 2 over R pixels
    grid = F.affine_grid(theta.to(heatmaps.device), [b * k, 1, r, r], align_corners=False)
    shifted = F.grid_sample(heatmaps.reshape(b * k, 1, r, r), grid, align_corners=False).reshape(b, k, r, r)
    return shifted * keep[..., None, None]


def process_rank() -> int:
    """This process's rank under torchrun (its RANK variable); 0 when run alone."""
    return int(os.environ.get("RANK", "0"))


class _Distributed:
    """Rank and world size under torchrun (1 process otherwise), and the collectives training needs."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = process_rank()
        self.started_here = False
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
            self.started_here = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        if self.world == 1:
            return module
        return torch.nn.parallel.DistributedDataParallel(module)

    def gather_faces(self, values: np.ndarray) -> np.ndarray:
        """Combine (N, ...) arrays where each rank filled only its shard of the faces (every world-th from its
        rank)."""
        if self.world == 1:
            return values
        owned = (np.arange(len(values)) % self.world == self.rank).reshape(-1, *[1] * (values.ndim - 1))
        t = torch.from_numpy(np.where(owned, np.nan_to_num(values), 0.0).astype(np.float64))
        nan = torch.from_numpy((owned & np.isnan(values)).astype(np.float64))
        dist.all_reduce(t)
        dist.all_reduce(nan)
        return np.where(nan.numpy() > 0, np.nan, t.numpy())

    def average_buffers(self, module: torch.nn.Module) -> None:
        """Average the floating-point buffers (BatchNorm running statistics) over the ranks.

        DDP broadcasts buffers before each forward, but the forward then updates them from the local
        batch: without this the ranks end every epoch with different statistics, and their shards of
        the search would run different models.
        """
        if self.world == 1:
            return
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= self.world

    def weight_hashes(self, module: torch.nn.Module) -> list[str]:
        """A hash of `module`'s weights on every rank (rank 0 first): equal when the ranks agree."""
        digest = hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in module.state_dict().values()))
        mine = digest.hexdigest()[:16]
        if self.world == 1:
            return [mine]
        hashes: list[str | None] = [None] * self.world
        dist.all_gather_object(hashes, mine)
        return [str(h) for h in hashes]

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item() / self.world)

    def finish(self) -> None:
        """Wait for every rank: one that tears down while its peer is still saving can make gloo abort the peer."""
        if self.world > 1:
            dist.barrier()

    def close(self) -> None:
        """Destroy the process group after a garbage collection. With `finish` this stopped a rare abort at
        exit under gloo ("terminate called without an active exception"); its cause was not pinned down."""
        if self.started_here:
            gc.collect()
            dist.destroy_process_group()


def round_targets(model: LandmarkModel, ds: Dataset, config: Config, search_config: SearchConfig, *,
                  device: torch.device, batch_size: int, shard: tuple[int, int] = (0, 1),
                  gather: Callable[[np.ndarray], np.ndarray] | None = None) -> tuple[np.ndarray, dict[str, int]]:
    """A round's targets (N, K, 2) in image pixels (NaN where the label is missing), and counts: the points
    flagged as label issues, and those that took the audit's proposal instead of the search's position.

    The training faces are audited with the model as it stands (`auditor.audit.audit_tables`: the GHCU's
    heatmaps, or the last stack's without a GHCU, averaged with the mirror image's with `config.flip`), and
    the targets are what the audit proposes (`auditor.audit_dir.proposals`). A label flagged as a gross error,
    off-contour or a duplicate takes the labels' shape model's conditional mean, a label of swapped sides the
    model's position: the search, held near the label by its prior, cannot reach either. Every other label takes
    the position searched with the proposal's prior (1 px on crisp points; on contour points 6 px along the
    labels' own contour, 1.5 across). With `config.round_targets == "searched"` every point takes the searched
    position (the paper's search alone). A label whose window holds no valid search stays.
    """
    points, _ = audit_tables(model, ds, search_config=search_config, device=device, batch_size=batch_size,
                             flip=config.flip, use_ghcu=config.ghcu_epochs > 0, shard=shard, gather=gather)
    human = points[["x_human", "y_human"]].to_numpy(float)
    searched = points[["x_searched", "y_searched"]].to_numpy(float)
    x, y, _ = proposals(points)
    # only a flagged label takes the model's position; where the search found nothing valid, the label stays
    to_model = points["issue_type"].isin(PREDICTED_ISSUES).to_numpy() & (config.round_targets == "proposed")
    targets = np.where(to_model[:, None], np.stack([x, y], -1),
                       np.where(np.isfinite(searched).all(-1, keepdims=True), searched, human))
    labelled = np.isfinite(human).all(-1)
    targets = np.where(labelled[:, None], targets, np.nan).reshape(ds.landmarks.shape)
    counts = {"label_issues": int(points["is_label_issue"].sum()),
              "predicted_targets": int((to_model & labelled).sum())}
    return targets, counts


def target_shift_px(new: np.ndarray, old: np.ndarray, ds: Dataset, config: Config) -> float:
    """Mean distance between two sets of targets (N, K, 2), in heatmap pixels."""
    _, sides = face_squares(ds)
    d = np.linalg.norm(new - old, axis=-1) * (config.heatmap_size / sides)[:, None]
    return float(np.nanmean(d)) if np.isfinite(d).any() else 0.0


def _loader(crops: FaceCrops, config: Config, epoch: int, dd: _Distributed) -> CropLoader:
    crops.set_epoch(epoch)
    if dd.world > 1:
        sampler = torch.utils.data.DistributedSampler(crops, num_replicas=dd.world, rank=dd.rank, shuffle=True,
                                                      seed=config.seed)
        sampler.set_epoch(epoch)
    else:
        generator = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
        sampler = torch.utils.data.RandomSampler(crops, generator=generator)
    return CropLoader(crops, batch_size=config.batch_size, sampler=sampler, num_workers=config.workers,
                      drop_last=len(crops) > config.batch_size)


def _fresh_state(ds: Dataset) -> dict[str, Any]:
    return {"stage": "hourglass", "round": 0, "epoch": 0, "global_epoch": 0, "targets": [],
            "image_ids": list(ds.image_ids), "dataset": dataset_fingerprint(ds.image_ids), "history": [],
            "optimizer": None, "ghcu_optimizer": None}


RoundHook = Callable[[int, LandmarkModel], None]


def train(ds: Dataset, config: Config, out: str | Path, *, device: str | torch.device = "cpu", resume: bool = False,
          search_config: SearchConfig | None = None, align: bool = True, on_round_end: RoundHook | None = None,
          progress: bool = True, log: Callable[[str], None] = print, fold: tuple[int, int] | None = None
          ) -> tuple[LandmarkModel, dict[str, Any]]:
    """Train a semantic-alignment model on `ds`, writing the checkpoint `out` after every epoch; returns it and
    the training state (targets of every round, history).

    `align=False` trains every round on the human labels instead of searched targets (the control a
    benchmark compares against); `on_round_end(round, model)` is called after each round's training (its
    hourglass, then its GHCU); `fold` (index, count) marks the checkpoint as one of `auditor.folds`' models.
    """
    out, device = Path(out), torch.device(device)
    dd = _Distributed(device)
    try:
        result = _train(ds, config, out, device, resume, search_config, align, on_round_end, progress, log, dd, fold)
        dd.finish()
        return result
    finally:
        dd.close()


def _train(ds: Dataset, config: Config, out: Path, device: torch.device, resume: bool,
           search_config: SearchConfig | None,
           align: bool, on_round_end: RoundHook | None, progress: bool, log: Callable[[str], None],
           dd: _Distributed, fold: tuple[int, int] | None = None) -> tuple[LandmarkModel, dict[str, Any]]:
    torch.manual_seed(config.seed)
    if resume:
        payload = load_checkpoint(out)
        if payload["state"]["dataset"] != dataset_fingerprint(ds.image_ids):
            raise InputError("this checkpoint was trained on another dataset (face ids differ)", path=out)
        config = Config(**payload["config"])
        state = payload["state"]
        model = LandmarkModel(ds.num_points, config)
        model.load_state_dict(payload["model"])
        log(f"resuming {out}: stage {state['stage']}, round {state['round']}, epoch {state['epoch']}")
    else:
        state = _fresh_state(ds)
        if fold is not None:
            state["fold"] = list(fold)
        sized = config.for_dataset(len(ds))
        if sized != config:
            log(f"round 0: {sized.epochs} epochs, GHCU: {sized.ghcu_epochs} (preset: {config.epochs}, "
                f"{config.ghcu_epochs}), so that each sees at least min_images = {config.min_images} crops of "
                f"these {len(ds)} faces")
        config = sized
        if config.bf16 is None:
            config = dataclasses.replace(config, bf16=native_bf16(device))
            log(f"bf16 autocast {'on' if config.bf16 else 'off'}: {device.type} "
                f"{'computes' if config.bf16 else 'does not compute'} bf16 natively (--set bf16=false/true to choose)")
        model = LandmarkModel(ds.num_points, config)
    search_config = search_config or SearchConfig()
    model.to(device)
    if config.channels_last:
        model.hourglass.to(memory_format=torch.channels_last)

    def autocast() -> contextlib.AbstractContextManager:
        return torch.autocast(device.type, dtype=torch.bfloat16) if config.bf16 else contextlib.nullcontext()
    optimiser = torch.optim.Adam(model.hourglass.parameters(), lr=config.lr)
    ghcu_optimiser = torch.optim.Adam(model.ghcu.parameters(), lr=config.lr)
    if state["optimizer"] is not None:
        optimiser.load_state_dict(state["optimizer"])
    if state["ghcu_optimizer"] is not None:
        ghcu_optimiser.load_state_dict(state["ghcu_optimizer"])
    hourglass, ghcu = dd.wrap(model.hourglass), dd.wrap(model.ghcu)

    def save() -> None:
        # a finished model needs no optimiser state: it would triple the file
        running = state["stage"] != "done"
        state["optimizer"] = optimiser.state_dict() if running else None
        state["ghcu_optimizer"] = ghcu_optimiser.state_dict() if running else None
        if dd.main:
            save_checkpoint(out, model=model, scheme=ds.scheme, state=state)

    def run_epoch(stage: str, targets: np.ndarray, label: str) -> None:
        crops = FaceCrops(ds, config, targets, augment=True, seed=config.seed)
        loader = _loader(crops, config, state["global_epoch"], dd)
        generator = torch.Generator().manual_seed(config.seed * 7919 + state["global_epoch"])
        module, opt = (hourglass, optimiser) if stage == "hourglass" else (ghcu, ghcu_optimiser)
        for group in opt.param_groups:
            group["lr"] = learning_rate(config, stage, state["round"], state["epoch"])
        model.train()
        if stage == "ghcu":
            model.hourglass.eval()
        losses, seen, start = [], 0, time.perf_counter()
        bar = tqdm(loader, desc=label, disable=None if progress and dd.main else True, leave=False, unit="batch")
        for images, targets_hm, _ in bar:
            images, targets_hm = images.to(device), targets_hm.to(device)
            if config.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            if stage == "hourglass":
                with autocast():
                    predicted = module(images)
                loss = heatmap_loss(predicted.float(), targets_hm, config.sigma, config.foreground_weight)
            else:
                with torch.no_grad(), autocast():
                    inputs = model.hourglass(images)[:, -1].float()
                inputs = perturb_heatmaps(inputs, generator, drop=config.ghcu_drop, shift=config.ghcu_shift,
                                          max_shift_px=config.heatmap_size / 8)
                with autocast():
                    predicted = module(inputs)
                loss = heatmap_loss(predicted.float(), targets_hm, config.sigma, config.foreground_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
            seen += len(images)
            bar.set_postfix(loss=f"{losses[-1]:.5f}")
        elapsed = time.perf_counter() - start
        dd.average_buffers(model)
        entry = {"stage": stage, "round": state["round"], "epoch": state["epoch"] + 1, "lr": opt.param_groups[0]["lr"],
                 "loss": dd.mean(float(np.mean(losses)) if losses else math.nan),
                 "images_per_s": dd.mean(seen / max(elapsed, 1e-9)) * dd.world}
        state["history"].append(entry)
        state["epoch"] += 1
        state["global_epoch"] += 1
        if dd.main:
            log(f"{label} epoch {entry['epoch']}: loss {entry['loss']:.5f}, {entry['images_per_s']:.1f} img/s")

    def finish() -> None:
        state["stage"] = "done"
        state["rank_weight_hashes"] = dd.weight_hashes(model)
        save()

    if not out.exists() or not resume:
        save()
    with_ghcu = config.ghcu_epochs > 0  # without a GHCU the rounds audit the last stack
    while state["stage"] != "done":
        r = state["round"]
        if state["stage"] == "hourglass":
            if len(state["targets"]) <= r:
                if r == 0 or not align:
                    targets = ds.landmarks
                else:
                    targets, counts = round_targets(model, ds, config, search_config, device=device,
                                                    batch_size=config.batch_size * 2, shard=(dd.rank, dd.world),
                                                    gather=dd.gather_faces)
                    shift = target_shift_px(targets, state["targets"][-1].numpy(), ds, config)
                    state["history"].append({"stage": "search", "round": r, "target_shift_px": shift, **counts})
                    if dd.main:
                        log(f"round {r}: targets moved {shift:.3f} heatmap px on average; {counts['label_issues']} "
                            f"label issues, {counts['predicted_targets']} targets from the model's position")
                state["targets"].append(torch.from_numpy(np.asarray(targets, dtype=np.float32)))
                save()
                if align and r >= 1 and state["history"][-1]["target_shift_px"] < config.round_tolerance:
                    finish()  # the network is already trained on targets this close
                    continue
            epochs = config.epochs if r == 0 else config.round_epochs
            while state["epoch"] < epochs:
                run_epoch("hourglass", state["targets"][r].double().numpy(), f"round {r}")
                save()
            state["stage"], state["epoch"] = "ghcu", 0
            save()
        else:
            epochs = (config.ghcu_epochs if r == 0 else config.round_epochs) if with_ghcu else 0
            while state["epoch"] < epochs:
                run_epoch("ghcu", state["targets"][r].double().numpy(), f"round {r} ghcu")
                save()
            state["round"], state["epoch"] = r + 1, 0
            if on_round_end is not None:
                on_round_end(r, model)
            if state["round"] > config.rounds:
                finish()
            else:
                state["stage"] = "hourglass"
                save()
    return model, state

