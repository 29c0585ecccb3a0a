"""Identity repair while frames pass (live streams, the JSONL and the video): the causal counterpart of
:mod:`hrstream.track.repair`.

:class:`OnlineRelabel` sits after the tracker and renames its IDs, frame by frame, with what has been seen so
far, by the colour of the torso on frames where a person stands clear of everyone else
(:func:`hrstream.track.appearance.clear_view_histograms`):

* **cut**: when a track's last ``min_views`` clear views all differ from the mean of its views before (and
  their mean does too) by more than ``cut_distance``, the tracker has passed the track to another person:
  from this frame on it reports a new ID.
* **join**: when a new track (or one just cut) has its first ``min_views`` clear views, it takes over the ID
  of a person last seen before it began, at most ``max_gap_s`` earlier, within walking distance
  (``max_speed`` box heights per second, plus half a height), whose clothing lies within ``join_distance``
  (the closest such person). A track still alive that held that ID reports a new one if it comes back.

A decision needs ``min_views`` clear views, so an ID changes a few frames after the event; the frames before
keep what was reported. Memory is bounded: per person the last ``window`` views; people unseen for longer than
``max_gap_s`` are forgotten unless a live track holds them, and tracks unseen for a minute.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from hrstream.track.appearance import histogram_distance, mean_histogram
from hrstream.track.repair import RepairParams, within_reach
from hrstream.types import Poses

__all__ = ["OnlineRelabel"]

log = logging.getLogger(__name__)

#: Tracks unseen for this long are forgotten (the tracker removed them long before).
_FORGET_TRACK_S = 60.0


@dataclass
class _Person:
    """An output identity: its recent clear views and where it was last seen."""

    views: deque[np.ndarray]
    last_t: float
    last_box: np.ndarray
    holder: int  # the tracker ID reporting it now (or last)


@dataclass
class _RelabelledTrack:
    """What the relabeller knows of one tracker track."""

    out_id: int
    born_t: float
    born_box: np.ndarray
    last_t: float
    views: deque[np.ndarray]
    odd: list[np.ndarray] = field(default_factory=list)
    decided: bool = False  # the join test ran (once per new or cut track)


class OnlineRelabel:
    """Rename a tracker's IDs by clothing, causally (see the module docstring).

    Args:
        params: the thresholds shared with the offline repair (``cut_distance``, ``join_distance``,
            ``window``, ``min_views``, ``max_gap_s``, ``max_speed``); the defaults when ``None``.
    """

    def __init__(self, params: RepairParams | None = None) -> None:
        self.params = params or RepairParams()
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new video): IDs restart at 1."""
        self._tracks: dict[int, _RelabelledTrack] = {}
        self._people: dict[int, _Person] = {}
        self._next_id = 1

    def _new_person(self, tid: int, t: float, box: np.ndarray, views: list[np.ndarray]) -> int:
        out = self._next_id
        self._next_id += 1
        self._people[out] = _Person(deque(views, maxlen=self.params.window), t, box, tid)
        return out

    def update(self, poses: Poses, *, t: float, views: list[np.ndarray | None]) -> Poses:
        """The tracker's output for one frame with its IDs renamed.

        Args:
            poses: people with ``track_ids`` (the tracker's; entries < 0 are left as they are).
            t: frame time in seconds (increasing).
            views: per person, the clear-view histogram or ``None``
                (:func:`hrstream.track.appearance.clear_view_histograms` over the tracked people).

        Returns:
            A copy of ``poses`` whose ``track_ids`` are the repaired IDs and ``tracker_ids`` the tracker's.
        """
        p = self.params
        out = poses[np.arange(len(poses))]
        if poses.track_ids is None or len(poses) == 0:
            self._forget(t)
            return out
        if len(views) != len(poses):
            raise ValueError(f"OnlineRelabel.update: {len(views)} views for {len(poses)} people")
        ids = np.asarray(poses.track_ids, np.int64)
        sel = np.flatnonzero(ids >= 0)
        new_ids = ids.copy()
        for i in sel.tolist():
            h = views[i]
            tid, box = int(ids[i]), poses.boxes[i].astype(np.float64)
            st = self._tracks.get(tid)
            if st is None or self._people.get(st.out_id) is None or self._people[st.out_id].holder != tid:
                # a new track, or one whose person was taken over while it was away: a new person
                decided = st is not None
                st = _RelabelledTrack(self._new_person(tid, t, box, []), t, box, t, deque(maxlen=p.window))
                st.decided = decided
                self._tracks[tid] = st
            st.last_t = t
            if h is not None:
                self._add_view(tid, st, h, t, box)
            person = self._people[st.out_id]
            person.last_t, person.last_box = t, box
            if not st.decided and len(st.views) >= p.min_views:
                st.decided = True
                self._join(tid, st, t, box)
            new_ids[i] = st.out_id
        out.track_ids = new_ids
        out.tracker_ids = ids
        self._forget(t)
        return out

    def _add_view(self, tid: int, st: _RelabelledTrack, h: np.ndarray, t: float, box: np.ndarray) -> None:
        p = self.params
        if len(st.views) >= p.min_views and histogram_distance(mean_histogram(st.views), h) > p.cut_distance:
            st.odd.append(h)
            if (
                len(st.odd) >= p.min_views
                and histogram_distance(mean_histogram(st.views), mean_histogram(st.odd)) > p.cut_distance
            ):
                log.debug("relabel: track %d passed to another person at t=%.2f s", tid, t)
                st.out_id = self._new_person(tid, t, box, st.odd)
                st.views = deque(st.odd, maxlen=p.window)
                st.odd = []
                st.born_t, st.born_box, st.decided = t, box, False
            return
        st.views.append(h)
        st.odd = []
        self._people[st.out_id].views.append(h)

    def _join(self, tid: int, st: _RelabelledTrack, t: float, box: np.ndarray) -> None:
        """Give ``st`` the ID of the person it most likely is, if any (see the module docstring)."""
        p = self.params
        mine = mean_histogram(st.views)
        best, best_d = None, p.join_distance
        for out_id, person in self._people.items():
            gap = st.born_t - person.last_t
            if out_id == st.out_id or len(person.views) < p.min_views or not 0 < gap <= p.max_gap_s:
                continue
            if not within_reach(person.last_box, st.born_box, gap, p.max_speed):
                continue
            d = histogram_distance(mean_histogram(person.views), mine)
            if d <= best_d:
                best, best_d = out_id, d
        if best is None:
            return
        log.debug("relabel: track %d is person %d again (distance %.2f)", tid, best, best_d)
        mine_person = self._people.pop(st.out_id)
        person = self._people[best]
        person.views.extend(mine_person.views)
        person.holder, person.last_t, person.last_box = tid, t, box
        st.out_id = best

    def _forget(self, t: float) -> None:
        p = self.params
        self._tracks = {k: s for k, s in self._tracks.items() if t - s.last_t <= _FORGET_TRACK_S}
        held = {s.out_id for s in self._tracks.values()}
        self._people = {k: v for k, v in self._people.items() if k in held or t - v.last_t <= p.max_gap_s}
