"""The HTTP side of ``hrstream serve`` (FastAPI on uvicorn; the OpenAPI schema at ``/openapi.json``, ``/docs``).

* ``GET /api/sources``: every source with its state (``live``, ``connecting``, ``reconnecting``, ``gave_up``,
  ``stopped``) and counters; ``POST /api/sources`` ``{"name", "url", "detect_every"}`` adds one;
  ``GET``/``DELETE /api/sources/NAME`` (``DELETE`` answers once the source's outputs are closed: 204, or 202
  when closing takes longer than the grace period); ``POST /api/sources/NAME/restart``;
  ``GET /api/sources/NAME/tracks``: the tracks in view now; ``GET /api/status``: the service's own numbers.
* ``GET /stream/NAME.mjpg?width=W``: the source's annotated live picture as MJPEG (the newest frame each time,
  encoded once per frame and width, only while someone watches: :mod:`hrstream.serve.view`); each part says
  its frame's ``X-Frame-Index``, ``X-Written-At`` (when the pipeline was done with it) and, for a live source,
  ``X-Captured-At`` (wall-clock seconds).
* ``GET /events``: the events (:mod:`hrstream.serve.events`) as server-sent events.
* ``GET /metrics``: the run's numbers for Prometheus (:mod:`hrstream.runs.metrics`) and the service's own
  (viewers, encodings, event subscribers, MQTT).
* ``GET /`` and ``GET /sources/NAME``: the page (a grid of every camera; one camera with its tracks).

The streams and the event stream are served from the event loop (a viewer or subscriber that waits, or stalls,
holds no thread), so any number of them leaves the API answering.

With a token every request needs it (``Authorization: Bearer TOKEN``, ``?token=TOKEN`` for what a browser asks
by URL, or the ``hrstream_token`` cookie a page opened with ``?token=`` sets: HttpOnly, SameSite=Strict);
without, 401 and the token is never logged. A bad request gets one clear error (422 naming the field, the value
given never echoed: it may hold credentials), never a traceback, and disturbs nothing that runs. Camera
credentials never leave the process: sources are shown by name and redacted URL.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any, Protocol
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from hrstream.runs.local import LocalExecutor
from hrstream.runtime.counters import RunCounters
from hrstream.serve.events import EventBus, TrackEvents
from hrstream.serve.registry import SourceRegistry, SourceRejected
from hrstream.serve.sources_file import SourceSpec
from hrstream.serve.view import LiveView, view_width

__all__ = ["HttpServer", "make_app", "start_http"]

log = logging.getLogger(__name__)


class Service(Protocol):
    """What the HTTP front needs of the service (:class:`hrstream.serve.service.Service`)."""

    registry: SourceRegistry
    counters: RunCounters
    executor: LocalExecutor
    bus: EventBus
    tracks: TrackEvents
    view: LiveView
    token: str | None
    grace_s: float

    def status(self) -> dict[str, Any]:
        """The service's state for ``/api/status``."""
        ...


BOUNDARY = "hrstreamframe"
COOKIE = "hrstream_token"


