"""Numbers to watch while a run lasts: per source and for the shared pipeline, as status lines and Prometheus.

Per source (:class:`SourceWatch`): frames decoded (in) and written (out), frames its live lane dropped,
reconnects, gaps and their seconds, its state (``connecting``, ``connected``, ``reconnecting``, ``gave_up``,
``ended``), and the latency from capture (the wall clock when a live frame was decoded, ``captured_at``) to its
results being written, as p50 / p95 / max over a sliding window (``window_s``). For the pipeline: queue depths,
frames per network call, the network's busy seconds.

:class:`RunMonitor` logs one status line per source every ``status_s`` seconds (INFO: hidden by ``--quiet``)
and, with ``metrics_port``, serves the numbers on ``127.0.0.1:PORT/metrics`` in the Prometheus text format
(``prometheus-client``; labels: the source's name, never its URL).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hrstream.types import FrameResult

__all__ = ["RunMonitor", "SourceWatch", "run_monitor"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class SourceWatch:
    """What the monitor knows of one source; ``latency`` holds ``(written_at, seconds)`` pairs of the window."""

    name: str
    live: bool
    frames_out: int = 0
    reconnects: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    state: str = "connecting"
    latency: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=100_000))

    def latency_stats(self, now: float, window_s: float) -> tuple[float, float, float] | None:
        """``(p50, p95, max)`` seconds of the frames written in the last ``window_s``, or ``None``."""
        while self.latency and self.latency[0][0] < now - window_s:
            self.latency.popleft()
        if not self.latency:
            return None
        lat = np.fromiter((x for _, x in self.latency), np.float64)
        return float(np.percentile(lat, 50)), float(np.percentile(lat, 95)), float(lat.max())


class RunMonitor:
    """Watches a run's sources and pipeline.

    Args:
        frames_in: ``() -> {source: frames decoded}`` (the decode threads' counts).
        drops: ``(source) -> frames dropped`` by its live lane.
        states: ``() -> {source: state}`` of the sources being read.
        queues: ``() -> {queue name: depth}``.
        stages: ``() -> {stage name: (items in, items out, busy seconds)}``.
        status_s: seconds between status lines (``None``: no status line).
        window_s: the latency window.
    """

    def __init__(
        self,
        *,
        frames_in: Callable[[], dict[str, int]],
        drops: Callable[[str], int],
        states: Callable[[], dict[str, str]],
        queues: Callable[[], dict[str, int]],
        stages: Callable[[], dict[str, tuple[int, int, float]]],
        status_s: float | None = 5.0,
        window_s: float = 30.0,
    ) -> None:
        self._frames_in, self._drops, self._states = frames_in, drops, states
        self._queues, self._stages = queues, stages
        self.status_s, self.window_s = status_s, window_s
        self.sources: dict[str, SourceWatch] = {}
        self._dropped_final: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self._last: dict[str, tuple[float, int]] = {}
        self.on_tick: Callable[[dict[str, Any]], None] | None = None  # with each status line: the snapshot

    # -- what the router reports --------------------------------------------------------------------
    def started(self, source: str, *, live: bool) -> None:
        with self._lock:
            self.sources[source] = SourceWatch(source, live, state="connected")

    def written(self, result: FrameResult) -> None:
        w = self.sources.get(result.frame.source_id)
        if w is None:
            return
        now = time.time()
        with self._lock:
            w.frames_out += 1
            if result.frame.captured_at is not None:
                w.latency.append((now, now - float(result.frame.captured_at)))

    def event(self, source: str, kind: str, fields: dict[str, Any]) -> None:
        w = self.sources.get(source)
        if w is None:
            return
        with self._lock:
            if kind == "reconnect":
                w.reconnects += 1
            elif kind == "gap":
                w.gaps += 1
                w.gap_s += float(fields.get("duration_s", 0.0))
            elif kind == "give_up":
                w.state = "gave_up"

    def ended(self, source: str, *, gave_up: bool, drops: int) -> None:
        w = self.sources.get(source)
        if w is not None:
            with self._lock:
                w.state = "gave_up" if gave_up else "ended"
                self._dropped_final[source] = drops

    # -- snapshots ------------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        """Every number, JSON-ready: ``{"sources": {name: {...}}, "queues": {...}, "stages": {...}}``."""
        now = time.time()
        frames_in, states = self._frames_in(), self._states()
        out: dict[str, Any] = {"sources": {}, "queues": self._queues(), "stages": {}}
        with self._lock:
            for name, w in self.sources.items():
                if name in states and w.state not in ("gave_up", "ended"):
                    w.state = states[name]
                lat = w.latency_stats(now, self.window_s)
                out["sources"][name] = {
                    "live": w.live,
                    "state": w.state,
                    "frames_in": frames_in.get(name, w.frames_out),
                    "frames_out": w.frames_out,
                    "drops": self._dropped_final.get(name, self._drops(name)),
                    "reconnects": w.reconnects,
                    "gaps": w.gaps,
                    "gap_s": round(w.gap_s, 3),
                    "latency_s": None if lat is None else dict(zip(("p50", "p95", "max"), lat, strict=True)),
                }
        for name, (n_in, n_out, busy) in self._stages().items():
            out["stages"][name] = {"items_in": n_in, "items_out": n_out, "busy_s": busy}
        return out

    def status_lines(self) -> list[str]:
        """One line per source: state, frames, rate since the previous line, drops, gaps, latency."""
        snap, now = self.snapshot(), time.monotonic()
        lines = []
        for name, s in snap["sources"].items():
            if not s["live"]:
                continue  # files have their progress bars
            t0, n0 = self._last.get(name, (now, s["frames_out"]))
            fps = (s["frames_out"] - n0) / (now - t0) if now > t0 else 0.0
            self._last[name] = (now, s["frames_out"])
            line = (
                f"{name}: {s['state']}, {s['frames_in']} frames in, {s['frames_out']} out ({fps:.1f} fps), "
                f"{s['drops']} dropped, {s['reconnects']} reconnects, {s['gaps']} gaps ({s['gap_s']:.1f} s)"
            )
            if s["latency_s"] is not None:
                lat = s["latency_s"]
                line += f", latency p50 {lat['p50']:.2f} s p95 {lat['p95']:.2f} s max {lat['max']:.2f} s"
            lines.append(line)
        return lines

    # -- running --------------------------------------------------------------------------------------
    def start(self, *, metrics_port: int | None = None) -> None:
        """Start the status lines (a thread) and, with ``metrics_port``, the Prometheus endpoint."""
        if metrics_port is not None:
            self._server = _serve(self, metrics_port)
            log.info("metrics on http://127.0.0.1:%d/metrics", metrics_port)
        if self.status_s is not None:
            self._thread = threading.Thread(target=self._status_loop, name="hrstream-status", daemon=True)
            self._thread.start()

    def _status_loop(self) -> None:
        assert self.status_s is not None
        while not self._stop.wait(self.status_s):
            for line in self.status_lines():
                log.info("%s", line)
            if self.on_tick is not None:
                try:
                    self.on_tick(self.snapshot())
                except Exception:  # a failed manifest write must not stop the status lines
                    log.exception("updating the run's state failed")

    def close(self) -> None:
        """Stop the status lines (logging the last ones) and the metrics endpoint."""
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


def _serve(monitor: RunMonitor, port: int) -> Any:
    """A Prometheus endpoint on 127.0.0.1:``port`` over a registry of its own holding only the run's numbers."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(monitor))
    return start_http_server(port, addr="127.0.0.1", registry=registry)


class _Collector:
    """Turns :meth:`RunMonitor.snapshot` into metric families at each scrape."""

    def __init__(self, monitor: RunMonitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        snap = self.monitor.snapshot()
        src = snap["sources"]

        def per_source(kind: type, name: str, doc: str, key: str) -> Any:
            fam = kind(name, doc, labels=["source"])
            for s, v in src.items():
                fam.add_metric([s], float(v[key]))
            return fam

        yield per_source(CounterMetricFamily, "hrstream_source_frames_in", "Frames decoded.", "frames_in")
        yield per_source(CounterMetricFamily, "hrstream_source_frames_out", "Frames written.", "frames_out")
        yield per_source(
            CounterMetricFamily, "hrstream_source_dropped_frames", "Live frames dropped.", "drops"
        )
        yield per_source(CounterMetricFamily, "hrstream_source_reconnects", "Reconnections.", "reconnects")
        yield per_source(CounterMetricFamily, "hrstream_source_gaps", "Outages.", "gaps")
        yield per_source(CounterMetricFamily, "hrstream_source_gap_seconds", "Outage seconds.", "gap_s")
        up = GaugeMetricFamily("hrstream_source_up", "1 while the source delivers frames.", labels=["source"])
        state = GaugeMetricFamily(
            "hrstream_source_state", "The source's state (1 for its state).", labels=["source", "state"]
        )
        lat = GaugeMetricFamily(
            "hrstream_source_latency_seconds",
            "Capture-to-written latency over the sliding window.",
            labels=["source", "quantile"],
        )
        for s, v in src.items():
            up.add_metric([s], 1.0 if v["state"] == "connected" else 0.0)
            state.add_metric([s, v["state"]], 1.0)
            if v["latency_s"] is not None:
                for q, key in (("0.5", "p50"), ("0.95", "p95"), ("1", "max")):
                    lat.add_metric([s, q], v["latency_s"][key])
        yield from (up, state, lat)
        depth = GaugeMetricFamily("hrstream_queue_depth", "Items waiting in a queue.", labels=["queue"])
        for q, d in snap["queues"].items():
            depth.add_metric([q], float(d))
        yield depth
        stages = snap["stages"]
        busy = CounterMetricFamily(
            "hrstream_stage_busy_seconds", "Seconds of a stage's own work.", labels=["stage"]
        )
        for name, st in stages.items():
            busy.add_metric([name], float(st["busy_s"]))
        yield busy
        batch = stages.get("batch")
        if batch is not None:
            yield CounterMetricFamily(
                "hrstream_batches", "Network calls of the pose network.", value=batch["items_out"]
            )
            yield CounterMetricFamily(
                "hrstream_batch_frames", "Frames in those calls.", value=batch["items_in"]
            )
        infer = stages.get("infer") or stages.get("segment")
        if infer is not None:
            yield CounterMetricFamily(
                "hrstream_network_seconds",
                "Seconds of the inference stage (crops, network, decoding).",
                value=infer["busy_s"],
            )


def run_monitor(
    mux: Any, feeder: Any, pipeline: Callable[[], Any], *, status_s: float | None = 5.0
) -> RunMonitor:
    """A :class:`RunMonitor` over a run's :class:`~hrstream.runtime.mux.SourceMux`, its
    :class:`~hrstream.runtime.feeder.SourceFeeder` and (``pipeline()``, read at each snapshot) its pipeline."""

    def queues() -> dict[str, int]:
        depths = {f"lane:{lane.source_id}": lane.depth for lane in mux.stats()}
        for st in pipeline().stats():
            if st.out_queue is not None:
                depths[st.out_queue.name] = st.out_queue.depth
        return depths

    def stages() -> dict[str, tuple[int, int, float]]:
        return {st.name: (st.items_in, st.items_out, st.busy_s) for st in pipeline().stats()}

    return RunMonitor(
        frames_in=feeder.frames_in,
        drops=mux.drops,
        states=feeder.states,
        queues=queues,
        stages=stages,
        status_s=status_s,
    )
