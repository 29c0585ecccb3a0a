"""Similarities between people: box IoU and keypoint OKS, vectorised over pairs.

All boxes are ``xyxy`` pixels; keypoints are ``(x, y)`` pixels (see :mod:`hrstream.types`).
"""

from __future__ import annotations

import numpy as np

from hrstream.models.datasets_meta import COCO_OKS_SIGMAS

__all__ = ["COCO_SIGMAS", "box_iou", "oks_matrix", "xyxy_to_cxcywh", "cxcywh_to_xyxy"]

#: Per-keypoint OKS sigmas of the 17 COCO keypoints (from :mod:`hrstream.models.datasets_meta`).
COCO_SIGMAS: np.ndarray = np.asarray(COCO_OKS_SIGMAS, dtype=np.float64)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` xyxy -> ``(n, 4)`` (centre x, centre y, width, height), float64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack(
        [(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1
    )


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """``(n, 4)`` (centre x, centre y, width, height) -> ``(n, 4)`` xyxy, float64."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    half_w, half_h = b[:, 2] / 2, b[:, 3] / 2
    return np.stack([b[:, 0] - half_w, b[:, 1] - half_h, b[:, 0] + half_w, b[:, 1] + half_h], 1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of ``a (n, 4)`` and ``b (m, 4)`` xyxy boxes -> ``float64 (n, m)`` in [0, 1]."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def oks_matrix(
    kpts_a: np.ndarray,
    valid_a: np.ndarray,
    areas_a: np.ndarray,
    kpts_b: np.ndarray,
    valid_b: np.ndarray,
    sigmas: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise object keypoint similarity between people ``a`` (n) and ``b`` (m).

    Args:
        kpts_a: ``(n, K, 2)`` pixels; the reference poses (their ``areas_a`` set the scale).
        valid_a: ``bool (n, K)`` keypoints of ``a`` that may be compared.
        areas_a: ``(n,)`` object areas in square pixels (box area is used by the tracker).
        kpts_b: ``(m, K, 2)`` pixels.
        valid_b: ``bool (m, K)``.
        sigmas: ``(K,)`` per-keypoint OKS sigmas (for example :data:`COCO_SIGMAS`).

    Returns:
        ``(oks (n, m) float64, defined (n, m) bool)``: the mean of ``exp(-d^2 / (2 s^2 k^2))`` over the
        keypoints valid in both people, with ``k = 2 sigma`` and ``s^2`` the area; ``defined`` is False
        (and ``oks`` 0) where no keypoint is valid in both.
    """
    ka = np.asarray(kpts_a, dtype=np.float64)
    kb = np.asarray(kpts_b, dtype=np.float64)
    n, m = ka.shape[0], kb.shape[0]
    if n == 0 or m == 0:
        return np.zeros((n, m)), np.zeros((n, m), dtype=bool)
    k2 = (2.0 * np.asarray(sigmas, dtype=np.float64)) ** 2  # (K,)
    d2 = np.sum((ka[:, None] - kb[None, :]) ** 2, axis=-1)  # (n, m, K)
    scale = 2.0 * np.maximum(np.asarray(areas_a, dtype=np.float64), 1.0)[:, None, None] * k2[None, None, :]
    sim = np.exp(-d2 / scale)
    both = np.asarray(valid_a, bool)[:, None, :] & np.asarray(valid_b, bool)[None, :, :]
    count = both.sum(-1)
    total = np.where(both, sim, 0.0).sum(-1)
    defined = count > 0
    return np.where(defined, total / np.maximum(count, 1), 0.0), defined
