"""The data that flows through a pipeline: validated dataclasses of numpy arrays.

Coordinate conventions, used everywhere in hrstream:

* Images are ``uint8`` arrays of shape ``(H, W, 3)`` in **RGB** order.
* Pixel coordinates are ``(x, y)`` in the frame's pixel grid, where the centre of the top-left pixel is
  ``(0, 0)`` (the convention of the official HRNet code and of COCO keypoints).
* Boxes are ``xyxy`` (left, top, right, bottom) in pixels unless a name says ``xywh``.
* Times are seconds: ``pts_s`` from the stream's PTS x time_base; ``captured_at`` is wall-clock
  (``time.time()``) for live sources.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["Detections", "Frame", "FrameResult", "Poses", "SegMap", "SourceResult", "SourceStatus"]

#: How a source of a run ended; ``skipped``: done by an earlier run with the same recipe.
SourceStatus = Literal["ok", "failed", "interrupted", "skipped"]


def _shape(a: np.ndarray) -> str:
    return f"{a.dtype}{tuple(a.shape)}"


@dataclass(eq=False)
class Frame:
    """One decoded video frame.

    Attributes:
        source_id: identifies the source within a run (for example the sanitised input name).
        index: 0-based index of the frame in decode order within its source.
        pts_s: presentation time in seconds (PTS x time_base); ``None`` only for still images.
        image: ``uint8`` ``(H, W, 3)`` RGB, upright (rotation metadata already applied).
        captured_at: wall-clock capture time for live sources, else ``None``.
        pts: the raw PTS in ``time_base`` units (kept so writers can reproduce exact timestamps).
        time_base: the stream's time base as a ``fractions.Fraction``-compatible object, or ``None``.
    """

    source_id: str
    index: int
    pts_s: float | None
    image: np.ndarray
    captured_at: float | None = None
    pts: int | None = None
    time_base: Any = None
    _on_device: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            got = _shape(img) if isinstance(img, np.ndarray) else type(img).__name__
            raise ValueError(f"Frame.image must be uint8 (H, W, 3) RGB, got {got}")

    def device_image(self, device: Any) -> Any:
        """The image as a ``uint8 (3, H, W)`` torch tensor on ``device``: a view of ``image`` on the CPU; on
        another device uploaded once, so the detector and the pose crops of a frame share one copy (dropped by
        :meth:`release_device`)."""
        import torch

        device = torch.device(device)
        if device.type == "cpu":
            return torch.from_numpy(self.image).permute(2, 0, 1)
        cached = self._on_device
        if cached is None or cached.device != device:
            cached = torch.from_numpy(self.image).to(device, non_blocking=True).permute(2, 0, 1)
            self._on_device = cached
        return cached

    def release_device(self) -> None:
        """Forget the device copy of :meth:`device_image` (after the last network that needs it)."""
        self._on_device = None

    @property
    def time(self) -> float:
        """The frame's time in seconds, the one every stage uses (trackers, smoothers, segments): ``pts_s``;
        for a still image without one, ``captured_at``, else ``index / 30``."""
        if self.pts_s is not None:
            return float(self.pts_s)
        if self.captured_at is not None:
            return float(self.captured_at)
        return self.index / 30.0

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    def __repr__(self) -> str:
        return (
            f"Frame(source_id={self.source_id!r}, index={self.index}, pts_s={self.pts_s}, "
            f"image={_shape(self.image)})"
        )


@dataclass(eq=False)
class Poses:
    """The people of one frame, as parallel arrays (n people, K keypoints).

    Attributes:
        boxes: ``float32 (n, 4)`` xyxy pixels.
        box_scores: ``float32 (n,)`` detector confidence in [0, 1].
        keypoints: ``float32 (n, K, 2)`` (x, y) pixels; the smoothed estimate when a smoother ran.
        keypoint_scores: ``float32 (n, K)`` heatmap maxima (official ``maxvals``).
        track_ids: ``int64 (n,)`` identities from the tracker, or ``None`` before tracking.
        raw_keypoints: ``float32 (n, K, 2)`` keypoints before smoothing, or ``None`` if not smoothed.
        tracker_ids: ``int64 (n,)`` the tracker's own IDs where an online relabelling
            (:class:`~hrstream.track.OnlineRelabel`) renamed ``track_ids``, else ``None``.
    """

    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    keypoint_scores: np.ndarray
    track_ids: np.ndarray | None = None
    raw_keypoints: np.ndarray | None = None
    tracker_ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        n = len(self.boxes)
        self.box_scores = np.asarray(self.box_scores, dtype=np.float32).reshape(n)
        self.keypoints = np.asarray(self.keypoints, dtype=np.float32)
        if self.keypoints.size == 0:
            k = self.keypoints.shape[1] if self.keypoints.ndim == 3 else 0
            self.keypoints = self.keypoints.reshape(n, k, 2)
        if self.keypoints.ndim != 3 or self.keypoints.shape[0] != n or self.keypoints.shape[2] != 2:
            raise ValueError(f"Poses.keypoints must be (n={n}, K, 2), got {self.keypoints.shape}")
        k = self.keypoints.shape[1]
        self.keypoint_scores = np.asarray(self.keypoint_scores, dtype=np.float32).reshape(n, k)
        if self.track_ids is not None:
            self.track_ids = np.asarray(self.track_ids, dtype=np.int64).reshape(n)
        if self.raw_keypoints is not None:
            self.raw_keypoints = np.asarray(self.raw_keypoints, dtype=np.float32).reshape(n, k, 2)
        if self.tracker_ids is not None:
            self.tracker_ids = np.asarray(self.tracker_ids, dtype=np.int64).reshape(n)

    def __len__(self) -> int:
        return len(self.boxes)

    @property
    def num_keypoints(self) -> int:
        return int(self.keypoints.shape[1])

    @classmethod
    def empty(cls, num_keypoints: int = 17) -> Poses:
        """No people, ``num_keypoints`` keypoints each."""
        return cls(
            boxes=np.zeros((0, 4), np.float32),
            box_scores=np.zeros((0,), np.float32),
            keypoints=np.zeros((0, num_keypoints, 2), np.float32),
            keypoint_scores=np.zeros((0, num_keypoints), np.float32),
        )

    def tracked(self) -> Poses:
        """The people with a track ID (``track_ids >= 0``); none when ``track_ids`` is ``None``."""
        if self.track_ids is None:
            return self[np.zeros(len(self), bool)]
        return self[self.track_ids >= 0]

    def __getitem__(self, idx: Any) -> Poses:
        """Select people by index, slice or boolean mask; returns a new ``Poses``."""
        if isinstance(idx, (int, np.integer)):
            idx = [int(idx)]
        return Poses(
            boxes=self.boxes[idx],
            box_scores=self.box_scores[idx],
            keypoints=self.keypoints[idx],
            keypoint_scores=self.keypoint_scores[idx],
            track_ids=None if self.track_ids is None else self.track_ids[idx],
            raw_keypoints=None if self.raw_keypoints is None else self.raw_keypoints[idx],
            tracker_ids=None if self.tracker_ids is None else self.tracker_ids[idx],
        )

    def __repr__(self) -> str:
        ids = None if self.track_ids is None else self.track_ids.tolist()
        return f"Poses(n={len(self)}, K={self.num_keypoints}, track_ids={ids})"


@dataclass(eq=False)
class SegMap:
    """A semantic label map for one frame.

    Attributes:
        labels: ``uint8 (H, W)`` class index per pixel, at the frame's resolution.
        classes: class names, index = label value.
        probs: optional ``float32 (C, H', W')`` class probabilities (any resolution), or ``None``.
    """

    labels: np.ndarray
    classes: tuple[str, ...]
    probs: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.labels.ndim != 2:
            raise ValueError(f"SegMap.labels must be (H, W), got {self.labels.shape}")
        self.classes = tuple(self.classes)

    def __repr__(self) -> str:
        return f"SegMap(labels={_shape(self.labels)}, classes={len(self.classes)})"


@dataclass(eq=False)
class Detections:
    """Person boxes of one frame.

    Attributes:
        boxes: ``float32 (n, 4)`` xyxy pixels.
        scores: ``float32 (n,)`` detector confidence in [0, 1].
    """

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.scores = np.asarray(self.scores, dtype=np.float32).reshape(len(self.boxes))

    def __len__(self) -> int:
        return len(self.boxes)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    def __repr__(self) -> str:
        return f"Detections(n={len(self)})"


@dataclass(eq=False)
class FrameResult:
    """One frame on its way through a pipeline, and what sinks and :func:`hrstream.stream` receive.

    The one item type that flows between stages: the source fills ``frame``; the detector ``detections``;
    the pose network ``poses`` (tracked and smoothed by the track stage); the segmentation network ``seg``;
    the draw stage ``annotated`` (when a video is written).

    Attributes:
        frame: the decoded frame (``frame.source_id`` routes the result to its source's outputs).
        detections: person boxes, or ``None`` (no detector ran).
        poses: the people, or ``None`` (no pose task).
        seg: the label map, or ``None`` (no segmentation).
        annotated: ``uint8 (H, W, 3)`` RGB drawing of the results, or ``None`` until drawn (see :meth:`plot`).
        timings: stage name -> seconds spent on this frame.
        dropped_before: live frames of this source dropped between the previous result and this one.
        clear_views: with identity repair on, per person of ``poses`` the torso histogram ``float32 (D,)``
            where they stood clear of everyone else, else ``None``
            (:func:`hrstream.track.appearance.clear_view_histograms`, computed once in the track stage).
        renderer: draws ``annotated`` on demand (set by the pipeline that made this result).
        batch: the network call (counted from 0 in a run) that estimated this frame; results with the same
            number, of any source, went through the network together.
    """

    frame: Frame
    poses: Poses | None = None
    seg: SegMap | None = None
    timings: dict[str, float] = field(default_factory=dict)
    dropped_before: int = 0
    clear_views: list[np.ndarray | None] | None = None
    detections: Detections | None = None
    annotated: np.ndarray | None = None
    renderer: Callable[[FrameResult], np.ndarray] | None = field(default=None, repr=False)
    batch: int | None = None

    @property
    def source_id(self) -> str:
        return self.frame.source_id

    def plot(self) -> np.ndarray:
        """The annotated image, ``uint8 (H, W, 3)`` RGB (skeletons with track IDs, class overlay), drawn on
        first use.

        Raises:
            ValueError: this result was made without a renderer (built by hand, not by a pipeline).
        """
        if self.annotated is None:
            if self.renderer is None:
                raise ValueError("this FrameResult has no renderer; results of hrstream.stream() have one")
            self.annotated = self.renderer(self)
        return self.annotated

    def __repr__(self) -> str:
        return f"FrameResult({self.frame!r}, poses={self.poses!r}, seg={self.seg!r})"


@dataclass
class SourceResult:
    """How one source (an input) of a run ended: what its outputs report, what the manifest records, what
    :func:`hrstream.runs.run_inputs` returns.

    Attributes:
        input: how messages name it (a URL with its credentials redacted).
        status: ``ok``, ``failed``, ``interrupted`` or ``skipped``.
        name: its output name in the run (``Frame.source_id``; files ``NAME.*``).
        frames: frames written; ``drops``: live frames its input lane dropped.
        truncated: a file that ended before its declared duration.
        error: one line naming the input, or ``None``.
        outputs: kind -> path of its (last segment's) files.
        elapsed_s: seconds from its outputs being opened to their closing.
        warnings: what the source reported on the way.
        gave_up: a live source that reached its reconnect limit.
        live: a live source's ``gaps``, ``gap_s``, ``reconnects``, ``resolution_changes``, ``segments`` and
            final ``state``; ``None`` for files.
        fingerprint: what the manifest compares to skip it next time; ``attempts``: tries so far;
        worker: where it ran (``pid``, ``host``, ``device``...) when not in the main process.
    """

    input: str
    status: SourceStatus
    name: str = ""
    frames: int = 0
    drops: int = 0
    truncated: bool = False
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    warnings: tuple[str, ...] = ()
    gave_up: bool = False
    live: dict[str, Any] | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)
    attempts: int = 1
    worker: dict[str, Any] | None = None
