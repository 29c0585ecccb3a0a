"""A real RTSP server for tests: Debian's GStreamer RTSP server on 127.0.0.1, in a child process.

``tests/support/rtsp_server.py`` runs with the system Python (the ``gi`` module lives there; packages in
``.ci/apt-packages.txt``); tests that need it are marked ``needs_rtsp`` and skipped where it is missing.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
from pathlib import Path

import pytest

__all__ = ["CLIP", "RtspServer", "free_port", "needs_rtsp"]

SUPPORT = Path(__file__).resolve().parent
CLIP = SUPPORT.parent / "data" / "videos" / "basketball_426x240_2997.mp4"  # 29.97 fps, 10 s, H.264


def _gst_rtsp_available() -> bool:
    py = Path("/usr/bin/python3")
    if not py.exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run([str(py), "-c", probe], capture_output=True, timeout=30).returncode == 0


needs_rtsp = pytest.mark.skipif(
    not _gst_rtsp_available(), reason="GStreamer RTSP server (see .ci/apt-packages.txt) missing"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspServer:
    """The test RTSP server serving ``clip`` (an H.264 MP4) at ``rtsp://127.0.0.1:PORT/live``, each client from
    the start (a client that reaches the end is disconnected); restartable on the same port."""

    def __init__(self, port: int | None = None, clip: Path = CLIP) -> None:
        self.port = port or free_port()
        self.clip = Path(clip)
        self.proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/live"

    def start(self) -> RtspServer:
        env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", str(SUPPORT / "rtsp_server.py"), str(self.clip), str(self.port), "/live"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().startswith("READY"), "RTSP server did not start"
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)  # a paused server must be able to die
            self.proc.kill()
            self.proc.wait(timeout=10)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)
