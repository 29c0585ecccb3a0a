"""Every input of a run through one pipeline in this process: one network, every source, failures isolated.

:class:`LocalExecutor` is the executor of ``hrstream run`` without workers and of :func:`hrstream.stream`, and
what a worker process or a Ray actor runs for each input it is given. All live inputs (URLs, cameras) run at
once; files run ``runtime.streams`` at a time (default: 1 on a CPU, 4 on CUDA) in their order. Each input is a
source of the same pipeline (:mod:`hrstream.pipeline.builder`): its frames are batched with the others'
through the shared network, its outputs are its own (:mod:`hrstream.outputs`). An input that cannot be opened,
breaks or gives up ends alone; the others go on. A stop request (SIGINT/SIGTERM) stops the intake of every
source, lets what is in flight drain and closes every output.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hrstream.errors import HrstreamError, InputError, StageError
from hrstream.io import SourceInfo
from hrstream.outputs import SinkRouter, SourceOutputs, open_source_outputs, outputs_spec
from hrstream.pipeline.builder import Networks
from hrstream.runs.items import WorkItem
from hrstream.runs.lifecycle import RunEvents
from hrstream.runtime import Pipeline, StageStats, configure_cpu_threads
from hrstream.runtime.counters import RunCounters, SourceCounters
from hrstream.runtime.feeder import SourceJob
from hrstream.runtime.memory import limit_malloc_arenas
from hrstream.types import FrameResult, SourceResult

__all__ = ["LocalExecutor", "PipelineSession", "ProgressFactory", "RunControl"]

log = logging.getLogger(__name__)

#: ``make_progress(info) -> (callback(frames_done), finish())`` for a progress display per source.
ProgressFactory = Callable[[SourceInfo], tuple[Callable[[int], None] | None, Callable[[], None]]]


class RunControl:
    """The stop switch shared by the signal handlers and the run's pipeline (set before it exists, it stops the
    pipeline as soon as it is attached)."""

    def __init__(self) -> None:
        self.stopped = False
        self.aborted = False
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    def attach(self, pipeline: Pipeline | None) -> None:
        with self._lock:
            self._pipeline = pipeline
            if pipeline is not None and self.aborted:
                pipeline.abort()
            elif pipeline is not None and self.stopped:
                pipeline.request_stop()

    def request_stop(self) -> None:
        with self._lock:
            self.stopped = True
            if self._pipeline is not None:
                self._pipeline.request_stop()

    def abort(self) -> None:
        with self._lock:
            self.stopped = self.aborted = True
            if self._pipeline is not None:
                self._pipeline.abort()


class LocalExecutor:
    """Runs ``networks`` over the inputs given to :meth:`execute`, in this process.

    Args:
        networks: the run's networks, loaded (:func:`~hrstream.pipeline.builder.load_networks`).
        out_dir: where sources write their files (``None``: nowhere).
        grace_s: after a stop request, close the outputs with what they have once this many seconds passed.
        make_progress: a progress display per file source, or ``None``.
        forward: also hands every written result to this callable (:func:`hrstream.stream`'s queue).
        reserved_threads: CPU cores left to decoding and encoding (see :func:`configure_cpu_threads`).
        cpu_threads: torch's CPU threads instead (a worker process's share of the cores).
    """

    kind = "local"

    def __init__(
        self,
        networks: Networks,
        *,
        out_dir: str | Path | None,
        grace_s: float | None = 10.0,
        make_progress: ProgressFactory | None = None,
        forward: Callable[[FrameResult], None] | None = None,
        reserved_threads: int = 1,
        cpu_threads: int | None = None,
    ) -> None:
        self.networks = networks
        self.recipe = networks.recipe
        self.out_dir = None if out_dir is None else Path(out_dir)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
        self.spec = outputs_spec(networks, self.out_dir)
        self.grace_s = grace_s
        self.make_progress = make_progress
        self.forward = forward
        self.control = RunControl()
        self.pipeline: Pipeline | None = None  # the pipeline of the current (or last) execute
        self.stats: Any = None  # the stages' counters of the last run (benchmarks read them)
        self.stage_error: StageError | None = None  # a stage that failed in the last run (its sources failed)
        limit_malloc_arenas()  # flat resident memory over days (hrstream.runtime.memory)
        if cpu_threads is None:
            configure_cpu_threads(reserved_threads)
        else:
            import torch

            torch.set_num_threads(max(1, int(cpu_threads)))

    # -- the Executor protocol ---------------------------------------------------------------------------
    def request_stop(self) -> None:
        self.control.request_stop()

    def abort(self) -> None:
        self.control.abort()

    def stage_stats(self) -> list[StageStats]:
        pipeline = self.pipeline
        return [] if pipeline is None else pipeline.stats()

    def execute(self, items: Sequence[WorkItem], events: RunEvents, counters: RunCounters) -> None:
        """Process ``items`` through one pipeline. ``events.started`` is called when an item's source has
        opened, before its outputs are created; ``events.finished`` when it ended."""
        session = self.session(events, counters, live=any(item.live for item in items))
        session.run(items)

    def session(self, events: RunEvents, counters: RunCounters, *, live: bool) -> PipelineSession:
        """A pipeline over a set of inputs that may change while it runs (:class:`PipelineSession`)."""
        return PipelineSession(self, events, counters, live=live)


class PipelineSession:
    """One pipeline of a :class:`LocalExecutor` over sources that may be added and removed while it runs.

    :meth:`run` processes a fixed set (a run); :meth:`start`, then :meth:`add` / :meth:`remove` and finally
    :meth:`stop` keep a pipeline running for as long as its owner wants, with or without sources (a service).
    """

    def __init__(
        self, executor: LocalExecutor, events: RunEvents, counters: RunCounters, *, live: bool
    ) -> None:
        self.executor = executor
        self.events = events
        self.counters = counters
        # the inputs of each name, oldest first: a name added again waits behind its earlier lane (a service)
        self._items: dict[str, deque[WorkItem]] = {}
        self.reports: dict[str, SourceResult] = {}
        self._bars: dict[str, Callable[[int], None]] = {}
        self._finish_bars: dict[str, Callable[[], None]] = {}
        self._lock = threading.Lock()
        networks = executor.networks
        self.mux, self.feeder = networks.source_feeder(counters)
        self.router = SinkRouter(
            self._open_outputs,
            counters=counters,
            on_done=self._done,
            on_written=self._written,
            stop_source=self.feeder.remove,
            forward=executor.forward,
        )
        out = executor.out_dir
        self.pipeline = networks.build(
            self.mux,
            self.router,
            live=live,
            draw_now=out is not None and executor.recipe.sinks.video,
            on_stop=self.feeder.stop,
            name=out.name if out is not None else "stream",
        )
        executor.pipeline = self.pipeline
        self._thread: threading.Thread | None = None
        self._failure: BaseException | None = None

    # -- sources ------------------------------------------------------------------------------------------
    def item(self, name: str) -> WorkItem:
        """The input whose lane of ``name`` runs now (or runs next)."""
        with self._lock:
            return self._items[name][0]

    @property
    def items(self) -> dict[str, WorkItem]:
        """The input of each name that runs now."""
        with self._lock:
            return {name: lanes[0] for name, lanes in self._items.items()}

    def _job(self, item: WorkItem, options: dict[str, Any] | None = None) -> SourceJob:
        open_input = self.executor.networks.open_input
        return SourceJob(
            item.name,
            item.display,
            live=item.live,
            open=lambda stop: open_input(item.job, item.name, stop),
            options=dict(options or {}),
        )

    def add(self, item: WorkItem) -> None:
        """Start reading one more input (``item.options``: its own settings, ``detect_every``)."""
        with self._lock:
            self._items.setdefault(item.name, deque()).append(item)
        self.feeder.add(self._job(item, item.options))

    def remove(self, name: str) -> None:
        """Stop reading input ``name``: its outputs are closed once its frames in flight are written."""
        self.feeder.remove(name)

    # -- what the router reports ---------------------------------------------------------------------------
    def _open_outputs(self, info: SourceInfo, source_counters: SourceCounters) -> SourceOutputs:
        self.events.started(self.item(info.name))
        make_progress = self.executor.make_progress
        if make_progress is not None:
            bar, finish = make_progress(info)
            self._finish_bars[info.name] = finish
            if bar is not None:
                self._bars[info.name] = bar
        return open_source_outputs(self.executor.spec, info, counters=source_counters)

    def _written(self, name: str, frames: int) -> None:
        bar = self._bars.get(name)
        if bar is not None:
            bar(frames)
        self.events.progress(self.item(name), frames)

    def _done(self, result: SourceResult) -> None:
        if self._thread is None:  # a run keeps every result; a session kept open forgets what ended
            self.reports[result.name] = result
        self._bars.pop(result.name, None)
        finish = self._finish_bars.pop(result.name, None)
        if finish is not None:
            finish()
        log.info(
            "%s: %s, %d frames in %.1f s (%d dropped)",
            result.input,
            result.status,
            result.frames,
            result.elapsed_s,
            result.drops,
        )
        with self._lock:
            lanes = self._items[result.name]
            item = lanes[0]
            if self._thread is not None:  # kept open: the name's next input, if any, is next
                lanes.popleft()
                if not lanes:
                    del self._items[result.name]
        self.events.finished(item, result)

    # -- running -------------------------------------------------------------------------------------------
    def run(self, items: Sequence[WorkItem]) -> None:
        """Process ``items`` (a run: the pipeline ends with them), in the calling thread."""
        with self._lock:
            for item in items:
                self._items.setdefault(item.name, deque()).append(item)
        self.feeder.start([self._job(item, item.options) for item in items])
        self._run_pipeline()

    def start(self) -> None:
        """Start the pipeline with no source (in a thread of its own); :meth:`add` them, :meth:`stop` it."""
        self.feeder.start([], keep_open=True)
        self._thread = threading.Thread(target=self._background, name="hrstream-session", daemon=True)
        self._thread.start()

    def stop(self, *, abort: bool = False, timeout: float | None = None) -> None:
        """Stop intake (every source's outputs are closed once what is in flight is written; ``abort``: at once)
        and wait for the pipeline (at most ``timeout`` seconds)."""
        if abort:
            self.executor.control.abort()
        else:
            self.executor.control.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._failure is not None:
            raise self._failure

    def _background(self) -> None:
        try:
            self._run_pipeline()
        except BaseException as e:  # raised by stop()
            self._failure = e

    def _run_pipeline(self) -> None:
        executor = self.executor
        error = None
        executor.control.attach(self.pipeline)
        try:
            executor.stats = self.pipeline.run(grace_s=executor.grace_s)
        except StageError as e:
            cause = e.cause
            if isinstance(cause, HrstreamError) and not isinstance(cause, InputError):
                raise cause from e  # configuration/weights problems end the run (exit 2)
            executor.stage_error = e
            error = str(cause) if isinstance(cause, InputError) else str(e)
            log.error("%s", error)
        finally:
            executor.control.attach(None)
            self.feeder.stop()
            self.mux.close()
            self.feeder.join(timeout=5.0)
        if error is not None:  # a stage failed: every source it cut short failed with it
            for result in [r for r in self.reports.values() if r.status == "interrupted"]:
                result.status, result.error = "failed", f"{self.item(result.name).display}: {error}"
                self.events.finished(self.item(result.name), result)
            for name in self.feeder.launched() - set(self.reports):  # started, stopped before its outputs
                display = self.item(name).display
                result = SourceResult(display, "failed", name=name, error=f"{display}: {error}")
                self.events.finished(self.item(name), result)
