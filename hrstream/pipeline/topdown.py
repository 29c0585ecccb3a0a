"""The top-down pose estimator of a pipeline: the people of a batch of frames (of any sources) cropped from their
boxes, through the network in as few calls as the engine's batch allows, decoded back to image pixels.

:class:`TopDownPose` implements the :class:`~hrstream.pipeline.estimators.Estimator` seam over
:class:`hrstream.pose.TopDownEstimator` (the official crops, flip test and heatmap decoders);
:func:`topdown_estimator` builds it from a loaded network, its weights' meaning and the recipe's ``pose``
section.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

import torch

from hrstream.models.bundle import ModelBundle
from hrstream.pipeline.estimators import Chunk
from hrstream.pipeline.recipe import PoseSections
from hrstream.pose import TopDownEstimator
from hrstream.pose.detectors import FileSelection
from hrstream.pose.topdown import CropBatch
from hrstream.runtime import InferenceEngine
from hrstream.runtime.engine import Output
from hrstream.types import Detections, FrameResult

__all__ = ["TopDownPose", "topdown_estimator"]

log = logging.getLogger(__name__)


class TopDownPose:
    """Crops of every person box of a batch (``FrameResult.detections``), decoded into ``FrameResult.poses``
    (keypoints in image pixels, the boxes and their scores kept); frames without boxes get no people."""

    needs_boxes: ClassVar[bool] = True
    fills: ClassVar[str] = "poses"
    device_outputs: ClassVar[bool] = False

    def __init__(self, estimator: TopDownEstimator) -> None:
        self.estimator = estimator

    def weight(self, result: FrameResult) -> int:
        return max(1, len(result.detections) if result.detections is not None else 0)

    def prepare(self, batch: Sequence[FrameResult]) -> CropBatch:
        dets = [r.detections if r.detections is not None else Detections.empty() for r in batch]
        return self.estimator.prepare(
            [r.frame.image for r in batch], [d.boxes for d in dets], [d.scores for d in dets]
        )

    def chunks(self, crops: CropBatch) -> list[Chunk]:
        if not crops.total:
            return []
        return [Chunk(c, crops.normalized) for c in crops.chunks(self.estimator.max_batch)]

    def decode(self, batch: Sequence[FrameResult], crops: CropBatch, outputs: Sequence[Output]) -> None:
        heatmaps = torch.cat(outputs, 0) if len(outputs) > 1 else (outputs[0] if outputs else torch.zeros(0))  # type: ignore[arg-type]
        for r, poses in zip(batch, self.estimator.decode(crops, heatmaps), strict=True):  # type: ignore[arg-type]
            r.poses = poses
            r.frame.release_device()  # the last network that needs the frame on the device


def topdown_estimator(
    engine: InferenceEngine, bundle: ModelBundle, sections: PoseSections, *, batch_size: int
) -> TopDownPose:
    """The top-down estimator of ``bundle``'s network on ``engine`` (crops made on its device).

    The weights' meaning comes from the bundle's metadata (decoder, input and heatmap size, flip pairs, OKS
    sigmas); the flip test from the config's ``TEST`` section (``FLIP_TEST``, ``SHIFT_HEATMAP``). The recipe's
    ``pose`` section overrides the flip test and the decoder when set. Poses go through OKS NMS as the official
    evaluation does with ``pose.oks_nms`` (0.9) or with file detections (``TEST.OKS_THRE``).
    """
    spec, meta, pose = bundle.spec, bundle.meta, sections.pose
    test = spec.test
    flip = bool(test.get("FLIP_TEST", False)) if pose.flip_test is None else pose.flip_test
    decoder = pose.decoder or meta.decoder
    if not bool(test.get("POST_PROCESS", True)) and decoder == "msra":
        log.info("config TEST.POST_PROCESS is false: the quarter-pixel shift is still applied (msra decoder)")
    sel = file_selection(sections, test)
    nms_thr = sel.oks_thr if sel is not None else (0.9 if pose.oks_nms else None)
    input_hw = meta.input_size or (256, 192)
    heat_hw = meta.heatmap_size
    estimator = TopDownEstimator(
        lambda x: engine.infer(x, normalized=True),
        input_size=(int(input_hw[1]), int(input_hw[0])),
        heatmap_size=(int(heat_hw[1]), int(heat_hw[0])) if heat_hw else None,
        mean=meta.mean,
        std=meta.std,
        flip_pairs=meta.flip_pairs,
        flip_test=flip,
        shift_heatmap=bool(test.get("SHIFT_HEATMAP", True)),
        decoder=decoder,
        device=engine.device,
        max_batch=batch_size * (2 if flip else 1),
        oks_nms_thr=nms_thr,
        oks_in_vis_thr=sel.in_vis_thr if sel is not None else 0.2,
        oks_sigmas=meta.oks_sigmas,
        num_keypoints=spec.num_outputs,
    )
    return TopDownPose(estimator)


def file_selection(sections: PoseSections, test: dict) -> FileSelection | None:
    """The official selection of people from a detections file (``--detector file:`` with no threshold set),
    from the pose config's ``TEST`` section, else ``None``."""
    det = sections.detector
    if not det.name.startswith("file:") or det.score_thr is not None:
        return None
    return FileSelection.from_test(test)
