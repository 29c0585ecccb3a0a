"""Live sources end to end: a real RTSP server on 127.0.0.1 that is slow-consumed, killed, paused and refused.

The RTSP server is Debian's GStreamer RTSP server driven by ``tests/support/rtsp_server.py`` (system Python,
packages in ``.ci/apt-packages.txt``); tests that need it are skipped where it is missing.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import save_file
from support.rtsp import RtspServer, free_port, needs_rtsp
from support.servers import SilentServer

from hrstream.errors import InputError
from hrstream.io.opening import backoff_delay
from hrstream.io.reconnect import open_live_source

ROOT = Path(__file__).resolve().parents[1]
SUPPORT = ROOT / "tests" / "support"
CLIP = ROOT / "tests" / "data" / "videos" / "basketball_426x240_2997.mp4"  # 29.97 fps, 10 s, H.264
sys.path.insert(0, str(SUPPORT))
from cli_checks import popen_run, read_jsonl  # noqa: E402
from tiny_models import tiny_pose_model  # noqa: E402

SECRET_URL = "rtsp://u:S3cr%21t@127.0.0.1:{port}/x"


@pytest.fixture
def rtsp() -> Iterator[RtspServer]:
    srv = RtspServer().start()
    try:
        yield srv
    finally:
        srv.kill()


class _Lines:
    """Collects a pipe's lines in a thread, with the time each one arrived."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[tuple[float, str]] = []
        self._t = threading.Thread(target=self._run, args=(pipe,), daemon=True)
        self._t.start()

    def _run(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.lines.append((time.monotonic(), line))

    def wait_for(self, text: str, timeout: float) -> float:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for t, line in list(self.lines):
                if text in line:
                    return t
            time.sleep(0.02)
        raise AssertionError(f"{text!r} not seen in {timeout} s; got: {self.text()[-2000:]}")

    def text(self) -> str:
        self._t.join(timeout=5)
        return "".join(line for _, line in self.lines)


@pytest.fixture(scope="module")
def tiny_pose(tmp_path_factory: pytest.TempPathFactory):
    return tiny_pose_model(tmp_path_factory.mktemp("tiny_pose"))


# ------------------------------------------------------------------------------------------ unit
def test_backoff_is_exponential_capped_and_jittered() -> None:
    import random

    rng = random.Random(0)
    draws = {k: [backoff_delay(k, 0.5, 8.0, rng) for _ in range(200)] for k in (1, 2, 3, 4, 5, 6, 9)}
    for k, d in draws.items():
        cap = min(8.0, 0.5 * 2 ** (k - 1))
        assert cap / 2 <= min(d) and max(d) <= cap
        assert np.std(d) > cap / 20  # jittered, not fixed
    assert np.mean(draws[2]) > 1.5 * np.mean(draws[1]) and max(draws[9]) <= 8.0


def test_refused_forever_gives_up_after_n_attempts_within_budget() -> None:
    port = free_port()  # nothing listens there: connection refused
    t0 = time.monotonic()
    with pytest.raises(InputError) as ei:
        open_live_source(
            SECRET_URL.format(port=port),
            open_timeout_s=2,
            read_timeout_s=2,
            max_reconnects=4,
            backoff_s=0.2,
            backoff_max_s=0.4,
        )
    elapsed = time.monotonic() - t0
    msg = str(ei.value)
    assert f"rtsp://***@127.0.0.1:{port}/x" in msg and "4 open attempt(s)" in msg
    assert "S3cr" not in msg
    # waits before attempts 2..4: at least half of 0.2, 0.4, 0.4; at most their sum plus the refusals
    assert 0.5 <= elapsed <= 1.0 + 1.5


# ------------------------------------------------------------------------------------------ outages
def _consume(source, seconds: float, chaos=None) -> list:
    frames = []
    t0 = time.monotonic()
    if chaos is not None:
        threading.Thread(target=chaos, daemon=True).start()
    for f in source:
        frames.append(f)
        if time.monotonic() - t0 > seconds:
            break
    return frames


def _check_continuity(frames: list) -> None:
    assert [f.index for f in frames] == list(range(len(frames)))
    pts = np.array([f.pts_s for f in frames])
    assert np.all(np.diff(pts) > 0)
    assert all(f.pts_s == pytest.approx(float(f.pts * f.time_base), abs=1e-9) for f in frames)


@needs_rtsp
def test_server_restart_reconnects_with_one_gap(rtsp: RtspServer) -> None:
    events: dict[str, float] = {}

    def chaos() -> None:
        time.sleep(2.0)
        rtsp.kill()
        events["down"] = time.time()
        time.sleep(3.0)
        rtsp.start()
        events["up"] = time.time()

    src = open_live_source(
        rtsp.url, open_timeout_s=3, read_timeout_s=3, backoff_s=0.2, backoff_max_s=0.8, max_reconnects=30
    )
    with src:
        frames = _consume(src, 8.0, chaos)
    _check_continuity(frames)
    assert len(src.gaps) == 1 and src.reconnects == 1
    t_lost, t_back = src.gaps[0]
    assert events["down"] - 1.0 < t_lost < events["down"] + 0.5  # last frame of the first connection
    assert events["up"] < t_back < events["up"] + 3.0  # reconnected within the capped backoff + open
    # no invented frames: nothing captured in the gap, and the timeline jumps by the wall-clock gap
    cap = np.array([f.captured_at for f in frames])
    assert not np.any((cap > t_lost) & (cap < t_back))
    k = int(np.searchsorted(cap, t_back))
    assert frames[k].pts_s - frames[k - 1].pts_s == pytest.approx(t_back - t_lost, abs=0.01)
    assert len(frames) - k > 30  # frames really resumed (more than a second of video)
    print(f"\nreconnect: gap {t_back - t_lost:.2f} s, back {t_back - events['up']:.2f} s after restart")


@needs_rtsp
def test_stalled_server_is_caught_by_the_watchdog(rtsp: RtspServer) -> None:
    def chaos() -> None:
        time.sleep(1.5)
        rtsp.signal(signal.SIGSTOP)  # the TCP connection stays up, no byte arrives: only a watchdog sees it
        time.sleep(2.5)
        rtsp.signal(signal.SIGCONT)

    src = open_live_source(
        rtsp.url,
        open_timeout_s=1.0,
        read_timeout_s=10,
        stall_s=0.8,
        backoff_s=0.2,
        backoff_max_s=0.5,
        max_reconnects=30,
    )
    t0 = time.monotonic()
    with src:
        frames = _consume(src, 7.0, chaos)
    _check_continuity(frames)
    assert src.reconnects >= 1 and len(src.gaps) == 1
    assert frames[-1].captured_at - src.gaps[0][1] > 1.0  # frames flow again after the pause
    assert time.monotonic() - t0 < 12


@needs_rtsp
def test_interrupt_ends_iteration_during_backoff(rtsp: RtspServer) -> None:
    src = open_live_source(rtsp.url, open_timeout_s=2, read_timeout_s=2, backoff_s=5.0, backoff_max_s=5.0)
    rtsp.kill()
    ended = threading.Event()

    def consume() -> None:
        for _ in src:
            pass
        ended.set()

    threading.Thread(target=consume, daemon=True).start()
    time.sleep(2.5)  # queued frames are read, the loss is seen, the first retry fails: now in a 2.5-5 s wait
    assert not ended.is_set()
    t0 = time.monotonic()
    src.interrupt()
    assert ended.wait(2.0)
    assert time.monotonic() - t0 < 0.5
    src.close()


def _ts_clip(path: Path, n: int = 10) -> None:
    """A tiny real H.264 MPEG-TS clip (64x48, 25 fps) written with PyAV."""
    import av

    with av.open(str(path), "w", format="mpegts") as c:
        st = c.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = 64, 48, "yuv420p"
        st.options = {"preset": "ultrafast", "g": "5"}
        for i in range(n):
            img = np.full((48, 64, 3), (i * 20) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            for pkt in st.encode(frame):
                c.mux(pkt)
        for pkt in st.encode(None):
            c.mux(pkt)


def _rss_kb() -> int:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))


