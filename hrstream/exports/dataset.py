"""A COCO keypoints dataset made from pose jobs (``hrstream export OUT --format coco-dataset``).

Layout (CVAT's "COCO Keypoints 1.0", subset ``default``; Datumaro and Label Studio's COCO converter read it)::

    DS/images/default/NAME_<frame:06d>.jpg        every ``stride``-th frame of each video, upright, JPEG q95
    DS/annotations/person_keypoints_default.json  the COCO keypoints file

The COCO file holds ``images`` (``id`` from 1, ``file_name`` relative to ``images/default/``, ``width``,
``height``, and the extra fields ``video``, ``frame``, ``time_s``), one ``person`` category with the jobs'
``keypoints`` names and ``skeleton`` (1-based, as COCO writes it), and one annotation per person and image:
``keypoints`` ``[x, y, v] * K`` in pixels of the image (COCO's convention: the centre of the top-left pixel at
(0, 0)) with ``v = 2`` where the keypoint score reaches ``kpt_thr`` and the point lies inside the image, and
``0, 0, 0`` elsewhere (not labelled),
``num_keypoints``, ``bbox`` ``[x, y, w, h]`` (the person box), ``area`` (the box's: there is no mask),
``iscrowd`` 0, ``score`` (the rescored person score) and the track as ``track_id`` and as CVAT's
``attributes.track_id``. Frames are decoded again from each job's source with hrstream's own reader, so
their numbers, rotation and size are those of the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hrstream.errors import InputError
from hrstream.exports.rows import RESCORE_THRESHOLD, PersonRow, iter_people, person_score
from hrstream.io import InputSpec, expand_inputs, open_source, write_json_atomic

__all__ = ["SUBSET", "DatasetVideo", "VideoJob", "coco_annotation", "write_coco_dataset"]

log = logging.getLogger(__name__)

#: The subset name of CVAT's layout.
SUBSET = "default"


@dataclass(frozen=True)
class VideoJob:
    """One pose job to export: its output ``name``, tracks document, JSONL records (``records``: for
    ``unconfirmed`` people, else ``None``) and the ``source`` its frames are decoded from."""

    name: str
    tracks: Mapping[str, Any]
    source: str
    records: Sequence[Mapping[str, Any]] | None = None


@dataclass
class DatasetVideo:
    """What was exported of one video: its frames in the run, the images and annotations written, or the
    ``error`` that left it out."""

    name: str
    source: str
    frames: int
    images: int = 0
    annotations: int = 0
    error: str | None = None


def coco_annotation(
    row: PersonRow,
    *,
    ann_id: int,
    image_id: int,
    size: tuple[int, int],
    kpt_thr: float = RESCORE_THRESHOLD,
) -> dict[str, Any]:
    """One COCO person annotation of ``row`` in an image of ``size`` (width, height): keypoints scoring at
    least ``kpt_thr`` and inside the image are labelled (``v = 2``), the others ``0, 0, 0``."""
    k = len(row.scores)
    kp = np.zeros((k, 3), np.float64)
    x, y = row.keypoints[:, 0], row.keypoints[:, 1]
    inside = (x >= 0) & (y >= 0) & (x <= size[0] - 1) & (y <= size[1] - 1)
    seen = (row.scores >= kpt_thr) & inside
    kp[seen, :2] = row.keypoints[seen]
    kp[seen, 2] = 2
    x0, y0, x1, y1 = (float(v) for v in row.box)
    w, h = max(0.0, x1 - x0), max(0.0, y1 - y0)
    ann: dict[str, Any] = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "keypoints": [round(float(v), 2) for v in kp.reshape(-1)],
        "num_keypoints": int(seen.sum()),
        "bbox": [round(x0, 2), round(y0, 2), round(w, 2), round(h, 2)],
        "area": round(w * h, 2),
        "iscrowd": 0,
        "segmentation": [],
        "score": round(person_score(row.scores, row.box_score), 6),
        "track_id": row.track_id,
        "attributes": {"occluded": False},
    }
    if row.track_id is not None:
        ann["attributes"]["track_id"] = row.track_id
    return ann


def _open(source: str) -> Any:
    jobs = expand_inputs([source])
    if len(jobs) != 1 or jobs[0].error is not None or jobs[0].kind in ("url", "camera"):
        raise InputError(
            f"{source}: the source of this job cannot be read again (gone, or a live stream); "
            "coco-dataset needs the original video or images"
        )
    spec: InputSpec = jobs[0]
    return open_source(spec)


def _write_frames(job: VideoJob, images_dir: Path, wanted: set[int]) -> dict[int, str]:
    """Decode ``job.source`` and write the frames in ``wanted`` as JPEG; returns frame -> file name. On an
    error the images written so far are removed."""
    written: dict[int, str] = {}
    try:
        _decode_into(job, images_dir, wanted, written)
    except BaseException:
        for name in written.values():
            (images_dir / name).unlink(missing_ok=True)
        raise
    return written


def _decode_into(job: VideoJob, images_dir: Path, wanted: set[int], written: dict[int, str]) -> None:
    doc = job.tracks
    size = (int(doc["video"]["width"]), int(doc["video"]["height"]))
    source = _open(job.source)
    try:
        for frame in source:
            if frame.index > max(wanted, default=-1):
                break
            if frame.index not in wanted:
                continue
            h, w = frame.image.shape[:2]
            if (w, h) != size:
                raise InputError(
                    f"{job.source}: frame {frame.index} is {w}x{h}, the run saw {size[0]}x{size[1]}; "
                    "the source changed since it was processed: run it again"
                )
            name = f"{job.name}_{frame.index:06d}.jpg"
            tmp = images_dir / f".{name}.tmp.jpg"
            bgr = cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR)
            if not cv2.imwrite(str(tmp), bgr, [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise InputError(f"{images_dir / name}: cannot write the image")
            tmp.replace(images_dir / name)
            written[frame.index] = name
    finally:
        source.close()
    missing = sorted(wanted - set(written))
    if missing:
        raise InputError(
            f"{job.source}: frames {missing[:5]} of the run are missing from the source; it changed since it "
            "was processed: run it again"
        )


def write_coco_dataset(
    jobs: Sequence[VideoJob],
    out_dir: str | Path,
    *,
    stride: int = 1,
    use: str = "smoothed",
    kpt_thr: float = RESCORE_THRESHOLD,
) -> tuple[Path, list[DatasetVideo]]:
    """Write the images and the COCO keypoints file of ``jobs`` into ``out_dir`` (see the module's docstring).

    ``stride``: every ``stride``-th frame (0, stride, 2*stride, ...) of each job's frames becomes an image;
    ``use``: which keypoints (``smoothed``, ``raw``, ``offline``); ``kpt_thr``: keypoints scoring less are
    written as not labelled. Returns the annotations file and what was exported of each video; a video whose
    source cannot be read again or no longer matches its run is left out with its ``error`` (logged).

    Raises:
        InputError: no jobs, or the jobs' keypoints differ.
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if not jobs:
        raise InputError("no pose jobs to export; run 'hrstream run --task pose' first")
    names = list(jobs[0].tracks["keypoint_names"])
    skeleton = [[int(a) + 1, int(b) + 1] for a, b in jobs[0].tracks["skeleton"]]
    for job in jobs[1:]:
        if list(job.tracks["keypoint_names"]) != names:
            raise InputError(f"{job.name}: its keypoints differ from {jobs[0].name}'s; export them apart")
    out = Path(out_dir)
    images_dir = out / "images" / SUBSET
    images_dir.mkdir(parents=True, exist_ok=True)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    videos: list[DatasetVideo] = []
    for job in jobs:
        doc = job.tracks
        frames = int(doc["num_frames"])
        size = (int(doc["video"]["width"]), int(doc["video"]["height"]))
        video = DatasetVideo(job.name, job.source, frames)
        videos.append(video)
        try:
            files = _write_frames(job, images_dir, set(range(0, frames, stride)))
        except InputError as e:
            log.error("%s", e)
            video.error = str(e)
            continue
        ids: dict[int, int] = {}
        times: dict[int, float | None] = {}
        for row in iter_people(doc, use=use, records=job.records):
            times.setdefault(row.frame, row.time_s)
        for f in sorted(files):
            ids[f] = len(images) + 1
            images.append(
                {
                    "id": ids[f],
                    "file_name": files[f],
                    "width": size[0],
                    "height": size[1],
                    "video": job.name,
                    "frame": f,
                    "time_s": times.get(f),
                }
            )
        for row in iter_people(doc, use=use, records=job.records):
            if row.frame in ids:
                ann = coco_annotation(
                    row, ann_id=len(annotations) + 1, image_id=ids[row.frame], size=size, kpt_thr=kpt_thr
                )
                annotations.append(ann)
                video.annotations += 1
        video.images = len(files)
        log.info("%s: %d images, %d people", job.name, video.images, video.annotations)
    coco = {
        "info": {
            "description": "hrstream pose tracks as COCO keypoints",
            "date_created": datetime.now(UTC).isoformat(timespec="seconds"),
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": 1, "name": "person", "supercategory": "person", "keypoints": names, "skeleton": skeleton}
        ],
    }
    path = out / "annotations" / f"person_keypoints_{SUBSET}.json"
    write_json_atomic(path, coco, indent=None)
    return path, videos
