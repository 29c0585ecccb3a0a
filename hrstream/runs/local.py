"""Runs a task over the inputs of a run through one pipeline in this process: one network, every source,
failures isolated.

All live inputs (URLs, cameras) run at once; files run ``runtime.streams`` at a time (default: 1 on a CPU,
4 on CUDA, where more streams fill bigger batches) in their order. Each input is a source of the same
pipeline (:mod:`hrstream.pipeline.builder`): its frames are batched with the others' through the shared network, its
outputs are its own. An input that cannot be opened, breaks or gives up ends alone; the others go on.

:meth:`Runner.run` plans the run with the output folder's manifest (:mod:`hrstream.runs.manifest`, through
:func:`hrstream.runs.batch.run_batch`: inputs done already are skipped, names stay distinct across runs);
:meth:`Runner.execute` is the executor part, which worker processes and Ray actors
(:mod:`hrstream.runs.workers`) also run, one input at a time.

Exit codes of a run (see :func:`exit_code`): 0 all inputs done, 1 some inputs failed, 130/143 interrupted
(SIGINT/SIGTERM: intake of every source stops, what is in flight drains, every output is closed properly).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from hrstream.errors import HrstreamError, InputError, StageError
from hrstream.io import InputSpec, SourceInfo, safe_name
from hrstream.outputs.router import SinkRouter, SourceReport
from hrstream.outputs.segments import SourceOutputs
from hrstream.pipeline.builder import PreparedTask
from hrstream.runs.batch import RunEvents, run_batch
from hrstream.runs.manifest import JobResult, WorkItem
from hrstream.runs.monitor import run_monitor
from hrstream.runtime import Pipeline, PipelineStats, StopOnSignals, configure_cpu_threads
from hrstream.runtime.feeder import SourceJob

__all__ = [
    "EXIT_GAVE_UP",
    "JobResult",
    "RunControl",
    "Runner",
    "exit_code",
    "unique_names",
]

log = logging.getLogger(__name__)

#: ``make_progress(info) -> (callback(frames_done), finish())`` for a progress display.
ProgressFactory = Callable[[SourceInfo], tuple[Callable[[int], None] | None, Callable[[], None]]]


class RunControl:
    """The stop switch shared by the signal handlers and the run's pipeline."""

    def __init__(self) -> None:
        self.stopped = False
        self.aborted = False
        self._pipeline: Pipeline | None = None
        self._lock = threading.Lock()

    def attach(self, pipeline: Pipeline | None) -> None:
        with self._lock:
            self._pipeline = pipeline
            if pipeline is not None and self.stopped:
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


#: Exit code of a run whose only failures are live sources that gave up (``--max-reconnects``).
EXIT_GAVE_UP = 3


def exit_code(results: list[JobResult], signum: int | None) -> int:
    """0 all done; 1 some input failed; 3 (:data:`EXIT_GAVE_UP`) live sources gave up and nothing else failed;
    130/143 interrupted by SIGINT/SIGTERM."""
    if signum is not None:
        return 128 + signum
    failed = [r for r in results if r.status == "failed"]
    if failed and all(r.gave_up for r in failed):
        return EXIT_GAVE_UP
    return 1 if failed else 0


def unique_names(jobs: list[InputSpec], given: Sequence[str | None] | None = None) -> list[str]:
    """Output names of ``jobs``, distinct within a run: a name given for an input (``--sources`` lines
    ``NAME URL``) first, else the sanitised input name; equal names (``a/clip.mp4``, ``b/clip.mp4``) get
    ``clip``, ``clip_2``, ``clip_3`` in input order, so no input overwrites another one's files and a rerun
    of the same command gives the same names."""
    used: set[str] = set()
    names = []
    for i, job in enumerate(jobs):
        wanted = given[i] if given is not None and i < len(given) else None
        base = name = safe_name(wanted) if wanted else job.name
        k = 2
        while name in used:
            name = f"{base}_{k}"
            k += 1
        used.add(name)
        names.append(name)
    return names


