"""Person detector training (torchvision FCOS on HRNetV2p, :mod:`hrstream.models.detection`) and its COCO box
AP validation.

Recipe: official HRNet initialisation of the backbone (or a trained segmentation backbone, ``init_backbone``),
torchvision's FCOS losses (focal loss, GIoU, centre-ness BCE) summed, ``TRAIN.OPTIMIZER`` at ``TRAIN.LR`` with
a linear warm-up over the first ``warmup_steps`` and the poly schedule ``(1 - step / total) ** 0.9`` after,
gradients clipped to norm 10. Validation: pycocotools' ``bbox`` AP of the person class.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from hrstream.errors import ConfigError, WeightsError
from hrstream.models.builder import build_model
from hrstream.models.checkpoints import convert_state_dict, detect_layout, load_weights, read_checkpoint
from hrstream.models.config import ModelSpec
from hrstream.pose.detectors import fuse_mirror_outputs
from hrstream.train.common import (
    TrainResult,
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
from hrstream.train.det_data import DetDataset, load_coco_boxes

__all__ = ["det_spec", "init_backbone_from", "train_det", "validate_det"]

log = logging.getLogger(__name__)


def det_spec(config: str | Path | Mapping[str, Any]) -> ModelSpec:
    """Parse a detector config; :class:`ConfigError` unless ``MODEL.NAME`` is ``det_hrnet``."""
    return task_spec(config, "det")


def init_backbone_from(model: nn.Module, path: str | Path) -> int:
    """Load the HRNet backbone of a ``seg_hrnet``/``pose_hrnet`` checkpoint (any layout :func:`load_weights`
    knows) into the detector's ``backbone.backbone``; the task head is left out. Returns the tensors loaded.

    Raises :class:`WeightsError` naming the keys when the backbone does not fit (another width or layout).
    """
    target = model.backbone.backbone
    sd = read_checkpoint(path)
    converted, _ = convert_state_dict(sd, detect_layout(sd), target)
    backbone = {k: v for k, v in converted.items() if not k.startswith(("last_layer.", "final_layer."))}
    try:
        return load_weights(target, backbone).loaded
    except WeightsError as e:
        raise WeightsError(
            f"{path}: its backbone does not fit the detector's ({e}); use a checkpoint of the same HRNet layout"
        ) from e


def _collate(batch: list[Any]) -> tuple[list[torch.Tensor], list[dict[str, torch.Tensor]]]:
    return [b[0] for b in batch], [b[1] for b in batch]


def _fuse_mirror(out: dict[str, Tensor], mirror: dict[str, Tensor], width: int) -> dict[str, Tensor]:
    """One image's person (label 1) detections fused with its mirror image's (pixel centres at integers, as
    the training flip: ``x -> width - 1 - x``)."""
    boxes, scores = fuse_mirror_outputs(out, mirror, width - 1)
    return {"boxes": boxes, "scores": scores, "labels": torch.ones(len(boxes), dtype=torch.int64)}


@torch.no_grad()
def validate_det(
    model: nn.Module,
    ann_file: str | Path,
    images_dir: str | Path,
    *,
    device: torch.device,
    batch_size: int = 8,
    flip_test: bool = False,
) -> dict[str, float]:
    """pycocotools ``bbox`` metrics (``AP``, ``AP .5``, ``AP .75``, ``AR 100``) of the person class on a COCO
    file; ``flip_test``: fuse each image's boxes with its mirror image's
    (:func:`hrstream.pose.detectors.fuse_mirror_outputs`). The model is left in eval mode."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    items = load_coco_boxes(ann_file, images_dir)
    ds = DetDataset(items, augment=False)
    model.eval()
    results = []
    for start in range(0, len(ds), batch_size):
        idx = range(start, min(start + batch_size, len(ds)))
        images = [ds[i][0].to(device) for i in idx]
        outs = model(images)
        if flip_test:
            outs = [_fuse_mirror(out, mirror, im.shape[-1]) for out, mirror, im in zip(
                outs, model([im.flip(-1) for im in images]), images, strict=True
            )]  # fmt: skip
        for i, out in zip(idx, outs, strict=True):
            b = out["boxes"].cpu().numpy()
            for (x0, y0, x1, y1), s, lab in zip(
                b, out["scores"].tolist(), out["labels"].tolist(), strict=True
            ):
                if lab == 1:
                    results.append(
                        {
                            "image_id": items[i].image_id,
                            "category_id": 1,
                            "bbox": [float(x0), float(y0), float(x1 - x0), float(y1 - y0)],
                            "score": float(s),
                        }
                    )
    if not results:
        return {"AP": 0.0, "AP .5": 0.0, "AP .75": 0.0, "AR 100": 0.0}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(ann_file))
        ev = COCOeval(gt, gt.loadRes(results), "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    st = ev.stats
    return {"AP": float(st[0]), "AP .5": float(st[1]), "AP .75": float(st[2]), "AR 100": float(st[8])}


def train_det(
    config: str | Path | Mapping[str, Any],
    images_dir: str | Path,
    ann_file: str | Path,
    out_dir: str | Path,
    *,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    device: str | torch.device | None = "auto",
    init: str | Path | None = None,
    init_backbone: str | Path | None = None,
    val_ann: str | Path | None = None,
    val_images: str | Path | None = None,
    max_steps: int | None = None,
    warmup_steps: int = 100,
    log_every: int = 20,
    augment: bool = True,
    workers: int = 0,
) -> TrainResult:
    """Train a ``det_hrnet`` person detector on a COCO dataset; save ``last``/``best`` in ``out_dir``.

    Args:
        config: registered name, YAML path or dict (``MODEL.NAME: det_hrnet``); ``TRAIN.END_EPOCH``,
            ``TRAIN.BATCH_SIZE_PER_GPU``, ``TRAIN.OPTIMIZER``/``LR``/``WD`` are the defaults.
        images_dir, ann_file: the images and a COCO annotation file (person boxes; keypoints not needed).
        init: a detector checkpoint to start from; ``init_backbone``: a seg/pose HRNet checkpoint of the same
            layout whose backbone initialises the detector's (see :func:`init_backbone_from`).
        val_ann, val_images: validation set; ``best`` then follows box AP (else minus the epoch loss).

    Returns:
        :class:`TrainResult`; files ``last.safetensors``, ``best.safetensors`` with ``.json`` sidecars.
    """
    spec = det_spec(config)
    tr = train_section(spec.raw)
    epochs = int(epochs if epochs is not None else tr.get("END_EPOCH", 12))
    batch_size = int(batch_size if batch_size is not None else tr.get("BATCH_SIZE_PER_GPU", 8))
    lr = float(lr if lr is not None else tr.get("LR", 1e-3))
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ConfigError(f"epochs ({epochs}) and batch size ({batch_size}) must be >= 1 and lr ({lr}) > 0")
    dev = resolve_device(device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    items = load_coco_boxes(ann_file, images_dir)
    data_sha = hash_files([Path(ann_file), *[it.image for it in items]])
    n_boxes = int(sum(len(it.boxes) for it in items))
    log.info("det training: %d images, %d boxes (data sha256 %s)", len(items), n_boxes, data_sha[:12])
    with deterministic():
        seed_everything(seed)
        model = build_model(spec)
        init_official(model.backbone.backbone)
        if init_backbone is not None:
            log.info(
                "backbone initialised from %s (%d tensors)",
                init_backbone,
                init_backbone_from(model, init_backbone),
            )
        if init is not None:
            log.info("initialised from %s (%s layout)", init, load_weights(model, init).layout)
        model.to(dev)
        ds = DetDataset(items, augment=augment, seed=seed)
        loader = DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=True,
            num_workers=workers,
            worker_init_fn=seed_worker,
            generator=torch.Generator().manual_seed(seed),
            collate_fn=_collate,
        )
        name = str(tr.get("OPTIMIZER", "adam"))
        opt = make_optimizer(
            model, name, lr, momentum=float(tr.get("MOMENTUM", 0.9)), wd=float(tr.get("WD", 0.0))
        )
        total = epochs * len(loader) if max_steps is None else min(max_steps, epochs * len(loader))
        warm = max(1, min(warmup_steps, total // 4))

        def factor(i: int) -> float:
            if i < warm:
                return (i + 1) / warm
            return max(0.0, 1 - i / max(total, 1)) ** 0.9

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        result = TrainResult(out, out / "last.safetensors", out / "best.safetensors")
        run_info = {
            "batch_size": batch_size,
            "lr": lr,
            "optimizer": name,
            "augment": augment,
            "seed": seed,
            "device": str(dev),
            "init": str(init) if init else None,
            "init_backbone": str(init_backbone) if init_backbone else None,
            "data": {"images": str(images_dir), "annotations": str(ann_file), "sha256": data_sha},
        }
        t0 = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            ds.set_epoch(epoch)
            epoch_sum, n = 0.0, 0
            for images, targets in loader:
                images = [x.to(dev) for x in images]
                targets = [{k: v.to(dev) for k, v in t.items()} for t in targets]
                losses = model(images, targets)
                loss = sum(losses.values())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                sched.step()
                value = float(loss.detach())
                if not np.isfinite(value):
                    raise ConfigError(
                        f"det training diverged at step {result.steps} (loss {value}); lower --lr"
                    )
                result.losses.append(value)
                epoch_sum, n, result.steps = epoch_sum + value, n + 1, result.steps + 1
                if log_every and result.steps % log_every == 0:
                    parts = " ".join(f"{k} {float(v.detach()):.4f}" for k, v in losses.items())
                    log.info("epoch %d step %d loss %.4f (%s)", epoch, result.steps, value, parts)
                if max_steps is not None and result.steps >= max_steps:
                    break
            result.epoch_losses.append(epoch_sum / max(n, 1))
            metrics = (
                validate_det(model, val_ann, val_images, device=dev, batch_size=batch_size)
                if val_ann is not None and val_images is not None
                else None
            )
            end_epoch(model, result, task="det", source=spec.source, epoch=epoch, metrics=metrics,
                      metric_name="AP", run_info=run_info)  # fmt: skip
            if max_steps is not None and result.steps >= max_steps:
                break
        result.stop_clock(t0)
    model.eval()
    return result
