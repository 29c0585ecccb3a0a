"""Grouping of items into batches by total weight, with a deadline for partial batches.

A pose pipeline batches person crops, not frames: a frame with 5 people weighs 5. :class:`Batcher` holds
that logic without threads or queues, so it can be tested and reused; the batch stage of
:class:`~hrstream.runtime.stages.Pipeline` drives it with a clock and a queue.

Rules:

* a batch holds items in arrival order and at most ``max_batch`` total weight;
* an item that would overflow the pending batch first flushes it, then starts the next one;
* an item heavier than ``max_batch`` on its own goes out alone (the caller splits it further if needed);
* ``max_wait_s`` after the **first** item of a batch, the batch is due even if not full;
* at end of stream :meth:`Batcher.flush` returns the remainder.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

__all__ = ["Batcher"]


class Batcher:
    """Accumulates items into batches (plain lists, arrival order).

    Args:
        max_batch: most total weight per batch, >= 1.
        max_wait_s: most seconds between the first item of a batch and the batch being due, >= 0.
        weight: ``weight(item) -> int >= 0``; default 1 per item.
        clock: a monotonic clock in seconds (injectable for tests).
    """

    def __init__(
        self,
        max_batch: int,
        max_wait_s: float,
        *,
        weight: Callable[[Any], int] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self.max_batch = int(max_batch)
        self.max_wait_s = float(max_wait_s)
        self._weight = weight
        self._clock = clock
        self._items: list[Any] = []
        self._total = 0
        self._first_at: float | None = None

    def __len__(self) -> int:
        """Items pending in the open batch."""
        return len(self._items)

    @property
    def pending_weight(self) -> int:
        """Total weight of the open batch."""
        return self._total

    @property
    def deadline(self) -> float | None:
        """Clock time at which the open batch is due, or ``None`` when nothing is pending."""
        return None if self._first_at is None else self._first_at + self.max_wait_s

    def add(self, item: Any) -> list[list[Any]]:
        """Add one item; returns the batches completed by it (0, 1 or 2 lists), oldest first."""
        w = 1 if self._weight is None else int(self._weight(item))
        if w < 0:
            raise ValueError(f"item weight must be >= 0, got {w}")
        out: list[list[Any]] = []
        if self._items and self._total + w > self.max_batch:
            out.append(self._take())
        if not self._items:
            self._first_at = self._clock()
        self._items.append(item)
        self._total += w
        if self._total >= self.max_batch:
            out.append(self._take())
        return out

    def poll(self) -> list[Any] | None:
        """The open batch if its deadline has passed, else ``None``."""
        dl = self.deadline
        if dl is not None and self._clock() >= dl:
            return self._take()
        return None

    def flush(self) -> list[Any] | None:
        """The open batch whatever its state (end of stream), or ``None`` when empty."""
        return self._take() if self._items else None

    def _take(self) -> list[Any]:
        items, self._items = self._items, []
        self._total = 0
        self._first_at = None
        return items
