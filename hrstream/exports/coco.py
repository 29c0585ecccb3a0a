"""COCO keypoint results (the list ``pycocotools.COCO.loadRes`` takes) and a CSV table per frame and person."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hrstream.exports.rows import RESCORE_THRESHOLD, PersonRow, iter_people, person_score
from hrstream.io import write_text_atomic
from hrstream.schemas import validate

__all__ = ["csv_header", "to_coco_results", "to_csv", "write_csv"]


def _flat(keypoints: np.ndarray, third: np.ndarray | float) -> list[float]:
    k = len(keypoints)
    v = np.broadcast_to(np.asarray(third, np.float64), (k,))
    return np.column_stack([keypoints, v]).reshape(-1).round(4).tolist()


def to_coco_results(
    tracks_doc: Mapping[str, Any],
    *,
    use: str = "smoothed",
    image_ids: Mapping[int, int] | Sequence[int] | None = None,
    threshold: float = RESCORE_THRESHOLD,
    records: Sequence[Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """COCO keypoint results: ``[{image_id, category_id: 1, keypoints: [x, y, v] * K, score, track_id}]``.

    ``v`` is the keypoint score (the heatmap maximum, as the official evaluation writes it) and ``score`` the
    rescored person score (:func:`~hrstream.exports.rows.person_score`). ``image_ids`` maps a frame
    index to a COCO image id (a mapping, or a sequence indexed by frame); frames it does not map are left out.
    By default the image id is the frame index. With ``records`` (the job's JSONL records) the people no
    confirmed track holds are included too (``track_id`` null): they count in COCO AP.
    """
    validate(tracks_doc, "tracks", label="tracks document")
    out: list[dict[str, Any]] = []
    for row in iter_people(tracks_doc, use=use, records=records):
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


def csv_header(keypoint_names: Sequence[str]) -> list[str]:
    """The CSV columns: ``frame, time_s, track_id, x0, y0, x1, y1, box_score, score`` then ``NAME_x, NAME_y,
    NAME_score`` for every keypoint, in the document's order."""
    cols = ["frame", "time_s", "track_id", "x0", "y0", "x1", "y1", "box_score", "score"]
    for name in keypoint_names:
        cols += [f"{name}_x", f"{name}_y", f"{name}_score"]
    return cols


def _csv_row(row: PersonRow, threshold: float) -> list[Any]:
    values: list[Any] = [
        row.frame,
        "" if row.time_s is None else round(float(row.time_s), 6),
        "" if row.track_id is None else row.track_id,
        *(round(v, 2) for v in row.box),
        round(row.box_score, 6),
        round(person_score(row.scores, row.box_score, threshold=threshold), 6),
    ]
    values += np.column_stack([row.keypoints, row.scores]).reshape(-1).round(4).tolist()
    return values


def to_csv(
    tracks_doc: Mapping[str, Any],
    *,
    use: str = "smoothed",
    threshold: float = RESCORE_THRESHOLD,
    records: Sequence[Mapping[str, Any]] | None = None,
) -> str:
    """One CSV line per person and frame (header :func:`csv_header`), ordered by frame then track id.

    Pixels as in the tracks document; ``*_score`` are the raw heatmap maxima (as in the JSONL), ``score``
    the rescored person score. With ``records`` people no confirmed track holds are included with an empty
    ``track_id``; ``time_s`` is empty where the frame has no timestamp.
    """
    validate(tracks_doc, "tracks", label="tracks document")
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_header(tracks_doc["keypoint_names"]))
    for row in iter_people(tracks_doc, use=use, records=records):
        writer.writerow(_csv_row(row, threshold))
    return buf.getvalue()


def write_csv(path: str | Path, tracks_doc: Mapping[str, Any], **kwargs: Any) -> Path:
    """Write :func:`to_csv` atomically to ``path``; returns the path."""
    p = Path(path)
    write_text_atomic(p, to_csv(tracks_doc, **kwargs))
    return p
