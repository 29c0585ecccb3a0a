"""The segmentation estimator of a pipeline: whole frames of a batch (of any sources) through the network, with
an optional EMA of the class probabilities per source (reset at scene cuts), into ``FrameResult.seg``.

:class:`Segmentation` implements the :class:`~hrstream.pipeline.estimators.Estimator` seam over
:class:`hrstream.seg.SegmentationEstimator` (the official test path: normalisation, bilinear upsampling with the
config's ``ALIGN_CORNERS``, flip, scales, windows); :func:`segmentation_estimator` builds it from a loaded
network and the recipe's ``seg`` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch

from hrstream.models.bundle import ModelBundle
from hrstream.pipeline.estimators import Chunk
from hrstream.pipeline.recipe import SegSection
from hrstream.runtime import InferenceEngine
from hrstream.runtime.engine import Output
from hrstream.runtime.markers import Marker, PerSource
from hrstream.seg import ProbabilitySmoother, SegmentationEstimator
from hrstream.seg.inference import SegInputs
from hrstream.types import FrameResult, SegMap

__all__ = ["Segmentation", "segmentation_estimator"]


class Segmentation:
    """Label maps ``uint8 (H, W)`` at each frame's resolution; with ``tau_s`` the argmax of per-source
    exponentially smoothed class probabilities (:class:`~hrstream.seg.ProbabilitySmoother`). Its outputs are
    decoded on the engine's device (``device_outputs``)."""

    needs_boxes: ClassVar[bool] = False
    fills: ClassVar[str] = "seg"
    device_outputs: ClassVar[bool] = True

    def __init__(
        self, estimator: SegmentationEstimator, classes: Sequence[str], *, tau_s: float | None
    ) -> None:
        self.estimator = estimator
        self.classes = tuple(classes)
        self.tau_s = tau_s
        self._smoothers: PerSource[ProbabilitySmoother] = PerSource(
            lambda info: ProbabilitySmoother(tau_s)  # type: ignore[arg-type]
        )

    def weight(self, result: FrameResult) -> int:
        return 1

    def on_marker(self, marker: Marker) -> None:
        if self.tau_s:
            self._smoothers.on_marker(marker)

    def prepare(self, batch: Sequence[FrameResult]) -> SegInputs:
        return self.estimator.prepare_inputs([r.frame.image for r in batch])

    def chunks(self, prepared: SegInputs) -> list[Chunk]:
        return [Chunk(x, normalized=True) for _, x in prepared.chunks]

    def decode(self, batch: Sequence[FrameResult], prepared: SegInputs, outputs: Sequence[Output]) -> None:
        logits = self.estimator.combine(prepared, outputs)
        for r, lg in zip(batch, logits, strict=True):
            if self.tau_s:
                probs = self._smoothers[r.frame.source_id].update(
                    torch.softmax(lg, dim=0), t=r.frame.time, image=r.frame.image
                )
                lg = probs
            r.seg = SegMap(torch.argmax(lg, dim=0).to(torch.uint8).cpu().numpy(), self.classes)


def segmentation_estimator(
    engine: InferenceEngine, bundle: ModelBundle, seg: SegSection, *, batch_size: int
) -> Segmentation:
    """Whole-frame inference at the config's test size (``TEST.IMAGE_SIZE``, aspect kept) unless the recipe
    gives ``seg.test_size``; ``seg.batch_size`` (else ``batch_size``) frames per call (twice the inputs with the
    flip); the recipe's flip, scales and EMA time constant."""
    spec = bundle.spec
    size = seg.test_size or spec.image_size
    calls = seg.batch_size or batch_size
    estimator = SegmentationEstimator(
        lambda x: engine.infer(x, normalized=True),
        num_classes=spec.num_outputs,
        test_size=tuple(size) if size else None,  # type: ignore[arg-type]
        align_corners=spec.align_corners,
        mean=bundle.meta.mean,
        std=bundle.meta.std,
        device=engine.device,
        flip=seg.flip,
        scales=seg.scales,
        max_batch=calls * (2 if seg.flip else 1),
    )
    return Segmentation(estimator, bundle.meta.classes, tau_s=seg.smoothing_tau_s)
