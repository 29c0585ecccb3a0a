"""Export a pose tracks document (``NAME.tracks.json``) to the formats other tools read.

* COCO keypoint results (:func:`to_coco_results`): the list ``pycocotools.COCO.loadRes`` takes;
* PoseTrack18 (:func:`to_posetrack18`): one JSON per video, as the PoseTrack18 evaluation (poseval) reads;
* OpenPose (:func:`write_openpose`): one ``NAME_000000000000_keypoints.json`` per frame (format 1.3).

Coordinates are copied unchanged: pixels of the source frame, x right, y down, the centre of the top-left
pixel at ``(0, 0)`` (the COCO keypoint convention). Keypoints keep the document's order
(``keypoint_names``); PoseTrack18 needs 17 keypoints in COCO order.

Which keypoints are exported is chosen with ``use``: ``"smoothed"`` (the online smoother's output, what
the video shows), ``"raw"`` (the network's output) or ``"offline"`` (the Savitzky-Golay pass over whole
tracks; tracks too short for it fall back to ``"smoothed"``).
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.errors import InputError
from hrstream.io import safe_name, write_json_atomic
from hrstream.schemas import validate

__all__ = [
    "EXPORT_FORMATS",
    "OPENPOSE_VERSION",
    "POSETRACK18_KEYPOINTS",
    "POSETRACK18_SKELETON",
    "RESCORE_THRESHOLD",
    "PersonRow",
    "export_tracks",
    "iter_people",
    "load_tracks",
    "openpose_frame",
    "person_score",
    "posetrack18_image_id",
    "to_coco_results",
    "to_posetrack18",
    "write_openpose",
]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("coco", "posetrack18", "openpose")
OPENPOSE_VERSION = 1.3
#: PoseTrack18 landmarks in COCO slot order: the COCO eye slots hold head_bottom / head_top; the ear slots
#: are placeholders the evaluation ignores.
POSETRACK18_KEYPOINTS = (
    "nose", "head_bottom", "head_top", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
#: PoseTrack18 limbs, 1-based keypoint indices (the COCO skeleton).
POSETRACK18_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9),
    (8, 10), (9, 11), (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)  # fmt: skip
_USE = {"smoothed": "smoothed", "raw": "keypoints", "offline": "smoothed_offline"}
#: The official HRNet COCO evaluation's keypoint threshold for rescoring (``in_vis_thre``).
RESCORE_THRESHOLD = 0.2


@dataclass(frozen=True)
class PersonRow:
    """One person in one frame, taken from a track.

    ``box`` is xyxy pixels, ``keypoints`` ``float64 (K, 2)`` (x, y) pixels, ``scores`` ``float64 (K,)``.
    """

    frame: int
    track_id: int
    box: tuple[float, float, float, float]
    box_score: float
    keypoints: np.ndarray
    scores: np.ndarray


def load_tracks(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``NAME.tracks.json``; raises :class:`InputError` naming the file if it is not one."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InputError(f"{p}: cannot read the tracks document ({e.strerror or e})") from e
    except ValueError as e:
        raise InputError(
            f"{p}: not JSON ({e}); pass a NAME.tracks.json written by 'hrstream run --task pose'"
        ) from e
    validate(doc, "tracks", label=str(p))
    return doc


def _check_use(use: str) -> str:
    if use not in _USE:
        raise ValueError(f"use={use!r}: expected one of {', '.join(_USE)}")
    return _USE[use]


def iter_people(tracks_doc: Mapping[str, Any], *, use: str = "smoothed") -> Iterator[PersonRow]:
    """Every person of every track, ordered by frame then track id."""
    key = _check_use(use)
    rows: list[PersonRow] = []
    for tr in tracks_doc["tracks"]:
        poses = tr.get(key)
        if poses is None:  # "offline" on a track too short for the Savitzky-Golay pass
            poses = tr["smoothed"]
        for j, frame in enumerate(tr["frames"]):
            rows.append(
                PersonRow(
                    frame=int(frame),
                    track_id=int(tr["track_id"]),
                    box=tuple(float(v) for v in tr["boxes"][j]),  # type: ignore[arg-type]
                    box_score=float(tr["box_scores"][j]),
                    keypoints=np.asarray(poses[j], np.float64).reshape(-1, 2),
                    scores=np.asarray(tr["scores"][j], np.float64),
                )
            )
    rows.sort(key=lambda r: (r.frame, r.track_id))
    yield from rows


def person_score(scores: np.ndarray, box_score: float, *, threshold: float = RESCORE_THRESHOLD) -> float:
    """The person score of the official COCO evaluation's rescoring.

    The mean of the keypoint scores above ``threshold`` (0 when none is) times the box score.
    """
    s = np.asarray(scores, np.float64)
    kept = s[s > threshold]
    return float(kept.mean() * box_score) if kept.size else 0.0


def _flat(keypoints: np.ndarray, third: np.ndarray | float) -> list[float]:
    k = len(keypoints)
    v = np.broadcast_to(np.asarray(third, np.float64), (k,))
    return np.column_stack([keypoints, v]).reshape(-1).round(4).tolist()


def _frame_indices(tracks_doc: Mapping[str, Any]) -> list[int]:
    """Every frame the job wrote: ``0 .. num_frames - 1`` plus any later index a track holds."""
    frames = set(range(int(tracks_doc["num_frames"])))
    for tr in tracks_doc["tracks"]:
        frames.update(int(f) for f in tr["frames"])
    return sorted(frames)


def to_coco_results(
    tracks_doc: Mapping[str, Any],
    *,
    use: str = "smoothed",
    image_ids: Mapping[int, int] | Sequence[int] | None = None,
    threshold: float = RESCORE_THRESHOLD,
) -> list[dict[str, Any]]:
    """COCO keypoint results: ``[{image_id, category_id: 1, keypoints: [x, y, v] * K, score}]``.

    ``v`` is the keypoint score and ``score`` the rescored person score (:func:`person_score`).
    ``image_ids`` maps a frame index to a COCO image id (a mapping, or a sequence indexed by frame); frames
    it does not map are left out. By default the image id is the frame index.
    """
    validate(tracks_doc, "tracks", label="tracks document")
    out: list[dict[str, Any]] = []
    for row in iter_people(tracks_doc, use=use):
        if image_ids is None:
            image_id = row.frame
        elif isinstance(image_ids, Mapping):
            if row.frame not in image_ids:
                continue
            image_id = int(image_ids[row.frame])
        else:
            if row.frame >= len(image_ids):
                continue
            image_id = int(image_ids[row.frame])
        out.append(
            {
                "image_id": image_id,
                "category_id": 1,
                "keypoints": _flat(row.keypoints, row.scores),
                "score": round(person_score(row.scores, row.box_score, threshold=threshold), 6),
                "track_id": row.track_id,
            }
        )
    return out


_POSETRACK_VIDEO = re.compile(r"^(\d{1,6})_")


def posetrack18_image_id(video_name: str, frame: int) -> int:
    """The PoseTrack18 image id of a frame: ``1`` + 6-digit video number + 4-digit frame index.

    The video number is the name's numeric prefix (``000342_mpii_test`` -> 342), or 0 for other names.
    """
    m = _POSETRACK_VIDEO.match(video_name)
    vid = int(m.group(1)) if m else 0
    if not 0 <= frame < 10_000:
        raise InputError(
            f"{video_name}: frame {frame} does not fit a PoseTrack18 image id (at most 10000 frames)"
        )
    return 10_000_000_000 + vid * 10_000 + frame


def to_posetrack18(
    tracks_doc: Mapping[str, Any],
    *,
    video_name: str,
    use: str = "smoothed",
    image_dir: str = "images/val",
    threshold: float = RESCORE_THRESHOLD,
) -> dict[str, Any]:
    """A PoseTrack18 prediction document for one video: ``{"images", "annotations", "categories"}``.

    ``images`` lists every frame (``file_name`` ``IMAGE_DIR/VIDEO/000000.jpg``, ``id`` = ``frame_id`` from
    :func:`posetrack18_image_id`); each annotation holds ``image_id``, ``track_id``, ``keypoints``
    (x, y, 1 flattened; the evaluation ignores the flag), ``scores`` (K keypoint scores), ``score``,
    ``bbox`` (xywh), ``category_id`` 1 and a unique ``id``. A COCO-17 model's eye slots are written as
    PoseTrack's head_bottom/head_top slots unchanged.
    """
    validate(tracks_doc, "tracks", label="tracks document")
    k = len(tracks_doc["keypoint_names"])
    if k != len(POSETRACK18_KEYPOINTS):
        raise InputError(
            f"{video_name}: the tracks have {k} keypoints; PoseTrack18 needs 17 (a COCO-17 pose model)"
        )
    frames = _frame_indices(tracks_doc)
    ids = {f: posetrack18_image_id(video_name, f) for f in frames}
    images = [
        {
            "file_name": f"{image_dir}/{video_name}/{f:06d}.jpg",
            "id": ids[f],
            "frame_id": ids[f],
            "vid_id": video_name.split("_")[0],
            "nframes": len(frames),
        }
        for f in frames
    ]
    annotations = []
    for n, row in enumerate(iter_people(tracks_doc, use=use), start=1):
        x0, y0, x1, y1 = row.box
        annotations.append(
            {
                "id": n,
                "image_id": ids[row.frame],
                "category_id": 1,
                "track_id": row.track_id,
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "keypoints": _flat(row.keypoints, 1.0),
                "scores": row.scores.round(4).tolist(),
                "score": round(person_score(row.scores, row.box_score, threshold=threshold), 6),
            }
        )
    category = {
        "supercategory": "person",
        "id": 1,
        "name": "person",
        "keypoints": list(POSETRACK18_KEYPOINTS),
        "skeleton": [list(p) for p in POSETRACK18_SKELETON],
    }
    return {"images": images, "annotations": annotations, "categories": [category]}


def openpose_frame(people: Sequence[PersonRow]) -> dict[str, Any]:
    """The OpenPose 1.3 JSON of one frame; ``pose_keypoints_2d`` is ``[x, y, c] * K`` in the document's order."""
    empty: list[float] = []
    return {
        "version": OPENPOSE_VERSION,
        "people": [
            {
                "person_id": [row.track_id],
                "pose_keypoints_2d": _flat(row.keypoints, row.scores),
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
    tracks_doc: Mapping[str, Any], out_dir: str | Path, name: str, *, use: str = "smoothed"
) -> list[Path]:
    """Write ``out_dir/NAME_<frame:012d>_keypoints.json`` for every frame (empty ``people`` where nobody
    was tracked), each atomically; returns the paths in frame order."""
    validate(tracks_doc, "tracks", label="tracks document")
    out = Path(out_dir)
    stem = safe_name(name)
    by_frame: dict[int, list[PersonRow]] = defaultdict(list)
    for row in iter_people(tracks_doc, use=use):
        by_frame[row.frame].append(row)
    paths = []
    for f in _frame_indices(tracks_doc):
        path = out / f"{stem}_{f:012d}_keypoints.json"
        write_json_atomic(path, openpose_frame(by_frame.get(f, [])), indent=None)
        paths.append(path)
    log.info("wrote %d OpenPose files to %s", len(paths), out)
    return paths


def export_tracks(
    tracks_path: str | Path, fmt: str, out_dir: str | Path, *, use: str = "smoothed"
) -> list[Path]:
    """Read ``tracks_path`` and write it as ``fmt`` (:data:`EXPORT_FORMATS`) into ``out_dir``.

    Files: ``NAME.coco_results.json``, ``NAME.json`` (PoseTrack18, named after the video as the evaluation
    expects) or one OpenPose file per frame, where ``NAME`` is the document's video name.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    doc = load_tracks(tracks_path)
    name = safe_name(doc["video"]["name"])
    out = Path(out_dir)
    if fmt == "openpose":
        return write_openpose(doc, out, name, use=use)
    if fmt == "coco":
        path = out / f"{name}.coco_results.json"
        write_json_atomic(path, to_coco_results(doc, use=use), indent=None)
    else:
        path = out / f"{name}.json"
        write_json_atomic(path, to_posetrack18(doc, video_name=name, use=use), indent=None)
    log.info("wrote %s", path)
    return [path]
