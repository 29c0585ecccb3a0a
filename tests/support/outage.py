"""How soon a live source is back after its camera was away: a real RTSP server (``support.rtsp``) stopped for
``outage_s`` seconds and started again on the same port, read by :func:`hrstream.io.reconnect.open_live_source`.

Used by the live tests and by ``benchmarks/reconnect_return.py``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from support.rtsp import RtspServer

from hrstream.io.reconnect import open_live_source

__all__ = ["Return", "measure_return"]


@dataclass
class Return:
    """What one outage cost (seconds, monotonic clock).

    Attributes:
        outage_s: how long the server was away (from its kill to its restart answering).
        return_s: from the restarted server's first answer to the first frame the live source delivered.
        startup_s: a fresh ``open_live_source`` on the restarted server until its first frame: the camera's
            own start-up, which no reconnect can beat.
        gaps: the ``gap`` events the source recorded (their fields).
        attempts: the ``attempts`` of each ``reconnect`` event.
    """

    outage_s: float
    return_s: float
    startup_s: float
    gaps: list[dict[str, Any]] = field(default_factory=list)
    attempts: list[int] = field(default_factory=list)


def measure_return(clip: Path, outage_s: float, **options: Any) -> Return:
    """Read ``clip`` served over RTSP, stop the server for ``outage_s`` once frames flow, start it again and
    time the first frame after it (``options``: passed to ``open_live_source``; 2 s open and read timeouts
    unless given)."""
    options = {"open_timeout_s": 2.0, "read_timeout_s": 2.0, **options}
    server = RtspServer(clip=clip).start()
    arrivals: list[float] = []
    src = open_live_source(server.url, **options)
    done = threading.Event()

    def consume() -> None:
        try:
            for _ in src:
                arrivals.append(time.monotonic())
        finally:
            done.set()

    reader = threading.Thread(target=consume, name="outage-consumer", daemon=True)
    reader.start()
    try:
        _wait(lambda: len(arrivals) >= 30, 30.0, "the first frames")
        t_down = time.monotonic()
        server.kill()
        time.sleep(max(0.0, outage_s - (time.monotonic() - t_down)))
        server = RtspServer(port=server.port, clip=clip).start()
        t_up = time.monotonic()  # it answers from here on
        _wait(lambda: bool(arrivals) and arrivals[-1] > t_up, outage_s + 60.0, "a frame after the restart")
        first = next(t for t in arrivals if t > t_up)
        t0 = time.monotonic()
        with open_live_source(server.url, **options) as fresh:
            next(fresh)
        startup = time.monotonic() - t0
        events = src.take_events()
    finally:
        src.interrupt()
        done.wait(10.0)
        src.close()
        server.kill()
    return Return(
        outage_s=t_up - t_down,
        return_s=first - t_up,
        startup_s=startup,
        gaps=[e.fields for e in events if e.kind == "gap"],
        attempts=[int(e.fields["attempts"]) for e in events if e.kind == "reconnect"],
    )


def _wait(cond: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what}: not within {timeout} s")
