"""The run's numbers in the Prometheus text format, on ``127.0.0.1:PORT/metrics`` (``prometheus-client``).

Per source (label ``source``: its name, never its URL): counters of frames decoded, written and dropped,
reconnects, gaps and their seconds, segments; gauges of whether it delivers and of its state; a histogram of the
capture-to-written latency of live frames in seconds (cumulative buckets, sum and count). For the pipeline in
this process: queue depths, each stage's busy seconds, frames per network call (batches and the frames in them).
A collector of its own reads :class:`~hrstream.runtime.counters.RunCounters` at each scrape, in a registry of
its own (nothing of the process's default registry is served).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from hrstream.runtime import StageStats
from hrstream.runtime.counters import LATENCY_BUCKETS_S, RunCounters

__all__ = ["MetricsCollector", "serve_metrics"]


class MetricsCollector:
    """Turns the run's counters and stage stats into metric families at each scrape."""

    def __init__(self, counters: RunCounters, stages: Callable[[], list[StageStats]]) -> None:
        self.counters = counters
        self.stages = stages

    def describe(self) -> list[Any]:
        return []  # families are made at each scrape

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        src = self.counters.snapshot()

        def per_source(name: str, doc: str, key: str) -> Any:
            fam = CounterMetricFamily(name, doc, labels=["source"])
            for s, v in src.items():
                fam.add_metric([s], float(v[key]))
            return fam

        yield per_source("hrstream_source_frames_in", "Frames decoded.", "frames_in")
        yield per_source("hrstream_source_frames_out", "Frames written.", "frames_out")
        yield per_source(
            "hrstream_source_dropped_frames", "Live frames dropped by the source's input lane.", "drops"
        )
        yield per_source("hrstream_source_reconnects", "Reconnections of a live source.", "reconnects")
        yield per_source("hrstream_source_gaps", "Outages of a live source.", "gaps")
        yield per_source("hrstream_source_gap_seconds", "Seconds of outage of a live source.", "gap_s")
        yield per_source("hrstream_source_segments", "Output segments opened.", "segments")
        up = GaugeMetricFamily("hrstream_source_up", "1 while the source delivers frames.", labels=["source"])
        state = GaugeMetricFamily(
            "hrstream_source_state",
            "The source's state (1 for its current state).",
            labels=["source", "state"],
        )
        latency = HistogramMetricFamily(
            "hrstream_source_latency_seconds",
            "Capture-to-written latency of live frames.",
            labels=["source"],
            unit="",
        )
        for s, v in src.items():
            up.add_metric([s], 1.0 if v["state"] in ("connected", "reading") else 0.0)
            state.add_metric([s, v["state"]], 1.0)
            if v["live"]:
                h = v["latency_hist"]
                cumulative, buckets = 0, []
                for bound, n in zip(LATENCY_BUCKETS_S, h["buckets"], strict=True):
                    cumulative += n
                    buckets.append((repr(float(bound)), float(cumulative)))
                buckets.append(("+Inf", float(h["count"])))
                latency.add_metric([s], buckets, float(h["sum"]))
        yield from (up, state, latency)
        stats = self.stages()
        depth = GaugeMetricFamily(
            "hrstream_queue_depth", "Items waiting in a stage's output queue.", labels=["queue"]
        )
        busy = CounterMetricFamily(
            "hrstream_stage_busy_seconds",
            "Seconds of a stage's own work (not waiting on queues).",
            labels=["stage"],
        )
        for st in stats:
            if st.out_queue is not None:
                depth.add_metric([st.out_queue.name], float(st.out_queue.depth))
            busy.add_metric([st.name], float(st.busy_s))
        yield from (depth, busy)
        batch = next((st for st in stats if st.name == "batch"), None) or next(
            (st for st in stats if st.name == "seg_batch"), None
        )
        if batch is not None:
            yield CounterMetricFamily(
                "hrstream_batches", "Network calls of the main network.", value=batch.items_out
            )
            yield CounterMetricFamily("hrstream_batch_frames", "Frames in those calls.", value=batch.items_in)


def serve_metrics(counters: RunCounters, stages: Callable[[], list[StageStats]], port: int) -> Any:
    """Serve the run's numbers on ``127.0.0.1:port`` until ``server.shutdown()``; returns
    ``(server, thread)`` (``prometheus_client.start_http_server``'s)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(MetricsCollector(counters, stages))  # type: ignore[arg-type]
    return start_http_server(port, addr="127.0.0.1", registry=registry)
