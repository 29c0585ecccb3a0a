"""Ray Core actors (``hrstream run --executor ray``): the worker code of ``--workers`` on a Ray cluster.

``pip install 'hrstream[ray]'``; Ray is imported only here, when a run asks for it. The driver (the process
running ``hrstream run``) connects to ``--ray-address``, else ``RAY_ADDRESS``, else starts a local cluster
for the run (stopped at its end). Ray's usage statistics stay off unless ``RAY_USAGE_STATS_ENABLED`` is set.

* Actors: one per GPU when the cluster has GPUs and the recipe's device is not ``cpu`` (``num_gpus=1``
  each, so Ray sets the actor's ``CUDA_VISIBLE_DEVICES`` and its ``cuda`` is that GPU), else one per
  ``cpus_per_worker`` CPUs (default 2); ``workers`` sets the number instead (more actors than GPUs share
  them: each asks for ``GPUs / workers`` of one, so several keep one GPU busy). Each actor is a
  :class:`~hrstream.runs.workers.WorkerSession`: the task prepared once, then one input at a time, with
  ``cpus_per_worker`` torch threads.
* The driver loop hands each idle actor one input and waits on the calls with ``ray.wait``. An actor that
  dies (``RayActorError``: a segfault, the OOM killer, ``os._exit``, a lost node) costs its current input:
  that input is tried again on a new actor (at most 2 tries), then marked failed with the cause; a new actor
  takes the dead one's place. An input that runs past ``input_timeout`` has its actor killed (``ray.kill``)
  and fails. Only the driver writes the manifest.
* Paths: inputs and ``--out`` must be reachable at the same path from every node (a shared file system);
  actors read the inputs and write the outputs there, the driver writes ``manifest.json``. Every node needs
  hrstream and the model weights (or their cache, ``$HRSTREAM_HOME``) installed.

Not ``ray.data``: its video reading is alpha and moves every decoded frame through the object store, where
here a frame never leaves the process that decoded it. Not ``ray.util.ActorPool``: it stops silently when
every actor is gone, where this loop replaces dead actors and accounts for every input.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hrstream.errors import ConfigError, HrstreamError
from hrstream.runs.batch import RunEvents
from hrstream.runs.manifest import JobResult, WorkItem
from hrstream.runs.workers import MAX_ATTEMPTS, WorkerSession, WorkerSettings, refuse_live
from hrstream.runtime import StopOnSignals

__all__ = ["RayExecutor", "actor_plan", "import_ray"]

log = logging.getLogger(__name__)

#: CPUs per CPU actor when ``cpus_per_worker`` is not given.
DEFAULT_CPUS_PER_WORKER = 2
#: Seconds to wait for the first actor to be ready (its node may be starting).
READY_TIMEOUT_S = 600.0


def import_ray() -> Any:
    """The ``ray`` module, or a :class:`ConfigError` saying how to install it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ConfigError("--executor ray needs Ray: pip install 'hrstream[ray]'") from None
    return ray


