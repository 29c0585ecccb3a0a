"""Top-down pose: crops, heatmap decoding and the flip test, detectors, OKS NMS, COCO evaluation, drawing."""

from __future__ import annotations

from hrstream.pose.crops import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    PIXEL_STD,
    box_to_center_scale,
    crop_batch,
    crop_cpu,
    get_affine_transform,
    get_udp_warp_matrix,
    xyxy_to_xywh,
)
from hrstream.pose.decode import DECODE_METHODS, decode_heatmaps, flip_back, flip_test_merge
from hrstream.pose.detectors import (
    DETECTOR_SPECS,
    Detector,
    FileDetector,
    FileSelection,
    FullFrameDetector,
    TorchvisionDetector,
    fuse_flipped,
    make_detector,
)
from hrstream.pose.draw import DEFAULT_PALETTE, color_for, draw_poses
from hrstream.pose.evaluate import COCO_KEYPOINT_METRICS, evaluate_coco_keypoints, to_coco_results
from hrstream.pose.keypoints import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_SIGMAS, COCO_SKELETON
from hrstream.pose.nms import oks_iou, oks_nms, oks_nms_indices, rescore
from hrstream.pose.topdown import TopDownEstimator

__all__ = [
    "COCO_FLIP_PAIRS",
    "COCO_KEYPOINT_METRICS",
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "COCO_SKELETON",
    "DECODE_METHODS",
    "DEFAULT_PALETTE",
    "DETECTOR_SPECS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PIXEL_STD",
    "Detector",
    "FileDetector",
    "FileSelection",
    "FullFrameDetector",
    "TopDownEstimator",
    "TorchvisionDetector",
    "fuse_flipped",
    "box_to_center_scale",
    "color_for",
    "crop_batch",
    "crop_cpu",
    "decode_heatmaps",
    "draw_poses",
    "evaluate_coco_keypoints",
    "flip_back",
    "flip_test_merge",
    "get_affine_transform",
    "get_udp_warp_matrix",
    "make_detector",
    "oks_iou",
    "oks_nms",
    "oks_nms_indices",
    "rescore",
    "to_coco_results",
    "xyxy_to_xywh",
]
