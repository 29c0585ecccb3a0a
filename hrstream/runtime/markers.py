"""Control items that flow in order with a source's items: a source started, a source ended.

A pipeline that serves many sources carries, per source, a :class:`SourceStarted` before its first frame and a
:class:`SourceEnded` after its last. Stages pass markers on in order (a stage with per-source state creates it on
``SourceStarted`` and drops it on ``SourceEnded``; a stage holding items back, such as a batcher or an
overlapped inference stage, first emits what it holds). The sink stage closes that source's outputs when its
``SourceEnded`` arrives, after every one of its frames was written.

:class:`PerSource` and :class:`SharedPerSource` hold a stage's per-source state along these markers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

__all__ = ["EndStatus", "LiveEvent", "Marker", "PerSource", "SharedPerSource", "SourceEnded", "SourceStarted"]

S = TypeVar("S")

EndStatus = Literal["ended", "failed", "interrupted"]


class Marker:
    """Base class of control items; stages hand them to ``on_marker`` (when they have one) and pass them on."""

    source_id: str


@dataclass(frozen=True)
class SourceStarted(Marker):
    """Source ``source_id`` is open; ``info`` is its :class:`~hrstream.io.SourceInfo`, ``options`` its own
    settings (``detect_every``...)."""

    source_id: str
    info: Any
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SourceEnded(Marker):
    """Source ``source_id`` delivers nothing more.

    Attributes:
        status: ``"ended"`` (end of file, or a live stream that ended), ``"failed"`` (could not be opened, or
            read errors / gave up; ``error`` says why), ``"interrupted"`` (a stop request ended it).
        error: one line naming the input, or ``None``.
        started: whether a :class:`SourceStarted` went before (``False``: it never opened).
        gave_up: a live source that reached its reconnect limit (``--max-reconnects``).
        truncated: a file that ended before its declared duration.
        warnings: what the source reported on the way.
    """

    source_id: str
    status: EndStatus
    error: str | None = None
    started: bool = True
    gave_up: bool = False
    truncated: bool = False
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class LiveEvent(Marker):
    """Something that happened to live source ``source_id``, in order with its frames: ``kind`` is ``gap``,
    ``reconnect``, ``resolution`` or ``give_up`` and ``fields`` its facts (:class:`hrstream.io.SourceEvent`)."""

    source_id: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)


class PerSource(Generic[S]):
    """Per-source state of one stage: ``make(info)`` on a source's
    :class:`~hrstream.runtime.markers.SourceStarted` (``info``: its :class:`~hrstream.io.SourceInfo`), dropped
    at its :class:`~hrstream.runtime.markers.SourceEnded`. Used from the stage's one thread only."""

    def __init__(self, make: Callable[[Any], S]) -> None:
        self._make = make
        self._states: dict[str, S] = {}

    def on_marker(self, marker: Marker) -> None:
        if isinstance(marker, SourceStarted):
            self._states[marker.source_id] = self._make(marker.info)
        elif isinstance(marker, SourceEnded):
            self._states.pop(marker.source_id, None)

    def __getitem__(self, source_id: str) -> S:
        return self._states[source_id]

    def __len__(self) -> int:
        return len(self._states)


class SharedPerSource(Generic[S]):
    """Per-source state that two stages share (the detect stage reads a source's tracker, the track stage
    updates it). The first stage to see a source's start makes its state; the stage that uses it last (the
    ``owner``, later in the pipeline) makes it afresh at the source's start and drops it at its end, after
    every one of its frames passed; the other stage reads :meth:`get` (``None`` while there is none)."""

    def __init__(self, make: Callable[[Any], S]) -> None:
        self._make = make
        self._states: dict[str, S] = {}
        self._lock = threading.Lock()

    def on_marker(self, marker: Marker, *, owner: bool) -> None:
        with self._lock:
            if isinstance(marker, SourceStarted) and (owner or marker.source_id not in self._states):
                self._states[marker.source_id] = self._make(marker.info)
            elif isinstance(marker, SourceEnded) and owner:
                self._states.pop(marker.source_id, None)

    def get(self, source_id: str) -> S | None:
        with self._lock:
            return self._states.get(source_id)
