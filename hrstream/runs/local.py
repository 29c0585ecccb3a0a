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
from hrstream.types import FrameResult, SourceResult

__all__ = ["LocalExecutor", "ProgressFactory", "RunControl"]

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
        by_name = {item.name: item for item in items}
        todo = [
            SourceJob(
                item.name,
                item.display,
                live=item.live,
                open=lambda stop, item=item: self.networks.open_input(item.job, item.name, stop),
            )
            for item in items
        ]
        reports: dict[str, SourceResult] = {}
        finish_bars: dict[str, Callable[[], None]] = {}
        bars: dict[str, Callable[[int], None]] = {}

        def open_outputs(info: SourceInfo, source_counters: SourceCounters) -> SourceOutputs:
            events.started(by_name[info.name])
            if self.make_progress is not None:
                bar, finish = self.make_progress(info)
                finish_bars[info.name] = finish
                if bar is not None:
                    bars[info.name] = bar
            return open_source_outputs(self.spec, info, counters=source_counters)

        def written(name: str, frames: int) -> None:
            bar = bars.get(name)
            if bar is not None:
                bar(frames)
            events.progress(by_name[name], frames)

        def done(result: SourceResult) -> None:
            reports[result.name] = result
            finish = finish_bars.pop(result.name, None)
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
            events.finished(by_name[result.name], result)

        mux, feeder = self.networks.source_feeder(counters)
        router = SinkRouter(
            open_outputs,
            counters=counters,
            on_done=done,
            on_written=written,
            stop_source=feeder.stop_source,
            forward=self.forward,
        )
        draw_now = self.out_dir is not None and self.recipe.sinks.video
        live = any(j.live for j in todo)
        name = self.out_dir.name if self.out_dir is not None else "stream"
        pipeline = self.networks.build(
            mux, router, live=live, draw_now=draw_now, on_stop=feeder.stop, name=name
        )
        self.pipeline = pipeline
        error = None
        self.control.attach(pipeline)
        feeder.start(todo)
        try:
            self.stats = pipeline.run(grace_s=self.grace_s)
        except StageError as e:
            cause = e.cause
            if isinstance(cause, HrstreamError) and not isinstance(cause, InputError):
                raise cause from e  # configuration/weights problems end the run (exit 2)
            self.stage_error = e
            error = str(cause) if isinstance(cause, InputError) else str(e)
            log.error("%s", error)
        finally:
            self.control.attach(None)
            feeder.stop()
            mux.close()
            feeder.join(timeout=5.0)
        if error is not None:  # a stage failed: every source it cut short failed with it
            for result in [r for r in reports.values() if r.status == "interrupted"]:
                result.status, result.error = "failed", f"{by_name[result.name].display}: {error}"
                events.finished(by_name[result.name], result)
            for name in feeder.launched() - set(
                reports
            ):  # started reading, stopped before its outputs opened
                result = SourceResult(
                    by_name[name].display, "failed", name=name, error=f"{by_name[name].display}: {error}"
                )
                events.finished(by_name[name], result)