class NewSource(BaseModel):
    """A source to add: its name, its URL (credentials are kept, never shown) and its options."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=64, description="Its outputs' and labels' name.")
    url: str = Field(
        min_length=1, max_length=2048, description="rtsp://, rtsps://, rtmp://, http(s):// or a camera."
    )
    detect_every: int | None = Field(
        default=None, ge=1, le=10_000, description="Run the detector every N frames."
    )


class TokenAuth:
    """ASGI middleware: every request carries the token (header, query or cookie), or gets 401. A request that
    brought it as ``?token=`` gets it back as an HttpOnly cookie, so the page's own requests (and ``/docs``)
    carry it."""

    def __init__(self, app: Any, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(
        self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]
    ) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given, how = self._given(scope)
        if given is None or not hmac.compare_digest(given.encode(), self.token):
            response = JSONResponse(
                {"detail": "a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)"},
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await response(scope, receive, send)
            return
        if how != "query":
            await self.app(scope, receive, send)
            return
        cookie = f"{COOKIE}={given}; Path=/; HttpOnly; SameSite=Strict".encode("latin-1")

        async def send_with_cookie(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (b"set-cookie", cookie)]}
            await send(message)

        await self.app(scope, receive, send_with_cookie)

    @staticmethod
    def _given(scope: dict[str, Any]) -> tuple[str | None, str]:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip(), "header"
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if query.get("token"):
            return query["token"][0], "query"
        raw = headers.get(b"cookie", b"").decode("latin-1")
        if raw:
            jar: SimpleCookie = SimpleCookie()
            with contextlib.suppress(Exception):  # a malformed cookie header: no token
                jar.load(raw)
            if COOKIE in jar:
                return jar[COOKIE].value, "cookie"
        return None, ""


def make_app(service: Service) -> Any:
    """The FastAPI application of ``service``."""
    app = FastAPI(title="hrstream serve", version="1")

    def unknown(name: str) -> HTTPException:
        return HTTPException(404, f"no source named {name!r}")

    def alive(name: str) -> Callable[[], bool]:
        return lambda: name in service.registry.names()

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's own answer repeats the value given: a URL with its credentials. Field and reason only.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:  # never a traceback to the client
        log.error("%s %s failed (%s)", request.method, request.url.path, type(exc).__name__)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    @app.get("/api/sources", summary="Every source, its state and counters")
    def list_sources() -> list[dict[str, Any]]:
        return service.registry.describe_all()

    @app.post("/api/sources", status_code=201, summary="Add a source")
    def add_source(body: NewSource) -> dict[str, Any]:
        """Start a source at once (the others go on) and write it to the sources file."""
        options = {"detect_every": body.detect_every} if body.detect_every is not None else {}
        try:
            service.registry.add(SourceSpec(body.name, body.url, options))
        except SourceRejected as e:
            raise HTTPException(
                422, [{"loc": ["body", e.field], "msg": str(e), "type": "value_error"}]
            ) from None
        return service.registry.describe(body.name)

    @app.get("/api/sources/{name}", summary="One source")
    def get_source(name: str) -> dict[str, Any]:
        try:
            return service.registry.describe(name)
        except KeyError:
            raise unknown(name) from None

    @app.delete(
        "/api/sources/{name}",
        status_code=204,
        response_model=None,
        summary="Remove a source",
        responses={202: {"description": "Removed; its outputs are still being closed"}},
    )
    def remove_source(name: str) -> Response:
        """Stop the source, close its outputs (answered once they are closed) and drop it from the sources
        file."""
        try:
            closed = service.registry.remove(name, wait_s=service.grace_s)
        except KeyError:
            raise unknown(name) from None
        return Response(status_code=204 if closed else 202)

    @app.post("/api/sources/{name}/restart", summary="Reconnect a source (new segments)")
    def restart_source(name: str) -> dict[str, Any]:
        try:
            service.registry.restart(name)
            return service.registry.describe(name)
        except KeyError:
            raise unknown(name) from None

    @app.get("/api/sources/{name}/tracks", summary="The tracks in view now")
    def tracks(name: str) -> list[dict[str, Any]]:
        if name not in service.registry.names():
            raise unknown(name)
        return service.tracks.current(name)

    @app.get("/api/status", summary="The service's own numbers")
    def status() -> dict[str, Any]:
        """Sources, the live view's viewers, encodings and frames sent, event subscribers, MQTT."""
        return service.status()

    @app.get("/stream/{name}.mjpg", summary="The annotated live picture (MJPEG)")
    async def stream(name: str, width: int | None = None) -> StreamingResponse:
        if name not in service.registry.names():
            raise unknown(name)
        return StreamingResponse(
            _mjpeg(service, name, view_width(width), alive(name)),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    @app.get("/events", summary="The events as server-sent events")
    async def events() -> StreamingResponse:
        return StreamingResponse(
            _sse(service), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/metrics", summary="The run's numbers for Prometheus")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from hrstream.runs.metrics import MetricsCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(service.counters, service.executor.stage_stats))  # type: ignore[arg-type]
        registry.register(_ServiceCollector(service))  # type: ignore[arg-type]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _page("grid.html")

    @app.get("/sources/{name}", response_class=HTMLResponse, include_in_schema=False)
    def source_page(name: str) -> str:
        if name not in service.registry.names():
            raise unknown(name)
        return _page("camera.html")

    if service.token:
        app.add_middleware(TokenAuth, token=service.token)
    return app


def _page(name: str) -> str:
    return resources.files("hrstream.serve").joinpath("static", name).read_text(encoding="utf-8")


async def _mjpeg(
    service: Service, name: str, width: int | None, alive: Callable[[], bool]
) -> AsyncIterator[bytes]:
    async with contextlib.aclosing(service.view.stream(name, width, alive=alive)) as frames:
        async for frame in frames:
            captured = "" if frame.captured_at is None else f"X-Captured-At: {frame.captured_at:.6f}\r\n"
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.data)}\r\n"
                f"X-Frame-Index: {frame.index}\r\n{captured}X-Written-At: {frame.written_at:.6f}\r\n\r\n"
            )
            counters = service.counters.get(name)
            if counters is not None and frame.captured_at is not None:
                counters.shown(time.time() - frame.captured_at)
            yield head.encode() + frame.data + b"\r\n"


