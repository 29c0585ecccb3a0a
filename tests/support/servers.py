"""Network peers for tests, on 127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest

__all__ = ["SilentServer", "downloads_refused", "refused_port"]


def refused_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then closed): connecting to it is refused."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def downloads_refused(monkeypatch: pytest.MonkeyPatch) -> str:
    """Send this process's HTTP(S) downloads (urllib: torch.hub, torchvision) through a proxy on a refused port
    on 127.0.0.1, so they fail at once whether or not the machine has a network; returns the proxy URL."""
    proxy = f"http://127.0.0.1:{refused_port()}"
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(var, proxy)
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)  # so urlopen reads the proxy variables again
    return proxy


class SilentServer:
    """Accepts TCP connections on 127.0.0.1, records them, and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = int(self.sock.getsockname()[1])
        self.accepted: list[socket.socket] = []
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    def close(self) -> None:
        self.sock.close()
        for c in self.accepted:
            c.close()
