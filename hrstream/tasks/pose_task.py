"""The pose task as pipeline stages: detect -> batch -> top-down HRNet -> track + smooth -> draw -> write.

Threads (one per stage, joined by bounded queues): ``decode`` (the source), ``detect`` (person boxes; on
frames where the detector is skipped, boxes predicted by a box tracker), ``batch`` (frames grouped by their
number of people, with a deadline), ``infer`` (all crops of the batch in one network call, decoded on the
device), ``track`` (identities and keypoint smoothing; stateful, so on its own thread), ``draw`` (annotated
copy of the frame) and ``write`` (video, JSONL, tracks document).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hrstream.errors import ConfigError
from hrstream.models.builder import resolve_config
from hrstream.models.config import parse_config
from hrstream.pose import TopDownEstimator, draw_poses, make_detector
from hrstream.pose.detectors import DETECTOR_SPECS, Detector, TorchvisionDetector
from hrstream.runtime import InferenceEngine
from hrstream.tasks.model_loading import load_model_bundle
from hrstream.track import KeypointSmoother, PoseTracker, make_smoother
from hrstream.track.appearance import clear_view_histograms
from hrstream.track.relabel import OnlineRelabel
from hrstream.track.repair import RepairParams
from hrstream.types import Frame, FrameResult, Poses, SegMap

__all__ = [
    "DetectStage",
    "PoseInferStage",
    "PoseWork",
    "TrackStage",
    "build_pose_estimator",
    "build_pose_detector",
    "repair_params",
]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PoseWork:
    """A frame in flight: its person boxes, then its poses. ``timings`` in seconds per stage."""

    frame: Frame
    boxes: np.ndarray  # (n, 4) xyxy
    scores: np.ndarray  # (n,)
    poses: Poses | None = None
    timings: dict[str, float] = field(default_factory=dict)
    dropped_before: int = 0
    seg: SegMap | None = None


def frame_time(frame: Frame) -> float:
    """The time used by trackers and smoothers: PTS seconds, else wall clock, else index at 30 fps."""
    if frame.pts_s is not None:
        return float(frame.pts_s)
    if frame.captured_at is not None:
        return float(frame.captured_at)
    return frame.index / 30.0


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


def build_pose_detector(recipe: dict[str, Any], device: str, *, progress: bool = True) -> Detector:
    """The recipe's person detector: a ``det_hrnet`` config (its weights from ``detector.weights`` or the
    registry; ``detector.nms_iou`` becomes the network's own NMS threshold) or one of
    :func:`hrstream.pose.make_detector`'s specs."""
    det = recipe["detector"]
    name = str(det["name"])
    common = {
        "score_thr": float(det["score_thr"]),
        "nms_iou": det.get("nms_iou"),
        "max_people": det.get("max_people"),
        "device": device,
        "flip_test": bool(det.get("flip_test", False)),
    }
    if _det_config(name):
        bundle = load_model_bundle(name, det.get("weights"), task="det", progress=progress)
        if common["nms_iou"] is not None:
            # FCOS's own per-class NMS runs first (per view with the flip test): the recipe's value replaces the
            # config's NMS_THRESH, or a looser recipe NMS would have no effect
            bundle.model.nms_thresh = float(common["nms_iou"])
        return TorchvisionDetector(bundle.model, pixel_edges_at_integers=False, **common)
    return make_detector(name, **common)


class DetectStage:
    """Person boxes per frame. With ``every_n > 1`` the detector runs on every n-th frame of a source and a
    box tracker (Kalman, constant velocity) carries the boxes through the frames in between."""

    def __init__(self, detector: Detector, *, every_n: int = 1, max_age_s: float = 1.0) -> None:
        self.detector = detector
        self.every_n = max(1, int(every_n))
        self._carrier = PoseTracker(min_hits=1, max_age_s=max_age_s) if self.every_n > 1 else None
        self._k = 17
        self._last_index: int | None = None

    def process(self, item: Frame | FrameResult) -> Iterable[PoseWork]:
        """``item``: a decoded frame, or a segmented one (``--task pose,seg`` / ``--detector seg``)."""
        t0 = time.perf_counter()
        frame, seg = (item.frame, item.seg) if isinstance(item, FrameResult) else (item, None)
        timings = dict(item.timings) if isinstance(item, FrameResult) else {}
        # frames are indexed in decode order: a gap means a live queue dropped frames before this one
        dropped = 0 if self._last_index is None else max(0, frame.index - self._last_index - 1)
        self._last_index = frame.index
        t = frame_time(frame)
        if self._carrier is not None and frame.index % self.every_n != 0 and self._carrier.num_tracks > 0:
            _, boxes = self._carrier.predict_boxes(t)
            h, w = frame.height, frame.width
            boxes = np.clip(boxes.astype(np.float32).reshape(-1, 4), 0, [w - 1, h - 1, w - 1, h - 1])
            scores = np.ones(len(boxes), np.float32)
        else:
            if seg is not None and hasattr(self.detector, "detect_from_seg"):
                boxes, scores = self.detector.detect_from_seg(seg)
            else:
                boxes, scores = self.detector.detect([frame])[0]
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            scores = np.asarray(scores, np.float32).reshape(-1)
            if self._carrier is not None:
                n = len(boxes)
                self._carrier.update(
                    Poses(boxes, scores, np.zeros((n, self._k, 2)), np.zeros((n, self._k))), t=t
                )
        timings["detect"] = time.perf_counter() - t0
        yield PoseWork(frame, boxes, scores, timings=timings, dropped_before=dropped, seg=seg)


