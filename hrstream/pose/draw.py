"""Drawing skeletons on frames (cv2, anti-aliased); never modifies its input."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from hrstream.pose.keypoints import COCO_SKELETON
from hrstream.types import Poses

__all__ = ["DEFAULT_PALETTE", "color_for", "draw_poses"]

#: RGB colours, picked per track id (or per person index when there are no track ids).
DEFAULT_PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75),
    (60, 180, 75),
    (255, 225, 25),
    (0, 130, 200),
    (245, 130, 48),
    (145, 30, 180),
    (70, 240, 240),
    (240, 50, 230),
    (210, 245, 60),
    (250, 190, 212),
    (0, 128, 128),
    (170, 110, 40),
)


def color_for(key: int, palette: Sequence[tuple[int, int, int]] = DEFAULT_PALETTE) -> tuple[int, int, int]:
    """The palette colour of a track id (or index); stable across frames."""
    r, g, b = palette[int(key) % len(palette)]
    return int(r), int(g), int(b)


def draw_poses(
    image_rgb: np.ndarray,
    poses: Poses,
    *,
    skeleton: Sequence[tuple[int, int]] = COCO_SKELETON,
    kpt_thr: float = 0.3,
    draw_boxes: bool = False,
    palette: Sequence[tuple[int, int, int]] = DEFAULT_PALETTE,
    thickness: int = 2,
    radius: int = 3,
) -> np.ndarray:
    """Draw limbs, keypoints, optional boxes and track-id labels (``id N``; a tentative person, track id
    ``-1``, is drawn without a label: it has no identity yet).

    Args:
        image_rgb: ``uint8 (H, W, 3)`` RGB; not modified.
        poses: people of the frame; keypoints in pixels (pixel centres at integers).
        skeleton: 0-based joint pairs.
        kpt_thr: keypoints scoring below are hidden, and so is every limb with such an end.
        draw_boxes: also draw the person boxes.
        palette: RGB colours; a person's colour is ``palette[track_id % len]`` (person index without ids).

    Returns:
        A new ``uint8 (H, W, 3)`` RGB image.
    """
    out = np.ascontiguousarray(image_rgb).copy()
    if len(poses) == 0:
        return out
    ids = poses.track_ids if poses.track_ids is not None else np.arange(len(poses))
    shift = 4  # sub-pixel precision of cv2 drawing: coordinates x 16
    mult = float(1 << shift)
    for i in range(len(poses)):
        color = color_for(int(ids[i]), palette)
        kp = poses.keypoints[i]
        ok = (poses.keypoint_scores[i] >= kpt_thr) & np.isfinite(kp).all(axis=1)
        pts = np.round(np.nan_to_num(kp) * mult).astype(np.int64)
        for a, b in skeleton:
            if a < len(kp) and b < len(kp) and ok[a] and ok[b]:
                cv2.line(
                    out,
                    tuple(map(int, pts[a])),
                    tuple(map(int, pts[b])),
                    color,
                    thickness,
                    cv2.LINE_AA,
                    shift,
                )
        for j in np.nonzero(ok)[0]:
            cv2.circle(out, tuple(map(int, pts[j])), int(radius * mult), color, -1, cv2.LINE_AA, shift)
        x1, y1, x2, y2 = (int(round(float(v))) for v in poses.boxes[i])
        if draw_boxes:
            cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
        if poses.track_ids is not None and int(poses.track_ids[i]) >= 0:
            label = f"id {int(poses.track_ids[i])}"
            if ok.any():
                anchor = kp[ok].min(axis=0)
                org = (int(anchor[0]), int(anchor[1]) - 6)
            else:
                org = (x1, y1 - 6)
            org = (max(org[0], 0), max(org[1], 12))
            cv2.putText(out, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out
