"""One scheduling loop for every pool of workers: worker processes (``--workers N``) and Ray actors.

:class:`Scheduler` hands each ready, idle worker one input at a time, and accounts for every input:

* a worker that dies (a segfault in a decoder, the OOM killer, ``os._exit``, a lost node) costs only its
  current input: that input is tried once more on another worker (:data:`MAX_ATTEMPTS` tries in all), then
  marked failed with the cause; a new worker takes the dead one's place;
* an input that runs past ``input_timeout`` has its worker killed and fails (it is not retried: a stuck input
  would most likely stall again);
* a stop request (SIGINT/SIGTERM) hands out nothing more and tells the busy workers to drain; past the grace
  period (2 s after a second signal) they are killed and their inputs end ``interrupted``;
* three workers dying in a row while starting end the run with the cause (no input could ever run).

What differs between pools (how a worker starts, how its messages and its death are seen) sits behind the
small :class:`WorkerPool` interface: :class:`~hrstream.runs.processes.ProcessPool`,
:class:`~hrstream.runs.ray_actors.RayPool`. Progress reports carry the worker's counters, which are merged into
the run's so that its one metrics endpoint and the status lines cover every worker.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from hrstream.errors import ConfigError, HrstreamError
from hrstream.runs.items import WorkItem
from hrstream.runs.lifecycle import RunEvents
from hrstream.runtime import StageStats
from hrstream.runtime.counters import RunCounters
from hrstream.types import SourceResult

__all__ = ["MAX_ATTEMPTS", "PoolEvent", "Scheduler", "WorkerPool", "refuse_live"]

log = logging.getLogger(__name__)

#: Tries of an input whose worker died (the first and one retry).
MAX_ATTEMPTS = 2
#: Workers dying in a row while starting that end the run.
SETUP_DEATHS = 3

EventKind = Literal["ready", "setup_failed", "progress", "done", "error", "lost"]


def refuse_live(items: Sequence[WorkItem]) -> None:
    """Worker processes and actors take files: a live source never ends and would hold a worker for ever."""
    live = [item.display for item in items if item.live]
    if live:
        raise ConfigError(
            f"{live[0]}: live sources (URLs, cameras) run in the main process; "
            "run them without --workers / --executor ray"
        )


@dataclass(frozen=True)
class PoolEvent:
    """Something a pool saw of one of its workers (``handle``):

    * ``ready``: ``data`` its info (``pid``, ``host``, ``device``, ``threads``...);
    * ``setup_failed``: ``data`` ``(message, exit_code)``: it cannot run anything (bad weights, a bad recipe);
    * ``progress``: ``data`` ``(key, frames_written, counters_snapshot)``;
    * ``done``: ``data`` ``(key, SourceResult)``;
    * ``error``: ``data`` a message: hrstream's own code raised for the input (the input fails, the worker lives);
    * ``lost``: ``data`` the cause (``killed by SIGSEGV``): the worker is gone.
    """

    kind: EventKind
    handle: Any
    data: Any = None


class WorkerPool(Protocol):
    """How one kind of worker is started, talked to and watched."""

    #: How messages name a worker and workers (``worker process``, ``Ray actors``); ``flag``: the option that
    #: asks for them.
    noun: str
    nouns: str
    flag: str

    def spawn(self, index: int) -> Any:
        """Start worker ``index`` (it reports ``ready`` when it can take inputs); returns its handle."""

    def send(self, handle: Any, item: WorkItem, attempt: int) -> None:
        """Give a ready, idle worker one input."""

    def tell(self, handle: Any, what: Literal["stop", "abort"]) -> None:
        """Ask a busy worker to drain its input (``stop``) or to stop at once (``abort``)."""

    def kill(self, handle: Any) -> None:
        """End a worker now (it is then reported ``lost``)."""

    def wait(self, handles: Sequence[Any], timeout: float) -> list[PoolEvent]:
        """What happened to the workers, waiting at most ``timeout`` seconds for something."""

    def close(self, handles: Sequence[Any]) -> None:
        """End every worker still there (the run is over)."""


@dataclass(eq=False)
class _Slot:
    index: int
    handle: Any
    info: dict[str, Any] | None = None
    item: WorkItem | None = None
    attempt: int = 0
    since: float = 0.0
    told: str | None = None  # "stop" / "abort" / "killed"
    spawned: float = field(default_factory=time.monotonic)


class Scheduler:
    """Runs a run's inputs on a :class:`WorkerPool` (the :class:`~hrstream.runs.lifecycle.Executor` protocol's
    ``execute`` for process and actor executors; see the module docstring).

    Args:
        pool: starts and watches the workers.
        workers: how many at once.
        grace_s: drain time after a stop request before busy workers are killed.
        input_timeout: seconds an input may take before its worker is killed (``None``: no limit).
        ready_timeout_s: the run fails when no worker is ready this long after the start (``None``: no limit).
    """

    def __init__(
        self,
        pool: WorkerPool,
        *,
        workers: int,
        grace_s: float,
        input_timeout: float | None = None,
        ready_timeout_s: float | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.pool = pool
        self.workers = int(workers)
        self.grace_s = float(grace_s)
        self._drain_s = self.grace_s  # the drain time granted by the stop request in force
        self.input_timeout = input_timeout
        self.ready_timeout_s = ready_timeout_s
        self._slots: list[_Slot] = []
        self._todo: deque[tuple[WorkItem, int]] = deque()
        self._next_index = 0
        self._setup_deaths = 0
        self._stop_requested = False
        self._abort_requested = False
        self._stop_at: float | None = None
        self._started = time.monotonic()

    # the signal handlers call these: flags only, the loop acts on them
    def request_stop(self) -> None:
        self._stop_requested = True

    def abort(self) -> None:
        self._stop_requested = self._abort_requested = True

    def stage_stats(self) -> list[StageStats]:
        return []  # the pipelines run in the workers

    kind = "workers"

    def execute(self, items: Sequence[WorkItem], events: RunEvents, counters: RunCounters) -> None:
        refuse_live(items)
        self._todo.extend((item, 1) for item in items)
        try:
            for _ in range(min(self.workers, len(self._todo))):
                self._spawn()
            while self._slots and (self._todo or self._busy()):
                if self._stop_requested:
                    self._todo.clear()  # never started: they stay pending in the manifest
                    self._tell_busy()
                else:
                    self._dispatch(events)
                for ev in self.pool.wait([s.handle for s in self._slots], 0.2):
                    self._handle(ev, events, counters)
                self._check_time(events)
        finally:
            self.pool.close([s.handle for s in self._slots])
            for s in self._slots:
                if s.item is not None:  # stopped by an error in this process
                    events.finished(s.item, self._result(s, "interrupted"))
            self._slots = []

    # -- the loop ---------------------------------------------------------------------------------------------
    def _busy(self) -> bool:
        return any(s.item is not None for s in self._slots)

    def _spawn(self) -> None:
        index, self._next_index = self._next_index, self._next_index + 1
        self._slots.append(_Slot(index, self.pool.spawn(index)))

    def _slot(self, handle: Any) -> _Slot | None:
        return next((s for s in self._slots if s.handle is handle), None)

    def _result(self, s: _Slot, status: Any, error: str | None = None) -> SourceResult:
        assert s.item is not None
        return SourceResult(
            s.item.display, status, name=s.item.name, error=error, attempts=s.attempt, worker=s.info
        )

    def _dispatch(self, events: RunEvents) -> None:
        for s in self._slots:
            if not self._todo:
                return
            if s.info is None or s.item is not None or s.told is not None:
                continue
            item, attempt = self._todo.popleft()
            events.started(item, attempt=attempt, worker=s.info)
            s.item, s.attempt, s.since = item, attempt, time.monotonic()
            self.pool.send(s.handle, item, attempt)

    def _handle(self, ev: PoolEvent, events: RunEvents, counters: RunCounters) -> None:
        s = self._slot(ev.handle)
        if s is None:
            return
        if ev.kind == "ready":
            s.info = dict(ev.data, worker=s.index, start_s=round(time.monotonic() - s.spawned, 3))
            self._setup_deaths = 0
            log.info(
                "%s %d ready (pid %s on %s, %s, %s threads, %.1f s to start)",
                self.pool.noun,
                s.index,
                s.info.get("pid"),
                s.info.get("host"),
                s.info.get("device"),
                s.info.get("threads"),
                s.info["start_s"],
            )
            events.worker_ready(s.info)
        elif ev.kind == "setup_failed":
            message, code = ev.data
            err = HrstreamError(message)
            err.exit_code = int(code)
            raise err
        elif ev.kind == "progress" and s.item is not None and s.item.key == ev.data[0]:
            _, frames, snapshot = ev.data
            counters.merge(snapshot)
            events.progress(s.item, int(frames))
        elif ev.kind == "done" and s.item is not None and s.item.key == ev.data[0]:
            item, s.item = s.item, None
            events.finished(item, ev.data[1])
        elif ev.kind == "error" and s.item is not None:
            error = f"{s.item.display}: failed in its {self.pool.noun} ({ev.data})"
            log.error("%s", error)
            result = self._result(s, "failed", error)
            item, s.item = s.item, None
            events.finished(item, result)
        elif ev.kind == "lost":
            self._lost(s, str(ev.data), events)

    def _lost(self, s: _Slot, cause: str, events: RunEvents) -> None:
        self._slots.remove(s)
        noun = self.pool.noun
        if s.info is None and s.told != "killed":
            self._setup_deaths += 1
            log.error("%s %d died while starting (%s)", noun, s.index, cause)
            if self._setup_deaths >= SETUP_DEATHS:
                raise HrstreamError(
                    f"{self.pool.nouns} die while starting ({cause}); run without {self.pool.flag} to see why"
                )
        item = s.item
        if item is not None:
            if s.told is not None:
                events.finished(item, self._result(s, "interrupted"))
            elif s.attempt < MAX_ATTEMPTS:
                log.warning(
                    "%s: its %s died (%s); trying it again (attempt %d of %d)",
                    item.display,
                    noun,
                    cause,
                    s.attempt + 1,
                    MAX_ATTEMPTS,
                )
                self._todo.appendleft((item, s.attempt + 1))
            else:
                error = f"{item.display}: its {noun} died on each of {s.attempt} attempts (last: {cause})"
                log.error("%s", error)
                events.finished(item, self._result(s, "failed", error))
        elif s.told is None:
            log.warning("%s %d died while idle (%s)", noun, s.index, cause)
        if not self._stop_requested and (self._todo or self._busy()):
            self._spawn()

    def _check_time(self, events: RunEvents) -> None:
        now = time.monotonic()
        if (
            self.ready_timeout_s is not None
            and not any(s.info is not None for s in self._slots)
            and now - self._started > self.ready_timeout_s
        ):
            raise HrstreamError(
                f"no {self.pool.noun} became ready within {self.ready_timeout_s:.0f} s; "
                "does the cluster have the resources?"
            )
        for s in list(self._slots):
            if s.item is None:
                continue
            if self._stop_at is not None and now > self._stop_at and s.told != "killed":
                log.warning(
                    "%s: did not drain within %g s; killing its %s",
                    s.item.display,
                    self._drain_s,
                    self.pool.noun,
                )
                s.told = "killed"
                self.pool.kill(s.handle)
            elif self.input_timeout is not None and s.told is None and now - s.since > self.input_timeout:
                error = (
                    f"{s.item.display}: timed out after {self.input_timeout:g} s (--input-timeout); "
                    f"its {self.pool.noun} was killed"
                )
                log.error("%s", error)
                result = self._result(s, "failed", error)
                item, s.item = s.item, None
                s.told = "killed"
                self.pool.kill(s.handle)
                events.finished(item, result)

    def _tell_busy(self) -> None:
        what: Literal["stop", "abort"] = "abort" if self._abort_requested else "stop"
        now = time.monotonic()
        if self._stop_at is None:
            self._stop_at, self._drain_s = now + self.grace_s, self.grace_s
        if self._abort_requested and now + 2.0 < self._stop_at:
            self._stop_at, self._drain_s = now + 2.0, 2.0
        for s in self._slots:
            if s.item is not None and s.told not in (what, "abort", "killed"):
                s.told = what
                self.pool.tell(s.handle, what)
