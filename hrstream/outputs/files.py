"""The built-in sinks, one per file kind, registered when :mod:`hrstream.outputs` is imported.

Files of a segment named ``NAME`` (:class:`~hrstream.outputs.sinks.SegmentContext`), all inside ``--out``:

* ``video``: :class:`VideoSink` ``NAME.mp4``: H.264 of the annotated frames, fragmented MP4 flushed as written
  (plays up to its last fragment after a crash), source timestamps kept, audio passed through;
  ``images``: :class:`ImagesSink` ``NAME.annotated/{index:06d}.jpg`` for image inputs;
* ``jsonl``: :class:`JsonlSink` ``NAME.jsonl``: one record per frame, flushed as written
  (``frame.schema.json``), and one per live event (``event.schema.json``);
* ``labels``: :class:`LabelMapSink` ``NAME.labels/{index:06d}.png``: lossless label maps (segmentation);
* ``tracks``: :class:`TracksSink` ``NAME.tracks.json``: the pose tracks, written atomically when the segment
  closes (``tracks.schema.json``), after :func:`hrstream.track.postprocess.finish_tracks`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hrstream.io import IMAGE_EXTENSIONS, JsonlWriter, SourceInfo, write_json_atomic
from hrstream.io.video_writer import VideoWriter
from hrstream.outputs.sinks import SegmentContext, Sink, register_sink
from hrstream.seg import LabelMapWriter, class_fractions, masks_to_rle
from hrstream.track.postprocess import TRACK_LISTS, finish_tracks
from hrstream.track.repair import ONLINE_IDS, RepairParams
from hrstream.types import FrameResult

__all__ = [
    "ImagesSink",
    "JsonlSink",
    "LabelMapSink",
    "TracksSink",
    "VideoSink",
    "frame_record",
    "is_image_source",
    "seg_record",
    "source_metadata",
]

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


# -- what documents say ----------------------------------------------------------------------------------
def rounded(x: np.ndarray, nd: int = 2) -> list:
    """``x`` as nested lists of floats rounded to ``nd`` decimals (pixels to 1/100)."""
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


def source_metadata(info: SourceInfo) -> dict[str, Any]:
    """What output documents say about their source."""
    tb = info.time_base
    return {
        "name": info.name,
        "input": info.path,
        "width": info.width,
        "height": info.height,
        "fps": info.fps,
        "time_base": None if tb is None else str(tb),
        "duration_s": info.duration_s,
        "num_frames": info.num_frames,
        "rotation": info.rotation,
        "is_live": info.is_live,
        "codec": info.codec,
    }


def frame_record(result: FrameResult, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSONL record of one frame (``frame.schema.json``; ``keypoints`` smoothed, ``raw_keypoints`` the
    network's)."""
    f = result.frame
    rec: dict[str, Any] = {
        "source": f.source_id,
        "frame": f.index,
        "pts_s": f.pts_s,
        "captured_at": f.captured_at,
        "width": f.width,
        "height": f.height,
        "dropped_before": result.dropped_before,
    }
    if result.batch is not None:
        rec["batch"] = result.batch
    p = result.poses
    if p is not None:
        people = []
        for i in range(len(p)):
            person: dict[str, Any] = {
                "track_id": None if p.track_ids is None or p.track_ids[i] < 0 else int(p.track_ids[i]),
                "box": rounded(p.boxes[i]),
                "box_score": round(float(p.box_scores[i]), 4),
                "keypoints": [
                    [*rounded(p.keypoints[i, k]), round(float(p.keypoint_scores[i, k]), 4)]
                    for k in range(p.num_keypoints)
                ],
            }
            if p.raw_keypoints is not None:
                person["raw_keypoints"] = rounded(p.raw_keypoints[i])
            people.append(person)
        rec["people"] = people
    if extra:
        rec.update(extra)
    return rec


def seg_record(classes: Sequence[str], *, rle: bool) -> Callable[[FrameResult], dict[str, Any]]:
    """The segmentation fields of a JSONL record: per-class pixel fractions, and COCO RLE masks with ``rle``."""

    def extra(result: FrameResult) -> dict[str, Any]:
        if result.seg is None:
            return {}
        labels = result.seg.labels
        rec: dict[str, Any] = {
            "classes": {k: round(v, 6) for k, v in class_fractions(labels, list(classes)).items()}
        }
        if rle:
            present = [int(c) for c in np.unique(labels)]
            rec["rle"] = masks_to_rle(labels, present, classes=list(classes))
        return rec

    return extra