class Runner:
    """Runs ``prepared`` over inputs in this process.

    Args:
        prepared: the task with its network(s) loaded and its ``out_dir``.
        grace_s: after a stop request, abort if the pipeline has not drained within this many seconds.
        make_progress: a progress display per source, or ``None``.
        reserved_threads: CPU cores left to decoding and encoding (see :func:`configure_cpu_threads`).
        cpu_threads: torch's CPU threads instead (a worker process's share of the cores).
    """

    kind = "local"

    def __init__(
        self,
        prepared: PreparedTask,
        *,
        grace_s: float = 10.0,
        make_progress: ProgressFactory | None = None,
        reserved_threads: int = 1,
        cpu_threads: int | None = None,
    ) -> None:
        if prepared.out_dir is None:
            raise ValueError("Runner needs a PreparedTask with an out_dir")
        self.prepared = prepared
        self.recipe = prepared.recipe
        self.out_dir = prepared.out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.recipe_hash = self.recipe.digest()
        self.grace_s = grace_s
        self.make_progress = make_progress
        self.control = RunControl()
        self.stats: PipelineStats | None = None  # the stages' counters of the last run (benchmarks read them)
        if cpu_threads is None:
            configure_cpu_threads(reserved_threads)
        else:
            import torch

            torch.set_num_threads(max(1, int(cpu_threads)))

    def run(
        self, specs: Sequence[str], *, names: Sequence[str | None] | None = None, force: bool = False
    ) -> tuple[list[JobResult], int | None]:
        """Process every input not done already (``force``: every input); returns the results (in input order)
        and the signal that interrupted the run (or ``None``). ``names[i]`` names the input of ``specs[i]``
        (when that spec is one input)."""
        return run_batch(self.out_dir, self.recipe_hash, specs, self, names=names, force=force)

    def execute(self, items: Sequence[WorkItem], events: RunEvents) -> int | None:
        """Process ``items`` through one pipeline (the :class:`~hrstream.runs.batch.Executor` protocol).

        ``events.started`` is called when an item's source has opened, before its outputs are created;
        ``events.finished`` when it ended. Returns the signal that interrupted the run, or ``None``.
        """
        by_name = {item.name: item for item in items}
        todo = [
            SourceJob(
                item.name,
                item.display,
                live=item.live,
                open=lambda stop, item=item: self.prepared.open_input(item.job, item.name, stop),
            )
            for item in items
        ]
        reports: dict[str, SourceReport] = {}

        def open_outputs(info: SourceInfo) -> SourceOutputs:
            item = by_name[info.name]
            events.started(item)
            progress, finish = (None, None) if self.make_progress is None else self.make_progress(info)

            def report(frames: int) -> None:
                if progress is not None:
                    progress(frames)
                events.progress(item, frames)

            return self.prepared.open_outputs(info, progress=report, finish_progress=finish)

        def done(report: SourceReport) -> None:
            reports[report.source_id] = report
            item = by_name[report.source_id]
            log.info(
                "%s: %s, %d frames in %.1f s (%d dropped)",
                item.display,
                report.status,
                report.frames,
                report.elapsed_s,
                report.drops,
            )
            events.finished(item, _result(item, report))

        def tick(snapshot: dict[str, Any]) -> None:  # live sources' state in the manifest, every few seconds
            for name, st in snapshot["sources"].items():
                if st["live"] and name in by_name:
                    state = {k: st[k] for k in ("state", "reconnects", "gaps", "gap_s")}
                    events.live(by_name[name], frames=st["frames_out"], drops=st["drops"], state=state)

        signum, error, launched = self._run_pipeline(todo, done, open_outputs, on_tick=tick)
        if error is not None:  # a stage failed: every source it cut short failed with it
            for name, rep in reports.items():
                if rep.status == "interrupted":
                    rep.status, rep.error = "failed", f"{by_name[name].display}: {error}"
                    events.finished(by_name[name], _result(by_name[name], rep))
            for name in launched - set(reports):  # started reading, stopped before its outputs opened
                rep = SourceReport(name, "failed", error=f"{by_name[name].display}: {error}")
                events.finished(by_name[name], _result(by_name[name], rep))
        return signum

    def _run_pipeline(
        self,
        todo: list[SourceJob],
        done: Callable[[SourceReport], None],
        open_outputs: Callable[[SourceInfo], SourceOutputs],
        on_tick: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[int | None, str | None, set[str]]:
        """Run the pipeline over ``todo``; returns the signal that stopped it (or ``None``), the error of a
        stage that failed (or ``None``) and the sources that were started (opened or being opened)."""
        rt = self.recipe.runtime
        mux, feeder = self.prepared.source_feeder()
        monitor = run_monitor(mux, feeder, lambda: pipeline)
        monitor.on_tick = on_tick
        router = SinkRouter(open_outputs, on_done=done, stop_source=feeder.stop_source, monitor=monitor)
        live = any(j.live for j in todo)
        pipeline = self.prepared.build(mux, router, live=live, on_stop=feeder.stop, name=self.out_dir.name)
        error = None
        with StopOnSignals(self.control) as sig:
            self.control.attach(pipeline)
            monitor.start(metrics_port=rt.metrics_port)
            feeder.start(todo)
            try:
                self.stats = pipeline.run(grace_s=self.grace_s)
            except StageError as e:
                cause = e.cause
                if isinstance(cause, HrstreamError) and not isinstance(cause, InputError):
                    raise cause from e  # configuration/weights problems end the run (exit 2)
                error = str(cause) if isinstance(cause, InputError) else str(e)
                log.error("%s", error)
            finally:
                self.control.attach(None)
                feeder.stop()
                mux.close()
                feeder.join(timeout=5.0)
                monitor.close()
        return sig.signum, error, feeder.launched()


def _result(item: WorkItem, rep: SourceReport) -> JobResult:
    return JobResult(
        item.display,
        rep.status,
        frames=rep.frames,
        drops=rep.drops,
        truncated=rep.truncated,
        error=rep.error,
        outputs=rep.outputs,
        elapsed_s=rep.elapsed_s,
        fingerprint=item.fingerprint,
        name=item.name,
        gave_up=rep.gave_up,
        live=None
        if not item.live
        else {
            "gaps": rep.events.get("gap", 0),
            "gap_s": round(rep.gap_s, 3),
            "reconnects": rep.events.get("reconnect", 0),
            "resolution_changes": rep.events.get("resolution", 0),
            "segments": rep.segments,
            "state": "gave_up" if rep.gave_up else "ended",
        },
    )
