"""Watching a run while it lasts: a status line per live source, the manifest's live state, the metrics endpoint.

:class:`RunMonitor` reads the run's one :class:`~hrstream.runtime.counters.RunCounters` (frames in and out,
drops, reconnects, gaps and their seconds, state, capture-to-written latency) and the stages of the pipeline in
this process (queue depths, busy seconds). Every ``status_s`` seconds it logs one line per live source (INFO:
hidden by ``--quiet``; files have progress bars) and hands the snapshot to ``on_tick`` (the manifest's live
state); with ``metrics_port`` it serves the same numbers on ``127.0.0.1:PORT/metrics``
(:mod:`hrstream.runs.metrics`). A run over worker processes has one endpoint, here, with every worker's sources
(their counters are merged into the run's as they report).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from hrstream.errors import HrstreamError
from hrstream.runtime import StageStats
from hrstream.runtime.counters import RunCounters

__all__ = ["RunMonitor", "status_line"]

log = logging.getLogger(__name__)


def status_line(name: str, s: dict[str, Any], fps: float) -> str:
    """One source's status: state, frames in and out (and ``fps`` written since the last line), drops,
    reconnects, gaps, latency over the window."""
    line = (
        f"{name}: {s['state']}, {s['frames_in']} frames in, {s['frames_out']} out ({fps:.1f} fps), "
        f"{s['drops']} dropped, {s['reconnects']} reconnects, {s['gaps']} gaps ({s['gap_s']:.1f} s)"
    )
    lat = s["latency_s"]
    if lat is not None:
        line += f", latency p50 {lat['p50']:.2f} s p95 {lat['p95']:.2f} s max {lat['max']:.2f} s"
    return line


class RunMonitor:
    """Status lines and the metrics endpoint of a run.

    Args:
        counters: the run's counters.
        stages: ``() -> [StageStats]`` of the pipeline running in this process (none for worker processes).
        status_s: seconds between status lines (``None``: no status line, no tick).
    """

    def __init__(
        self, counters: RunCounters, stages: Callable[[], list[StageStats]], *, status_s: float | None = 5.0
    ) -> None:
        self.counters = counters
        self.stages = stages
        self.status_s = status_s
        self.on_tick: Callable[[dict[str, dict[str, Any]]], None] | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._last: dict[str, tuple[float, int]] = {}

    def status_lines(self) -> list[str]:
        """One line per live source, the rate measured since the previous call."""
        now = time.monotonic()
        lines = []
        for name, s in self.counters.snapshot().items():
            if not s["live"]:
                continue
            t0, n0 = self._last.get(name, (now, s["frames_out"]))
            fps = (s["frames_out"] - n0) / (now - t0) if now > t0 else 0.0
            self._last[name] = (now, s["frames_out"])
            lines.append(status_line(name, s, fps))
        return lines

    def start(self, *, metrics_port: int | None = None) -> None:
        """Start the status lines (a thread) and, with ``metrics_port``, the Prometheus endpoint."""
        if metrics_port is not None:
            from hrstream.runs.metrics import serve_metrics

            self._server = serve_metrics(self.counters, self.stages, metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        if self.status_s is not None:
            self._thread = threading.Thread(target=self._loop, name="hrstream-status", daemon=True)
            self._thread.start()

    def _loop(self) -> None:
        assert self.status_s is not None
        while not self._stop.wait(self.status_s):
            self.tick()

    def tick(self) -> None:
        """Log the status lines and hand the snapshot to ``on_tick``."""
        for line in self.status_lines():
            log.info("%s", line)
        if self.on_tick is not None:
            try:
                self.on_tick(self.counters.snapshot())
            except HrstreamError as e:  # a manifest that cannot be written: one line, the status lines go on
                log.error("%s", e)
            except Exception:  # a failed manifest write must not stop the status lines
                log.exception("updating the run's state failed")

    def close(self) -> None:
        """Stop the status lines (logging the last ones; the sources' results have the last word in the
        manifest) and the metrics endpoint."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
            for line in self.status_lines():
                log.info("%s", line)
        if self._server is not None:
            server, _thread = self._server
            server.shutdown()
            server.server_close()
            self._server = None
