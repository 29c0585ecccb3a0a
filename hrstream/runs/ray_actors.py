"""Ray Core actors (``hrstream run --executor ray``): the worker code of ``--workers`` on a Ray cluster.

``pip install 'hrstream[ray]'``; Ray is imported only here, when a run asks for it. The driver (the process
running ``hrstream run``) connects to ``--ray-address``, else ``RAY_ADDRESS``, else starts a local cluster
for the run (stopped at its end). Ray's usage statistics stay off unless ``RAY_USAGE_STATS_ENABLED`` is set.

* Actors: one per GPU when the cluster has GPUs and the recipe's device is not ``cpu`` (``num_gpus=1``
  each, so Ray sets the actor's ``CUDA_VISIBLE_DEVICES`` and its ``cuda`` is that GPU), else one per
  ``cpus_per_worker`` CPUs (default 2); ``workers`` sets the number instead (more actors than GPUs share
  them: each asks for ``GPUs / workers`` of one, so several keep one GPU busy). Each actor is a
  :class:`~hrstream.runs.worker.WorkerSession`: the task prepared once, then one input at a time, with
  ``cpus_per_worker`` torch threads.
* The driver runs the same :class:`~hrstream.runs.scheduler.Scheduler` as worker processes (dispatch, a lost
  actor's input retried once, the per-input timeout, stop); :class:`RayPool` is how it starts actors and
  sees their calls end with ``ray.wait``: ``RayActorError`` means the actor died (a segfault, the OOM killer,
  ``os._exit``, a lost node), ``RayTaskError`` that hrstream's own code raised for the input (it fails, the
  actor lives). Every second the driver asks each busy actor for its progress and counters (the run's one
  metrics endpoint covers them). Only the driver writes the manifest.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from hrstream.errors import ConfigError, HrstreamError
from hrstream.runs.items import WorkItem
from hrstream.runs.lifecycle import RunEvents
from hrstream.runs.scheduler import PoolEvent, Scheduler, refuse_live
from hrstream.runs.worker import WorkerSession, WorkerSettings
from hrstream.runtime.counters import RunCounters
from hrstream.types import SourceResult

__all__ = ["RayExecutor", "RayPool", "actor_plan", "import_ray"]

log = logging.getLogger(__name__)

#: CPUs per CPU actor when ``cpus_per_worker`` is not given.
DEFAULT_CPUS_PER_WORKER = 2
#: Seconds to wait for the first actor to be ready (its node may be starting).
READY_TIMEOUT_S = 600.0
#: Seconds between the driver's progress questions to a busy actor.
PROGRESS_S = 1.0


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
    """The actor: a :class:`WorkerSession` (made a Ray actor class by :class:`RayPool`)."""

    def __init__(self, settings: WorkerSettings, threads: int) -> None:
        logging.basicConfig(level=settings.log_level, format="%(levelname)s %(message)s")
        from hrstream.io import install_redaction

        install_redaction()
        self._error: tuple[str, int] | None = None
        self.session: WorkerSession | None = None
        self._frames = 0
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

    def process(self, item: WorkItem, attempt: int) -> SourceResult:
        assert self.session is not None
        self._frames = 0

        def progress(frames: int, counters: dict[str, Any]) -> None:
            self._frames = frames

        return self.session.process(item, attempt=attempt, progress=progress)

    def progress(self) -> tuple[int, dict[str, Any]]:
        """Frames written of the input in progress, and the actor's counters (answered while it runs)."""
        assert self.session is not None
        return self._frames, self.session.snapshot()

    def stop(self) -> None:
        if self.session is not None:
            self.session.stop()


@dataclass(eq=False)
class _Actor:
    handle: Any
    ready_ref: Any = None  # the pending ready() call
    call_ref: Any = None  # the pending process() call
    key: str | None = None  # the input of call_ref
    progress_ref: Any = None
    asked: float = 0.0
    alive: bool = True
    killed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


def _actor_cause(error: BaseException) -> str:
    """One line from a ``RayActorError``: the worker's exit detail when Ray gives one."""
    text = str(error)
    marker = "Worker exit detail:"
    if marker in text:
        return text.split(marker, 1)[1].strip().split(". ")[0]
    return (text.strip().splitlines() or ["no detail"])[0]


