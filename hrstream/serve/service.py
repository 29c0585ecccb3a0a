"""``hrstream serve``: one pipeline for a wall of cameras that come and go, a live view, events out.

:class:`Service` runs the recipe's networks over the sources of a sources file through the same pipeline and run
lifecycle pieces as ``hrstream run`` (a :class:`~hrstream.runs.local.PipelineSession` of a
:class:`~hrstream.runs.local.LocalExecutor`, the output folder's manifest, the run's counters, status lines),
kept open: sources are added, removed and restarted at run time (:class:`~hrstream.serve.registry.SourceRegistry`)
without pausing the others, and the service keeps running when every source is gone. Beside the outputs of
``run`` (segments, JSONL, tracks, manifest) it serves an HTTP API, a live view and an event stream
(:mod:`hrstream.serve.http`) and, with ``mqtt_url``, publishes the events to a broker (:mod:`hrstream.serve.mqtt`).

SIGTERM/SIGINT stop intake, drain and close every output within the grace period, as ``run`` does; SIGHUP
applies the sources file as edited by hand.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from hrstream.errors import ConfigError, HrstreamError
from hrstream.io.urls import redact_text
from hrstream.pipeline.builder import load_networks, pose_method
from hrstream.pipeline.recipe import Recipe
from hrstream.runs.items import WorkItem
from hrstream.runs.lifecycle import ManifestEvents
from hrstream.runs.local import LocalExecutor
from hrstream.runs.manifest import Manifest
from hrstream.runs.monitor import RunMonitor
from hrstream.runtime.counters import RunCounters
from hrstream.serve.events import EventBus, TrackEvents
from hrstream.serve.registry import LocalPlacement, SourceRegistry, public_state
from hrstream.serve.sources_file import SourcesFile
from hrstream.serve.view import LiveView
from hrstream.types import FrameResult, SourceResult

__all__ = ["Service", "is_loopback"]

log = logging.getLogger(__name__)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is only reachable from this machine (127.0.0.0/8, ::1, localhost)."""
    return host == "localhost" or host.startswith("127.") or host == "::1"


class _ServiceEvents(ManifestEvents):
    """The run events of a service: the manifest's, and a source that ended leaves the view and its tracks."""

    def __init__(self, manifest: Manifest | None, service: Service) -> None:
        super().__init__(manifest)
        self.service = service

    def finished(self, item: WorkItem, result: SourceResult) -> None:
        super().finished(item, result)
        self.service.source_ended(item.name)


