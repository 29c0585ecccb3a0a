"""The numbers of a run, each kept in one place: per source and for the run.

:class:`SourceCounters` holds everything counted about one source: frames decoded (``frames_in``, by its
decode thread), frames its live lane dropped (``drops``, by the :class:`~hrstream.runtime.mux.SourceMux`),
frames written (``frames_out``), outages (``gaps``, ``gap_s``), ``reconnects`` and ``resolution_changes`` (by
the sink stage, from the source's events, in order with its frames), ``segments`` opened, its ``state``, and
the capture-to-written latency of live frames (a cumulative histogram and a sliding window). Every reader
takes its numbers from here: the status lines, the Prometheus endpoint, the manifest and a source's result.

Each counter has one writer thread; readers on other threads see whole values (Python ints and floats), and
:meth:`SourceCounters.snapshot` copies them under a lock so that one snapshot is consistent.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

__all__ = ["LATENCY_BUCKETS_S", "RunCounters", "SourceCounters", "SourceState"]

#: A source's state: the words of a live source (:data:`hrstream.io.reconnect.SourceState`: ``connecting``,
#: ``connected``, ``reconnecting``, ``gave_up``, ``ended``), a file's ``reading``, and ``stopped``.
SourceState = Literal["connecting", "reading", "connected", "reconnecting", "gave_up", "ended", "stopped"]

#: Upper bounds (seconds) of the capture-to-written latency histogram of live sources.
LATENCY_BUCKETS_S: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


@dataclass(eq=False)
class SourceCounters:
    """What is counted about one source (see the module docstring). ``window_s``: the sliding window of the
    latency percentiles."""

    name: str
    live: bool
    frames_in: int = 0
    frames_out: int = 0
    drops: int = 0
    reconnects: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    resolution_changes: int = 0
    segments: int = 0
    state: str = "connecting"
    state_of: Any = field(default=None, repr=False)  # () -> str: a live source's own state while it runs
    started: float = field(default_factory=time.monotonic)
    window_s: float = 30.0
    latency_count: int = 0
    latency_sum: float = 0.0
    latency_buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_S))
    _window: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=100_000), repr=False)
    _shown: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=10_000), repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def written(self, captured_at: float | None, now: float | None = None) -> None:
        """One frame written; ``captured_at`` (wall clock) adds its latency (live frames)."""
        with self._lock:
            self.frames_out += 1
            if captured_at is None:
                return
            now = time.time() if now is None else now
            lat = max(0.0, now - float(captured_at))
            self.latency_count += 1
            self.latency_sum += lat
            for i, bound in enumerate(LATENCY_BUCKETS_S):
                if lat <= bound:
                    self.latency_buckets[i] += 1
                    break
            self._window.append((now, lat))

    def shown(self, latency_s: float, now: float | None = None) -> None:
        """A frame was sent to a viewer ``latency_s`` after its capture (the live view's capture-to-screen)."""
        now = time.time() if now is None else now
        with self._lock:
            self._shown.append((now, max(0.0, float(latency_s))))

    def event(self, kind: str, fields: dict[str, Any]) -> None:
        """A live source's event (``gap``, ``reconnect``, ``resolution``, ``give_up``), as written to its JSONL."""
        with self._lock:
            if kind == "reconnect":
                self.reconnects += 1
            elif kind == "gap":
                self.gaps += 1
                self.gap_s += float(fields.get("duration_s", 0.0))
            elif kind == "resolution":
                self.resolution_changes += 1
            elif kind == "give_up":
                self.state = "gave_up"

    def latency(self, now: float | None = None, *, shown: bool = False) -> dict[str, float] | None:
        """``{"p50", "p95", "max"}`` seconds from capture to written (``shown``: to a viewer) of the frames of the
        last ``window_s``, or ``None``."""
        now = time.time() if now is None else now
        window = self._shown if shown else self._window
        with self._lock:
            while window and window[0][0] < now - self.window_s:
                window.popleft()
            if not window:
                return None
            lat = np.fromiter((x for _, x in window), np.float64)
        return {
            "p50": float(np.percentile(lat, 50)),
            "p95": float(np.percentile(lat, 95)),
            "max": float(lat.max()),
        }

    def current_state(self) -> str:
        """``state``, or while the source runs (``reading``/``connected``), its own word for it (a live source:
        ``connected``, ``reconnecting``...)."""
        state = self.state
        if state in ("reading", "connected") and self.state_of is not None:
            try:
                return str(self.state_of())
            except Exception:  # a source being torn down
                return state
        return state

    def snapshot(self) -> dict[str, Any]:
        """Every number, JSON-ready (what the status lines, Prometheus and the manifest read)."""
        latency = self.latency()
        shown = self.latency(shown=True)
        state = self.current_state()
        with self._lock:
            return {
                "live": self.live,
                "state": state,
                "frames_in": self.frames_in,
                "frames_out": self.frames_out,
                "drops": self.drops,
                "reconnects": self.reconnects,
                "gaps": self.gaps,
                "gap_s": round(self.gap_s, 3),
                "resolution_changes": self.resolution_changes,
                "segments": self.segments,
                "latency_s": latency,
                "screen_latency_s": shown,
                "latency_hist": {
                    "count": self.latency_count,
                    "sum": self.latency_sum,
                    "buckets": list(self.latency_buckets),
                },
            }


class RunCounters:
    """The :class:`SourceCounters` of every source of a run, by name, and the run's own numbers.

    A source's counters are made when its decode thread starts (:meth:`source`) and kept until the run ends,
    so a finished source still reads its totals. Sources of other processes (worker processes, Ray actors)
    are merged in as snapshots (:meth:`merge`).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, SourceCounters] = {}
        self._remote: dict[str, dict[str, Any]] = {}

    def source(self, name: str, *, live: bool) -> SourceCounters:
        """The counters of ``name``, made on first use."""
        with self._lock:
            c = self._sources.get(name)
            if c is None:
                c = self._sources[name] = SourceCounters(name, live)
            return c

    def get(self, name: str) -> SourceCounters | None:
        with self._lock:
            return self._sources.get(name)

    def forget(self, name: str) -> None:
        """Drop a source's counters (a long-running service whose source was removed)."""
        with self._lock:
            self._sources.pop(name, None)
            self._remote.pop(name, None)

    def merge(self, snapshots: dict[str, dict[str, Any]]) -> None:
        """Take the snapshots of sources counted in another process (a worker's)."""
        with self._lock:
            self._remote.update({k: dict(v) for k, v in snapshots.items()})

    def snapshot(self) -> dict[str, dict[str, Any]]:
        """``{source: SourceCounters.snapshot()}`` of every source, this process's and merged ones."""
        with self._lock:
            local = dict(self._sources)
            out = {k: dict(v) for k, v in self._remote.items()}
        out.update({k: c.snapshot() for k, c in local.items()})
        return out
