"""What a job writes: the annotated video, one JSONL record per frame, and (pose) a tracks document.

Files of a job named ``NAME`` (the sanitised input name), all inside ``--out``:

* ``NAME.mp4``: H.264 annotated video, fragmented MP4 flushed as written (plays up to its last fragment
  after a crash), source timestamps kept;
* ``NAME.jsonl``: one record per frame, flushed as written (schema ``hrstream/schemas/frame.schema.json``);
* ``NAME.tracks.json``: pose tracks, written atomically at the end (schema ``tracks.schema.json``).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hrstream.io import IMAGE_EXTENSIONS, JsonlWriter, SourceInfo, output_path, write_json_atomic
from hrstream.io.video_writer import VideoWriter
from hrstream.track import savgol_smooth_track
from hrstream.track.repair import ONLINE_IDS, RepairParams, repair_tracks
from hrstream.types import FrameResult

__all__ = ["JobOutputs", "frame_record", "source_metadata"]

log = logging.getLogger(__name__)
SCHEMA_VERSION = 1


def _r(x: np.ndarray, nd: int = 2) -> list:
    return np.round(np.asarray(x, dtype=np.float64), nd).tolist()


def source_metadata(info: SourceInfo) -> dict[str, Any]:
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
    """The JSONL record of one frame (pixels: x right, y down, pixel centres at integers)."""
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
    p = result.poses
    if p is not None:
        people = []
        for i in range(len(p)):
            person: dict[str, Any] = {
                "track_id": None if p.track_ids is None or p.track_ids[i] < 0 else int(p.track_ids[i]),
                "box": _r(p.boxes[i]),
                "box_score": round(float(p.box_scores[i]), 4),
                "keypoints": [
                    [*_r(p.keypoints[i, k]), round(float(p.keypoint_scores[i, k]), 4)]
                    for k in range(p.num_keypoints)
                ],
            }
            if p.raw_keypoints is not None:
                person["raw_keypoints"] = _r(p.raw_keypoints[i])
            people.append(person)
        rec["people"] = people
    if extra:
        rec.update(extra)
    return rec


class _TrackLog:
    """Per-track lists that become the tracks document.

    With ``repair`` (files only), the torso histogram of every tracked person seen clear of the others
    (``FrameResult.clear_views``, from the track stage) is kept (``float16``, 384 bytes per person and frame)
    so that :func:`hrstream.track.repair.repair_tracks`
    can cut and join the tracks by clothing when the document is made. The repair starts from the tracker's
    own tracks (``Poses.tracker_ids`` where an online relabelling renamed them) and records the reported IDs
    per frame in ``online_ids``.
    """

    _LISTS = ("frames", "times", "boxes", "box_scores", "keypoints", "scores", "smoothed")

    def __init__(self, repair: RepairParams | None = None, fps: float | None = None) -> None:
        self.tracks: dict[int, dict[str, list]] = {}
        self.repair = repair if (repair is not None and fps and fps > 0) else None
        self.fps = float(fps or 0.0)
        self.views: dict[tuple[int, int], np.ndarray] = {}

    def add(self, result: FrameResult) -> None:
        p = result.poses
        if p is None or p.track_ids is None:
            return
        t = result.frame.pts_s
        keys = p.tracker_ids if (self.repair is not None and p.tracker_ids is not None) else p.track_ids
        for i, tid in enumerate(p.track_ids.tolist()):
            if tid < 0:  # not (yet) a confirmed track
                continue
            tr = self.tracks.setdefault(int(keys[i]), {k: [] for k in self._LISTS})
            raw = p.raw_keypoints[i] if p.raw_keypoints is not None else p.keypoints[i]
            tr["frames"].append(result.frame.index)
            tr["times"].append(t)
            tr["boxes"].append(_r(p.boxes[i]))
            tr["box_scores"].append(round(float(p.box_scores[i]), 4))
            tr["keypoints"].append(_r(raw))
            tr["scores"].append(np.round(p.keypoint_scores[i].astype(np.float64), 4).tolist())
            tr["smoothed"].append(_r(p.keypoints[i]))
            if self.repair is not None:
                tr.setdefault(ONLINE_IDS, []).append(int(tid))
        if self.repair is not None and result.clear_views is not None:
            for i, h in enumerate(result.clear_views):
                if h is not None and p.track_ids[i] >= 0:
                    self.views[(int(keys[i]), int(result.frame.index))] = h.astype(np.float16)

    def document(self, savgol_window_s: float | None) -> list[dict[str, Any]]:
        tracks: list[dict[str, Any]] = [{"track_id": tid, **self.tracks[tid]} for tid in sorted(self.tracks)]
        if self.repair is not None:
            views = {k: v.astype(np.float32) for k, v in self.views.items()}
            try:
                tracks = repair_tracks(tracks, views, self.fps, self.repair)
            except Exception as e:  # the tracks as reported online are still worth writing
                log.warning(
                    "track repair failed (%s: %s); the tracks document keeps the IDs reported online",
                    type(e).__name__,
                    e,
                )
                tracks = _by_online_ids(tracks)
        out = []
        for doc in tracks:
            times = np.asarray([np.nan if t is None else t for t in doc["times"]], np.float64)
            if savgol_window_s and len(times) >= 3 and np.all(np.isfinite(times)):
                sg = savgol_smooth_track(
                    times,
                    np.asarray(doc["keypoints"], np.float32),
                    np.asarray(doc["scores"], np.float32),
                    window_s=savgol_window_s,
                )
                doc["smoothed_offline"] = _r(sg)
            out.append(doc)
        return out


def _by_online_ids(tracks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tracks regrouped by the IDs reported online (their per-frame ``online_ids``), in frame order."""
    rows: dict[int, list[tuple[int, dict[str, Any], int]]] = {}
    for tr in tracks:
        for j, (f, oid) in enumerate(zip(tr["frames"], tr[ONLINE_IDS], strict=True)):
            rows.setdefault(int(oid), []).append((int(f), tr, j))
    out = []
    for oid in sorted(rows):
        rs = sorted(rows[oid], key=lambda r: r[0])
        out.append(
            {"track_id": oid, **{k: [r[1][k][r[2]] for r in rs] for k in (*_TrackLog._LISTS, ONLINE_IDS)}}
        )
    return out


