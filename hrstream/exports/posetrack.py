"""PoseTrack18 prediction files: one JSON per video, as the PoseTrack18 annotation files and the official
evaluation code (poseval) read them.

poseval finds a frame from its ``file_name``, ``images/<split>/<sequence>/<number>.jpg``: the sequence
folder must be ``NNNNNN_<mpii|bonn|mpiinew>_...`` (it parses the number and the source), and the image
``<number>`` is the frame's number in the sequence (< 10000). The image id is ``T`` + 6-digit sequence
number + 4-digit frame number, ``T`` the source (1 mpii, 2 bonn, 3 mpiinew).

* A video named in PoseTrack's form (``000342_mpii_test``) keeps its name; any other name gets a sequence
  name of that form, ``NNNNNN_mpii_<name>``, its number a checksum of the name (stable across runs).
* Frames are numbered by the source's own image names where the source was a folder of numbered images
  (PoseTrack's frames, ``000000.jpg`` ...), else by their index in the video.
* Landmarks are copied by name into PoseTrack's 17 slots (COCO order; the ear slots are placeholders the
  evaluation ignores and are written as zeros, as in the annotation files). A COCO-17 model predicts no
  ``head_bottom`` / ``head_top``: those slots are written as not predicted (``0, 0, 0``, score 0), which
  poseval skips, rather than filled with the eyes.
* ``scores`` are the heatmap maxima (poseval ranks by them; it defines no range).
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hrstream.errors import InputError
from hrstream.exports.rows import RESCORE_THRESHOLD, frame_indices, iter_people, person_score
from hrstream.schemas import validate

__all__ = [
    "POSETRACK18_KEYPOINTS",
    "POSETRACK18_SKELETON",
    "PoseTrackSequence",
    "posetrack18_image_id",
    "posetrack18_sequence",
    "to_posetrack18",
]

log = logging.getLogger(__name__)

#: PoseTrack18 landmarks in their slot order (COCO's order, with head_bottom / head_top in the eye slots).
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
#: The slots the evaluation ignores (zeros in the annotation files).
_PLACEHOLDERS = frozenset({"left_ear", "right_ear"})
#: The source digit of the image ids.
SOURCES = {"mpii": 1, "bonn": 2, "mpiinew": 3}
_SEQUENCE = re.compile(r"^(\d{1,6})_(mpii|bonn|mpiinew)(?:_|$)")
#: poseval keeps track ids below 10000; PoseTrack asks for 0-999.
_MAX_TRACK_ID = 999


@dataclass(frozen=True)
class PoseTrackSequence:
    """A PoseTrack sequence: its folder ``name``, 6-digit ``number`` and ``source`` (mpii, bonn, mpiinew)."""

    name: str
    number: int
    source: str

    @property
    def split(self) -> str:
        """``train`` for ``*_train`` sequences, else ``val`` (PoseTrack's validation and test sequences)."""
        return "train" if self.name.endswith("_train") else "val"


def posetrack18_sequence(video_name: str) -> PoseTrackSequence:
    """The sequence a video is written as: its own name when it has PoseTrack's form, else
    ``NNNNNN_mpii_<name>`` with ``NNNNNN`` the CRC-32 of the name modulo 10^6."""
    m = _SEQUENCE.match(video_name)
    if m:
        return PoseTrackSequence(video_name, int(m.group(1)), m.group(2))
    number = zlib.crc32(video_name.encode("utf-8")) % 1_000_000
    return PoseTrackSequence(f"{number:06d}_mpii_{video_name}", number, "mpii")


def posetrack18_image_id(sequence: PoseTrackSequence, frame_number: int) -> int:
    """``T`` (source digit) + 6-digit sequence number + 4-digit frame number, as poseval computes it."""
    if not 0 <= frame_number < 10_000:
        raise InputError(
            f"{sequence.name}: frame {frame_number} does not fit a PoseTrack18 image id (frames 0-9999)"
        )
    return SOURCES[sequence.source] * 10_000_000_000 + sequence.number * 10_000 + frame_number


def _frame_numbers(frames: Sequence[int], image_names: Sequence[str] | None) -> dict[int, tuple[str, int]]:
    """Each frame index -> (file name, frame number): the source image's when given and numbered."""
    out = {}
    for f in frames:
        if image_names is not None and f < len(image_names):
            name = image_names[f]
            stem = name.rsplit(".", 1)[0]
            if not stem.isdigit():
                raise InputError(
                    f"image {name}: PoseTrack18 frames are numbered images (000000.jpg, ...); "
                    "export without the source image names, or rename the images"
                )
            out[f] = (name, int(stem))
        else:
            out[f] = (f"{f:06d}.jpg", f)
    return out


def _slots(keypoint_names: Sequence[str]) -> list[int | None]:
    index = {n: i for i, n in enumerate(keypoint_names)}
    slots = [None if n in _PLACEHOLDERS else index.get(n) for n in POSETRACK18_KEYPOINTS]
    if all(s is None for s in slots):
        raise InputError(
            f"the tracks' keypoints ({', '.join(keypoint_names[:5])}, ...) hold none of PoseTrack18's landmarks "
            f"({', '.join(n for n in POSETRACK18_KEYPOINTS if n not in _PLACEHOLDERS)})"
        )
    return slots


def _track_ids(tracks_doc: Mapping[str, Any], sequence: str) -> dict[int, int]:
    ids = [int(tr["track_id"]) for tr in tracks_doc["tracks"]]
    if all(0 <= i <= _MAX_TRACK_ID for i in ids):
        return {i: i for i in ids}
    order = sorted(tracks_doc["tracks"], key=lambda tr: (min(tr["frames"]), tr["track_id"]))
    log.info(
        "%s: track ids renumbered 0-%d in order of appearance (PoseTrack18: 0-999)", sequence, len(ids) - 1
    )
    return {int(tr["track_id"]): n for n, tr in enumerate(order)}


def to_posetrack18(
    tracks_doc: Mapping[str, Any],
    *,
    video_name: str,
    use: str = "smoothed",
    image_names: Sequence[str] | None = None,
    threshold: float = RESCORE_THRESHOLD,
) -> dict[str, Any]:
    """A PoseTrack18 prediction document for one video: ``{"images", "annotations", "categories"}``.

    ``images`` lists every frame: ``file_name`` ``images/<split>/<sequence>/<number>.jpg``, ``id`` =
    ``frame_id`` (:func:`posetrack18_image_id`), ``vid_id``, ``nframes``. ``image_names`` are the source's
    image file names in frame order (a folder of PoseTrack frames); without them frames are numbered by
    index. Each annotation holds ``image_id``, ``track_id`` (0-999), ``keypoints`` (x, y, 1 per predicted
    slot, 0, 0, 0 for a slot not predicted), ``scores``, ``score``, ``bbox`` (xywh), ``category_id`` 1 and
    ``id`` (``image_id * 100 + n``, as poseval's converter numbers them).
    """
    validate(tracks_doc, "tracks", label="tracks document")
    seq = posetrack18_sequence(video_name)
    slots = _slots(tracks_doc["keypoint_names"])
    frames = frame_indices(tracks_doc)
    numbered = _frame_numbers(frames, image_names)
    ids = {f: posetrack18_image_id(seq, number) for f, (_, number) in numbered.items()}
    if len(set(ids.values())) != len(ids):
        raise InputError(f"{video_name}: two frames share an image number; PoseTrack18 needs one per frame")
    images = [
        {
            "file_name": f"images/{seq.split}/{seq.name}/{numbered[f][0]}",
            "id": ids[f],
            "frame_id": ids[f],
            "vid_id": f"{seq.number:06d}",
            "nframes": len(frames),
        }
        for f in frames
    ]
    track_ids = _track_ids(tracks_doc, seq.name)
    annotations = []
    per_image: dict[int, int] = {}
    for row in iter_people(tracks_doc, use=use):
        kp = np.zeros((len(slots), 3))
        scores = np.zeros(len(slots))
        for j, src in enumerate(slots):
            if src is not None:
                kp[j] = (*row.keypoints[src], 1.0)
                scores[j] = row.scores[src]
        image_id = ids[row.frame]
        n = per_image.get(image_id, 0)
        per_image[image_id] = n + 1
        x0, y0, x1, y1 = row.box
        annotations.append(
            {
                "id": image_id * 100 + n,
                "image_id": image_id,
                "category_id": 1,
                "track_id": track_ids[int(row.track_id)],  # type: ignore[arg-type]
                "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                "keypoints": kp.reshape(-1).round(4).tolist(),
                "scores": scores.round(4).tolist(),
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
