"""A source's outputs, segment by segment.

A file source writes one set of files (``NAME.mp4``, ``NAME.jsonl``, ...) unless asked to cut them. A live
source writes segments, each a complete set of files of its own named with the time its first frame was
captured (UTC, ``NAME_20261207T001500Z.mp4``, ``.jsonl``, ``.tracks.json``): every ``segment_s`` seconds (600
by default), and whenever the frame size changes (a camera reconfigured: the video goes on at the new size
in a new segment). Nothing of a segment is kept in memory once it is closed, so a run of weeks holds only the
current segment's tracks; ``keep_segments`` deletes the oldest segments' files beyond that many.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hrstream.io import SourceInfo
from hrstream.outputs.sinks import OutputsSpec, SegmentContext, Sink, sink_factories
from hrstream.runtime.counters import SourceCounters
from hrstream.types import FrameResult

__all__ = ["DEFAULT_LIVE_SEGMENT_S", "SourceOutputs", "open_source_outputs", "segment_label", "segment_sinks"]

log = logging.getLogger(__name__)

#: Segment length of live sources when the recipe does not say (``sinks.segment_s: null``).
DEFAULT_LIVE_SEGMENT_S = 600.0

#: ``open_segment(label, width, height) -> {kind: sink}``: the files of one segment (``label`` ``None``: the
#: plain ``NAME.*`` files of an unsegmented source), for frames of ``width x height``.
OpenSegment = Callable[[str | None, int, int], dict[str, Sink]]


class FanOut:
    """Writes each result to every sink; ``close()`` closes them all, then raises the first error (if any)."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.closed = False

    def write(self, result: FrameResult) -> None:
        for s in self.sinks:
            s.write(result)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        for s in self.sinks:
            s.event(kind, fields)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        errors: list[BaseException] = []
        for s in self.sinks:
            try:
                s.close()
            except Exception as e:  # close the others, then report
                errors.append(e)
        if errors:
            raise errors[0]


def segment_sinks(
    spec: OutputsSpec, info: SourceInfo, label: str | None, width: int, height: int
) -> dict[str, Sink]:
    """The sinks of one segment of a source (every registered kind that has something to write there), for
    frames of ``width x height``, named ``NAME`` or ``NAME_LABEL``."""
    ctx = SegmentContext(
        spec,
        dataclasses.replace(info, width=width, height=height),
        info.name if label is None else f"{info.name}_{label}",
        label,
    )
    sinks: dict[str, Sink] = {}
    try:
        for kind, factory in sink_factories().items():
            sink = factory(ctx)
            if sink is not None:
                sinks[kind] = sink
    except BaseException:
        FanOut(list(sinks.values())).close()  # what was opened already is closed, then the error goes up
        raise
    return sinks


def open_source_outputs(
    spec: OutputsSpec, info: SourceInfo, *, counters: SourceCounters | None = None
) -> SourceOutputs:
    """The outputs of one source, as the recipe's ``sinks`` section says: cut into segments for live sources
    (``sinks.segment_s``, 600 s by default) or when asked."""
    segment_s = spec.sinks.segment_s
    if segment_s is None and info.is_live:
        segment_s = DEFAULT_LIVE_SEGMENT_S
    return SourceOutputs(
        lambda label, width, height: segment_sinks(spec, info, label, width, height),
        live=info.is_live,
        segment_s=segment_s,
        keep_segments=spec.sinks.keep_segments,
        counters=counters,
    )


def segment_label(t: float, *, live: bool) -> str:
    """The name part of a segment starting at ``t``: UTC wall clock for live sources
    (``20261207T001500Z``), the stream time in whole seconds for files (``t000600``)."""
    if live:
        return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(t))
    return f"t{int(t):06d}"


class SourceOutputs:
    """The sinks of one source, written through a :class:`FanOut` per segment.

    Args:
        open_segment: makes a segment's sinks (each with a ``path``).
        live: a live source (segments named by the wall clock of their first frame, ``captured_at``).
        segment_s: cut a new segment this many seconds (of ``Frame.time``) after the current one began;
            ``None``: only at a frame size change.
        keep_segments: delete the oldest segments' files beyond this many (``None``: keep every one).
        counters: the source's counters (``segments`` counts the segments opened).
    """

    def __init__(
        self,
        open_segment: OpenSegment,
        *,
        live: bool = False,
        segment_s: float | None = None,
        keep_segments: int | None = None,
        counters: SourceCounters | None = None,
    ) -> None:
        self.open_segment = open_segment
        self.live = live
        self.segment_s = segment_s
        self.keep_segments = keep_segments
        self.counters = counters
        self.paths: dict[str, Path] = {}  # the current segment's files
        self.started = time.monotonic()
        self._opened = 0
        self._fan: FanOut | None = None
        self._start_t = 0.0
        self._size: tuple[int, int] | None = None
        self._labels: set[str] = set()
        self._kept: deque[dict[str, Path]] = deque()
        self._pending_events: list[tuple[str, dict[str, Any]]] = []

    @property
    def segments(self) -> int:
        """Segments opened so far."""
        return self._opened

    def _cut(self, result: FrameResult, size: tuple[int, int]) -> None:
        if self._fan is not None:
            self._fan.close()
            self._fan = None
        t = result.frame.time
        label = None
        if self.segment_s is not None or self._opened > 0:
            named_at = result.frame.captured_at if self.live and result.frame.captured_at is not None else t
            label = base = segment_label(named_at, live=self.live)
            k = 2
            while label in self._labels:  # two cuts within one second (a size change right after a cut)
                label, k = f"{base}_{k}", k + 1
            self._labels.add(label)
        sinks = self.open_segment(label, *size)
        self._fan = FanOut(list(sinks.values()))
        self.paths = {k: Path(s.path) for k, s in sinks.items() if s.path is not None}
        self._opened += 1
        if self.counters is not None:
            self.counters.segments = self._opened
        self._start_t, self._size = t, size
        if label is not None and self.paths:
            log.info("new segment: %s", next(iter(self.paths.values())))
        self._kept.append(dict(self.paths))
        if self.keep_segments is not None:
            while len(self._kept) > self.keep_segments:
                _delete(self._kept.popleft())
        for kind, fields in self._pending_events:
            self._fan.event(kind, fields)
        self._pending_events.clear()

    def write(self, result: FrameResult) -> None:
        t = result.frame.time
        size = (result.frame.width, result.frame.height)
        if (
            self._fan is None
            or size != self._size
            or (self.segment_s is not None and t - self._start_t >= self.segment_s)
        ):
            self._cut(result, size)
        assert self._fan is not None
        self._fan.write(result)

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """Record a live source's event (a gap, a reconnect, ...) in the current segment's files."""
        if self._fan is None:
            self._pending_events.append((kind, fields))
        else:
            self._fan.event(kind, fields)

    def close(self) -> None:
        if self._fan is not None:
            fan, self._fan = self._fan, None
            fan.close()


def _delete(paths: dict[str, Path]) -> None:
    for p in paths.values():
        try:
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        except OSError as e:  # a segment that cannot be removed is left for the user
            log.warning("%s: could not delete an old segment (%s)", p, e.strerror or e)
