"""The HTTP side of ``hrstream serve`` (FastAPI on uvicorn; the OpenAPI schema at ``/openapi.json``).

* ``GET /api/sources``: every source with its state (``live``, ``connecting``, ``reconnecting`` with
  ``retry_at``, ``gave_up``, ``stopped``) and counters; ``POST /api/sources`` ``{"name", "url", "detect_every"}``
  adds one; ``GET``/``DELETE /api/sources/NAME``; ``POST /api/sources/NAME/restart``;
  ``GET /api/sources/NAME/tracks``: the tracks in view now.
* ``GET /stream/NAME.mjpg?width=W``: the source's annotated live picture as MJPEG (the newest frame each time,
  encoded once per frame and width, only while someone watches: :mod:`hrstream.serve.view`).
* ``GET /events``: the events (:mod:`hrstream.serve.events`) as server-sent events.
* ``GET /metrics``: the run's numbers for Prometheus (:mod:`hrstream.runs.metrics`).
* ``GET /`` and ``GET /sources/NAME``: the page (a grid of every camera; one camera with its tracks).

With a token every request needs it (``Authorization: Bearer TOKEN``, or ``?token=TOKEN`` for what a browser
asks by URL: pictures, the event stream); without, 401 and the token is never logged. A bad request gets one
clear error (422 naming the field), never a traceback, and disturbs nothing that runs. Camera credentials never
leave the process: sources are shown by name and redacted URL.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any

from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, Field

from hrstream.serve.registry import SourceRejected
from hrstream.serve.sources_file import SourceSpec
from hrstream.serve.view import view_width

if TYPE_CHECKING:
    from hrstream.serve.service import Service

__all__ = ["HttpServer", "make_app", "start_http"]

log = logging.getLogger(__name__)

BOUNDARY = "hrstreamframe"


class NewSource(BaseModel):
    """A source to add: its name, its URL (credentials are kept, never shown) and its options."""

    name: str = Field(min_length=1, max_length=64, description="Its outputs' and labels' name.")
    url: str = Field(
        min_length=1, max_length=2048, description="rtsp://, rtsps://, rtmp://, http(s):// or a camera."
    )
    detect_every: int | None = Field(
        default=None, ge=1, le=10_000, description="Run the detector every N frames."
    )


def make_app(service: Service) -> Any:
    """The FastAPI application of ``service``."""

    def authorized(request: Request) -> None:
        if service.token is None:
            return
        given = request.query_params.get("token")
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            given = header[7:].strip()
        if not given or not hmac.compare_digest(given.encode(), service.token.encode()):
            raise HTTPException(401, "a token is required (Authorization: Bearer TOKEN, or ?token=TOKEN)")

    app = FastAPI(title="hrstream serve", version="1", dependencies=[Depends(authorized)])

    def unknown(name: str) -> HTTPException:
        return HTTPException(404, f"no source named {name!r}")

    @app.get("/api/sources", summary="Every source, its state and counters")
    def list_sources() -> list[dict[str, Any]]:
        return service.registry.describe_all()

    @app.post("/api/sources", status_code=201, summary="Add a source")
    def add_source(body: NewSource) -> dict[str, Any]:
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

    @app.delete("/api/sources/{name}", status_code=204, response_model=None, summary="Remove a source")
    def remove_source(name: str) -> Response:
        """Stop the source and close its outputs at once; it leaves the sources file."""
        try:
            service.registry.remove(name)
        except KeyError:
            raise unknown(name) from None
        return Response(status_code=204)

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

    @app.get("/stream/{name}.mjpg", summary="The annotated live picture (MJPEG)")
    def stream(name: str, width: int | None = None) -> StreamingResponse:
        if name not in service.registry.names():
            raise unknown(name)
        return StreamingResponse(
            _mjpeg(service, name, view_width(width)),
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
        )

    @app.get("/events", summary="The events as server-sent events")
    def events() -> StreamingResponse:
        return StreamingResponse(
            _sse(service), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.get("/metrics", summary="The run's numbers for Prometheus")
    def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

        from hrstream.runs.metrics import MetricsCollector

        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(service.counters, service.executor.stage_stats))  # type: ignore[arg-type]
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return _page("grid.html")

    @app.get("/sources/{name}", response_class=HTMLResponse, include_in_schema=False)
    def source_page(name: str) -> str:
        if name not in service.registry.names():
            raise unknown(name)
        return _page("camera.html")

    @app.exception_handler(Exception)
    def internal(request: Request, exc: Exception) -> JSONResponse:  # never a traceback to the client
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse({"detail": f"internal error: {type(exc).__name__}"}, status_code=500)

    return app


def _page(name: str) -> str:
    return resources.files("hrstream.serve").joinpath("static", name).read_text(encoding="utf-8")


def _mjpeg(service: Service, name: str, width: int | None) -> Iterator[bytes]:
    stop = threading.Event()
    try:
        for frame in service.view.frames(name, width, stop=stop):
            head = (
                f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(frame.data)}\r\n"
                f"X-Frame-Index: {frame.index}\r\n\r\n"
            )
            if frame.captured_at is not None:
                service.counters.source(name, live=True).shown(time.time() - frame.captured_at)
            yield head.encode() + frame.data + b"\r\n"
    finally:
        stop.set()


def _sse(service: Service) -> Iterator[bytes]:
    sub = service.bus.subscribe(200)
    try:
        yield b": hrstream events\n\n"
        for source in service.registry.names():  # the state of every source first
            state = service.registry.describe(source)["state"]
            yield _event({"type": "source", "source": source, "state": state, "time": time.time()})
        while True:
            event = sub.get(timeout=10.0)
            yield _event(event) if event is not None else b": keep-alive\n\n"
    finally:
        sub.close()


def _event(event: dict[str, Any]) -> bytes:
    return f"event: {event.get('type', 'message')}\ndata: {json.dumps(event)}\n\n".encode()


class HttpServer:
    """uvicorn serving the app in a thread of its own (the service handles the signals)."""

    def __init__(self, app: Any, host: str, port: int) -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
        self.server = uvicorn.Server(config)
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
