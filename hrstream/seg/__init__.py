"""hrstream.seg: semantic segmentation over video frames.

Inference (:class:`SegmentationEstimator`), temporal smoothing (:class:`ProbabilitySmoother`), palettes and
overlays, label-map outputs, and person boxes from a segmentation.
"""

from __future__ import annotations

from hrstream.seg.inference import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SegmentationEstimator,
    estimator_options_from_config,
)
from hrstream.seg.outputs import LabelMapWriter, class_fractions, masks_to_rle, read_label_map, rle_to_mask
from hrstream.seg.overlay import colorize, overlay
from hrstream.seg.palette import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    LIP_CLASSES,
    LIP_PALETTE,
    PERSON_CLASSES,
    PERSON_PALETTE,
    get_palette,
    indexed_palette,
)
from hrstream.seg.person_boxes import boxes_from_segmentation
from hrstream.seg.temporal import CutDetector, ProbabilitySmoother

__all__ = [
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LIP_CLASSES",
    "LIP_PALETTE",
    "PERSON_CLASSES",
    "PERSON_PALETTE",
    "CutDetector",
    "LabelMapWriter",
    "ProbabilitySmoother",
    "SegmentationEstimator",
    "boxes_from_segmentation",
    "class_fractions",
    "colorize",
    "estimator_options_from_config",
    "get_palette",
    "indexed_palette",
    "masks_to_rle",
    "overlay",
    "read_label_map",
    "rle_to_mask",
]
