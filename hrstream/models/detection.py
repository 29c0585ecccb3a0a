"""Person detection on HRNetV2p: torchvision's FCOS with an :class:`~hrstream.models.heads.HRFPN` backbone.

The paper's V2p representation (a feature pyramid built from the concatenated V2 output) is the detection
backbone; the detector itself is torchvision's FCOS (Tian et al., ICCV 2019: per-location class score,
centre-ness and ``(l, t, r, b)`` box distances, focal loss + GIoU loss), so the head, the target assignment,
the losses and the post-processing are the library's, not hrstream's.

A config is the official HRNet schema (``MODEL.EXTRA.STAGE1..4``) with ``MODEL.NAME: det_hrnet`` and
``DATASET.NUM_CLASSES`` counting the background (2 for person detection: 0 background, 1 person, as COCO's
person ``category_id``). hrstream's own keys under ``HRSTREAM.DETECTOR``:

==================== ===============================================================================
``OUT_CHANNELS``     channels of every pyramid level and of the FCOS head (a multiple of 32: GroupNorm)
``NUM_OUTS``         pyramid levels; level ``i`` has stride ``4 * 2**i`` in the network input
``NUM_CONVS``        conv layers of each FCOS head branch (torchvision's default is 4)
``MIN_SIZE``         the image's short side is resized to this (torchvision's ``GeneralizedRCNNTransform``)
``MAX_SIZE``         ... unless the long side would exceed this
``SCORE_THRESH``     FCOS's score threshold before NMS
``NMS_THRESH``       FCOS's per-class NMS IoU
``DETECTIONS``       detections kept per image
==================== ===============================================================================

Input of ``model(images)``: a list of ``(3, H, W)`` float RGB tensors in ``[0, 1]`` of any size; output:
per image ``{"boxes": (n, 4) xyxy in that image's pixels, "scores": (n,), "labels": (n,) int64}``, with
pixel edges at integers as torchvision has them (a box ``[x0, y0, x1, y1]`` covers ``x0 <= x < x1``).
"""

from __future__ import annotations

from typing import Any

from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead

from hrstream.errors import ConfigError
from hrstream.models.config import ModelSpec
from hrstream.models.datasets_meta import IMAGENET_MEAN, IMAGENET_STD
from hrstream.models.heads import HRFPN
from hrstream.models.hrnet import HRNetBackbone

__all__ = ["DETECTOR_DEFAULTS", "build_detector", "detector_options"]

DETECTOR_DEFAULTS: dict[str, Any] = {
    "OUT_CHANNELS": 64,
    "NUM_OUTS": 5,
    "NUM_CONVS": 2,
    "MIN_SIZE": 192,
    "MAX_SIZE": 320,
    "SCORE_THRESH": 0.2,
    "NMS_THRESH": 0.6,
    "DETECTIONS": 100,
}


def detector_options(spec: ModelSpec) -> dict[str, Any]:
    """``HRSTREAM.DETECTOR`` of the config over :data:`DETECTOR_DEFAULTS`; :class:`ConfigError` on a bad key."""
    given = ((spec.raw.get("HRSTREAM") or {}).get("DETECTOR")) or {}
    unknown = sorted(set(given) - set(DETECTOR_DEFAULTS))
    if unknown:
        raise ConfigError(
            f"{spec.source}: unknown HRSTREAM.DETECTOR fields {unknown}; known: {sorted(DETECTOR_DEFAULTS)}"
        )
    opts = {**DETECTOR_DEFAULTS, **given}
    if int(opts["OUT_CHANNELS"]) % 32:
        raise ConfigError(
            f"{spec.source}: HRSTREAM.DETECTOR.OUT_CHANNELS must be a multiple of 32, got {opts['OUT_CHANNELS']}"
        )
    return opts


def build_detector(spec: ModelSpec) -> nn.Module:
    """torchvision ``FCOS`` on ``HRFPN(HRNetBackbone)`` for a ``det_hrnet`` config, in eval mode.

    The backbone's module names equal those of ``seg_hrnet`` under ``backbone.backbone.``, so a trained
    segmentation network's backbone initialises it (:func:`hrstream.train.det.train_det`'s ``init_backbone``).
    """
    if spec.task != "det":
        raise ConfigError(f"{spec.source}: MODEL.NAME is {spec.name}; a detector needs det_hrnet")
    o = detector_options(spec)
    s1 = spec.stage1
    backbone = HRNetBackbone(
        spec.stages,
        stage1_blocks=s1.num_blocks[0] if s1 else 4,
        stage1_channels=s1.num_channels[0] if s1 else 64,
        stage1_block=s1.block if s1 else "BOTTLENECK",
        upsample="bilinear",
        align_corners=spec.align_corners,
        last_multi_scale=True,
    )
    channels, levels = int(o["OUT_CHANNELS"]), int(o["NUM_OUTS"])
    fpn = HRFPN(backbone, out_channels=channels, num_outs=levels)
    # One location ("anchor") per pixel of each level, its size the level's stride: FCOS assigns a box to the
    # level whose stride * [4, 8] range holds the box's largest centre-to-edge distance.
    anchors = AnchorGenerator(tuple((4 * 2**i,) for i in range(levels)), ((1.0,),) * levels)
    model = FCOS(
        fpn,
        num_classes=spec.num_outputs,
        min_size=int(o["MIN_SIZE"]),
        max_size=int(o["MAX_SIZE"]),
        image_mean=list(IMAGENET_MEAN),
        image_std=list(IMAGENET_STD),
        anchor_generator=anchors,
        head=FCOSHead(channels, 1, spec.num_outputs, num_convs=int(o["NUM_CONVS"])),
        score_thresh=float(o["SCORE_THRESH"]),
        nms_thresh=float(o["NMS_THRESH"]),
        detections_per_img=int(o["DETECTIONS"]),
    )
    model.spec = spec  # type: ignore[assignment]
    return model.eval()
