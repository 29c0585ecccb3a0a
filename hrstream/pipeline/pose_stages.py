"""The pose stages: detect -> batch -> top-down HRNet -> track + smooth -> draw.

Every stage serves all sources of a run and takes :class:`~hrstream.types.FrameResult` items. State that
belongs to one source (the box carrier of ``--detect-every``, the tracker, the smoother, the online identity
repair) lives in a dict keyed by ``source_id``, created on the source's
:class:`~hrstream.runtime.markers.SourceStarted` and dropped on its :class:`~hrstream.runtime.markers.SourceEnded`.
The network is shared: one batch holds the people of frames of any source.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from hrstream.errors import ConfigError
from hrstream.models.builder import resolve_config
from hrstream.models.bundle import load_model_bundle
from hrstream.models.config import parse_config
from hrstream.pipeline.recipe import Recipe, RepairSection, TrackerSection
from hrstream.pose import TopDownEstimator, draw_poses, make_detector
from hrstream.pose.detectors import DETECTOR_SPECS, Detector, FileSelection, TorchvisionDetector
from hrstream.pose.topdown import CropBatch
from hrstream.runtime import InferenceEngine, InferenceHandle
from hrstream.runtime.markers import Marker, SourceEnded, SourceStarted
from hrstream.track import KeypointSmoother, PoseTracker, make_smoother
from hrstream.track.appearance import clear_view_histograms
from hrstream.track.relabel import OnlineRelabel
from hrstream.track.repair import RepairParams
from hrstream.types import Detections, FrameResult, Poses

__all__ = [
    "DetectStage",
    "DrawStage",
    "PerSource",
    "PoseInferStage",
    "TrackStage",
    "build_pose_detector",
    "build_pose_estimator",
    "file_selection",
    "frame_time",
    "repair_params",
]

log = logging.getLogger(__name__)

S = TypeVar("S")


def frame_time(result: FrameResult) -> float:
    """The time used by trackers and smoothers: PTS seconds, else wall clock, else index at 30 fps."""
    frame = result.frame
    if frame.pts_s is not None:
        return float(frame.pts_s)
    if frame.captured_at is not None:
        return float(frame.captured_at)
    return frame.index / 30.0


class PerSource(Generic[S]):
    """Per-source state of a stage: ``make(info)`` on a source's start, dropped at its end."""

    def __init__(self, make: Callable[[Any], S]) -> None:
        self._make = make
        self._states: dict[str, S] = {}

    def on_marker(self, marker: Marker) -> None:
        if isinstance(marker, SourceStarted):
            self._states[marker.source_id] = self._make(marker.info)
        elif isinstance(marker, SourceEnded):
            self._states.pop(marker.source_id, None)

    def __getitem__(self, source_id: str) -> S:
        return self._states[source_id]

    def __len__(self) -> int:
        return len(self._states)


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