def actor_plan(
    resources: Mapping[str, float], *, device: str, workers: int | None, cpus_per_worker: int | None
) -> tuple[int, dict[str, float]]:
    """How many actors, and the resources each asks for, on a cluster with ``resources``
    (``ray.cluster_resources()``): one per GPU when there are GPUs and ``device`` is not ``cpu`` (with an
    equal share of the CPUs unless ``cpus_per_worker``; ``workers`` more than the GPUs share them, each asking
    for a fraction of a GPU), else one per ``cpus_per_worker`` CPUs.

    Raises:
        ConfigError: not even one actor fits the cluster.
    """
    cpus = int(resources.get("CPU", 0))
    gpus = int(resources.get("GPU", 0))
    if gpus > 0 and device != "cpu":
        n = workers or gpus
        cpw = cpus_per_worker or max(1, cpus // n)
        options = {"num_cpus": float(cpw), "num_gpus": 1.0 if n <= gpus else round(gpus / n, 4)}
    else:
        cpw = cpus_per_worker or min(DEFAULT_CPUS_PER_WORKER, max(1, cpus))
        n, options = workers or max(1, cpus // cpw), {"num_cpus": float(cpw)}
    if cpw > cpus:
        raise ConfigError(
            f"a Ray actor asking for {cpw} CPU(s){' and 1 GPU' if 'num_gpus' in options else ''} does not fit "
            f"the cluster ({cpus} CPUs, {gpus} GPUs); lower --cpus-per-worker"
        )
    return n, options


class _RayWorker:
    """The actor: a :class:`WorkerSession` (made a Ray actor class by :class:`RayExecutor`)."""

    def __init__(self, settings: WorkerSettings, threads: int) -> None:
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(message)s")
        from hrstream.io import install_redaction

        install_redaction()
        self._error: tuple[str, int] | None = None
        self.session: WorkerSession | None = None
        try:
            import ray

            self.session = WorkerSession(settings, threads=threads)
            self.session.info["gpu_ids"] = [str(g) for g in ray.get_gpu_ids()]
        except HrstreamError as e:
            self._error = (str(e), e.exit_code)
        except Exception as e:
            self._error = (f"worker setup failed: {type(e).__name__}: {e}", 1)

    def ready(self) -> tuple[Any, ...]:
        if self._error is not None or self.session is None:
            message, code = self._error or ("worker setup failed", 1)
            return ("setup_failed", message, code)
        return ("ready", self.session.info)

    def process(self, item: WorkItem, attempt: int) -> JobResult:
        assert self.session is not None
        return self.session.process(item, attempt=attempt)

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()


@dataclass(eq=False)
class _Actor:
    index: int
    handle: Any
    info: dict[str, Any] | None = None
    item: WorkItem | None = None
    attempt: int = 0
    since: float = 0.0
    ref: Any = None  # the pending ready() or process() call
    told: bool = False
    spawned: float = field(default_factory=time.monotonic)


def _actor_cause(error: BaseException) -> str:
    """One line from a ``RayActorError``: the worker's exit detail when Ray gives one."""
    text = str(error)
    marker = "Worker exit detail:"
    if marker in text:
        return text.split(marker, 1)[1].strip().split(". ")[0]
    return (text.strip().splitlines() or ["no detail"])[0]


class RayExecutor:
    """Processes a run's inputs on Ray actors (the :class:`~hrstream.runs.batch.Executor` protocol; see the
    module's docstring).

    Args:
        settings: what each actor needs (``settings.out_dir`` must be reachable from every node).
        address: the cluster (``--ray-address``); ``None``: ``RAY_ADDRESS``, else a local cluster for the run.
        workers: how many actors (default: :func:`actor_plan`).
        cpus_per_worker: CPUs (and torch threads) per actor.
        input_timeout: seconds an input may take before its actor is killed (``None``: no limit).
    """

    kind = "ray"

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        address: str | None = None,
        workers: int | None = None,
        cpus_per_worker: int | None = None,
        input_timeout: float | None = None,
    ) -> None:
        self.settings = settings
        self.address = address or os.environ.get("RAY_ADDRESS") or "local"
        self.workers = workers
        self.cpus_per_worker = cpus_per_worker
        self.input_timeout = input_timeout
        self._stop_requested = False
        self._abort_requested = False

    def request_stop(self) -> None:
        self._stop_requested = True

    def abort(self) -> None:
        self._stop_requested = self._abort_requested = True

    def execute(self, items: Sequence[WorkItem], events: RunEvents) -> int | None:
        refuse_live(items)
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
        try:
            n, options = actor_plan(
                ray.cluster_resources(),
                device=self.settings.recipe.runtime.device,
                workers=self.workers,
                cpus_per_worker=self.cpus_per_worker,
            )
            log.info("Ray: %d actor(s), each %s", n, options)
            actor_class = ray.remote(max_concurrency=2, max_restarts=0, **options)(_RayWorker)
            threads = max(1, int(options["num_cpus"]))
            with StopOnSignals(self) as sig:
                _DriverLoop(ray, actor_class, self, threads, events).run(items, min(n, len(items)))
        finally:
            if started_here:
                ray.shutdown()
        return sig.signum


class _DriverLoop:
    """The driver's loop over ``ray.wait``: hands out inputs, replaces dead actors, enforces time limits."""

    def __init__(
        self, ray: Any, actor_class: Any, owner: RayExecutor, threads: int, events: RunEvents
    ) -> None:
        self.ray = ray
        self.actor_class = actor_class
        self.owner = owner
        self.threads = threads
        self.events = events
        self.actors: list[_Actor] = []
        self.todo: deque[tuple[WorkItem, int]] = deque()
        self.setup_deaths = 0
        self.next_index = 0
        self.started = time.monotonic()
        self.stop_at: float | None = None

    def run(self, items: Sequence[WorkItem], n: int) -> None:
        self.todo.extend((item, 1) for item in items)
        try:
            for _ in range(n):
                self._spawn()
            while self.actors and (self.todo or self._busy()):
                if self.owner._stop_requested:
                    self.todo.clear()  # never started: they stay pending in the manifest
                    self._tell_busy()
                else:
                    self._dispatch()
                self._wait(0.2)
                self._check_time()
        finally:
            for a in self.actors:
                if a.item is not None:
                    self.events.finished(a.item, JobResult(a.item.display, "interrupted", attempts=a.attempt))
                self.ray.kill(a.handle, no_restart=True)
            self.actors = []

    def _busy(self) -> bool:
        return any(a.item is not None for a in self.actors)

    def _spawn(self) -> None:
        handle = self.actor_class.remote(self.owner.settings, self.threads)
        actor = _Actor(self.next_index, handle)
        self.next_index += 1
        actor.ref = handle.ready.remote()
        self.actors.append(actor)

    def _dispatch(self) -> None:
        for a in self.actors:
            if not self.todo:
                return
            if a.info is None or a.item is not None:
                continue
            item, attempt = self.todo.popleft()
            self.events.started(item, attempt=attempt, worker=a.info)
            a.item, a.attempt, a.since = item, attempt, time.monotonic()
            a.ref = a.handle.process.remote(item, attempt)

    def _wait(self, timeout: float) -> None:
        refs = [a.ref for a in self.actors if a.ref is not None]
        if not refs:
            time.sleep(timeout)
            return
        done, _ = self.ray.wait(refs, num_returns=1, timeout=timeout)
        for ref in done:
            actor = next((a for a in self.actors if a.ref == ref), None)
            if actor is not None:
                actor.ref = None
                self._collect(actor, ref)

    def _collect(self, a: _Actor, ref: Any) -> None:
        from ray.exceptions import RayActorError, RayTaskError

        try:
            value = self.ray.get(ref)
        except RayActorError as e:
            self._lost(a, _actor_cause(e))
            return
        except RayTaskError as e:  # an exception in hrstream's own code, not a crash: this input fails
            if a.item is None:
                raise HrstreamError(f"a Ray actor failed while starting: {e}") from None
            item, a.item = a.item, None
            error = f"{item.display}: failed in its actor ({str(e).strip().splitlines()[-1]})"
            log.error("%s", error)
            self.events.finished(item, JobResult(item.display, "failed", error=error, attempts=a.attempt))
            return
        if a.info is None:  # the answer of ready()
            if value[0] == "setup_failed":
                err = HrstreamError(value[1])
                err.exit_code = int(value[2])
                raise err
            a.info = dict(value[1], worker=a.index, start_s=round(time.monotonic() - a.spawned, 3))
            self.setup_deaths = 0
            log.info(
                "actor %d ready (pid %d on %s, %s, GPUs %s, %.1f s to start)",
                a.index,
                a.info["pid"],
                a.info["host"],
                a.info["device"],
                a.info.get("gpu_ids") or "none",
                a.info["start_s"],
            )
            self.events.worker_ready(a.info)
            return
        item, a.item = a.item, None
        if item is not None:
            self.events.finished(item, value)

    def _lost(self, a: _Actor, cause: str) -> None:
        self.actors.remove(a)
        if a.info is None:
            self.setup_deaths += 1
            log.error("actor %d died while starting (%s)", a.index, cause)
            if self.setup_deaths >= 3:
                raise HrstreamError(
                    f"Ray actors die while starting ({cause}); run without --executor ray to see why"
                )
        item = a.item
        if item is not None:
            if a.told:
                self.events.finished(
                    item, JobResult(item.display, "interrupted", attempts=a.attempt, worker=a.info)
                )
            elif a.attempt < MAX_ATTEMPTS:
                log.warning(
                    "%s: its actor died (%s); trying it again (attempt %d of %d)",
                    item.display,
                    cause,
                    a.attempt + 1,
                    MAX_ATTEMPTS,
                )
                self.todo.appendleft((item, a.attempt + 1))
            else:
                error = f"{item.display}: its actor died on each of {a.attempt} attempts (last: {cause})"
                log.error("%s", error)
                self.events.finished(
                    item, JobResult(item.display, "failed", error=error, attempts=a.attempt, worker=a.info)
                )
        if not self.owner._stop_requested and (self.todo or self._busy()):
            self._spawn()

    def _check_time(self) -> None:
        now = time.monotonic()
        if not any(a.info is not None for a in self.actors) and now - self.started > READY_TIMEOUT_S:
            raise HrstreamError(
                f"no Ray actor became ready within {READY_TIMEOUT_S:.0f} s; does the cluster have the resources?"
            )
        timeout = self.owner.input_timeout
        for a in list(self.actors):
            if a.item is None:
                continue
            if self.stop_at is not None and now > self.stop_at:
                log.warning("%s: did not drain in time; killing its actor", a.item.display)
                self.ray.kill(a.handle, no_restart=True)
            elif timeout is not None and not a.told and now - a.since > timeout:
                item, a.item = a.item, None
                error = (
                    f"{item.display}: timed out after {timeout:g} s (--input-timeout); its actor was killed"
                )
                log.error("%s", error)
                self.ray.kill(a.handle, no_restart=True)
                self.actors.remove(a)
                self.events.finished(
                    item, JobResult(item.display, "failed", error=error, attempts=a.attempt, worker=a.info)
                )
                if self.todo or self._busy():
                    self._spawn()

    def _tell_busy(self) -> None:
        grace = self.owner.settings.grace_s if not self.owner._abort_requested else 2.0
        deadline = time.monotonic() + grace
        self.stop_at = deadline if self.stop_at is None else min(self.stop_at, deadline)
        for a in self.actors:
            if a.item is not None and not a.told:
                a.told = True
                a.handle.stop.remote()
