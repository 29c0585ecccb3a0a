"""A run over many inputs: plan it with the manifest, hand the inputs to an executor, record every outcome.

:func:`run_batch` is what ``hrstream run`` calls. It expands the inputs, lets the output folder's
:class:`~hrstream.runs.manifest.Manifest` name them and decide which are done already, then gives the rest
to an :class:`Executor`:

* :class:`~hrstream.runs.local.Runner`: every input through one pipeline in this process (the default);
* :class:`~hrstream.runs.workers.ProcessExecutor`: ``--workers N`` spawned worker processes;
* :class:`~hrstream.runs.ray_actors.RayExecutor`: ``--executor ray``, Ray Core actors.

Executors report through :class:`RunEvents` (``started`` before an input's outputs are touched, ``progress``,
``finished``); :class:`BatchEvents` turns those reports into manifest writes and a progress display. Only the
process that calls :func:`run_batch` writes the manifest.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

from hrstream.io import expand_inputs
from hrstream.runs.manifest import JobResult, Manifest, Plan, WorkItem

__all__ = [
    "BatchEvents",
    "Executor",
    "OverallProgress",
    "RunEvents",
    "format_status",
    "format_summary",
    "run_batch",
]

log = logging.getLogger(__name__)


class RunEvents(Protocol):
    """What an executor reports about each input (from any thread)."""

    def started(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        """``item`` is about to be processed; returns after the manifest says so (before outputs are touched)."""

    def progress(self, item: WorkItem, frames: int) -> None:
        """``item`` has ``frames`` frames written."""

    def finished(self, item: WorkItem, result: JobResult) -> None:
        """``item`` ended (``result.status`` ``ok`` / ``failed`` / ``interrupted``)."""

    def live(self, item: WorkItem, *, frames: int, drops: int, state: dict[str, Any]) -> None:
        """A live ``item`` while it runs (every few seconds): frames written, frames dropped, and its ``state``
        (``state``, ``reconnects``, ``gaps``, ``gap_s``)."""

    def worker_ready(self, info: dict[str, Any]) -> None:
        """A worker process or actor is ready (``pid``, ``host``, ``device``, ``threads``, ``setup_s``...)."""


class Executor(Protocol):
    """Processes the inputs of a run."""

    #: ``"local"``, ``"processes"`` or ``"ray"`` (recorded in the manifest's run record).
    kind: str

    def execute(self, items: Sequence[WorkItem], events: RunEvents) -> int | None:
        """Process ``items``; returns the signal that stopped the run early, or ``None``."""


class OverallProgress:
    """One progress bar for a whole run (videos done / total, frames/s, ETA), on stderr."""

    def __init__(self, total: int) -> None:
        from tqdm import tqdm

        self._bar = tqdm(total=total, unit="video", desc="hrstream", file=sys.stderr, dynamic_ncols=True)
        self._frames: dict[str, int] = {}
        self._t0 = time.monotonic()
        self._last = 0.0
        self._lock = threading.Lock()

    def progress(self, item: WorkItem, frames: int) -> None:
        with self._lock:
            self._frames[item.key] = frames
            now = time.monotonic()
            if now - self._last >= 0.5:
                self._last = now
                self._postfix(now)

    def _postfix(self, now: float) -> None:
        fps = sum(self._frames.values()) / max(now - self._t0, 1e-6)
        self._bar.set_postfix_str(f"{fps:.1f} frames/s", refresh=True)

    def finished(self, item: WorkItem, result: JobResult) -> None:
        with self._lock:
            self._frames[item.key] = result.frames
            self._postfix(time.monotonic())
            self._bar.update(1)

    def close(self) -> None:
        self._bar.close()


class BatchEvents:
    """The :class:`RunEvents` of :func:`run_batch`: manifest writes, the overall progress, the results."""

    def __init__(self, manifest: Manifest, progress: OverallProgress | None = None) -> None:
        self.manifest = manifest
        self.display = progress
        self.results: dict[str, JobResult] = {}
        self.workers: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def started(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        self.manifest.start(item, attempt=attempt, worker=worker)

    def progress(self, item: WorkItem, frames: int) -> None:
        if self.display is not None:
            self.display.progress(item, frames)

    def finished(self, item: WorkItem, result: JobResult) -> None:
        result.name = item.name
        result.fingerprint = item.fingerprint
        with self._lock:
            self.results[item.name] = result
        self.manifest.finish(item, result)
        if self.display is not None:
            self.display.finished(item, result)

    def live(self, item: WorkItem, *, frames: int, drops: int, state: dict[str, Any]) -> None:
        self.manifest.update(item.key, frames=frames, drops=drops, live=state)
        self.manifest.flush()  # written atomically, only when something changed

    def worker_ready(self, info: dict[str, Any]) -> None:
        with self._lock:
            self.workers.append(dict(info))
            workers = list(self.workers)
        self.manifest.set_run_info(workers=workers)


def expand(specs: Sequence[str], names: Sequence[str | None] | None) -> tuple[list[Any], list[str | None]]:
    """The jobs of ``specs`` (:func:`~hrstream.io.expand_inputs`) and the name given to each (``names[i]``
    names ``specs[i]`` when that spec is one input)."""
    given: list[str | None] = []
    jobs = []
    for i, spec in enumerate(specs):
        expanded = expand_inputs([spec])
        jobs.extend(expanded)
        name = names[i] if names is not None and i < len(names) else None
        given.extend([name] if len(expanded) == 1 else [None] * len(expanded))
    return jobs, given


def run_batch(
    out_dir: Any,
    recipe_digest: str,
    specs: Sequence[str],
    executor: Executor,
    *,
    names: Sequence[str | None] | None = None,
    force: bool = False,
    progress: bool = False,
    run_info: dict[str, Any] | None = None,
) -> tuple[list[JobResult], int | None]:
    """Process ``specs`` into ``out_dir`` with ``executor``, keeping ``OUT/manifest.json``.

    Inputs done by an earlier run with the same recipe (and unchanged outputs) are skipped unless ``force``.
    ``progress``: one overall progress bar (for executors whose workers show none). Returns the results in
    input order (inputs a stopped run never started are left out) and the signal that stopped the run.
    """
    manifest = Manifest.load(out_dir)
    jobs, given = expand(specs, names)
    plan: Plan = manifest.plan(jobs, given, recipe_digest, force=force)
    info = {"recipe": recipe_digest, "executor": executor.kind, **(run_info or {})}
    manifest.begin_run(plan, **info)
    display = OverallProgress(len(plan.todo)) if progress and plan.todo else None
    events = BatchEvents(manifest, display)
    signum: int | None = None
    state = "failed"
    try:
        if plan.todo:
            signum = executor.execute(plan.todo, events)
        state = "interrupted" if signum is not None else "done"
    finally:
        if display is not None:
            display.close()
        manifest.end_run(state)  # type: ignore[arg-type]
    results = []
    for item in plan.items:
        r = plan.skipped.get(item.name) or events.results.get(item.name)
        if r is not None:
            results.append(r)
    return results, signum


def format_summary(results: Sequence[JobResult]) -> str:
    """A table of a run's outcome: inputs, frames and seconds per status, then every failed input's error."""
    rows: dict[str, list[float]] = {}
    for r in results:
        row = rows.setdefault(r.status, [0, 0, 0.0])
        row[0] += 1
        row[1] += r.frames
        row[2] += r.elapsed_s
    lines = [f"{'status':<12}{'inputs':>8}{'frames':>10}{'seconds':>10}{'frames/s':>10}"]
    for status in ("ok", "skipped", "failed", "interrupted"):
        if status in rows:
            n, frames, secs = rows[status]
            rate = f"{frames / secs:.1f}" if secs > 0 and status != "skipped" else "-"
            shown = f"{secs:.1f}" if status != "skipped" else "-"
            lines.append(f"{status:<12}{int(n):>8}{int(frames):>10}{shown:>10}{rate:>10}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        lines.append("failed:")
        lines.extend(f"  {r.error or r.input + ': failed'}" for r in failed)  # errors name their input
    return "\n".join(lines)


def format_status(manifest: Manifest) -> tuple[str, int]:
    """What ``hrstream status OUT`` prints for ``manifest``, and its exit code (1 if any input failed).

    Done: ``ok`` entries; failed: with their errors; running: only while the run holding them is alive;
    remaining: pending, interrupted, and entries left running by a run that stopped (the next run does them).
    """
    groups = manifest.by_status()
    live_run = manifest.run_in_progress()
    running = groups.get("running", []) if live_run is not None else []
    stale = [] if live_run is not None else groups.get("running", [])
    remaining = groups.get("pending", []) + groups.get("interrupted", []) + stale
    failed = groups.get("failed", [])
    done = groups.get("ok", [])
    total = sum(len(v) for v in groups.values())
    lines = [
        f"{manifest.out_dir}: {total} inputs: {len(done)} done, {len(failed)} failed, {len(running)} running, "
        f"{len(remaining)} remaining"
    ]
    if manifest.runs:
        run = manifest.runs[-1]
        if live_run is not None:
            lines.append(
                f"a run is in progress (pid {run.get('pid')} on {run.get('host')}, since {run.get('started')})"
            )
        else:
            lines.append(
                f"last run: {run.get('state')} (started {run.get('started')}, ended {run.get('ended')})"
            )
    if failed:
        lines.append("failed:")
        lines.extend(f"  {e.get('error') or e['input'] + ': failed'}" for e in failed)
    if running:
        lines.append("running:")
        lines.extend(
            f"  {e['input']} (attempt {e.get('attempts', 1)}, since {e.get('updated')})" for e in running
        )
    if remaining:
        lines.append("remaining:")
        for e in remaining:
            why = "left running by a run that stopped" if e["status"] == "running" else e["status"]
            lines.append(f"  {e['input']} ({why})")
    frames = sum(int(e.get("frames") or 0) for e in done)
    secs = sum(float(e.get("elapsed_s") or 0.0) for e in done)
    if done:
        lines.append(f"done: {frames} frames in {secs:.1f} s of processing")
    return "\n".join(lines), (1 if failed else 0)
