"""Control items that flow in order with a source's items: a source started, a source ended.

A pipeline that serves many sources carries, per source, a :class:`SourceStarted` before its first frame and a
:class:`SourceEnded` after its last. Stages pass markers on in order (a stage with per-source state creates it on
``SourceStarted`` and drops it on ``SourceEnded``; a stage holding items back, such as a batcher or an
overlapped inference stage, first emits what it holds). The sink stage closes that source's outputs when its
``SourceEnded`` arrives, after every one of its frames was written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["EndStatus", "LiveEvent", "Marker", "SourceEnded", "SourceStarted"]

EndStatus = Literal["ended", "failed", "interrupted"]


class Marker:
    """Base class of control items; stages hand them to ``on_marker`` (when they have one) and pass them on."""

    source_id: str


@dataclass(frozen=True)
class SourceStarted(Marker):
    """Source ``source_id`` is open; ``info`` is its :class:`~hrstream.io.SourceInfo`."""

    source_id: str
    info: Any


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
        drops: live frames its input queue dropped.
        warnings: what the source reported on the way.
    """

    source_id: str
    status: EndStatus
    error: str | None = None
    started: bool = True
    gave_up: bool = False
    truncated: bool = False
    drops: int = 0
    warnings: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class LiveEvent(Marker):
    """Something that happened to live source ``source_id``, in order with its frames: ``kind`` is ``gap``,
    ``reconnect``, ``resolution`` or ``give_up`` and ``fields`` its facts (:class:`hrstream.io.SourceEvent`)."""

    source_id: str
    kind: str
    fields: dict[str, Any] = field(default_factory=dict)
