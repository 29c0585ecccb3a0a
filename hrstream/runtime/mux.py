"""Many sources into one pipeline: a bounded input queue per source, read fairly by one consumer.

:class:`SourceMux` holds one lane per source. Producers (one decode thread per source) put into their own lane:
a **file** lane blocks its producer while full (backpressure, nothing lost); a **live** lane never blocks and
drops its oldest frame, counting the drop, so a fast camera fills only its own lane and cannot starve a slow
one. The consumer (the pipeline's first stage) takes from the lanes in turn (round robin over the lanes that
hold something) and never waits for a lane that has nothing to give.

Markers (:mod:`hrstream.runtime.markers`) are never dropped and never block; a lane ends with :meth:`end`.
The mux ends (``get`` raises :class:`~hrstream.runtime.queues.QueueClosed`) once :meth:`seal` said no lane will
be added and every lane has ended and drained. :meth:`close` (the consumer is gone) wakes every producer.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from hrstream.runtime.counters import SourceCounters
from hrstream.runtime.markers import Marker
from hrstream.runtime.queues import QueueAborted, QueueClosed, QueueStats

__all__ = ["LaneStats", "SourceMux"]


@dataclass(frozen=True)
class LaneStats:
    """A snapshot of one source's input queue."""

    source_id: str
    maxsize: int
    leaky: bool
    depth: int
    max_depth: int
    puts: int


@dataclass(eq=False)
class _Lane:
    source_id: str
    maxsize: int
    leaky: bool
    counters: SourceCounters | None = None
    items: deque[Any] = field(default_factory=deque)
    ended: bool = False
    puts: int = 0
    max_depth: int = 0
    unreported_drops: int = 0  # dropped since the last item taken: added to that item's dropped_before

    def frames(self) -> int:
        return sum(1 for it in self.items if not isinstance(it, Marker))


