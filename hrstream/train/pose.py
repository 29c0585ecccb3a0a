"""Top-down pose training (the official HRNet recipe) and its COCO validation with ground-truth boxes.

Recipe (``experiments/coco/hrnet/*_adam_lr1e-3.yaml``): official initialisation, gaussian heatmaps of
``MODEL.SIGMA`` (2), ``JointsMSELoss`` with target weights, Adam at ``TRAIN.LR`` (1e-3), ``MultiStepLR``
(``TRAIN.LR_STEP``, ``TRAIN.LR_FACTOR``) stepped per epoch. Validation crops every ground-truth person box
(``TEST.USE_GT_BBOX: true``), decodes with :func:`decode_heatmaps` (``msra``, ``TEST.POST_PROCESS``), optionally
with the flip test, applies OKS NMS and reports pycocotools' keypoint AP.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from hrstream.errors import ConfigError
from hrstream.models.builder import build_model
from hrstream.models.checkpoints import load_weights
from hrstream.models.config import ModelSpec
from hrstream.pose.decode import decode_heatmaps, flip_test_merge
from hrstream.pose.evaluate import evaluate_coco_keypoints, to_coco_results
from hrstream.pose.keypoints import COCO_FLIP_PAIRS
from hrstream.pose.nms import oks_nms
from hrstream.train.common import (
    TrainResult,
    autocast_for,
    deterministic,
    end_epoch,
    hash_files,
    init_official,
    make_optimizer,
    resolve_device,
    seed_everything,
    seed_worker,
    task_spec,
    train_section,
)
from hrstream.train.pose_data import PoseAugment, PoseDataset, load_coco_people
from hrstream.train.targets import JointsMSELoss
from hrstream.types import Poses

__all__ = ["pose_spec", "train_pose", "validate_pose"]

log = logging.getLogger(__name__)


def pose_spec(config: str | Path | Mapping[str, Any]) -> ModelSpec:
    """Parse a pose config (name, YAML path or dict); :class:`ConfigError` unless it is a ``pose_hrnet`` with
    ``MODEL.IMAGE_SIZE`` and ``MODEL.HEATMAP_SIZE``."""
    spec = task_spec(config, "pose")
    if spec.image_size is None or spec.heatmap_size is None:
        raise ConfigError(
            f"{spec.source}: pose training needs MODEL.IMAGE_SIZE and MODEL.HEATMAP_SIZE ([W, H])"
        )
    return spec


def _loader(ds: PoseDataset, batch_size: int, *, shuffle: bool, seed: int, workers: int) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        worker_init_fn=seed_worker,
        generator=gen,
        drop_last=False,
    )


@torch.no_grad()
def validate_pose(
    model: nn.Module,
    spec: ModelSpec,
    ann_file: str | Path,
    images_dir: str | Path,
    *,
    device: torch.device,
    batch_size: int = 32,
    flip_test: bool | None = None,
    amp: str = "off",
) -> dict[str, float]:
    """COCO keypoint metrics (``AP``, ``AP .5``, ... ``AR (L)``) of ``model`` on the ground-truth boxes.

    ``flip_test`` ``None`` follows ``TEST.FLIP_TEST``. The model is left in eval mode.
    """
    assert spec.image_size is not None and spec.heatmap_size is not None
    test = spec.test
    flip = bool(test.get("FLIP_TEST", False)) if flip_test is None else flip_test
    aspect = spec.image_size[0] / spec.image_size[1]
    people = load_coco_people(ann_file, images_dir, num_joints=spec.num_outputs, aspect_ratio=aspect)
    ds = PoseDataset(people, image_size=spec.image_size, heatmap_size=spec.heatmap_size)
    model.eval()
    ctx_amp = amp if amp != "fp16" else "off"
    coords_all, scores_all = [], []
    for x, _, _, meta in DataLoader(ds, batch_size=batch_size, shuffle=False):
        x = x.to(device)
        with autocast_for(ctx_amp, device)[0]:
            out = model(x).float()
            if flip:
                out = flip_test_merge(
                    out,
                    model(x.flip(3)).float(),
                    COCO_FLIP_PAIRS,
                    shift=bool(test.get("SHIFT_HEATMAP", True)),
                )
        c, s = decode_heatmaps(
            out.cpu().numpy(),
            meta["center"].numpy(),
            meta["scale"].numpy(),
            "msra",
            post_process=bool(test.get("POST_PROCESS", True)),
        )
        coords_all.append(c)
        scores_all.append(s[..., 0])
    coords = np.concatenate(coords_all)
    scores = np.concatenate(scores_all)
    by_image: dict[int, list[int]] = {}
    for i, p in enumerate(people):
        by_image.setdefault(p.image_id, []).append(i)
    poses, ids = [], []
    for image_id, idx in by_image.items():
        boxes = np.stack([people[i].box for i in idx]).astype(np.float32)
        boxes[:, 2:] += boxes[:, :2]
        p = Poses(boxes, np.ones(len(idx), np.float32), coords[idx], scores[idx])
        poses.append(oks_nms(p, float(test.get("OKS_THRE", 0.9)), aspect_ratio=aspect))
        ids.append(image_id)
    results = to_coco_results(poses, ids, in_vis_thr=float(test.get("IN_VIS_THRE", 0.2)))
    return evaluate_coco_keypoints(results, ann_file)


def train_pose(
    config: str | Path | Mapping[str, Any],
    images_dir: str | Path,
    ann_file: str | Path,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    amp: str = "off",
    device: str | torch.device | None = "auto",
    init: str | Path | None = None,
    val_ann: str | Path | None = None,
    val_images: str | Path | None = None,
    max_steps: int | None = None,
    log_every: int = 20,
    augment: bool = True,
    workers: int = 0,
    flip_test: bool | None = None,
) -> TrainResult:
    """Train a ``pose_hrnet`` on a COCO keypoints dataset and save ``last``/``best`` weights in ``out_dir``.

    Args:
        config: registered config name, YAML path or dict (official schema; ``TRAIN.*`` supplies defaults:
            ``END_EPOCH``, ``BATCH_SIZE_PER_GPU``, ``LR``, ``OPTIMIZER``, ``LR_STEP``, ``LR_FACTOR``).
        images_dir, ann_file: the images folder and its COCO keypoints JSON.
        epochs, batch_size, lr: override the config's values.
        seed: seeds Python, numpy, torch, the shuffling and the augmentation; runs are deterministic.
        amp: ``off``, ``bf16`` (CPU or CUDA), ``fp16`` (CUDA) or ``auto``.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N``.
        init: checkpoint to start from (any layout :func:`load_weights` reads, timm ImageNet included);
            without it the official random initialisation.
        val_ann, val_images: COCO validation set (``val_images`` defaults to ``images_dir``); validation runs
            after every epoch and ``best`` follows its ``AP``. Without it ``best`` follows the epoch loss.
        max_steps: stop after this many optimiser steps in all. augment: the official augmentation.
        workers: DataLoader worker processes (0: load in this process).

    Returns:
        :class:`TrainResult`. Files: ``last.safetensors``, ``best.safetensors`` and a ``.json`` sidecar beside
        each (config, epochs, losses, seed, data sha256, metrics).
    """
    spec = pose_spec(config)
    assert spec.image_size is not None and spec.heatmap_size is not None
    cfg = spec.raw
    tr = train_section(cfg)
    epochs = int(epochs if epochs is not None else tr.get("END_EPOCH", 210))
    batch_size = int(batch_size if batch_size is not None else tr.get("BATCH_SIZE_PER_GPU", 32))
    lr = float(lr if lr is not None else tr.get("LR", 1e-3))
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"epochs ({epochs}) and batch size ({batch_size}) must be >= 1 and lr ({lr}) > 0")
    dev = resolve_device(device)
    autocast_for(amp, dev)  # validate early
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    aspect = spec.image_size[0] / spec.image_size[1]
    people = load_coco_people(ann_file, images_dir, num_joints=spec.num_outputs, aspect_ratio=aspect)
    data_sha = hash_files([Path(ann_file), *sorted({p.image for p in people})])
    log.info("pose training: %d people from %s (data sha256 %s)", len(people), ann_file, data_sha[:12])
    with deterministic():
        seed_everything(seed)
        model = build_model(spec)
        init_official(model)
        if init is not None:
            report = load_weights(model, init)
            log.info("initialised from %s (%s layout)", init, report.layout)
        model.to(dev)
        ds = PoseDataset(
            people,
            image_size=spec.image_size,
            heatmap_size=spec.heatmap_size,
            sigma=float((cfg.get("MODEL") or {}).get("SIGMA", 2)),
            augment=PoseAugment.from_config(cfg, enabled=augment),
            seed=seed,
        )
        loader = _loader(ds, batch_size, shuffle=True, seed=seed, workers=workers)
        opt = make_optimizer(
            model,
            str(tr.get("OPTIMIZER", "adam")),
            lr,
            momentum=float(tr.get("MOMENTUM", 0.9)),
            wd=float(tr.get("WD", 0.0)) if str(tr.get("OPTIMIZER", "adam")).lower() == "sgd" else 0.0,
            nesterov=bool(tr.get("NESTEROV", False)),
        )
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt,
            milestones=[int(m) for m in tr.get("LR_STEP", [170, 200])],
            gamma=float(tr.get("LR_FACTOR", 0.1)),
        )
        criterion = JointsMSELoss(bool((cfg.get("LOSS") or {}).get("USE_TARGET_WEIGHT", True)))
        result = TrainResult(out, out / "last.safetensors", out / "best.safetensors")
        run_info = {
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": str(tr.get("OPTIMIZER", "adam")),
            "seed": seed,
            "amp": amp,
            "device": str(dev),
            "init": str(init) if init else None,
            "augment": augment,
            "data": {"images": str(images_dir), "annotations": str(ann_file), "sha256": data_sha},
        }
        scaler = torch.amp.GradScaler(dev.type, enabled=autocast_for(amp, dev)[1])
        t0 = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            ds.set_epoch(epoch)
            epoch_sum, n = 0.0, 0
            for x, target, weight, _ in loader:
                x, target, weight = x.to(dev), target.to(dev), weight.to(dev)
                with autocast_for(amp, dev)[0]:
                    pred = model(x)
                loss = criterion(pred.float(), target, weight)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                value = float(loss.detach())
                result.losses.append(value)
                epoch_sum, n = epoch_sum + value, n + 1
                result.steps += 1
                if log_every and result.steps % log_every == 0:
                    log.info("epoch %d step %d loss %.6f", epoch, result.steps, value)
                if max_steps is not None and result.steps >= max_steps:
                    break
            sched.step()
            result.epoch_losses.append(epoch_sum / max(n, 1))
            metrics = (
                validate_pose(
                    model, spec, val_ann, val_images or images_dir, device=dev, flip_test=flip_test, amp=amp
                )
                if val_ann is not None
                else None
            )
            end_epoch(model, result, task="pose", source=spec.source, epoch=epoch, metrics=metrics,
                      metric_name="AP", run_info=run_info)  # fmt: skip
            if max_steps is not None and result.steps >= max_steps:
                break
        result.stop_clock(t0)
    model.eval()
    return result