def build_pose_estimator(
    engine: InferenceEngine, spec: Any, meta: dict[str, Any], recipe: dict[str, Any]
) -> TopDownEstimator:
    """A :class:`TopDownEstimator` whose network calls go through ``engine`` (crops made on its device).

    Defaults come from the model config's ``TEST`` section (``FLIP_TEST``, ``SHIFT_HEATMAP``) and
    ``HRSTREAM.DECODER``; the recipe's ``pose`` fields override them when set.
    """
    test = spec.test
    pose = recipe["pose"]
    flip = pose.get("flip_test")
    flip = bool(test.get("FLIP_TEST", False)) if flip is None else bool(flip)
    decoder = pose.get("decoder") or str(spec.extra.get("DECODER") or meta.get("decoder") or "msra").lower()
    if not bool(test.get("POST_PROCESS", True)) and decoder == "msra":
        log.info("config TEST.POST_PROCESS is false: the quarter-pixel shift is still applied (msra decoder)")
    return TopDownEstimator(
        lambda x: engine.infer(x, normalized=True),
        input_size=tuple(spec.image_size or (192, 256)),
        heatmap_size=tuple(spec.heatmap_size) if spec.heatmap_size else None,
        mean=meta["mean"],
        std=meta["std"],
        flip_pairs=meta.get("flip_pairs") or [],
        flip_test=flip,
        shift_heatmap=bool(test.get("SHIFT_HEATMAP", True)),
        decoder=decoder,
        device=engine.device,
        max_batch=int(recipe["runtime"]["batch_size"]) * (2 if flip else 1),
        oks_nms_thr=0.9 if pose.get("oks_nms") else None,
        num_keypoints=spec.num_outputs,
    )


class PoseInferStage:
    """All people of a batch of frames through the network in one call (cross-frame batching)."""

    def __init__(self, estimator: TopDownEstimator) -> None:
        self.estimator = estimator

    def process(self, batch: Sequence[PoseWork]) -> Iterable[PoseWork]:
        t0 = time.perf_counter()
        poses = self.estimator.estimate(
            [w.frame.image for w in batch], [w.boxes for w in batch], [w.scores for w in batch]
        )
        dt = (time.perf_counter() - t0) / max(1, len(batch))
        for w, p in zip(batch, poses, strict=True):
            w.poses = p
            w.timings["infer"] = dt
        return batch


