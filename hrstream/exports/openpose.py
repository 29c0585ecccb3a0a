"""OpenPose JSON (format 1.3): one ``NAME_<frame:012d>_keypoints.json`` per frame.

``pose_keypoints_2d`` is ``[x, y, c] * N`` in one of OpenPose's layouts, made from the COCO-17 keypoints of
a tracks document by name:

* ``body25`` (OpenPose's default model, 25 points): Nose, Neck, RShoulder, RElbow, RWrist, LShoulder,
  LElbow, LWrist, MidHip, RHip, RKnee, RAnkle, LHip, LKnee, LAnkle, REye, LEye, REar, LEar, LBigToe,
  LSmallToe, LHeel, RBigToe, RSmallToe, RHeel;
* ``coco18`` (OpenPose's COCO model, 18 points): Nose, Neck, RShoulder, RElbow, RWrist, LShoulder, LElbow,
  LWrist, RHip, RKnee, RAnkle, LHip, LKnee, LAnkle, REye, LEye, REar, LEar.

Neck is the midpoint of the shoulders and MidHip that of the hips, each with the lower of the two
confidences; the foot points, which a COCO model does not predict, are ``0, 0, 0`` (OpenPose's "not
detected"). Confidences are the heatmap maxima clipped to [0, 1], as OpenPose defines them.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hrstream.errors import InputError
from hrstream.exports.rows import PersonRow, frame_indices, iter_people
from hrstream.io import safe_name, write_json_atomic
from hrstream.schemas import validate

__all__ = ["OPENPOSE_LAYOUTS", "OPENPOSE_VERSION", "OpenPoseLayout", "openpose_frame", "write_openpose"]

log = logging.getLogger(__name__)

OPENPOSE_VERSION = 1.3
OpenPoseLayout = Literal["body25", "coco18"]

# One output point: a COCO keypoint name, the midpoint of two (with the lower confidence), or None (0, 0, 0).
_Source = str | tuple[str, str] | None
_NECK = ("left_shoulder", "right_shoulder")
_MID_HIP = ("left_hip", "right_hip")
_ARMS = ["right_shoulder", "right_elbow", "right_wrist", "left_shoulder", "left_elbow", "left_wrist"]
_RIGHT_LEG = ["right_hip", "right_knee", "right_ankle"]
_LEFT_LEG = ["left_hip", "left_knee", "left_ankle"]
_FACE = ["right_eye", "left_eye", "right_ear", "left_ear"]
#: Each layout's points, in OpenPose's order, as made from COCO-17 names.
OPENPOSE_LAYOUTS: dict[str, list[_Source]] = {
    "body25": ["nose", _NECK, *_ARMS, _MID_HIP, *_RIGHT_LEG, *_LEFT_LEG, *_FACE, *[None] * 6],
    "coco18": ["nose", _NECK, *_ARMS, *_RIGHT_LEG, *_LEFT_LEG, *_FACE],
}


def _plan(keypoint_names: Sequence[str], layout: str) -> list[tuple[int, int] | None]:
    """For each output point the two source indices to average (equal for a copied point), or ``None``."""
    if layout not in OPENPOSE_LAYOUTS:
        raise ValueError(f"layout {layout!r}: expected one of {', '.join(OPENPOSE_LAYOUTS)}")
    index = {n: i for i, n in enumerate(keypoint_names)}
    needed = sorted(
        {n for src in OPENPOSE_LAYOUTS[layout] if src for n in ((src,) if isinstance(src, str) else src)}
    )
    missing = [n for n in needed if n not in index]
    if missing:
        raise InputError(
            f"OpenPose {layout} is made from the COCO-17 keypoints; the tracks lack {', '.join(missing)} "
            "(export a COCO keypoint model's tracks, or use --format coco / csv)"
        )
    plan: list[tuple[int, int] | None] = []
    for src in OPENPOSE_LAYOUTS[layout]:
        if src is None:
            plan.append(None)
        elif isinstance(src, str):
            plan.append((index[src], index[src]))
        else:
            plan.append((index[src[0]], index[src[1]]))
    return plan


def _points(row: PersonRow, plan: Sequence[tuple[int, int] | None]) -> list[float]:
    out = np.zeros((len(plan), 3))
    conf = np.clip(row.scores, 0.0, 1.0)
    for j, pair in enumerate(plan):
        if pair is None:
            continue
        a, b = pair
        out[j, :2] = (row.keypoints[a] + row.keypoints[b]) / 2.0
        out[j, 2] = min(conf[a], conf[b])
    return out.reshape(-1).round(4).tolist()


def openpose_frame(
    people: Sequence[PersonRow], keypoint_names: Sequence[str], *, layout: OpenPoseLayout = "body25"
) -> dict[str, Any]:
    """The OpenPose 1.3 JSON of one frame; ``person_id`` is ``[track_id]`` (``[-1]`` without a track)."""
    plan = _plan(keypoint_names, layout)
    empty: list[float] = []
    return {
        "version": OPENPOSE_VERSION,
        "people": [
            {
                "person_id": [-1 if row.track_id is None else row.track_id],
                "pose_keypoints_2d": _points(row, plan),
                "face_keypoints_2d": empty,
                "hand_left_keypoints_2d": empty,
                "hand_right_keypoints_2d": empty,
                "pose_keypoints_3d": empty,
                "face_keypoints_3d": empty,
                "hand_left_keypoints_3d": empty,
                "hand_right_keypoints_3d": empty,
            }
            for row in people
        ],
    }


def write_openpose(
    tracks_doc: Mapping[str, Any],
    out_dir: str | Path,
    name: str,
    *,
    use: str = "smoothed",
    layout: OpenPoseLayout = "body25",
) -> list[Path]:
    """Write ``out_dir/NAME_<frame:012d>_keypoints.json`` for every frame (empty ``people`` where nobody
    was tracked), each atomically; returns the paths in frame order."""
    validate(tracks_doc, "tracks", label="tracks document")
    names = tracks_doc["keypoint_names"]
    _plan(names, layout)  # fail before writing anything
    out = Path(out_dir)
    stem = safe_name(name)
    by_frame: dict[int, list[PersonRow]] = defaultdict(list)
    for row in iter_people(tracks_doc, use=use):
        by_frame[row.frame].append(row)
    paths = []
    for f in frame_indices(tracks_doc):
        path = out / f"{stem}_{f:012d}_keypoints.json"
        write_json_atomic(path, openpose_frame(by_frame.get(f, []), names, layout=layout), indent=None)
        paths.append(path)
    log.info("wrote %d OpenPose (%s) files to %s", len(paths), layout, out)
    return paths
