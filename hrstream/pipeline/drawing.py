"""The draw stage: results painted onto a copy of the frame (``FrameResult.annotated``), the frame untouched."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import numpy as np

from hrstream.pose import draw_poses
from hrstream.seg import overlay
from hrstream.types import FrameResult

__all__ = ["DrawStage", "SegOverlay"]


class SegOverlay:
    """The class overlay of a frame: palette blended with ``opacity`` and a legend of the classes present."""

    def __init__(self, palette: Sequence[Sequence[int]], classes: Sequence[str], *, opacity: float) -> None:
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.classes = list(classes)
        self.opacity = float(opacity)

    def __call__(self, result: FrameResult) -> np.ndarray:
        if result.seg is None:
            return result.frame.image
        return overlay(
            result.frame.image, result.seg.labels, self.palette, opacity=self.opacity, classes=self.classes
        )


class DrawStage:
    """Draws the class overlay of a segmentation, then skeletons per identity with ID labels.

    Every result gets this stage's renderer (so ``FrameResult.plot()`` can draw later); with ``eager`` (a video
    is written) the drawing is done here, on this stage's thread. Without, the pipeline needs no draw stage:
    :meth:`attach` gives each result the renderer on the thread of the stage before.

    Args:
        skeleton: keypoint index pairs joined by limbs (the pose network's weights say which).
        kpt_thr: keypoints (and their limbs) drawn only above this score.
        draw_boxes: also draw each person's box.
        seg_overlay: paints the class overlay first (a segmentation is written), or ``None``.
        eager: draw every frame now (a video is written), else on ``plot()``.
    """

    def __init__(
        self,
        skeleton: Sequence[Sequence[int]],
        *,
        kpt_thr: float,
        draw_boxes: bool,
        seg_overlay: SegOverlay | None = None,
        eager: bool = True,
    ) -> None:
        self.skeleton = [(int(p[0]), int(p[1])) for p in skeleton]
        self.kpt_thr = kpt_thr
        self.draw_boxes = draw_boxes
        self.seg_overlay = seg_overlay
        self.eager = eager

    def render(self, result: FrameResult) -> np.ndarray:
        image = result.frame.image
        if self.seg_overlay is not None and result.seg is not None:
            image = self.seg_overlay(result)
        if result.poses is not None and len(result.poses):
            image = draw_poses(
                image, result.poses, skeleton=self.skeleton, kpt_thr=self.kpt_thr, draw_boxes=self.draw_boxes
            )
        elif image is result.frame.image:
            image = image.copy()
        return image

    def attach(self, result: FrameResult) -> FrameResult:
        """The result with this renderer, drawn later by ``plot()``."""
        result.renderer = self.render
        return result

    def process(self, result: FrameResult) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        result.renderer = self.render
        if self.eager:
            result.plot()
        result.timings["draw"] = time.perf_counter() - t0
        yield result
