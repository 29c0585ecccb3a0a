"""Worker processes (``hrstream run --workers N``): every core of one machine, one input per worker at a time.

The main process plans the run and alone writes the manifest (:func:`hrstream.runs.lifecycle.run_inputs`); the
:class:`~hrstream.runs.scheduler.Scheduler` feeds N worker processes, started with the ``spawn`` method, one
input at a time. Each worker runs the same pipeline as a plain run (:class:`~hrstream.runs.worker.WorkerSession`)
with its own engine, its share of the CPU threads and, on CUDA, its device (workers spread over the devices in
turn). Worker processes sit in their own process group: Ctrl-C reaches the main process, which tells the busy
workers to drain. :class:`ProcessPool` is how the scheduler starts them, talks to them over a pipe each and sees
their deaths (the process's sentinel).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import signal
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Literal

from hrstream.errors import HrstreamError
from hrstream.runs.items import WorkItem
from hrstream.runs.scheduler import PoolEvent, Scheduler
from hrstream.runs.worker import WorkerSession, WorkerSettings
from hrstream.runtime.stages import left_running

__all__ = ["ProcessPool", "exit_cause", "process_executor", "worker_devices", "worker_threads"]

log = logging.getLogger(__name__)


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


# -- the worker process ------------------------------------------------------------------------------------
class _PipeLog(logging.Handler):
    def __init__(self, send: Callable[[tuple[Any, ...]], None]) -> None:
        super().__init__()
        self.send = send

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the main process is gone
            self.send(("log", record.levelno, record.name, record.getMessage()))


def _throttled(send: Callable[[tuple[Any, ...]], None], key: str) -> Callable[[int, dict[str, Any]], None]:
    """``progress(frames, counters)`` that sends at most every 0.5 s."""
    last = [0.0]

    def progress(frames: int, counters: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5:
            last[0] = now
            send(("progress", key, frames, counters))

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
        progress = _throttled(send, item.key)
        result = session.process(item, attempt=attempt, progress=progress)
        send(("progress", item.key, result.frames, session.snapshot()))
        send(("done", item.key, result))
    if left_running():  # an abort left a stage in a network call: its outputs are closed, do not wait for it
        os._exit(0)


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
class _Process:
    proc: Any  # multiprocessing's SpawnProcess
    conn: Connection
    device: str | None


class ProcessPool:
    """Spawned worker processes (the scheduler's :class:`~hrstream.runs.scheduler.WorkerPool`).

    Args:
        settings: what each worker needs.
        threads: torch threads per worker (:func:`worker_threads`).
        devices: each worker's device in turn (:func:`worker_devices`; ``None``: the recipe's).
    """

    noun = "worker process"
    nouns = "worker processes"
    flag = "--workers"

    def __init__(self, settings: WorkerSettings, *, threads: int, devices: Sequence[str | None]) -> None:
        self.settings = settings
        self.threads = int(threads)
        self.devices = list(devices) or [None]
        self._ctx = mp.get_context("spawn")

    def spawn(self, index: int) -> _Process:
        here, there = self._ctx.Pipe(duplex=True)
        device = self.devices[index % len(self.devices)]
        proc = self._ctx.Process(
            target=_worker_main,
            args=(self.settings, there, device, self.threads),
            name=f"hrstream-worker-{index}",
            daemon=True,
        )
        with _main_module_hidden():
            proc.start()
        there.close()
        log.debug("worker %d started (pid %d, device %s)", index, proc.pid, device or "recipe's")
        return _Process(proc, here, device)

    def send(self, handle: _Process, item: WorkItem, attempt: int) -> None:
        with contextlib.suppress(OSError):  # died just now: wait() reports it and the input is retried
            handle.conn.send(("run", item, attempt))

    def tell(self, handle: _Process, what: Literal["stop", "abort"]) -> None:
        with contextlib.suppress(OSError):
            handle.conn.send((what,))

    def kill(self, handle: _Process) -> None:
        handle.proc.kill()

    def wait(self, handles: Sequence[_Process], timeout: float) -> list[PoolEvent]:
        waitables: list[Any] = [h.conn for h in handles] + [h.proc.sentinel for h in handles]
        ready = set(wait(waitables, timeout=timeout))
        out: list[PoolEvent] = []
        for h in handles:
            dead = False
            if h.conn in ready or h.proc.sentinel in ready:
                try:
                    while h.conn.poll():
                        event = self._message(h, h.conn.recv())
                        if event is not None:
                            out.append(event)
                except (EOFError, OSError):
                    dead = True
            if dead or h.proc.sentinel in ready:
                h.proc.join(timeout=5.0)
                h.conn.close()
                out.append(PoolEvent("lost", h, exit_cause(h.proc.exitcode)))
        return out

    @staticmethod
    def _message(h: _Process, msg: tuple[Any, ...]) -> PoolEvent | None:
        kind = msg[0]
        if kind == "log":
            _, level, name, text = msg
            logging.getLogger(name).log(level, "%s", text)
            return None
        if kind == "ready":
            return PoolEvent("ready", h, msg[1])
        if kind == "setup_failed":
            return PoolEvent("setup_failed", h, (msg[1], msg[2]))
        if kind == "progress":
            return PoolEvent("progress", h, (msg[1], msg[2], msg[3]))
        if kind == "done":
            return PoolEvent("done", h, (msg[1], msg[2]))
        return None

    def close(self, handles: Sequence[_Process]) -> None:
        for h in handles:
            with contextlib.suppress(OSError):
                h.conn.send(("exit",))
        deadline = time.monotonic() + 5.0
        for h in handles:
            h.proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if h.proc.is_alive():
                h.proc.kill()
                h.proc.join(timeout=5.0)
            h.conn.close()


class ProcessExecutor(Scheduler):
    """``--workers N``: the :class:`~hrstream.runs.scheduler.Scheduler` over a :class:`ProcessPool`."""

    kind = "processes"


def process_executor(
    settings: WorkerSettings,
    *,
    workers: int,
    threads: int,
    devices: Sequence[str | None] | None = None,
    input_timeout: float | None = None,
) -> ProcessExecutor:
    """An executor of ``workers`` spawned worker processes (live sources refused: they never end)."""
    pool = ProcessPool(settings, threads=threads, devices=devices or [None])
    return ProcessExecutor(pool, workers=workers, grace_s=settings.grace_s, input_timeout=input_timeout)