def build_pose_detector(
    recipe: Recipe, device: str, *, test: Mapping[str, Any] | None = None, progress: bool = True
) -> Detector:
    """The recipe's person detector: a ``det_hrnet`` config (its weights from ``detector.weights`` or the
    registry; ``detector.nms_iou`` becomes the network's own NMS threshold) or one of
    :func:`hrstream.pose.make_detector`'s specs.

    ``detector.score_thr: null`` keeps each detector's own default: 0.5 for networks; for ``file:`` detections
    the official top-down selection of the pose config's ``TEST`` section (``test``: every box from
    ``IMAGE_THRE``, no box NMS, no cap; see :func:`file_selection`).
    """
    det = recipe.detector
    assert det is not None
    official = det.name.startswith("file:") and det.score_thr is None
    common = {
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


def file_selection(recipe: Recipe, test: Mapping[str, Any] | None) -> FileSelection | None:
    """The official selection of people from a detections file (``--detector file:`` with no threshold set),
    from the pose config's ``TEST`` section, else ``None``."""
    det = recipe.detector
    if det is None or not det.name.startswith("file:") or det.score_thr is not None:
        return None
    return FileSelection.from_test(test)


class _BoxCarrier:
    """Boxes of a source between detector runs (``--detect-every N``): a constant-velocity Kalman filter per box
    (the tracker on boxes alone: IoU association, confirmed at once)."""

    def __init__(self, max_age_s: float) -> None:
        self.tracker = PoseTracker(min_hits=1, max_age_s=max_age_s, iou_weight=1.0)

    def observe(self, det: Detections, t: float) -> None:
        n = len(det)
        self.tracker.update(Poses(det.boxes, det.scores, np.zeros((n, 17, 2)), np.zeros((n, 17))), t=t)

    def predict(self, t: float, width: int, height: int) -> Detections:
        _, boxes = self.tracker.predict_boxes(t)
        boxes = np.clip(boxes.astype(np.float32).reshape(-1, 4), 0, [width - 1, height - 1] * 2)
        return Detections(boxes, np.ones(len(boxes), np.float32))


class DetectStage:
    """Person boxes per frame (``FrameResult.detections``), one shared detector for every source.

    With ``every_n > 1`` the detector runs on every n-th frame of each source and a per-source box carrier
    moves the boxes through the frames in between. With ``--detector seg`` the boxes come from the frame's
    segmentation (the ``segment`` stage ran first).
    """

    def __init__(self, detector: Detector, *, every_n: int = 1, max_age_s: float = 1.0) -> None:
        self.detector = detector
        self.every_n = max(1, int(every_n))
        self._carriers: PerSource[_BoxCarrier | None] = PerSource(
            lambda info: _BoxCarrier(max_age_s) if self.every_n > 1 else None
        )

    def on_marker(self, marker: Marker) -> None:
        self._carriers.on_marker(marker)

    def process(self, result: FrameResult) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        frame = result.frame
        carrier = self._carriers[frame.source_id]
        t = frame_time(result)
        if carrier is not None and frame.index % self.every_n != 0 and carrier.tracker.num_tracks > 0:
            result.detections = carrier.predict(t, frame.width, frame.height)
        else:
            if result.seg is not None and hasattr(self.detector, "detect_from_seg"):
                boxes, scores = self.detector.detect_from_seg(result.seg)
            else:
                boxes, scores = self.detector.detect([frame])[0]
            result.detections = Detections(boxes, scores)
            if carrier is not None:
                carrier.observe(result.detections, t)
        result.timings["detect"] = time.perf_counter() - t0
        yield result


def build_pose_estimator(
    engine: InferenceEngine, spec: Any, meta: dict[str, Any], recipe: Recipe
) -> TopDownEstimator:
    """A :class:`TopDownEstimator` for ``engine``'s network (crops made on its device).

    The weights' meaning comes from the model bundle's ``meta`` (decoder, input and heatmap size, flip pairs,
    OKS sigmas); the flip test from the config's ``TEST`` section (``FLIP_TEST``, ``SHIFT_HEATMAP``). The
    recipe's ``pose`` fields override the flip test and the decoder when set. Poses go through OKS NMS as the
    official evaluation does with ``pose.oks_nms`` (0.9) or with file detections (``TEST.OKS_THRE``).
    """
    test = spec.test
    pose = recipe.pose
    assert pose is not None
    flip = bool(test.get("FLIP_TEST", False)) if pose.flip_test is None else pose.flip_test
    decoder = pose.decoder or str(meta.get("decoder") or "msra").lower()
    if not bool(test.get("POST_PROCESS", True)) and decoder == "msra":
        log.info("config TEST.POST_PROCESS is false: the quarter-pixel shift is still applied (msra decoder)")
    hw = meta.get("input_size") or (
        (spec.image_size[1], spec.image_size[0]) if spec.image_size else (256, 192)
    )
    heat = meta.get("heatmap_size")
    sel = file_selection(recipe, test)
    nms_thr = sel.oks_thr if sel is not None else (0.9 if pose.oks_nms else None)
    return TopDownEstimator(
        lambda x: engine.infer(x, normalized=True),
        input_size=(int(hw[1]), int(hw[0])),
        heatmap_size=(int(heat[1]), int(heat[0])) if heat else None,
        mean=meta["mean"],
        std=meta["std"],
        flip_pairs=meta.get("flip_pairs") or [],
        flip_test=flip,
        shift_heatmap=bool(test.get("SHIFT_HEATMAP", True)),
        decoder=decoder,
        device=engine.device,
        max_batch=recipe.runtime.batch_size * (2 if flip else 1),
        oks_nms_thr=nms_thr,
        oks_in_vis_thr=sel.in_vis_thr if sel is not None else 0.2,
        oks_sigmas=meta.get("oks_sigmas"),
        num_keypoints=spec.num_outputs,
    )


class PoseInferStage:
    """All people of a batch of frames (of any sources) through the network in one call, overlapped.

    Batch ``k + 1`` is cropped and handed to the engine (:meth:`InferenceEngine.submit`: on CUDA the copy to
    the device runs on its copy stream from reused pinned buffers) before batch ``k``'s heatmaps are waited
    for and decoded, so the host work of one batch overlaps the network's work on the other. On a CPU the
    engine runs each batch when it is submitted, and the results are the same.

    Args:
        estimator: crops (:meth:`TopDownEstimator.prepare`) and decoding (:meth:`TopDownEstimator.decode`).
        engine: runs the network.
        depth: batches kept in flight beyond the one being submitted (1 overlaps two batches).
    """

    def __init__(self, estimator: TopDownEstimator, engine: InferenceEngine, *, depth: int = 1) -> None:
        self.estimator = estimator
        self.engine = engine
        self.depth = max(0, int(depth))
        self.calls = 0  # network calls so far (batches), the next batch's number
        self._pending: deque[tuple[list[FrameResult], CropBatch, list[InferenceHandle], float]] = deque()

    def process(self, batch: Sequence[FrameResult]) -> Iterator[FrameResult]:
        t0 = time.perf_counter()
        dets = [r.detections if r.detections is not None else Detections.empty() for r in batch]
        crops = self.estimator.prepare(
            [r.frame.image for r in batch], [d.boxes for d in dets], [d.scores for d in dets]
        )
        handles = [
            self.engine.submit(chunk, normalized=crops.normalized)
            for chunk in (crops.chunks(self.estimator.max_batch) if crops.total else [])
        ]
        for r in batch:
            r.batch = self.calls
        self.calls += 1
        self._pending.append((list(batch), crops, handles, time.perf_counter() - t0))
        while len(self._pending) > self.depth:
            yield from self._complete()

    def _complete(self) -> Iterator[FrameResult]:
        batch, crops, handles, spent = self._pending.popleft()
        t0 = time.perf_counter()
        if handles:
            outs = [h.result() for h in handles]
            heatmaps = torch.cat(outs, 0) if len(outs) > 1 else outs[0]  # type: ignore[arg-type]
        else:
            heatmaps = torch.zeros(0)
        poses = self.estimator.decode(crops, heatmaps)  # type: ignore[arg-type]
        dt = (spent + time.perf_counter() - t0) / max(1, len(batch))
        for r, p in zip(batch, poses, strict=True):
            r.poses = p
            r.timings["infer"] = dt
            yield r

    def on_marker(self, marker: Marker) -> Iterator[FrameResult]:
        """A source started or ended: the batches in flight go out first (they may hold its frames)."""
        while self._pending:
            yield from self._complete()

    def finish(self) -> Iterator[FrameResult]:
        while self._pending:
            yield from self._complete()


def repair_params(tracker: TrackerSection, *, online: bool = False) -> RepairParams | None:
    """The recipe's ``tracker.repair`` as :class:`RepairParams` when its ``offline`` switch (the tracks document
    of a file) or, with ``online``, its ``online`` switch (:class:`OnlineRelabel`: the IDs of the JSONL, the
    video and live streams) is on; else (or with the tracker off) ``None``."""
    rep: RepairSection = tracker.repair
    if not (tracker.enabled and (rep.online if online else rep.offline)):
        return None
    return RepairParams(
        cut_distance=rep.cut_distance, join_distance=rep.join_distance, max_gap_s=rep.max_gap_s
    )


class _TrackState:
    """One source's identities (``PoseTracker``, then optionally ``OnlineRelabel``) and keypoint smoothing
    (``KeypointSmoother``, keyed by the tracker's own IDs)."""

    def __init__(self, recipe: Recipe, live: bool, oks_sigmas: Sequence[float] | None = None) -> None:
        tr, sm = recipe.tracker, recipe.smoother
        assert tr is not None and sm is not None
        self.tracker = (
            PoseTracker(
                max_age_s=tr.max_age_s,
                min_hits=tr.min_hits,
                high_thr=tr.high_thr,
                low_thr=tr.low_thr,
                new_track_thr=tr.new_track_thr,
                match_thr=tr.match_thr,
                iou_weight=tr.iou_weight,
                appearance_weight=tr.appearance_weight,
                new_track_iou=tr.new_track_iou,
                oks_sigmas=None if oks_sigmas is None else np.asarray(oks_sigmas, np.float64),
            )
            if tr.enabled
            else None
        )
        method = sm.live if live else sm.file
        self.smoother: KeypointSmoother | None = None
        if self.tracker is not None and method != "none":
            params = {"min_cutoff": sm.min_cutoff_hz, "beta": sm.beta} if method == "one_euro" else {}
            self.smoother = make_smoother(method, **params)
        online = repair_params(tr, online=True)
        self.relabel = OnlineRelabel(online) if online is not None else None
        # clear views feed the online relabelling and the offline repair of files' tracks documents
        offline = not live and repair_params(tr) is not None
        self.clear_views = self.tracker is not None and (offline or self.relabel is not None)


class TrackStage:
    """Identities and smoothing, per source, on one thread. With identity repair on, the confirmed people's
    clear-view histograms are computed once per frame here and passed on in ``FrameResult.clear_views``.
    ``oks_sigmas``: the keypoints' OKS sigmas (the weights' ``meta``) for the tracker's OKS term."""

    def __init__(self, recipe: Recipe, *, oks_sigmas: Sequence[float] | None = None) -> None:
        self._states: PerSource[_TrackState] = PerSource(
            lambda info: _TrackState(recipe, bool(info.is_live), oks_sigmas)
        )

    def on_marker(self, marker: Marker) -> None:
        self._states.on_marker(marker)

    def state(self, source_id: str) -> _TrackState:
        return self._states[source_id]

    def process(self, result: FrameResult) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        st = self._states[result.frame.source_id]
        poses = result.poses if result.poses is not None else Poses.empty()
        t = frame_time(result)
        views: list[np.ndarray | None] | None = None
        if st.tracker is not None:
            poses = st.tracker.update(poses, t=t, image=result.frame.image)
            if st.smoother is not None:
                poses = st.smoother.update(poses, t=t)
            if st.clear_views:
                confirmed = int((poses.track_ids >= 0).sum())  # type: ignore[operator]
                tracked = poses[np.arange(confirmed)]
                raw = tracked.raw_keypoints if tracked.raw_keypoints is not None else tracked.keypoints
                views = clear_view_histograms(result.frame.image, tracked.boxes, raw, tracked.keypoint_scores)
                views = views + [None] * (len(poses) - confirmed)  # nothing kept of the others
            if st.relabel is not None:
                poses = st.relabel.update(poses, t=t, views=views)
        result.poses = poses
        result.clear_views = views
        result.timings["track"] = time.perf_counter() - t0
        yield result


class DrawStage:
    """Draws the results onto a copy of the frame (``FrameResult.annotated``; the frame stays untouched):
    the class overlay of a segmentation, then skeletons per identity with ID labels.

    Every result gets this stage's renderer (so ``FrameResult.plot()`` can draw later); with ``eager`` (a video
    is written) the drawing is done here, on this stage's thread.
    """

    def __init__(
        self,
        skeleton: Sequence[Sequence[int]],
        *,
        kpt_thr: float,
        draw_boxes: bool,
        seg_overlay: Callable[[FrameResult], np.ndarray] | None = None,
        eager: bool = True,
    ) -> None:
        self.skeleton = [tuple(p) for p in skeleton]
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

    def process(self, result: FrameResult) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        result.renderer = self.render
        if self.eager:
            result.plot()
        result.timings["draw"] = time.perf_counter() - t0
        yield result
