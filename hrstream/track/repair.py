"""Offline repair of finished tracks (files): cut tracks where they pass from one person to another, and join
the pieces that are one person, by the colour of their clothing.

An online tracker decides on every frame with what it has seen so far: when two people cross, or one leaves
as another arrives close by, a track can pass to the wrong person, and a person hidden too long comes back
under a new ID. Once a whole file has been tracked, each track's clothing can be compared over its whole
length, as offline multi-object trackers re-associate tracklets (the tracklet re-linking of StrongSORT++ and
of the offline MOT literature), here with the colour histogram of :mod:`hrstream.track.appearance`:

1. **Cut**: along a track, the mean histogram of up to ``window`` clear views before each point is compared
   with the mean of the ``window`` after it; where the Bhattacharyya distance peaks above ``cut_distance``,
   the track is cut (at the largest jump of its box between those two views) and both halves are examined
   again.
2. **Join**: a piece that ends is joined to a piece that starts after it, up to ``max_gap_s`` later, when
   their clothing at the meeting ends lies within ``join_distance`` and the person could have walked the
   distance (``max_speed`` box heights per second, plus half a box height). Ends and starts are paired one to
   one by :func:`scipy.optimize.linear_sum_assignment` on the distance.

Only *clear views* count: frames on which the person's box overlaps no other tracked box (IoU < 0.1), so the
histogram holds their own clothing. Pieces with fewer than ``min_views`` clear views at an end are not joined
there, and stretches with fewer than ``min_views`` on a side are not cut.

Tracks are the per-track dicts of an ``hrstream.tracks`` document: parallel per-frame lists ``frames``
(decode indices, increasing), ``boxes`` (xyxy, pixels: x right, y down), and any other per-frame lists
(``times``, ``keypoints``, ``scores``, ...), all carried along.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from hrstream.track.appearance import histogram_distance, mean_histogram
from hrstream.track.geometry import box_iou

__all__ = ["ONLINE_IDS", "RepairParams", "repair_tracks", "within_reach"]

log = logging.getLogger(__name__)

#: The per-frame list added to repaired tracks: the online tracker's ID on each frame.
ONLINE_IDS = "online_ids"


@dataclass(frozen=True)
class RepairParams:
    """How :func:`repair_tracks` cuts and joins (distances are Bhattacharyya, 0 same, 1 disjoint).

    Attributes:
        cut_distance: a track is cut where its clothing before and after differs by more than this.
        join_distance: two pieces are joined when their clothing differs by at most this.
        window: clear views averaged on each side of a cut, and at each end of a piece.
        min_views: fewer clear views than this on a side: no cut there, no join at that end.
        max_gap_s: longest time between the end of a piece and the start of the piece it joins.
        max_speed: box heights per second a person may move while unseen (plus half a height).
    """

    cut_distance: float = 0.8
    join_distance: float = 0.5
    window: int = 10
    min_views: int = 3
    max_gap_s: float = 4.0
    max_speed: float = 2.0


@dataclass
class _Piece:
    """Rows ``lo..hi`` (inclusive) of track ``src``."""

    src: int
    lo: int
    hi: int


def within_reach(box_a: np.ndarray, box_b: np.ndarray, gap_s: float, max_speed: float) -> bool:
    """Could a person seen in ``box_a`` be in ``box_b`` ``gap_s`` seconds later (xyxy boxes)? Their centres
    may lie ``max_speed * gap_s + 0.5`` box heights apart (the smaller of the two heights, at least 1 px)."""
    height = max(min(box_a[3] - box_a[1], box_b[3] - box_b[1]), 1.0)
    ca = np.array([(box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2])
    cb = np.array([(box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2])
    return bool(np.linalg.norm(cb - ca) <= (max_speed * gap_s + 0.5) * height)


def _box_jump(boxes: np.ndarray) -> np.ndarray:
    """``(n-1,)`` ``1 - IoU`` between consecutive boxes ``(n, 4)``."""
    return 1.0 - np.diag(box_iou(boxes[:-1], boxes[1:]))


def _cut(
    boxes: np.ndarray, views: list[tuple[int, np.ndarray]], lo: int, hi: int, p: RepairParams
) -> list[tuple[int, int]]:
    """Rows ``lo..hi`` of one track cut where the clothing changes: ``[(lo, hi), ...]``."""
    obs = [(r, h) for r, h in views if lo <= r <= hi]
    n = len(obs)
    best_d, best_k = -1.0, -1
    for k in range(p.min_views - 1, n - p.min_views):
        before = mean_histogram([h for _, h in obs[max(0, k - p.window + 1) : k + 1]])
        after = mean_histogram([h for _, h in obs[k + 1 : k + 1 + p.window]])
        d = histogram_distance(before, after)
        if d > best_d:
            best_d, best_k = d, k
    if best_k < 0 or best_d <= p.cut_distance:
        return [(lo, hi)]
    r0, r1 = obs[best_k][0], obs[best_k + 1][0]
    at = r0 + 1 + int(np.argmax(_box_jump(boxes[r0 : r1 + 1])))  # first row of the second half
    return _cut(boxes, views, lo, at - 1, p) + _cut(boxes, views, at, hi, p)


def repair_tracks(
    tracks: list[dict[str, Any]],
    clear_views: dict[tuple[int, int], np.ndarray],
    fps: float,
    params: RepairParams | None = None,
) -> list[dict[str, Any]]:
    """Cut and join ``tracks`` by clothing (see the module docstring).

    Args:
        tracks: per-track dicts with ``track_id``, ``frames`` and ``boxes``; not modified.
        clear_views: ``(track_id, frame) -> (D,)`` clothing histogram of that track on that frame, for the
            frames on which it overlapped no other track
            (:func:`hrstream.track.appearance.clear_view_histograms`).
        fps: frames per second (turns ``max_gap_s`` and ``max_speed`` into frames).
        params: thresholds; the defaults when ``None``.

    Returns:
        New track dicts ordered by ``track_id``, each with an ``online_ids`` list (the online tracker's ID on
        each frame). A joined track keeps the ID of its first piece unless an earlier track took it; pieces
        that need a new ID get the next free one.
    """
    p = params or RepairParams()
    tracks = [t for t in tracks if t.get("frames")]
    if not tracks:
        return []
    boxes = [np.asarray(t["boxes"], np.float64).reshape(-1, 4) for t in tracks]
    pieces: list[_Piece] = []
    views_of: list[list[tuple[int, np.ndarray]]] = []
    for i, t in enumerate(tracks):
        tid = int(t["track_id"])
        views = [
            (r, clear_views[(tid, int(f))]) for r, f in enumerate(t["frames"]) if (tid, int(f)) in clear_views
        ]
        views_of.append(views)
        pieces += [_Piece(i, lo, hi) for lo, hi in _cut(boxes[i], views, 0, len(t["frames"]) - 1, p)]
    n_cuts = len(pieces) - len(tracks)

    def end_facts(pc: _Piece, last: bool) -> tuple[int, np.ndarray, np.ndarray | None]:
        row = pc.hi if last else pc.lo
        obs = [h for r, h in views_of[pc.src] if pc.lo <= r <= pc.hi]
        obs = obs[-p.window :] if last else obs[: p.window]
        hist = mean_histogram(obs) if len(obs) >= p.min_views else None
        return int(tracks[pc.src]["frames"][row]), boxes[pc.src][row], hist

    ends = [end_facts(pc, True) for pc in pieces]
    starts = [end_facts(pc, False) for pc in pieces]
    max_gap = p.max_gap_s * fps
    cost = np.full((len(pieces), len(pieces)), np.inf)
    for a, (fa, box_a, hist_a) in enumerate(ends):
        if hist_a is None:
            continue
        for b, (fb, box_b, hist_b) in enumerate(starts):
            gap = fb - fa
            if hist_b is None or gap <= 0 or gap > max_gap:
                continue
            if not within_reach(box_a, box_b, gap / fps, p.max_speed):
                continue
            d = histogram_distance(hist_a, hist_b)
            if d <= p.join_distance:
                cost[a, b] = d
    successor: dict[int, int] = {}
    if np.isfinite(cost).any():
        rows, cols = linear_sum_assignment(np.where(np.isfinite(cost), cost, 1e6))
        successor = {int(r): int(c) for r, c in zip(rows, cols, strict=True) if np.isfinite(cost[r, c])}
    has_pred = set(successor.values())
    chains = []
    for i in range(len(pieces)):
        if i not in has_pred:
            chain = [i]
            while chain[-1] in successor:
                chain.append(successor[chain[-1]])
            chains.append(chain)
    chains.sort(key=lambda ch: int(tracks[pieces[ch[0]].src]["frames"][pieces[ch[0]].lo]))
    if n_cuts or successor:
        log.info("track repair: %d cuts, %d joins", n_cuts, len(successor))
    used: set[int] = set()
    next_id = max(int(t["track_id"]) for t in tracks) + 1
    out = []
    for chain in chains:
        tid = int(tracks[pieces[chain[0]].src]["track_id"])
        if tid in used:
            tid, next_id = next_id, next_id + 1
        used.add(tid)
        out.append(_assemble(tracks, [pieces[i] for i in chain], tid))
    return sorted(out, key=lambda t: int(t["track_id"]))


def _assemble(tracks: list[dict[str, Any]], chain: list[_Piece], track_id: int) -> dict[str, Any]:
    """One track from pieces in time order: every per-frame list concatenated, ``online_ids`` added."""
    first = tracks[chain[0].src]
    n0 = len(first["frames"])
    doc: dict[str, Any] = {"track_id": track_id}
    keys = [k for k, v in first.items() if isinstance(v, list) and len(v) == n0 and k != ONLINE_IDS]
    for key in keys:
        doc[key] = [x for pc in chain for x in tracks[pc.src][key][pc.lo : pc.hi + 1]]
    doc[ONLINE_IDS] = [
        x
        for pc in chain
        for x in (
            tracks[pc.src].get(ONLINE_IDS)
            or [int(tracks[pc.src]["track_id"])] * len(tracks[pc.src]["frames"])
        )[pc.lo : pc.hi + 1]
    ]
    return doc
