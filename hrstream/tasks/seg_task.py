"""The segmentation task as pipeline stages: batch -> HRNetV2 -> (temporal smoothing) -> overlay -> write.

Per input ``NAME`` inside ``--out``: ``NAME.mp4`` (overlay video), ``NAME.jsonl`` (class fractions per frame,
optional COCO RLE masks), and ``NAME.labels/{index:06d}.png`` (lossless uint8 label maps that decode to the
exact labels).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hrstream.errors import ConfigError
from hrstream.io import output_path
from hrstream.runtime import InferenceEngine
from hrstream.seg import (
    LabelMapWriter,
    ProbabilitySmoother,
    SegmentationEstimator,
    boxes_from_segmentation,
    class_fractions,
    masks_to_rle,
    overlay,
)
from hrstream.tasks.outputs import JobOutputs
from hrstream.tasks.pose_task import frame_time
from hrstream.types import Frame, FrameResult, SegMap

__all__ = ["SegDrawStage", "SegInferStage", "SegOutputs", "build_seg_estimator"]


def build_seg_estimator(
    engine: InferenceEngine, spec: Any, meta: dict[str, Any], recipe: dict[str, Any]
) -> SegmentationEstimator:
    """Whole-frame inference at the config's test size (``TEST.IMAGE_SIZE``, aspect kept) unless the recipe
    gives ``seg.test_size``; bilinear upsampling with the config's ``ALIGN_CORNERS``; argmax on the device."""
    seg = recipe["seg"]
    size = seg.get("test_size") or spec.image_size
    return SegmentationEstimator(
        lambda x: engine.infer(x, normalized=True),
        num_classes=spec.num_outputs,
        test_size=tuple(size) if size else None,
        align_corners=spec.align_corners,
        mean=meta["mean"],
        std=meta["std"],
        device=engine.device,
        flip=bool(seg.get("flip", False)),
        scales=tuple(seg.get("scales") or (1.0,)),
        max_batch=int(recipe["runtime"]["batch_size"]) * (2 if seg.get("flip") else 1),
    )


class SegInferStage:
    """A batch of frames through the network in one call; optional EMA of probabilities (reset at cuts)."""

    def __init__(
        self, estimator: SegmentationEstimator, classes: Sequence[str], *, tau_s: float | None
    ) -> None:
        self.estimator = estimator
        self.classes = tuple(classes)
        self.smoother = ProbabilitySmoother(tau_s) if tau_s else None

    def process(self, batch: Sequence[Frame]) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        images = [f.image for f in batch]
        if self.smoother is None:
            labels = self.estimator.predict(images)
        else:
            labels = []
            for f, probs in zip(batch, self.estimator.predict_probs(images), strict=True):
                smoothed = self.smoother.update(probs, t=frame_time(f), image=f.image)
                labels.append(torch.argmax(smoothed, dim=0).to(torch.uint8).cpu().numpy())
        dt = (time.perf_counter() - t0) / max(1, len(batch))
        return [
            FrameResult(f, seg=SegMap(lab, self.classes), timings={"infer": dt})
            for f, lab in zip(batch, labels, strict=True)
        ]


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


class SegDrawStage:
    """The overlay video frame: palette blended with ``opacity`` and a legend of the classes present."""

    def __init__(self, palette: Sequence[Sequence[int]], classes: Sequence[str], *, opacity: float) -> None:
        self.palette = np.asarray(palette, np.uint8).reshape(-1, 3)
        self.classes = list(classes)
        self.opacity = float(opacity)

    def render(self, result: FrameResult) -> np.ndarray:
        assert result.seg is not None
        return overlay(
            result.frame.image, result.seg.labels, self.palette, opacity=self.opacity, classes=self.classes
        )

    def process(self, result: FrameResult) -> Iterable[tuple[FrameResult, np.ndarray]]:
        yield result, self.render(result)


class SegOutputs(JobOutputs):
    """:class:`JobOutputs` plus lossless label maps and per-class fractions (and optional RLE) in the JSONL."""

    def __init__(
        self,
        out_dir: str | Path,
        info: Any,
        *,
        label_maps: bool,
        rle: bool,
        classes: Sequence[str],
        **kw: Any,
    ) -> None:
        self.classes = list(classes)
        self.rle = rle
        kw.setdefault("task", "seg")
        kw.setdefault("tracks", False)
        super().__init__(out_dir, info, record_extra=self._extra, **kw)
        self._labels: LabelMapWriter | None = None
        if label_maps:
            self.paths["labels"] = output_path(out_dir, info.name, ".labels")
            self._labels = LabelMapWriter(self.paths["labels"])

    def _extra(self, result: FrameResult) -> dict[str, Any]:
        assert result.seg is not None
        rec: dict[str, Any] = {
            "classes": {k: round(v, 6) for k, v in class_fractions(result.seg.labels, self.classes).items()}
        }
        if self.rle:
            present = [int(c) for c in np.unique(result.seg.labels)]
            rec["rle"] = masks_to_rle(result.seg.labels, present, classes=self.classes)
        return rec

    def write(self, item: tuple[FrameResult, np.ndarray]) -> None:
        result = item[0]
        if self._labels is not None and result.seg is not None:
            self._labels.write(result.frame.index, result.seg.labels)
        super().write(item)

    def close(self) -> None:
        if self._labels is not None:
            self._labels.close()
        super().close()
