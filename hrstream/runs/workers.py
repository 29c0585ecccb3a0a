"""Worker processes (``hrstream run --workers N``): every core of one machine, one input per worker at a time.

The main process plans the run and alone writes the manifest (:func:`hrstream.runs.batch.run_batch`); it
feeds N worker processes, started with the ``spawn`` method, one input at a time. Each worker runs the same
pipeline as a plain run (:class:`WorkerSession`: :func:`~hrstream.pipeline.builder.prepare` once, then
:meth:`~hrstream.runs.local.Runner.execute` per input) with its own engine, its share of the CPU threads
and, on CUDA, its device (workers spread over the devices in turn). Worker processes sit in their own process
group: Ctrl-C reaches the main process, which tells the busy workers to drain.

A worker that dies (a segfault in a decoder, the OOM killer, ``os._exit``) costs only its current input: that
input is retried once on another worker, then marked failed with the cause; a new worker takes the dead one's
place. ``input_timeout`` ends an input that runs longer: its worker is killed and replaced, the input fails
(it is not retried: a stuck input would most likely stall again).

Test hook: ``HRSTREAM_TEST_FAULTS="NAME=ACTION,..."`` makes the worker processing the input whose output name
is ``NAME`` misbehave after its second frame is written: ``exit`` (``os._exit(70)``, every attempt),
``exit-once`` (first attempt only), ``segv`` (``SIGSEGV``), ``kill`` (``SIGKILL``) or ``stall`` (sleeps for
ever). It is read by the main process and handed to the workers (and to Ray actors) with their settings;
it does nothing unless set.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import socket
import sys
import threading
import time
import types
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from hrstream.errors import ConfigError, HrstreamError
from hrstream.pipeline.recipe import Recipe
from hrstream.runs.batch import RunEvents
from hrstream.runs.manifest import JobResult, WorkItem
from hrstream.runtime import StopOnSignals

__all__ = [
    "FAULTS_ENV",
    "ProcessExecutor",
    "WorkerSession",
    "WorkerSettings",
    "exit_cause",
    "refuse_live",
    "worker_devices",
    "worker_threads",
]

log = logging.getLogger(__name__)

FAULTS_ENV = "HRSTREAM_TEST_FAULTS"
#: Tries of an input whose worker died (the first and one retry).
MAX_ATTEMPTS = 2
_FAULT_ACTIONS = ("exit", "exit-once", "segv", "kill", "stall")
_FAULT_AFTER_FRAMES = 2


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


def worker_devices(device: str, workers: int) -> list[str | None]:
    """The device of each of ``workers`` workers: on CUDA (``device`` ``auto`` or ``cuda`` with GPUs present)
    ``cuda:0``, ``cuda:1``, ... in turn; ``cuda:N`` keeps every worker on N; else ``None`` (the recipe's)."""
    if device == "cpu" or not (device == "auto" or device.startswith("cuda")):
        return [None] * workers
    import torch

    count = torch.cuda.device_count()
    if count == 0 or ":" in device:
        return [None] * workers
    return [f"cuda:{i % count}" for i in range(workers)]


def worker_threads(workers: int, cpus_per_worker: int | None = None) -> int:
    """torch threads per worker: ``cpus_per_worker``, else an equal share of the usable cores (at least 1)."""
    from hrstream.runtime import usable_cpu_count

    if cpus_per_worker is not None:
        return max(1, int(cpus_per_worker))
    return max(1, usable_cpu_count() // max(1, workers))


def exit_cause(exitcode: int | None) -> str:
    """How a worker process ended, in words: ``killed by SIGSEGV``, ``exit code 70``..."""
    if exitcode is None:
        return "lost (no exit status)"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (the out-of-memory killer sends SIGKILL)" if -exitcode == signal.SIGKILL else ""
        return f"killed by {name}{hint}"
    return f"exit code {exitcode}"


def refuse_live(items: Sequence[WorkItem]) -> None:
    """Worker processes and actors take files: a live source never ends and would hold a worker for ever."""
    live = [item.display for item in items if item.live]
    if live:
        raise ConfigError(
            f"{live[0]}: live sources (URLs, cameras) run in the main process; "
            "run them without --workers / --executor ray"
        )


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
    """The :class:`RunEvents` inside a worker: progress goes to ``report``, the result is kept."""

    def __init__(self, report: Callable[[int], None] | None, fault: str | None, attempt: int) -> None:
        self.report = report
        self.fault = fault
        self.attempt = attempt
        self.result: JobResult | None = None

    def started(self, item: WorkItem, *, attempt: int = 1, worker: dict[str, Any] | None = None) -> None:
        return None  # the main process marked it running before handing it over

    def progress(self, item: WorkItem, frames: int) -> None:
        if self.fault is not None and frames >= _FAULT_AFTER_FRAMES:
            _misbehave(self.fault, self.attempt)
        if self.report is not None:
            self.report(frames)

    def finished(self, item: WorkItem, result: JobResult) -> None:
        self.result = result

    def live(self, item: WorkItem, *, frames: int, drops: int, state: dict[str, Any]) -> None:
        return None  # the main process records what a worker's input became when it ends

    def worker_ready(self, info: dict[str, Any]) -> None:
        return None


class WorkerSession:
    """One worker's pipeline: the task prepared once (its own engine), then one input at a time.

    Used by worker processes and by Ray actors. ``device`` overrides the recipe's; ``threads``: torch's CPU
    threads (default: all cores but one, as a plain run).
    """

    def __init__(
        self, settings: WorkerSettings, *, device: str | None = None, threads: int | None = None
    ) -> None:
        from hrstream.pipeline.builder import prepare
        from hrstream.runs.local import Runner

        t0 = time.monotonic()
        recipe = settings.recipe if device is None else settings.recipe.replace(**{"runtime.device": device})
        if threads is not None:
            _limit_threads(threads)
        self.faults = _parse_faults(settings.faults)
        self.prepared = prepare(recipe, settings.out_dir, progress=False)
        self.runner = Runner(self.prepared, grace_s=settings.grace_s, cpu_threads=threads)
        import torch

        self.info: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "device": str(self.prepared.engine.device),
            "threads": torch.get_num_threads(),
            "setup_s": round(time.monotonic() - t0, 3),
        }

    def process(
        self, item: WorkItem, *, attempt: int = 1, progress: Callable[[int], None] | None = None
    ) -> JobResult:
        """Run ``item`` through the pipeline; ``progress(frames_written)`` as it goes."""
        events = _ItemEvents(progress, self.faults.get(item.name), attempt)
        self.runner.execute([item], events)
        result = events.result or JobResult(item.display, "interrupted", name=item.name)
        result.attempts = attempt
        result.worker = dict(self.info)
        return result

    def stop(self) -> None:
        """Stop the input in progress (it drains and ends ``interrupted``)."""
        self.runner.control.request_stop()

    def abort(self) -> None:
        self.runner.control.abort()


def _limit_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        import cv2

        cv2.setNumThreads(threads)
    except ImportError:  # pragma: no cover - cv2 is a dependency
        pass


# -- the worker process ------------------------------------------------------------------------------------
class _PipeLog(logging.Handler):
    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the main process is gone
            self.send(("log", record.levelno, record.name, record.getMessage()))


def _throttled(send: Callable[[tuple[Any, ...]], None], key: str) -> Callable[[int], None]:
    """``progress(frames)`` that sends at most every 0.5 s."""
    last = [0.0]

    def progress(frames: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            send(("progress", key, frames))

    return progress


def _worker_main(settings: WorkerSettings, conn: Connection, device: str | None, threads: int) -> None:
    """A worker process: prepare, say ready, then run what the main process sends until told to exit."""
    os.setpgrp()  # Ctrl-C reaches the main process only; it tells this one what to do
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    lock = threading.Lock()

    def send(msg: tuple[Any, ...]) -> None:
        with lock:
            conn.send(msg)

    root = logging.getLogger()
    root.handlers[:] = [_PipeLog(send)]
    root.setLevel(settings.log_level)
    for noisy in ("libav", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    try:
        session = WorkerSession(settings, device=device, threads=threads)
    except HrstreamError as e:
        send(("setup_failed", str(e), e.exit_code))
        return
    except Exception as e:
        send(("setup_failed", f"worker setup failed: {type(e).__name__}: {e}", 1))
        return
    send(("ready", session.info))
    inbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue()

    def read() -> None:
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):  # the main process is gone: stop at once
                session.abort()
                inbox.put(None)
                return
            if msg[0] == "stop":
                session.stop()
            elif msg[0] == "abort":
                session.abort()
            else:
                inbox.put(msg)

    threading.Thread(target=read, name="hrstream-worker-inbox", daemon=True).start()
    while True:
        msg = inbox.get()
        if msg is None or msg[0] == "exit":
            break
        _, item, attempt = msg
        result = session.process(item, attempt=attempt, progress=_throttled(send, item.key))
        send(("done", item.key, result))


# -- the main process ----------------------------------------------------------------------------------------
@contextlib.contextmanager
def _main_module_hidden() -> Iterator[None]:
    """While a worker is spawned, hide ``__main__`` from multiprocessing so the child does not import it
    again: a worker needs only :func:`_worker_main`, and importing the ``hrstream`` command again (every
    subcommand's imports) added about 3 s to each worker's start on 2 cores."""
    main = sys.modules.get("__main__")
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        if main is not None:
            sys.modules["__main__"] = main


@dataclass(eq=False)
class _Worker:
    index: int
    proc: Any  # multiprocessing's SpawnProcess
    conn: Connection
    device: str | None
    info: dict[str, Any] | None = None
    item: WorkItem | None = None
    attempt: int = 0
    since: float = 0.0
    told: str | None = None  # "stop" / "abort" sent
    spawned: float = field(default_factory=time.monotonic)


class ProcessExecutor:
    """Processes a run's inputs in ``workers`` spawned worker processes (the
    :class:`~hrstream.runs.batch.Executor` protocol; see the module's docstring).

    Args:
        settings: what each worker needs.
        workers: how many worker processes.
        threads: torch threads per worker (:func:`worker_threads`).
        devices: each worker's device (:func:`worker_devices`; ``None``: the recipe's).
        input_timeout: seconds an input may take before its worker is killed (``None``: no limit).
    """

    kind = "processes"

    def __init__(
        self,
        settings: WorkerSettings,
        *,
        workers: int,
        threads: int,
        devices: Sequence[str | None] | None = None,
        input_timeout: float | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.settings = settings
        self.n = int(workers)
        self.threads = int(threads)
        self.devices = list(devices) if devices is not None else [None] * self.n
        self.input_timeout = input_timeout
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._started = 0
        self._setup_deaths = 0
        self._stop_requested = False
        self._abort_requested = False
        self._stop_at: float | None = None

    # StopOnSignals calls these from the signal handler: flags only, the loop acts on them
    def request_stop(self) -> None:
        self._stop_requested = True

    def abort(self) -> None:
        self._stop_requested = self._abort_requested = True

    def execute(self, items: Sequence[WorkItem], events: RunEvents) -> int | None:
        refuse_live(items)
        todo: deque[tuple[WorkItem, int]] = deque((item, 1) for item in items)
        with StopOnSignals(self) as sig:
            try:
                for i in range(min(self.n, len(todo))):
                    self._spawn(i)
                while self._workers and (todo or any(w.item is not None for w in self._workers)):
                    if self._stop_requested:
                        todo.clear()  # never started: they stay pending in the manifest
                        self._tell_busy()
                    else:
                        self._dispatch(todo, events)
                    self._poll(todo, events, timeout=0.2)
                    self._check_time(events)
            finally:
                self._shutdown(events)
        return sig.signum

    # -- workers -------------------------------------------------------------------------------------------
    def _spawn(self, index: int) -> None:
        here, there = self._ctx.Pipe(duplex=True)
        device = self.devices[index % len(self.devices)] if self.devices else None
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.settings, there, device, self.threads),
            name=f"hrstream-worker-{index}",
            daemon=True,
        )
        with _main_module_hidden():
            proc.start()
        there.close()
        self._started += 1
        self._workers.append(_Worker(index, proc, here, device))
        log.debug("worker %d started (pid %d, device %s)", index, proc.pid, device or "recipe's")

    def _dispatch(self, todo: deque[tuple[WorkItem, int]], events: RunEvents) -> None:
        for w in self._workers:
            if not todo:
                return
            if w.info is None or w.item is not None or w.told is not None:
                continue
            item, attempt = todo.popleft()
            events.started(item, attempt=attempt, worker=w.info)
            w.item, w.attempt, w.since = item, attempt, time.monotonic()
            with contextlib.suppress(OSError):  # died just now: _poll sees it and retries the input
                w.conn.send(("run", item, attempt))

    def _poll(self, todo: deque[tuple[WorkItem, int]], events: RunEvents, timeout: float) -> None:
        waitables: list[Any] = [w.conn for w in self._workers] + [w.proc.sentinel for w in self._workers]
        ready = set(wait(waitables, timeout=timeout))
        for w in list(self._workers):
            dead = False
            if w.conn in ready or w.proc.sentinel in ready:
                try:
                    while w.conn.poll():
                        self._message(w, w.conn.recv(), events)
                except (EOFError, OSError):
                    dead = True
            if dead or w.proc.sentinel in ready:
                self._lost(w, todo, events)

    def _message(self, w: _Worker, msg: tuple[Any, ...], events: RunEvents) -> None:
        kind = msg[0]
        if kind == "log":
            _, level, name, text = msg
            logging.getLogger(name).log(level, "%s", text)
        elif kind == "ready":
            w.info = dict(msg[1], worker=w.index, start_s=round(time.monotonic() - w.spawned, 3))
            self._setup_deaths = 0
            log.info(
                "worker %d ready (pid %d, %s, %d threads, %.1f s to start)",
                w.index,
                w.info["pid"],
                w.info["device"],
                w.info["threads"],
                w.info["start_s"],
            )
            events.worker_ready(w.info)
        elif kind == "setup_failed":
            _, message, code = msg
            err = HrstreamError(message)
            err.exit_code = int(code)
            raise err
        elif kind == "progress" and w.item is not None and w.item.key == msg[1]:
            events.progress(w.item, int(msg[2]))
        elif kind == "done" and w.item is not None and w.item.key == msg[1]:
            result: JobResult = msg[2]
            item, w.item = w.item, None
            events.finished(item, result)

    def _lost(self, w: _Worker, todo: deque[tuple[WorkItem, int]], events: RunEvents) -> None:
        self._workers.remove(w)
        w.proc.join(timeout=5.0)
        cause = exit_cause(w.proc.exitcode)
        w.conn.close()
        if w.info is None:
            self._setup_deaths += 1
            log.error("worker %d died while starting (%s)", w.index, cause)
            if self._setup_deaths >= 3:
                raise HrstreamError(
                    f"worker processes die while starting ({cause}); run without --workers to see why"
                )
        item = w.item
        if item is not None:
            if w.told is not None:
                events.finished(
                    item, JobResult(item.display, "interrupted", attempts=w.attempt, worker=w.info)
                )
            elif w.attempt < MAX_ATTEMPTS:
                log.warning(
                    "%s: its worker process died (%s); trying it again (attempt %d of %d)",
                    item.display,
                    cause,
                    w.attempt + 1,
                    MAX_ATTEMPTS,
                )
                todo.appendleft((item, w.attempt + 1))
            else:
                error = (
                    f"{item.display}: the worker process died on each of {w.attempt} attempts (last: {cause})"
                )
                log.error("%s", error)
                result = JobResult(item.display, "failed", error=error, attempts=w.attempt, worker=w.info)
                events.finished(item, result)
        elif w.told is None:
            log.warning("worker %d died while idle (%s)", w.index, cause)
        if not self._stop_requested and (todo or self._busy()):
            self._spawn(w.index)

    def _busy(self) -> bool:
        return any(x.item is not None for x in self._workers)

    def _check_time(self, events: RunEvents) -> None:
        now = time.monotonic()
        for w in self._workers:
            if w.item is None:
                continue
            if self._stop_at is not None and now > self._stop_at:
                log.warning(
                    "%s: did not drain within %.0f s; killing its worker",
                    w.item.display,
                    self.settings.grace_s,
                )
                w.proc.kill()
            elif self.input_timeout is not None and w.told is None and now - w.since > self.input_timeout:
                item, w.item = w.item, None
                error = f"{item.display}: timed out after {self.input_timeout:g} s (--input-timeout); its worker was killed"
                log.error("%s", error)
                w.proc.kill()
                events.finished(
                    item, JobResult(item.display, "failed", error=error, attempts=w.attempt, worker=w.info)
                )

    def _tell_busy(self) -> None:
        what = "abort" if self._abort_requested else "stop"
        if self._stop_at is None:
            self._stop_at = time.monotonic() + self.settings.grace_s
        if self._abort_requested:
            self._stop_at = min(self._stop_at, time.monotonic() + 2.0)
        for w in self._workers:
            if w.item is not None and w.told != what and w.told != "abort":
                w.told = what
                with contextlib.suppress(OSError):
                    w.conn.send((what,))

    def _shutdown(self, events: RunEvents) -> None:
        for w in self._workers:
            with contextlib.suppress(OSError):
                w.conn.send(("exit",))
        deadline = time.monotonic() + 5.0
        for w in self._workers:
            w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if w.proc.is_alive():
                w.proc.kill()
                w.proc.join(timeout=5.0)
            if w.item is not None:  # stopped by an error in the main process
                events.finished(
                    w.item, JobResult(w.item.display, "interrupted", attempts=w.attempt, worker=w.info)
                )
            w.conn.close()
        self._workers = []
