"""The last stage of a pipeline: results routed by ``source_id`` to that source's outputs.

:class:`SinkRouter` opens a source's outputs when its :class:`~hrstream.runtime.markers.SourceStarted` arrives,
writes each of its results there, records its live events (gaps, reconnects...) in order with its frames, and
closes its outputs when its :class:`~hrstream.runtime.markers.SourceEnded` arrives (after every one of its
frames), then reports how it ended (:class:`~hrstream.types.SourceResult`). It counts what it writes in the
source's :class:`~hrstream.runtime.counters.SourceCounters` (frames out, latency, events), which every report
reads. Outputs that cannot be created or written fail their own source only: it is told to stop reading, its
files are closed, the others go on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from hrstream.errors import HrstreamError
from hrstream.outputs.segments import SourceOutputs
from hrstream.runtime.counters import RunCounters, SourceCounters
from hrstream.runtime.markers import LiveEvent, Marker, SourceEnded, SourceStarted
from hrstream.types import FrameResult, SourceResult, SourceStatus

__all__ = ["SinkRouter", "live_summary"]

log = logging.getLogger(__name__)


def live_summary(snapshot: dict[str, Any], *, gave_up: bool) -> dict[str, Any]:
    """What a live source's result (and its manifest entry) says of it, from its counters' snapshot."""
    return {
        "gaps": snapshot["gaps"],
        "gap_s": snapshot["gap_s"],
        "reconnects": snapshot["reconnects"],
        "resolution_changes": snapshot["resolution_changes"],
        "segments": snapshot["segments"],
        "state": "gave_up" if gave_up else "ended",
    }


class SinkRouter:
    """The sink stage: routes results by ``source_id``.

    Args:
        open_outputs: ``open_outputs(info, counters) -> SourceOutputs`` for a source that started (``info``: its
            :class:`~hrstream.io.SourceInfo`); raises ``OSError`` or an ``HrstreamError`` when its files cannot
            be created.
        counters: the run's counters (a source's are made by its decode thread; made here if not).
        on_done: called with each source's result when it ended (from the sink thread).
        on_written: ``on_written(source_id, frames_written)`` after each frame (progress displays).
        stop_source: ``stop_source(source_id)`` asks a source to stop reading (its outputs failed).
        forward: also hands every written result to this callable (:func:`hrstream.stream`'s queue).
    """

    def __init__(
        self,
        open_outputs: Callable[[Any, SourceCounters], SourceOutputs],
        *,
        counters: RunCounters,
        on_done: Callable[[SourceResult], None],
        on_written: Callable[[str, int], None] | None = None,
        stop_source: Callable[[str], None] | None = None,
        forward: Callable[[FrameResult], None] | None = None,
    ) -> None:
        self.open_outputs = open_outputs
        self.counters = counters
        self.on_done = on_done
        self.on_written = on_written
        self.stop_source = stop_source
        self.forward = forward
        self._outputs: dict[str, SourceOutputs] = {}  # every started source's outputs, until it ends
        self._failed: dict[str, str] = {}  # sources whose outputs failed (closed already) -> the error
        self._display: dict[str, str] = {}
        self._live: dict[str, bool] = {}

    def on_marker(self, marker: Marker) -> None:
        if isinstance(marker, SourceStarted):
            self._start(marker)
        elif isinstance(marker, LiveEvent):
            self._event(marker)
        elif isinstance(marker, SourceEnded):
            self._end(marker)

    def _counters(self, sid: str) -> SourceCounters:
        return self.counters.source(sid, live=self._live.get(sid, False))

    def _start(self, m: SourceStarted) -> None:
        sid = m.source_id
        self._display[sid] = str(getattr(m.info, "path", sid))
        self._live[sid] = bool(getattr(m.info, "is_live", False))
        try:
            self._outputs[sid] = self.open_outputs(m.info, self._counters(sid))
        except (OSError, HrstreamError) as e:
            self._fail(sid, f"{self._display[sid]}: cannot create its outputs ({_reason(e)})")

    def _event(self, m: LiveEvent) -> None:
        sid = m.source_id
        self._counters(sid).event(m.kind, m.fields)
        outputs = self._outputs.get(sid)
        if outputs is not None and sid not in self._failed:
            try:
                outputs.event(m.kind, m.fields)
            except (OSError, HrstreamError) as e:
                self._fail(sid, _failed_writing(self._display.get(sid, sid), outputs, e))

    def _fail(self, sid: str, message: str) -> None:
        log.error("%s", message)
        self._failed[sid] = message
        outputs = self._outputs.get(sid)
        if outputs is not None:
            self._close(sid, outputs, failed=True)
        if self.stop_source is not None:
            self.stop_source(sid)

    def _close(self, sid: str, outputs: SourceOutputs, *, failed: bool = False) -> str | None:
        """Close a source's outputs; the error line when that fails (logged, unless the source ``failed``
        already: its one line says why, and a full disk fails the closing too)."""
        try:
            outputs.close()
        except Exception as e:  # a file that cannot be finished fails this source only
            where = _in(outputs)
            message = f"{self._display.get(sid, sid)}: closing its outputs{where} failed ({_reason(e)})"
            (log.debug if failed else log.error)("%s", message)
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
                self._fail(sid, _failed_writing(self._display.get(sid, sid), outputs, e))
                return
        counters = self._counters(sid)
        counters.written(result.frame.captured_at)
        if self.on_written is not None:
            self.on_written(sid, counters.frames_out)
        if self.forward is not None:
            self.forward(result)

    def _end(self, m: SourceEnded) -> None:
        sid = m.source_id
        outputs = self._outputs.pop(sid, None)
        error = self._failed.pop(sid, None)
        if error is None and outputs is not None:
            error = self._close(sid, outputs)
        status: SourceStatus = "ok"
        if error is not None or m.status == "failed":
            status, error = "failed", error or m.error
        elif m.status == "interrupted":
            status = "interrupted"
        display = self._display.pop(sid, sid)
        snap = self._counters(sid).snapshot()  # its end state is the decode thread's (runtime.feeder)
        if m.truncated and error is None:
            error = f"{display}: file ended early; decoded {snap['frames_out']} frames"
        result = SourceResult(
            display,
            status,
            name=sid,
            frames=snap["frames_out"],
            drops=snap["drops"],
            truncated=m.truncated,
            error=error,
            outputs={} if outputs is None else {k: str(v) for k, v in outputs.paths.items()},
            elapsed_s=0.0 if outputs is None else time.monotonic() - outputs.started,
            warnings=m.warnings,
            gave_up=m.gave_up,
            live=live_summary(snap, gave_up=m.gave_up) if self._live.pop(sid, False) else None,
        )
        self.on_done(result)

    def close(self) -> None:
        """Close the outputs of sources that never ended (the run was stopped or aborted): ``interrupted``."""
        for sid in list(self._outputs):
            self._end(SourceEnded(sid, "interrupted"))


def _reason(e: BaseException) -> str:
    """The cause in a few words: an OS error's text (with the file it names), else the error's message."""
    if isinstance(e, OSError) and e.strerror:
        return f"{e.filename}: {e.strerror}" if e.filename else e.strerror
    return str(e)


def _in(outputs: SourceOutputs) -> str:
    """`` in FOLDER``: where a source's files are (nothing before the first was opened)."""
    folders = {p.parent for p in outputs.paths.values()}
    return f" in {folders.pop()}" if len(folders) == 1 else ""


def _failed_writing(display: str, outputs: SourceOutputs, e: BaseException) -> str:
    return f"{display}: writing its outputs{_in(outputs)} failed ({_reason(e)})"