class SourceMux:
    """Per-source bounded lanes with a fair single consumer; safe for many producers.

    The consumer side is also an iterator (``for item in mux``), which is how a
    :class:`~hrstream.runtime.stages.Pipeline` source stage reads it. An item taken from a live lane that
    dropped items since the previous take gets their number added to its ``dropped_before`` attribute (when
    it has one), so the drop is reported with the next frame that got through.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._lanes: dict[str, _Lane] = {}
        self._turn: deque[str] = deque()  # round-robin order of the lanes
        self._sealed = False
        self._aborted = False

    # -- producers -----------------------------------------------------------------------------------
    def add(
        self,
        source_id: str,
        *,
        maxsize: int,
        leaky: bool,
        counters: SourceCounters | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        """Open a lane for ``source_id`` holding at most ``maxsize`` frames; its drops are counted in
        ``counters.drops`` too (the run's one count of them). A source added again under the same name waits
        until its earlier lane has ended and drained (or ``stop`` is set: :class:`QueueClosed`)."""
        if maxsize < 1:
            raise ValueError(f"lane '{source_id}': maxsize must be >= 1, got {maxsize}")
        with self._cond:
            while source_id in self._lanes:
                if self._aborted or (stop is not None and stop.is_set()):
                    raise QueueClosed(source_id)
                self._cond.wait(0.1)  # the earlier lane of this name is still ending or draining
            if self._aborted:
                raise QueueAborted(source_id)
            if self._sealed:
                raise QueueClosed(source_id)
            self._lanes[source_id] = _Lane(source_id, int(maxsize), bool(leaky), counters)
            self._turn.append(source_id)

    def put(self, source_id: str, item: Any, timeout: float | None = None) -> None:
        """Append ``item`` to its lane. A full file lane blocks; a full live lane drops its oldest frame.

        Raises:
            queue.Full: ``timeout`` passed with a file lane still full.
            QueueAborted: the mux was aborted.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            lane = self._lanes[source_id]
            if lane.ended:
                raise QueueClosed(source_id)
            if not isinstance(item, Marker):
                while lane.frames() >= lane.maxsize:
                    if self._aborted:
                        raise QueueAborted(source_id)
                    if lane.leaky:
                        self._drop_oldest(lane)
                        continue
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise queue.Full
                    self._cond.wait(remaining)
                    lane = self._lanes[source_id]
            if self._aborted:
                raise QueueAborted(source_id)
            lane.items.append(item)
            lane.puts += 1
            lane.max_depth = max(lane.max_depth, len(lane.items))
            self._cond.notify_all()

    def _drop_oldest(self, lane: _Lane) -> None:
        for i, it in enumerate(lane.items):
            if not isinstance(it, Marker):
                del lane.items[i]
                lane.unreported_drops += 1
                if lane.counters is not None:
                    lane.counters.drops += 1
                return

    def end(self, source_id: str, marker: Marker | None = None) -> None:
        """Close ``source_id``'s lane after ``marker`` (never dropped, never blocks); the consumer drains it."""
        with self._cond:
            lane = self._lanes.get(source_id)
            if lane is None:  # ended before it ever got a lane (it could not be opened)
                lane = _Lane(source_id, 1, False)
                self._lanes[source_id] = lane
                self._turn.append(source_id)
            if marker is not None:
                lane.items.append(marker)
            lane.ended = True
            self._cond.notify_all()

    def seal(self) -> None:
        """No lane will be added any more: the consumer ends once every lane has ended and drained."""
        with self._cond:
            self._sealed = True
            self._cond.notify_all()

    def close(self) -> None:
        """The consumer stops reading (a pipeline's source stage ended or was aborted): what is queued is
        dropped and producers still putting get :class:`QueueAborted`, so their threads end."""
        self.abort()

    def abort(self) -> None:
        """Drop everything and wake everyone; later calls raise :class:`QueueAborted`."""
        with self._cond:
            self._aborted = True
            for lane in self._lanes.values():
                lane.items.clear()
            self._cond.notify_all()

    # -- consumer ------------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """The next item, taking lanes in turn.

        Raises:
            queue.Empty: ``timeout`` passed with nothing to take.
            QueueClosed: closed, and every lane ended and drained.
            QueueAborted: aborted.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._aborted:
                    raise QueueAborted("sources")
                for _ in range(len(self._turn)):
                    sid = self._turn[0]
                    self._turn.rotate(-1)
                    lane = self._lanes[sid]
                    if lane.items:
                        return self._take(lane)
                    if lane.ended:  # drained and ended: forget it
                        self._turn.remove(sid)
                        del self._lanes[sid]
                        self._cond.notify_all()  # a source added again under this name may open its lane
                if self._sealed and not self._lanes:
                    raise QueueClosed("sources")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._cond.wait(remaining)

    def _take(self, lane: _Lane) -> Any:
        item = lane.items.popleft()
        if lane.unreported_drops and not isinstance(item, Marker) and hasattr(item, "dropped_before"):
            item.dropped_before += lane.unreported_drops
            lane.unreported_drops = 0
        self._cond.notify_all()  # a producer may wait for room
        return item

    def __iter__(self) -> SourceMux:
        return self

    def __next__(self) -> Any:
        try:
            return self.get()
        except QueueClosed:
            raise StopIteration from None

    # -- inspection ----------------------------------------------------------------------------------
    def summary(self) -> QueueStats:
        """Every lane together, as a pipeline stage's output queue (``sources``) is reported."""
        lanes = self.stats()
        return QueueStats(
            "sources",
            sum(lane.maxsize for lane in lanes),
            sum(lane.depth for lane in lanes),
            max((lane.max_depth for lane in lanes), default=0),
            sum(lane.puts for lane in lanes),
        )

    def stats(self) -> list[LaneStats]:
        """A snapshot of every lane, readable from any thread."""
        with self._lock:
            return [
                LaneStats(
                    lane.source_id,
                    lane.maxsize,
                    lane.leaky,
                    len(lane.items),
                    lane.max_depth,
                    lane.puts,
                )
                for lane in self._lanes.values()
            ]
