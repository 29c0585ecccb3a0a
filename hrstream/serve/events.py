"""Events for the rest of a system: people in view per source, and each track's appearance and departure.

:class:`TrackEvents` follows the confirmed tracks of each source in its results (on the pipeline's sink thread:
cheap, no drawing) and publishes to an :class:`EventBus`:

* ``people`` (at most every ``people_every_s`` per source): ``{"type": "people", "source", "time", "count",
  "people": [{"track_id", "box", "score"}]}``;
* ``appeared``: a track seen for the first time: ``{"type": "appeared", "source", "track_id", "time", "box"}``;
* ``left``: a track not seen for ``left_after_s``, or its source ended: ``{"type": "left", "source",
  "track_id", "first", "last", "box"}`` (``box``: where it was last seen);
* ``source``: a source's state changed (``live``, ``reconnecting``, ``gave_up``, ``stopped``...; ``removed``
  when it left the service).

A track leaves when its source delivers frames without it for ``left_after_s``, when its source delivers no
frame at all for that long (a camera that went down: :meth:`TrackEvents.sweep`, called every half second by the
service) and when its source ends. Times are wall-clock seconds (a live frame's capture time). Subscribers
(MQTT, the page's event stream) each get a bounded queue: a slow one loses its oldest events (counted in
``dropped``), never the pipeline's time. A subscriber reads from a thread (:meth:`Subscription.get`) or from an
event loop (:meth:`Subscription.aget`, which holds no thread while it waits).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from hrstream.types import FrameResult

__all__ = ["EventBus", "Subscription", "TrackEvents"]


class Subscription:
    """One subscriber's bounded queue of events."""

    def __init__(self, bus: EventBus, size: int) -> None:
        self._bus = bus
        self._queue: queue.Queue[dict[str, Any]] = queue.Queue(size)
        self.dropped = 0
        self._waker: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None  # an aget() waiting

    def put(self, event: dict[str, Any]) -> None:
        while True:
            try:
                self._queue.put_nowait(event)
                break
            except queue.Full:
                try:
                    self._queue.get_nowait()  # the oldest goes
                    self.dropped += 1
                except queue.Empty:
                    pass
        waker = self._waker
        if waker is not None:
            with contextlib.suppress(RuntimeError):  # its loop has closed
                waker[0].call_soon_threadsafe(waker[1].set)

    def get(self, timeout: float | None = None) -> dict[str, Any] | None:
        """The next event, or ``None`` after ``timeout`` seconds without one."""
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    async def aget(self, timeout: float) -> dict[str, Any] | None:
        """The next event, or ``None`` after ``timeout`` seconds without one, awaited in an event loop (no
        thread is held while it waits)."""
        if self._waker is None:
            self._waker = (asyncio.get_running_loop(), asyncio.Event())
        wake = self._waker[1]
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            wake.clear()
            try:
                return self._queue.get_nowait()
            except queue.Empty:
                pass
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), left)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        while True:
            event = self.get()
            if event is not None:
                yield event

    def close(self) -> None:
        self._bus.unsubscribe(self)


