"""One run lifecycle for every way of running: plan the inputs, watch them, stop on signals, record each outcome.

:func:`run_inputs` is what ``hrstream run``, :func:`hrstream.stream`, the benchmarks and library users call. It
expands the inputs and names them through the output folder's :class:`~hrstream.runs.manifest.Manifest`
(inputs done already are skipped, names stay distinct across runs and callers; without a folder the names are
made distinct within the run), counts everything in one :class:`~hrstream.runtime.counters.RunCounters`,
watches the run (:class:`~hrstream.runs.monitor.RunMonitor`: status lines, the manifest's live state and, with
``metrics_port``, one Prometheus endpoint in this process), turns SIGINT/SIGTERM into a drain (a second signal
aborts) and hands the inputs to an :class:`Executor`:

* :class:`~hrstream.runs.local.LocalExecutor`: every input through one pipeline in this process;
* :class:`~hrstream.runs.processes.ProcessExecutor`: ``--workers N`` spawned worker processes;
* :class:`~hrstream.runs.ray_actors.RayExecutor`: ``--executor ray``, Ray Core actors.

Executors report through :class:`RunEvents` (``started`` before an input's outputs are touched, ``progress``,
``finished``); :class:`ManifestEvents` turns those reports into manifest writes and a progress display. Only the
process that calls :func:`run_inputs` writes the manifest.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from hrstream.io import InputSpec, expand_inputs
from hrstream.runs.folder import prepare_output_folder
from hrstream.runs.items import Plan, WorkItem, plan_without_manifest
from hrstream.runs.manifest import Manifest
from hrstream.runs.monitor import RunMonitor
from hrstream.runs.report import OverallProgress
from hrstream.runtime import StageStats, StopOnSignals
from hrstream.runtime.counters import RunCounters
from hrstream.types import SourceResult

__all__ = ["Executor", "ManifestEvents", "RunEvents", "RunOutcome", "expand", "run_inputs"]

log = logging.getLogger(__name__)


class RunEvents(Protocol):
    """What an executor reports about each input (from any thread)."""

    def started(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        """``item`` is about to be processed; returns after the manifest says so (before outputs are touched)."""

    def progress(self, item: WorkItem, frames: int) -> None:
        """``item`` has ``frames`` frames written."""

    def finished(self, item: WorkItem, result: SourceResult) -> None:
        """``item`` ended (``result.status`` ``ok`` / ``failed`` / ``interrupted``)."""

    def worker_ready(self, info: dict[str, Any]) -> None:
        """A worker process or actor is ready (``pid``, ``host``, ``device``, ``threads``, ``setup_s``...)."""


class Executor(Protocol):
    """Processes the inputs of a run (see the module docstring)."""

    #: ``"local"``, ``"processes"`` or ``"ray"`` (recorded in the manifest's run record).
    kind: str

    def execute(self, items: Sequence[WorkItem], events: RunEvents, counters: RunCounters) -> None:
        """Process ``items``, counting in ``counters`` (this process's sources, or snapshots merged from the
        processes that ran them), until every item ended or a stop request ended them."""

    def request_stop(self) -> None:
        """Stop intake; what is in flight drains (the first SIGINT/SIGTERM)."""

    def abort(self) -> None:
        """Stop at once (a second signal); outputs are still closed."""

    def stage_stats(self) -> list[StageStats]:
        """The stages of the pipeline running in this process (queue depths, busy seconds), or none."""


@dataclass
class RunOutcome:
    """What a run did: each input's result in input order (inputs a stopped run never started are left out)
    and the signal that stopped it (``None``: it ended by itself)."""

    results: list[SourceResult]
    signum: int | None


class ManifestEvents:
    """The :class:`RunEvents` of :func:`run_inputs`: manifest writes (none without a folder), the overall
    progress, the results."""

    def __init__(self, manifest: Manifest | None, progress: OverallProgress | None = None) -> None:
        self.manifest = manifest
        self.display = progress
        self.results: dict[str, SourceResult] = {}
        self.workers: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def started(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        if self.manifest is not None:
            self.manifest.start(item, attempt=attempt, worker=worker)

    def progress(self, item: WorkItem, frames: int) -> None:
        if self.display is not None:
            self.display.progress(item, frames)

    def finished(self, item: WorkItem, result: SourceResult) -> None:
        result.name = item.name
        result.fingerprint = item.fingerprint
        with self._lock:
            self.results[item.name] = result
        if self.manifest is not None:
            self.manifest.finish(item, result)
        if self.display is not None:
            self.display.finished(item, result)

    def live(self, items: dict[str, WorkItem], snapshot: dict[str, dict[str, Any]]) -> None:
        """The live sources' state in the manifest (every few seconds, from the run's counters)."""
        if self.manifest is None:
            return
        for name, st in snapshot.items():
            item = items.get(name)
            if item is None or not st["live"] or self.manifest.get(item.key) is None:
                continue  # not a live input of this run, or one not started yet
            state = {
                k: st[k] for k in ("state", "reconnects", "gaps", "gap_s", "resolution_changes", "segments")
            }
            self.manifest.update(item.key, frames=st["frames_out"], drops=st["drops"], live=state)
        self.manifest.flush()  # written atomically, only when something changed

    def worker_ready(self, info: dict[str, Any]) -> None:
        with self._lock:
            self.workers.append(dict(info))
            workers = list(self.workers)
        if self.manifest is not None:
            self.manifest.set_run_info(workers=workers)


def expand(
    specs: Sequence[str],
    names: Sequence[str | None] | None,
    options: Sequence[dict[str, Any] | None] | None = None,
) -> tuple[list[InputSpec], list[str | None], list[dict[str, Any] | None]]:
    """The inputs of ``specs`` (:func:`~hrstream.io.expand_inputs`: folders and globs expand to their videos),
    the name given to each (``names[i]`` names ``specs[i]`` when that spec is one input) and each one's
    ``options`` (``options[i]`` for every input of ``specs[i]``)."""
    given: list[str | None] = []
    jobs: list[InputSpec] = []
    opts: list[dict[str, Any] | None] = []
    for i, spec in enumerate(specs):
        expanded = expand_inputs([str(spec)])
        jobs.extend(expanded)
        name = names[i] if names is not None and i < len(names) else None
        given.extend([name] if len(expanded) == 1 else [None] * len(expanded))
        opts.extend([options[i] if options is not None and i < len(options) else None] * len(expanded))
    return jobs, given, opts


def run_inputs(
    specs: Sequence[str],
    executor: Executor,
    *,
    out_dir: str | Path | None,
    recipe_digest: str,
    names: Sequence[str | None] | None = None,
    options: Sequence[dict[str, Any] | None] | None = None,
    force: bool = False,
    progress: bool = False,
    metrics_port: int | None = None,
    status_s: float | None = 5.0,
    run_info: dict[str, Any] | None = None,
    on_plan: Callable[[Plan], None] | None = None,
) -> RunOutcome:
    """Process ``specs`` with ``executor``, files into ``out_dir`` (keeping ``OUT/manifest.json``; ``None``: no
    files, no manifest).

    Args:
        specs: files, folders, globs, URLs, cameras.
        recipe_digest: the recipe's :meth:`~hrstream.pipeline.recipe.Recipe.digest` (an input done with the same
            recipe, its outputs unchanged, is skipped unless ``force``).
        names: ``names[i]`` names the input of ``specs[i]`` (when that spec is one input).
        options: ``options[i]``: the own settings of the inputs of ``specs[i]`` (``detect_every``).
        progress: one overall progress bar (for executors whose workers show none).
        metrics_port: serve the run's numbers on ``127.0.0.1:PORT/metrics`` (Prometheus) while it lasts.
        status_s: seconds between status lines of live sources (``None``: none).
        run_info: more of the manifest's run record (executor settings).
        on_plan: called with the plan before anything runs (:func:`hrstream.stream` learns the names).
    """
    jobs, given, opts = expand(specs, names, options)
    if out_dir is not None:
        prepare_output_folder(out_dir)
    manifest = Manifest.load(out_dir) if out_dir is not None else None
    plan = (
        manifest.plan(jobs, given, recipe_digest, force=force, options=opts)
        if manifest is not None
        else plan_without_manifest(jobs, given, opts)
    )
    if on_plan is not None:
        on_plan(plan)
    if manifest is not None:
        manifest.begin_run(plan, recipe=recipe_digest, executor=executor.kind, **(run_info or {}))
    display = OverallProgress(len(plan.todo)) if progress and plan.todo else None
    events = ManifestEvents(manifest, display)
    counters = RunCounters()
    by_name = {item.name: item for item in plan.todo}
    monitor = RunMonitor(counters, executor.stage_stats, status_s=status_s)
    monitor.on_tick = lambda snap: events.live(by_name, snap)
    signum: int | None = None
    state = "failed"
    t0 = time.monotonic()
    try:
        if plan.todo:
            monitor.start(metrics_port=metrics_port)
            with StopOnSignals(executor) as sig:
                executor.execute(plan.todo, events, counters)
            signum = sig.signum
        state = "interrupted" if signum is not None else "done"
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed: the run is interrupted, not failed
        state = "interrupted"
        raise
    finally:
        monitor.close()
        if display is not None:
            display.close()
        if manifest is not None:
            manifest.end_run(state)  # type: ignore[arg-type]
    log.debug("run of %d input(s) took %.1f s", len(plan.todo), time.monotonic() - t0)
    results = []
    for item in plan.items:
        r = plan.skipped.get(item.name) or events.results.get(item.name)
        if r is not None:
            results.append(r)
    return RunOutcome(results, signum)
