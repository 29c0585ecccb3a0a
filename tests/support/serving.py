"""Helpers for tests and benchmarks of ``hrstream serve``: the service as a child process, a real Mosquitto broker,
a long H.264 clip for RTSP cameras, waiting for conditions.

Everything runs on 127.0.0.1 with free ports; nothing is mocked. The service is started exactly as a user would
(``python -m hrstream.cli serve ...``), with the tiny pose model and ``--detector full-frame`` so that it runs in
real time on a CPU; its stderr goes to a file the tests read back (credentials and the token must not be there).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from support.cli_checks import ROOT, cli_env
from support.clips import h264_clip
from support.rtsp import free_port

__all__ = [
    "LIVE_RECIPE",
    "Mosquitto",
    "ServeProcess",
    "needs_chromium",
    "needs_mosquitto",
    "serve_clip",
    "serve_env",
    "wait_for",
]

MOSQUITTO = "/usr/sbin/mosquitto"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

needs_mosquitto = pytest.mark.skipif(
    not os.access(MOSQUITTO, os.X_OK), reason="mosquitto (see .ci/apt-packages.txt) missing"
)
needs_chromium = pytest.mark.skipif(
    not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)),
    reason="chromium and chromium-driver (see .ci/apt-packages.txt) missing",
)

#: Live sources that come back fast: the tests stop and start RTSP servers.
LIVE_RECIPE = "sources:\n  backoff_max_s: 1\n  open_timeout_s: 3\n  read_timeout_s: 3\n"


def wait_for(cond: Callable[[], Any], timeout: float, what: str, every: float = 0.2) -> Any:
    """Poll ``cond()`` until it returns something true (returned); AssertionError naming ``what`` after
    ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(every)


def serve_clip(folder: Path, *, minutes: float = 5.0, fps: int = 5) -> Path:
    """The basketball clip at ``fps`` (5: every sixth frame, 10: every third; real speed either way), looped to
    ``minutes``, as H.264 (made once per folder): a camera that does not reach the end of its clip during a test,
    light enough for a shared CI machine."""
    path = Path(folder) / f"serve_clip_{fps}fps_{minutes:g}min.mp4"
    if not path.exists():
        tmp = path.with_suffix(".tmp.mp4")
        h264_clip(tmp, fps=fps, every=max(1, round(30 / fps)), repeat=max(1, round(minutes * 60 / 10)))
        tmp.replace(path)
    return path


def serve_env(**extra: str) -> dict[str, str]:
    """The environment of a service child: this checkout's code, unbuffered, and torch's threads left to the
    service (``OMP_NUM_THREADS=1`` beside the two torch threads it sets made its pipeline several times slower
    on a loaded 2-core machine)."""
    env = {k: v for k, v in cli_env().items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.update(extra)
    return env


class ServeProcess:
    """``hrstream serve`` in a child process.

    Args:
        sources: the sources file.
        out: the output folder.
        model_args: ``--model CONFIG --weights FILE`` (the tiny model).
        extra: more options (``--mqtt URL``, ``--people-every S``...).
        token: put in the child's ``HRSTREAM_TOKEN`` (not on its command line) and sent by :meth:`api`.
        log: where its stderr goes.
    """

    def __init__(
        self,
        sources: Path,
        out: Path,
        model_args: Iterable[str],
        *,
        recipe: Path,
        log: Path,
        extra: Iterable[str] = (),
        token: str | None = None,
        port: int | None = None,
        grace: float = 10.0,
    ) -> None:
        self.sources_file, self.out, self.log = Path(sources), Path(out), Path(log)
        self.port = port or free_port()
        self.token = token
        self.grace = grace
        self.args = [
            sys.executable,
            "-m",
            "hrstream.cli",
            "serve",
            "--sources",
            str(sources),
            "--out",
            str(out),
            "--port",
            str(self.port),
            "--pipeline",
            str(recipe),
            *model_args,
            "--detector",
            "full-frame",
            "--no-video",
            "--grace",
            str(grace),
            *extra,
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.base, timeout=30.0, headers=self._auth())

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 180.0) -> ServeProcess:
        env = serve_env()
        if self.token:
            env["HRSTREAM_TOKEN"] = self.token
        with self.log.open("ab") as err:
            self.proc = subprocess.Popen(
                self.args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True
            )

        def up() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"hrstream serve exited ({self.proc.returncode}):\n{self.log.read_text()}"
                )
            try:
                return self.client.get("/api/sources", timeout=2.0).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, timeout, "hrstream serve answering", every=0.5)
        return self

    # -- the API -----------------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kw: Any) -> httpx.Response:
        return self.client.request(method, path, **kw)

    def sources(self) -> dict[str, dict[str, Any]]:
        r = self.api("GET", "/api/sources")
        r.raise_for_status()
        return {s["name"]: s for s in r.json()}

    def source(self, name: str) -> dict[str, Any] | None:
        r = self.api("GET", f"/api/sources/{name}")
        return r.json() if r.status_code == 200 else None

    def state(self, name: str) -> str | None:
        s = self.source(name)
        return None if s is None else s["state"]

    def frames(self, name: str) -> int:
        s = self.source(name)
        return 0 if s is None else int(s["frames_out"])

    def wait_frames(self, name: str, more: int, timeout: float = 60.0) -> int:
        """Wait until ``name`` wrote ``more`` frames more than now; returns the count."""
        start = self.frames(name)
        return wait_for(
            lambda: (n := self.frames(name)) >= start + more and n, timeout, f"{more} more frames of {name}"
        )

    def status(self) -> dict[str, Any]:
        return self.api("GET", "/api/status").json()

    # -- the process -------------------------------------------------------------------------------------
    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then wait (``timeout``: the grace and 30 s); returns the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout if timeout is not None else self.grace + 30)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)

    def close(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                try:
                    self.stop(timeout=60)
                except subprocess.TimeoutExpired:
                    self.kill()
        finally:
            self.client.close()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


class Mosquitto:
    """A real Mosquitto broker on ``127.0.0.1:port`` (anonymous, no persistence), config in ``folder``;
    restartable on the same port."""

    def __init__(self, folder: Path, port: int | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.conf = self.folder / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
            "log_type error\nlog_type warning\nlog_type notice\n"
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> Mosquitto:
        import socket

        with (self.folder / "mosquitto.log").open("ab") as err:
            self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=err, stderr=err)

        def listening() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {(self.folder / 'mosquitto.log').read_text()}")
            with socket.socket() as s:
                return s.connect_ex(("127.0.0.1", self.port)) == 0

        wait_for(listening, timeout, "mosquitto listening", every=0.1)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None


class Subscriber:
    """A paho-mqtt client subscribed to ``topic`` on a broker, keeping every message as
    ``(received_at, topic, payload bytes, retained)``; it reconnects on its own when the broker comes back."""

    def __init__(self, port: int, topic: str = "hrstream/#") -> None:
        import threading

        import paho.mqtt.client as mqtt

        self.messages: list[tuple[float, str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.topic = topic
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-sub-{os.getpid()}-{id(self):x}"
        )
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=2)
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        with self._lock:
            self.messages.append((time.time(), msg.topic, bytes(msg.payload), bool(msg.retain)))

    def on(self, topic: str) -> list[tuple[float, bytes, bool]]:
        """The messages received on ``topic`` so far."""
        with self._lock:
            return [(t, p, r) for t, top, p, r in self.messages if top == topic]

    def json(self, topic: str) -> list[dict[str, Any]]:
        import json

        return [json.loads(p) for _, p, _ in self.on(topic) if p]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
