"""The segmentation stages: a batch of frames (of any sources) through the network, per-source temporal
smoothing, and the class overlay that the draw stage paints under the skeletons."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

from hrstream.errors import ConfigError
from hrstream.pipeline.pose_stages import PerSource, frame_time
from hrstream.pipeline.recipe import Recipe
from hrstream.runtime import InferenceEngine
from hrstream.runtime.markers import Marker
from hrstream.seg import ProbabilitySmoother, SegmentationEstimator, boxes_from_segmentation, overlay
from hrstream.types import Frame, FrameResult, SegMap

__all__ = ["SegInferStage", "SegOverlay", "SegPersonDetector", "build_seg_estimator"]


def build_seg_estimator(
    engine: InferenceEngine, spec: Any, meta: dict[str, Any], recipe: Recipe
) -> SegmentationEstimator:
    """Whole-frame inference at the config's test size (``TEST.IMAGE_SIZE``, aspect kept) unless the recipe
    gives ``seg.test_size``; bilinear upsampling with the config's ``ALIGN_CORNERS``; argmax on the device."""
    seg = recipe.seg
    size = seg.test_size or spec.image_size
    return SegmentationEstimator(
        lambda x: engine.infer(x, normalized=True),
        num_classes=spec.num_outputs,
        test_size=tuple(size) if size else None,
        align_corners=spec.align_corners,
        mean=meta["mean"],
        std=meta["std"],
        device=engine.device,
        flip=seg.flip,
        scales=seg.scales,
        max_batch=(seg.batch_size or recipe.runtime.batch_size) * (2 if seg.flip else 1),
    )


class SegInferStage:
    """A batch of frames (of any sources) through the network in one call; with ``tau_s`` an EMA of the class
    probabilities per source (reset at scene cuts)."""

    def __init__(
        self, estimator: SegmentationEstimator, classes: Sequence[str], *, tau_s: float | None
    ) -> None:
        self.estimator = estimator
        self.classes = tuple(classes)
        self.tau_s = tau_s
        self.calls = 0  # network calls so far (batches)
        self._smoothers: PerSource[ProbabilitySmoother] = PerSource(
            lambda info: ProbabilitySmoother(tau_s)  # type: ignore[arg-type]
        )

    def on_marker(self, marker: Marker) -> None:
        if self.tau_s:
            self._smoothers.on_marker(marker)

    def process(self, batch: Sequence[FrameResult]) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        images = [r.frame.image for r in batch]
        if not self.tau_s:
            labels = self.estimator.predict(images)
        else:
            labels = []
            for r, probs in zip(batch, self.estimator.predict_probs(images), strict=True):
                smoother = self._smoothers[r.frame.source_id]
                smoothed = smoother.update(probs, t=frame_time(r), image=r.frame.image)
                labels.append(torch.argmax(smoothed, dim=0).to(torch.uint8).cpu().numpy())
        dt = (time.perf_counter() - t0) / max(1, len(batch))
        for r, lab in zip(batch, labels, strict=True):
            r.seg = SegMap(lab, self.classes)
            r.timings["segment"] = dt
            if r.batch is None:  # a pose task numbers its pose network's calls
                r.batch = self.calls
        self.calls += 1
        return batch


class SegPersonDetector:
    """``--detector seg``: person boxes from the segmentation (connected components of the person classes,
    components smaller than ``min_area`` pixels dropped), so the whole pipeline runs on HRNet alone."""

    def __init__(self, classes: Sequence[str], person_classes: Sequence[str], *, min_area: int = 400) -> None:
        names = [c.lower() for c in classes]
        self.class_ids = [names.index(c.lower()) for c in person_classes if c.lower() in names]
        if not self.class_ids:
            raise ConfigError(
                f"--detector seg: the segmentation model has none of the person classes {list(person_classes)} "
                f"(its classes: {', '.join(classes)})"
            )
        self.min_area = int(min_area)

    def detect_from_seg(self, seg: SegMap) -> tuple[np.ndarray, np.ndarray]:
        return boxes_from_segmentation(seg.labels, self.class_ids, min_area=self.min_area)

    def detect(self, frames: Sequence[Frame]) -> list[tuple[np.ndarray, np.ndarray]]:
        raise ConfigError("--detector seg needs the segmentation stage before detection")


class SegOverlay:
    """The class overlay of a frame: palette blended with ``opacity`` and a legend of the classes present."""

    def __init__(self, palette: Sequence[Sequence[int]], classes: Sequence[str], *, opacity: float) -> None:
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.classes = list(classes)
        self.opacity = float(opacity)

    def __call__(self, result: FrameResult) -> np.ndarray:
        assert result.seg is not None
        return overlay(
            result.frame.image, result.seg.labels, self.palette, opacity=self.opacity, classes=self.classes
        )