def repair_params(tracker: dict[str, Any], *, online: bool = False) -> RepairParams | None:
    """The recipe's ``tracker.repair`` section as :class:`RepairParams` when its ``offline`` switch (the
    tracks document of a file) or, with ``online``, its ``online`` switch (:class:`OnlineRelabel`: the IDs of
    the JSONL, the video and live streams) is on; else (or with the tracker off) ``None``."""
    rep = tracker.get("repair") or {}
    if not (tracker.get("enabled") and rep.get("online" if online else "offline")):
        return None
    try:
        params = RepairParams(
            cut_distance=float(rep["cut_distance"]),
            join_distance=float(rep["join_distance"]),
            max_gap_s=float(rep["max_gap_s"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(
            f"tracker.repair: {e!r}; give cut_distance, join_distance and max_gap_s as numbers"
        ) from None
    if not (0 < params.join_distance <= 1 and 0 < params.cut_distance <= 1 and params.max_gap_s >= 0):
        raise ConfigError(
            "tracker.repair: need 0 < join_distance <= 1, 0 < cut_distance <= 1 and max_gap_s >= 0; "
            f"got {params.join_distance}, {params.cut_distance}, {params.max_gap_s}"
        )
    return params


class TrackStage:
    """Identities (``PoseTracker``, then optionally ``OnlineRelabel``) and keypoint smoothing
    (``KeypointSmoother``, keyed by the tracker's own IDs) on one thread.

    With ``clear_views`` (or a relabeller), the tracked people's clear-view histograms are computed once per
    frame here and passed on in ``FrameResult.clear_views`` (the relabeller and the offline repair use them).
    """

    def __init__(
        self,
        tracker: PoseTracker | None,
        smoother: KeypointSmoother | None,
        relabel: OnlineRelabel | None = None,
        *,
        clear_views: bool = False,
    ) -> None:
        self.tracker = tracker
        self.smoother = smoother
        self.relabel = relabel
        self.clear_views = tracker is not None and (clear_views or relabel is not None)

    @classmethod
    def from_recipe(cls, recipe: dict[str, Any], *, live: bool) -> TrackStage:
        tr = recipe["tracker"]
        tracker = (
            PoseTracker(
                max_age_s=float(tr["max_age_s"]),
                min_hits=int(tr["min_hits"]),
                high_thr=float(tr["high_thr"]),
                low_thr=float(tr["low_thr"]),
                new_track_thr=float(tr["new_track_thr"]),
                match_thr=float(tr["match_thr"]),
                iou_weight=float(tr["iou_weight"]),
                appearance_weight=float(tr["appearance_weight"]),
                new_track_iou=float(tr["new_track_iou"]),
            )
            if tr["enabled"]
            else None
        )
        sm = recipe["smoother"]
        method = str(sm["live"] if live else sm["file"])
        smoother = None
        if tracker is not None and method != "none":
            params = (
                {"min_cutoff": float(sm["min_cutoff_hz"]), "beta": float(sm["beta"])}
                if method == "one_euro"
                else {}
            )
            smoother = make_smoother(method, **params)  # type: ignore[arg-type]
        online = repair_params(tr, online=True)
        return cls(
            tracker,
            smoother,
            OnlineRelabel(online) if online is not None else None,
            clear_views=not live and repair_params(tr) is not None,  # the offline repair of files
        )

    def process(self, w: PoseWork) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        poses = w.poses if w.poses is not None else Poses.empty()
        t = frame_time(w.frame)
        views: list[np.ndarray | None] | None = None
        if self.tracker is not None:
            tracked = self.tracker.update(poses, t=t, image=w.frame.image)
            if self.smoother is not None:
                tracked = self.smoother.update(tracked, t=t)
            if self.clear_views:
                raw = tracked.raw_keypoints if tracked.raw_keypoints is not None else tracked.keypoints
                views = clear_view_histograms(w.frame.image, tracked.boxes, raw, tracked.keypoint_scores)
            if self.relabel is not None:
                tracked = self.relabel.update(tracked, t=t, views=views)
            poses = _with_untracked(tracked, poses)
            if views is not None:
                views = views + [None] * (len(poses) - len(tracked))  # the untracked people follow
        w.timings["track"] = time.perf_counter() - t0
        yield FrameResult(
            w.frame,
            poses=poses,
            seg=w.seg,
            timings=w.timings,
            dropped_before=w.dropped_before,
            clear_views=views,
        )


def _with_untracked(tracked: Poses, detected: Poses) -> Poses:
    """``tracked`` (confirmed tracks, by ID) followed by the detections no confirmed track holds yet
    (tentative tracks, weak detections) with ``track_id`` -1, so every detected person is reported."""
    taken = np.zeros(len(detected), bool)
    for box in tracked.boxes:
        hit = np.flatnonzero(np.all(detected.boxes == box, axis=1) & ~taken)
        if len(hit):
            taken[hit[0]] = True
    rest = detected[~taken]
    if len(rest) == 0:
        return tracked
    raw_tracked = tracked.raw_keypoints if tracked.raw_keypoints is not None else tracked.keypoints
    return Poses(
        boxes=np.concatenate([tracked.boxes, rest.boxes]),
        box_scores=np.concatenate([tracked.box_scores, rest.box_scores]),
        keypoints=np.concatenate([tracked.keypoints, rest.keypoints]),
        keypoint_scores=np.concatenate([tracked.keypoint_scores, rest.keypoint_scores]),
        track_ids=np.concatenate([tracked.track_ids, np.full(len(rest), -1)]),
        raw_keypoints=np.concatenate([raw_tracked, rest.keypoints]),
        tracker_ids=None
        if tracked.tracker_ids is None
        else np.concatenate([tracked.tracker_ids, np.full(len(rest), -1)]),
    )


class DrawStage:
    """An annotated copy of each frame (skeletons per identity, ID labels); the original stays untouched."""

    def __init__(
        self,
        skeleton: Sequence[Sequence[int]],
        *,
        kpt_thr: float,
        draw_boxes: bool,
        seg_overlay: Callable[[FrameResult], np.ndarray] | None = None,
    ) -> None:
        self.skeleton = [tuple(p) for p in skeleton]
        self.kpt_thr = kpt_thr
        self.draw_boxes = draw_boxes
        self.seg_overlay = seg_overlay

    def process(self, result: FrameResult) -> Iterable[tuple[FrameResult, np.ndarray]]:
        t0 = time.perf_counter()
        image = result.frame.image
        if self.seg_overlay is not None and result.seg is not None:
            image = self.seg_overlay(result)  # ``--task pose,seg``: skeletons drawn over the class overlay
        if result.poses is not None and len(result.poses):
            image = draw_poses(
                image, result.poses, skeleton=self.skeleton, kpt_thr=self.kpt_thr, draw_boxes=self.draw_boxes
            )
        result.timings["draw"] = time.perf_counter() - t0
        yield result, image
