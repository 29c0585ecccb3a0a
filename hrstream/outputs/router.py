"""The last stage of a many-source pipeline: results routed by ``source_id`` to that source's outputs.

:class:`SinkRouter` opens a source's outputs when its :class:`~hrstream.runtime.markers.SourceStarted` arrives,
writes each of its results there, and closes them when its :class:`~hrstream.runtime.markers.SourceEnded`
arrives (after every one of its frames), then reports the source's outcome (:class:`SourceReport`). Outputs
that cannot be created or written fail their own source only: it is told to stop reading, its files are
closed, the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from hrstream.errors import HrstreamError
from hrstream.outputs.segments import SourceOutputs
from hrstream.runs.monitor import RunMonitor
from hrstream.runtime.markers import LiveEvent, Marker, SourceEnded, SourceStarted
from hrstream.types import FrameResult

__all__ = ["SinkRouter", "SourceReport"]

log = logging.getLogger(__name__)

Status = Literal["ok", "failed", "interrupted"]


@dataclass
class SourceReport:
    """How one source of a run ended: ``status`` ``ok`` / ``failed`` / ``interrupted``, ``frames`` written,
    live ``drops``, ``outputs`` (kind -> path: the last segment's), ``error`` (one line naming the input),
    ``gave_up`` (a live source that reached its reconnect limit), ``events`` (live events by kind: gaps,
    reconnects, resolution changes) and ``gap_s`` (their total length), ``segments`` written."""

    source_id: str
    status: Status
    frames: int = 0
    drops: int = 0
    truncated: bool = False
    error: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    warnings: tuple[str, ...] = ()
    gave_up: bool = False
    events: dict[str, int] = field(default_factory=dict)
    gap_s: float = 0.0
    segments: int = 0


class SinkRouter:
    """The sink stage: routes results by ``source_id``.

    Args:
        open_outputs: ``open_outputs(info) -> SourceOutputs`` for a source that started (``info`` its
            :class:`~hrstream.io.SourceInfo`); raises ``OSError`` or an ``HrstreamError`` when its files
            cannot be created.
        on_done: called with each source's :class:`SourceReport` when it ended (from the sink thread).
        stop_source: ``stop_source(source_id)`` asks a source to stop reading (its outputs failed).
        forward: also hands every written result to this callable (:func:`hrstream.stream`'s queue).
        monitor: told of each source's start, results, events and end (:class:`~hrstream.runs.monitor.RunMonitor`).
    """

    def __init__(
        self,
        open_outputs: Callable[[Any], SourceOutputs],
        *,
        on_done: Callable[[SourceReport], None],
        stop_source: Callable[[str], None] | None = None,
        forward: Callable[[FrameResult], None] | None = None,
        monitor: RunMonitor | None = None,
    ) -> None:
        self.open_outputs = open_outputs
        self.monitor = monitor
        self.on_done = on_done
        self.stop_source = stop_source
        self.forward = forward
        self._outputs: dict[str, SourceOutputs] = {}  # every started source's outputs, until it ends
        self._failed: dict[str, str] = {}  # sources whose outputs failed (closed already) -> the error
        self._display: dict[str, str] = {}
        self._events: dict[str, dict[str, int]] = {}
        self._gap_s: dict[str, float] = {}

    def on_marker(self, marker: Marker) -> None:
        if isinstance(marker, SourceStarted):
            self._start(marker)
        elif isinstance(marker, LiveEvent):
            self._event(marker)
        elif isinstance(marker, SourceEnded):
            self._end(marker)

    def _event(self, m: LiveEvent) -> None:
        sid = m.source_id
        if self.monitor is not None:
            self.monitor.event(sid, m.kind, m.fields)
        counts = self._events.setdefault(sid, {})
        counts[m.kind] = counts.get(m.kind, 0) + 1
        if m.kind == "gap":
            self._gap_s[sid] = self._gap_s.get(sid, 0.0) + float(m.fields.get("duration_s", 0.0))
        outputs = self._outputs.get(sid)
        if outputs is not None and sid not in self._failed:
            try:
                outputs.event(m.kind, m.fields)
            except (OSError, HrstreamError) as e:
                reason = getattr(e, "strerror", None) or str(e)
                self._fail(sid, f"{self._display.get(sid, sid)}: writing its outputs failed ({reason})")

    def _start(self, m: SourceStarted) -> None:
        sid = m.source_id
        self._display[sid] = str(getattr(m.info, "path", sid))
        if self.monitor is not None:
            self.monitor.started(sid, live=bool(getattr(m.info, "is_live", False)))
        try:
            self._outputs[sid] = self.open_outputs(m.info)
        except (OSError, HrstreamError) as e:
            reason = getattr(e, "strerror", None) or str(e)
            self._fail(sid, f"{self._display[sid]}: cannot create its outputs ({reason})")

    def _fail(self, sid: str, message: str) -> None:
        log.error("%s", message)
        self._failed[sid] = message
        outputs = self._outputs.get(sid)
        if outputs is not None:
            self._close(sid, outputs)
        if self.stop_source is not None:
            self.stop_source(sid)

    def _close(self, sid: str, outputs: SourceOutputs) -> str | None:
        try:
            outputs.close()
        except Exception as e:  # a file that cannot be finished fails this source only
            message = f"{self._display.get(sid, sid)}: closing its outputs failed ({e})"
            log.error("%s", message)
            return message
        return None

    def write(self, result: FrameResult) -> None:
        sid = result.frame.source_id
        if sid in self._failed:
            return  # frames still in flight after its outputs failed
        outputs = self._outputs.get(sid)
        if outputs is not None:
            try:
                outputs.write(result)
            except (OSError, HrstreamError) as e:
                reason = getattr(e, "strerror", None) or str(e)
                self._fail(sid, f"{self._display.get(sid, sid)}: writing its outputs failed ({reason})")
                return
        if self.monitor is not None:
            self.monitor.written(result)
        if self.forward is not None:
            self.forward(result)

    def _end(self, m: SourceEnded) -> None:
        sid = m.source_id
        if self.monitor is not None:
            self.monitor.ended(sid, gave_up=m.gave_up, drops=m.drops)
        outputs = self._outputs.pop(sid, None)
        error = self._failed.pop(sid, None)
        if error is None and outputs is not None:
            error = self._close(sid, outputs)
        status: Status = "ok"
        if error is not None or m.status == "failed":
            status, error = "failed", error or m.error
        elif m.status == "interrupted":
            status = "interrupted"
        display = self._display.pop(sid, sid)
        report = SourceReport(
            sid,
            status,
            frames=0 if outputs is None else outputs.frames,
            drops=m.drops,
            truncated=m.truncated,
            error=error,
            outputs={} if outputs is None else {k: str(v) for k, v in outputs.paths.items()},
            elapsed_s=0.0 if outputs is None else time.monotonic() - outputs.started,
            warnings=m.warnings,
            gave_up=m.gave_up,
            events=self._events.pop(sid, {}),
            gap_s=self._gap_s.pop(sid, 0.0),
            segments=0 if outputs is None else outputs.segments,
        )
        if m.truncated and report.error is None:
            report.error = f"{display}: file ended early; decoded {report.frames} frames"
        self.on_done(report)

    def close(self) -> None:
        """Close the outputs of sources that never ended (the run was stopped or aborted): ``interrupted``."""
        for sid in list(self._outputs):
            self._end(SourceEnded(sid, "interrupted"))
