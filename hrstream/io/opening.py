"""Opening a live source: is the server there (a cheap probe), how long to wait before the next full open (capped,
jittered backoff), and the open itself in a helper thread so that waiting for it can be interrupted (by the
source closing, or by SIGINT/SIGTERM while the first open is retried in the main thread).
:mod:`hrstream.io.reconnect` decides when to use each."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from hrstream.io.base import Source
from hrstream.io.inputs import InputSpec

__all__ = ["Attempt", "Interrupted", "Probe", "backoff_delay", "interrupt_on_signals", "make_probe"]

#: The port of each URL scheme when the URL names none.
_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}


#: ``probe(timeout_s)``: ``True`` the server answered, ``False`` it is not there (a refused connection, an
#: unreachable host, no device node), ``None`` no answer within the timeout (on its own, not conclusive: a
#: busy server's full listen queue drops connections too).
Probe = Callable[[float], bool | None]


def make_probe(job: InputSpec) -> Probe | None:
    """A cheap check that the server or camera of ``job`` is there (see :data:`Probe`).

    URLs: a TCP connection to the host and port, closed at once without sending anything. Cameras: the device
    node exists. ``None`` where there is nothing to probe.
    """
    if job.kind == "camera":
        device = job.spec if job.spec.startswith("/dev/") else f"/dev/video{job.spec}"
        return lambda timeout_s: os.path.exists(device)
    if job.kind != "url":
        return None
    try:
        parts = urlsplit(job.spec)
        host, port = parts.hostname, parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    except ValueError:
        return None
    if not host or not port:
        return None

    def probe(timeout_s: float) -> bool | None:
        try:
            with socket.create_connection((host, port), timeout=max(0.05, timeout_s)):
                return True
        except TimeoutError:
            return None
        except OSError:
            return False

    return probe


def backoff_delay(attempt: int, base_s: float, max_s: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number ``attempt`` (1 = first retry): ``min(max_s, base_s * 2**(attempt-1))``
    with "equal jitter" (a uniform draw in the upper half of that value), so clients do not retry in lockstep."""
    cap = min(max_s, base_s * 2.0 ** max(0, attempt - 1))
    return cap / 2 + (rng or random).uniform(0.0, cap / 2)


class Attempt:
    """One open in a helper thread, so that waiting for it can be interrupted; an abandoned result is closed."""

    def __init__(self, opener: Callable[[], Source]) -> None:
        self._opener = opener
        self._lock = threading.Lock()
        self.done = threading.Event()
        self.abandoned = False
        self.source: Source | None = None
        self.error: BaseException | None = None
        threading.Thread(target=self._run, name="hrstream-open", daemon=True).start()

    def _run(self) -> None:
        try:
            src = self._opener()
        except BaseException as exc:
            self.error = exc
        else:
            with self._lock:
                if self.abandoned:
                    src.close()
                else:
                    self.source = src
        self.done.set()

    def abandon(self) -> None:
        with self._lock:
            self.abandoned = True
            if self.source is not None:
                self.source.close()
                self.source = None


class Interrupted(Exception):
    """Raised where waiting for an open is cut short (the source is closing or a signal came)."""


@contextmanager
def interrupt_on_signals(event: threading.Event) -> Iterator[None]:
    """While opening in the main thread, let SIGINT/SIGTERM set ``event`` too; previous handlers still run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        event.set()
        prev = old.get(signum)
        if callable(prev):
            prev(signum, frame)
        elif prev == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        prev = signal.getsignal(sig)
        if prev != signal.SIG_IGN and prev is not None:
            old[sig] = prev
            signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, prev in old.items():
            signal.signal(sig, prev)