class RayPool:
    """Ray actors, one :class:`WorkerSession` each (the scheduler's :class:`~hrstream.runs.scheduler.WorkerPool`).

    Args:
        ray: the ``ray`` module (initialised).
        actor_class: :class:`_RayWorker` made a Ray actor class with the resources each actor asks for.
        settings: what each actor needs; ``threads``: torch threads per actor.
    """

    noun = "actor"
    nouns = "Ray actors"
    flag = "--executor ray"

    def __init__(self, ray: Any, actor_class: Any, settings: WorkerSettings, threads: int) -> None:
        self.ray = ray
        self.actor_class = actor_class
        self.settings = settings
        self.threads = threads

    def spawn(self, index: int) -> _Actor:
        handle = self.actor_class.remote(self.settings, self.threads)
        return _Actor(handle, ready_ref=handle.ready.remote())

    def send(self, actor: _Actor, item: WorkItem, attempt: int) -> None:
        actor.call_ref, actor.key, actor.asked = (
            actor.handle.process.remote(item, attempt),
            item.key,
            time.monotonic(),
        )

    def tell(self, actor: _Actor, what: Literal["stop", "abort"]) -> None:
        actor.handle.stop.remote()

    def kill(self, actor: _Actor) -> None:
        actor.killed = True
        self.ray.kill(actor.handle, no_restart=True)

    def wait(self, actors: Sequence[_Actor], timeout: float) -> list[PoolEvent]:
        now = time.monotonic()
        for a in actors:  # ask the busy ones how far they are
            if a.call_ref is not None and a.progress_ref is None and now - a.asked >= PROGRESS_S:
                a.progress_ref, a.asked = a.handle.progress.remote(), now
        refs = {}
        for a in actors:
            for ref in (a.ready_ref, a.call_ref, a.progress_ref):
                if ref is not None:
                    refs[ref] = a
        if not refs:
            time.sleep(timeout)
            return []
        done, _ = self.ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        out: list[PoolEvent] = []
        for ref in done:
            a = refs[ref]
            if a.alive:
                out.extend(self._collect(a, ref))
        return out

    def _collect(self, a: _Actor, ref: Any) -> list[PoolEvent]:
        from ray.exceptions import RayActorError, RayTaskError

        which = "ready" if ref is a.ready_ref else "call" if ref is a.call_ref else "progress"
        if which == "ready":
            a.ready_ref = None
        elif which == "call":
            a.call_ref = None
        else:
            a.progress_ref = None
        try:
            value = self.ray.get(ref)
        except RayActorError as e:
            a.alive = False
            return [PoolEvent("lost", a, "killed" if a.killed else _actor_cause(e))]
        except RayTaskError as e:  # an exception in hrstream's own code, not a crash
            if which == "ready":
                raise HrstreamError(f"a Ray actor failed while starting: {e}") from None
            if which == "progress":
                return []
            return [PoolEvent("error", a, str(e).strip().splitlines()[-1])]
        if which == "ready":
            kind = "ready" if value[0] == "ready" else "setup_failed"
            return [PoolEvent(kind, a, value[1] if kind == "ready" else (value[1], value[2]))]
        if which == "progress":
            frames, counters = value
            return [PoolEvent("progress", a, (a.key, frames, counters))] if a.call_ref is not None else []
        return [PoolEvent("done", a, (a.key, value))]

    def close(self, actors: Sequence[_Actor]) -> None:
        for a in actors:
            self.ray.kill(a.handle, no_restart=True)


class RayExecutor(Scheduler):
    """``--executor ray``: the :class:`~hrstream.runs.scheduler.Scheduler` over a :class:`RayPool` on the cluster
    at ``address`` (``None``: ``RAY_ADDRESS``, else a local cluster for the run, stopped at its end).

    Args:
        settings: what each actor needs (``settings.out_dir`` must be reachable from every node).
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
        super().__init__(
            None,  # type: ignore[arg-type]  (the pool is made when the cluster is known)
            workers=workers or 1,
            grace_s=settings.grace_s,
            input_timeout=input_timeout,
            ready_timeout_s=READY_TIMEOUT_S,
        )
        self.settings = settings
        self.address = address or os.environ.get("RAY_ADDRESS") or "local"
        self.requested_workers = workers
        self.cpus_per_worker = cpus_per_worker

    def execute(self, items: Sequence[WorkItem], events: RunEvents, counters: RunCounters) -> None:
        refuse_live(items)
        ray = import_ray()
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=self.address, include_dashboard=False, logging_level=logging.WARNING)
        try:
            n, options = actor_plan(
                ray.cluster_resources(),
                device=self.settings.recipe.runtime.device,
                workers=self.requested_workers,
                cpus_per_worker=self.cpus_per_worker,
            )
            log.info("Ray: %d actor(s), each %s", n, options)
            actor_class = ray.remote(max_concurrency=3, max_restarts=0, **options)(_RayWorker)
            self.pool = RayPool(ray, actor_class, self.settings, max(1, int(options["num_cpus"])))
            self.workers = n
            super().execute(items, events, counters)
        finally:
            if started_here:
                ray.shutdown()
