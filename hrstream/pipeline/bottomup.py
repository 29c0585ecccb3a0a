"""The bottom-up pose estimator of a pipeline: every person of whole frames (of any sources) found by a
HigherHRNet in one call per test scale, grouped by their tags; no detector and no crops.

:class:`BottomUpPose` implements the :class:`~hrstream.pipeline.estimators.Estimator` seam over
:mod:`hrstream.pose.bottomup` (the official test: resize to a multiple of 64, scales, flip, aggregation,
grouping, refinement): the frames of a batch are padded to a common size (the padding masked out of the peaks)
and the people come out as :class:`~hrstream.types.Poses` (boxes from their keypoints), so tracking, smoothing,
drawing and every output work as for top-down pose. ``detector.score_thr`` is the person score threshold and
``detector.max_people`` the cap.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from hrstream.errors import ConfigError
from hrstream.models.bundle import ModelBundle
from hrstream.models.higherhrnet import BottomUpTestSpec
from hrstream.pipeline.estimators import Chunk
from hrstream.pipeline.recipe import PoseSections
from hrstream.pose.bottomup import BottomUpBatch, decode_batch, get_multi_scale_size, prepare_batch, to_poses
from hrstream.runtime import InferenceEngine
from hrstream.runtime.engine import Output
from hrstream.types import FrameResult

__all__ = ["BottomUpPose", "bottomup_estimator"]


class BottomUpPose:
    """People of whole frames into ``FrameResult.poses``, best first (``score_thr``: the lowest person score
    kept; ``max_people``: at most this many). Its maps are decoded where the network ran (``device_outputs``)."""

    needs_boxes: ClassVar[bool] = False
    fills: ClassVar[str] = "poses"
    device_outputs: ClassVar[bool] = True

    def __init__(
        self, test: BottomUpTestSpec, engine: InferenceEngine, *, score_thr: float, max_people: int | None
    ) -> None:
        self.test = test
        self.device = engine.device
        self.score_thr = score_thr
        self.max_people = max_people

    def weight(self, result: FrameResult) -> int:
        """A frame weighs what its network input costs in top-down crops of 256x192 (``runtime.batch_size``
        counts those): a 16:9 frame at input size 512 (512x960) weighs 10."""
        base, _, _ = get_multi_scale_size(
            result.frame.height, result.frame.width, self.test.input_size, 1.0, 1.0
        )
        return max(1, round(base[0] * base[1] / (256 * 192)))

    def prepare(self, batch: Sequence[FrameResult]) -> BottomUpBatch:
        return prepare_batch([r.frame.image for r in batch], self.test, self.device)

    def chunks(self, prepared: BottomUpBatch) -> list[Chunk]:
        return [Chunk(x, normalized=True) for x in prepared.inputs()]

    def decode(
        self, batch: Sequence[FrameResult], prepared: BottomUpBatch, outputs: Sequence[Output]
    ) -> None:
        calls = [o if isinstance(o, tuple) else (o,) for o in outputs]
        for r, found in zip(batch, decode_batch(prepared, calls), strict=True):
            r.poses = to_poses(found, score_threshold=self.score_thr, max_people=self.max_people)


def bottomup_estimator(
    engine: InferenceEngine, bundle: ModelBundle, sections: PoseSections, *, batch_size: int
) -> BottomUpPose:
    """The bottom-up estimator of ``bundle``'s HigherHRNet on ``engine``: the config's ``TEST`` settings (the
    recipe's ``pose.flip_test`` overrides ``FLIP_TEST``), ``detector.score_thr`` (``None``: 0) and
    ``detector.max_people`` as the person threshold and cap. ``batch_size`` frames go through one call."""
    higher = bundle.spec.higher
    if higher is None:  # pragma: no cover - the bottomup estimator kind comes from a HigherHRNet config
        raise ConfigError(f"{bundle.name} is not a bottom-up network")
    test = higher.test
    if sections.pose.flip_test is not None and sections.pose.flip_test != test.flip_test:
        import dataclasses

        test = dataclasses.replace(test, flip_test=sections.pose.flip_test)
    det = sections.detector
    return BottomUpPose(test, engine, score_thr=det.score_thr or 0.0, max_people=det.max_people)
