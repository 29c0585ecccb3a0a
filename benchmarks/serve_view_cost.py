"""The cost of the live view of ``hrstream serve``: CPU per watched camera and the latency it adds, with 0, 1 and
5 viewers per camera, and what a stalled viewer does to the pipeline and the other viewers.

``--cameras`` real RTSP cameras on 127.0.0.1 (the test suite's GStreamer server, the basketball clip at 10 fps,
``--size``) run through ``hrstream serve`` (a child process; the tiny pose model of the tests and
``--detector full-frame``, so that the network costs little and the view's own cost shows; no video written).
For each configuration the benchmark opens the viewers (threads reading ``/stream/NAME.mjpg?width=W`` as a
browser's ``<img>`` does, without decoding the JPEGs), lets them settle, then over ``--window`` seconds reads:

* the service's CPU time from ``/proc/PID/stat`` (user + system, in % of one core), and per watched camera
  the CPU added over the configuration without viewers;
* frames written per camera (``/api/sources``) and JPEG encodings (``/api/status``: ``LiveView.encodes``), so
  encodings per frame written: 1 whatever the number of viewers at one width;
* capture-to-written latency (the pipeline: ``/api/sources``, every frame of the last 30 s) and, for each frame
  a viewer receives, the latency the view adds (from ``X-Written-At``, when the pipeline handed it over, to its
  arrival: waiting for the encoder, drawing, JPEG, sending) and capture-to-viewer (``X-Captured-At``; one
  clock, one machine);
* frames each viewer received per second.

The configuration "5 + 1 stalled" adds, per camera, a viewer that asks for the stream and never reads: the
frames written and the other viewers' frames and latency must stay as with 5.

Usage::

    python benchmarks/serve_view_cost.py          # 2 cameras 1280x720, width 480, 2 rounds of 30 s windows
    python benchmarks/serve_view_cost.py --cameras 4 --window 60 --json runs/view_cost.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]  # this checkout's code first

from bench_fixtures import cpu_description  # noqa: E402
from support.clips import h264_clip  # noqa: E402
from support.rtsp import RtspServer  # noqa: E402
from support.serving import LIVE_RECIPE, ServeProcess, wait_for  # noqa: E402
from support.tiny_models import tiny_pose_model  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


class Viewer(threading.Thread):
    """Reads one MJPEG stream as a browser would (every part, not decoded); records when each frame came and its
    capture-to-screen latency."""

    def __init__(self, port: int, path: str) -> None:
        super().__init__(daemon=True)
        self.port, self.path = port, path
        self.stop = threading.Event()
        self.received: list[
            tuple[float, float | None, float]
        ] = []  # (when, capture-to-screen, added by the view)
        self._conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        self._conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        self._conn.request("GET", self.path)
        resp = self._conn.getresponse()
        assert resp.status == 200, resp.status
        while not self.stop.is_set():
            line = resp.fp.readline()
            if not line:
                return
            if not line.startswith(b"--"):
                continue
            headers: dict[str, str] = {}
            while (h := resp.fp.readline().strip()) != b"":
                key, _, value = h.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            resp.fp.read(int(headers["content-length"]))
            now = time.time()
            captured = headers.get("x-captured-at")
            added = now - float(headers["x-written-at"])
            self.received.append((now, None if captured is None else now - float(captured), added))

    def close(self) -> None:
        self.stop.set()
        if self._conn is not None and self._conn.sock is not None:
            self._conn.sock.shutdown(socket.SHUT_RDWR)
            self._conn.close()


def stalled(port: int, path: str) -> socket.socket:
    """A viewer that asks for the stream and never reads a byte."""
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
    return s


def measure(svc: ServeProcess, names: list[str], viewers: list[Viewer], window: float) -> dict[str, Any]:
    t0, cpu0 = time.time(), cpu_seconds(svc.pid)
    src0, st0 = svc.sources(), svc.status()
    time.sleep(window)
    t1, cpu1 = time.time(), cpu_seconds(svc.pid)
    src1, st1 = svc.sources(), svc.status()
    elapsed = t1 - t0
    written = sum(src1[n]["frames_out"] - src0[n]["frames_out"] for n in names)
    dropped = sum(src1[n]["drops"] - src0[n]["drops"] for n in names)
    encodes = st1["view"]["encodes"] - st0["view"]["encodes"]
    pipe = [src1[n]["latency_s"] for n in names if src1[n]["latency_s"]]
    got = [(lat, added) for v in viewers for when, lat, added in v.received if t0 <= when <= t1]
    screen = [lat for lat, _ in got if lat is not None]
    added = [a for _, a in got]
    per_viewer = [sum(1 for when, _, _ in v.received if t0 <= when <= t1) / elapsed for v in viewers]
    return {
        "cpu_pct": 100.0 * (cpu1 - cpu0) / elapsed,
        "written_fps_per_camera": written / elapsed / len(names),
        "dropped": dropped,
        "encodes_per_s": encodes / elapsed,
        "encodes_per_frame": encodes / written if written else 0.0,
        "written_p50_ms": 1000 * statistics.median(p["p50"] for p in pipe) if pipe else None,
        "written_p95_ms": 1000 * max(p["p95"] for p in pipe) if pipe else None,
        "screen_p50_ms": 1000 * float(np.percentile(screen, 50)) if screen else None,
        "screen_p95_ms": 1000 * float(np.percentile(screen, 95)) if screen else None,
        "added_p50_ms": 1000 * float(np.percentile(added, 50)) if added else None,
        "added_p95_ms": 1000 * float(np.percentile(added, 95)) if added else None,
        "viewer_fps": statistics.mean(per_viewer) if per_viewer else None,
        "load_avg": os.getloadavg()[0],
    }


def encode_cost(size: tuple[int, int], width: int, n: int = 200) -> tuple[float, float]:
    """CPU milliseconds (the process's, OpenCV's threads included) of one view encoding of a ``size`` frame at
    ``width`` (resize and JPEG; the renderer here only copies the frame, a pipeline's also draws the skeletons),
    and the JPEG's kB: what each watched camera costs per frame, measured apart from the machine's other load."""
    from hrstream.serve.view import LiveView
    from hrstream.types import Frame, FrameResult

    w, h = size
    rng = np.random.default_rng(0)
    base = cv2_blur(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))  # a camera-like picture, not noise
    view = LiveView()
    spent, kb = 0.0, 0.0
    for i in range(n):
        result = FrameResult(Frame("cam", i, i / 10, np.roll(base, i, axis=1)))
        result.renderer = lambda r: r.frame.image.copy()
        view.offer(result)
        t = time.process_time()
        frame = view.latest("cam", width)
        spent += time.process_time() - t
        assert frame is not None
        kb += len(frame.data) / 1024
    view.close()
    return 1000 * spent / n, kb / n


def cv2_blur(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.GaussianBlur(image, (0, 0), 8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=2)
    ap.add_argument("--size", default="1280x720", help="the cameras' picture, WxH")
    ap.add_argument("--width", type=int, default=480, help="the view width the viewers ask (the grid's)")
    ap.add_argument("--window", type=float, default=30.0, help="seconds measured per configuration")
    ap.add_argument("--settle", type=float, default=8.0, help="seconds before each measurement")
    ap.add_argument(
        "--rounds", type=int, default=2, help="times every configuration is measured, interleaved"
    )
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--keep", action="store_true", help="keep the work folder (clip, outputs, the service's log)"
    )
    ap.add_argument("--only-encode", action="store_true", help="only the CPU cost of one encoding")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    ms, kb = encode_cost((w, h), args.width)
    print(
        f"one view encoding of a {w}x{h} frame at width {args.width}: {ms:.2f} ms CPU, {kb:.1f} kB",
        flush=True,
    )
    if args.only_encode:
        return

    work = Path(tempfile.mkdtemp(prefix="serve_view_cost_"))
    tiny = tiny_pose_model(work / "tiny")
    clip = h264_clip(work / "clip.mp4", fps=10, every=3, repeat=40, size=(w, h))  # 400 s
    cams = [RtspServer(clip=clip).start() for _ in range(args.cameras)]
    names = [f"cam{i}" for i in range(args.cameras)]
    sources = work / "site.txt"
    sources.write_text("".join(f"{n} {c.url}\n" for n, c in zip(names, cams, strict=True)))
    recipe = work / "live.yaml"
    recipe.write_text(LIVE_RECIPE)
    svc = ServeProcess(sources, work / "out", tiny.args(), recipe=recipe, log=work / "serve.log")
    configs = [("0", 0, False), ("1", 1, False), ("5", 5, False), ("5 + 1 stalled", 5, True)]
    started = datetime.now(timezone.utc)
    load_start = os.getloadavg()[0]
    rows: list[tuple[str, dict[str, Any]]] = []
    try:
        svc.start()
        wait_for(lambda: all(svc.frames(n) > 20 for n in names), 120, "every camera's frames")
        path = "/stream/{}.mjpg?width=" + str(args.width)
        for _round in range(args.rounds):  # interleaved: a shared machine's load drifts
            for label, per_camera, stall in configs:
                viewers = [Viewer(svc.port, path.format(n)) for n in names for _ in range(per_camera)]
                for v in viewers:
                    v.start()
                dead = [stalled(svc.port, path.format(n)) for n in names] if stall else []
                time.sleep(args.settle)
                row = measure(svc, names, viewers, args.window)
                row["viewers"] = svc.status()["view"]["viewers"]
                rows.append((label, row))
                print(label, json.dumps(row), flush=True)
                for v in viewers:
                    v.close()
                for sock in dead:
                    sock.close()
                wait_for(lambda: svc.status()["view"]["viewers"] == 0, 30, "the viewers gone")
    finally:
        svc.close()
        for c in cams:
            c.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    ended = datetime.now(timezone.utc)

    def mean(label: str, key: str) -> float | None:
        values = [r[key] for lab, r in rows if lab == label and r[key] is not None]
        return statistics.mean(values) if values else None

    base = mean("0", "cpu_pct")
    assert base is not None
    cpu = cpu_description()
    print()
    print(
        f"machine: {cpu['model_name']}, {cpu['usable_cores']} usable cores; load avg (1 min) {load_start:.2f} "
        f"at start, {os.getloadavg()[0]:.2f} at end"
    )
    print(
        f"{started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC; {args.cameras} RTSP cameras {w}x{h} at 10 fps; view width "
        f"{args.width}; {args.rounds} rounds of {args.window:g} s windows (means)"
    )
    print()
    print(
        "| viewers per camera | service CPU, % of a core | added per watched camera | written/s per camera "
        "| dropped | encodes per frame | capture->written p50 / p95 ms | written->viewer (added) p50 / p95 ms "
        "| capture->viewer p50 / p95 ms | frames/s per viewer |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")

    def num(v: float | None, fmt: str = ".0f") -> str:
        return "-" if v is None else format(v, fmt)

    for label, _, _ in configs:
        cpu_pct = mean(label, "cpu_pct")
        assert cpu_pct is not None
        added = "-" if label == "0" else f"{(cpu_pct - base) / args.cameras:+.1f}"
        dropped = sum(r["dropped"] for lab, r in rows if lab == label)
        print(
            f"| {label} | {cpu_pct:.1f} | {added} | {num(mean(label, 'written_fps_per_camera'), '.2f')} | {dropped} "
            f"| {num(mean(label, 'encodes_per_frame'), '.2f')} "
            f"| {num(mean(label, 'written_p50_ms'))} / {num(mean(label, 'written_p95_ms'))} "
            f"| {num(mean(label, 'added_p50_ms'))} / {num(mean(label, 'added_p95_ms'))} "
            f"| {num(mean(label, 'screen_p50_ms'))} / {num(mean(label, 'screen_p95_ms'))} "
            f"| {num(mean(label, 'viewer_fps'), '.2f')} |"
        )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"rows": rows, "args": vars(args) | {"json": str(args.json)}}, indent=2)
        )


if __name__ == "__main__":
    main()
