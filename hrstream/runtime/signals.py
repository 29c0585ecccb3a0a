"""SIGINT/SIGTERM handling for a running pipeline: first signal drains, a second one aborts.

Usage, in the main thread::

    with StopOnSignals(pipeline) as sig:
        stats = pipeline.run(grace_s=10)
    if sig.signum is not None:
        sys.exit(sig.exit_code)   # 130 for SIGINT, 143 for SIGTERM

The handlers only call ``request_stop()`` / ``abort()`` on the target; the waiting loop of
:meth:`~hrstream.runtime.stages.Pipeline.run` wakes every 50 ms, so Python runs them promptly.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType, TracebackType
from typing import Any, Protocol

__all__ = ["StopOnSignals", "Stoppable"]

logger = logging.getLogger(__name__)


class Stoppable(Protocol):
    """Anything with a graceful and an immediate stop (a :class:`Pipeline` is one)."""

    def request_stop(self) -> None: ...

    def abort(self) -> None: ...


class StopOnSignals:
    """Context manager: installs handlers on enter and restores the previous ones on exit.

    The first SIGINT or SIGTERM calls ``target.request_stop()`` (stop intake, drain, close sinks);
    a second one of either calls ``target.abort()``. Outside the main thread Python cannot install
    handlers, so the manager does nothing there (logged at debug level).

    Attributes:
        signum: the first signal received, or ``None``.
        count: how many signals were received.
    """

    def __init__(self, target: Stoppable, signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> None:
        self.target = target
        self.signals = signals
        self.signum: int | None = None
        self.count = 0
        self._old: dict[int, Any] = {}

    @property
    def exit_code(self) -> int | None:
        """The shell convention ``128 + signum`` (130 SIGINT, 143 SIGTERM), or ``None`` if no signal."""
        return None if self.signum is None else 128 + self.signum

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.count += 1
        name = signal.Signals(signum).name
        if self.signum is None:
            self.signum = signum
            logger.warning("%s received: stopping intake and draining (send again to abort)", name)
            self.target.request_stop()
        else:
            logger.warning("%s received again: aborting", name)
            self.target.abort()

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is not threading.main_thread():
            logger.debug("not in the main thread: signal handlers left as they are")
            return self
        for sig in self.signals:
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
