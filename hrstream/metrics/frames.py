"""Tracks documents as per-frame tables of people, and the per-frame matching of predictions to truth.

Both predictions (``hrstream run``) and synthetic ground truth (``hrstream synth``) are ``hrstream.tracks``
documents: per track, parallel per-frame lists ``frames``, ``boxes`` (xyxy), ``keypoints`` (raw network
output), ``smoothed`` (online smoother) and optionally ``smoothed_offline``. The truth adds a top-level
``visibility`` object keyed by the track id as a string: per frame ``K`` COCO flags (0 outside the frame,
1 occluded, 2 visible). Pixels: x right, y down, the centre of the top-left pixel at (0, 0).

Matching: per frame, predicted and true people are paired by the Hungarian algorithm
(:func:`scipy.optimize.linear_sum_assignment`) on box IoU, computed with :func:`pycocotools.mask.iou` on
xywh boxes; only pairs with IoU >= the threshold (0.5 by default, as in MOT benchmarks) count. Box IoU is
used rather than keypoint distance so that the matching does not depend on the keypoints being scored.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy.optimize import linear_sum_assignment

from hrstream.errors import InputError

__all__ = [
    "KEYPOINT_SOURCES",
    "FramePeople",
    "box_iou",
    "load_tracks_doc",
    "match_boxes",
    "people_by_frame",
]

log = logging.getLogger(__name__)

#: Name used in results -> key of the per-track keypoint list in a tracks document.
KEYPOINT_SOURCES: dict[str, str] = {"raw": "keypoints", "smoothed": "smoothed", "offline": "smoothed_offline"}


@dataclass
class FramePeople:
    """The people of one frame.

    Attributes:
        ids: ``int64 (n,)`` track ids.
        boxes: ``float64 (n, 4)`` xyxy boxes.
        keypoints: source name (``raw``, ``smoothed``, ``offline``) -> ``float64 (n, K, 2)`` (x, y).
        visibility: ``uint8 (n, K)`` COCO flags, or ``None`` (predictions).
    """

    ids: np.ndarray
    boxes: np.ndarray
    keypoints: dict[str, np.ndarray]
    visibility: np.ndarray | None

    def __len__(self) -> int:
        return int(self.ids.shape[0])


def load_tracks_doc(doc: dict[str, Any] | str | Path) -> dict[str, Any]:
    """A tracks document from a dict (returned as is after a check) or a ``NAME.tracks.json`` path."""
    if not isinstance(doc, dict):
        try:
            doc = json.loads(Path(doc).read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise InputError(f"{doc}: cannot read a tracks document ({e}); pass a NAME.tracks.json") from None
    if not isinstance(doc, dict) or doc.get("format") != "hrstream.tracks" or "tracks" not in doc:
        fmt = doc.get("format") if isinstance(doc, dict) else type(doc).__name__
        raise InputError(f"not an hrstream tracks document (format {fmt!r}); pass a NAME.tracks.json")
    return doc


def num_keypoints(doc: dict[str, Any]) -> int:
    """``K``: the length of ``keypoint_names`` (or of the first pose when the names are missing)."""
    names = doc.get("keypoint_names") or []
    if names:
        return len(names)
    for tr in doc["tracks"]:
        if tr.get("keypoints"):
            return len(tr["keypoints"][0])
    return 17


def people_by_frame(
    doc: dict[str, Any], sources: tuple[str, ...], *, truth: bool = False, identities: str = "tracks"
) -> dict[int, FramePeople]:
    """Regroup a tracks document by frame: ``{frame_index: FramePeople}`` (frames without people absent).

    ``sources``: which keypoint lists to load (names of :data:`KEYPOINT_SOURCES`); a source missing from a
    track raises :class:`InputError`. ``truth``: read the ``visibility`` object (when a truth document has
    none, keypoints with a positive score count as visible). ``identities="online"``: a person's ID is the
    track's per-frame ``online_ids`` entry where the track has them (repaired tracks), else its ``track_id``.
    """
    if identities not in ("tracks", "online"):
        raise InputError(f"identities={identities!r}: pick 'tracks' or 'online'")
    k = num_keypoints(doc)
    vis_doc = doc.get("visibility") or {}
    rows: dict[int, list[tuple[int, list, dict[str, list], list | None]]] = {}
    for tr in doc["tracks"]:
        tid = int(tr["track_id"])
        frames = tr["frames"]
        lists = {}
        for src in sources:
            key = KEYPOINT_SOURCES[src]
            if src == "offline" and key not in tr and "smoothed" in tr:
                key = "smoothed"  # tracks too short for the offline filter keep their online smoothing
            if key not in tr:
                hint = " (run with an offline Savitzky-Golay window)" if src == "offline" else ""
                raise InputError(f"track {tid} has no {key!r} keypoints{hint}; pick another keypoint source")
            lists[src] = tr[key]
        frame_ids = tr.get("online_ids") if identities == "online" else None
        if frame_ids is not None and len(frame_ids) != len(frames):
            raise InputError(f"track {tid}: {len(frame_ids)} online_ids for {len(frames)} frames")
        vis = None
        if truth:
            vis = vis_doc.get(str(tid))
            if vis is None:
                vis = [[2 if s > 0 else 0 for s in sc] for sc in tr["scores"]]
        for j, f in enumerate(frames):
            rows.setdefault(int(f), []).append(
                (
                    tid if frame_ids is None else int(frame_ids[j]),
                    tr["boxes"][j],
                    {s: v[j] for s, v in lists.items()},
                    None if vis is None else vis[j],
                )
            )
    out: dict[int, FramePeople] = {}
    for f, people in rows.items():
        n = len(people)
        kps = {s: np.asarray([p[2][s] for p in people], np.float64).reshape(n, k, 2) for s in sources}
        out[f] = FramePeople(
            ids=np.asarray([p[0] for p in people], np.int64),
            boxes=np.asarray([p[1] for p in people], np.float64).reshape(n, 4),
            keypoints=kps,
            visibility=None if not truth else np.asarray([p[3] for p in people], np.uint8).reshape(n, k),
        )
    return out


def box_iou(truth_xyxy: np.ndarray, pred_xyxy: np.ndarray) -> np.ndarray:
    """IoU ``float64 (n_truth, n_pred)`` of xyxy boxes, by :func:`pycocotools.mask.iou` on xywh boxes."""
    nt, npr = len(truth_xyxy), len(pred_xyxy)
    if nt == 0 or npr == 0:
        return np.zeros((nt, npr), np.float64)

    def xywh(b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, np.float64).reshape(-1, 4)
        return np.ascontiguousarray(np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], 1))

    # pycocotools.mask.iou(detections, ground_truths, iscrowd) -> (n_det, n_gt)
    iou = mask_utils.iou(xywh(pred_xyxy), xywh(truth_xyxy), [0] * nt)
    return np.asarray(iou, np.float64).reshape(npr, nt).T


def match_boxes(iou: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int]]:
    """Hungarian matching on ``iou (n_truth, n_pred)``: ``[(truth_index, pred_index)]`` with IoU >= threshold."""
    if iou.size == 0:
        return []
    cost = np.where(iou >= threshold, 1.0 - iou, 1e6)
    rows, cols = linear_sum_assignment(cost)
    return [(int(r), int(c)) for r, c in zip(rows, cols, strict=True) if iou[r, c] >= threshold]