async def _sse(service: Service) -> AsyncIterator[bytes]:
    sub = service.bus.subscribe(200)
    try:
        yield b": hrstream events\n\n"
        for source in service.registry.describe_all():  # the state of every source first
            yield _event(
                {"type": "source", "source": source["name"], "state": source["state"], "time": time.time()}
            )
        while True:
            event = await sub.aget(10.0)
            yield _event(event) if event is not None else b": keep-alive\n\n"
    finally:
        sub.close()


def _event(event: dict[str, Any]) -> bytes:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n".encode()


class _ServiceCollector:
    """The service's own numbers for Prometheus (beside the run's: :class:`~hrstream.runs.metrics.MetricsCollector`)."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        st = self.service.status()
        yield GaugeMetricFamily("hrstream_serve_sources", "Sources of the service.", value=st["sources"])
        view = st["view"]
        yield GaugeMetricFamily("hrstream_view_viewers", "Live view streams open now.", value=view["viewers"])
        yield CounterMetricFamily(
            "hrstream_view_encodes",
            "JPEG encodings of the live view (once per frame and width).",
            value=view["encodes"],
        )
        yield CounterMetricFamily(
            "hrstream_view_frames_sent", "Frames sent to live view streams.", value=view["sent"]
        )
        yield GaugeMetricFamily(
            "hrstream_event_subscribers",
            "Event streams open now (the page's, MQTT's).",
            value=st["event_subscribers"],
        )
        mqtt = st["mqtt"]
        if mqtt is not None:
            yield GaugeMetricFamily(
                "hrstream_mqtt_connected", "1 while connected to the broker.", value=float(mqtt["connected"])
            )
            yield CounterMetricFamily(
                "hrstream_mqtt_published", "MQTT messages handed to the client.", value=mqtt["published"]
            )
            yield CounterMetricFamily(
                "hrstream_mqtt_dropped",
                "Events lost while the broker was away or slow (buffer full).",
                value=mqtt["dropped"],
            )


class HttpServer:
    """uvicorn serving the app in a thread of its own (the service handles the signals)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        class _Server(uvicorn.Server):
            async def shutdown(self, sockets: Any = None) -> None:
                # Live streams and event streams never end by themselves, and a stalled viewer cannot be
                # written to: their connections are closed, so their handlers end as on a client's disconnect
                # (instead of being cancelled after the graceful timeout, with a traceback each).
                for connection in list(self.server_state.connections):
                    transport = getattr(connection, "transport", None)
                    if transport is not None:
                        transport.abort()
                await super().shutdown(sockets)

        config = uvicorn.Config(
            app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=2
        )
        self.server = _Server(config)
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.thread = threading.Thread(target=self.server.run, name="hrstream-http", daemon=True)

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise OSError(
                    f"the HTTP server did not start on {self.server.config.host}:{self.server.config.port}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10.0)


def start_http(service: Service, host: str, port: int) -> HttpServer:
    server = HttpServer(make_app(service), host, port)
    server.start()
    return server
