"""What a worker process or a Ray actor runs: the run's networks loaded once, then one input at a time through
the same :class:`~hrstream.runs.local.LocalExecutor` as a plain run.

:class:`WorkerSession` reports each input's progress (frames written, and its counters for the run's one metrics
endpoint) to whoever drives it; the manifest stays with the main process, which planned the inputs and named
them. A worker never serves metrics of its own (``runtime.metrics_port`` is taken out of its recipe).

Test hook: ``HRSTREAM_TEST_FAULTS="NAME=ACTION,..."`` makes the worker processing the input whose output name
is ``NAME`` misbehave after its second frame is written: ``exit`` (``os._exit(70)``, every attempt),
``exit-once`` (first attempt only), ``segv`` (``SIGSEGV``), ``kill`` (``SIGKILL``) or ``stall`` (sleeps for
ever). It is read by the main process and handed to the workers (and to Ray actors) with their settings;
it does nothing unless set.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from hrstream.pipeline.recipe import Recipe
from hrstream.runs.items import WorkItem
from hrstream.runtime.counters import RunCounters
from hrstream.types import SourceResult

__all__ = ["FAULTS_ENV", "WorkerSession", "WorkerSettings"]

log = logging.getLogger(__name__)

FAULTS_ENV = "HRSTREAM_TEST_FAULTS"
_FAULT_ACTIONS = ("exit", "exit-once", "segv", "kill", "stall")
_FAULT_AFTER_FRAMES = 2

#: ``progress(frames_written, counters_snapshot)``: what a worker reports while an input runs.
Progress = Callable[[int, dict[str, Any]], None]


@dataclass(frozen=True)
class WorkerSettings:
    """What every worker needs, sent to it when it starts (picklable).

    ``recipe``: the run's recipe; ``out_dir``: where outputs go (for Ray: a path every node reaches);
    ``grace_s``: drain time after a stop; ``log_level``: the main process's level; ``faults``: the test hook
    (:data:`FAULTS_ENV`).
    """

    recipe: Recipe
    out_dir: str
    grace_s: float = 10.0
    log_level: int = logging.INFO
    faults: str | None = field(default_factory=lambda: os.environ.get(FAULTS_ENV) or None)


def _parse_faults(text: str | None) -> dict[str, str]:
    faults: dict[str, str] = {}
    for part in (text or "").split(","):
        if not part.strip():
            continue
        name, _, action = part.strip().partition("=")
        if action not in _FAULT_ACTIONS:
            raise ValueError(f"{FAULTS_ENV}: {part!r}: expected NAME=ACTION, ACTION one of {_FAULT_ACTIONS}")
        faults[name] = action
    return faults


def _misbehave(action: str, attempt: int) -> None:
    if action == "exit" or (action == "exit-once" and attempt == 1):
        os._exit(70)
    elif action == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    elif action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "stall":
        while True:
            time.sleep(3600)


class _ItemEvents:
    """The run events inside a worker: progress goes to ``report`` (with the counters), the result is kept."""

    def __init__(
        self, report: Progress | None, counters: RunCounters, fault: str | None, attempt: int
    ) -> None:
        self.report = report
        self.counters = counters
        self.fault = fault
        self.attempt = attempt
        self.result: SourceResult | None = None

    def started(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        return None  # the main process marked it running before handing it over

    def progress(self, item: WorkItem, frames: int) -> None:
        if self.fault is not None and frames >= _FAULT_AFTER_FRAMES:
            _misbehave(self.fault, self.attempt)
        if self.report is not None:
            self.report(frames, self.counters.snapshot())

    def finished(self, item: WorkItem, result: SourceResult) -> None:
        self.result = result

    def worker_ready(self, info: dict[str, Any]) -> None:
        return None


class WorkerSession:
    """One worker's pipeline: the networks loaded once (its own engine), then one input at a time.

    ``device`` overrides the recipe's; ``threads``: torch's CPU threads (default: all cores but one, as a plain
    run).
    """

    def __init__(
        self, settings: WorkerSettings, *, device: str | None = None, threads: int | None = None
    ) -> None:
        import torch

        from hrstream.pipeline.builder import load_networks
        from hrstream.runs.local import LocalExecutor

        t0 = time.monotonic()
        recipe = settings.recipe if device is None else settings.recipe.replace(**{"runtime.device": device})
        recipe = _without_metrics(recipe)  # the main process serves every worker's numbers
        if threads is not None:
            _limit_threads(threads)
        self.faults = _parse_faults(settings.faults)
        self.networks = load_networks(recipe, progress=False)
        self.executor = LocalExecutor(
            self.networks, out_dir=settings.out_dir, grace_s=settings.grace_s, cpu_threads=threads
        )
        self.counters = RunCounters()  # the current input's
        self.info: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "device": str(self.networks.device),
            "threads": torch.get_num_threads(),
            "setup_s": round(time.monotonic() - t0, 3),
        }

    def process(self, item: WorkItem, *, attempt: int = 1, progress: Progress | None = None) -> SourceResult:
        """Run ``item`` through the pipeline; ``progress(frames_written, counters)`` as it goes."""
        self.counters = RunCounters()
        events = _ItemEvents(progress, self.counters, self.faults.get(item.name), attempt)
        self.executor.execute([item], events, self.counters)
        result = events.result or SourceResult(item.display, "interrupted", name=item.name)
        result.attempts = attempt
        result.worker = dict(self.info)
        return result

    def snapshot(self) -> dict[str, Any]:
        """The counters of the input this worker runs (or ran last)."""
        return self.counters.snapshot()

    def stop(self) -> None:
        """Stop the input in progress (it drains and ends ``interrupted``)."""
        self.executor.request_stop()

    def abort(self) -> None:
        self.executor.abort()


def _without_metrics(recipe: Recipe) -> Recipe:
    return dataclasses.replace(recipe, runtime=dataclasses.replace(recipe.runtime, metrics_port=None))


def _limit_threads(threads: int) -> None:
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
