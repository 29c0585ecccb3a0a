"""Bounded queues that can be closed (end of stream) and aborted (tear-down).

:class:`BoundedQueue` joins the stages of a :class:`~hrstream.runtime.stages.Pipeline`: it blocks producers
while full (backpressure, nothing is ever lost; live sources drop their oldest frames earlier, in their own
input lanes: :class:`~hrstream.runtime.mux.SourceMux`) and wakes every blocked thread promptly on
:meth:`BoundedQueue.abort`, so no stage can wait forever on a neighbour that died. Timeouts raise the standard library's :class:`queue.Full` / :class:`queue.Empty`.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundedQueue", "QueueAborted", "QueueClosed", "QueueStats"]


class QueueClosed(Exception):
    """End of stream: ``get`` on a closed, drained queue, or ``put`` on a closed queue."""


class QueueAborted(Exception):
    """The queue was aborted; whoever waits on it should stop at once."""


@dataclass(frozen=True)
class QueueStats:
    """A snapshot of a queue: current and highest depth, items put."""

    name: str
    maxsize: int
    depth: int
    max_depth: int
    puts: int


class BoundedQueue:
    """A FIFO of at most ``maxsize`` items, closable and abortable, safe for many producers and consumers.

    Args:
        maxsize: capacity, >= 1.
        name: shown in stats and logs.
    """

    def __init__(self, maxsize: int, *, name: str = "queue") -> None:
        if maxsize < 1:
            raise ValueError(f"queue '{name}': maxsize must be >= 1, got {maxsize}")
        self.maxsize = int(maxsize)
        self.name = name
        self._items: deque[Any] = deque()
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._not_full = threading.Condition(self._lock)
        self._closed = False
        self._aborted = False
        self._max_depth = 0
        self._puts = 0

    # -- producer side -------------------------------------------------------------------------------
    def put(self, item: Any, timeout: float | None = None) -> None:
        """Append ``item``, blocking while the queue is full.

        Raises:
            queue.Full: ``timeout`` seconds passed and the queue is still full.
            QueueClosed: the queue was closed.
            QueueAborted: the queue was aborted (also raised to a producer already waiting).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_full:
            while True:
                self._check_open()
                if len(self._items) < self.maxsize:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Full
                self._not_full.wait(remaining)
            self._append(item)

    def _append(self, item: Any) -> None:
        self._items.append(item)
        self._puts += 1
        self._max_depth = max(self._max_depth, len(self._items))
        self._not_empty.notify()

    def _check_open(self) -> None:
        if self._aborted:
            raise QueueAborted(self.name)
        if self._closed:
            raise QueueClosed(self.name)

    def close(self) -> None:
        """Mark the end of the stream: consumers drain what is queued, then ``get`` raises QueueClosed."""
        with self._lock:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def abort(self) -> None:
        """Drop everything and wake all waiters; every later ``put``/``get`` raises QueueAborted."""
        with self._lock:
            self._aborted = True
            self._items.clear()
            self._not_empty.notify_all()
            self._not_full.notify_all()

    # -- consumer side -------------------------------------------------------------------------------
    def get(self, timeout: float | None = None) -> Any:
        """Remove and return the oldest item, blocking while the queue is empty.

        Raises:
            queue.Empty: ``timeout`` seconds passed with nothing to get.
            QueueClosed: the queue is closed and drained (end of stream).
            QueueAborted: the queue was aborted.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._not_empty:
            while not self._items:
                if self._aborted:
                    raise QueueAborted(self.name)
                if self._closed:
                    raise QueueClosed(self.name)
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise queue.Empty
                self._not_empty.wait(remaining)
            if self._aborted:
                raise QueueAborted(self.name)
            item = self._items.popleft()
            self._not_full.notify()
            return item

    # -- inspection ----------------------------------------------------------------------------------
    def qsize(self) -> int:
        """Items queued now."""
        with self._lock:
            return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def aborted(self) -> bool:
        return self._aborted

    def stats(self) -> QueueStats:
        """A consistent snapshot, readable from any thread at any time."""
        with self._lock:
            return QueueStats(self.name, self.maxsize, len(self._items), self._max_depth, self._puts)

    def __repr__(self) -> str:
        s = self.stats()
        return f"{type(self).__name__}({self.name!r}, depth={s.depth}/{s.maxsize})"