def is_image_source(info: SourceInfo) -> bool:
    """A still image or a folder of images: annotated frames are written as images, not as a video (images of
    a folder may differ in size, and a one-frame video helps nobody)."""
    path = Path(info.path)
    return not info.is_live and (path.suffix.lower() in IMAGE_EXTENSIONS or path.is_dir())


class VideoSink(Sink):
    """The annotated frames (``FrameResult.plot()``) as H.264 video with the source's timestamps.

    ``segment``: the file is one segment of a source (a live source's, or a file cut by ``--segment-s``): it
    starts at 0 with its own duration (the source's timestamps stay in the JSONL); a live segment stays
    fragmented (crash-safe) when closed, so that a rotation never holds up the frames, while a file's video is
    finished with its duration in the header (:class:`~hrstream.io.video_writer.VideoWriter`)."""

    def __init__(
        self,
        path: Path,
        info: SourceInfo,
        *,
        preset: str,
        audio_source: str | None = None,
        segment: bool = False,
    ) -> None:
        self.path = path
        self._writer = VideoWriter(
            path,
            width=info.width,
            height=info.height,
            time_base=info.time_base,
            fps=info.fps,
            preset=preset,
            audio_source=audio_source,
            rebase=segment,
            finish=not info.is_live,
        )

    def write(self, result: FrameResult) -> None:
        f = result.frame
        self._writer.write(result.plot(), f.pts, f.time_base)

    def close(self) -> None:
        self._writer.close()


class ImagesSink(Sink):
    """Annotated frames of an image source as ``DIR/{index:06d}.jpg`` (quality 95), each written atomically."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory)
        self.path.mkdir(parents=True, exist_ok=True)

    def write(self, result: FrameResult) -> None:
        final = self.path / f"{result.frame.index:06d}.jpg"
        tmp = final.with_name(f".{final.name}.tmp.jpg")
        bgr = cv2.cvtColor(result.plot(), cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(tmp), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
            raise OSError(f"cannot write {final}")
        os.replace(tmp, final)

    def close(self) -> None:
        return None


class JsonlSink(Sink):
    """One JSON record per frame (:func:`frame_record`, plus ``extra(result)``
    fields), flushed per line, and one per event of a live source (``{"event": KIND, "source": NAME, ...}``).

    A source always starts from its first frame, so the records of an earlier (failed) attempt are removed.
    """

    def __init__(
        self,
        path: Path,
        *,
        source: str = "",
        extra: Callable[[FrameResult], dict[str, Any]] | None = None,
    ) -> None:
        self.path = path
        self.source = source
        self.extra = extra
        path.unlink(missing_ok=True)
        self._writer = JsonlWriter(path)

    def write(self, result: FrameResult) -> None:
        self._writer.write(frame_record(result, self.extra(result) if self.extra is not None else None))

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        self._writer.write({"event": kind, "source": self.source, **fields})

    def close(self) -> None:
        self._writer.close()


class LabelMapSink(Sink):
    """Each frame's label map as a lossless PNG ``DIR/{index:06d}.png``."""

    def __init__(self, directory: Path) -> None:
        self.path = directory
        self._writer = LabelMapWriter(directory)

    def write(self, result: FrameResult) -> None:
        if result.seg is not None:
            self._writer.write(result.frame.index, result.seg.labels)

    def close(self) -> None:
        self._writer.close()


