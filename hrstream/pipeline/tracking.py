"""Identities and smoothing per source: the track stage, and the per-source tracker the detect stage reads.

Each source has one :class:`SourceTracking`: its :class:`~hrstream.track.PoseTracker`, keypoint smoother and
online identity repair (:class:`~hrstream.track.relabel.OnlineRelabel`). The track stage updates it with every
frame's people; with ``--detect-every N`` the detect stage asks the same tracker where its people are on the
frames it does not run the detector on (:meth:`SourceTracking.predicted_boxes`), so boxes stay boxes and one
tracker serves the source. With identity repair on, each confirmed person's clear-view colour histogram is
computed once per frame here and passed on in ``FrameResult.clear_views``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from hrstream.pipeline.recipe import RepairSection, SmootherSection, TrackerSection
from hrstream.runtime.markers import Marker, SharedPerSource
from hrstream.track import KeypointSmoother, PoseTracker, make_smoother
from hrstream.track.appearance import clear_view_histograms
from hrstream.track.relabel import OnlineRelabel
from hrstream.track.repair import RepairParams
from hrstream.types import Detections, FrameResult, Poses

__all__ = ["SourceTracking", "TrackStage", "repair_params", "source_trackers"]


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


class SourceTracking:
    """One source's identities (``PoseTracker``, then optionally ``OnlineRelabel``) and keypoint smoothing
    (``KeypointSmoother``, keyed by the tracker's own IDs). ``tracker`` is ``None`` with the tracker off."""

    def __init__(
        self,
        tracker: TrackerSection,
        smoother: SmootherSection,
        *,
        live: bool,
        oks_sigmas: Sequence[float] | None = None,
    ) -> None:
        tr, sm = tracker, smoother
        self.lock = threading.Lock()  # the detect stage reads predictions while the track stage updates
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

    def predicted_boxes(self, t: float, width: int, height: int) -> Detections | None:
        """Where the confirmed people seen on the last update are expected at time ``t`` (boxes clipped to the
        frame, score 1), or ``None`` when there is none to carry (the detector must run)."""
        if self.tracker is None:
            return None
        with self.lock:
            _, boxes = self.tracker.predict_boxes(t)
        if not len(boxes):
            return None
        boxes = np.clip(boxes.astype(np.float32).reshape(-1, 4), 0, [width - 1, height - 1] * 2)
        return Detections(boxes, np.ones(len(boxes), np.float32))

    def update(self, result: FrameResult) -> tuple[Poses, list[np.ndarray | None] | None]:
        """The frame's people with identities (smoothed, relabelled) and, with repair on, their clear views."""
        poses = result.poses if result.poses is not None else Poses.empty()
        if self.tracker is None:
            return poses, None
        t = result.frame.time
        with self.lock:
            poses = self.tracker.update(poses, t=t, image=result.frame.image)
        if self.smoother is not None:
            poses = self.smoother.update(poses, t=t)
        views: list[np.ndarray | None] | None = None
        if self.clear_views:
            confirmed = int((poses.track_ids >= 0).sum())  # type: ignore[operator]
            tracked = poses[np.arange(confirmed)]
            raw = tracked.raw_keypoints if tracked.raw_keypoints is not None else tracked.keypoints
            views = clear_view_histograms(result.frame.image, tracked.boxes, raw, tracked.keypoint_scores)
            views = views + [None] * (len(poses) - confirmed)  # nothing kept of the others
        if self.relabel is not None:
            poses = self.relabel.update(poses, t=t, views=views)
        return poses, views


def source_trackers(
    tracker: TrackerSection, smoother: SmootherSection, *, oks_sigmas: Sequence[float] | None = None
) -> SharedPerSource[SourceTracking]:
    """The per-source tracking state of a run, shared by its detect and track stages."""

    def make(info: Any) -> SourceTracking:
        return SourceTracking(tracker, smoother, live=bool(info.is_live), oks_sigmas=oks_sigmas)

    return SharedPerSource(make)


class TrackStage:
    """Identities and smoothing, per source, on one thread (it owns the shared per-source state: makes it at a
    source's start, drops it at its end)."""

    def __init__(self, states: SharedPerSource[SourceTracking]) -> None:
        self.states = states

    def on_marker(self, marker: Marker) -> None:
        self.states.on_marker(marker, owner=True)

    def process(self, result: FrameResult) -> Iterable[FrameResult]:
        t0 = time.perf_counter()
        state = self.states.get(result.frame.source_id)
        if state is not None:
            result.poses, result.clear_views = state.update(result)
        result.timings["track"] = time.perf_counter() - t0
        yield result
