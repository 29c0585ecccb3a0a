"""COCO person keypoints: names, skeleton, flip pairs and OKS sigmas (all 0-based joint indices)."""

from __future__ import annotations

import numpy as np

__all__ = [
    "COCO_FLIP_PAIRS",
    "COCO_KEYPOINT_NAMES",
    "COCO_SIGMAS",
    "COCO_SKELETON",
]

COCO_KEYPOINT_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)

#: The 19 limbs of the COCO ``person`` category's ``skeleton`` field, converted from 1-based to 0-based.
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13),
    (13, 11),
    (16, 14),
    (14, 12),
    (11, 12),
    (5, 11),
    (6, 12),
    (5, 6),
    (5, 7),
    (6, 8),
    (7, 9),
    (8, 10),
    (1, 2),
    (0, 1),
    (0, 2),
    (1, 3),
    (2, 4),
    (3, 5),
    (4, 6),
)

#: Left/right joint pairs swapped by a horizontal flip (the official ``flip_pairs``).
COCO_FLIP_PAIRS: tuple[tuple[int, int], ...] = (
    (1, 2),
    (3, 4),
    (5, 6),
    (7, 8),
    (9, 10),
    (11, 12),
    (13, 14),
    (15, 16),
)

#: Per-keypoint OKS sigmas of the COCO keypoint evaluation (``float64 (17,)``).
COCO_SIGMAS: np.ndarray = (
    np.array(
        [0.26, 0.25, 0.25, 0.35, 0.35, 0.79, 0.79, 0.72, 0.72, 0.62, 0.62, 1.07, 1.07, 0.87, 0.87, 0.89, 0.89]
    )
    / 10.0
)
COCO_SIGMAS.setflags(write=False)
