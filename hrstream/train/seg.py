"""Semantic segmentation training of ``seg_hrnet`` (the official HRNet-Semantic-Segmentation recipe) and its
mIoU validation.

Recipe: official initialisation, logits bilinearly upsampled to the label size (``MODEL.ALIGN_CORNERS``),
cross-entropy ignoring 255, ``TRAIN.OPTIMIZER`` sgd (momentum ``TRAIN.MOMENTUM``, ``TRAIN.WD``) or adam at
``TRAIN.LR`` with the official poly schedule ``lr * (1 - step / total) ** 0.9``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from hrstream.errors import ConfigError
from hrstream.models.builder import build_model
from hrstream.models.checkpoints import load_weights
from hrstream.models.config import ModelSpec
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
from hrstream.train.seg_data import IGNORE_LABEL, SegAugment, SegDataset, pair_images_masks

__all__ = ["seg_spec", "train_seg", "validate_seg"]

log = logging.getLogger(__name__)


def seg_spec(config: str | Path | Mapping[str, Any]) -> ModelSpec:
    """Parse a segmentation config; :class:`ConfigError` unless ``MODEL.NAME`` is ``seg_hrnet``."""
    return task_spec(config, "seg")


def _logits(model: nn.Module, x: torch.Tensor, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    out = model(x).float()
    return F.interpolate(out, size=size, mode="bilinear", align_corners=align_corners)


@torch.no_grad()
def validate_seg(
    model: nn.Module,
    spec: ModelSpec,
    images_dir: str | Path,
    masks_dir: str | Path,
    *,
    device: torch.device,
    amp: str = "off",
) -> dict[str, float]:
    """``{"mIoU", "pixel_acc", "IoU_<c>" ...}`` over the pairs of ``images_dir``/``masks_dir``.

    Each image is resized to ``TEST.IMAGE_SIZE`` (else ``TRAIN.IMAGE_SIZE``), the logits upsampled to the
    label's full resolution; pixels labelled 255 are ignored; classes absent from both prediction and labels
    are left out of the mean. The model is left in eval mode.
    """
    size = spec.image_size or tuple((spec.raw.get("TRAIN") or {}).get("IMAGE_SIZE") or (512, 512))
    k = spec.num_outputs
    ds = SegDataset(
        pair_images_masks(images_dir, masks_dir),
        num_classes=k,
        augment=SegAugment(enabled=False),
        size=size,
        resize_labels=False,
    )
    model.eval()
    conf = np.zeros((k, k), dtype=np.int64)
    for x, lab in DataLoader(ds, batch_size=1, shuffle=False):
        with autocast_for("off" if amp == "fp16" else amp, device)[0]:
            pred = _logits(model, x.to(device), tuple(lab.shape[-2:]), spec.align_corners).argmax(1).cpu()
        valid = lab != IGNORE_LABEL
        conf += np.bincount((lab[valid] * k + pred[valid]).numpy(), minlength=k * k).reshape(k, k)
    tp = np.diag(conf).astype(np.float64)
    union = conf.sum(0) + conf.sum(1) - tp
    iou = np.where(union > 0, tp / np.maximum(union, 1), np.nan)
    metrics = {"mIoU": float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0}
    metrics["pixel_acc"] = float(tp.sum() / max(conf.sum(), 1))
    metrics.update({f"IoU_{c}": float(v) for c, v in enumerate(iou) if np.isfinite(v)})
    return metrics


def train_seg(
    config: str | Path | Mapping[str, Any],
    images_dir: str | Path,
    masks_dir: str | Path,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    amp: str = "off",
    device: str | torch.device | None = "auto",
    init: str | Path | None = None,
    val_images: str | Path | None = None,
    val_masks: str | Path | None = None,
    max_steps: int | None = None,
    log_every: int = 20,
    augment: bool = True,
    workers: int = 0,
) -> TrainResult:
    """Train a ``seg_hrnet`` on images + label PNGs (same stems) and save ``last``/``best`` in ``out_dir``.

    Args:
        config: registered name, YAML path or dict (official schema). ``DATASET.NUM_CLASSES`` classes;
            ``TRAIN.IMAGE_SIZE`` ``[W, H]`` crop, ``TRAIN.BASE_SIZE``, ``TRAIN.SCALE_FACTOR``, ``TRAIN.FLIP``,
            ``TRAIN.OPTIMIZER``/``LR``/``MOMENTUM``/``WD``, ``TRAIN.END_EPOCH``, ``TRAIN.BATCH_SIZE_PER_GPU``.
        images_dir, masks_dir: images and their labels (class indices, 255 ignored; e.g. 0/1 person masks).
        val_images, val_masks: validation pairs; ``best`` then follows ``mIoU`` (else minus the epoch loss).
        The other arguments are as for :func:`hrstream.train.train_pose`.

    Returns:
        :class:`TrainResult`; files ``last.safetensors``, ``best.safetensors`` with ``.json`` sidecars.
    """
    spec = seg_spec(config)
    cfg = spec.raw
    tr = train_section(cfg)
    epochs = int(epochs if epochs is not None else tr.get("END_EPOCH", 100))
    batch_size = int(batch_size if batch_size is not None else tr.get("BATCH_SIZE_PER_GPU", 8))
    lr = float(lr if lr is not None else tr.get("LR", 0.01))
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"epochs ({epochs}) and batch size ({batch_size}) must be >= 1 and lr ({lr}) > 0")
    dev = resolve_device(device)
    use_scaler = autocast_for(amp, dev)[1]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pairs = pair_images_masks(images_dir, masks_dir)
    data_sha = hash_files([p for pair in pairs for p in pair])
    log.info("seg training: %d images from %s (data sha256 %s)", len(pairs), images_dir, data_sha[:12])
    aug = SegAugment.from_config(cfg, enabled=augment)
    with deterministic():
        seed_everything(seed)
        model = build_model(spec)
        init_official(model)
        if init is not None:
            log.info("initialised from %s (%s layout)", init, load_weights(model, init).layout)
        model.to(dev)
        ds = SegDataset(pairs, num_classes=spec.num_outputs, augment=aug, seed=seed)
        loader = DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(seed),
        )
        name = str(tr.get("OPTIMIZER", "sgd"))
        opt = make_optimizer(
            model,
            name,
            lr,
            momentum=float(tr.get("MOMENTUM", 0.9)),
            wd=float(tr.get("WD", 5e-4)),
            nesterov=bool(tr.get("NESTEROV", False)),
        )
        total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: max(0.0, 1 - i / max(total, 1)) ** 0.9)
        criterion = nn.CrossEntropyLoss(ignore_index=IGNORE_LABEL)
        scaler = torch.amp.GradScaler(dev.type, enabled=use_scaler)
        result = TrainResult(out, out / "last.safetensors", out / "best.safetensors")
        run_info = {
            "num_classes": spec.num_outputs,
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": name,
            "augment": augment,
            "seed": seed,
            "amp": amp,
            "device": str(dev),
            "init": str(init) if init else None,
            "data": {"images": str(images_dir), "masks": str(masks_dir), "sha256": data_sha},
        }
        t0 = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            ds.set_epoch(epoch)
            epoch_sum, n = 0.0, 0
            for x, lab in loader:
                x, lab = x.to(dev), lab.to(dev)
                with autocast_for(amp, dev)[0]:
                    logits = _logits(model, x, tuple(lab.shape[-2:]), spec.align_corners)
                loss = criterion(logits.float(), lab)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                value = float(loss.detach())
                result.losses.append(value)
                epoch_sum, n, result.steps = epoch_sum + value, n + 1, result.steps + 1
                if log_every and result.steps % log_every == 0:
                    log.info("epoch %d step %d loss %.6f", epoch, result.steps, value)
                if max_steps is not None and result.steps >= max_steps:
                    break
            result.epoch_losses.append(epoch_sum / max(n, 1))
            metrics = (
                validate_seg(model, spec, val_images, val_masks, device=dev, amp=amp)
                if val_images is not None and val_masks is not None
                else None
            )
            end_epoch(model, result, task="seg", source=spec.source, epoch=epoch, metrics=metrics,
                      metric_name="mIoU", run_info=run_info)  # fmt: skip
            if max_steps is not None and result.steps >= max_steps:
                break
        result.stop_clock(t0)
    model.eval()
    return result