def is_image_source(info: SourceInfo) -> bool:
    """A still image or a folder of images: annotated frames are written as images, not as a video (images of
    a folder may differ in size, and a one-frame video helps nobody)."""
    path = Path(info.path)
    return not info.is_live and (path.suffix.lower() in IMAGE_EXTENSIONS or path.is_dir())


class AnnotatedImages:
    """Annotated frames of an image source as ``DIR/{index:06d}.jpg`` (quality 95), each written atomically."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def write(self, image_rgb: np.ndarray, index: int) -> None:
        final = self.directory / f"{index:06d}.jpg"
        tmp = final.with_name(f".{final.name}.tmp.jpg")
        if not cv2.imwrite(
            str(tmp), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
        ):
            raise OSError(f"cannot write {final}")
        os.replace(tmp, final)

    def close(self) -> None:
        return None


class JobOutputs:
    """The sink of a job: ``write((result, annotated_image))`` per frame, ``close()`` at the end.

    Args:
        out_dir: the run's ``--out`` folder; every file lands inside it.
        info: the source's metadata (size, time base, fps, audio).
        model: what the output documents say about the model (name, weights, sha256).
        meta: ``keypoint_names``/``skeleton`` for pose documents.
        video, jsonl, tracks: which files to write; ``preset``: libx264 speed preset.
        audio_source: a file whose audio is passed through into the video.
        progress: a callable ``progress(n_frames_done)`` (the CLI's progress bar), or ``None``.
        track_repair: cut and join the pose tracks by clothing before the tracks document is written
            (:mod:`hrstream.track.repair`; files: needs the source's frame rate), or ``None``.
    """

    def __init__(
        self,
        out_dir: str | Path,
        info: SourceInfo,
        *,
        model: dict[str, Any],
        meta: dict[str, Any],
        task: str,
        video: bool = True,
        jsonl: bool = True,
        tracks: bool = True,
        preset: str = "veryfast",
        audio_source: str | None = None,
        savgol_window_s: float | None = None,
        record_extra: Any = None,
        progress: Any = None,
        track_repair: RepairParams | None = None,
    ) -> None:
        self.info = info
        self.model = model
        self.meta = meta
        self.task = task
        self.savgol_window_s = savgol_window_s
        self.record_extra = record_extra
        self.progress = progress
        self.frames = 0
        self.drops = 0
        self.paths: dict[str, Path] = {}
        self.closed = False
        self.started = time.monotonic()
        name = info.name
        self._video: VideoWriter | AnnotatedImages | None = None
        if video and is_image_source(info):
            self.paths["images"] = output_path(out_dir, name, ".annotated")
            self._video = AnnotatedImages(self.paths["images"])
        elif video:
            self.paths["video"] = output_path(out_dir, name, ".mp4")
            self._video = VideoWriter(
                self.paths["video"],
                width=info.width,
                height=info.height,
                time_base=info.time_base,
                fps=info.fps,
                preset=preset,
                audio_source=audio_source,
            )
        self._jsonl: JsonlWriter | None = None
        if jsonl:
            self.paths["jsonl"] = output_path(out_dir, name, ".jsonl")
            # a job always starts from its first frame: drop the records of an earlier (failed) attempt,
            # which the appending writer would otherwise keep in front of the new ones
            self.paths["jsonl"].unlink(missing_ok=True)
            self._jsonl = JsonlWriter(self.paths["jsonl"])
        self._tracks = _TrackLog(track_repair, info.fps) if (tracks and "pose" in task) else None
        if self._tracks is not None:
            self.paths["tracks"] = output_path(out_dir, name, ".tracks.json")

    def write(self, item: tuple[FrameResult, np.ndarray]) -> None:
        result, image = item
        f = result.frame
        if isinstance(self._video, AnnotatedImages):
            self._video.write(image, f.index)
        elif self._video is not None:
            self._video.write(image, f.pts, f.time_base)
        if self._jsonl is not None:
            extra = self.record_extra(result) if self.record_extra is not None else None
            self._jsonl.write(frame_record(result, extra))
        if self._tracks is not None:
            self._tracks.add(result)
        self.frames += 1
        self.drops += result.dropped_before
        if self.progress is not None:
            self.progress(self.frames)

    def close(self) -> None:
        """Finish every file; safe to call twice. The tracks document is written atomically."""
        if self.closed:
            return
        self.closed = True
        errors: list[BaseException] = []
        for closer in (self._video, self._jsonl):
            if closer is None:
                continue
            try:
                closer.close()
            except Exception as e:  # close the others, then report
                errors.append(e)
        if self._tracks is not None:
            doc = {
                "format": "hrstream.tracks",
                "version": SCHEMA_VERSION,
                "video": source_metadata(self.info),
                "model": self.model,
                "keypoint_names": list(self.meta.get("keypoint_names", [])),
                "skeleton": [list(p) for p in self.meta.get("skeleton", [])],
                "num_frames": self.frames,
                "dropped_frames": self.drops,
                "tracks": self._tracks.document(self.savgol_window_s),
            }
            write_json_atomic(self.paths["tracks"], doc, indent=None)
        if errors:
            raise errors[0]
