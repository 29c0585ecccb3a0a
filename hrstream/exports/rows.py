"""The people of a tracks document (and, optionally, of its JSONL records), one row per person and frame.

Coordinates are copied unchanged: pixels of the source frame, x right, y down, the centre of the top-left
pixel at ``(0, 0)`` (the COCO keypoint convention). Keypoint scores are the network's heatmap maxima, which
may exceed 1 slightly; formats that define confidences in [0, 1] clip them where they are written.

Which keypoints are used is chosen with ``use``: ``"smoothed"`` (the online smoother's output, what the
video shows), ``"raw"`` (the network's output) or ``"offline"`` (the Savitzky-Golay pass over whole tracks;
a track too short for that pass has none and gives its ``"smoothed"`` keypoints instead).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.errors import InputError
from hrstream.schemas import validate

__all__ = [
    "RESCORE_THRESHOLD",
    "USES",
    "PersonRow",
    "frame_indices",
    "iter_people",
    "load_records",
    "load_tracks",
    "person_score",
    "records_path",
]

#: The keypoint choices of ``use`` and the tracks-document field each reads.
USES = {"smoothed": "smoothed", "raw": "keypoints", "offline": "smoothed_offline"}
#: The official HRNet COCO evaluation's keypoint threshold for rescoring (``in_vis_thre``).
RESCORE_THRESHOLD = 0.2


@dataclass(frozen=True)
class PersonRow:
    """One person in one frame.

    ``track_id`` is ``None`` for a person no confirmed track holds (from the JSONL records); ``time_s`` is
    the frame's presentation time (``None`` when unknown); ``box`` is xyxy pixels, ``keypoints``
    ``float64 (K, 2)`` (x, y) pixels, ``scores`` ``float64 (K,)`` heatmap maxima (not clipped).
    """

    frame: int
    time_s: float | None
    track_id: int | None
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


def records_path(tracks_path: str | Path) -> Path:
    """The JSONL records written beside a tracks document: ``NAME.tracks.json`` -> ``NAME.jsonl``."""
    p = Path(tracks_path)
    stem = p.name.removesuffix(".json").removesuffix(".tracks")
    return p.with_name(f"{stem}.jsonl")


def load_records(path: str | Path) -> list[dict[str, Any]]:
    """Read a job's ``NAME.jsonl`` (one frame record a line, each validated); :class:`InputError` names the
    file and the line when it cannot be read."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise InputError(
            f"{p}: cannot read the JSONL records ({e.strerror or e}); people not in a confirmed track are "
            "only there: keep NAME.jsonl beside NAME.tracks.json"
        ) from e
    records = []
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError as e:
            raise InputError(f"{p}: line {n} is not JSON ({e})") from e
        validate(rec, "frame", label=f"{p}:{n}")
        records.append(rec)
    return records


def _check_use(use: str) -> str:
    if use not in USES:
        raise ValueError(f"use={use!r}: expected one of {', '.join(USES)}")
    return USES[use]


def _untracked(records: Sequence[Mapping[str, Any]], use: str) -> Iterator[PersonRow]:
    for rec in records:
        for person in rec.get("people") or []:
            if person["track_id"] is not None:
                continue  # in a confirmed track: the tracks document has it
            kp = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
            xy = kp[:, :2]
            if use == "raw" and person.get("raw_keypoints") is not None:
                xy = np.asarray(person["raw_keypoints"], np.float64).reshape(-1, 2)
            yield PersonRow(
                frame=int(rec["frame"]),
                time_s=rec.get("pts_s"),
                track_id=None,
                box=tuple(float(v) for v in person["box"]),  # type: ignore[arg-type]
                box_score=float(person["box_score"]),
                keypoints=xy,
                scores=kp[:, 2].copy(),
            )


def iter_people(
    tracks_doc: Mapping[str, Any],
    *,
    use: str = "smoothed",
    records: Sequence[Mapping[str, Any]] | None = None,
) -> Iterator[PersonRow]:
    """Every person of every track, ordered by frame then track id.

    With ``records`` (the job's JSONL records, :func:`load_records`) the people no confirmed track holds
    (``track_id`` null: tentative tracks, weak detections) follow the tracked ones of their frame, in their
    record's order; their keypoints are the records' (``raw_keypoints`` for ``use="raw"``).
    """
    key = _check_use(use)
    rows: list[PersonRow] = []
    for tr in tracks_doc["tracks"]:
        poses = tr.get(key)
        if poses is None:  # "offline" on a track too short for the Savitzky-Golay pass
            poses = tr["smoothed"]
        times = tr.get("times") or [None] * len(tr["frames"])
        for j, frame in enumerate(tr["frames"]):
            rows.append(
                PersonRow(
                    frame=int(frame),
                    time_s=times[j],
                    track_id=int(tr["track_id"]),
                    box=tuple(float(v) for v in tr["boxes"][j]),  # type: ignore[arg-type]
                    box_score=float(tr["box_scores"][j]),
                    keypoints=np.asarray(poses[j], np.float64).reshape(-1, 2),
                    scores=np.asarray(tr["scores"][j], np.float64),
                )
            )
    if records is not None:
        rows.extend(_untracked(records, use))
    big = np.iinfo(np.int64).max
    rows.sort(key=lambda r: (r.frame, big if r.track_id is None else r.track_id))  # stable: records' order
    yield from rows


def person_score(scores: np.ndarray, box_score: float, *, threshold: float = RESCORE_THRESHOLD) -> float:
    """The person score of the official COCO evaluation's rescoring.

    The mean of the keypoint scores above ``threshold`` (0 when none is) times the box score.
    """
    s = np.asarray(scores, np.float64)
    kept = s[s > threshold]
    return float(kept.mean() * box_score) if kept.size else 0.0


def frame_indices(tracks_doc: Mapping[str, Any]) -> list[int]:
    """Every frame the job wrote: ``0 .. num_frames - 1`` plus any later index a track holds."""
    frames = set(range(int(tracks_doc["num_frames"])))
    for tr in tracks_doc["tracks"]:
        frames.update(int(f) for f in tr["frames"])
    return sorted(frames)
