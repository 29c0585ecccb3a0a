"""Person boxes from a segmentation: one box per connected region of person pixels.

This is the ``seg`` detector of the pose pipeline: it needs no detection network, at the price of
merging people who touch into one box.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch
from scipy import ndimage

__all__ = ["boxes_from_segmentation"]


def boxes_from_segmentation(
    labels: np.ndarray,
    person_class_ids: Sequence[int],
    *,
    min_area: int = 64,
    probs: np.ndarray | torch.Tensor | None = None,
    merge_px: int = 0,
    connectivity: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes around the connected components of the pixels whose label is one of ``person_class_ids``.

    Args:
        labels: ``(H, W)`` integer labels.
        person_class_ids: the labels that mean "person" (e.g. ``[11]`` for Cityscapes person, ``[1..19]``
            for LIP body parts, ``[1]`` for a person/background map).
        min_area: components with fewer pixels are dropped (noise, far-away fragments).
        probs: optional ``(C, H, W)`` class probabilities at the labels' resolution; a box's score is the
            mean over its component of the summed probability of the person classes. Without them
            every score is 1.0.
        merge_px: if > 0, components closer than about this many pixels are joined (the mask is dilated
            with a ``(2 merge_px + 1)`` square before labelling); boxes still bound the original pixels.
        connectivity: 4 or 8.

    Returns:
        ``(boxes float32 (n, 4), scores float32 (n,))``, highest score (then largest area) first. Boxes
        are ``xyxy`` pixel edges: a component covering columns ``x0..x1`` and rows ``y0..y1`` gives
        ``(x0, y0, x1 + 1, y1 + 1)``, the convention of COCO / torchvision detector boxes.
    """
    if labels.ndim != 2:
        raise ValueError(f"labels must be (H, W), got {labels.shape}")
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    ids = [int(c) for c in person_class_ids]
    mask = np.isin(labels, ids)
    empty = (np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))
    if not mask.any():
        return empty
    mask_u8 = mask.astype(np.uint8)
    grouping = mask_u8
    if merge_px > 0:
        kernel = np.ones((2 * merge_px + 1, 2 * merge_px + 1), np.uint8)
        grouping = cv2.dilate(mask_u8, kernel)
    if merge_px > 0:
        count, comp = cv2.connectedComponents(grouping, connectivity=connectivity, ltype=cv2.CV_32S)
        comp = np.where(mask, comp, 0)  # keep only true person pixels in each merged group
        slices = ndimage.find_objects(comp, max_label=count - 1)
    else:
        count, comp, stats, _ = cv2.connectedComponentsWithStats(grouping, connectivity=connectivity)
        slices = [(slice(int(y), int(y + h)), slice(int(x), int(x + w))) for x, y, w, h in stats[1:, :4]]
    flat = comp.ravel()
    areas = np.bincount(flat, minlength=count)
    if probs is not None:
        person_prob = _person_probability(probs, ids, labels.shape)
        prob_sums = np.bincount(flat, weights=person_prob.ravel().astype(np.float64), minlength=count)
    boxes, scores, kept_areas = [], [], []
    for k in range(1, count):
        sl = slices[k - 1]
        if sl is None or areas[k] < max(1, min_area):
            continue
        ys, xs = sl
        boxes.append((xs.start, ys.start, xs.stop, ys.stop))
        scores.append(1.0 if probs is None else float(prob_sums[k] / areas[k]))
        kept_areas.append(int(areas[k]))
    if not boxes:
        return empty
    order = np.lexsort((-np.asarray(kept_areas), -np.asarray(scores)))
    return (
        np.asarray(boxes, dtype=np.float32)[order].reshape(-1, 4),
        np.asarray(scores, dtype=np.float32)[order],
    )


def _person_probability(
    probs: np.ndarray | torch.Tensor, ids: list[int], shape: tuple[int, ...]
) -> np.ndarray:
    """``float32 (H, W)``: the summed probability of the person classes."""
    if isinstance(probs, torch.Tensor):
        summed = probs[ids].sum(dim=0).to(torch.float32).cpu().numpy()
    else:
        summed = np.asarray(probs)[ids].sum(axis=0).astype(np.float32)
    if summed.shape != tuple(shape):
        raise ValueError(
            f"probs must be (C, H, W) with (H, W) = {tuple(shape)}, got spatial size {summed.shape}"
        )
    return summed
