"""Person boxes for the estimators that need them: the detect stage and the recipe's detector.

:class:`DetectStage` takes a batch of frames (of any sources) and runs the detector once over the frames that
need it; with ``--detect-every N`` the frames in between take the boxes the source's tracker predicts
(:meth:`~hrstream.pipeline.tracking.SourceTracking.predicted_boxes`), so a source keeps one tracker and boxes
stay boxes. With ``--detector seg`` the boxes come from each frame's segmentation (the segmentation ran first).

:func:`build_detector` turns the recipe's ``detector`` section into a detector: a ``det_hrnet`` config (its
weights from ``detector.weights`` or the registry; ``detector.nms_iou`` becomes the network's own NMS
threshold), the segmentation's connected components, or one of :func:`hrstream.pose.make_detector`'s specs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hrstream.errors import ConfigError
from hrstream.models.builder import resolve_config
from hrstream.models.bundle import load_model_bundle
from hrstream.models.config import parse_config
from hrstream.pipeline.recipe import DetectorSection
from hrstream.pipeline.tracking import SourceTracking
from hrstream.pose import make_detector
from hrstream.pose.detectors import DETECTOR_SPECS, Detector, TorchvisionDetector, check_flip_test
from hrstream.runtime.markers import Marker, SharedPerSource, SourceEnded, SourceStarted
from hrstream.seg import boxes_from_segmentation
from hrstream.types import Detections, FrameResult, SegMap

__all__ = ["DetectStage", "SegPersonDetector", "build_detector"]


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

    def detect_seg(self, segs: Sequence[SegMap]) -> list[Detections]:
        return [
            Detections(*boxes_from_segmentation(s.labels, self.class_ids, min_area=self.min_area))
            for s in segs
        ]


class DetectStage:
    """Person boxes per frame (``FrameResult.detections``), one shared detector for every source.

    Args:
        detector: ``detect(frames) -> [Detections]`` (one call per batch), or a :class:`SegPersonDetector`.
        every_n: run the detector on every n-th frame of each source; between, the source's tracker predicts.
            A source's own ``detect_every`` option (:class:`~hrstream.runtime.markers.SourceStarted`) wins.
        trackers: the per-source tracking state (shared with the track stage), read between detector runs.
    """

    def __init__(
        self,
        detector: Detector | SegPersonDetector,
        *,
        every_n: int = 1,
        trackers: SharedPerSource[SourceTracking] | None = None,
    ) -> None:
        self.detector = detector
        self.every_n = max(1, int(every_n))
        self.trackers = trackers
        self._every: dict[str, int] = {}  # per source, while it runs

    def on_marker(self, marker: Marker) -> None:
        if isinstance(marker, SourceStarted):
            self._every[marker.source_id] = max(1, int(marker.options.get("detect_every") or self.every_n))
        elif isinstance(marker, SourceEnded):
            self._every.pop(marker.source_id, None)
        if self.trackers is not None:
            self.trackers.on_marker(marker, owner=False)

    def _carried(self, result: FrameResult) -> Detections | None:
        frame = result.frame
        every = self._every.get(frame.source_id, self.every_n)
        if every == 1 or self.trackers is None or frame.index % every == 0:
            return None
        state = self.trackers.get(frame.source_id)
        return None if state is None else state.predicted_boxes(frame.time, frame.width, frame.height)

    def process(self, batch: Sequence[FrameResult] | FrameResult) -> Iterable[FrameResult]:
        """Boxes for a batch of frames (after a batch stage: a network detector) or for one frame."""
        if isinstance(batch, FrameResult):
            batch = [batch]
        t0 = time.perf_counter()
        todo: list[FrameResult] = []
        for r in batch:
            r.detections = self._carried(r)
            if r.detections is None:
                todo.append(r)
        if todo:
            if isinstance(self.detector, SegPersonDetector):
                segs = [r.seg for r in todo]
                if any(s is None for s in segs):
                    raise ConfigError("--detector seg needs the segmentation stage before detection")
                found = self.detector.detect_seg(segs)  # type: ignore[arg-type]
            else:
                found = self.detector.detect([r.frame for r in todo])
            for r, d in zip(todo, found, strict=True):
                r.detections = d
        dt = (time.perf_counter() - t0) / max(1, len(batch))
        for r in batch:
            r.timings["detect"] = dt
        return batch


def _det_config(name: str) -> bool:
    """Whether ``--detector NAME`` names a ``det_hrnet`` config (registered name or YAML path)."""
    if name in DETECTOR_SPECS or name == "seg" or name.startswith("file:"):
        return False
    try:
        data, src = resolve_config(name)
    except ConfigError:
        return False
    spec = parse_config(data, source=src)
    if spec.task != "det":
        raise ConfigError(
            f"--detector {name} is a {spec.task} network ({spec.name}); a detector needs det_hrnet"
        )
    return True


def build_detector(
    det: DetectorSection,
    device: str,
    *,
    test: Mapping[str, Any] | None = None,
    seg_classes: Sequence[str] | None = None,
    progress: bool = True,
) -> Detector | SegPersonDetector:
    """The recipe's person detector on ``device``.

    ``detector.score_thr: null`` keeps each detector's own default: 0.5 for networks; for ``file:`` detections
    the official top-down selection of the pose config's ``TEST`` section (``test``: every box from
    ``IMAGE_THRE``, no box NMS, no cap). ``seg_classes``: the classes of the segmentation network that runs
    first (``--detector seg``).
    """
    if det.name == "seg":
        check_flip_test("seg", det.flip_test)
        if seg_classes is None:
            raise ConfigError("--detector seg needs a segmentation network (seg_model in the recipe)")
        return SegPersonDetector(seg_classes, det.seg_classes, min_area=det.min_area)
    official = det.name.startswith("file:") and det.score_thr is None
    common: dict[str, Any] = {
        "score_thr": det.score_thr,
        "nms_iou": None if official else det.nms_iou,
        "max_people": None if official else det.max_people,
        "device": device,
        "flip_test": det.flip_test,
    }
    if _det_config(det.name):
        bundle = load_model_bundle(det.name, det.weights, task="det", progress=progress)
        if det.nms_iou is not None:
            # FCOS's own per-class NMS runs first (per view with the flip test): the recipe's value replaces the
            # config's NMS_THRESH, or a looser recipe NMS would have no effect
            bundle.model.nms_thresh = float(det.nms_iou)
        common["score_thr"] = 0.5 if det.score_thr is None else det.score_thr
        return TorchvisionDetector(bundle.model, pixel_edges_at_integers=False, **common)
    return make_detector(det.name, test=test, **common)
