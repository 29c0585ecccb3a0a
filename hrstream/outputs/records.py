"""What output documents say: the JSONL record of a frame, its segmentation fields, a source's metadata.

Pixel coordinates in every record: x right, y down, the centre of the top-left pixel at (0, 0). Keypoints of a
JSONL record are the smoothed ones (``raw_keypoints`` the network's); people no confirmed track holds yet have
``track_id`` ``null``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from hrstream.io import SourceInfo
from hrstream.seg import class_fractions, masks_to_rle
from hrstream.types import FrameResult

__all__ = ["frame_record", "rounded", "seg_record", "source_metadata"]


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
