"""Appearance of a person for re-association: a colour histogram of the middle of its box (DeepSORT's idea of
an appearance term next to motion, with a colour histogram in place of a learned embedding).

The middle of a box (half its width, from 15% to 75% of its height: torso and thighs of an upright person)
holds mostly the person's clothing, little background. Histograms are OpenCV's (``cv2.calcHist`` over HSV,
``cv2.compareHist`` with the Bhattacharyya distance: 0 identical, 1 disjoint).
"""

from __future__ import annotations

from collections import deque

import cv2
import numpy as np

from hrstream.track.geometry import box_iou

__all__ = [
    "HIST_BINS",
    "appearance_distance",
    "box_histograms",
    "clear_view_histograms",
    "histogram_distance",
    "mean_histogram",
]

#: HSV bins (hue, saturation, value).
HIST_BINS: tuple[int, int, int] = (12, 4, 4)
_RANGES = [0, 180, 0, 256, 0, 256]


#: COCO shoulders and hips, in polygon order: the torso quad.
_TORSO = (5, 6, 12, 11)


def box_histograms(
    image: np.ndarray,
    boxes: np.ndarray,
    keypoints: np.ndarray | None = None,
    keypoint_scores: np.ndarray | None = None,
    keypoint_thr: float = 0.3,
) -> np.ndarray:
    """``float32 (n, prod(HIST_BINS))`` HSV histograms (each summing to 1) of each person's clothing.

    Args:
        image: ``uint8 (H, W, 3)`` RGB frame.
        boxes: ``(n, 4)`` xyxy in the frame's pixels (pixel centres at integers).
        keypoints, keypoint_scores: ``(n, 17, 2)`` / ``(n, 17)`` COCO poses; where both shoulders and both
            hips score at least ``keypoint_thr`` the histogram is taken inside the torso quad (clothing
            only), else in the middle of the box.

    A region holding no pixel of the frame gives an all-zero row (no appearance: callers skip it).
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    out = np.zeros((len(b), int(np.prod(HIST_BINS))), np.float32)
    if len(b) == 0:
        return out
    h, w = image.shape[:2]
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    has_torso = (
        np.all(np.asarray(keypoint_scores)[:, list(_TORSO)] >= keypoint_thr, axis=1)
        if keypoints is not None and keypoint_scores is not None and np.shape(keypoints)[1] > max(_TORSO)
        else np.zeros(len(b), bool)
    )
    for i, (x0, y0, x1, y1) in enumerate(b):
        if has_torso[i]:
            hist = _torso_hist(hsv, np.asarray(keypoints, np.float64)[i, list(_TORSO)])
            if hist is not None:
                out[i] = hist
                continue
        bw, bh = x1 - x0, y1 - y0
        c0 = int(np.clip(np.floor(x0 + 0.25 * bw + 0.5), 0, w))
        c1 = int(np.clip(np.ceil(x1 - 0.25 * bw + 0.5), 0, w))
        r0 = int(np.clip(np.floor(y0 + 0.15 * bh + 0.5), 0, h))
        r1 = int(np.clip(np.ceil(y0 + 0.75 * bh + 0.5), 0, h))
        if c1 <= c0 or r1 <= r0:
            continue
        hist = cv2.calcHist([hsv[r0:r1, c0:c1]], [0, 1, 2], None, list(HIST_BINS), _RANGES).ravel()
        total = float(hist.sum())
        if total > 0:
            out[i] = hist / total
    return out


def _torso_hist(hsv: np.ndarray, quad: np.ndarray) -> np.ndarray | None:
    """The normalised histogram inside the quad ``(4, 2)`` (pixels), or ``None`` if it covers no pixel."""
    h, w = hsv.shape[:2]
    lo = np.clip(np.floor(quad.min(0)).astype(int), 0, [w, h])
    hi = np.clip(np.ceil(quad.max(0)).astype(int) + 1, 0, [w, h])
    if np.any(hi - lo < 2):
        return None
    mask = np.zeros((hi[1] - lo[1], hi[0] - lo[0]), np.uint8)
    cv2.fillConvexPoly(mask, np.rint(quad - lo).astype(np.int32), 255)
    roi = hsv[lo[1] : hi[1], lo[0] : hi[0]]
    hist = cv2.calcHist([roi], [0, 1, 2], mask, list(HIST_BINS), _RANGES).ravel()
    total = float(hist.sum())
    return hist / total if total > 0 else None


def appearance_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(n, m)`` Bhattacharyya distances between histograms ``a (n, D)`` and ``b (m, D)``; ``NaN`` where
    either row is all zero (no appearance)."""
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    d = np.full((len(a), len(b)), np.nan)
    for i in range(len(a)):
        if not a[i].any():
            continue
        for j in range(len(b)):
            if b[j].any():
                d[i, j] = cv2.compareHist(a[i], b[j], cv2.HISTCMP_BHATTACHARYYA)
    return d


def mean_histogram(hists: list[np.ndarray] | deque[np.ndarray]) -> np.ndarray:
    """The mean of ``hists`` (each ``(D,)``), renormalised to sum to 1: ``float32 (D,)``."""
    m = np.mean(np.stack(list(hists)), 0).astype(np.float32)
    return m / max(float(m.sum()), 1e-12)


def histogram_distance(a: np.ndarray, b: np.ndarray) -> float:
    """The Bhattacharyya distance of two histograms ``(D,)`` (see :func:`appearance_distance`)."""
    return float(appearance_distance(a[None], b[None])[0, 0])


def clear_view_histograms(
    image: np.ndarray,
    boxes: np.ndarray,
    keypoints: np.ndarray,
    keypoint_scores: np.ndarray,
    *,
    keypoint_thr: float = 0.3,
    alone_iou: float = 0.1,
    border: float = 2.0,
) -> list[np.ndarray | None]:
    """Torso histograms of the people seen clear of everyone else, for comparing a track with itself later.

    A person is seen clear when their box overlaps no other box of ``boxes`` by IoU ``alone_iou`` or more,
    and their shoulders and hips all score at least ``keypoint_thr`` and lie at least ``border`` pixels
    inside the frame; then the histogram is taken inside the torso quad (as :func:`box_histograms`).

    Args:
        image: ``uint8 (H, W, 3)`` RGB frame.
        boxes: ``(n, 4)`` xyxy; ``keypoints``: ``(n, 17, 2)`` COCO poses; ``keypoint_scores``: ``(n, 17)``.

    Returns:
        Per person, a ``float32 (prod(HIST_BINS),)`` histogram summing to 1, or ``None`` (not seen clear).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(b)
    if n == 0:
        return []
    h, w = image.shape[:2]
    overlap = box_iou(b, b)
    np.fill_diagonal(overlap, 0.0)
    torso = np.asarray(keypoints, np.float64).reshape(n, -1, 2)[:, list(_TORSO)]
    confident = np.all(np.asarray(keypoint_scores).reshape(n, -1)[:, list(_TORSO)] >= keypoint_thr, axis=1)
    inside = np.all(
        (torso[..., 0] >= border)
        & (torso[..., 0] <= w - 1 - border)
        & (torso[..., 1] >= border)
        & (torso[..., 1] <= h - 1 - border),
        axis=1,
    )
    clear = confident & inside & (overlap.max(1) < alone_iou)
    if not clear.any():
        return [None] * n
    hsv = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2HSV)
    return [_torso_hist(hsv, torso[i]) if clear[i] else None for i in range(n)]