def test_many_reconnect_cycles_keep_threads_and_files_bounded(tmp_path: Path) -> None:
    import http.server

    _ts_clip(tmp_path / "clip.ts")

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a, **k: Quiet(*a, directory=str(tmp_path), **k)
    )
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{srv.server_address[1]}/clip.ts"
    fds: list[int] = []
    threads: list[int] = []
    rss: list[int] = []
    try:
        # 200 cycles; every end of the file is an outage (reconnect_on_eof): the clip is replayed, time keeps going
        with open_live_source(
            url, open_timeout_s=3, read_timeout_s=3, backoff_s=0.01, backoff_max_s=0.05, reconnect_on_eof=True
        ) as src:
            frames, gaps = [], 0
            for f in src:
                frames.append(f)
                gaps += sum(e.kind == "gap" for e in src.take_events())
                if f.index % 50 == 0:
                    fds.append(len(os.listdir("/proc/self/fd")))
                    threads.append(threading.active_count())
                    rss.append(_rss_kb())
                if src.reconnects >= 200:
                    break
    finally:
        srv.shutdown()
        srv.server_close()
    _check_continuity(frames)
    assert gaps >= 199 and len(src.gaps) == 64 and len(frames) >= 200 * 8
    assert rss[-1] - rss[1] < 50_000  # kB
    assert max(fds[2:]) <= fds[1] + 3 and max(threads[2:]) <= threads[1] + 3, (fds, threads)


# ------------------------------------------------------------------------------------------ CLI
class _JsonlTail:
    """Reads the complete lines of a growing JSONL file (the first one matching ``pattern`` in ``folder``: a
    live source's segment is named with its start time), noting the wall time each line was first seen."""

    def __init__(self, folder: Path, pattern: str) -> None:
        self.folder, self.pattern = folder, pattern
        self.path: Path | None = None
        self._pos, self._buf = 0, b""
        self.seen: list[tuple[float, dict]] = []

    def poll(self) -> None:
        if self.path is None:
            self.path = next(iter(sorted(self.folder.glob(self.pattern))), None)
        if self.path is None:
            return
        with self.path.open("rb") as fh:
            fh.seek(self._pos)
            chunk = fh.read()
        self._pos += len(chunk)
        *lines, self._buf = (self._buf + chunk).split(b"\n")
        now = time.time()
        records = [json.loads(line) for line in lines if line.strip()]
        self.seen += [
            (now, r) for r in records if "event" not in r
        ]  # frames only (not gap / reconnect events)


