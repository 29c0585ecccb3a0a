"""Export a pose tracks document (``NAME.tracks.json``) to the formats other tools read.

=================== ==========================================================================================
``coco``            COCO keypoint results, the list ``pycocotools.COCO.loadRes`` takes (``NAME.coco_results.json``)
``csv``             one line per person and frame (``NAME.csv``)
``posetrack18``     one JSON per video as the PoseTrack18 evaluation (poseval) reads it (``SEQUENCE.json``)
``openpose``        OpenPose BODY_25 JSON, one file per frame (``NAME_<frame:012d>_keypoints.json``)
``openpose-coco18`` the same in OpenPose's 18-point COCO layout
=================== ==========================================================================================

``coco`` and ``csv`` can include the people no confirmed track holds (``unconfirmed``): they are in the
job's JSONL records (``track_id`` null), read from ``NAME.jsonl`` beside the tracks document.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hrstream.io import IMAGE_EXTENSIONS, expand_inputs, safe_name, write_json_atomic
from hrstream.tasks.exports.coco import csv_header, to_coco_results, to_csv, write_csv
from hrstream.tasks.exports.openpose import OPENPOSE_LAYOUTS, OPENPOSE_VERSION, openpose_frame, write_openpose
from hrstream.tasks.exports.posetrack import (
    POSETRACK18_KEYPOINTS,
    POSETRACK18_SKELETON,
    posetrack18_image_id,
    posetrack18_sequence,
    to_posetrack18,
)
from hrstream.tasks.exports.rows import (
    RESCORE_THRESHOLD,
    PersonRow,
    iter_people,
    load_records,
    load_tracks,
    person_score,
    records_path,
)

__all__ = [
    "EXPORT_FORMATS",
    "OPENPOSE_LAYOUTS",
    "OPENPOSE_VERSION",
    "POSETRACK18_KEYPOINTS",
    "POSETRACK18_SKELETON",
    "RESCORE_THRESHOLD",
    "PersonRow",
    "csv_header",
    "export_tracks",
    "iter_people",
    "load_records",
    "load_tracks",
    "openpose_frame",
    "person_score",
    "posetrack18_image_id",
    "posetrack18_sequence",
    "records_path",
    "source_image_names",
    "to_coco_results",
    "to_csv",
    "to_posetrack18",
    "write_csv",
    "write_openpose",
]

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("coco", "csv", "posetrack18", "openpose", "openpose-coco18")
#: The formats that can include people no confirmed track holds.
_WITH_UNCONFIRMED = ("coco", "csv")


def source_image_names(tracks_doc: Mapping[str, Any]) -> list[str] | None:
    """The file names of the source's frames when the job read a still image or a folder of images that is
    still there (listed as ``hrstream run`` lists it), else ``None`` (a video: frames have no names)."""
    source = str(tracks_doc["video"].get("input") or "")
    path = Path(source)
    if not source or not path.exists():
        return None
    if path.is_file():
        return [path.name] if path.suffix.lower() in IMAGE_EXTENSIONS else None
    jobs = expand_inputs([source])
    if len(jobs) == 1 and jobs[0].kind == "images":
        return [Path(p).name for p in jobs[0].paths]
    return None


def _posetrack_image_names(doc: Mapping[str, Any]) -> list[str] | None:
    names = source_image_names(doc)
    if names is not None and not all(Path(n).stem.isdigit() for n in names):
        log.info("source images are not numbered (%s, ...): PoseTrack18 frames numbered by index", names[0])
        return None
    return names


def export_tracks(
    tracks_path: str | Path,
    fmt: str,
    out_dir: str | Path,
    *,
    use: str = "smoothed",
    unconfirmed: bool = False,
) -> list[Path]:
    """Read ``tracks_path`` and write it as ``fmt`` (:data:`EXPORT_FORMATS`) into ``out_dir``.

    Files: ``NAME.coco_results.json``, ``NAME.csv``, ``SEQUENCE.json`` (PoseTrack18, named after the
    sequence as the evaluation expects: :func:`posetrack18_sequence`) or one OpenPose file per frame, where
    ``NAME`` is the document's video name. ``unconfirmed`` (``coco``, ``csv``) adds the people no confirmed
    track holds, read from the JSONL records beside the tracks document.
    """
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if unconfirmed and fmt not in _WITH_UNCONFIRMED:
        raise ValueError(f"unconfirmed people can be exported as {' or '.join(_WITH_UNCONFIRMED)}, not {fmt}")
    doc = load_tracks(tracks_path)
    records = load_records(records_path(tracks_path)) if unconfirmed else None
    name = safe_name(doc["video"]["name"])
    out = Path(out_dir)
    if fmt.startswith("openpose"):
        layout = "coco18" if fmt == "openpose-coco18" else "body25"
        return write_openpose(doc, out, name, use=use, layout=layout)
    if fmt == "coco":
        path = out / f"{name}.coco_results.json"
        write_json_atomic(path, to_coco_results(doc, use=use, records=records), indent=None)
    elif fmt == "csv":
        path = write_csv(out / f"{name}.csv", doc, use=use, records=records)
    else:
        seq = posetrack18_sequence(name)
        path = out / f"{seq.name}.json"
        pt = to_posetrack18(doc, video_name=name, use=use, image_names=_posetrack_image_names(doc))
        write_json_atomic(path, pt, indent=None)
    log.info("wrote %s", path)
    return [path]
