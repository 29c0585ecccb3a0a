"""COCO person keypoints: names, skeleton, flip pairs and OKS sigmas (all 0-based joint indices).

The values live in :mod:`hrstream.models.datasets_meta` (one copy for the whole package); ``COCO_SIGMAS``
is the float64 array form used by OKS computations.
"""

from __future__ import annotations

import numpy as np

from hrstream.models.datasets_meta import COCO_FLIP_PAIRS, COCO_KEYPOINT_NAMES, COCO_OKS_SIGMAS, COCO_SKELETON

__all__ = [
    "COCO_FLIP_PAIRS",
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "COCO_SKELETON",
]

#: Per-keypoint OKS sigmas of the COCO evaluation, ``float64 (17,)``.
COCO_SIGMAS: np.ndarray = np.asarray(COCO_OKS_SIGMAS, dtype=np.float64)
COCO_SIGMAS.setflags(write=False)
