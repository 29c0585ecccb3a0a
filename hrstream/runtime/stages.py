"""A linear pipeline of named stages, one thread each, joined by bounded queues.

Build one with chained calls, then :meth:`Pipeline.run` it in the calling thread::

    stats = (
        Pipeline("pose")
        .source("decode", frames, queue_size=8)
        .map("detect", detector_stage)
        .batch("batch", max_batch=16, max_wait_s=0.02, weight=lambda f: len(f.boxes))
        .map("infer", infer_batch, many=True)
        .sink("write", writer)
        .run(grace_s=10)
    )

Guarantees:

* every stage closes its output queue in a ``finally`` (the end-of-stream marker always arrives);
* an exception in any stage aborts all stages (blocked threads wake) and ``run`` raises
  :class:`~hrstream.errors.StageError` naming the stage, with the original exception as ``cause``;
* :meth:`Pipeline.request_stop` stops intake: the source reads no more, in-flight items drain, every
  stage's ``finish``/``close`` runs; ``run(grace_s=...)`` aborts if draining takes longer than ``grace_s``
  and returns once the sink closed, not waiting for a stage busy in a long call (:func:`left_running`);
* :meth:`Pipeline.abort` stops at once, dropping queued items (``close`` of stages and sinks still runs);
* markers (:mod:`hrstream.runtime.markers`: a source started / ended) pass every stage in order with the items
  around them: a map stage's ``on_marker(marker)`` (when it has one) is called first and may return items to
  emit before the marker (what it held back); a batch stage emits its open batch first; the sink's
  ``on_marker`` is called;
* a map stage holding items back (``idle()``: an overlapped inference stage) emits them when nothing has come
  in for ``idle_s`` seconds, so a source that stalls or ends has its last frames written at once.

Stage callables:

* **map**: a function ``fn(item) -> item`` (``many=False``), ``fn(item) -> iterable of 0..n items``
  (``many=True``), or a stateful object with ``process(item) -> iterable`` and optional
  ``finish() -> iterable`` (called at end of stream, not on abort), ``idle() -> iterable`` (called when
  the input has been empty for ``idle_s``) and ``close()`` (always called).
  A stage runs on exactly one thread, so its state needs no lock.
* **batch**: see :class:`~hrstream.runtime.batcher.Batcher`; emits ``list``s of items. A partial batch
  goes out when its deadline passes and no item is waiting in the input queue.
* **then**: ``fn(item) -> item`` fused onto the stage before it (same thread, no queue).
* **sink**: an object with ``write(item)`` and optional ``close()`` and ``on_marker(marker)``, or a plain
  callable.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from hrstream.errors import StageError
from hrstream.runtime.batcher import Batcher
from hrstream.runtime.markers import Marker
from hrstream.runtime.queues import BoundedQueue, QueueAborted, QueueClosed, QueueStats

__all__ = ["Pipeline", "PipelineStats", "StageStats", "left_running"]

#: Stage threads an aborted pipeline stopped waiting for (busy in a long call); see :func:`left_running`.
_LEFT: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def left_running() -> list[threading.Thread]:
    """The stage threads of aborted pipelines still busy in a call that cannot be interrupted (a network on a
    slow machine): daemons that end when the call returns. Their pipeline's outputs are closed already; a
    command that is about to exit need not wait for them (the interpreter's shutdown would, for as long as the
    call lasts: its CPU thread pool is joined at exit)."""
    return [t for t in list(_LEFT) if t.is_alive()]


logger = logging.getLogger(__name__)

StageKind = Literal["source", "map", "batch", "sink"]
Outcome = Literal["completed", "stopped", "aborted"]


@dataclass(frozen=True)
class StageStats:
    """Counters of one stage: items taken in, items emitted, seconds spent in its own work (not in
    waiting on queues), and a snapshot of its output queue (``None`` for the sink)."""

    name: str
    kind: StageKind
    items_in: int
    items_out: int
    busy_s: float
    out_queue: QueueStats | None


@dataclass(frozen=True)
class PipelineStats:
    """What :meth:`Pipeline.run` returns."""

    outcome: Outcome
    elapsed_s: float
    stages: list[StageStats] = field(default_factory=list)

    def stage(self, name: str) -> StageStats:
        """The stats of the stage called ``name``."""
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


class _Stage:
    """One stage's wiring and counters (written by its own thread only)."""

    def __init__(self, name: str, kind: StageKind, target: Any, out: BoundedQueue | None) -> None:
        self.name = name
        self.kind = kind
        self.target = target
        self.out = out
        self.inq: BoundedQueue | None = None
        self.items_in = 0
        self.items_out = 0
        self.busy_s = 0.0
        self.thread: threading.Thread | None = None
        self.threadless = False  # a source that is a queue itself (source_queue): no thread of its own
        self.idle_s: float | None = None  # map: call target.idle() after this long without input
        self.then: list[Callable[[Any], Any]] = []  # run on each emitted item, on this stage's thread

    def emit(self, items: Iterable[Any]) -> None:
        assert self.out is not None
        for item in items:
            for fn in self.then:
                item = fn(item)
            self.out.put(item)
            self.items_out += 1

    def stats(self) -> StageStats:
        q = None
        if self.out is not None:
            q = self.out.summary() if self.threadless else self.out.stats()
        return StageStats(self.name, self.kind, self.items_in, self.items_out, self.busy_s, q)