class Service:
    """A long-running pipeline over a changing set of live sources (see the module docstring).

    Args:
        recipe: the pipeline recipe (task, networks, tracker, sinks...).
        out_dir: where each source writes its segments (``None``: no files).
        sources: the sources file (created when missing; API changes are written back to it).
        host, port: where the HTTP API, the page, the streams and ``/metrics`` are served.
        token: required of every request when set (``Authorization: Bearer TOKEN`` or ``?token=TOKEN``); any
            host but loopback needs one.
        mqtt_url: publish the events to this broker (``None``: no MQTT).
        mqtt_buffer: events held for the broker while it is away or slow (then the oldest are dropped).
        people_every_s: seconds between two ``people`` events of a source.
        left_after_s: a track not seen for this long has left.
        grace_s: drain time after a stop.
        status_s: seconds between status lines and manifest updates.
    """

    #: Seconds between two looks at the sources' states (``source`` events) and at silent cameras (``left``).
    WATCH_S = 0.5

    def __init__(
        self,
        recipe: Recipe,
        *,
        out_dir: str | Path | None,
        sources: str | Path,
        host: str = "127.0.0.1",
        port: int = 8080,
        token: str | None = None,
        mqtt_url: str | None = None,
        mqtt_buffer: int = 1000,
        people_every_s: float = 1.0,
        left_after_s: float = 2.0,
        grace_s: float = 10.0,
        status_s: float | None = 5.0,
    ) -> None:
        if not is_loopback(host) and not token:
            raise ConfigError(
                f"--host {host}: serving beyond this machine needs a token (--token or HRSTREAM_TOKEN)"
            )
        pose_method(recipe)
        self.recipe = recipe
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.host, self.port, self.token = host, int(port), token
        self.grace_s = grace_s
        self.started_at = time.time()
        self.counters = RunCounters()
        self.bus = EventBus()
        self.tracks = TrackEvents(self.bus, people_every_s=people_every_s, left_after_s=left_after_s)
        self.view = LiveView()
        self.sources_file = SourcesFile(sources)
        self.manifest = Manifest.load(self.out_dir) if self.out_dir is not None else None
        self.networks = load_networks(recipe, progress=False)
        self.executor = LocalExecutor(
            self.networks, out_dir=self.out_dir, grace_s=grace_s, forward=self._written
        )
        self.events = _ServiceEvents(self.manifest, self)
        self.session = self.executor.session(self.events, self.counters, live=True)
        self.placement = LocalPlacement(self.session, recipe.digest())
        self.registry = SourceRegistry(self.placement, self.counters, self.sources_file)
        self.monitor = RunMonitor(self.counters, self.executor.stage_stats, status_s=status_s)
        self.monitor.on_tick = self._tick
        self.mqtt = None
        if mqtt_url is not None:
            from hrstream.serve.mqtt import MqttPublisher

            self.mqtt = MqttPublisher(mqtt_url, self.bus, buffer=mqtt_buffer)
            self.mqtt.on_connected = self._publish_states_again
        self._states: dict[str, str] = {}
        self._server: Any = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._watch = threading.Thread(target=self._watch_loop, name="hrstream-serve-watch", daemon=True)

    # -- what flows in ------------------------------------------------------------------------------------
    def _written(self, result: FrameResult) -> None:
        self.view.offer(result)
        self.tracks.result(result)

    def source_ended(self, name: str) -> None:
        """A lane of source ``name`` ended, its outputs closed (the sink thread): its tracks left; a removed
        source leaves the view, the counters and the events; a restarted one goes on with its new lane."""
        self.tracks.ended(name)
        if name not in self.registry.names():  # removed (not restarted)
            self.view.forget(name)
            self.counters.forget(name)
            with self._lock:
                self._states.pop(name, None)
            self.tracks.state(name, "removed")
        self.placement.ended(name)

    def _tick(self, snapshot: dict[str, dict[str, Any]]) -> None:
        """Every status period: the live state of the started sources in the manifest."""
        if self.manifest is None:
            return
        names = set(self.registry.names())
        items = {name: item for name, item in list(self.session.items.items()) if name in names}
        self.events.live(items, snapshot)

    def _watch_loop(self) -> None:
        while not self._stopped.wait(self.WATCH_S):
            try:
                self.watch()
            except Exception:  # the next look may do better; the service goes on
                log.exception("watching the sources failed")

    def watch(self) -> None:
        """Publish the states that changed (``source`` events) and let the people of silent cameras leave."""
        names = self.registry.names()
        for name in names:
            counters = self.counters.get(name)
            state = public_state(counters.current_state()) if counters is not None else "connecting"
            with self._lock:
                changed = self._states.get(name) != state
                self._states[name] = state
            if changed:
                self.tracks.state(name, state)
        with self._lock:
            for gone in set(self._states) - set(self.registry.names()):
                del self._states[gone]
        self.tracks.sweep()

    def _publish_states_again(self) -> None:
        """Every source's state goes out again at the next look (a broker that restarted lost the retained)."""
        with self._lock:
            self._states.clear()

    def status(self) -> dict[str, Any]:
        """The service's own numbers: sources, viewers and encodings of the live view, event subscribers,
        MQTT."""
        out: dict[str, Any] = {
            "uptime_s": round(time.time() - self.started_at, 3),
            "sources": len(self.registry.names()),
            "view": {"viewers": self.view.viewers, "encodes": self.view.encodes, "sent": self.view.sent},
            "event_subscribers": self.bus.subscribers,
            "mqtt": None,
        }
        if self.mqtt is not None:
            out["mqtt"] = {
                "connected": self.mqtt.connected,
                "published": self.mqtt.published,
                "unacknowledged": self.mqtt.unacknowledged,
                "dropped": self.mqtt.dropped,
            }
        return out

    # -- running ------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the pipeline, the sources of the file, the HTTP server and the MQTT publisher."""
        if self.manifest is not None:
            from hrstream.runs.items import Plan

            self.manifest.begin_run(Plan([], [], {}), recipe=self.recipe.digest(), executor="service")
        self.session.start()
        self.registry.reload()
        self.monitor.start()
        self._watch.start()
        if self.mqtt is not None:
            self.mqtt.start()
        from hrstream.serve.http import start_http

        self._server = start_http(self, self.host, self.port)
        log.info("serving on http://%s:%d/ (%d sources)", self.host, self.port, len(self.registry.names()))

    def reload(self) -> None:
        """Apply the sources file as it is now (SIGHUP); a bad file changes nothing and says why."""
        try:
            changes = self.registry.reload()
        except (HrstreamError, ValueError, OSError) as e:
            log.error("%s: not applied (%s)", self.sources_file.path, redact_text(str(e)))
            return
        log.info(
            "sources file applied: %s", ", ".join(f"{k} {v}" for k, v in changes.items() if v) or "no change"
        )

    def stop(self) -> None:
        """Stop intake, drain, close every output (within the grace period), stop serving."""
        if self._stopped.is_set():
            return
        self._stopped.set()
        log.info("stopping: intake stops, what is in flight drains")
        try:
            self.session.stop(timeout=self.grace_s + 10.0)
        finally:
            self.monitor.close()
            if self._watch.is_alive():
                self._watch.join(timeout=2.0)
            self.tracks.sweep(now=float("inf"))  # whoever was in view has left
            if self.mqtt is not None:
                self.mqtt.stop()
            if self._server is not None:
                self._server.stop()
            self.view.close()
            if self.manifest is not None:
                self.manifest.end_run("interrupted")

    def run(self) -> int | None:
        """Start, then serve until SIGTERM/SIGINT (returns that signal); SIGHUP reloads the sources file."""
        got: list[int] = []
        wake = threading.Event()

        def on_stop(signum: int, _frame: Any) -> None:
            if got:  # a second signal: stop at once
                self.executor.abort()
            got.append(signum)
            wake.set()

        old = {s: signal.signal(s, on_stop) for s in (signal.SIGINT, signal.SIGTERM)}
        old[signal.SIGHUP] = signal.signal(
            signal.SIGHUP, lambda *_: threading.Thread(target=self.reload).start()
        )
        try:
            self.start()
            while not wake.wait(0.5):
                pass
        finally:
            try:
                self.stop()
            finally:
                for s, handler in old.items():
                    signal.signal(s, handler)
        return got[0] if got else None