class EventBus:
    """Fans events out to every subscriber's bounded queue."""

    def __init__(self) -> None:
        self._subs: list[Subscription] = []
        self._lock = threading.Lock()

    def subscribe(self, size: int = 1000) -> Subscription:
        sub = Subscription(self, size)
        with self._lock:
            self._subs.append(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    @property
    def subscribers(self) -> int:
        with self._lock:
            return len(self._subs)

    def publish(self, event: dict[str, Any]) -> None:
        with self._lock:
            subs = list(self._subs)
        for sub in subs:
            sub.put(event)


@dataclass
class _Track:
    first: float
    last: float
    box: list[float]


@dataclass
class _Source:
    tracks: dict[int, _Track] = field(default_factory=dict)
    last_people: float = 0.0
    last_result: float = 0.0  # when its latest result came (this process's wall clock)


class TrackEvents:
    """Turns a service's results into events (see the module docstring). Thread-safe: results come from the
    pipeline's sink thread, sweeps from the service's watch thread, reads from the HTTP server."""

    def __init__(self, bus: EventBus, *, people_every_s: float = 1.0, left_after_s: float = 2.0) -> None:
        if people_every_s <= 0 or left_after_s <= 0:
            raise ValueError("people_every_s and left_after_s must be > 0")
        self.bus = bus
        self.people_every_s = float(people_every_s)
        self.left_after_s = float(left_after_s)
        self._sources: dict[str, _Source] = {}
        self._lock = threading.Lock()

    def result(self, result: FrameResult) -> None:
        """One written result (the sink thread)."""
        frame = result.frame
        now = frame.captured_at if frame.captured_at is not None else time.time()
        people = result.poses.tracked() if result.poses is not None else None
        seen: dict[int, list[float]] = {}
        if people is not None and people.track_ids is not None:
            for tid, box in zip(people.track_ids.tolist(), people.boxes.tolist(), strict=True):
                seen[int(tid)] = [round(float(v), 1) for v in box]
        with self._lock:
            self._result(frame.source_id, now, people, seen)

    def _result(self, source: str, now: float, people: Any, seen: dict[int, list[float]]) -> None:
        src = self._sources.setdefault(source, _Source())
        src.last_result = time.time()
        for tid, box in seen.items():
            track = src.tracks.get(tid)
            if track is None:
                src.tracks[tid] = _Track(now, now, box)
                self.bus.publish(
                    {"type": "appeared", "source": source, "track_id": tid, "time": now, "box": box}
                )
            else:
                track.last, track.box = now, box
        for tid in [t for t, tr in src.tracks.items() if t not in seen and now - tr.last > self.left_after_s]:
            self._left(source, tid, src.tracks.pop(tid))
        if now - src.last_people >= self.people_every_s:
            src.last_people = now
            listed = []
            if people is not None and people.track_ids is not None:
                listed = [
                    {"track_id": int(tid), "box": seen[int(tid)], "score": round(float(s), 3)}
                    for tid, s in zip(people.track_ids.tolist(), people.box_scores.tolist(), strict=True)
                ]
            self.bus.publish(
                {"type": "people", "source": source, "time": now, "count": len(listed), "people": listed}
            )

    def sweep(self, now: float | None = None) -> None:
        """The tracks of a source that delivered no result for ``left_after_s`` leave (a camera that went
        down: its people left its view). A source whose results still come is left to :meth:`result`, so a
        pipeline running late does not make people leave and come back."""
        now = time.time() if now is None else now
        with self._lock:
            for source, src in self._sources.items():
                if src.tracks and now - src.last_result > self.left_after_s:
                    for tid, track in sorted(src.tracks.items()):
                        self._left(source, tid, track)
                    src.tracks.clear()

    def current(self, source: str) -> list[dict[str, Any]]:
        """The tracks of ``source`` in view now: ``track_id``, ``first`` and ``last`` seen, ``box``."""
        with self._lock:
            src = self._sources.get(source)
            if src is None:
                return []
            return [
                {"track_id": tid, "first": tr.first, "last": tr.last, "box": list(tr.box)}
                for tid, tr in sorted(src.tracks.items())
            ]

    def sources(self) -> list[str]:
        """The sources followed now (for tests and the soak: nothing is kept for a source that ended)."""
        with self._lock:
            return list(self._sources)

    def ended(self, source: str) -> None:
        """A source ended (removed, stopped): its tracks left."""
        with self._lock:
            src = self._sources.pop(source, None)
            if src is not None:
                for tid, track in src.tracks.items():
                    self._left(source, tid, track)

    def state(self, source: str, state: str) -> None:
        self.bus.publish({"type": "source", "source": source, "state": state, "time": time.time()})

    def _left(self, source: str, tid: int, track: _Track) -> None:
        self.bus.publish(
            {
                "type": "left",
                "source": source,
                "track_id": tid,
                "first": track.first,
                "last": track.last,
                "box": track.box,
            }
        )