@needs_rtsp
def test_cli_model_slower_than_stream_drops_and_keeps_latency(rtsp: RtspServer, tmp_path: Path) -> None:
    from hrstream.models import from_config

    weights = tmp_path / "w32.safetensors"
    save_file(from_config("pose_hrnet_w32_256x192").state_dict(), str(weights))
    out = tmp_path / "out"
    args = [rtsp.url, "--task", "pose", "--model", "pose_hrnet_w32_256x192", "--weights", str(weights)]
    args += ["--detector", "full-frame", "--batch-size", "1", "--no-video", "--grace", "3", "--out", str(out)]
    proc = popen_run(args)
    err = _Lines(proc.stderr)
    tail = _JsonlTail(out, f"127_0_0_1_{rtsp.port}_live_*.jsonl")
    # Steady state starts with the first record that has drops before it: that frame entered a pipeline that
    # was already full, as does every later one. Wait for 24 of them (~2 s on an idle 2-core machine): thirds of
    # 8 records, so that one slow moment of a shared CPU does not decide the comparison below.
    deadline = time.monotonic() + 100
    steady: list[tuple[float, dict]] = []
    while proc.poll() is None and time.monotonic() < deadline:
        tail.poll()
        first = next((i for i, (_, r) in enumerate(tail.seen) if r["dropped_before"] > 0), None)
        steady = tail.seen[first:] if first is not None else []
        if len(steady) >= 24:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    rc = proc.wait(timeout=30)
    assert rc == 130, err.text()[-3000:]
    assert tail.path is not None
    records = [
        r for r in read_jsonl(tail.path) if "event" not in r
    ]  # every line parses, the file ends cleanly
    assert len(steady) >= 24, f"only {len(steady)} steady-state records in 100 s"
    assert [r["frame"] for r in records] == sorted({r["frame"] for r in records})
    assert np.all(np.diff([r["pts_s"] for r in records]) > 0)
    assert all(isinstance(r["captured_at"], float) for r in records)
    drops = sum(r["dropped_before"] for r in records)
    assert drops > 0 and records[-1]["frame"] + 1 - len(records) >= drops  # frames skipped, none invented
    written = np.array([t for t, _ in tail.seen])
    ages = np.array([t - r["captured_at"] for t, r in steady])
    # age in frame-times: how many records were written while this frame waited. On a shared CPU the
    # seconds per frame vary, this count does not; without drops it would grow by one per record or so.
    waits = np.array([np.sum((written > r["captured_at"]) & (written < t)) for t, r in steady])
    step = float(np.median(np.diff([t for t, _ in steady])))
    third = len(steady) // 3
    print(
        f"\nlive CLI: {len(records)} records, {drops} dropped, {step:.2f} s per frame; steady age first third "
        f"{np.median(ages[:third]):.2f} s ({np.median(waits[:third]):.0f} frames), last third "
        f"{np.median(ages[-third:]):.2f} s ({np.median(waits[-third:]):.0f} frames), max {ages.max():.2f} s"
    )
    assert step > 1 / 30  # the model really is slower than the stream
    assert np.median(waits[-third:]) <= np.median(waits[:third]) + 1
    assert waits.max() <= 20  # bounded by the pipeline's queues, not by the run's length


def test_cli_silent_server_open_deadline_and_sigterm(tiny_pose, tmp_path: Path) -> None:
    srv = SilentServer()
    try:
        t0 = time.monotonic()
        with pytest.raises(InputError, match="1 open attempt"):
            open_live_source(
                f"rtsp://127.0.0.1:{srv.port}/x", open_timeout_s=1.0, read_timeout_s=1.0, max_reconnects=1
            )
        assert time.monotonic() - t0 < 4.0 and srv.accepted  # it connected, then the deadline hit
        proc = popen_run(
            [
                f"rtsp://127.0.0.1:{srv.port}/x",
                "--model",
                str(tiny_pose.config),
                "--weights",
                str(tiny_pose.weights),
                "--detector",
                "full-frame",
                "--out",
                str(tmp_path / "out"),
                "--open-timeout",
                "1",
                "--read-timeout",
                "1",
            ]
        )
        err = _Lines(proc.stderr)
        err.wait_for("open attempt 1 failed", timeout=40)
        time.sleep(0.3)  # now in a backoff wait or in the next open
        t_sig = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        t_given_up = err.wait_for("interrupted while connecting", timeout=10)
        rc = proc.wait(timeout=30)  # interpreter teardown (torch) may take seconds on a busy machine
    finally:
        srv.close()
    assert rc == 143, err.text()[-3000:]
    took = t_given_up - t_sig
    assert took < 1.0, f"SIGTERM took {took:.2f} s to stop the retries"
    print(f"\nsilent server: SIGTERM honoured in {took:.2f} s while retrying")