def _call_close(obj: Any, what: str) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()
    elif close is not None:
        logger.debug("%s has a non-callable close attribute", what)


class Pipeline:
    """A source, then map/batch stages, then a sink; each stage in its own thread. Single use.

    Args:
        name: prefix of the thread names and log lines.
        join_timeout_s: after an abort, how long ``run`` waits for each thread before giving up on it
            (a thread stuck in user code cannot be interrupted; threads are daemons so the process
            can still exit).
    """

    def __init__(self, name: str = "pipeline", *, join_timeout_s: float = 5.0) -> None:
        self.name = name
        self.join_timeout_s = join_timeout_s
        self._stages: list[_Stage] = []
        self._on_stop: list[Callable[[], None]] = []
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._stop_at: float | None = None
        self._lock = threading.Lock()
        self._error: tuple[str, BaseException] | None = None
        self._started = False

    # -- building ------------------------------------------------------------------------------------
    def _add(self, name: str, kind: StageKind, target: Any, queue_size: int) -> Pipeline:
        if self._started:
            raise RuntimeError(f"pipeline '{self.name}' already ran; build a new one")
        if any(s.name == name for s in self._stages):
            raise ValueError(f"pipeline '{self.name}': duplicate stage name '{name}'")
        if (kind == "source") != (not self._stages):
            raise ValueError(f"pipeline '{self.name}': the source must be the first stage, and only it")
        if self._stages and self._stages[-1].kind == "sink":
            raise ValueError(f"pipeline '{self.name}': no stage may follow the sink")
        out = None if kind == "sink" else BoundedQueue(queue_size, name=f"{name}.out")
        stage = _Stage(name, kind, target, out)
        if self._stages:
            stage.inq = self._stages[-1].out
        self._stages.append(stage)
        return self

    def source(
        self,
        name: str,
        items: Iterable[Any],
        *,
        queue_size: int = 8,
        on_stop: Callable[[], None] | None = None,
    ) -> Pipeline:
        """The first stage: a thread reads ``items`` into a queue of ``queue_size``. ``on_stop`` is called on
        stop/abort to interrupt a blocking read."""
        if on_stop is not None:
            self._on_stop.append(on_stop)
        return self._add(name, "source", items, queue_size)

    def source_queue(self, name: str, items: Any, *, on_stop: Callable[[], None] | None = None) -> Pipeline:
        """The first stage is ``items`` itself, a queue its producers fill (a
        :class:`~hrstream.runtime.mux.SourceMux`: ``get(timeout)``, ``abort()``, ``summary()``), read by the next
        stage directly (no thread, no copy). A stop request calls ``on_stop``, which ends the intake; the queue
        ends (``QueueClosed``) once what it holds was read."""
        if on_stop is not None:
            self._on_stop.append(on_stop)
        self._add(name, "source", None, 1)
        stage = self._stages[-1]
        stage.out, stage.threadless = items, True
        return self

    def map(
        self, name: str, fn: Any, *, many: bool = False, queue_size: int = 4, idle_s: float = 0.1
    ) -> Pipeline:
        """A transform stage; see the module docstring for the forms ``fn`` may take. ``idle_s``: with an
        ``idle()`` method, it is called after this many seconds without input."""
        if not hasattr(fn, "process"):
            if not callable(fn):
                raise TypeError(f"stage '{name}': expected a callable or an object with process()")
            fn = _FnStage(fn, many)
        self._add(name, "map", fn, queue_size)
        if hasattr(fn, "idle"):
            self._stages[-1].idle_s = max(0.001, float(idle_s))
        return self

    def batch(
        self,
        name: str,
        *,
        max_batch: int,
        max_wait_s: float,
        weight: Callable[[Any], int] | None = None,
        queue_size: int = 2,
    ) -> Pipeline:
        """Groups items into lists of at most ``max_batch`` total ``weight``; see :class:`Batcher`."""
        return self._add(name, "batch", Batcher(max_batch, max_wait_s, weight=weight), queue_size)

    def then(self, fn: Callable[[Any], Any]) -> Pipeline:
        """``fn(item) -> item`` on each item the last stage emits, on that stage's thread: work too small for a
        thread and a queue of its own (markers pass untouched)."""
        last = self._stages[-1] if self._stages else None
        if last is None or last.kind in ("source", "sink"):
            raise ValueError(f"pipeline '{self.name}': then() follows a map or batch stage")
        last.then.append(fn)
        return self

    def sink(self, name: str, sink: Any) -> Pipeline:
        """The last stage: ``sink.write(item)`` (or ``sink(item)``) per item, ``sink.close()`` at the end."""
        if not hasattr(sink, "write") and not callable(sink):
            raise TypeError(f"sink '{name}': expected an object with write() or a callable")
        return self._add(name, "sink", sink, 1)

    # -- control -------------------------------------------------------------------------------------
    def request_stop(self) -> None:
        """Stop intake; items already read drain through and every stage finishes normally."""
        if not self._stop.is_set():
            self._stop_at = time.monotonic()
            self._stop.set()
            logger.info("pipeline '%s': stop requested, draining", self.name)
            self._run_on_stop()

    def abort(self) -> None:
        """Stop everything at once; queued items are discarded, blocked threads wake."""
        if self._abort.is_set():
            return
        self._abort.set()
        self._stop.set()
        for s in self._stages:
            if s.out is not None:
                s.out.abort()
        self._run_on_stop()

    def _run_on_stop(self) -> None:
        for hook in self._on_stop:
            try:
                hook()
            except Exception:
                logger.exception("pipeline '%s': on_stop hook failed", self.name)

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()

    def stats(self) -> list[StageStats]:
        """Per-stage counters, readable at any time from any thread."""
        return [s.stats() for s in self._stages]

    # -- running -------------------------------------------------------------------------------------
    def run(self, *, grace_s: float | None = None) -> PipelineStats:
        """Run all stages and wait for them in the calling thread.

        Args:
            grace_s: after :meth:`request_stop`, abort if the pipeline has not drained within this many
                seconds; ``None`` waits for the drain however long it takes.

        Returns:
            :class:`PipelineStats`; ``outcome`` is ``"stopped"`` after a request_stop that drained,
            ``"aborted"`` after an abort.

        Raises:
            StageError: a stage raised; ``.stage`` names it and ``.cause`` is the exception.
        """
        if self._started:
            raise RuntimeError(f"pipeline '{self.name}' already ran; build a new one")
        if not self._stages or self._stages[-1].kind != "sink":
            raise ValueError(f"pipeline '{self.name}' needs a source first and a sink last")
        self._started = True
        t0 = time.monotonic()
        for s in self._stages:
            if s.threadless:
                continue
            s.thread = threading.Thread(target=self._thread_main, args=(s,), name=f"{self.name}:{s.name}")
            s.thread.daemon = True
            s.thread.start()
        try:
            self._wait(grace_s)
        except BaseException:
            self.abort()
            self._join_all()
            raise
        self._join_all()
        if self._error is not None:
            stage, cause = self._error
            raise StageError(stage, cause) from cause
        outcome: Outcome = "aborted" if self.aborted else "stopped" if self.stop_requested else "completed"
        return PipelineStats(outcome, time.monotonic() - t0, self.stats())

    def _wait(self, grace_s: float | None) -> None:
        """Wait for every stage; abort once a stop has waited ``grace_s``. After an abort the wait is
        :meth:`_join_all`'s, bounded per thread: a stage busy in a long call is not waited for here."""
        for s in self._stages:
            while s.thread is not None and s.thread.is_alive():
                if self.aborted:
                    return
                s.thread.join(timeout=0.05)
                stop_at = self._stop_at
                overdue = stop_at is not None and time.monotonic() - stop_at > (grace_s or 0)
                if grace_s is not None and overdue and not self.aborted:
                    logger.warning(
                        "pipeline '%s': not drained %.1f s after stop; aborting", self.name, grace_s
                    )
                    self.abort()

    def _join_all(self) -> None:
        """Wait for the threads. After an abort only the sink matters (it closes the outputs at once); a stage
        busy in a long call (a network on a slow machine) is left to end by itself (its queues are aborted;
        threads are daemons), so a grace period bounds the time to closed outputs."""
        for s in self._stages:
            if s.thread is None:
                continue
            waited = self.join_timeout_s if (s.kind == "sink" or not self.aborted) else 0.2
            s.thread.join(timeout=waited)
            if s.thread.is_alive() and (s.kind == "sink" or not self.aborted):
                logger.error("pipeline '%s': stage '%s' did not finish", self.name, s.name)
            elif s.thread.is_alive():
                logger.debug("pipeline '%s': stage '%s' left to end its call", self.name, s.name)
                _LEFT.add(s.thread)

    def _fail(self, stage: _Stage, exc: BaseException) -> None:
        with self._lock:
            first = self._error is None
            if first:
                self._error = (stage.name, exc)
        if first:
            logger.error("pipeline '%s': stage '%s' failed: %r", self.name, stage.name, exc)
        self.abort()

    def _thread_main(self, s: _Stage) -> None:
        body = {"source": self._run_source, "map": self._run_map, "batch": self._run_batch}
        try:
            if s.kind == "sink":
                self._run_sink(s)
            else:
                try:
                    body[s.kind](s)
                finally:
                    assert s.out is not None
                    s.out.close()
        except QueueAborted:
            pass
        except BaseException as exc:
            self._fail(s, exc)

    def _run_source(self, s: _Stage) -> None:
        it = iter(s.target)
        try:
            while not self._stop.is_set():
                t = time.monotonic()
                try:
                    item = next(it)
                except StopIteration:
                    break
                s.busy_s += time.monotonic() - t
                s.items_in += 1
                s.emit((item,))
        finally:
            _call_close(it, f"source '{s.name}'")

    def _run_map(self, s: _Stage) -> None:
        assert s.inq is not None
        try:
            while True:
                try:
                    item = s.inq.get(timeout=s.idle_s)
                except queue.Empty:  # only with idle_s: nothing came in for that long
                    t = time.monotonic()
                    s.emit(list(s.target.idle()))
                    s.busy_s += time.monotonic() - t
                    continue
                except QueueClosed:
                    break
                if isinstance(item, Marker):
                    on_marker = getattr(s.target, "on_marker", None)
                    if on_marker is not None:
                        s.emit(list(on_marker(item) or ()))
                    s.out.put(item)  # type: ignore[union-attr]
                    continue
                s.items_in += 1
                t = time.monotonic()
                outs = list(s.target.process(item))
                s.busy_s += time.monotonic() - t
                s.emit(outs)
            finish = getattr(s.target, "finish", None)
            if finish is not None:
                s.emit(list(finish()))
        finally:
            _call_close(s.target, f"stage '{s.name}'")

    def _run_batch(self, s: _Stage) -> None:
        assert s.inq is not None
        batcher: Batcher = s.target
        while True:
            dl = batcher.deadline
            timeout = None if dl is None else max(0.0, dl - time.monotonic())
            try:
                item = s.inq.get(timeout=timeout)
            except queue.Empty:
                due = batcher.poll()
                if due is not None:
                    s.emit((due,))
                continue
            except QueueClosed:
                break
            if isinstance(item, Marker):
                rest = batcher.flush()
                if rest is not None:
                    s.emit((rest,))
                s.out.put(item)  # type: ignore[union-attr]
                continue
            s.items_in += 1
            t = time.monotonic()
            done = batcher.add(item)
            s.busy_s += time.monotonic() - t
            s.emit(done)
        rest = batcher.flush()
        if rest is not None:
            s.emit((rest,))

    def _run_sink(self, s: _Stage) -> None:
        assert s.inq is not None
        write = getattr(s.target, "write", None) or s.target
        on_marker = getattr(s.target, "on_marker", None)
        try:
            while True:
                try:
                    item = s.inq.get()
                except QueueClosed:
                    break
                if isinstance(item, Marker):
                    if on_marker is not None:
                        on_marker(item)
                    continue
                s.items_in += 1
                t = time.monotonic()
                write(item)
                s.busy_s += time.monotonic() - t
                s.items_out += 1
        finally:
            if hasattr(s.target, "write"):
                _call_close(s.target, f"sink '{s.name}'")


class _FnStage:
    """Adapts ``fn(item) -> item`` or ``fn(item) -> iterable`` to the ``process`` protocol."""

    def __init__(self, fn: Callable[[Any], Any], many: bool) -> None:
        self.fn = fn
        self.many = many

    def process(self, item: Any) -> Iterable[Any]:
        out = self.fn(item)
        if not self.many:
            return (out,)
        return () if out is None else out
