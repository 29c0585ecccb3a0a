"""Export a pose tracks document (``NAME.tracks.json``) to the formats other tools read.

=================== ==========================================================================================
``coco``            COCO keypoint results, the list ``pycocotools.COCO.loadRes`` takes (``NAME.coco_results.json``)
``csv``             one line per person and frame (``NAME.csv``)
``posetrack18``     one JSON per video as the PoseTrack18 evaluation (poseval) reads it (``SEQUENCE.json``)
``openpose``        OpenPose BODY_25 JSON, one file per frame (``NAME_<frame:012d>_keypoints.json``)
``openpose-coco18`` the same in OpenPose's 18-point COCO layout
``coco-dataset``    a COCO keypoints dataset: frames every ``stride`` as JPEG and one annotations file for
                    every video (:mod:`hrstream.exports.dataset`; CVAT's COCO Keypoints layout)
=================== ==========================================================================================

``coco`` and ``csv`` can include the people no confirmed track holds (``unconfirmed``): they are in the
job's JSONL records (``track_id`` null), read from ``NAME.jsonl`` beside the tracks document.

:func:`export` takes a tracks document or a whole run folder (the ``--out`` of ``hrstream run``: every pose
job its manifest holds as done, :mod:`hrstream.exports.runs`); exporting a run folder, and any
``coco-dataset``, also writes ``dataset.json`` describing what was exported.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hrstream.errors import InputError
from hrstream.exports.coco import csv_header, to_coco_results, to_csv, write_csv
from hrstream.exports.dataset import VideoJob, write_coco_dataset
from hrstream.exports.openpose import OPENPOSE_LAYOUTS, OPENPOSE_VERSION, openpose_frame, write_openpose
from hrstream.exports.posetrack import (
    POSETRACK18_KEYPOINTS,
    POSETRACK18_SKELETON,
    posetrack18_image_id,
    posetrack18_sequence,
    to_posetrack18,
)
from hrstream.exports.rows import (
    RESCORE_THRESHOLD,
    PersonRow,
    iter_people,
    load_records,
    load_tracks,
    person_score,
    records_path,
)
from hrstream.exports.runs import RunJob, run_jobs, write_dataset_json
from hrstream.io import IMAGE_EXTENSIONS, expand_inputs, safe_name, write_json_atomic

__all__ = [
    "EXPORT_FORMATS",
    "ExportResult",
    "OPENPOSE_LAYOUTS",
    "OPENPOSE_VERSION",
    "POSETRACK18_KEYPOINTS",
    "POSETRACK18_SKELETON",
    "RESCORE_THRESHOLD",
    "PersonRow",
    "csv_header",
    "export",
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

EXPORT_FORMATS = ("coco", "csv", "posetrack18", "openpose", "openpose-coco18", "coco-dataset")
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
    if fmt not in EXPORT_FORMATS or fmt == "coco-dataset":
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS[:-1])}")
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


@dataclass
class ExportResult:
    """What :func:`export` wrote: ``paths`` (coco-dataset: the annotations file; its images lie under
    ``images/``), ``dataset`` (``dataset.json``, or ``None`` for one tracks document in a per-video format)
    and the ``failed`` videos' errors (left out, the others exported)."""

    paths: list[Path] = field(default_factory=list)
    dataset: Path | None = None
    failed: list[str] = field(default_factory=list)


def _jobs(source: Path) -> tuple[list[RunJob], list[dict[str, Any]]]:
    if source.is_dir():
        return run_jobs(source)
    doc = load_tracks(source)
    return [RunJob(safe_name(doc["video"]["name"]), source, str(doc["video"]["input"]), None)], []


def export(
    source: str | Path,
    fmt: str,
    out_dir: str | Path,
    *,
    use: str = "smoothed",
    unconfirmed: bool = False,
    stride: int = 1,
) -> ExportResult:
    """Export a tracks document or a run folder (``source``) as ``fmt`` into ``out_dir``.

    One tracks document in a per-video format is :func:`export_tracks`. A run folder exports every pose job
    done there, each as :func:`export_tracks` would (``coco-dataset``: all of them into one dataset,
    ``stride``: every ``stride``-th frame); a video that cannot be exported is left out and its error
    returned; ``dataset.json`` records what was exported.
    """
    src, out = Path(source), Path(out_dir)
    if fmt not in EXPORT_FORMATS:
        raise ValueError(f"format {fmt!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    if not src.is_dir() and fmt != "coco-dataset":
        return ExportResult(export_tracks(src, fmt, out, use=use, unconfirmed=unconfirmed))
    jobs, skipped = _jobs(src)
    docs = [load_tracks(job.tracks) for job in jobs]
    settings: dict[str, Any] = {"format": fmt, "use": use, "unconfirmed": unconfirmed}
    result = ExportResult()
    videos: list[dict[str, Any]] = []
    if fmt == "coco-dataset":
        settings["stride"] = stride
        vjobs = [
            VideoJob(
                job.name, doc, job.source, load_records(records_path(job.tracks)) if unconfirmed else None
            )
            for job, doc in zip(jobs, docs, strict=True)
        ]
        path, written = write_coco_dataset(vjobs, out, stride=stride, use=use)
        result.paths.append(path)
        for job, doc, video in zip(jobs, docs, written, strict=True):
            videos.append(
                _video(job, doc, images=video.images, annotations=video.annotations, error=video.error)
            )
        annotations = str(path.relative_to(out))
    else:
        for job, doc in zip(jobs, docs, strict=True):
            try:
                paths = export_tracks(job.tracks, fmt, out, use=use, unconfirmed=unconfirmed)
            except InputError as e:
                log.error("%s", e)
                videos.append(_video(job, doc, error=str(e)))
                continue
            result.paths.extend(paths)
            videos.append(_video(job, doc, files=[str(p.relative_to(out)) for p in paths]))
        annotations = None
    result.failed = [v["error"] for v in videos if v.get("error")]
    result.dataset = write_dataset_json(
        out,
        source=src,
        export=settings,
        videos=videos,
        tracks_docs=docs,
        skipped=skipped,
        annotations=annotations,
    )
    return result


def _video(job: RunJob, doc: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "name": job.name,
        "input": job.source,
        "frames": int(doc["num_frames"]),
        "recipe": job.recipe,
        "model": doc["model"].get("name"),
        **extra,
    }
