"""Events to an MQTT broker (``hrstream serve --mqtt mqtt://[user:password@]host[:port][/prefix]``, paho-mqtt).

Topics (``PREFIX`` defaults to ``hrstream``; sources by name, never by URL):

* ``PREFIX/availability``: ``online`` while the service runs, ``offline`` when it stops or its connection dies
  (the broker's last will); retained;
* ``PREFIX/SOURCE/people``: the compact people message (:mod:`hrstream.serve.events`), at its set rate;
* ``PREFIX/SOURCE/events``: each track's ``appeared`` and ``left`` event;
* ``PREFIX/SOURCE/state``: the source's state when it changes; retained. When the source is removed from the
  service, ``{"state": "removed"}`` (not retained), then an empty retained message clears the topic.

Every message is JSON, QoS 1. A broker that is down or slow never stalls the pipeline: events are handed to the
client only while it is connected and fewer than ``window`` messages wait for the broker's acknowledgement;
until then they wait in a bounded queue of ``buffer`` events, the oldest dropped first and counted in
:attr:`MqttPublisher.dropped`. The client reconnects with a backoff growing to 10 s; then ``online`` goes first
(it never waits behind events), ``on_connected`` is called (the service publishes every source's state again: a
restarted broker has lost the retained ones), and the queued events follow. On a stop the events still queued
are sent (a few seconds at most) before ``offline``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

from hrstream.errors import ConfigError
from hrstream.io.urls import redact_url
from hrstream.serve.events import EventBus

__all__ = ["MqttPublisher", "parse_mqtt_url"]

log = logging.getLogger(__name__)


def parse_mqtt_url(url: str) -> tuple[str, int, str | None, str | None, str]:
    """``mqtt://[user:password@]host[:port][/prefix]`` -> ``(host, port, user, password, prefix)``.

    Raises:
        ConfigError: another scheme, or no host (the message redacts any password).
    """
    parts = urlsplit(url)
    if parts.scheme != "mqtt" or not parts.hostname:
        raise ConfigError(f"--mqtt {redact_url(url)}: expected mqtt://[user:password@]host[:port][/prefix]")
    prefix = parts.path.strip("/") or "hrstream"
    user = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password else None
    return parts.hostname, parts.port or 1883, user, password, prefix


class MqttPublisher:
    """Publishes a service's events (see the module docstring).

    Args:
        url: the broker.
        bus: where the events come from.
        buffer: events held while the broker is away or slow (then the oldest are dropped).
        window: messages sent and not yet acknowledged, at most.
    """

    def __init__(self, url: str, bus: EventBus, *, buffer: int = 1000, window: int = 100) -> None:
        import paho.mqtt.client as mqtt

        self.host, self.port, user, password, self.prefix = parse_mqtt_url(url)
        self.display = redact_url(url)
        self._sub = bus.subscribe(buffer)
        self._client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"hrstream-{socket.gethostname()}-{id(self):x}"
        )
        if user is not None:
            self._client.username_pw_set(user, password)
        self._client.will_set(f"{self.prefix}/availability", "offline", qos=1, retain=True)
        self._client.reconnect_delay_set(min_delay=1, max_delay=10)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_publish = self._on_publish
        self._window = max(1, int(window))
        self._unacked: set[int] = set()  # message ids sent, not yet acknowledged
        self._early: set[int] = set()  # acknowledged before publish() returned their id
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._pump, name="hrstream-mqtt", daemon=True)
        self._rejected = 0
        self._last: Any = None  # the last message handed to paho
        self.on_connected: Any = None  # called (no argument) after each connection
        self.connected = False
        self.published = 0

    @property
    def dropped(self) -> int:
        """Events lost while the broker was away or slow."""
        return self._sub.dropped + self._rejected

    @property
    def unacknowledged(self) -> int:
        """Messages sent that the broker has not acknowledged yet."""
        with self._lock:
            return len(self._unacked)

    def start(self) -> None:
        self._client.connect_async(self.host, self.port, keepalive=30)
        self._client.loop_start()
        self._thread.start()
        log.info("MQTT events to %s (prefix %s)", self.display, self.prefix)

    def stop(self, drain_s: float = 3.0) -> None:
        """Send what is queued (at most ``drain_s`` seconds), say ``offline``, disconnect, stop the threads."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self.connected:
            while (event := self._sub.get(timeout=0)) is not None:
                self._publish(event)
            last = self._last
            if last is not None:
                with contextlib.suppress(RuntimeError, ValueError):  # not queued: nothing to wait for
                    last.wait_for_publish(timeout=drain_s)  # QoS 1 in order: the last acknowledged, all were
        if self.connected:
            info = self._client.publish(f"{self.prefix}/availability", "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(timeout=2.0)
        self._client.disconnect()
        self._client.loop_stop()
        self._sub.close()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if getattr(reason, "is_failure", False):
            log.warning("MQTT %s refused the connection (%s)", self.display, reason)
            return
        self.connected = True
        self._sent(client.publish(f"{self.prefix}/availability", "online", qos=1, retain=True))
        log.info("MQTT connected to %s", self.display)
        if self.on_connected is not None:
            self.on_connected()

    def _on_publish(self, client: Any, userdata: Any, mid: int, reason: Any, properties: Any) -> None:
        # paho calls this holding its lock of outgoing messages, which publish() takes too: publish() is never
        # called under self._lock, so an acknowledgement may come before its id is recorded (_early)
        with self._lock:
            if mid in self._unacked:
                self._unacked.discard(mid)
            else:
                self._early.add(mid)

    def _sent(self, info: Any) -> None:
        with self._lock:
            if info.mid in self._early:
                self._early.discard(info.mid)
            else:
                self._unacked.add(info.mid)

    def _on_disconnect(self, client: Any, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        if self.connected:
            log.warning("MQTT connection to %s lost (%s); reconnecting", self.display, reason)
        self.connected = False

    def _ready(self) -> bool:
        with self._lock:
            return self.connected and len(self._unacked) < self._window

    def _pump(self) -> None:
        while not self._stop.is_set():
            if not self._ready():  # the broker is away or slow: events wait (and overflow) in the queue
                self._stop.wait(0.05)
                continue
            event = self._sub.get(timeout=0.2)
            if event is not None:
                self._publish(event)

    def _publish(self, event: dict[str, Any]) -> None:
        kind, source = event.get("type"), event.get("source")
        topic = {
            "people": f"{self.prefix}/{source}/people",
            "appeared": f"{self.prefix}/{source}/events",
            "left": f"{self.prefix}/{source}/events",
            "source": f"{self.prefix}/{source}/state",
        }.get(str(kind))
        if topic is None:
            return
        if kind == "source" and event.get("state") == "removed":
            self._send(topic, json.dumps(event), retain=False)
            self._send(topic, b"", retain=True)  # the source's retained state goes with it
            return
        self._send(topic, json.dumps(event), retain=kind == "source")

    def _send(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        import paho.mqtt.client as mqtt

        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
            self._sent(info)
            self._last = info
            self.published += 1  # sent, or kept by paho until the broker is back
        else:  # pragma: no cover - paho's own queue is unbounded here
            self._rejected += 1
