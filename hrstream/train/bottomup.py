"""Bottom-up pose training (HigherHRNet, the official recipe) on a COCO keypoints dataset.

Recipe (``experiments/coco/higher_hrnet/*_adam_lr1e-3.yaml`` and ``lib/core/trainer.py``): official
initialisation, whole-image samples (:mod:`hrstream.train.bottomup_data`) with heatmap targets at every output
resolution and associative-embedding joints, :class:`~hrstream.train.bottomup_targets.BottomUpLoss`
(``LOSS.*``), Adam at ``TRAIN.LR``, ``MultiStepLR`` (``TRAIN.LR_STEP``, ``TRAIN.LR_FACTOR``) stepped per epoch.
``best`` follows the epoch loss (bottom-up validation is not part of this module). ``init_backbone`` starts
the HRNet backbone from a trained top-down ``pose_hrnet`` of the same layout (the official recipe starts it from
ImageNet weights, ``MODEL.PRETRAINED``), the deconvolution stage and final layers from their initialisation.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from hrstream.errors import ConfigError, WeightsError
from hrstream.models.builder import build_model
from hrstream.models.checkpoints import convert_state_dict, detect_layout, load_weights, read_checkpoint
from hrstream.models.config import ModelSpec
from hrstream.models.config_bottomup import _floats
from hrstream.train.bottomup_data import BottomUpAugment, BottomUpDataset, load_coco_images
from hrstream.train.bottomup_targets import BottomUpLoss
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

__all__ = ["bottomup_loss", "bottomup_spec", "init_backbone_from", "train_bottomup"]

log = logging.getLogger(__name__)


def bottomup_spec(config: str | Path | Mapping[str, Any]) -> ModelSpec:
    """Parse a config; :class:`ConfigError` unless it is a ``pose_higher_hrnet`` with one ``DATASET.OUTPUT_SIZE``
    per output stage, each the input size divided by that stage's stride."""
    spec = task_spec(config, "pose")
    if spec.higher is None:
        raise ConfigError(
            f"{spec.source}: MODEL.NAME is {spec.name}; bottom-up training needs pose_higher_hrnet"
        )
    h = spec.higher
    want = tuple(h.input_size * 2**i // 4 for i in range(1 + h.deconv.num_deconvs))
    if h.output_size != want:
        raise ConfigError(
            f"{spec.source}: field DATASET.OUTPUT_SIZE must be {list(want)} for DATASET.INPUT_SIZE {h.input_size} "
            f"and {h.deconv.num_deconvs} deconvolution(s), got {list(h.output_size)}"
        )
    return spec


_HEADS = ("final_layers.", "deconv_layers.")


def init_backbone_from(model: nn.Module, path: str | Path) -> int:
    """Load the HRNet backbone (``conv1 .. stage4``) of a ``pose_hrnet`` checkpoint (any layout
    :func:`load_weights` knows) into a HigherHRNet; its top-down ``final_layer`` is left out and the
    HigherHRNet's ``final_layers`` and ``deconv_layers`` stay at initialisation. Returns the tensors loaded.

    Raises :class:`WeightsError` naming the keys when the backbone does not fit (another width or layout).
    """
    sd = read_checkpoint(path)
    converted, _ = convert_state_dict(sd, detect_layout(sd), model)
    backbone = {k: v for k, v in converted.items() if not k.startswith(("final_layer.", *_HEADS))}
    target = {k: v for k, v in model.state_dict().items() if not k.startswith(_HEADS)}
    missing = sorted(set(target) - set(backbone))
    unexpected = sorted(set(backbone) - set(target))
    shapes = [k for k in backbone if k in target and backbone[k].shape != target[k].shape]
    if missing or unexpected or shapes:
        raise WeightsError(
            f"{path}: its backbone does not fit the HigherHRNet's (missing {missing[:3]}, unexpected "
            f"{unexpected[:3]}, mis-shaped {shapes[:3]}); use a pose_hrnet checkpoint of the same HRNet layout"
        )
    model.load_state_dict(backbone, strict=False)
    return len(backbone)


def bottomup_loss(spec: ModelSpec) -> BottomUpLoss:
    """The loss of a ``pose_higher_hrnet`` config's ``LOSS`` section (official defaults where absent)."""
    assert spec.higher is not None
    loss = dict(spec.raw.get("LOSS") or {})
    n = 1 + spec.higher.deconv.num_deconvs

    def factors(key: str, default: float) -> tuple[float, ...]:
        v = _floats(loss.get(key, [default] * n), f"LOSS.{key}", spec.source)
        if len(v) != n:
            raise ConfigError(f"{spec.source}: field LOSS.{key} must have {n} entries (one per output stage)")
        return v

    return BottomUpLoss(
        spec.higher.num_joints,
        with_heatmaps_loss=spec.higher.test.with_heatmaps_loss,
        with_ae_loss=spec.higher.with_ae_loss,
        heatmaps_factor=factors("HEATMAPS_LOSS_FACTOR", 1.0),
        push_factor=factors("PUSH_LOSS_FACTOR", 0.001),
        pull_factor=factors("PULL_LOSS_FACTOR", 0.001),
        ae_type=str(loss.get("AE_LOSS_TYPE", "max")),
    )


def train_bottomup(
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
    init_backbone: str | Path | None = None,
    max_steps: int | None = None,
    log_every: int = 20,
    augment: bool = True,
    workers: int = 0,
) -> TrainResult:
    """Train a ``pose_higher_hrnet`` on a COCO keypoints dataset; ``last``/``best`` weights go to ``out_dir``.

    Args:
        config: registered config name, YAML path or dict (``TRAIN.*`` supplies defaults: ``END_EPOCH``,
            ``IMAGES_PER_GPU``, ``LR``, ``OPTIMIZER``, ``LR_STEP``, ``LR_FACTOR``).
        images_dir, ann_file: the images folder and its COCO keypoints JSON (``hrstream synth --coco`` writes
            one).
        seed: seeds everything; a run is deterministic. amp: ``off``, ``bf16``, ``fp16`` (CUDA) or ``auto``.
        init: checkpoint to start from (any layout :func:`load_weights` reads). init_backbone: a top-down
            ``pose_hrnet`` checkpoint of the same HRNet layout whose backbone starts the network
            (:func:`init_backbone_from`).
        max_steps: stop after this many optimiser steps. augment: the official augmentation.

    Returns:
        :class:`TrainResult`; ``last.safetensors``, ``best.safetensors`` and their JSON sidecars in ``out_dir``.
    """
    spec = bottomup_spec(config)
    assert spec.higher is not None
    cfg = spec.raw
    tr = train_section(cfg)
    epochs = int(epochs if epochs is not None else tr.get("END_EPOCH", 300))
    batch_size = int(batch_size if batch_size is not None else tr.get("IMAGES_PER_GPU", 12))
    lr = float(lr if lr is not None else tr.get("LR", 1e-3))
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"epochs ({epochs}) and batch size ({batch_size}) must be >= 1 and lr ({lr}) > 0")
    dev = resolve_device(device)
    autocast_for(amp, dev)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records = load_coco_images(ann_file, images_dir, num_joints=spec.higher.num_joints)
    data_sha = hash_files([Path(ann_file), *sorted({r.image for r in records})])
    log.info("bottom-up training: %d images from %s (data sha256 %s)", len(records), ann_file, data_sha[:12])
    sigma = float((cfg.get("DATASET") or {}).get("SIGMA", -1))
    with deterministic():
        seed_everything(seed)
        model = build_model(spec)
        init_official(model)
        if init_backbone is not None:
            n = init_backbone_from(model, init_backbone)
            log.info("backbone initialised from %s (%d tensors)", init_backbone, n)
        if init is not None:
            log.info("initialised from %s (%s layout)", init, load_weights(model, init).layout)
        model.to(dev)
        ds = BottomUpDataset(
            records,
            spec.higher,
            sigma=sigma,
            augment=BottomUpAugment.from_config(cfg, enabled=augment),
            seed=seed,
        )
        loader = DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(seed),
        )
        optimizer = str(tr.get("OPTIMIZER", "adam"))
        opt = make_optimizer(
            model,
            optimizer,
            lr,
            momentum=float(tr.get("MOMENTUM", 0.9)),
            wd=float(tr.get("WD", 0.0)) if optimizer.lower() == "sgd" else 0.0,
            nesterov=bool(tr.get("NESTEROV", False)),
        )
        sched = torch.optim.lr_scheduler.MultiStepLR(
            opt,
            milestones=[int(m) for m in tr.get("LR_STEP", [200, 260])],
            gamma=float(tr.get("LR_FACTOR", 0.1)),
        )
        criterion = bottomup_loss(spec)
        result = TrainResult(out, out / "last.safetensors", out / "best.safetensors")
        run_info = {
            "method": "bottomup",
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": optimizer,
            "seed": seed,
            "amp": amp,
            "device": str(dev),
            "init": str(init) if init else None,
            "init_backbone": str(init_backbone) if init_backbone else None,
            "augment": augment,
            "data": {"images": str(images_dir), "annotations": str(ann_file), "sha256": data_sha},
        }
        scaler = torch.amp.GradScaler(dev.type, enabled=autocast_for(amp, dev)[1])
        t0 = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            ds.set_epoch(epoch)
            epoch_sum, n = 0.0, 0
            for x, targets, masks, joints in loader:
                x = x.to(dev)
                with autocast_for(amp, dev)[0]:
                    outputs = model(x)
                terms = criterion(
                    [o.float() for o in outputs],
                    [t.to(dev) for t in targets],
                    [m.to(dev) for m in masks],
                    [j.to(dev) for j in joints],
                )
                opt.zero_grad(set_to_none=True)
                scaler.scale(terms.total).backward()
                scaler.step(opt)
                scaler.update()
                value = float(terms.total.detach())
                result.losses.append(value)
                epoch_sum, n = epoch_sum + value, n + 1
                result.steps += 1
                if log_every and result.steps % log_every == 0:
                    log.info("epoch %d step %d loss %.6f", epoch, result.steps, value)
                if max_steps is not None and result.steps >= max_steps:
                    break
            sched.step()
            result.epoch_losses.append(epoch_sum / max(n, 1))
            end_epoch(model, result, task="pose", source=spec.source, epoch=epoch, metrics=None,
                      metric_name="AP", run_info=run_info)  # fmt: skip
            if max_steps is not None and result.steps >= max_steps:
                break
        result.stop_clock(t0)
    model.eval()
    return result
