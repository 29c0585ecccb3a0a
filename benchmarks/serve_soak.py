"""Soak of ``hrstream serve``: cameras that drop and return, viewers that connect and leave, sources added and
removed every few seconds, the MQTT broker restarted; resident memory, open files, threads and latency sampled
as it goes, and their slopes after a warm-up.

Everything is real and on 127.0.0.1: ``--cameras`` RTSP cameras (the test suite's GStreamer server serving the
basketball clip at 10 fps, ``--clip-s`` long: each camera drops its client at the end of the clip and the
service reconnects), a Mosquitto broker the service publishes to (``--mqtt``) and a subscriber that counts what
arrives, and ``hrstream serve`` itself as a child process (the tests' tiny pose model, ``--detector full-frame``,
JSONL and tracks in 60 s segments, the two newest kept, no video). Around it, threads that:

* stop one camera's server every ``--outage-every`` seconds for 3-6 s (on top of the clip's end);
* add a source through the API every ``--churn-s`` seconds and remove the one added before (names cycle over
  three, URLs over the cameras);
* open viewers of the live view (MJPEG at the grid's width) and of the event stream, each reading for 0.3-3 s
  before it leaves (``--viewers`` at a time);
* restart the broker every ``--broker-every`` seconds (down for 10 s).

Every ``--sample-s`` the benchmark reads the service's resident memory, open file descriptors and threads from
``/proc/PID`` and, from its API, the worst permanent camera's capture-to-written latency (p50 / p95 over its
30 s window), frames written and dropped, reconnects, viewers, MQTT numbers; at the end it prints the table and
the least-squares slopes of memory, files, threads and latency p95 after ``--warmup`` minutes.

Usage::

    python benchmarks/serve_soak.py                       # 3 cameras, 20 minutes
    python benchmarks/serve_soak.py --minutes 240 --json runs/serve_soak.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
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
from live_soak import proc_status  # noqa: E402
from support.clips import h264_clip  # noqa: E402
from support.rtsp import RtspServer, free_port  # noqa: E402
from support.serving import LIVE_RECIPE, Mosquitto, ServeProcess, Subscriber, wait_for  # noqa: E402
from support.tiny_models import tiny_pose_model  # noqa: E402


def slope_per_minute(minutes: list[float], values: list[float]) -> float:
    """Least-squares slope of ``values`` against ``minutes``."""
    if len(minutes) < 2:
        return float("nan")
    return float(np.polyfit(np.asarray(minutes), np.asarray(values, dtype=np.float64), 1)[0])


class Chaos:
    """The threads that disturb the service (see the module docstring), and what they did."""

    def __init__(self, svc: ServeProcess, cams: dict[str, RtspServer], broker: Mosquitto, args: Any) -> None:
        self.svc, self.cams, self.broker, self.args = svc, cams, broker, args
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.done = {
            "outages": 0,
            "added": 0,
            "removed": 0,
            "viewers": 0,
            "event_streams": 0,
            "broker_restarts": 0,
        }
        self.errors: list[str] = []
        self.rng = random.Random(0)

    def count(self, key: str) -> None:
        with self.lock:
            self.done[key] += 1

    def error(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def start(self) -> list[threading.Thread]:
        targets = [self._outages, self._churn, self._broker] + [self._viewer] * self.args.viewers
        threads = [threading.Thread(target=t, daemon=True) for t in targets]
        for t in threads:
            t.start()
        return threads

    def _outages(self) -> None:
        names = sorted(self.cams)
        i = 0
        while not self.stop.wait(self.args.outage_every):
            name = names[i % len(names)]
            i += 1
            cam = self.cams[name]
            cam.kill()
            if self.stop.wait(self.rng.uniform(3, 6)):
                break
            self.cams[name] = RtspServer(port=cam.port, clip=cam.clip).start()
            self.count("outages")

    def _churn(self) -> None:
        urls = [c.url for c in self.cams.values()]
        i = 0
        while not self.stop.wait(self.args.churn_s):
            name = f"churn{i % 3}"
            try:
                r = self.svc.api("POST", "/api/sources", json={"name": name, "url": urls[i % len(urls)]})
                if r.status_code == 201:
                    self.count("added")
                else:
                    self.error(f"add {name}: {r.status_code} {r.text[:120]}")
                if i > 0:
                    old = f"churn{(i - 1) % 3}"
                    r = self.svc.api("DELETE", f"/api/sources/{old}")
                    if r.status_code in (202, 204):
                        self.count("removed")
                    else:
                        self.error(f"remove {old}: {r.status_code}")
            except Exception as e:  # the service answers late under load: counted, the soak goes on
                self.error(f"churn: {type(e).__name__}: {e}")
            i += 1

    def _viewer(self) -> None:
        while not self.stop.is_set():
            names = list(self.cams) + ["churn0", "churn1", "churn2"]
            events = self.rng.random() < 0.2
            path = "/events" if events else f"/stream/{self.rng.choice(names)}.mjpg?width=480"
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.svc.port, timeout=10)
                conn.request("GET", path)
                resp = conn.getresponse()
                end = time.monotonic() + self.rng.uniform(0.3, 3.0)
                if resp.status == 200:
                    self.count("event_streams" if events else "viewers")
                    while time.monotonic() < end and not self.stop.is_set():
                        if not resp.read1(65536):
                            break
                if conn.sock is not None:
                    conn.sock.shutdown(socket.SHUT_RDWR)
                conn.close()
            except (OSError, http.client.HTTPException) as e:
                self.error(f"viewer: {type(e).__name__}")
                self.stop.wait(0.5)

    def _broker(self) -> None:
        while not self.stop.wait(self.args.broker_every):
            self.broker.stop()
            if self.stop.wait(10.0):
                break
            self.broker.start()
            self.count("broker_restarts")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cameras", type=int, default=3)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes left out of the slopes")
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--clip-s", type=float, default=60.0, help="each camera drops its client this often")
    ap.add_argument("--outage-every", type=float, default=45.0)
    ap.add_argument("--churn-s", type=float, default=4.0)
    ap.add_argument("--viewers", type=int, default=3, help="viewers connected at a time (each 0.3-3 s)")
    ap.add_argument("--broker-every", type=float, default=180.0)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument(
        "--keep", action="store_true", help="keep the work folder (clip, outputs, the service's log)"
    )
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="serve_soak_"))
    tiny = tiny_pose_model(work / "tiny")
    clip = h264_clip(work / "clip.mp4", fps=10, every=3, repeat=max(1, round(args.clip_s / 10)))
    cams = {f"cam{i}": RtspServer(clip=clip).start() for i in range(args.cameras)}
    sources = work / "site.txt"
    sources.write_text("# soak\n" + "".join(f"{n} {c.url}\n" for n, c in cams.items()))
    recipe = work / "live.yaml"
    recipe.write_text(LIVE_RECIPE + "sinks:\n  segment_s: 60\n  keep_segments: 2\n  tracks: true\n")
    broker = Mosquitto(work / "broker", port=free_port()).start()
    svc = ServeProcess(
        sources,
        work / "out",
        tiny.args(),
        recipe=recipe,
        log=work / "serve.log",
        extra=["--mqtt", broker.url, "-q"],
    )
    sub = Subscriber(broker.port)
    chaos = Chaos(svc, cams, broker, args)
    samples: list[dict[str, Any]] = []
    cpu = cpu_description()
    load_start = os.getloadavg()[0]
    started = datetime.now(timezone.utc)
    try:
        svc.start()
        wait_for(lambda: all(svc.frames(n) > 20 for n in cams), 180, "every camera's frames")
        t0 = time.monotonic()
        chaos.start()
        end = t0 + args.minutes * 60
        next_sample = t0 + args.sample_s
        while time.monotonic() < end:
            time.sleep(max(0.0, next_sample - time.monotonic()))
            next_sample += args.sample_s
            try:
                listed = svc.sources()
                status = svc.status()
            except Exception as e:  # one late answer: the sample is skipped
                chaos.error(f"sample: {type(e).__name__}")
                continue
            perm = [listed[n] for n in cams if n in listed]
            lat = [s["latency_s"] for s in perm if s["latency_s"]]
            with chaos.lock:
                done = dict(chaos.done)
            sample = {
                "minute": (time.monotonic() - t0) / 60,
                **proc_status(svc.pid),
                "p50_s": max(x["p50"] for x in lat) if lat else None,
                "p95_s": max(x["p95"] for x in lat) if lat else None,
                "frames": sum(s["frames_out"] for s in perm),
                "dropped": sum(s["drops"] for s in perm),
                "reconnects": sum(s["reconnects"] for s in perm),
                "sources": status["sources"],
                "mqtt_received": len(sub.messages),
                "mqtt_dropped": status["mqtt"]["dropped"],
                **done,
            }
            samples.append(sample)
            print(json.dumps(sample), flush=True)
    finally:
        chaos.stop.set()
        rc = None
        try:
            rc = svc.stop(timeout=120)
        finally:
            svc.close()
            sub.close()
            broker.stop()
            for c in cams.values():
                c.kill()
            if not args.keep:
                shutil.rmtree(work, ignore_errors=True)
    ended = datetime.now(timezone.utc)

    print()
    print(
        f"machine: {cpu['model_name']}, {cpu['usable_cores']} usable cores; load avg (1 min) {load_start:.2f} at "
        f"start, {os.getloadavg()[0]:.2f} at end; {started:%Y-%m-%d %H:%M}-{ended:%H:%M} UTC"
    )
    print(
        f"{args.cameras} RTSP cameras 426x240 at 10 fps dropping their client every {args.clip_s:g} s, one stopped "
        f"every {args.outage_every:g} s; a source added and one removed every {args.churn_s:g} s; "
        f"{args.viewers} viewers at a time; broker restarted every {args.broker_every:g} s; {args.minutes:g} min"
    )
    print()
    print(
        "| minute | RSS MB | fds | threads | latency p50 / p95 s | frames written | dropped | reconnects "
        "| viewers so far | sources added / removed | broker restarts | MQTT received / dropped |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for s in samples:
        lat = "-" if s["p95_s"] is None else f"{s['p50_s']:.2f} / {s['p95_s']:.2f}"
        print(
            f"| {s['minute']:.1f} | {s['rss_kb'] / 1024:.1f} | {s['fds']} | {s['threads']} | {lat} | {s['frames']} "
            f"| {s['dropped']} | {s['reconnects']} | {s['viewers'] + s['event_streams']} | {s['added']} / "
            f"{s['removed']} | {s['broker_restarts']} | {s['mqtt_received']} / {s['mqtt_dropped']} |"
        )
    after = [s for s in samples if s["minute"] >= args.warmup]
    mins = [s["minute"] for s in after]
    print()
    print(f"slopes after minute {args.warmup:g} ({len(after)} samples, least squares):")
    print(f"  RSS {slope_per_minute(mins, [s['rss_kb'] / 1024 for s in after]):+.3f} MB/min")
    print(f"  open files {slope_per_minute(mins, [s['fds'] for s in after]):+.3f} /min")
    print(f"  threads {slope_per_minute(mins, [s['threads'] for s in after]):+.3f} /min")
    with_lat = [s for s in after if s["p95_s"] is not None]
    print(
        f"  latency p95 {1000 * slope_per_minute([s['minute'] for s in with_lat], [s['p95_s'] for s in with_lat]):+.2f} ms/min"
    )
    if after:
        for key, unit in (("rss_kb", "kB"), ("fds", ""), ("threads", "")):
            values = [s[key] for s in after]
            print(
                f"  {key} after warm-up: min {min(values)} max {max(values)} last {values[-1]} {unit}".rstrip()
            )
    print(
        f"errors seen by the load threads: {len(chaos.errors)}"
        + (f" (first: {chaos.errors[0]})" if chaos.errors else "")
    )
    print(f"service exit status on SIGTERM: {rc}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "samples": samples,
                    "errors": chaos.errors,
                    "args": {k: str(v) for k, v in vars(args).items()},
                },
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
