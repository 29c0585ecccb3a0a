"""OKS non-maximum suppression of people (the official ``lib/nms/nms.py``) and the official rescoring."""

from __future__ import annotations

import numpy as np

from hrstream.pose.crops import PIXEL_STD, box_to_center_scale
from hrstream.pose.keypoints import COCO_SIGMAS
from hrstream.types import Poses

__all__ = ["oks_iou", "oks_nms", "oks_nms_indices", "rescore"]


def rescore(box_scores: np.ndarray, keypoint_scores: np.ndarray, *, in_vis_thr: float = 0.2) -> np.ndarray:
    """The official person score: ``box_score * mean(keypoint scores > in_vis_thr)``.

    Args:
        box_scores: ``(n,)``; keypoint_scores: ``(n, K)``.

    Returns:
        ``float64 (n,)``; a person with no keypoint above the threshold scores 0.
    """
    ks = np.asarray(keypoint_scores, dtype=np.float64)
    vis = ks > in_vis_thr
    count = vis.sum(axis=1)
    mean = np.where(count > 0, (ks * vis).sum(axis=1) / np.maximum(count, 1), 0.0)
    return mean * np.asarray(box_scores, dtype=np.float64).reshape(-1)


def oks_iou(
    g: np.ndarray,
    d: np.ndarray,
    a_g: float,
    a_d: np.ndarray,
    sigmas: np.ndarray = COCO_SIGMAS,
    in_vis_thr: float | None = None,
) -> np.ndarray:
    """OKS of one person ``g`` against many ``d`` (official ``oks_iou``).

    Args:
        g: ``(K, 3)`` (x, y, score); d: ``(m, K, 3)``; a_g: area of ``g``; a_d: ``(m,)`` areas.
        in_vis_thr: when set, only joints of ``d`` whose score exceeds it count (the official code
            combines the two masks with Python's ``and``, which keeps the second one).

    Returns:
        ``float64 (m,)`` OKS values.
    """
    var = (np.asarray(sigmas, dtype=np.float64) * 2) ** 2
    g = np.asarray(g, dtype=np.float64)
    d = np.asarray(d, dtype=np.float64).reshape(-1, g.shape[0], 3)
    a_d = np.asarray(a_d, dtype=np.float64).reshape(-1)
    out = np.zeros(len(d))
    for i in range(len(d)):
        dist2 = (d[i, :, 0] - g[:, 0]) ** 2 + (d[i, :, 1] - g[:, 1]) ** 2
        e = dist2 / var / ((a_g + a_d[i]) / 2 + np.spacing(1)) / 2
        if in_vis_thr is not None:
            e = e[d[i, :, 2] > in_vis_thr]
        out[i] = np.sum(np.exp(-e)) / e.shape[0] if e.shape[0] != 0 else 0.0
    return out


def oks_nms_indices(
    keypoints: np.ndarray,
    scores: np.ndarray,
    areas: np.ndarray,
    thr: float = 0.9,
    *,
    sigmas: np.ndarray = COCO_SIGMAS,
    in_vis_thr: float | None = None,
) -> list[int]:
    """Greedy OKS NMS (official ``oks_nms``): indices kept, highest score first.

    Args:
        keypoints: ``(n, K, 3)`` (x, y, score) or ``(n, K, 2)``; scores: ``(n,)``; areas: ``(n,)`` pixels².
        thr: a person whose OKS with a kept one exceeds ``thr`` is dropped.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    if len(kp) == 0:
        return []
    if kp.shape[2] == 2:
        kp = np.concatenate([kp, np.ones(kp.shape[:2] + (1,))], axis=2)
    areas = np.asarray(areas, dtype=np.float64).reshape(-1)
    order = np.asarray(scores, dtype=np.float64).reshape(-1).argsort()[::-1]
    keep: list[int] = []
    while order.size > 0:
        i = int(order[0])
        keep.append(i)
        ovr = oks_iou(kp[i], kp[order[1:]], areas[i], areas[order[1:]], sigmas, in_vis_thr)
        order = order[np.nonzero(ovr <= thr)[0] + 1]
    return keep


def oks_nms(
    poses: Poses,
    thr: float = 0.9,
    *,
    sigmas: np.ndarray = COCO_SIGMAS,
    aspect_ratio: float = 192 / 256,
    padding: float = 1.25,
    in_vis_thr: float = 0.2,
) -> Poses:
    """Drop duplicate people of one frame as the official COCO evaluation does.

    Scores are :func:`rescore` (box score x mean visible keypoint score) and areas the padded,
    aspect-fixed crop area ``prod(scale * 200)`` (the official ``all_boxes[:, 4]``).

    Returns:
        A new :class:`~hrstream.types.Poses` with the kept people, in their original order.
    """
    if len(poses) == 0:
        return poses[np.zeros(0, dtype=np.int64)]
    _, scale = box_to_center_scale(poses.boxes, aspect_ratio=aspect_ratio, box_format="xyxy", padding=padding)
    areas = np.prod(scale.astype(np.float64) * PIXEL_STD, axis=1)
    scores = rescore(poses.box_scores, poses.keypoint_scores, in_vis_thr=in_vis_thr)
    kp = np.concatenate([poses.keypoints, poses.keypoint_scores[..., None]], axis=2)
    keep = oks_nms_indices(kp, scores, areas, thr, sigmas=sigmas)
    return poses[np.sort(np.asarray(keep, dtype=np.int64))]