class TracksSink(Sink):
    """Collects each confirmed person per frame by track and writes the tracks document when closed.

    With ``repair`` (files), the torso histogram of every tracked person seen clear of the others
    (``FrameResult.clear_views``, from the track stage) is kept (``float16``, 384 bytes per person and frame)
    so that :func:`~hrstream.track.postprocess.finish_tracks` can cut and join the tracks by clothing. The
    repair starts from the tracker's own tracks (``Poses.tracker_ids`` where an online relabelling renamed
    them) and records the IDs reported online per frame in ``online_ids``. ``dropped_frames``: the live frames
    dropped before the frames of this document (the sum of their records' ``dropped_before``).
    """

    def __init__(
        self,
        path: Path,
        info: SourceInfo,
        *,
        model: dict[str, Any],
        keypoint_names: tuple[str, ...],
        skeleton: tuple[tuple[int, int], ...],
        repair: RepairParams | None = None,
        savgol_window_s: float | None = None,
    ) -> None:
        self.path = path
        self.info = info
        self.model = model
        self.keypoint_names = keypoint_names
        self.skeleton = skeleton
        self.repair = repair if (repair is not None and info.fps and info.fps > 0) else None
        self.savgol_window_s = savgol_window_s
        self.tracks: dict[int, dict[str, list]] = {}
        self.views: dict[tuple[int, int], np.ndarray] = {}
        self.frames = 0
        self.drops = 0

    def write(self, result: FrameResult) -> None:
        self.frames += 1
        self.drops += result.dropped_before
        p = result.poses
        if p is None or p.track_ids is None:
            return
        t = result.frame.pts_s
        keys = p.tracker_ids if (self.repair is not None and p.tracker_ids is not None) else p.track_ids
        for i, tid in enumerate(p.track_ids.tolist()):
            if tid < 0:  # not (yet) a confirmed track
                continue
            tr = self.tracks.setdefault(int(keys[i]), {k: [] for k in TRACK_LISTS})
            raw = p.raw_keypoints[i] if p.raw_keypoints is not None else p.keypoints[i]
            tr["frames"].append(result.frame.index)
            tr["times"].append(t)
            tr["boxes"].append(rounded(p.boxes[i]))
            tr["box_scores"].append(round(float(p.box_scores[i]), 4))
            tr["keypoints"].append(rounded(raw))
            tr["scores"].append(np.round(p.keypoint_scores[i].astype(np.float64), 4).tolist())
            tr["smoothed"].append(rounded(p.keypoints[i]))
            if self.repair is not None:
                tr.setdefault(ONLINE_IDS, []).append(int(tid))
        if self.repair is not None and result.clear_views is not None:
            for i, h in enumerate(result.clear_views):
                if h is not None and p.track_ids[i] >= 0:
                    self.views[(int(keys[i]), int(result.frame.index))] = h.astype(np.float16)

    def close(self) -> None:
        tracks = [{"track_id": tid, **self.tracks[tid]} for tid in sorted(self.tracks)]
        views = {k: v.astype(np.float32) for k, v in self.views.items()}
        doc = {
            "format": "hrstream.tracks",
            "version": SCHEMA_VERSION,
            "video": source_metadata(self.info),
            "model": self.model,
            "keypoint_names": list(self.keypoint_names),
            "skeleton": [list(p) for p in self.skeleton],
            "num_frames": self.frames,
            "dropped_frames": self.drops,
            "tracks": finish_tracks(
                tracks,
                views=views,
                fps=float(self.info.fps or 0.0),
                repair=self.repair,
                savgol_window_s=self.savgol_window_s,
            ),
        }
        write_json_atomic(self.path, doc, indent=None)


# -- the built-in kinds ------------------------------------------------------------------------------------
def _video(ctx: SegmentContext) -> Sink | None:
    cfg = ctx.spec.sinks
    if not (ctx.writes_files and cfg.video) or is_image_source(ctx.source):
        return None
    info = ctx.source
    audio = info.path if (info.has_audio and not info.is_live and ctx.label is None) else None
    segment = info.is_live or ctx.label is not None
    return VideoSink(ctx.path(".mp4"), info, preset=cfg.preset, audio_source=audio, segment=segment)


def _images(ctx: SegmentContext) -> Sink | None:
    if not (ctx.writes_files and ctx.spec.sinks.video) or not is_image_source(ctx.source):
        return None
    return ImagesSink(ctx.path(".annotated"))


def _jsonl(ctx: SegmentContext) -> Sink | None:
    spec = ctx.spec
    if not (ctx.writes_files and spec.sinks.jsonl):
        return None
    extra = seg_record(spec.classes, rle=spec.seg_rle) if spec.writes_seg else None
    return JsonlSink(ctx.path(".jsonl"), source=ctx.source.name, extra=extra)


def _labels(ctx: SegmentContext) -> Sink | None:
    spec = ctx.spec
    if not (ctx.writes_files and spec.writes_seg and spec.label_maps):
        return None
    return LabelMapSink(ctx.path(".labels"))


def _tracks(ctx: SegmentContext) -> Sink | None:
    spec = ctx.spec
    if not (ctx.writes_files and spec.writes_poses and spec.sinks.tracks):
        return None
    live = ctx.source.is_live
    return TracksSink(
        ctx.path(".tracks.json"),
        ctx.source,
        model=spec.model,
        keypoint_names=spec.keypoint_names,
        skeleton=spec.skeleton,
        repair=None if live else spec.repair,
        savgol_window_s=None if live else spec.savgol_window_s,
    )


for _kind, _factory in (
    ("video", _video),
    ("images", _images),
    ("jsonl", _jsonl),
    ("labels", _labels),
    ("tracks", _tracks),
):
    register_sink(_kind, _factory)
