"""Decode threads: one per source, each feeding its own lane of a :class:`~hrstream.runtime.mux.SourceMux`.

:class:`SourceFeeder` opens and reads the sources of a run: every live source at once (a camera does not wait
for a file or for another camera), files ``streams`` at a time in their order. Sources may be added
(:meth:`SourceFeeder.add`) and removed (:meth:`SourceFeeder.remove`) while it runs; a run's feeder ends when
its sources ended and :meth:`SourceFeeder.close` said none will be added (a service's stays open). Each source runs in its own
thread: it opens the source (a live source may retry for as long as it is told to), puts
:class:`~hrstream.runtime.markers.SourceStarted`, then one :class:`~hrstream.types.FrameResult` per decoded
frame, then :class:`~hrstream.runtime.markers.SourceEnded` with how it ended. A source that cannot be opened,
fails or gives up ends only its own lane; the others go on. When every source has ended (or a stop request
ended them) the mux is closed, which ends the pipeline after it drained.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hrstream.errors import InputError, SourceGaveUp
from hrstream.runtime.counters import RunCounters, SourceCounters
from hrstream.runtime.markers import EndStatus, LiveEvent, SourceEnded, SourceStarted
from hrstream.runtime.mux import SourceMux
from hrstream.runtime.queues import QueueAborted, QueueClosed
from hrstream.types import FrameResult

__all__ = ["SourceFeeder", "SourceJob"]

log = logging.getLogger(__name__)

_NOTHING = object()  # no job came within the wait


@dataclass(frozen=True)
class SourceJob:
    """One source of a run.

    Attributes:
        source_id: its name in the run (``Frame.source_id``, output names).
        display: how messages name it (credentials redacted).
        live: a network stream or camera (its lane drops the oldest frame; it starts at once).
        open: ``open(stop) -> Source``; may retry until ``stop`` (a ``threading.Event``) is set; raises
            :class:`~hrstream.errors.InputError` when the source cannot be opened.
        options: per-source settings the stages read from its
            :class:`~hrstream.runtime.markers.SourceStarted` (``detect_every``).
    """

    source_id: str
    display: str
    live: bool
    open: Callable[[threading.Event], Any]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class _Reader:
    job: SourceJob
    counters: SourceCounters
    stop: threading.Event = field(default_factory=threading.Event)
    source: Any = None
    thread: threading.Thread | None = None
    gave_up: bool = False

    def interrupt(self) -> None:
        self.stop.set()
        interrupt = getattr(self.source, "interrupt", None)
        if callable(interrupt):
            interrupt()


class SourceFeeder:
    """Runs the decode threads of a run's sources into ``mux``.

    Args:
        mux: the pipeline's input.
        counters: where each source's frames in, drops and state are counted.
        streams: files decoded at a time (live sources always all run).
        file_buffer: frames a file's lane holds (its decode thread waits while it is full).
        live_buffer: frames a live lane holds before its oldest is dropped.
    """

    def __init__(
        self, mux: SourceMux, counters: RunCounters, *, streams: int, file_buffer: int, live_buffer: int
    ) -> None:
        if streams < 1:
            raise ValueError(f"streams must be >= 1, got {streams}")
        self.mux = mux
        self.counters = counters
        self.streams = int(streams)
        self.file_buffer = int(file_buffer)
        self.live_buffer = int(live_buffer)
        self._slots = threading.Semaphore(self.streams)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._readers: dict[str, _Reader] = {}  # the sources being read (dropped when they end)
        self._launched: set[str] = set()  # of a run; a feeder kept open forgets a source when it ends
        self._queued: Counter[str] = Counter()  # added, not launched yet
        self._cancelled: set[str] = set()  # removed while queued: launched stopped, so that it ends as usual
        self._keep_open = False
        self._jobs: queue.Queue[SourceJob | None] = queue.Queue()
        self._scheduler: threading.Thread | None = None
        self.not_started: list[SourceJob] = []

    def start(self, jobs: Sequence[SourceJob], *, keep_open: bool = False) -> None:
        """Start reading ``jobs`` (in a thread of its own; returns at once). ``keep_open``: more may be added
        until :meth:`close`; else the feeder ends with these."""
        ids = [j.source_id for j in jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("source ids of a run must be distinct")
        self._keep_open = keep_open
        for job in sorted(jobs, key=lambda j: not j.live):  # cameras first: they never wait
            self._queue(job)
        if not keep_open:
            self._jobs.put(None)
        self._scheduler = threading.Thread(target=self._schedule, name="hrstream-sources", daemon=True)
        self._scheduler.start()

    def add(self, job: SourceJob) -> None:
        """Read one more source (a live one starts at once; a file when a stream slot is free)."""
        self._queue(job)

    def _queue(self, job: SourceJob) -> None:
        with self._lock:
            self._queued[job.source_id] += 1
        self._jobs.put(job)

    def close(self) -> None:
        """No source will be added: the feeder ends once its sources ended."""
        self._jobs.put(None)

    def stop(self) -> None:
        """Stop intake: no further source is opened, every running one stops reading and ends its lane."""
        self._stop.set()
        self._jobs.put(None)
        with self._lock:
            readers = list(self._readers.values())
        for r in readers:
            r.interrupt()

    def remove(self, source_id: str) -> None:
        """Stop reading one source (removed, or its outputs failed); its lane ends, the others go on. A source
        added but not opened yet is stopped as soon as it is launched (it ends without a frame)."""
        with self._lock:
            reader = self._readers.get(source_id)
            if self._queued[source_id] > 0:
                self._cancelled.add(source_id)
        if reader is not None:
            reader.interrupt()

    def reading(self) -> set[str]:
        """The sources being read now (opened or being opened)."""
        with self._lock:
            return set(self._readers)

    def launched(self) -> set[str]:
        """The sources whose decode thread was started (not those a stop request kept from starting)."""
        with self._lock:
            return set(self._launched)

    def join(self, timeout: float | None = None) -> None:
        if self._scheduler is not None:
            self._scheduler.join(timeout)

    # -- threads -------------------------------------------------------------------------------------
    def _schedule(self) -> None:
        pending: deque[SourceJob] = deque()  # files waiting for a stream slot
        closing = False
        try:
            while not (closing and not pending):
                try:
                    job = self._jobs.get(timeout=0.1 if pending else None)
                except queue.Empty:
                    job = _NOTHING
                if job is None:
                    closing = True
                elif job is not _NOTHING:
                    if self._stop.is_set():
                        self.not_started.append(job)
                    elif job.live:
                        self._launch(job)
                    else:
                        pending.append(job)
                while pending and not self._stop.is_set() and self._slots.acquire(blocking=False):
                    self._launch(pending.popleft())
                if self._stop.is_set():
                    self.not_started.extend(pending)
                    pending.clear()
            while True:
                with self._lock:
                    readers = [r for r in self._readers.values() if r.thread is not None]
                if not readers:
                    break
                readers[0].thread.join()  # type: ignore[union-attr]
        finally:
            self.mux.seal()

    def _launch(self, job: SourceJob) -> None:
        reader = _Reader(job, self.counters.source(job.source_id, live=job.live))
        reader.counters.state_of, reader.counters.state = None, "connecting"  # also when it replaces one
        reader.thread = threading.Thread(
            target=self._read, args=(reader,), name=f"hrstream-decode:{job.source_id}", daemon=True
        )
        with self._lock:
            self._readers[job.source_id] = reader
            self._launched.add(job.source_id)
            self._queued[job.source_id] -= 1
            if self._queued[job.source_id] <= 0:
                del self._queued[job.source_id]
            cancelled = job.source_id in self._cancelled
            self._cancelled.discard(job.source_id)
        if self._stop.is_set() or cancelled:
            reader.stop.set()
        reader.thread.start()

    def _read(self, reader: _Reader) -> None:
        job, sid = reader.job, reader.job.source_id
        status: EndStatus = "ended"
        error: str | None = None
        started = False
        try:
            try:
                reader.source = job.open(reader.stop)
            except InputError as e:
                status, error = ("interrupted" if reader.stop.is_set() else "failed"), str(e)
                reader.gave_up = isinstance(e, SourceGaveUp)
                return
            if reader.stop.is_set():
                reader.interrupt()
            maxsize = self.live_buffer if job.live else self.file_buffer
            counters = reader.counters
            self.mux.add(sid, maxsize=maxsize, leaky=job.live, counters=counters, stop=reader.stop)
            self.mux.put(sid, SourceStarted(sid, reader.source.info, dict(job.options)))
            started = True
            counters.state = "connected" if job.live else "reading"
            if hasattr(reader.source, "state"):
                counters.state_of = lambda src=reader.source: src.state
            for frame in reader.source:
                if reader.stop.is_set():
                    break
                self._events(reader)  # a gap, a reconnect, a new size: before the frame that follows it
                self.mux.put(sid, FrameResult(frame))
                counters.frames_in += 1
            if reader.stop.is_set():
                status = "interrupted"
        except (QueueAborted, QueueClosed):
            status = "interrupted"
        except InputError as e:  # a live source that gave up, a stream that broke
            status, error = "failed", str(e)
            reader.gave_up = isinstance(e, SourceGaveUp)
        except Exception as e:  # a decoder failure costs this source only
            log.exception("%s: reading failed", job.display)
            status, error = "failed", f"{job.display}: reading failed ({type(e).__name__}: {e})"
        finally:
            self._finish(reader, status, error, started)

    def _events(self, reader: _Reader) -> None:
        take = getattr(reader.source, "take_events", None)
        if take is not None:
            for ev in take():
                self.mux.put(reader.job.source_id, LiveEvent(reader.job.source_id, ev.kind, dict(ev.fields)))

    def _finish(self, reader: _Reader, status: EndStatus, error: str | None, started: bool) -> None:
        job, sid, src = reader.job, reader.job.source_id, reader.source
        truncated, warnings = False, ()
        if started:
            with contextlib.suppress(QueueAborted, QueueClosed):
                self._events(reader)  # a give-up
        if src is not None:
            truncated = bool(getattr(src, "truncated", False))
            try:
                src.close()
            except Exception:  # closing a broken stream must not hide how it ended
                log.debug("%s: close failed", job.display, exc_info=True)
            warnings = tuple(getattr(src, "warnings", ()))
        if error is not None:
            (log.error if status == "failed" else log.warning)("%s", error)
        with self._lock:
            current = self._readers.get(sid) is reader  # not replaced by a source added again under its name
        if current:  # the one place a source's end state is set
            reader.counters.state_of = None
            reader.counters.state = (
                "gave_up" if reader.gave_up else ("stopped" if status == "interrupted" else "ended")
            )
        marker = SourceEnded(
            sid,
            status,
            error=error,
            started=started,
            gave_up=reader.gave_up,
            truncated=truncated,
            warnings=warnings,
        )
        self.mux.end(sid, marker)
        with self._lock:
            if self._readers.get(sid) is reader:
                del self._readers[sid]
                if self._keep_open:
                    self._launched.discard(sid)
        if not job.live:
            self._slots.release()
