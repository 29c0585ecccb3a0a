"""What happens to a source's finished tracks before the tracks document is written.

:func:`finish_tracks` takes the tracks as the online pipeline reported them (per track: frames, times,
boxes, raw and smoothed keypoints) and, as the recipe asks, repairs identities with the whole video in view
(:func:`hrstream.track.repair.repair_tracks`, by clothing colour) and adds the offline Savitzky-Golay
keypoints (``smoothed_offline``, :func:`hrstream.track.savgol.savgol_smooth_track`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import numpy as np

from hrstream.track.repair import ONLINE_IDS, RepairParams, repair_tracks
from hrstream.track.savgol import savgol_smooth_track

__all__ = ["TRACK_LISTS", "finish_tracks"]

log = logging.getLogger(__name__)

#: The per-frame lists of a track in the tracks document (``hrstream/schemas/tracks.schema.json``).
TRACK_LISTS = ("frames", "times", "boxes", "box_scores", "keypoints", "scores", "smoothed")


def finish_tracks(
    tracks: list[dict[str, Any]],
    *,
    views: Mapping[tuple[int, int], np.ndarray] | None = None,
    fps: float = 0.0,
    repair: RepairParams | None = None,
    savgol_window_s: float | None = None,
) -> list[dict[str, Any]]:
    """The tracks of the document.

    Args:
        tracks: ``{"track_id": id, **lists}`` with the :data:`TRACK_LISTS` (pixels: x right, y down, pixel
            centres at integers; times in seconds), plus per-frame ``online_ids`` when ``repair`` is given.
        views: ``(track_id, frame) -> float32 (D,)`` clear-view torso histograms (needed by ``repair``).
        fps: the video's frame rate (the repair measures gaps in frames).
        repair: cut and join identities by clothing (``None``: the tracks stay as reported).
        savgol_window_s: add ``smoothed_offline`` (Savitzky-Golay over this window) to tracks of 3 frames or
            more with known times; ``None``: off.

    A repair that fails is logged and the tracks are written as reported online (by their ``online_ids``).
    """
    if repair is not None and fps > 0:
        try:
            tracks = repair_tracks(tracks, dict(views or {}), fps, repair)
        except Exception as e:  # the tracks as reported online are still worth writing
            log.warning(
                "track repair failed (%s: %s); the tracks document keeps the IDs reported online",
                type(e).__name__,
                e,
            )
            tracks = _by_online_ids(tracks)
    out = []
    for doc in tracks:
        times = np.asarray([np.nan if t is None else t for t in doc["times"]], np.float64)
        if savgol_window_s and len(times) >= 3 and np.all(np.isfinite(times)):
            sg = savgol_smooth_track(
                times,
                np.asarray(doc["keypoints"], np.float32),
                np.asarray(doc["scores"], np.float32),
                window_s=savgol_window_s,
            )
            doc["smoothed_offline"] = np.round(sg.astype(np.float64), 2).tolist()
        out.append(doc)
    return out


def _by_online_ids(tracks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Tracks regrouped by the IDs reported online (their per-frame ``online_ids``), in frame order."""
    rows: dict[int, list[tuple[int, dict[str, Any], int]]] = {}
    for tr in tracks:
        for j, (f, oid) in enumerate(zip(tr["frames"], tr[ONLINE_IDS], strict=True)):
            rows.setdefault(int(oid), []).append((int(f), tr, j))
    out = []
    for oid in sorted(rows):
        rs = sorted(rows[oid], key=lambda r: r[0])
        out.append({"track_id": oid, **{k: [r[1][k][r[2]] for r in rs] for k in (*TRACK_LISTS, ONLINE_IDS)}})
    return out
